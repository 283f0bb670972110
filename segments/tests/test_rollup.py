"""The event rollup stays equal to a recount of the events, whoever writes them and however."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from profiles.models import Event, Profile, Workspace
from profiles.tests.factories import WorkspaceFactory
from segments.models import EventDailyCount
from segments.tests.conftest import NOW, make_profile, track, track_many

DAY = timedelta(days=1)

RECOUNT = """
SELECT workspace_id, profile_id, name, ("timestamp" AT TIME ZONE 'UTC')::date, count(*), min("timestamp"),
       max("timestamp")
  FROM profiles_event GROUP BY 1, 2, 3, 4 ORDER BY 2, 3, 4
"""
ROLLUP = """
SELECT workspace_id, profile_id, name, day, count, first_at, last_at FROM segments_eventdailycount ORDER BY 2, 3, 4
"""


def rows(sql: str) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def assert_rollup_is_exact() -> None:
    assert rows(ROLLUP) == rows(RECOUNT)


def rollup_of(profile: Profile) -> list[tuple[str, Any, int]]:
    return list(
        EventDailyCount.objects.filter(profile=profile).order_by("name", "day").values_list("name", "day", "count")
    )


def test_inserts_accumulate_per_profile_name_and_day(workspace: Workspace) -> None:
    ann = make_profile(workspace, "ann")
    track_many(ann, "Opened", [NOW, NOW - 1 * DAY, NOW - 1 * DAY + timedelta(hours=1)])
    track(ann, "Opened", NOW - timedelta(hours=3))
    track(ann, "Bought", NOW)
    assert rollup_of(ann) == [
        ("Bought", NOW.date(), 1),
        ("Opened", NOW.date() - DAY, 2),
        ("Opened", NOW.date(), 2),
    ]
    today = EventDailyCount.objects.get(profile=ann, name="Opened", day=NOW.date())
    assert (today.first_at, today.last_at) == (NOW - timedelta(hours=3), NOW)
    assert_rollup_is_exact()


def test_the_intakes_insert_on_conflict_do_nothing_counts_each_event_once(workspace: Workspace) -> None:
    ann = make_profile(workspace, "ann")
    insert = """
        INSERT INTO profiles_event (workspace_id, profile_id, type, name, properties, context, message_id,
                                    "timestamp", received_at)
        SELECT %s, %s, 'track', 'Opened', '{}', '{}', m, %s, %s FROM unnest(%s::text[]) AS m
        ON CONFLICT (workspace_id, message_id) DO NOTHING
    """
    with connection.cursor() as cursor:
        cursor.execute(insert, [workspace.pk, ann.pk, NOW, NOW, ["a", "b", "c"]])
        # The SDK resends the batch after a timeout, with one new event.
        cursor.execute(insert, [workspace.pk, ann.pk, NOW, NOW, ["a", "b", "c", "d"]])
    assert rollup_of(ann) == [("Opened", NOW.date(), 4)]
    assert_rollup_is_exact()


def test_deletes_recount_and_keep_first_and_last_exact(workspace: Workspace) -> None:
    ann = make_profile(workspace, "ann")
    first = track(ann, "Opened", NOW - timedelta(hours=5))
    track(ann, "Opened", NOW - timedelta(hours=3))
    last = track(ann, "Opened", NOW - timedelta(hours=1))
    track(ann, "Bought", NOW - 2 * DAY)

    Event.objects.filter(pk__in=[first.pk, last.pk]).delete()
    row = EventDailyCount.objects.get(profile=ann, name="Opened")
    assert (row.count, row.first_at, row.last_at) == (1, NOW - timedelta(hours=3), NOW - timedelta(hours=3))
    Event.objects.filter(profile=ann, name="Bought").delete()
    assert rollup_of(ann) == [("Opened", NOW.date(), 1)]
    assert_rollup_is_exact()


def test_a_merge_moves_the_counts_to_the_surviving_profile(workspace: Workspace) -> None:
    known = make_profile(workspace, "known")
    anonymous = make_profile(workspace, "anon")
    track_many(known, "Opened", [NOW, NOW - DAY])
    track_many(anonymous, "Opened", [NOW - timedelta(hours=2), NOW - 5 * DAY])
    track(anonymous, "Signed Up", NOW - 5 * DAY)

    # What a merge does: move the events, then delete the merged profile.
    moved = Event.objects.filter(profile=anonymous).update(profile=known)
    assert moved == 3
    anonymous.delete()

    assert rollup_of(known) == [
        ("Opened", NOW.date() - 5 * DAY, 1),
        ("Opened", NOW.date() - DAY, 1),
        ("Opened", NOW.date(), 2),
        ("Signed Up", NOW.date() - 5 * DAY, 1),
    ]
    assert_rollup_is_exact()


def test_updates_of_time_or_name_move_counts_and_other_updates_change_nothing(workspace: Workspace) -> None:
    ann = make_profile(workspace, "ann")
    opened = track(ann, "Opened", NOW)
    Event.objects.filter(pk=opened.pk).update(timestamp=NOW - 3 * DAY)
    Event.objects.filter(pk=opened.pk).update(properties={"screen": "home"})
    assert rollup_of(ann) == [("Opened", NOW.date() - 3 * DAY, 1)]
    Event.objects.filter(pk=opened.pk).update(name="App Opened")
    assert rollup_of(ann) == [("App Opened", NOW.date() - 3 * DAY, 1)]
    assert_rollup_is_exact()


def test_deleting_a_profile_removes_its_rollup(workspace: Workspace) -> None:
    ann = make_profile(workspace, "ann")
    bob = make_profile(workspace, "bob")
    track_many(ann, "Opened", [NOW, NOW - DAY])
    track(bob, "Opened", NOW)
    ann_id = ann.pk
    ann.delete()
    assert not EventDailyCount.objects.filter(profile_id=ann_id).exists()
    assert list(EventDailyCount.objects.values_list("profile_id", flat=True)) == [bob.pk]
    assert_rollup_is_exact()


@pytest.mark.django_db(transaction=True)
def test_concurrent_intake_statements_neither_deadlock_nor_lose_counts() -> None:
    workspace = WorkspaceFactory()
    profiles = [make_profile(workspace, f"p{n}").pk for n in range(10)]
    insert = """
        INSERT INTO profiles_event (workspace_id, profile_id, type, name, properties, context, message_id,
                                    "timestamp", received_at)
        SELECT %s, p, 'track', n, '{}', '{}', m, %s, %s
          FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS x(p, n, m)
        ON CONFLICT (workspace_id, message_id) DO NOTHING
    """

    def client(number: int) -> None:
        generator = random.Random(number)
        try:
            for batch in range(15):
                people = [generator.choice(profiles) for _ in range(100)]
                names = [generator.choice(["Opened", "Viewed", "Bought"]) for _ in people]
                ids = [f"c{number}-b{batch}-{index}" for index in range(100)]
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(insert, [workspace.pk, NOW, NOW, people, names, ids])
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(client, number) for number in range(4)]:
            future.result()  # re-raises a deadlock, if any

    assert Event.objects.filter(workspace=workspace).count() == 4 * 15 * 100
    assert_rollup_is_exact()
