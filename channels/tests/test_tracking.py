"""ESP tracking webhooks, posted as the ESPs post them (payload fixtures of real shapes), through
anymail's views into dispatch status, engagement events and subscription changes."""

from __future__ import annotations

from typing import Any

import pytest

from channels.models import Dispatch, DispatchStatus, ProviderEvent
from profiles.models import Event, Profile, SubscriptionState, Workspace
from profiles.tests.factories import ProfileFactory

from .tracking_helpers import (
    DISPATCH_ID,
    MAILGUN_SIGNING_KEY,
    OTHER_DISPATCH_ID,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
    basic_auth,
    load,
    make_dispatch,
    post_webhook,
    sign_mailgun,
    timeline_names,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_settings(settings: Any) -> None:
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY,
    }


@pytest.fixture
def jane(workspace: Workspace) -> Profile:
    profile: Profile = ProfileFactory(workspace=workspace, email="jane@example.com")
    return profile


@pytest.fixture
def dispatch(jane: Profile) -> Dispatch:
    return make_dispatch(jane)


def _engagement(profile: Profile, name: str) -> list[Event]:
    return list(Event.objects.filter(profile=profile, name=name))


# --- Postmark -----------------------------------------------------------------------------------


def test_postmark_delivery_open_and_click_show_once_on_the_timeline_when_posted_twice(
    jane: Profile, dispatch: Dispatch
) -> None:
    for name in ("postmark_delivery.json", "postmark_open.json", "postmark_click.json"):
        for _ in range(2):
            assert post_webhook("postmark", load(name)).status_code == 200
    assert timeline_names(jane) == ["$message_delivered", "$message_opened", "$message_clicked"]
    click = _engagement(jane, "$message_clicked")[0]
    assert click.properties["url"] == "https://shop.example.com/spring?utm_source=email"
    assert click.properties["campaign_id"] == 12  # a number, as segments compare it
    assert click.properties["variant"] == "A"
    assert click.properties["channel"] == "email"
    assert click.properties["dispatch_id"] == str(DISPATCH_ID)
    assert click.timestamp.isoformat().startswith("2030-01-15T16:41:03")
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.DELIVERED
    assert ProviderEvent.objects.filter(dispatch=dispatch).count() == 3


def test_webhooks_without_the_shared_secret_are_refused(jane: Profile, dispatch: Dispatch) -> None:
    assert post_webhook("postmark", load("postmark_open.json"), auth="").status_code == 400
    assert post_webhook("postmark", load("postmark_open.json"), auth=basic_auth(password="guess")).status_code == 400
    assert not ProviderEvent.objects.exists()
    assert timeline_names(jane) == []


def test_postmark_hard_bounce_marks_the_send_and_unsubscribes_the_email(jane: Profile, dispatch: Dispatch) -> None:
    post_webhook("postmark", load("postmark_delivery.json"))
    for _ in range(2):
        assert post_webhook("postmark", load("postmark_bounce_hard.json")).status_code == 200
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.BOUNCED  # a bounce may follow a delivery
    assert dispatch.permanent_failure
    assert "does not exist" in dispatch.error_message
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.UNSUBSCRIBED
    assert timeline_names(jane) == ["$message_delivered", "$message_bounced"]
    # A late open (a preview pane, a proxy) never moves the status back.
    post_webhook("postmark", load("postmark_open.json"))
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.BOUNCED


def test_a_soft_bounce_does_not_unsubscribe(jane: Profile, dispatch: Dispatch) -> None:
    assert post_webhook("postmark", load("postmark_bounce_soft.json")).status_code == 200
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.SENT
    assert dispatch.error_code == "soft_bounce"
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.SUBSCRIBED
    assert timeline_names(jane) == []


def test_a_hard_bounce_of_an_address_the_person_no_longer_has_does_not_unsubscribe(
    jane: Profile, dispatch: Dispatch
) -> None:
    Profile.objects.filter(pk=jane.pk).update(email="jane.new@example.com")
    post_webhook("postmark", load("postmark_bounce_hard.json"))
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.SUBSCRIBED
    assert timeline_names(jane) == ["$message_bounced"]


@pytest.mark.parametrize("fixture", ["postmark_spam_complaint.json", "postmark_subscription_change.json"])
def test_complaints_and_esp_unsubscribes_unsubscribe_the_email(jane: Profile, dispatch: Dispatch, fixture: str) -> None:
    assert post_webhook("postmark", load(fixture)).status_code == 200
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.UNSUBSCRIBED
    event = ProviderEvent.objects.get()
    assert event.dispatch == dispatch
    assert event.event_type in {"complained", "unsubscribed"}
    expected = "$message_complained" if event.event_type == "complained" else "$unsubscribed"
    assert timeline_names(jane) == [expected]


def test_events_without_metadata_find_the_dispatch_by_the_provider_message_id(jane: Profile) -> None:
    dispatch = make_dispatch(jane, provider_message_id="883953f4-6105-42a2-a16a-77a8eac79483")
    payload = load("postmark_open.json")
    del payload["Metadata"]
    post_webhook("postmark", payload)
    assert timeline_names(jane) == ["$message_opened"]
    assert ProviderEvent.objects.get().dispatch == dispatch


def test_events_for_unknown_messages_are_kept_and_answered(jane: Profile) -> None:
    assert post_webhook("postmark", load("postmark_open.json")).status_code == 200
    event = ProviderEvent.objects.get()
    assert event.dispatch is None and event.workspace is None
    assert event.payload["MessageID"] == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert timeline_names(jane) == []


def test_a_delivery_reported_after_a_bounce_does_not_undo_it(jane: Profile, dispatch: Dispatch) -> None:
    post_webhook("postmark", load("postmark_bounce_hard.json"))
    post_webhook("postmark", load("postmark_delivery.json"))
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.BOUNCED


# --- Mailgun (signed) ---------------------------------------------------------------------------


def test_mailgun_signed_events_are_recorded_once_even_when_retried_with_a_new_token(
    jane: Profile, dispatch: Dispatch
) -> None:
    for name in ("mailgun_delivered.json", "mailgun_opened.json", "mailgun_clicked.json"):
        payload = load(name)
        assert post_webhook("mailgun", sign_mailgun(payload)).status_code == 200
        # Mailgun's retry is a new delivery attempt: a new token and signature, the same event id.
        retry = sign_mailgun(payload, token=payload["signature"]["token"][::-1])
        assert post_webhook("mailgun", retry).status_code == 200
    assert timeline_names(jane) == ["$message_delivered", "$message_opened", "$message_clicked"]
    assert _engagement(jane, "$message_clicked")[0].properties["url"] == "https://shop.example.com/spring"
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.DELIVERED


def test_mailgun_with_a_bad_signature_is_refused(jane: Profile, dispatch: Dispatch) -> None:
    forged = sign_mailgun(load("mailgun_opened.json"), key="not-the-key")
    assert post_webhook("mailgun", forged).status_code == 400
    assert timeline_names(jane) == []


def test_mailgun_permanent_failure_bounces_and_complaint_unsubscribes(jane: Profile, dispatch: Dispatch) -> None:
    post_webhook("mailgun", sign_mailgun(load("mailgun_failed_permanent.json")))
    dispatch.refresh_from_db()
    assert dispatch.status == DispatchStatus.BOUNCED
    assert "5.1.1" in dispatch.error_message
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.UNSUBSCRIBED
    Profile.objects.filter(pk=jane.pk).update(email_subscription=SubscriptionState.OPTED_IN)
    post_webhook("mailgun", sign_mailgun(load("mailgun_complained.json")))
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.UNSUBSCRIBED


# --- Brevo --------------------------------------------------------------------------------------


def test_brevo_events_are_recorded_once(jane: Profile, dispatch: Dispatch) -> None:
    for name in ("brevo_delivered.json", "brevo_unique_opened.json", "brevo_click.json", "brevo_soft_bounce.json"):
        for _ in range(2):
            assert post_webhook("brevo", load(name)).status_code == 200
    assert timeline_names(jane) == ["$message_delivered", "$message_opened", "$message_clicked"]
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.SUBSCRIBED  # a soft bounce is not a hard one
    assert ProviderEvent.objects.filter(provider="brevo").count() == 4


# --- SparkPost (batched) ------------------------------------------------------------------------


def test_sparkpost_batch_with_a_ping_delivery_click_and_another_persons_bounce(
    jane: Profile, dispatch: Dispatch, workspace: Workspace
) -> None:
    john = ProfileFactory(workspace=workspace, email="old.address@example.com")
    johns = make_dispatch(john, dispatch_id=OTHER_DISPATCH_ID, address="old.address@example.com")
    for _ in range(2):
        assert post_webhook("sparkpost", load("sparkpost_batch.json")).status_code == 200
    assert timeline_names(jane) == ["$message_delivered", "$message_clicked"]
    assert timeline_names(john) == ["$message_bounced"]
    johns.refresh_from_db()
    assert johns.status == DispatchStatus.BOUNCED
    john.refresh_from_db()
    assert john.email_subscription == SubscriptionState.UNSUBSCRIBED
    assert ProviderEvent.objects.count() == 3
