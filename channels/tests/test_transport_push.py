"""Mobile push against local servers that speak the providers' protocols: FCM HTTP v1 (with its
OAuth token endpoint) and APNs over HTTP/2 with token authentication."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
import time_machine
from django.utils import timezone

from channels.models import DispatchStatus
from channels.services.dispatch import dispatch_prepare, dispatch_send
from channels.testing import FakeApns, FakeFcm
from channels.testing.apns import apns_error
from channels.testing.fcm import fcm_error
from channels.testing.http import Response
from channels.transports.base import TransientError
from profiles.engagement import MESSAGE_BOUNCED, MESSAGE_RECEIVED
from profiles.models import Device, Workspace

from .dispatch_helpers import (
    apns_config,
    engagement_names,
    fake_apns,
    fake_fcm,
    fcm_config,
    make_device,
    make_profile,
    prepare_one,
)

__all__ = ["fake_apns", "fake_fcm"]

PUSH = {
    "title": "Your cart misses you",
    "body": "Trail Running Shoes are still in your cart",
    "image_url": "https://cdn.acme.example/shoes.png",
    "deep_link": "acme://cart",
    "badge": 2,
    "sound": "default",
    "data": {"cart_id": "cart-9"},
    "collapse_key": "cart",
    "thread_id": "cart-reminders",
    "ttl": 3600,
}
IOS_TOKEN = "a1b2c3d4" * 8


# --- FCM ------------------------------------------------------------------------------------------


def test_fcm_push_is_sent_with_oauth_and_the_whole_message(workspace: Workspace, fake_fcm: FakeFcm) -> None:
    fcm_config(workspace, fake_fcm)
    jane = make_profile(workspace)
    make_device(jane, "fcm", "fcm-token-1")

    sent = dispatch_send(dispatch_id=prepare_one(jane, "push", PUSH).pk)

    assert sent.status == DispatchStatus.SENT
    assert sent.provider_message_id.startswith("projects/acme-app/messages/")
    token_request, send_request = fake_fcm.requests
    assert token_request.path == "/token" and token_request.info["status"] == 200
    message = send_request.info["message"]
    assert message["token"] == "fcm-token-1"
    assert message["notification"] == {
        "title": "Your cart misses you",
        "body": "Trail Running Shoes are still in your cart",
        "image": "https://cdn.acme.example/shoes.png",
    }
    assert message["data"] == {"cart_id": "cart-9", "engage_dispatch_id": str(sent.pk), "deep_link": "acme://cart"}
    assert message["android"]["ttl"] == "3600s"
    assert message["android"]["collapse_key"] == "cart"
    assert message["android"]["notification"] == {
        "sound": "default",
        "notification_count": 2,
        "click_action": "acme://cart",
    }
    assert message["apns"]["payload"]["aps"] == {
        "badge": 2,
        "sound": "default",
        "thread-id": "cart-reminders",
        "mutable-content": 1,
    }
    assert message["apns"]["headers"]["apns-collapse-id"] == "cart"
    assert MESSAGE_RECEIVED in engagement_names(jane)


def test_fcm_access_token_is_reused_between_sends(workspace: Workspace, fake_fcm: FakeFcm) -> None:
    fcm_config(workspace, fake_fcm)
    people = [make_profile(workspace) for _ in range(3)]
    for number, person in enumerate(people):
        make_device(person, "fcm", f"fcm-token-{number}")
        dispatch_send(dispatch_id=prepare_one(person, "push", PUSH).pk)

    paths = [request.path for request in fake_fcm.requests]
    assert paths.count("/token") == 1
    assert len(fake_fcm.messages) == 3


def test_fcm_unregistered_token_disables_the_device(workspace: Workspace, fake_fcm: FakeFcm) -> None:
    fcm_config(workspace, fake_fcm)
    jane = make_profile(workspace)
    device = make_device(jane, "fcm", "stale-token")
    fake_fcm.unregistered.add("stale-token")

    failed = dispatch_send(dispatch_id=prepare_one(jane, "push", PUSH).pk)

    assert (failed.status, failed.error_code, failed.permanent_failure) == (DispatchStatus.FAILED, "UNREGISTERED", True)
    device.refresh_from_db()
    assert device.push_enabled is False
    assert "UNREGISTERED" in device.push_disabled_reason
    assert engagement_names(jane) == [MESSAGE_BOUNCED]
    # The next send finds nobody to push to.
    again = dispatch_prepare(
        workspace_id=workspace.pk, profile=jane, channel="push", content=PUSH, idempotency_key="next"
    )
    assert getattr(again, "reason", None) == "no push-enabled device"


def test_fcm_invalid_token_disables_the_device(workspace: Workspace, fake_fcm: FakeFcm) -> None:
    fcm_config(workspace, fake_fcm)
    jane = make_profile(workspace)
    device = make_device(jane, "fcm", "not-a-token")
    fake_fcm.invalid.add("not-a-token")

    failed = dispatch_send(dispatch_id=prepare_one(jane, "push", PUSH).pk)

    assert failed.error_code == "INVALID_ARGUMENT"
    assert Device.objects.get(pk=device.pk).push_enabled is False


def test_fcm_unavailable_is_retried(workspace: Workspace, fake_fcm: FakeFcm) -> None:
    fcm_config(workspace, fake_fcm)
    jane = make_profile(workspace)
    device = make_device(jane, "fcm", "fcm-token-1")
    dispatch = prepare_one(jane, "push", PUSH)
    fake_fcm.fail_next(Response.json(200, {"access_token": "ya29.x", "expires_in": 3600}))  # the token call
    fake_fcm.access_tokens.add("ya29.x")
    fake_fcm.fail_next(fcm_error(503, "UNAVAILABLE", "The service is currently unavailable."))

    with pytest.raises(TransientError) as raised:
        dispatch_send(dispatch_id=dispatch.pk)
    assert raised.value.code == "UNAVAILABLE"
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.PENDING
    assert Device.objects.get(pk=device.pk).push_enabled is True

    assert dispatch_send(dispatch_id=dispatch.pk).status == DispatchStatus.SENT


def test_fcm_quota_exceeded_carries_retry_after(workspace: Workspace, fake_fcm: FakeFcm) -> None:
    fcm_config(workspace, fake_fcm)
    jane = make_profile(workspace)
    make_device(jane, "fcm", "fcm-token-1")
    dispatch = prepare_one(jane, "push", PUSH)
    fake_fcm.fail_next(Response.json(200, {"access_token": "ya29.y", "expires_in": 3600}))
    fake_fcm.access_tokens.add("ya29.y")
    throttled = fcm_error(429, "QUOTA_EXCEEDED", "Sending limit exceeded")
    throttled.headers["Retry-After"] = "30"
    fake_fcm.fail_next(throttled)

    with pytest.raises(TransientError) as raised:
        dispatch_send(dispatch_id=dispatch.pk)
    assert raised.value.retry_after == 30


def test_fcm_with_a_key_google_does_not_know_fails_without_touching_devices(
    workspace: Workspace, fake_fcm: FakeFcm
) -> None:
    config = fcm_config(workspace, fake_fcm)
    fake_fcm.accounts.clear()  # the service account key was revoked
    jane = make_profile(workspace)
    device = make_device(jane, "fcm", "fcm-token-1")

    failed = dispatch_send(dispatch_id=prepare_one(jane, "push", PUSH).pk)

    assert (failed.status, failed.error_code) == (DispatchStatus.FAILED, "auth_failed")
    assert "Invalid JWT Signature" in failed.error_message
    assert Device.objects.get(pk=device.pk).push_enabled is True
    assert engagement_names(jane) == []  # not a bounce: the configuration is wrong
    assert config.pk


# --- APNs -----------------------------------------------------------------------------------------


def test_apns_push_goes_over_http2_with_apples_headers_and_payload(workspace: Workspace, fake_apns: FakeApns) -> None:
    apns_config(workspace, fake_apns)
    jane = make_profile(workspace)
    make_device(jane, "apns", IOS_TOKEN)

    with time_machine.travel(timezone.now(), tick=False):
        sent = dispatch_send(dispatch_id=prepare_one(jane, "push", PUSH).pk)
        now = int(timezone.now().timestamp())

    assert sent.status == DispatchStatus.SENT
    assert sent.provider_message_id == str(sent.pk)  # apns-id is the dispatch id
    [request] = fake_apns.requests
    assert request.info["http_version"] == "2"
    assert request.path == f"/3/device/{IOS_TOKEN}"
    headers = request.headers
    assert headers["apns-topic"] == "com.acme.app"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "cart"
    assert headers["apns-expiration"] == str(now + 3600)
    assert request.info["payload"] == {
        "aps": {
            "alert": {"title": "Your cart misses you", "body": "Trail Running Shoes are still in your cart"},
            "badge": 2,
            "sound": "default",
            "thread-id": "cart-reminders",
            "mutable-content": 1,
        },
        "cart_id": "cart-9",
        "engage_dispatch_id": str(sent.pk),
        "deep_link": "acme://cart",
        "image_url": "https://cdn.acme.example/shoes.png",
    }


def test_apns_provider_token_is_reused_for_50_minutes(workspace: Workspace, fake_apns: FakeApns) -> None:
    apns_config(workspace, fake_apns)
    start = timezone.now()
    tokens = []
    with time_machine.travel(start, tick=False) as clock:
        for minutes in (0, 49, 51):
            clock.move_to(start + timedelta(minutes=minutes))
            person = make_profile(workspace)
            make_device(person, "apns", f"{minutes:02d}" * 32)
            assert dispatch_send(dispatch_id=prepare_one(person, "push", PUSH).pk).status == DispatchStatus.SENT
            tokens.append(fake_apns.requests[-1].headers["authorization"])

    assert tokens[0] == tokens[1] != tokens[2]
    header = jwt.get_unverified_header(tokens[0].split()[1])
    assert header == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}


def test_apns_unregistered_token_disables_the_device(workspace: Workspace, fake_apns: FakeApns) -> None:
    apns_config(workspace, fake_apns)
    jane = make_profile(workspace)
    device = make_device(jane, "apns", IOS_TOKEN)
    fake_apns.unregistered.add(IOS_TOKEN)

    failed = dispatch_send(dispatch_id=prepare_one(jane, "push", PUSH).pk)

    assert (failed.status, failed.error_code) == (DispatchStatus.FAILED, "Unregistered")
    device.refresh_from_db()
    assert device.push_enabled is False
    assert engagement_names(jane) == [MESSAGE_BOUNCED]


def test_apns_bad_device_token_disables_the_device(workspace: Workspace, fake_apns: FakeApns) -> None:
    apns_config(workspace, fake_apns)
    jane = make_profile(workspace)
    device = make_device(jane, "apns", "nothex-token")

    failed = dispatch_send(dispatch_id=prepare_one(jane, "push", PUSH).pk)

    assert failed.error_code == "BadDeviceToken"
    assert Device.objects.get(pk=device.pk).push_enabled is False


def test_apns_service_unavailable_is_retried(workspace: Workspace, fake_apns: FakeApns) -> None:
    apns_config(workspace, fake_apns)
    jane = make_profile(workspace)
    make_device(jane, "apns", IOS_TOKEN)
    dispatch = prepare_one(jane, "push", PUSH)
    fake_apns.fail_next(apns_error(503, "ServiceUnavailable"))

    with pytest.raises(TransientError):
        dispatch_send(dispatch_id=dispatch.pk)
    assert dispatch_send(dispatch_id=dispatch.pk).status == DispatchStatus.SENT


def test_a_push_without_text_is_a_background_push(workspace: Workspace, fake_apns: FakeApns) -> None:
    apns_config(workspace, fake_apns)
    jane = make_profile(workspace)
    make_device(jane, "apns", IOS_TOKEN)

    dispatch_send(dispatch_id=prepare_one(jane, "push", {"data": {"sync": "inbox"}}).pk)

    [request] = fake_apns.requests
    assert (request.headers["apns-push-type"], request.headers["apns-priority"]) == ("background", "5")
    assert request.info["payload"]["aps"] == {"content-available": 1}


def test_each_push_device_gets_its_own_dispatch_through_its_provider(
    workspace: Workspace, fake_apns: FakeApns, fake_fcm: FakeFcm
) -> None:
    apns_config(workspace, fake_apns)
    fcm_config(workspace, fake_fcm)
    jane = make_profile(workspace)
    make_device(jane, "apns", IOS_TOKEN)
    make_device(jane, "fcm", "fcm-token-1")
    make_device(jane, "fcm", "switched-off", push_enabled=False)

    prepared = dispatch_prepare(
        workspace_id=workspace.pk, profile=jane, channel="push", content=PUSH, idempotency_key="c:1"
    )
    assert isinstance(prepared, list)
    results = [dispatch_send(dispatch_id=dispatch.pk) for dispatch in prepared]

    assert sorted(d.provider for d in results) == ["apns", "fcm"]
    assert all(d.status == DispatchStatus.SENT for d in results)
    assert len(fake_apns.notifications) == 1 and len(fake_fcm.messages) == 1
