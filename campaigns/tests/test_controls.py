"""Delivery controls, enforced by the sender: quiet hours, global frequency caps, rate limits."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail

from campaigns.models import Campaign, Delivery, DeliveryStatus, FrequencyCapRule, QuietHours
from campaigns.services.controls import (
    QuietWindow,
    best_time_minutes,
    cap_window_start,
    person_zone,
    quiet_hours_end,
)
from campaigns.services.launch import campaign_launch, campaigns_tick
from campaigns.services.sending import deliveries_enqueue_due, delivery_send_batch
from profiles.models import Profile, Workspace

from .builder import NOW, campaign, person, segment

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def start(c: Campaign) -> None:
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()


def send_due() -> None:
    for batch in deliveries_enqueue_due(enqueue=False).batches:
        delivery_send_batch(delivery_ids=batch)


def outcome(c: Campaign, profile: Profile) -> tuple[str, str]:
    d = Delivery.objects.get(campaign=c, profile=profile, step_key="main")
    return d.status, d.reason


# --- time helpers ----------------------------------------------------------------------------------


def test_quiet_windows_across_midnight_and_their_end_in_the_persons_zone() -> None:
    night = QuietWindow(time(22, 0), time(6, 0))
    assert night.contains(time(23, 30)) and night.contains(time(5, 59)) and not night.contains(time(6, 0))
    day = QuietWindow(time(12, 0), time(14, 0))
    assert day.contains(time(13, 0)) and not day.contains(time(14, 0))
    assert not QuietWindow(time(9, 0), time(9, 0)).contains(time(9, 0))  # empty
    # 23:30 in Paris (22:30 UTC) -> the window ends at 06:00 Paris the next morning (05:00 UTC).
    now = datetime(2030, 1, 8, 22, 30, tzinfo=UTC)
    assert quiet_hours_end(window=night, now=now, zone=PARIS) == datetime(2030, 1, 9, 5, 0, tzinfo=UTC)
    assert quiet_hours_end(window=night, now=datetime(2030, 1, 8, 12, 0, tzinfo=UTC), zone=PARIS) is None


def test_best_time_moves_quiet_hours_to_their_nearest_edge() -> None:
    minutes = best_time_minutes([QuietWindow(time(22, 0), time(6, 0))])
    assert minutes[5] == 6 * 60 and minutes[23] == 21 * 60 + 59 and minutes[1] == 21 * 60 + 59
    assert minutes[2] == 6 * 60 and minutes[10] == 10 * 60


def test_person_zone_falls_back_to_the_workspace_default_then_utc() -> None:
    assert person_zone(time_zone="Asia/Tokyo", default_time_zone="Europe/Paris").key == "Asia/Tokyo"
    assert person_zone(time_zone="Nowhere/Land", default_time_zone="Europe/Paris").key == "Europe/Paris"
    assert person_zone(time_zone="", default_time_zone="bad").key == "UTC"


def test_calendar_day_windows_start_at_local_midnight() -> None:
    rule = FrequencyCapRule(max_messages=1, window=1, unit="days", counting="calendar")
    now = datetime(2030, 1, 8, 22, 30, tzinfo=UTC)  # 23:30 in Paris
    assert cap_window_start(rule=rule, now=now, zone=PARIS) == datetime(2030, 1, 7, 23, 0, tzinfo=UTC)
    rule.window = 2
    assert cap_window_start(rule=rule, now=now, zone=PARIS) == datetime(2030, 1, 6, 23, 0, tzinfo=UTC)
    rolling = FrequencyCapRule(max_messages=1, window=3, unit="hours", counting="rolling")
    assert cap_window_start(rule=rolling, now=now, zone=PARIS) == now - timedelta(hours=3)


# --- quiet hours in the sender -----------------------------------------------------------------------


def test_quiet_hours_hold_a_send_until_the_window_ends(workspace: Workspace, frozen: Any) -> None:
    QuietHours.objects.create(workspace=workspace, channel="email", start=time(22, 0), end=time(8, 0))
    tokyo = person(workspace, "tokyo", time_zone="Asia/Tokyo")  # 21:00 there: fine
    auckland = person(workspace, "auckland", time_zone="Pacific/Auckland")  # 01:00 there: quiet
    c = campaign(workspace, include=[segment(workspace, "All")])
    start(c)
    send_due()
    assert outcome(c, tokyo)[0] == DeliveryStatus.SENT
    held = Delivery.objects.get(campaign=c, profile=auckland)
    assert (held.status, held.reason) == (DeliveryStatus.SCHEDULED, "quiet hours: waiting until they end")
    assert held.scheduled_for == datetime(2030, 1, 9, 8, 0, tzinfo=ZoneInfo("Pacific/Auckland"))
    frozen.move_to(held.scheduled_for)
    send_due()
    assert outcome(c, auckland)[0] == DeliveryStatus.SENT
    assert len(mail.outbox) == 2


def test_the_campaign_can_drop_rather_than_wait_and_overrides_the_workspace(workspace: Workspace, frozen: Any) -> None:
    QuietHours.objects.create(workspace=workspace, channel="any", start=time(1, 0), end=time(2, 0))
    paris = person(workspace, "paris", time_zone="Europe/Paris")  # 13:00 there
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        quiet_hours_start=time(12, 0),
        quiet_hours_end=time(14, 0),
        quiet_hours_action="drop",
    )
    start(c)
    send_due()
    assert outcome(c, paris) == (DeliveryStatus.SKIPPED, "email: quiet hours")
    assert mail.outbox == []


def test_in_app_messages_ignore_quiet_hours(workspace: Workspace, frozen: Any) -> None:
    QuietHours.objects.create(workspace=workspace, channel="any", start=time(0, 0), end=time(23, 59))
    ana = person(workspace, "ana")
    c = campaign(
        workspace, include=[segment(workspace, "All")], messages=[("in_app", {"layout": "modal", "body": "x"})]
    )
    start(c)
    send_due()
    assert outcome(c, ana)[0] == DeliveryStatus.SENT


# --- frequency caps ----------------------------------------------------------------------------------


def previously_sent(
    workspace: Workspace, profile: Profile, at: datetime, channels: list[str], **fields: Any
) -> Campaign:
    earlier = campaign(workspace, name=f"Earlier {at}", include=[segment(workspace, f"seg {at} {channels}")], **fields)
    Delivery.objects.create(
        workspace=workspace, campaign=earlier, profile=profile, occurrence="x", variant=earlier.variants.get(),
        status=DeliveryStatus.SENT, scheduled_for=at, sent_at=at, sent_channels=channels,
    )  # fmt: skip
    return earlier


def test_a_calendar_day_cap_counts_in_the_persons_zone(workspace: Workspace, frozen: Any) -> None:
    rule = FrequencyCapRule.objects.create(workspace=workspace, max_messages=1, window=1, unit="days")
    # It is 12:00 UTC. Yesterday evening in Tokyo (15:30 UTC = 00:30 JST today): counts for Tokyo.
    tokyo = person(workspace, "tokyo", time_zone="Asia/Tokyo")
    previously_sent(workspace, tokyo, datetime(2030, 1, 7, 15, 30, tzinfo=UTC), ["email"])
    # 23:30 UTC yesterday is yesterday in London: does not count there.
    london = person(workspace, "london", time_zone="Europe/London")
    previously_sent(workspace, london, datetime(2030, 1, 7, 23, 30, tzinfo=UTC), ["email"])
    c = campaign(workspace, name="Now", include=[segment(workspace, "All")])
    start(c)
    send_due()
    assert outcome(c, tokyo) == (
        DeliveryStatus.SKIPPED,
        "email: frequency-capped (at most 1 messages per 1 day (calendar days))",
    )
    assert outcome(c, london)[0] == DeliveryStatus.SENT

    rule.counting = FrequencyCapRule.Counting.ROLLING
    rule.save()
    again = campaign(workspace, name="Again", include=[segment(workspace, "All 2")])
    start(again)
    send_due()
    # Rolling 24 hours: London's message 12.5 hours ago counts now, and so does the one just sent.
    assert outcome(again, london)[0] == DeliveryStatus.SKIPPED


def test_exempt_campaigns_neither_obey_nor_count_and_pulled_channels_never_count(
    workspace: Workspace, frozen: Any
) -> None:
    FrequencyCapRule.objects.create(workspace=workspace, max_messages=1, window=7, unit="days", counting="rolling")
    ana = person(workspace, "ana")
    previously_sent(workspace, ana, NOW - timedelta(days=1), ["email"], frequency_cap_exempt=True)
    previously_sent(workspace, ana, NOW - timedelta(days=1), ["in_app", "content_card"])
    receipt = campaign(workspace, name="Receipt", include=[segment(workspace, "All")], frequency_cap_exempt=True)
    start(receipt)
    send_due()
    assert outcome(receipt, ana)[0] == DeliveryStatus.SENT  # exempt
    news = campaign(workspace, name="News", include=[segment(workspace, "All 2")])
    start(news)
    send_due()
    assert outcome(news, ana)[0] == DeliveryStatus.SENT  # nothing counted so far
    more = campaign(workspace, name="More", include=[segment(workspace, "All 3")])
    start(more)
    send_due()
    assert outcome(more, ana)[0] == DeliveryStatus.SKIPPED  # "News" counted


def test_channel_and_tag_rules_cover_only_their_sends(workspace: Workspace, frozen: Any) -> None:
    FrequencyCapRule.objects.create(workspace=workspace, channel="sms", max_messages=0, window=1, unit="days")
    FrequencyCapRule.objects.create(workspace=workspace, tag="promo", max_messages=1, window=1, unit="days")
    ana = person(workspace, "ana")
    previously_sent(workspace, ana, NOW - timedelta(hours=1), ["email"], tags=["promo"])
    service = campaign(workspace, name="Service", include=[segment(workspace, "All")], tags=["service"])
    start(service)
    promo = campaign(workspace, name="Promo", include=[segment(workspace, "All 2")], tags=["promo"])
    start(promo)
    send_due()
    assert outcome(service, ana)[0] == DeliveryStatus.SENT  # no sms, not promo: no rule applies
    status, reason = outcome(promo, ana)
    assert status == DeliveryStatus.SKIPPED and "tagged 'promo'" in reason


def test_two_campaigns_sending_at_once_cannot_both_slip_under_a_cap(workspace: Workspace, frozen: Any) -> None:
    FrequencyCapRule.objects.create(workspace=workspace, max_messages=1, window=1, unit="days")
    ana = person(workspace, "ana")
    first = campaign(workspace, name="First", include=[segment(workspace, "All")])
    second = campaign(workspace, name="Second", include=[segment(workspace, "All 2")])
    start(first)
    start(second)
    ids = list(Delivery.objects.filter(profile=ana).values_list("pk", flat=True))
    delivery_send_batch(delivery_ids=ids)  # one batch holding both of her deliveries
    assert sorted(Delivery.objects.filter(profile=ana).values_list("status", flat=True)) == ["sent", "skipped"]
    assert len(mail.outbox) == 1


def test_first_reachable_skips_a_capped_channel_for_the_next(workspace: Workspace, frozen: Any) -> None:
    FrequencyCapRule.objects.create(workspace=workspace, channel="email", max_messages=0, window=1, unit="days")
    ana = person(workspace, "ana")
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        messages=[("email", {"subject": "s", "text": "t"}), ("in_app", {"layout": "modal", "body": "b"})],
        send_first_reachable_only=True,
    )
    start(c)
    send_due()
    d = Delivery.objects.get(campaign=c, profile=ana)
    assert d.sent_channels == ["in_app"]
    assert d.reason.startswith("email: frequency-capped")


# --- rate limit ---------------------------------------------------------------------------------------


def test_the_rate_limit_spreads_a_campaign_over_minutes(workspace: Workspace, frozen: Any) -> None:
    for n in range(5):
        person(workspace, f"p{n}")
    c = campaign(workspace, include=[segment(workspace, "All")], rate_limit_per_minute=2)
    start(c)
    send_due()
    assert Delivery.objects.filter(campaign=c, status=DeliveryStatus.SENT).count() == 2
    waiting = Delivery.objects.filter(campaign=c, status=DeliveryStatus.SCHEDULED)
    assert {(d.scheduled_for, d.reason) for d in waiting} == {
        (NOW + timedelta(minutes=1), "rate limit: waiting for the next minute")
    }
    # The limit is used up: its rows are not even claimed again this minute.
    frozen.shift(timedelta(seconds=30))
    Delivery.objects.filter(campaign=c, status=DeliveryStatus.SCHEDULED).update(scheduled_for=NOW)
    assert deliveries_enqueue_due(enqueue=False).claimed == 0
    frozen.move_to(NOW + timedelta(minutes=1))
    send_due()
    frozen.move_to(NOW + timedelta(minutes=2))
    send_due()
    assert Delivery.objects.filter(campaign=c, status=DeliveryStatus.SENT).count() == 5
    assert len(mail.outbox) == 5
