"""Launching scheduled campaigns and starting their occurrences: who gets a Delivery, in which
variant, at what time (UTC, each person's local time, their best time), once per occurrence."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError

from campaigns.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    QuietHours,
    Recurrence,
    ScheduleTiming,
)
from campaigns.services.launch import (
    LATE_REASON,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    campaign_stop,
    campaigns_tick,
    deliveries_materialise,
    occurrence_after,
)
from campaigns.services.variants import CONTROL, Split, assign_variant
from profiles.engagement import CONTROL_GROUP_ENROLLED, SESSION_STARTED
from profiles.models import Event, Workspace

from .builder import NOW, campaign, people, person, segment, track

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def deliveries(c: Campaign) -> list[Delivery]:
    return list(Delivery.objects.filter(campaign=c).select_related("profile", "variant").order_by("profile_id"))


def test_launch_names_every_problem(workspace: Workspace, frozen: Any) -> None:
    empty = Campaign.objects.create(workspace=workspace, name="Empty")
    with pytest.raises(ValidationError) as raised:
        campaign_launch(campaign=empty, actor=None)
    text = " | ".join(raised.value.messages)
    assert "variants: add at least one variant" in text
    assert "audience: choose at least one segment" in text
    assert "send_at: choose when to send" in text

    broken = campaign(workspace, include=[segment(workspace, "All")], messages=[("email", {"subject": "{{ oops"})])
    with pytest.raises(ValidationError) as raised:
        campaign_launch(campaign=broken, actor=None)
    assert any(message.startswith("variant A, Email message: subject:") for message in raised.value.messages)
    assert Campaign.objects.get(pk=broken.pk).status == CampaignStatus.DRAFT


def test_launch_is_a_conditional_update_from_draft(workspace: Workspace, frozen: Any) -> None:
    c = campaign(workspace, include=[segment(workspace, "All")], send_at=NOW + timedelta(hours=2))
    launched = campaign_launch(campaign=c, actor="tester")
    assert launched.status == CampaignStatus.SCHEDULED
    assert launched.next_occurrence_at == NOW + timedelta(hours=2)
    assert launched.next_run_at == NOW + timedelta(hours=2)
    with pytest.raises(ValidationError, match="only a draft campaign can be launched; this one is Scheduled"):
        campaign_launch(campaign=c, actor="tester")


def test_tick_starts_the_occurrence_with_include_exclude_and_extra_conditions(
    workspace: Workspace, frozen: Any
) -> None:
    fr = segment(
        workspace, "France", {"all": [{"type": "attribute", "attribute": "country", "op": "eq", "value": "FR"}]}
    )
    de = segment(
        workspace, "Germany", {"all": [{"type": "attribute", "attribute": "country", "op": "eq", "value": "DE"}]}
    )
    staff = segment(
        workspace, "Staff", {"all": [{"type": "attribute", "attribute": "email", "op": "contains", "value": "@acme"}]}
    )
    ana = person(workspace, "ana", country="FR", city="Paris")
    ben = person(workspace, "ben", country="DE", city="Berlin")
    person(workspace, "cid", country="FR", city="Paris", email="cid@acme.test")  # staff: excluded
    person(workspace, "dee", country="FR", city="Lyon")  # fails the extra condition
    person(workspace, "eve", country="US", city="Paris")  # in neither segment
    c = campaign(
        workspace,
        include=[fr, de],
        exclude=[staff],
        extra_conditions={
            "all": [{"type": "attribute", "attribute": "city", "op": "one_of", "value": ["Paris", "Berlin"]}]
        },
        send_at=NOW + timedelta(minutes=5),
    )
    campaign_launch(campaign=c, actor=None)

    assert campaigns_tick().started == []  # not yet
    frozen.move_to(NOW + timedelta(minutes=5))
    result = campaigns_tick()

    rows = deliveries(c)
    assert result.started == [(c.pk, (NOW + timedelta(minutes=5)).isoformat(), 2)]
    assert [d.profile_id for d in rows] == [ana.pk, ben.pk]
    assert {d.status for d in rows} == {DeliveryStatus.SCHEDULED}
    assert {d.scheduled_for for d in rows} == {NOW + timedelta(minutes=5)}
    assert {d.occurrence for d in rows} == {"2030-01-08T12:05:00+00:00"}
    assert {d.step_key for d in rows} == {"main"}
    c.refresh_from_db()
    assert c.status == CampaignStatus.RUNNING
    assert c.next_run_at is None

    # "all" mode: people in both segments only.
    both = campaign(workspace, name="Both", include=[fr, staff], include_mode="all", send_at=NOW + timedelta(minutes=5))
    campaign_launch(campaign=both, actor=None)
    campaigns_tick()
    assert [d.profile.external_id for d in deliveries(both)] == ["cid"]


def test_starting_an_occurrence_twice_creates_nothing_new(workspace: Workspace, frozen: Any) -> None:
    people(workspace, 20)
    c = campaign(workspace, include=[segment(workspace, "All")])
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()
    assert Delivery.objects.filter(campaign=c).count() == 20
    assert deliveries_materialise(campaign=c, occurrence=NOW, now=NOW) == 0
    assert campaigns_tick().started == []
    assert Delivery.objects.filter(campaign=c).count() == 20


def test_variants_assigned_in_sql_match_assign_variant_and_control_is_recorded(
    workspace: Workspace, frozen: Any
) -> None:
    people(workspace, 400)
    c = campaign(
        workspace, include=[segment(workspace, "All")], variants=[("A", 60), ("B", 30), ("C", 10)], control_percent=20
    )
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()

    rows = deliveries(c)
    splits = [Split("A", 60), Split("B", 30), Split("C", 10)]
    for row in rows:
        expected = assign_variant(campaign_id=c.pk, profile_id=row.profile_id, control_percent=20, variants=splits)
        assert (row.variant.key if row.variant else CONTROL) == expected
        assert row.status == (DeliveryStatus.CONTROL if expected == CONTROL else DeliveryStatus.SCHEDULED)
    counts = Counter(row.variant.key if row.variant else CONTROL for row in rows)
    assert 50 < counts[CONTROL] < 110 and counts["A"] > counts["B"] > counts["C"] > 0

    enrolled = Event.objects.filter(name=CONTROL_GROUP_ENROLLED, workspace_id=workspace.pk)
    assert enrolled.count() == counts[CONTROL]
    sample = enrolled.first()
    assert sample is not None
    assert sample.properties["campaign_id"] == c.pk and sample.properties["variant"] == CONTROL


def test_max_recipients_cuts_deterministically(workspace: Workspace, frozen: Any) -> None:
    people(workspace, 50)
    everyone = segment(workspace, "All")
    first = campaign(workspace, include=[everyone], max_recipients=10)
    campaign_launch(campaign=first, actor=None)
    campaigns_tick()
    chosen = {d.profile_id for d in deliveries(first)}
    assert len(chosen) == 10
    # The same cut again (same campaign, another occurrence).
    assert deliveries_materialise(campaign=first, occurrence=NOW + timedelta(days=1), now=NOW) == 10
    again = set(
        Delivery.objects.filter(campaign=first, occurrence=(NOW + timedelta(days=1)).isoformat()).values_list(
            "profile_id", flat=True
        )
    )
    assert again == chosen


def test_local_time_reaches_every_zone_when_launched_a_day_ahead(workspace: Workspace, frozen: Any) -> None:
    workspace.default_time_zone = "Europe/London"
    workspace.save()
    tokyo = person(workspace, "tokyo", time_zone="Asia/Tokyo")
    paris = person(workspace, "paris", time_zone="Europe/Paris")
    york = person(workspace, "york", time_zone="America/New_York")
    unknown = person(workspace, "unknown")
    bogus = person(workspace, "bogus", time_zone="Mars/Olympus_Mons")
    # 10:00 local on 10 January (the admin stores the wall time as if UTC).
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        schedule_timing=ScheduleTiming.LOCAL_TIME,
        send_at=datetime(2030, 1, 10, 10, 0, tzinfo=UTC),
    )
    campaign_launch(campaign=c, actor=None)
    c.refresh_from_db()
    # Started when it is 10:00 somewhere: in UTC+14, 14 hours before 10:00 UTC.
    assert c.next_run_at == datetime(2030, 1, 9, 20, 0, tzinfo=UTC)

    frozen.move_to(datetime(2030, 1, 9, 20, 0, tzinfo=UTC))
    campaigns_tick()
    by_person = {d.profile_id: d for d in deliveries(c)}
    wall = datetime(2030, 1, 10, 10, 0)

    def local(zone: str) -> datetime:
        return wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)

    assert by_person[tokyo.pk].scheduled_for == local("Asia/Tokyo")
    assert by_person[paris.pk].scheduled_for == local("Europe/Paris")
    assert by_person[york.pk].scheduled_for == local("America/New_York")
    assert by_person[unknown.pk].scheduled_for == local("Europe/London")
    assert by_person[bogus.pk].scheduled_for == local("Europe/London")
    assert {d.status for d in by_person.values()} == {DeliveryStatus.SCHEDULED}


def test_local_time_launched_late_skips_people_whose_time_has_passed(workspace: Workspace, frozen: Any) -> None:
    tokyo = person(workspace, "tokyo", time_zone="Asia/Tokyo")  # 10:00 JST = 01:00 UTC: 11 hours ago
    paris = person(workspace, "paris", time_zone="Europe/Paris")  # 10:00 CET = 09:00 UTC: 3 hours ago
    lisbon = person(workspace, "lisbon", time_zone="Europe/Lisbon")  # 10:00 WET = 10:00 UTC... 2 hours ago
    azores = person(workspace, "azores", time_zone="Atlantic/Azores")  # 10:00 -01 = 11:00 UTC: 1 hour ago
    york = person(workspace, "york", time_zone="America/New_York")  # 15:00 UTC: still ahead
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        schedule_timing=ScheduleTiming.LOCAL_TIME,
        send_at=datetime(2030, 1, 8, 10, 0, tzinfo=UTC),
    )
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()
    by_person = {d.profile_id: d for d in deliveries(c)}
    for late in (tokyo, paris, lisbon):
        assert by_person[late.pk].status == DeliveryStatus.SKIPPED
        assert by_person[late.pk].reason == LATE_REASON
    assert by_person[azores.pk].status == DeliveryStatus.SCHEDULED  # within the hour: sent at once
    assert by_person[york.pk].status == DeliveryStatus.SCHEDULED


def test_best_time_from_each_persons_history_with_fallback_and_quiet_hours(workspace: Workspace, frozen: Any) -> None:
    QuietHours.objects.create(workspace=workspace, channel="any", start=time(22, 0), end=time(6, 0))
    morning = person(workspace, "morning", time_zone="Europe/Paris")
    tuesday = person(workspace, "tuesday", time_zone="Europe/Paris")
    early = person(workspace, "early", time_zone="Europe/Paris")
    late = person(workspace, "late", time_zone="Europe/Paris")
    newcomer = person(workspace, "newcomer", time_zone="Europe/Paris")
    paris = ZoneInfo("Europe/Paris")
    monday = datetime(2030, 1, 7, tzinfo=paris)
    for day in range(1, 15):  # two weeks of app opens at 08:30 Paris time
        track(morning, SESSION_STARTED, (monday - timedelta(days=day)).replace(hour=8, minute=30))
    for day in range(1, 8):  # usually at 08:00, but on Tuesdays at 19:00
        at = monday - timedelta(days=day)
        track(tuesday, SESSION_STARTED, at.replace(hour=19 if at.isoweekday() == 2 else 8))
    track(early, SESSION_STARTED, monday.replace(hour=5, minute=10) - timedelta(days=3))
    track(late, SESSION_STARTED, monday.replace(hour=23, minute=10) - timedelta(days=3))
    track(newcomer, "Page Viewed", monday.replace(hour=3) - timedelta(days=3))  # not an engagement signal

    # Best time on Tuesday 15 January, 10:00 by default.
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        schedule_timing=ScheduleTiming.BEST_TIME,
        send_at=datetime(2030, 1, 15, 0, 0, tzinfo=UTC),
        default_send_hour=10,
    )
    campaign_launch(campaign=c, actor=None)
    c.refresh_from_db()
    assert c.next_run_at == datetime(2030, 1, 14, 10, 0, tzinfo=UTC)  # midnight at UTC+14
    frozen.move_to(datetime(2030, 1, 14, 10, 0, tzinfo=UTC))
    campaigns_tick()
    at = {d.profile_id: d.scheduled_for.astimezone(paris) for d in deliveries(c)}

    def paris_time(hour: int, minute: int = 0) -> datetime:
        return datetime(2030, 1, 15, hour, minute, tzinfo=paris)

    assert at[morning.pk] == paris_time(8)
    assert at[tuesday.pk] == paris_time(19)  # their Tuesday habit wins on a Tuesday
    assert at[early.pk] == paris_time(6)  # 05:00 is in quiet hours: the nearest edge is 06:00
    assert at[late.pk] == paris_time(21, 59)  # 23:00 is in quiet hours: the nearest edge is 21:59
    assert at[newcomer.pk] == paris_time(10)  # no history: the campaign's default hour


def test_occurrences_of_recurring_campaigns() -> None:
    daily = Campaign(
        send_at=datetime(2030, 1, 8, 9, 0, tzinfo=UTC),
        recurrence=Recurrence.DAILY,
        recurrence_ends_at=datetime(2030, 1, 10, 12, 0, tzinfo=UTC),
    )
    assert occurrence_after(daily, datetime(2030, 1, 8, 9, 0, tzinfo=UTC)) == datetime(2030, 1, 9, 9, 0, tzinfo=UTC)
    assert occurrence_after(daily, datetime(2030, 1, 10, 9, 0, tzinfo=UTC)) is None  # past the end

    weekly = Campaign(
        send_at=datetime(2030, 1, 8, 9, 0, tzinfo=UTC), recurrence=Recurrence.WEEKLY, recurrence_weekdays=[0, 3]
    )
    # Tuesday -> Thursday (3) -> Monday (0)
    assert occurrence_after(weekly, datetime(2030, 1, 8, 9, 0, tzinfo=UTC)) == datetime(2030, 1, 10, 9, 0, tzinfo=UTC)
    assert occurrence_after(weekly, datetime(2030, 1, 10, 9, 0, tzinfo=UTC)) == datetime(2030, 1, 14, 9, 0, tzinfo=UTC)

    monthly = Campaign(send_at=datetime(2030, 1, 31, 9, 0, tzinfo=UTC), recurrence=Recurrence.MONTHLY)
    feb = occurrence_after(monthly, datetime(2030, 1, 31, 9, 0, tzinfo=UTC))
    assert feb == datetime(2030, 2, 28, 9, 0, tzinfo=UTC)
    assert occurrence_after(monthly, feb) == datetime(2030, 3, 31, 9, 0, tzinfo=UTC)  # back to the 31st


def test_a_daily_campaign_sends_each_day_until_its_end_then_finishes(workspace: Workspace, frozen: Any) -> None:
    ana = person(workspace, "ana")
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        recurrence=Recurrence.DAILY,
        recurrence_ends_at=NOW + timedelta(days=2, hours=1),
    )
    campaign_launch(campaign=c, actor=None)
    for day in range(4):
        frozen.move_to(NOW + timedelta(days=day))
        campaigns_tick()
        Delivery.objects.filter(campaign=c, status=DeliveryStatus.SCHEDULED).update(status=DeliveryStatus.SENT)
    occurrences = sorted(Delivery.objects.filter(campaign=c, profile=ana).values_list("occurrence", flat=True))
    assert occurrences == [(NOW + timedelta(days=n)).isoformat() for n in range(3)]
    campaigns_tick()
    c.refresh_from_db()
    assert c.status == CampaignStatus.FINISHED


def test_pause_resume_and_stop_are_conditional(workspace: Workspace, frozen: Any) -> None:
    people(workspace, 3)
    c = campaign(workspace, include=[segment(workspace, "All")])
    with pytest.raises(ValidationError, match="a draft campaign cannot be paused"):
        campaign_pause(campaign=c)
    campaign_launch(campaign=c, actor=None)
    campaign_pause(campaign=c)
    assert campaigns_tick().started == []  # a paused campaign starts nothing
    campaign_resume(campaign=c)
    assert Campaign.objects.get(pk=c.pk).status == CampaignStatus.SCHEDULED  # it had not started
    campaigns_tick()
    campaign_pause(campaign=c)
    campaign_resume(campaign=c)
    assert Campaign.objects.get(pk=c.pk).status == CampaignStatus.RUNNING
    assert campaign_stop(campaign=c) == 3
    assert set(Delivery.objects.filter(campaign=c).values_list("status", "reason")) == {
        (DeliveryStatus.CANCELLED, "the campaign was stopped")
    }
    with pytest.raises(ValidationError, match="a stopped campaign cannot be resumed"):
        campaign_resume(campaign=c)
