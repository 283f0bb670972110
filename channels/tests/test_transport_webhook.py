"""Webhooks to the marketer's endpoint (a local receiver): method, headers and body as rendered,
the signature, the idempotency key, and which answers are retried."""

from __future__ import annotations

import socket
import time

import pytest

from channels.models import DispatchStatus
from channels.services.dispatch import dispatch_send
from channels.testing import WebhookReceiver
from channels.testing.http import Response
from channels.transports.base import TransientError
from channels.transports.webhook import sign, verify
from profiles.models import Workspace

from .dispatch_helpers import make_config, make_profile, prepare_one, webhook_receiver

__all__ = ["webhook_receiver"]

SECRET = "whsec-test-secret"


def hook(receiver: WebhookReceiver, **overrides: object) -> dict[str, object]:
    return {
        "url": f"{receiver.url}/hooks/loyalty?source=engage",
        "method": "PUT",
        "headers": {"Authorization": "Bearer partner-key", "X-Partner": "acme"},
        "body": '{"user_id": "user-1", "points": 50}',
        **overrides,
    }


def test_a_signed_webhook_is_sent_as_rendered(workspace: Workspace, webhook_receiver: WebhookReceiver) -> None:
    make_config(workspace, "webhook", settings={"timeout": 5}, secrets={"signing_secret": SECRET})
    jane = make_profile(workspace)

    sent = dispatch_send(dispatch_id=prepare_one(jane, "webhook", hook(webhook_receiver)).pk)

    assert sent.status == DispatchStatus.SENT
    assert sent.provider_message_id == "req-1"  # the receiver's X-Request-Id
    [request] = webhook_receiver.requests
    assert (request.method, request.path, request.query) == ("PUT", "/hooks/loyalty", {"source": ["engage"]})
    assert request.body == b'{"user_id": "user-1", "points": 50}'
    assert request.headers["authorization"] == "Bearer partner-key"
    assert request.headers["x-partner"] == "acme"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == str(sent.pk)
    assert request.info["signature_valid"] is True


def test_without_a_signing_secret_the_webhook_is_unsigned(
    workspace: Workspace, webhook_receiver: WebhookReceiver
) -> None:
    jane = make_profile(workspace)

    sent = dispatch_send(dispatch_id=prepare_one(jane, "webhook", hook(webhook_receiver, method="GET", body="")).pk)

    assert sent.status == DispatchStatus.SENT
    [request] = webhook_receiver.requests
    assert request.method == "GET" and request.body == b""
    assert "x-engage-signature" not in request.headers


@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_server_errors_timeouts_and_throttling_are_retried(
    workspace: Workspace, webhook_receiver: WebhookReceiver, status: int
) -> None:
    jane = make_profile(workspace)
    dispatch = prepare_one(jane, "webhook", hook(webhook_receiver))
    webhook_receiver.fail_next(Response(status, b"busy"))

    with pytest.raises(TransientError) as raised:
        dispatch_send(dispatch_id=dispatch.pk)
    assert raised.value.code == f"HTTP_{status}"
    assert dispatch_send(dispatch_id=dispatch.pk).status == DispatchStatus.SENT
    # Both attempts carried the same idempotency key, so the receiver can drop the repeat.
    keys = {request.headers["idempotency-key"] for request in webhook_receiver.requests}
    assert keys == {str(dispatch.pk)}


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_client_errors_are_permanent(workspace: Workspace, webhook_receiver: WebhookReceiver, status: int) -> None:
    jane = make_profile(workspace)
    webhook_receiver.fail_next(Response(status, b'{"error": "no such user"}'))

    failed = dispatch_send(dispatch_id=prepare_one(jane, "webhook", hook(webhook_receiver)).pk)

    assert (failed.status, failed.error_code, failed.permanent_failure) == (
        DispatchStatus.FAILED,
        f"HTTP_{status}",
        True,
    )
    assert "no such user" in failed.error_message


def test_a_redirect_is_not_followed(workspace: Workspace, webhook_receiver: WebhookReceiver) -> None:
    jane = make_profile(workspace)
    webhook_receiver.fail_next(Response(302, b"", {"Location": "http://127.0.0.1:1/elsewhere"}))

    failed = dispatch_send(dispatch_id=prepare_one(jane, "webhook", hook(webhook_receiver)).pk)

    assert failed.status == DispatchStatus.FAILED
    assert "redirects are not followed" in failed.error_message
    assert len(webhook_receiver.requests) == 1


def test_an_endpoint_that_is_down_is_retried(workspace: Workspace) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    jane = make_profile(workspace)
    dispatch = prepare_one(jane, "webhook", {"url": f"http://127.0.0.1:{port}/hook", "body": "{}"})

    with pytest.raises(TransientError) as raised:
        dispatch_send(dispatch_id=dispatch.pk)
    assert raised.value.code == "connect_failed"


def test_the_signature_is_what_receivers_check() -> None:
    body = b'{"a": 1}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify(SECRET, body, header, now=now)
    assert not verify(SECRET, body + b" ", header, now=now)  # the body was changed
    assert not verify("another-secret", body, header, now=now)
    assert not verify(SECRET, body, header, now=now + 301)  # a replay, five minutes later
