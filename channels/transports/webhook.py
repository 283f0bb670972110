"""Webhooks: an HTTP request to the marketer's own endpoint, already rendered (URL, method,
headers, body) in the dispatch content.

Optional provider config ``webhook``: secret ``signing_secret``; setting ``timeout`` (seconds,
default 10). With a secret, every request is signed like Stripe's and Svix's:

    X-Engage-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

and the receiver recomputes it over the raw body and rejects stale timestamps (see
docs/channels-transports.md). Every request carries ``Idempotency-Key`` and
``X-Engage-Dispatch-Id`` (the dispatch id): delivery is at least once — a timeout or a 5xx is
retried, 408 and 429 too; other 4xx answers are permanent. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import httpx

from ..secrets import provider_config_secrets
from .base import PermanentError, SendResult, TransientError, retry_after_seconds
from .http import classify_network_error, shared_client

if TYPE_CHECKING:
    from ..models import Dispatch, ProviderConfig

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0
SIGNATURE_HEADER = "X-Engage-Signature"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Engage-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: float | None = None) -> bool:
    """Check an ``X-Engage-Signature`` header (what a receiver does; used by the tests and fakes)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookTransport:
    def send(self, dispatch: Dispatch, config: ProviderConfig | None) -> SendResult:
        content = dispatch.content or {}
        url = str(content.get("url") or dispatch.address)
        method = str(content.get("method") or "POST").upper()
        if method not in METHODS:
            raise PermanentError("invalid_method", f"{method} is not a webhook method ({', '.join(sorted(METHODS))})")
        raw_body = content.get("body")
        body = b"" if raw_body in (None, "") else (raw_body if isinstance(raw_body, str) else json.dumps(raw_body))
        encoded = body.encode() if isinstance(body, str) else body

        headers: dict[str, str] = {str(k): str(v) for k, v in (content.get("headers") or {}).items()}
        if encoded and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json" if _looks_like_json(encoded) else "text/plain; charset=utf-8"
        headers["Idempotency-Key"] = str(dispatch.pk)
        headers["X-Engage-Dispatch-Id"] = str(dispatch.pk)
        timeout = DEFAULT_TIMEOUT
        if config is not None:
            secret = provider_config_secrets(config).get("signing_secret", "")
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret, encoded, int(time.time()))
            timeout = min(float((config.settings or {}).get("timeout") or DEFAULT_TIMEOUT), MAX_TIMEOUT)

        try:
            response = shared_client().request(
                method, url, content=encoded or None, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0)
            )
        except httpx.HTTPError as error:
            # At least once: the receiver dedupes on Idempotency-Key.
            raise classify_network_error(error, what="the webhook URL", retry_lost_answers=True) from error
        return _outcome(response)


def _looks_like_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _outcome(response: httpx.Response) -> SendResult:
    status = response.status_code
    if 200 <= status < 300:
        raw: dict[str, Any] = {"status": status, "body": response.text[:500]}
        return SendResult(provider_message_id=response.headers.get("X-Request-Id", "")[:255], raw=raw)
    snippet = response.text[:200]
    if status in (408, 429) or status >= 500:
        raise TransientError(
            f"the webhook answered {status}: {snippet}",
            code=f"HTTP_{status}",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        raise PermanentError(f"HTTP_{status}", f"the webhook redirected to {location!r}; redirects are not followed")
    raise PermanentError(f"HTTP_{status}", f"the webhook refused the request: {snippet}")
