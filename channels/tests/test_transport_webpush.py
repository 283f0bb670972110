"""Web push against a local push service that holds the browser's keys and decrypts what it
receives: VAPID (RFC 8292), aes128gcm (RFC 8291) and TTL (RFC 8030) for real."""

from __future__ import annotations

import json

import pytest

from channels.models import DispatchStatus
from channels.services.dispatch import dispatch_send
from channels.testing import FakeWebPush
from channels.testing.http import Response
from channels.transports.base import TransientError
from channels.transports.webpush import generate_vapid_keys
from profiles.engagement import MESSAGE_BOUNCED
from profiles.models import Device, Workspace

from .dispatch_helpers import engagement_names, fake_webpush, make_config, make_device, make_profile, prepare_one

__all__ = ["fake_webpush"]

NOTIFICATION = {
    "title": "Back in stock",
    "body": "The Rain Jacket is back in your size",
    "icon": "https://cdn.acme.example/icon.png",
    "url": "https://shop.acme.example/p/rain-jacket",
    "tag": "restock",
    "data": {"sku": "SKU-2002"},
}


def webpush_config(workspace: Workspace, *, allow_http: bool = True) -> None:
    private_pem, public_key = generate_vapid_keys()
    make_config(
        workspace,
        "webpush",
        settings={
            "vapid_subject": "mailto:ops@acme.example",
            "vapid_public_key": public_key,
            "allow_insecure_endpoints": allow_http,
        },
        secrets={"vapid_private_key": private_pem},
    )


def test_the_push_service_decrypts_the_notification(workspace: Workspace, fake_webpush: FakeWebPush) -> None:
    webpush_config(workspace)
    jane = make_profile(workspace)
    make_device(jane, "webpush", json.dumps(fake_webpush.subscribe("janes-firefox")))

    sent = dispatch_send(dispatch_id=prepare_one(jane, "webpush", NOTIFICATION).pk)

    assert sent.status == DispatchStatus.SENT
    [request] = fake_webpush.requests
    assert request.info["status"] == 201
    assert request.info["payload"] == {
        "dispatch_id": str(sent.pk),
        "title": "Back in stock",
        "body": "The Rain Jacket is back in your size",
        "icon": "https://cdn.acme.example/icon.png",
        "url": "https://shop.acme.example/p/rain-jacket",
        "tag": "restock",
        "data": {"sku": "SKU-2002"},
    }
    # Always a TTL (4 weeks by default: without one the message is dropped for an offline browser).
    assert request.info["ttl"] == 28 * 24 * 3600
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["topic"] == "restock"
    assert request.headers["authorization"].startswith("vapid t=")
    assert sent.provider_message_id.startswith(fake_webpush.url + "/message/")


def test_the_content_ttl_is_sent(workspace: Workspace, fake_webpush: FakeWebPush) -> None:
    webpush_config(workspace)
    jane = make_profile(workspace)
    make_device(jane, "webpush", json.dumps(fake_webpush.subscribe()))

    dispatch_send(dispatch_id=prepare_one(jane, "webpush", {**NOTIFICATION, "ttl": 600}).pk)

    assert fake_webpush.requests[0].info["ttl"] == 600


def test_an_expired_subscription_disables_the_browser(workspace: Workspace, fake_webpush: FakeWebPush) -> None:
    webpush_config(workspace)
    jane = make_profile(workspace)
    device = make_device(jane, "webpush", json.dumps(fake_webpush.subscribe("old-chrome")))
    fake_webpush.gone.add("old-chrome")

    failed = dispatch_send(dispatch_id=prepare_one(jane, "webpush", NOTIFICATION).pk)

    assert (failed.status, failed.error_code, failed.permanent_failure) == (DispatchStatus.FAILED, "HTTP_410", True)
    assert Device.objects.get(pk=device.pk).push_enabled is False
    assert engagement_names(jane) == [MESSAGE_BOUNCED]


def test_a_plain_http_endpoint_is_refused_outside_the_sandbox(workspace: Workspace, fake_webpush: FakeWebPush) -> None:
    webpush_config(workspace, allow_http=False)
    jane = make_profile(workspace)
    make_device(jane, "webpush", json.dumps(fake_webpush.subscribe()))

    failed = dispatch_send(dispatch_id=prepare_one(jane, "webpush", NOTIFICATION).pk)

    assert (failed.status, failed.error_code) == (DispatchStatus.FAILED, "invalid_subscription")
    assert fake_webpush.requests == []  # nothing left the building


def test_a_rate_limited_push_is_retried(workspace: Workspace, fake_webpush: FakeWebPush) -> None:
    webpush_config(workspace)
    jane = make_profile(workspace)
    make_device(jane, "webpush", json.dumps(fake_webpush.subscribe()))
    dispatch = prepare_one(jane, "webpush", NOTIFICATION)
    fake_webpush.fail_next(Response(429, b"slow down", {"Retry-After": "12"}))

    with pytest.raises(TransientError) as raised:
        dispatch_send(dispatch_id=dispatch.pk)
    assert raised.value.retry_after == 12
    assert dispatch_send(dispatch_id=dispatch.pk).status == DispatchStatus.SENT
    assert len(fake_webpush.notifications) == 1
