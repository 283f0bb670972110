"""The report rollups: each send's stages counted once, rows committed late still counted, sends
followed until their delivery finishes, merges, the lock, and a rebuild agreeing with the
incremental rollup. The scenario is the hand-counted one of reports_data.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import time_machine
from django.db import connection
from django.db.models import Sum

from campaigns.models import (
    Delivery,
    ReportActiveDay,
    ReportCampaignHour,
    ReportCohortDay,
    ReportCursor,
    ReportFirstEvent,
    ReportFirstTimes,
    ReportProfile,
    ReportSend,
    ReportWorkspaceDay,
)
from campaigns.reports import rollups
from campaigns.reports.models import FIRST_TIMES_BLOCK, FIRST_TIMES_NEVER
from campaigns.reports.rollups import reports_rebuild, reports_refresh, reports_rollup
from profiles.engagement import MESSAGE_OPENED, MESSAGE_RECEIVED
from profiles.models import Event, Workspace
from profiles.services.identity import profile_merge

from .reports_data import NOW, at, build_scenario, engage, event, opened_app, person

FEB = 2


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def scenario(frozen: None, workspace: Workspace) -> dict[str, Any]:
    return build_scenario(workspace)


def totals(campaign_id: int, channel: str = "", **filters: Any) -> dict[str, Any]:
    rows = ReportCampaignHour.objects.filter(campaign_id=campaign_id, channel=channel, **filters)
    return rows.aggregate(
        **{
            name: Sum(name)
            for name in (
                "targeted",
                "pending",
                "status_sent",
                "skipped",
                "control",
                "sent",
                "delivered",
                "opened",
                "clicked",
                "bounced",
                "converted",
                "revenue",
            )
        }
    )


def test_each_stage_of_a_send_counts_once(scenario: dict[str, Any]) -> None:
    reports_rollup()
    campaign = scenario["campaign"]
    everyone = totals(campaign.pk)
    assert (everyone["targeted"], everyone["status_sent"], everyone["skipped"], everyone["control"]) == (7, 3, 1, 2)
    assert everyone["pending"] == 1  # grace
    # alice opened her email twice and the follow-up push once: one opened send.
    assert (everyone["sent"], everyone["delivered"], everyone["opened"], everyone["clicked"]) == (3, 1, 2, 1)
    assert (everyone["bounced"], everyone["converted"], str(everyone["revenue"])) == (1, 3, "17.5000")
    email = totals(campaign.pk, "email")
    assert (email["sent"], email["opened"], email["converted"]) == (2, 1, 1)
    alice = scenario["deliveries"]["alice"]
    send = ReportSend.objects.get(send_id=alice.pk, channel="")
    assert send.opened_at == at(14, 11, month=FEB)  # the first open
    assert ReportSend.objects.get(send_id=alice.pk, channel="push").opened_at == at(16, 11, month=FEB)


def test_reading_again_changes_nothing(scenario: dict[str, Any]) -> None:
    reports_rollup()
    before = list(ReportCampaignHour.objects.order_by("campaign_id", "hour", "variant", "platform", "channel").values())
    # Forget how far the feeds were read: everything is read a second time.
    ReportCursor.objects.update(position=0, chunks=[])
    result = reports_rollup()
    assert result.rows["events"] > 0
    after = list(ReportCampaignHour.objects.order_by("campaign_id", "hour", "variant", "platform", "channel").values())
    assert after == before
    assert ReportCohortDay.objects.aggregate(n=Sum("profiles"))["n"] == 7


def test_an_event_committed_late_into_a_range_already_read_is_counted(scenario: dict[str, Any]) -> None:
    bob = scenario["deliveries"]["bob"]
    # An event takes its id, then commits after a later one was read: here, an id left free below
    # the feed's position and filled in after the rollup read past it.
    (late_id,) = engage(bob, MESSAGE_OPENED, at(14, 12, month=FEB), channel="email")
    late = Event.objects.get(pk=late_id)
    late.delete()
    engage(scenario["deliveries"]["carol"], MESSAGE_RECEIVED, at(15, 10, month=FEB), channel="push")
    reports_rollup()
    assert totals(scenario["campaign"].pk)["opened"] == 2
    late.pk = late_id
    late.save(force_insert=True)
    result = reports_rollup()
    assert result.reread["events"] == 1
    assert totals(scenario["campaign"].pk)["opened"] == 3
    assert ReportSend.objects.get(send_id=bob.pk, channel="email").opened_at == at(14, 12, month=FEB)


def test_ranges_are_rechecked_only_within_the_overlap(scenario: dict[str, Any], settings: Any) -> None:
    reports_rollup()
    assert ReportCursor.objects.get(name="events").chunks
    with time_machine.travel(NOW + timedelta(seconds=settings.REPORTS_FEED_OVERLAP + 1), tick=False):
        reports_rollup()
    assert ReportCursor.objects.get(name="events").chunks == []


def test_a_send_is_followed_until_its_delivery_finishes(scenario: dict[str, Any]) -> None:
    reports_rollup()
    grace = scenario["deliveries"]["grace"]
    Delivery.objects.filter(pk=grace.pk).update(status="sent", sent_at=at(15, 10, month=FEB), sent_channels=["email"])
    engage(grace, MESSAGE_RECEIVED, at(15, 10, month=FEB), channel="email")
    reports_rollup()
    counts = totals(scenario["campaign"].pk, variant="A")
    assert (counts["pending"], counts["status_sent"], counts["sent"]) == (0, 3, 3)
    assert ReportSend.objects.get(send_id=grace.pk, channel="").status == "sent"


def test_active_days_cohorts_and_first_events(scenario: dict[str, Any]) -> None:
    reports_rollup()
    alice = scenario["people"]["alice"]
    assert sorted(ReportActiveDay.objects.filter(profile_id=alice.pk).values_list("day", flat=True)) == [
        at(4, month=FEB).date(),
        at(11, month=FEB).date(),
        at(25, month=FEB).date(),
        at(3).date(),
    ]
    # Feb 11: an app open and an order.
    assert ReportActiveDay.objects.get(profile_id=alice.pk, day=at(11, month=FEB).date()).events == 2
    cohort = ReportProfile.objects.get(profile_id=alice.pk)
    assert (cohort.cohort_day, cohort.platform, cohort.source) == (at(4, month=FEB).date(), "ios", "google")
    first = ReportFirstEvent.objects.get(profile_id=alice.pk, name="Application Opened")
    assert first.first_at == at(4, 10, month=FEB)
    # Engagement events are not activity: nobody is active on the days they only received a message.
    assert not ReportActiveDay.objects.filter(day=at(14, month=FEB).date()).exists()


def test_a_merged_persons_rows_move_to_the_survivor(frozen: None, workspace: Workspace) -> None:
    known = person(workspace, first_seen=at(4, 10, month=FEB), external_id="known")
    anonymous = person(workspace, first_seen=at(2, 10, month=FEB), external_id=None)
    anonymous.external_id = None
    anonymous.save()
    opened_app(known, 4)
    opened_app(anonymous, 2)
    opened_app(anonymous, 4, hour=9)
    reports_rollup()
    assert ReportCohortDay.objects.aggregate(n=Sum("profiles"))["n"] == 2
    profile_merge(source=anonymous, target=known, reason="admin", actor="test")
    reports_rollup()
    assert not ReportActiveDay.objects.filter(profile_id=anonymous.pk).exists()
    days = dict(ReportActiveDay.objects.filter(profile_id=known.pk).values_list("day", "events"))
    assert days == {at(2, month=FEB).date(): 1, at(4, month=FEB).date(): 2}
    first = ReportFirstEvent.objects.get(profile_id=known.pk, name="Application Opened")
    assert first.first_at == at(2, 10, month=FEB)
    assert ReportCohortDay.objects.aggregate(n=Sum("profiles"))["n"] == 1
    reports_refresh(now=NOW)
    assert ReportWorkspaceDay.objects.filter(day=at(4, month=FEB).date()).aggregate(n=Sum("dau"))["n"] == 1


def test_a_second_rollup_returns_while_one_runs(scenario: dict[str, Any]) -> None:
    settings_dict = connection.settings_dict
    other = psycopg.connect(
        host=settings_dict["HOST"],
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"] or None,
        dbname=settings_dict["NAME"],
        autocommit=True,
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [rollups.ROLLUP_LOCK])
        assert reports_rollup().ran is False
        other.execute("SELECT pg_advisory_unlock(%s)", [rollups.ROLLUP_LOCK])
        assert reports_rollup().ran is True
    finally:
        other.close()


def test_a_rebuild_agrees_with_the_incremental_rollup(scenario: dict[str, Any]) -> None:
    # Incrementally: in three runs, with the data arriving in between.
    grace = scenario["deliveries"]["grace"]
    reports_rollup()
    Delivery.objects.filter(pk=grace.pk).update(status="skipped", reason="push: no push token")
    reports_rollup()
    opened_app(scenario["people"]["bob"], 2, month=3)
    reports_rollup()
    reports_refresh(now=NOW)

    def snapshot() -> dict[str, list[dict[str, Any]]]:
        return {
            "hours": list(
                ReportCampaignHour.objects.order_by("campaign_id", "hour", "variant", "platform", "channel").values()
            ),
            "sends": list(ReportSend.objects.order_by("send_id", "channel").values()),
            "days": list(ReportWorkspaceDay.objects.order_by("day", "platform").values()),
            "active": list(ReportActiveDay.objects.order_by("profile_id", "day").values()),
            "first": list(ReportFirstEvent.objects.order_by("profile_id", "name").values()),
            "first times": list(ReportFirstTimes.objects.order_by("workspace_id", "name", "block").values()),
        }

    incremental = snapshot()
    reports_rebuild(now=NOW)
    assert snapshot() == incremental
    assert totals(scenario["campaign"].pk)["skipped"] == 2


def first_time(profile_id: int, name: str) -> datetime | None:
    """When ReportFirstTimes says the person first did ``name`` (None: never)."""
    row = ReportFirstTimes.objects.filter(name=name, block=profile_id // FIRST_TIMES_BLOCK).first()
    if row is None:
        return None
    value = row.times[profile_id % FIRST_TIMES_BLOCK]
    return None if value == FIRST_TIMES_NEVER else datetime.fromtimestamp(value / 1_000_000, tz=UTC)


def every_first_time() -> dict[tuple[int, str], datetime]:
    """Every (person, event) ReportFirstTimes has a time for."""
    found = {}
    for row in ReportFirstTimes.objects.all():
        assert len(row.times) == FIRST_TIMES_BLOCK
        for index, value in enumerate(row.times):
            if value != FIRST_TIMES_NEVER:
                found[(row.block * FIRST_TIMES_BLOCK + index, row.name)] = datetime.fromtimestamp(
                    value / 1_000_000, tz=UTC
                )
    return found


def test_first_times_by_position_are_the_first_events(scenario: dict[str, Any]) -> None:
    reports_rollup()
    alice = scenario["people"]["alice"]
    # Alice first opened the app on Feb 4 at 10:00 and first ordered on Feb 11 at 12:00
    # (reports_data.py).
    assert first_time(alice.pk, "Application Opened") == at(4, 10, month=FEB)
    assert first_time(alice.pk, "Order Completed") == at(11, 12, month=FEB)
    assert first_time(alice.pk, "Never Happened") is None
    # Exactly the first events, nothing else: engagement events are not first events.
    assert every_first_time() == {(row.profile_id, row.name): row.first_at for row in ReportFirstEvent.objects.all()}


def test_first_times_follow_an_earlier_event_and_a_merge(frozen: None, workspace: Workspace) -> None:
    known = person(workspace, first_seen=at(4, 10, month=FEB), external_id="known")
    anonymous = person(workspace, first_seen=at(2, 10, month=FEB), external_id=None)
    anonymous.external_id = None
    anonymous.save()
    opened_app(known, 4)
    event(anonymous, "Product Viewed", at(3, 9, month=FEB, minute=30))
    reports_rollup()
    assert first_time(known.pk, "Application Opened") == at(4, 10, month=FEB)
    # A later event changes nothing; an earlier one (arriving late) moves the first time back.
    opened_app(known, 6)
    opened_app(known, 3, hour=8)
    reports_rollup()
    assert first_time(known.pk, "Application Opened") == at(3, 8, month=FEB)
    # The merged person's first times go to the survivor (the earlier of the two) and leave them.
    opened_app(anonymous, 2)
    reports_rollup()
    profile_merge(source=anonymous, target=known, reason="admin", actor="test")
    reports_rollup()
    assert first_time(known.pk, "Application Opened") == at(2, 10, month=FEB)
    assert first_time(known.pk, "Product Viewed") == at(3, 9, month=FEB, minute=30)
    assert first_time(anonymous.pk, "Application Opened") is None
    assert first_time(anonymous.pk, "Product Viewed") is None
    assert every_first_time() == {
        (known.pk, "Application Opened"): at(2, 10, month=FEB),
        (known.pk, "Product Viewed"): at(3, 9, month=FEB, minute=30),
    }
    # A rebuild gives the same arrays.
    before = list(ReportFirstTimes.objects.order_by("name", "block").values())
    reports_rebuild(now=NOW)
    assert list(ReportFirstTimes.objects.order_by("name", "block").values()) == before
