"""Action-based campaigns: events through the intake's service, trigger matching as the task runs it,
and the Delivery rows a person would be sent (status, time, variant, properties)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from campaigns.models import CampaignStatus, Delivery, DeliveryStatus
from campaigns.services.audience import audience_size
from campaigns.services.sending import delivery_send_batch
from campaigns.services.triggers import campaign_events_process
from campaigns.services.whynot import why_not
from campaigns.tests.trigger_helpers import (
    NOW,
    action_campaign,
    deliveries,
    identify,
    ingest,
    send_events,
    track,
)
from profiles.engagement import CONTROL_GROUP_ENROLLED, MESSAGE_OPENED, SESSION_STARTED
from profiles.models import App, Event, Profile, Workspace
from profiles.services.engagement import Engagement, engagement_record
from segments.services import segment_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rules", "trigger_clock")]


def added(user: str, cart: str = "cart-1", product: str = "Red Shoes", **fields: Any) -> dict[str, Any]:
    return track(user, "Product Added", {"cart_id": cart, "product": product, "price": 80}, **fields)


# --- triggering ---------------------------------------------------------------------------------


def test_a_custom_event_schedules_a_delivery_keyed_by_its_message_id(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Product Added"}])
    message = added("ada", messageId="m-1")
    send_events(app, message, track("bob", "Something Else"))

    [delivery] = deliveries(campaign)
    assert delivery.profile.external_id == "ada"
    assert delivery.status == DeliveryStatus.SCHEDULED
    assert delivery.scheduled_for == NOW
    assert delivery.occurrence == "m-1"
    assert delivery.trigger_properties == {"cart_id": "cart-1", "product": "Red Shoes", "price": 80}
    assert delivery.variant is not None and delivery.variant.key == "A"
    assert delivery.trigger_event_id == Event.objects.get(message_id="m-1").pk


def test_a_replayed_event_or_a_rerun_task_triggers_nothing_more(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace, triggers=[{"type": "custom_event", "event": "Product Added"}], reeligible=True
    )
    event_ids = ingest(app, added("ada", messageId="m-1"))
    campaign_events_process(workspace_id=workspace.pk, event_ids=event_ids)
    campaign_events_process(workspace_id=workspace.pk, event_ids=event_ids)  # a duplicated task
    assert ingest(app, added("ada", messageId="m-1")) == []  # the SDK resends: stored once, nothing to match
    assert len(deliveries(campaign)) == 1


def test_property_filters_narrow_the_trigger(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace,
        triggers=[
            {
                "type": "custom_event",
                "event": "Cart Viewed",
                "filters": [{"property": "value", "op": "gt", "value": 100}],
            }
        ],
    )
    send_events(app, track("ada", "Cart Viewed", {"value": "149.90"}), track("bob", "Cart Viewed", {"value": 20}))
    assert [d.profile.external_id for d in deliveries(campaign)] == ["ada"]


def test_people_who_fired_the_trigger_before_launch_do_not_qualify(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace, triggers=[{"type": "custom_event", "event": "Product Added"}], launched_at=NOW - timedelta(minutes=5)
    )
    send_events(
        app,
        added("early", timestamp=(NOW - timedelta(minutes=10)).isoformat()),  # queued offline, sent late
        added("ada", timestamp=(NOW - timedelta(minutes=1)).isoformat()),
    )
    assert [d.profile.external_id for d in deliveries(campaign)] == ["ada"]


def test_the_campaigns_start_and_end_dates_bound_the_triggers(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Product Added"}],
        starts_at=NOW + timedelta(hours=1),
    )
    send_events(app, added("ada"))
    assert deliveries(campaign) == []
    campaign.starts_at, campaign.ends_at = None, NOW - timedelta(minutes=1)
    campaign.save()
    send_events(app, added("ada"))
    assert deliveries(campaign) == []


def test_a_delay_past_the_campaigns_end_sends_nothing(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Product Added"}],
        delay={"type": "duration", "seconds": 7200},
        ends_at=NOW + timedelta(hours=1),
    )
    send_events(app, added("ada"))
    [delivery] = deliveries(campaign)
    assert delivery.status == DeliveryStatus.SKIPPED
    assert "the delay ends after the campaign's end" in delivery.reason


def test_one_trigger_per_person_and_campaign_per_second(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Tapped"}], reeligible=True)
    at = NOW.isoformat()
    send_events(app, track("ada", "Tapped", timestamp=at), track("ada", "Tapped", timestamp=at), track("bob", "Tapped"))
    assert sorted(str(d.profile.external_id) for d in deliveries(campaign)) == ["ada", "bob"]


# --- re-eligibility -----------------------------------------------------------------------------


def _mark_sent(campaign_id: int, at: datetime) -> None:
    Delivery.objects.filter(campaign_id=campaign_id, status=DeliveryStatus.SCHEDULED).update(
        status=DeliveryStatus.SENT, sent_at=at
    )


def test_without_re_eligibility_a_person_gets_the_campaign_once(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Tapped"}])
    send_events(app, track("ada", "Tapped"))
    trigger_clock.shift(timedelta(days=30))
    _mark_sent(campaign.pk, NOW)
    send_events(app, track("ada", "Tapped"))
    assert len(deliveries(campaign)) == 1


def test_re_eligibility_counts_from_the_last_receipt(workspace: Workspace, app: App, trigger_clock: Any) -> None:
    campaign = action_campaign(
        workspace, triggers=[{"type": "custom_event", "event": "Tapped"}], reeligible=True, reeligibility_seconds=86400
    )
    send_events(app, track("ada", "Tapped"))
    trigger_clock.shift(timedelta(hours=2))
    send_events(app, track("ada", "Tapped"))  # still pending: not a second one
    assert len(deliveries(campaign)) == 1
    _mark_sent(campaign.pk, NOW + timedelta(hours=2))
    trigger_clock.shift(timedelta(hours=12))
    send_events(app, track("ada", "Tapped"))  # 12 h after receipt: not yet
    assert len(deliveries(campaign)) == 1
    trigger_clock.shift(timedelta(hours=13))
    send_events(app, track("ada", "Tapped"))  # 25 h after receipt
    assert [d.status for d in deliveries(campaign)] == [DeliveryStatus.SENT, DeliveryStatus.SCHEDULED]


# --- delays -------------------------------------------------------------------------------------


def test_next_weekday_at_a_time_in_the_persons_time_zone(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Tapped"}],
        delay={"type": "next_weekday", "weekday": "wednesday", "time": "10:00"},
    )
    ingest(app, identify("tokyo", timezone="Asia/Tokyo"), identify("nowhere"))
    send_events(app, track("tokyo", "Tapped"), track("nowhere", "Tapped"))
    times = {d.profile.external_id: d.scheduled_for for d in deliveries(campaign)}
    assert times["tokyo"] == datetime(2024, 1, 17, 1, 0, tzinfo=UTC)  # Wednesday 10:00 in Tokyo
    assert times["nowhere"] == datetime(2024, 1, 17, 10, 0, tzinfo=UTC)  # the workspace default (UTC)


def test_in_n_days_at_a_time_uses_the_workspace_zone_for_unknown_people(workspace: Workspace, app: App) -> None:
    workspace.default_time_zone = "America/New_York"
    workspace.save()
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Tapped"}],
        delay={"type": "days_at", "days": 2, "time": "09:30"},
    )
    send_events(app, track("ada", "Tapped"))
    [delivery] = deliveries(campaign)
    assert delivery.scheduled_for == datetime(2024, 1, 17, 14, 30, tzinfo=UTC)


def test_best_time_is_the_hour_the_person_usually_opens_the_app(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Tapped"}],
        delay={"type": "best_time"},
        default_send_hour=10,
    )
    # Ada opens the app at 19:00 Paris time on most days of the last weeks.
    ingest(app, identify("ada", timezone="Europe/Paris"))
    opens = [
        track("ada", "Application Opened", timestamp=(NOW - timedelta(days=d, hours=-6)).isoformat())
        for d in range(1, 8)
    ]
    ingest(app, *opens)
    send_events(app, track("ada", "Tapped"), track("bob", "Tapped"))
    times = {d.profile.external_id: d.scheduled_for for d in deliveries(campaign)}
    assert times["ada"] == datetime(2024, 1, 15, 18, 0, tzinfo=UTC)  # 19:00 in Paris, today
    assert times["bob"] == datetime(2024, 1, 16, 10, 0, tzinfo=UTC)  # no history: the default hour, tomorrow


# --- exception events ---------------------------------------------------------------------------


def _abandoned_cart(workspace: Workspace) -> Any:
    return action_campaign(
        workspace,
        name="Abandoned cart",
        triggers=[{"type": "custom_event", "event": "Product Added"}],
        delay={"type": "duration", "seconds": 3600},
        exception_events=[{"event": "Order Completed", "match_property": "cart_id"}],
        reeligible=True,
    )


def test_an_order_for_the_same_cart_cancels_the_pending_send(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    campaign = _abandoned_cart(workspace)
    send_events(app, added("ada", cart="c-1"), added("bob", cart="c-2"))
    trigger_clock.shift(timedelta(minutes=20))
    result = send_events(
        app, track("ada", "Order Completed", {"cart_id": "c-1"}), track("bob", "Order Completed", {"cart_id": "c-9"})
    )
    assert result.cancelled == 1
    by_person = {d.profile.external_id: d for d in deliveries(campaign)}
    assert by_person["ada"].status == DeliveryStatus.CANCELLED
    assert by_person["ada"].reason == "exception event Order Completed"
    assert by_person["bob"].status == DeliveryStatus.SCHEDULED  # another cart's order
    assert by_person["bob"].scheduled_for == NOW + timedelta(hours=1)


def test_a_person_cancelled_by_an_exception_qualifies_again(workspace: Workspace, app: App, trigger_clock: Any) -> None:
    campaign = _abandoned_cart(workspace)
    campaign.reeligible = False
    campaign.save()
    send_events(app, added("ada", cart="c-1"))
    trigger_clock.shift(timedelta(minutes=5))
    send_events(app, track("ada", "Order Completed", {"cart_id": "c-1"}))
    trigger_clock.shift(timedelta(minutes=5))
    send_events(app, added("ada", cart="c-2"))
    assert [(d.match_value, d.status) for d in deliveries(campaign)] == [
        ("c-1", DeliveryStatus.CANCELLED),
        ("c-2", DeliveryStatus.SCHEDULED),
    ]


def test_within_one_batch_event_time_decides_what_an_exception_cancels(workspace: Workspace, app: App) -> None:
    campaign = _abandoned_cart(workspace)
    t = NOW - timedelta(minutes=3)
    send_events(
        app,
        # Ada orders, then adds to the same cart id again (a new cart session): the later add stands.
        added("ada", cart="c-1", timestamp=(t + timedelta(minutes=2)).isoformat()),
        track("ada", "Order Completed", {"cart_id": "c-1"}, timestamp=(t + timedelta(minutes=1)).isoformat()),
        # Bob adds, then orders: cancelled even though both arrive together.
        added("bob", cart="c-2", timestamp=t.isoformat()),
        track("bob", "Order Completed", {"cart_id": "c-2"}, timestamp=(t + timedelta(minutes=1)).isoformat()),
    )
    statuses = {d.profile.external_id: d.status for d in deliveries(campaign)}
    assert statuses == {"ada": DeliveryStatus.SCHEDULED, "bob": DeliveryStatus.CANCELLED}


def test_an_exception_processed_before_its_trigger_still_cancels(workspace: Workspace, app: App) -> None:
    """Two workers may take the batches in either order: the order event stored first (or processed
    first) still cancels the add that happened before it."""
    campaign = _abandoned_cart(workspace)
    add_ids = ingest(app, added("ada", cart="c-1", timestamp=(NOW - timedelta(minutes=2)).isoformat()))
    order_ids = ingest(app, track("ada", "Order Completed", {"cart_id": "c-1"}))
    campaign_events_process(workspace_id=workspace.pk, event_ids=order_ids)
    campaign_events_process(workspace_id=workspace.pk, event_ids=add_ids)
    [delivery] = deliveries(campaign)
    assert (delivery.status, delivery.reason) == (DeliveryStatus.CANCELLED, "exception event Order Completed")


def test_an_exception_without_match_property_cancels_every_pending_send(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Onboarding Started"}],
        delay={"type": "duration", "seconds": 86400},
        exception_events=[{"event": "Onboarding Completed"}],
    )
    send_events(app, track("ada", "Onboarding Started"), track("bob", "Onboarding Started"))
    send_events(app, track("ada", "Onboarding Completed"))
    assert {d.profile.external_id: d.status for d in deliveries(campaign)} == {
        "ada": DeliveryStatus.CANCELLED,
        "bob": DeliveryStatus.SCHEDULED,
    }


# --- audience, control group --------------------------------------------------------------------


def test_the_audience_is_checked_when_the_trigger_fires(workspace: Workspace, app: App) -> None:
    us = segment_create(
        workspace=workspace,
        name="US",
        definition={"all": [{"type": "location", "field": "country", "op": "eq", "value": "US"}]},
    )
    vip = segment_create(
        workspace=workspace,
        name="Staff",
        definition={
            "all": [
                {"type": "custom_attribute", "attribute": "staff", "data_type": "boolean", "op": "eq", "value": True}
            ]
        },
    )
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Tapped"}])
    campaign.include_segments.set([us])
    campaign.exclude_segments.set([vip])
    ingest(
        app,
        identify("us", address={"country": "US"}),
        identify("fr", address={"country": "FR"}),
        identify("staff", address={"country": "US"}, staff=True),
    )
    send_events(app, track("us", "Tapped"), track("fr", "Tapped"), track("staff", "Tapped"))
    assert [d.profile.external_id for d in deliveries(campaign)] == ["us"]


def test_an_audience_of_exclude_segments_only_is_checked_again_at_send_time(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    """Everyone but the churned: the exclusion holds when the trigger fires and again when the
    delayed send falls due (the person may have churned meanwhile); admin says so too."""
    churned = segment_create(
        workspace=workspace,
        name="Churned",
        definition={"all": [{"type": "custom_attribute", "attribute": "churned", "data_type": "boolean", "op": "eq",
                             "value": True}]},
    )  # fmt: skip
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Tapped"}],
        delay={"type": "duration", "seconds": 3600},
        recheck_audience=True,
        channel="email",
        template={"subject": "We saved your seat", "text": "See you soon"},
    )
    campaign.exclude_segments.set([churned])
    ingest(
        app,
        *[identify(name, email=f"{name}@example.com", churned=name == "gone") for name in ("ada", "bob", "gone")],
    )
    assert str(audience_size(campaign=campaign)) == "2"

    send_events(app, track("ada", "Tapped"), track("bob", "Tapped"), track("gone", "Tapped"))
    assert [d.profile.external_id for d in deliveries(campaign)] == ["ada", "bob"]

    ingest(app, identify("bob", churned=True))  # churns before the send
    trigger_clock.shift(timedelta(hours=1))
    delivery_send_batch(delivery_ids=[d.pk for d in deliveries(campaign)])
    sent = {d.profile.external_id: (d.status, d.reason) for d in deliveries(campaign)}
    assert sent["bob"] == (DeliveryStatus.SKIPPED, "not in audience at send time")
    assert sent["ada"] == (DeliveryStatus.SENT, "")
    assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    bob = Profile.objects.get(external_id="bob")
    assert 'now: not in audience: in the excluded segment "Churned"' in why_not(campaign=campaign, profile=bob)


def test_the_control_group_is_recorded_and_sent_nothing(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Tapped"}], control_percent=100)
    send_events(app, track("ada", "Tapped"))
    [delivery] = deliveries(campaign)
    assert (delivery.status, delivery.variant) == (DeliveryStatus.CONTROL, None)
    enrolled = Event.objects.get(name=CONTROL_GROUP_ENROLLED)
    assert enrolled.profile_id == delivery.profile_id
    assert enrolled.properties == {"campaign_id": campaign.pk, "variant": "control", "send_id": str(delivery.pk)}


def test_variants_split_deterministically_and_stay_stable(workspace: Workspace, app: App, trigger_clock: Any) -> None:
    campaign = action_campaign(
        workspace,
        triggers=[{"type": "custom_event", "event": "Tapped"}],
        variants=(("A", 50), ("B", 50)),
        reeligible=True,
        reeligibility_seconds=0,
    )
    send_events(app, *[track(f"user-{n}", "Tapped") for n in range(40)])
    first = {d.profile_id: d.variant.key for d in deliveries(campaign) if d.variant}
    assert set(first.values()) == {"A", "B"}
    _mark_sent(campaign.pk, NOW)
    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, *[track(f"user-{n}", "Tapped") for n in range(40)])
    again = {d.profile_id: d.variant.key for d in deliveries(campaign, status=DeliveryStatus.SCHEDULED) if d.variant}
    assert again == first


# --- other trigger types ------------------------------------------------------------------------


def test_session_start_purchase_and_engagement_triggers(workspace: Workspace, app: App) -> None:
    sessions = action_campaign(workspace, name="Sessions", triggers=[{"type": "session_start"}])
    purchases = action_campaign(
        workspace,
        name="Purchases",
        triggers=[{"type": "purchase", "filters": [{"property": "revenue", "op": "gte", "value": 100}]}],
    )
    opened = action_campaign(
        workspace, name="Opened", triggers=[{"type": "engagement", "campaign_id": purchases.pk, "action": "opened"}]
    )
    send_events(
        app,
        track("ada", "Application Opened"),
        track(
            "bob",
            "Order Completed",
            {"revenue": 120, "currency": "USD", "products": [{"product_id": "p", "price": 120}]},
        ),
        track(
            "cy", "Order Completed", {"revenue": 20, "currency": "USD", "products": [{"product_id": "p", "price": 20}]}
        ),
    )
    assert [d.profile.external_id for d in deliveries(sessions)] == ["ada"]
    assert Event.objects.filter(name=SESSION_STARTED).count() >= 1
    assert [d.profile.external_id for d in deliveries(purchases)] == ["bob"]

    bob = Profile.objects.get(external_id="bob")
    event_ids = engagement_record(
        workspace_id=workspace.pk,
        engagements=[
            Engagement(
                profile_id=bob.pk, name=MESSAGE_OPENED, dedupe_key="open-1", properties={"campaign_id": purchases.pk}
            )
        ],
    )
    campaign_events_process(workspace_id=workspace.pk, event_ids=event_ids)
    assert [d.profile.external_id for d in deliveries(opened)] == ["bob"]


def test_entering_a_segment_triggers_once_per_entry(workspace: Workspace, app: App, trigger_clock: Any) -> None:
    ingest(app, identify("already", plan="pro"), identify("ada", plan="free"))
    pro = segment_create(
        workspace=workspace,
        name="Pro",
        definition={
            "all": [
                {"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": "eq", "value": "pro"}
            ]
        },
    )
    campaign = action_campaign(
        workspace, triggers=[{"type": "segment_entry", "segment_id": pro.pk}], reeligible=True, reeligibility_seconds=0
    )
    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, identify("already", plan="pro"), identify("ada", plan="pro"))
    [delivery] = deliveries(campaign)
    assert delivery.profile.external_id == "ada"  # "already" was in the segment at launch
    assert delivery.trigger_properties == {"segment_id": pro.pk, "segment_name": "Pro"}

    _mark_sent(campaign.pk, NOW)
    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, track("ada", "Tapped"))  # still inside: no new entry
    assert len(deliveries(campaign)) == 1
    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, identify("ada", plan="free"))  # leaves
    trigger_clock.shift(timedelta(minutes=1))
    send_events(app, identify("ada", plan="pro"))  # and comes back: a new entry
    assert len(deliveries(campaign)) == 2


def test_paused_campaigns_do_not_trigger(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(
        workspace, triggers=[{"type": "custom_event", "event": "Tapped"}], status=CampaignStatus.PAUSED
    )
    send_events(app, track("ada", "Tapped"))
    assert deliveries(campaign) == []


def test_a_merge_moves_the_persons_deliveries(workspace: Workspace, app: App) -> None:
    campaign = action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Tapped"}])
    ingest(app, identify("ada"))
    send_events(app, {"type": "track", "anonymousId": "anon-1", "event": "Tapped", "messageId": "m-anon"})
    [before] = deliveries(campaign)
    assert before.profile.external_id is None
    ingest(app, {"type": "identify", "userId": "ada", "anonymousId": "anon-1", "messageId": "m-id"})
    ada = Profile.objects.get(external_id="ada")
    [after] = deliveries(campaign)
    assert after.pk == before.pk and after.profile_id == ada.pk
    assert timezone.now() == NOW


def test_a_batch_of_events_no_campaign_cares_about_costs_one_query(
    workspace: Workspace, app: App, django_assert_max_num_queries: Any, settings: Any
) -> None:
    settings.CAMPAIGN_RULES_CACHE_SECONDS = 60
    action_campaign(workspace, triggers=[{"type": "custom_event", "event": "Product Added"}])
    event_ids = ingest(app, *[track(f"user-{n}", "Product Viewed") for n in range(100)])
    campaign_events_process(workspace_id=workspace.pk, event_ids=event_ids)  # warms the rules cache
    with django_assert_max_num_queries(1):
        campaign_events_process(workspace_id=workspace.pk, event_ids=event_ids)
