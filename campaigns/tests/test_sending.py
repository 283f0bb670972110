"""The sender: due deliveries become messages, once; what was not sent says why."""

from __future__ import annotations

import smtplib
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, DeliveryType
from campaigns.services.launch import campaign_launch, campaign_pause, campaign_resume, campaign_stop, campaigns_tick
from campaigns.services.sending import deliveries_claim, deliveries_enqueue_due, delivery_send_batch
from channels.models import Dispatch, DispatchStatus, InboxItem
from profiles.engagement import MESSAGE_RECEIVED
from profiles.models import Device, Event, Profile, PushProvider, SubscriptionState, Workspace
from profiles.services.engagement import engagement_record  # noqa: F401  (documents where events come from)
from profiles.signals import profile_merged

from .builder import NOW, action_campaign, campaign, person, segment

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def launch_and_start(c: Campaign) -> None:
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()


def send_due() -> dict[str, int]:
    """What beat and the workers do: claim due rows, send each batch."""
    totals: dict[str, int] = {}
    for batch in deliveries_enqueue_due(enqueue=False).batches:
        for status, count in delivery_send_batch(delivery_ids=batch).counts.items():
            totals[status] = totals.get(status, 0) + count
    return totals


def recipients() -> list[str]:
    return sorted(address for message in mail.outbox for address in message.to)


def test_a_scheduled_campaign_sends_each_person_one_personalised_email(workspace: Workspace, frozen: Any) -> None:
    ana = person(workspace, "ana", first_name="Ana")
    person(workspace, "ben")
    c = campaign(workspace, include=[segment(workspace, "All")], tags=["promo"])
    launch_and_start(c)

    assert send_due() == {"sent": 2}
    assert recipients() == ["ana@example.com", "ben@example.com"]
    by_to = {message.to[0]: message for message in mail.outbox}
    assert by_to["ana@example.com"].subject == "Hi Ana"
    assert by_to["ben@example.com"].body == "Hello friend!"

    delivery = Delivery.objects.get(campaign=c, profile=ana)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.sent_at == NOW
    assert delivery.sent_channels == ["email"]
    dispatch = Dispatch.objects.get(pk=delivery.dispatch_ids[0])
    assert dispatch.idempotency_key.startswith(f"delivery:{delivery.pk}:")
    assert dispatch.metadata == {
        "campaign_id": str(c.pk),
        "variant": "A",
        "delivery_id": str(delivery.pk),
        "send_id": str(delivery.pk),
        "channel": "email",
    }
    received = Event.objects.get(profile=ana, name=MESSAGE_RECEIVED)
    assert received.properties["campaign_id"] == c.pk and received.properties["send_id"] == str(delivery.pk)

    # Nothing is due any more, and sending the same batch again sends nothing.
    assert send_due() == {}
    assert delivery_send_batch(delivery_ids=[delivery.pk]).counts == {}
    assert len(mail.outbox) == 2


def test_a_batch_run_again_after_a_crash_sends_nobody_twice(workspace: Workspace, frozen: Any) -> None:
    for name in ("ana", "ben", "cid"):
        person(workspace, name)
    c = campaign(workspace, include=[segment(workspace, "All")])
    launch_and_start(c)
    batch = deliveries_enqueue_due(enqueue=False).batches[0]
    delivery_send_batch(delivery_ids=batch)
    # The worker died after the provider calls but before recording the outcomes: the rows are
    # still "sending" and the task is delivered again.
    Delivery.objects.filter(campaign=c).update(status=DeliveryStatus.SENDING, dispatch_ids=[], sent_at=None)
    assert delivery_send_batch(delivery_ids=batch).counts == {"sent": 3}
    assert len(mail.outbox) == 3
    assert Dispatch.objects.count() == 3


def test_stale_claims_are_recovered_by_the_sweep(workspace: Workspace, frozen: Any, settings: Any) -> None:
    settings.CAMPAIGNS_CLAIM_TIMEOUT = 600
    person(workspace, "ana")
    c = campaign(workspace, include=[segment(workspace, "All")])
    launch_and_start(c)
    claimed = deliveries_enqueue_due(enqueue=False)
    assert claimed.claimed == 1  # ... and the enqueue is lost
    assert deliveries_enqueue_due(enqueue=False).claimed == 0
    frozen.shift(timedelta(minutes=11))
    result = deliveries_enqueue_due(enqueue=False)
    assert result.recovered == 1
    delivery = Delivery.objects.get(campaign=c)
    assert delivery.attempts == 1 and delivery.claimed_at == NOW + timedelta(minutes=11)
    delivery_send_batch(delivery_ids=[delivery.pk])
    assert recipients() == ["ana@example.com"]


def test_a_delivery_that_keeps_losing_its_worker_is_given_up(workspace: Workspace, frozen: Any, settings: Any) -> None:
    settings.CAMPAIGNS_MAX_CLAIMS = 2
    person(workspace, "ana")
    c = campaign(workspace, include=[segment(workspace, "All")])
    launch_and_start(c)
    deliveries_enqueue_due(enqueue=False)
    for _ in range(2):
        frozen.shift(timedelta(minutes=11))
        deliveries_enqueue_due(enqueue=False)
    delivery = Delivery.objects.get(campaign=c)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.reason == "gave up: the worker sending it was lost 2 times"


def test_paused_campaigns_wait_and_stopped_ones_cancel(workspace: Workspace, frozen: Any) -> None:
    person(workspace, "ana")
    person(workspace, "ben")
    c = campaign(workspace, include=[segment(workspace, "All")])
    launch_and_start(c)
    campaign_pause(campaign=c)
    assert deliveries_enqueue_due(enqueue=False).claimed == 0  # paused rows are not claimed
    campaign_resume(campaign=c)
    batch = deliveries_enqueue_due(enqueue=False).batches[0]
    campaign_pause(campaign=c)  # paused between the claim and the send: the rows go back
    assert delivery_send_batch(delivery_ids=batch).counts == {"scheduled": 2}
    assert set(Delivery.objects.filter(campaign=c).values_list("status", flat=True)) == {DeliveryStatus.SCHEDULED}
    assert mail.outbox == []
    campaign_resume(campaign=c)
    batch = deliveries_enqueue_due(enqueue=False).batches[0]
    Campaign.objects.filter(pk=c.pk).update(status=CampaignStatus.STOPPED)  # stopped mid-flight
    assert delivery_send_batch(delivery_ids=batch).counts == {"cancelled": 2}
    assert mail.outbox == []


def test_what_was_not_sent_says_why(workspace: Workspace, frozen: Any) -> None:
    person(workspace, "vip", custom_attributes={"tier": "vip"})
    person(workspace, "plain")
    person(workspace, "gone", email_subscription=SubscriptionState.UNSUBSCRIBED, custom_attributes={"tier": "vip"})
    person(workspace, "nomail", email="", custom_attributes={"tier": "vip"})
    person(workspace, "broken", custom_attributes={"tier": "x"})
    template = {
        "subject": "{% if custom_attributes.tier == blank %}{% abort_message 'no tier' %}{% endif %}Hello",
        "text": "{% if custom_attributes.tier == 'x' %}{{ 1 | divided_by: 0 }}{% endif %}Your tier",
    }
    c = campaign(workspace, include=[segment(workspace, "All")], messages=[("email", template)])
    launch_and_start(c)
    send_due()
    outcome = {d.profile.external_id: (d.status, d.reason) for d in Delivery.objects.select_related("profile")}
    assert outcome["vip"] == (DeliveryStatus.SENT, "")
    assert outcome["plain"] == (DeliveryStatus.SKIPPED, "aborted by the template: no tier")
    assert outcome["gone"] == (DeliveryStatus.SKIPPED, "email: unsubscribed from email")
    assert outcome["nomail"] == (DeliveryStatus.SKIPPED, "email: no email address")
    status, reason = outcome["broken"]
    assert status == DeliveryStatus.FAILED
    assert reason == "email: template error: text: divided_by: can't divide by 0 (line 1)"


def test_first_reachable_channel_only_falls_back_from_push_to_email(workspace: Workspace, frozen: Any) -> None:
    person(workspace, "nopush", first_name="Nia")
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        messages=[("push", {"body": "Your cart misses you"}), ("email", {"subject": "Your cart", "text": "Come back"})],
        send_first_reachable_only=True,
    )
    launch_and_start(c)
    send_due()
    delivery = Delivery.objects.get(campaign=c)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.sent_channels == ["email"]
    assert delivery.reason == "push: no push-enabled device"
    assert [m.subject for m in mail.outbox] == ["Your cart"]


def test_first_reachable_channel_only_sends_one_channel(workspace: Workspace, frozen: Any) -> None:
    ana = person(workspace, "ana")
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        messages=[("in_app", {"layout": "modal", "body": "Hi in app"}), ("email", {"subject": "S", "text": "T"})],
        send_first_reachable_only=True,
    )
    launch_and_start(c)
    send_due()
    assert InboxItem.objects.filter(profile=ana).count() == 1
    assert mail.outbox == []


def test_a_multichannel_campaign_sends_every_channel(workspace: Workspace, frozen: Any) -> None:
    ana = person(workspace, "ana")
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        messages=[
            ("in_app", {"layout": "modal", "body": "Hi {{ external_id }}"}),
            ("email", {"subject": "S", "text": "T"}),
        ],
    )
    launch_and_start(c)
    send_due()
    delivery = Delivery.objects.get(campaign=c)
    assert delivery.sent_channels == ["email", "in_app"]
    assert len(delivery.dispatch_ids) == 2
    assert InboxItem.objects.get(profile=ana).content["body"] == "Hi ana"
    assert recipients() == ["ana@example.com"]


def test_a_delayed_message_is_a_follow_up_step_rechecked_when_due(workspace: Workspace, frozen: Any) -> None:
    stays = person(workspace, "stays", country="FR")
    leaves = person(workspace, "leaves", country="FR")
    french = segment(
        workspace, "French", {"all": [{"type": "attribute", "attribute": "country", "op": "eq", "value": "FR"}]}
    )
    c = campaign(
        workspace,
        include=[french],
        messages=[
            ("in_app", {"layout": "slideup", "body": "Welcome"}),
            ("email", {"subject": "Two days later", "text": "Still there?"}, 2 * 86400),
        ],
    )
    launch_and_start(c)
    send_due()
    assert mail.outbox == []  # the email is a later step
    follow_ups = Delivery.objects.filter(campaign=c).exclude(step_key="main")
    message_id = c.variants.get().messages.get(channel="email").pk
    assert {(d.step_key, d.scheduled_for, d.status) for d in follow_ups} == {
        (f"msg{message_id}", NOW + timedelta(days=2), DeliveryStatus.SCHEDULED)
    }
    assert follow_ups.count() == 2

    Profile.objects.filter(pk=leaves.pk).update(country="DE")
    frozen.shift(timedelta(days=2))
    send_due()
    assert recipients() == ["stays@example.com"]
    by_person = {d.profile_id: d for d in follow_ups.all()}
    assert by_person[stays.pk].status == DeliveryStatus.SENT
    assert (by_person[leaves.pk].status, by_person[leaves.pk].reason) == (
        DeliveryStatus.SKIPPED,
        "not in audience at send time",
    )


class RefusingBackend(BaseEmailBackend):
    """An SMTP server that is down: the connection is refused (nothing can have been sent)."""

    def open(self) -> bool:
        raise smtplib.SMTPConnectError(421, b"try again later")

    def send_messages(self, email_messages: Any) -> int:  # pragma: no cover - never reached
        raise AssertionError


def test_a_temporary_provider_failure_is_retried_later(workspace: Workspace, frozen: Any, settings: Any) -> None:
    person(workspace, "ana")
    c = campaign(workspace, include=[segment(workspace, "All")])
    launch_and_start(c)
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    send_due()
    delivery = Delivery.objects.get(campaign=c)
    assert delivery.status == DeliveryStatus.SCHEDULED
    assert delivery.reason.startswith("retrying: email:")
    assert delivery.scheduled_for == NOW + timedelta(seconds=30)
    assert Dispatch.objects.get().status == DispatchStatus.PENDING

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    frozen.shift(timedelta(seconds=30))
    send_due()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert recipients() == ["ana@example.com"]
    assert Dispatch.objects.count() == 1


def test_a_trigger_hand_off_claims_due_rows_itself(workspace: Workspace, frozen: Any) -> None:
    ana = person(workspace, "ana")
    ben = person(workspace, "ben")
    c = action_campaign(workspace, include=[segment(workspace, "All")])
    campaign_launch(campaign=c, actor=None)
    now_row = Delivery.objects.create(
        workspace=workspace, campaign=c, profile=ana, occurrence="evt-1", variant=c.variants.get(),
        scheduled_for=NOW, trigger_properties={"product": "Lamp"},
    )  # fmt: skip
    later_row = Delivery.objects.create(
        workspace=workspace, campaign=c, profile=ben, occurrence="evt-2", variant=c.variants.get(),
        scheduled_for=NOW + timedelta(hours=1),
    )  # fmt: skip
    assert delivery_send_batch(delivery_ids=[now_row.pk, later_row.pk]).counts == {"sent": 1}
    assert recipients() == ["ana@example.com"]
    later_row.refresh_from_db()
    assert later_row.status == DeliveryStatus.SCHEDULED


def test_trigger_properties_reach_the_template(workspace: Workspace, frozen: Any) -> None:
    ana = person(workspace, "ana")
    template = {"subject": "Still thinking about the {{ event_properties.product }}?", "text": "."}
    c = action_campaign(workspace, messages=[("email", template)])
    campaign_launch(campaign=c, actor=None)
    api = campaign(
        workspace,
        name="API",
        delivery_type=DeliveryType.API,
        send_at=None,
        messages=[("email", {"subject": "Code {{ api_trigger_properties.code }}", "text": "."})],
    )
    campaign_launch(campaign=api, actor=None)
    for target, properties in ((c, {"product": "Lamp"}), (api, {"code": "XY"})):
        Delivery.objects.create(
            workspace=workspace, campaign=target, profile=ana, occurrence="o", variant=target.variants.get(),
            scheduled_for=NOW, trigger_properties=properties,
        )  # fmt: skip
    send_due()
    assert sorted(m.subject for m in mail.outbox) == ["Code XY", "Still thinking about the Lamp?"]


def test_stop_cancels_what_is_pending(workspace: Workspace, frozen: Any) -> None:
    person(workspace, "ana")
    c = campaign(workspace, include=[segment(workspace, "All")])
    launch_and_start(c)
    campaign_stop(campaign=c)
    assert send_due() == {}
    assert Delivery.objects.get(campaign=c).status == DeliveryStatus.CANCELLED


def test_a_merge_moves_deliveries_to_the_surviving_profile(workspace: Workspace, frozen: Any) -> None:
    source = person(workspace, "source")
    target = person(workspace, "target")
    c = campaign(workspace, include=[segment(workspace, "All")])
    other = campaign(workspace, name="Other", include=[segment(workspace, "Everyone")])
    launch_and_start(c)
    campaign_launch(campaign=other, actor=None)
    campaigns_tick()
    Delivery.objects.filter(campaign=other, profile=target).delete()  # only the source has this one
    profile_merged.send(sender=Profile, workspace_id=workspace.pk, source_id=source.pk, target_id=target.pk)
    assert Delivery.objects.filter(profile=source).count() == 0
    assert Delivery.objects.filter(profile=target, campaign=c).count() == 1
    assert Delivery.objects.filter(profile=target, campaign=other).count() == 1


def test_push_reaches_every_device(workspace: Workspace, frozen: Any) -> None:
    """Reachability comes from channels: a person with a push device is reachable on push (the
    transport itself is channels' business; here it has no provider configured and fails)."""
    ana = person(workspace, "ana")
    Device.objects.create(
        workspace=workspace, profile=ana, device_id="d1", push_provider=PushProvider.FCM, push_token="tok",
        push_enabled=True, first_seen=NOW, last_seen=NOW,
    )  # fmt: skip
    c = campaign(workspace, include=[segment(workspace, "All")], messages=[("push", {"body": "Hi"})])
    launch_and_start(c)
    send_due()
    delivery = Delivery.objects.get(campaign=c)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.reason.startswith("push: provider error: not_configured")


def test_claims_stop_at_the_in_flight_limit(workspace: Workspace, frozen: Any, settings: Any) -> None:
    settings.CAMPAIGNS_MAX_IN_FLIGHT = 4
    for n in range(7):
        person(workspace, f"p{n}")
    c = campaign(workspace, include=[segment(workspace, "All")])
    launch_and_start(c)
    first = deliveries_enqueue_due(enqueue=False, batch_size=2)
    assert first.claimed == 4  # the limit, not the whole campaign
    assert deliveries_enqueue_due(enqueue=False, batch_size=2).claimed == 0
    delivery_send_batch(delivery_ids=first.batches[0])
    assert deliveries_enqueue_due(enqueue=False, batch_size=2).claimed == 2


def test_a_task_that_starts_late_restamps_its_claims(workspace: Workspace, frozen: Any, settings: Any) -> None:
    settings.CAMPAIGNS_CLAIM_TIMEOUT = 600
    person(workspace, "ana")
    c = campaign(workspace, include=[segment(workspace, "All")])
    launch_and_start(c)
    [batch] = deliveries_enqueue_due(enqueue=False).batches
    frozen.shift(timedelta(minutes=9))  # the task waited in a long queue
    deliveries_claim(delivery_ids=batch, now=timezone.now())  # what the task does first
    frozen.shift(timedelta(minutes=2))
    assert deliveries_enqueue_due(enqueue=False).recovered == 0  # not mistaken for a dead worker
