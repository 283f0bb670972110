"""Conversions: events after a send, within the campaign's window, mark the delivery converted (once),
with revenue for purchases, and are recorded as engagement; the control group converts too."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, DeliveryType
from campaigns.tests.trigger_helpers import NOW, action_campaign, ingest, send_events, track
from profiles.engagement import MESSAGE_CONVERTED
from profiles.models import App, Event, Profile, Workspace

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rules", "trigger_clock")]


def _campaign(workspace: Workspace, **fields: Any) -> Campaign:
    fields.setdefault("conversion_events", [{"event": "Signed Up"}, {"purchase": True}])
    fields.setdefault("conversion_window_seconds", 86400)
    return action_campaign(
        workspace, triggers=[], delivery_type=DeliveryType.SCHEDULED, variants=(("A", 50), ("B", 50)), **fields
    )


def _sent(campaign: Campaign, user: str, app: App, *, at: datetime = NOW, **fields: Any) -> Delivery:
    ingest(app, {"type": "identify", "userId": user, "traits": {}, "messageId": f"id-{user}-{campaign.pk}"})
    profile = Profile.objects.get(external_id=user)
    fields.setdefault("status", DeliveryStatus.SENT)
    fields.setdefault("variant", campaign.variants.get(key="A"))
    return Delivery.objects.create(
        workspace=campaign.workspace,
        campaign=campaign,
        profile=profile,
        occurrence=fields.pop("occurrence", "2024-01-15T12:00"),
        scheduled_for=fields.pop("scheduled_for", at),
        sent_at=at if fields["status"] == DeliveryStatus.SENT else None,
        **fields,
    )


def _order(user: str, *lines: tuple[str, str, int]) -> dict[str, Any]:
    products = [{"product_id": p, "price": price, "quantity": q} for p, price, q in lines]
    return track(user, "Order Completed", {"currency": "USD", "products": products})


def test_an_event_within_the_window_converts_the_send_once(workspace: Workspace, app: App, trigger_clock: Any) -> None:
    campaign = _campaign(workspace)
    delivery = _sent(campaign, "ada", app)
    trigger_clock.shift(timedelta(hours=3))
    assert send_events(app, track("ada", "Signed Up")).converted == 1
    trigger_clock.shift(timedelta(hours=1))
    assert send_events(app, track("ada", "Signed Up")).converted == 0  # first conversion only

    delivery.refresh_from_db()
    assert delivery.converted_at == NOW + timedelta(hours=3)
    assert delivery.revenue is None
    converted = Event.objects.get(name=MESSAGE_CONVERTED)
    assert converted.profile_id == delivery.profile_id
    assert converted.timestamp == NOW + timedelta(hours=3)
    assert converted.properties == {
        "campaign_id": campaign.pk,
        "variant": "A",
        "send_id": str(delivery.pk),
        "event": "Signed Up",
    }


def test_events_before_the_send_or_after_the_window_do_not_convert(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    campaign = _campaign(workspace)
    early = _sent(campaign, "ada", app, at=NOW + timedelta(hours=1))
    late = _sent(campaign, "bob", app, at=NOW - timedelta(days=2))
    send_events(app, track("ada", "Signed Up"), track("bob", "Signed Up"))
    early.refresh_from_db()
    late.refresh_from_db()
    assert early.converted_at is None and late.converted_at is None
    assert not Event.objects.filter(name=MESSAGE_CONVERTED).exists()


def test_a_purchase_converts_with_its_revenue(workspace: Workspace, app: App, trigger_clock: Any) -> None:
    campaign = _campaign(workspace)
    delivery = _sent(campaign, "ada", app)
    trigger_clock.shift(timedelta(minutes=30))
    send_events(app, _order("ada", ("shoe", "49.90", 2), ("sock", "5.00", 1)))
    delivery.refresh_from_db()
    assert delivery.converted_at == NOW + timedelta(minutes=30)
    assert delivery.revenue == Decimal("104.80")
    assert Event.objects.get(name=MESSAGE_CONVERTED).properties["revenue"] == "104.8000"


def test_conversion_filters_and_unrelated_events(workspace: Workspace, app: App) -> None:
    campaign = _campaign(
        workspace,
        conversion_events=[
            {"event": "Plan Changed", "filters": [{"property": "plan", "op": "one_of", "value": ["pro", "team"]}]}
        ],
    )
    ada = _sent(campaign, "ada", app)
    bob = _sent(campaign, "bob", app)
    send_events(
        app,
        track("ada", "Plan Changed", {"plan": "free"}),
        track("bob", "Plan Changed", {"plan": "Team"}),
        track("ada", "Order Completed", {"products": [{"product_id": "x", "price": 1}]}),
    )
    ada.refresh_from_db()
    bob.refresh_from_db()
    assert ada.converted_at is None
    assert bob.converted_at == NOW


def test_the_control_group_converts_from_when_it_would_have_been_sent(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    campaign = _campaign(workspace, control_percent=10)
    held_out = _sent(campaign, "ada", app, status=DeliveryStatus.CONTROL, variant=None, scheduled_for=NOW)
    trigger_clock.shift(timedelta(hours=1))
    send_events(app, track("ada", "Signed Up"))
    held_out.refresh_from_db()
    assert held_out.converted_at == NOW + timedelta(hours=1)
    assert Event.objects.get(name=MESSAGE_CONVERTED).properties["variant"] == "control"


def test_a_stopped_campaign_still_counts_conversions(workspace: Workspace, app: App) -> None:
    campaign = _campaign(workspace, status=CampaignStatus.STOPPED)
    delivery = _sent(campaign, "ada", app)
    send_events(app, track("ada", "Signed Up"))
    delivery.refresh_from_db()
    assert delivery.converted_at == NOW


def test_a_send_of_several_steps_converts_once_on_its_last_step(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    campaign = _campaign(workspace)
    push = _sent(campaign, "ada", app, at=NOW - timedelta(hours=5))
    email = _sent(campaign, "ada", app, at=NOW - timedelta(hours=1), step_key="msg1", occurrence=push.occurrence)
    send_events(app, track("ada", "Signed Up"))
    push.refresh_from_db()
    email.refresh_from_db()
    assert push.converted_at is None
    assert email.converted_at == NOW
    assert Event.objects.filter(name=MESSAGE_CONVERTED).count() == 1
    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, track("ada", "Signed Up"))
    push.refresh_from_db()
    assert push.converted_at is None


def test_the_triggering_event_does_not_convert_its_own_send(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "purchase"}],
        conversion_events=[{"purchase": True}],
    )
    send_events(app, _order("ada", ("shoe", "10", 1)))
    Delivery.objects.filter(campaign=campaign).update(status=DeliveryStatus.SENT, sent_at=NOW)
    [delivery] = Delivery.objects.filter(campaign=campaign)
    # The same event processed again (a retried task) is not a conversion of what it triggered.
    from campaigns.services.triggers import campaign_events_process

    campaign_events_process(workspace_id=workspace.pk, event_ids=[delivery.trigger_event_id or 0])
    delivery.refresh_from_db()
    assert delivery.converted_at is None
