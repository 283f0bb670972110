"""What the HTTP transports (FCM, APNs, Web Push, Twilio, webhooks) share: one ``httpx`` client
per process and base URL, bounded timeouts, and the rule that separates "nothing was sent" from
"the answer was lost" (see ``channels.transports.base``)."""

from __future__ import annotations

import threading

import httpx

from .base import OutcomeUnknownError, PermanentError, TransientError

# Connecting is quick or hopeless; a provider gets a little longer to answer. Both well under the
# send task's soft time limit.
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
USER_AGENT = "Engage/0.1 (+self-hosted customer engagement platform)"

_clients: dict[tuple[str, bool], httpx.Client] = {}
_lock = threading.Lock()


def shared_client(*, http2: bool = False) -> httpx.Client:
    """A process-wide client (connection pooling; for APNs, one long-lived HTTP/2 connection as
    Apple asks). ``http2`` forces HTTP/2 (APNs speaks nothing else; over plain http:// that is
    prior knowledge, which the local fake uses)."""
    key = ("h2" if http2 else "h1", http2)
    with _lock:
        client = _clients.get(key)
        if client is None or client.is_closed:
            client = httpx.Client(
                http1=not http2,
                http2=http2,
                timeout=DEFAULT_TIMEOUT,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
            _clients[key] = client
    return client


def close_shared_clients() -> None:
    """Close every pooled connection (tests stopping their fake servers; worker shutdown)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def classify_network_error(error: httpx.HTTPError, *, what: str, retry_lost_answers: bool = False) -> Exception:
    """A transport error for a request that got no HTTP answer.

    Failing to connect sends nothing: transient. A lost answer (read timeout, connection dropped
    mid-request) may follow a send: ``OutcomeUnknownError``, unless ``retry_lost_answers`` (the
    webhook channel's at-least-once contract).
    """
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransientError(f"cannot connect to {what}: {type(error).__name__}: {error}", code="connect_failed")
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return PermanentError("invalid_url", f"cannot call {what}: {error}")
    if retry_lost_answers:
        return TransientError(f"no answer from {what}: {type(error).__name__}: {error}", code="no_answer")
    return OutcomeUnknownError(f"no answer from {what} ({type(error).__name__}: {error})")
