"""SMS through a fake Twilio (REST API, Basic auth, Twilio's error codes), and Twilio's signed
webhooks back to us: status callbacks and inbound STOP/START."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.test import Client

from channels.api.twilio import twilio_signature
from channels.models import DispatchStatus, ProviderEvent
from channels.services.dispatch import dispatch_prepare, dispatch_send
from channels.testing import FakeTwilio
from channels.testing.twilio import twilio_error
from channels.transports.base import TransientError
from profiles.engagement import MESSAGE_BOUNCED, MESSAGE_DELIVERED, MESSAGE_RECEIVED
from profiles.models import SubscriptionState, Workspace
from profiles.tests.factories import WorkspaceFactory

from .dispatch_helpers import (
    engagement,
    engagement_names,
    fake_twilio,
    make_config,
    make_profile,
    prepare_one,
    twilio_config,
)

__all__ = ["fake_twilio"]

PHONE = "+14155550100"


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "http://testserver"


def test_sms_is_sent_with_a_status_callback_for_the_dispatch(workspace: Workspace, fake_twilio: FakeTwilio) -> None:
    twilio_config(workspace, fake_twilio)
    jane = make_profile(workspace, phone=PHONE)

    sent = dispatch_send(dispatch_id=prepare_one(jane, "sms", {"body": "Your code is 1234"}).pk)

    assert sent.status == DispatchStatus.SENT
    [message] = fake_twilio.messages
    assert sent.provider_message_id == message["sid"]
    assert (message["To"], message["From"], message["Body"]) == (PHONE, "+15005550006", "Your code is 1234")
    assert message["StatusCallback"] == f"http://testserver/channels/twilio/status?dispatch={sent.pk}"


def test_a_messaging_service_is_preferred_to_a_from_number(workspace: Workspace, fake_twilio: FakeTwilio) -> None:
    twilio_config(workspace, fake_twilio, messaging_service_sid="MG0123456789abcdef0123456789abcdef")
    jane = make_profile(workspace, phone=PHONE)

    dispatch_send(dispatch_id=prepare_one(jane, "sms", {"body": "Hi"}).pk)

    [message] = fake_twilio.messages
    assert message["MessagingServiceSid"] == "MG0123456789abcdef0123456789abcdef"
    assert "From" not in message


@pytest.mark.parametrize("marked", ["opted_out", "invalid"])
def test_a_number_that_opted_out_or_is_invalid_unsubscribes_sms(
    workspace: Workspace, fake_twilio: FakeTwilio, marked: str
) -> None:
    twilio_config(workspace, fake_twilio)
    getattr(fake_twilio, marked).add(PHONE)
    jane = make_profile(workspace, phone=PHONE)

    failed = dispatch_send(dispatch_id=prepare_one(jane, "sms", {"body": "Sale!"}).pk)

    assert failed.status == DispatchStatus.FAILED and failed.permanent_failure
    assert failed.error_code == {"opted_out": "21610", "invalid": "21211"}[marked]
    jane.refresh_from_db()
    assert jane.sms_subscription == SubscriptionState.UNSUBSCRIBED
    assert engagement_names(jane) == [MESSAGE_BOUNCED]
    unreachable = dispatch_prepare(
        workspace_id=workspace.pk, profile=jane, channel="sms", content={"body": "x"}, idempotency_key="next"
    )
    assert getattr(unreachable, "reason", None) == "unsubscribed from SMS"


def test_a_twilio_outage_is_retried(workspace: Workspace, fake_twilio: FakeTwilio) -> None:
    twilio_config(workspace, fake_twilio)
    jane = make_profile(workspace, phone=PHONE)
    dispatch = prepare_one(jane, "sms", {"body": "Hi"})
    fake_twilio.fail_next(twilio_error(503, 20500, "Internal Server Error"))

    with pytest.raises(TransientError):
        dispatch_send(dispatch_id=dispatch.pk)
    assert dispatch_send(dispatch_id=dispatch.pk).status == DispatchStatus.SENT
    assert len(fake_twilio.messages) == 1


# --- status callbacks ------------------------------------------------------------------------------


def post_signed(client: Client, url: str, params: dict[str, str], signature: str) -> Any:
    return client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature)


def test_a_delivered_callback_marks_the_dispatch_delivered_once(
    workspace: Workspace, fake_twilio: FakeTwilio, client: Client
) -> None:
    twilio_config(workspace, fake_twilio)
    jane = make_profile(workspace, phone=PHONE)
    sent = dispatch_send(dispatch_id=prepare_one(jane, "sms", {"body": "Hi"}).pk)
    url, params, signature = fake_twilio.status_callback(fake_twilio.messages[0], "delivered")

    for _ in range(2):  # Twilio repeats callbacks
        assert post_signed(client, url, params, signature).status_code == 204

    sent.refresh_from_db()
    assert sent.status == DispatchStatus.DELIVERED
    assert engagement_names(jane) == [MESSAGE_RECEIVED, MESSAGE_DELIVERED]
    assert engagement(jane, MESSAGE_DELIVERED).properties["dispatch_id"] == str(sent.pk)
    assert ProviderEvent.objects.filter(provider="twilio", dispatch=sent).count() == 1


def test_a_late_sent_callback_does_not_undo_delivered(
    workspace: Workspace, fake_twilio: FakeTwilio, client: Client
) -> None:
    twilio_config(workspace, fake_twilio)
    jane = make_profile(workspace, phone=PHONE)
    sent = dispatch_send(dispatch_id=prepare_one(jane, "sms", {"body": "Hi"}).pk)
    message = fake_twilio.messages[0]

    post_signed(client, *fake_twilio.status_callback(message, "delivered"))
    post_signed(client, *fake_twilio.status_callback(message, "sent"))

    sent.refresh_from_db()
    assert sent.status == DispatchStatus.DELIVERED


def test_an_undelivered_callback_to_a_landline_fails_and_unsubscribes(
    workspace: Workspace, fake_twilio: FakeTwilio, client: Client
) -> None:
    twilio_config(workspace, fake_twilio)
    jane = make_profile(workspace, phone=PHONE)
    sent = dispatch_send(dispatch_id=prepare_one(jane, "sms", {"body": "Hi"}).pk)

    response = post_signed(
        client, *fake_twilio.status_callback(fake_twilio.messages[0], "undelivered", error_code="30006")
    )

    assert response.status_code == 204
    sent.refresh_from_db()
    assert (sent.status, sent.error_code) == (DispatchStatus.FAILED, "30006")
    assert "landline" in sent.error_message
    jane.refresh_from_db()
    assert jane.sms_subscription == SubscriptionState.UNSUBSCRIBED
    assert engagement(jane, MESSAGE_BOUNCED).properties["reason"] == "30006"


def test_a_callback_with_a_bad_signature_is_refused(
    workspace: Workspace, fake_twilio: FakeTwilio, client: Client
) -> None:
    twilio_config(workspace, fake_twilio)
    jane = make_profile(workspace, phone=PHONE)
    sent = dispatch_send(dispatch_id=prepare_one(jane, "sms", {"body": "Hi"}).pk)
    url, params, _ = fake_twilio.status_callback(fake_twilio.messages[0], "delivered")

    assert post_signed(client, url, params, "forged").status_code == 403
    tampered = {**params, "MessageStatus": "failed"}
    _, _, good_signature = fake_twilio.status_callback(fake_twilio.messages[0], "delivered")
    assert post_signed(client, url, tampered, good_signature).status_code == 403
    sent.refresh_from_db()
    assert sent.status == DispatchStatus.SENT


def test_our_signature_matches_twilios_own_validator() -> None:
    request_validator = pytest.importorskip("twilio.request_validator")
    validator = request_validator.RequestValidator("12345")
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030"}
    assert twilio_signature(url, params, "12345") == validator.compute_signature(url, params)
    assert validator.validate(url, params, twilio_signature(url, params, "12345"))


# --- inbound STOP / START --------------------------------------------------------------------------


def test_stop_and_start_change_the_sms_subscription_of_people_with_that_number(
    workspace: Workspace, fake_twilio: FakeTwilio, client: Client
) -> None:
    config = twilio_config(workspace, fake_twilio)
    sid = config.settings["account_sid"]
    jane = make_profile(workspace, phone=PHONE)
    other_number = make_profile(workspace, phone="+14155550199")
    # Another workspace on the same Twilio account but another number: its own STOP list.
    elsewhere = cast(Workspace, WorkspaceFactory())
    make_config(
        elsewhere,
        "twilio",
        settings={"base_url": fake_twilio.url, "account_sid": sid, "from_number": "+15005550007"},
        secrets={"auth_token": fake_twilio.accounts[sid]},
    )
    same_person_elsewhere = make_profile(elsewhere, phone=PHONE)

    url = "http://testserver/channels/twilio/inbound"
    params, signature = fake_twilio.inbound(account_sid=sid, url=url, from_=PHONE, to="+15005550006", body=" stop ")
    response = client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    jane.refresh_from_db()
    other_number.refresh_from_db()
    same_person_elsewhere.refresh_from_db()
    assert jane.sms_subscription == SubscriptionState.UNSUBSCRIBED
    assert other_number.sms_subscription == SubscriptionState.SUBSCRIBED
    assert same_person_elsewhere.sms_subscription == SubscriptionState.SUBSCRIBED

    params, signature = fake_twilio.inbound(account_sid=sid, url=url, from_=PHONE, to="+15005550006", body="START")
    client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature)
    jane.refresh_from_db()
    assert jane.sms_subscription == SubscriptionState.SUBSCRIBED


def test_an_unsigned_inbound_message_changes_nothing(
    workspace: Workspace, fake_twilio: FakeTwilio, client: Client
) -> None:
    config = twilio_config(workspace, fake_twilio)
    jane = make_profile(workspace, phone=PHONE)
    params, _ = fake_twilio.inbound(
        account_sid=config.settings["account_sid"],
        url="http://testserver/channels/twilio/inbound",
        from_=PHONE,
        to="+15005550006",
        body="STOP",
    )

    response = client.post("/channels/twilio/inbound", params, HTTP_X_TWILIO_SIGNATURE="bm9wZQ==")

    assert response.status_code == 403
    jane.refresh_from_db()
    assert jane.sms_subscription == SubscriptionState.SUBSCRIBED
