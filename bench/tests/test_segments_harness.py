"""The segment benchmark's own parts: the generated workspace is reproducible and consistent, it loads
as the benchmark loads it (COPY, then the rollup built as the triggers would have), and every
hand-written query counts the same people as its segment. (The benchmark itself is run by hand:
.venv/bin/python -m bench.segments.)"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from bench.segments import cases, create_segments, load, parse_args
from bench.segments_data import (
    DEVICE_COLUMNS,
    EVENT_COLUMNS,
    PROFILE_COLUMNS,
    PURCHASE_COLUMNS,
    Generator,
)
from profiles.models import Event, Profile, Workspace
from segments.models import EventDailyCount, Segment

APPS = {"ios": 1, "android": 2, "web": 3}


def generate(seed: int, profiles: int = 300, events: int = 3000) -> list[Any]:
    return list(Generator(seed=seed, profiles=profiles, events=events, workspace_id=1, app_ids=APPS, chunk_size=100))


def rows(chunks: list[Any], table: str) -> list[list[str]]:
    return [line.split("\t") for chunk in chunks for line in getattr(chunk, table).splitlines()]


def test_the_same_seed_gives_the_same_workspace_and_another_seed_another() -> None:
    first, again, other = generate(1), generate(1), generate(2)
    assert [c.events for c in first] == [c.events for c in again]
    assert [c.profiles for c in first] == [c.profiles for c in again]
    assert [c.events for c in first] != [c.events for c in other]


def test_rows_fit_their_columns_and_hang_together() -> None:
    chunks = generate(3)
    people, events = rows(chunks, "profiles"), rows(chunks, "events")
    purchases, devices = rows(chunks, "purchases"), rows(chunks, "devices")
    assert {len(row) for row in people} == {len(PROFILE_COLUMNS)}
    assert {len(row) for row in events} == {len(EVENT_COLUMNS)}
    assert {len(row) for row in purchases} <= {len(PURCHASE_COLUMNS)}
    assert {len(row) for row in devices} <= {len(DEVICE_COLUMNS)}
    assert len(people) == 300
    assert 2500 < len(events) < 3500, "about the number of events asked for"
    event_ids = [int(row[0]) for row in events]
    assert event_ids == list(range(1, len(events) + 1))
    profile_ids = {row[0] for row in people}
    assert {row[2] for row in events} <= profile_ids
    # The session count is the number of $session_started events, as the intake keeps it.
    sessions = Counter(row[2] for row in events if row[5] == "$session_started")
    column = PROFILE_COLUMNS.index("session_count")
    assert {row[0]: int(row[column]) for row in people if int(row[column])} == dict(sessions)
    orders = {row[0] for row in events if row[5] == "Order Completed"}
    assert {row[2] for row in purchases} == orders


def test_command_line_checks_scale_and_database_name() -> None:
    assert parse_args([]).scale == 1.0
    with pytest.raises(SystemExit):
        parse_args(["--scale", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--db-name", "engage"])


@pytest.mark.django_db(transaction=True)
def test_loaded_data_has_the_rollup_the_triggers_would_keep_and_hand_queries_agree() -> None:
    settings = connection.settings_dict
    if str(settings["HOST"]).startswith("/"):  # the embedded server's socket directory (./run pytest)
        url = f"postgresql://{settings['USER']}@/{settings['NAME']}?host={quote(str(settings['HOST']), safe='/')}"
    else:
        url = f"postgresql://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    report = load(url, seed=5, profiles=2000, events=30_000)
    workspace = Workspace.objects.get()
    assert Profile.objects.count() == report.profiles == 2000
    assert Event.objects.count() == report.events

    # The rollup, as the insert trigger would have built it row by row.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM (
              SELECT workspace_id, profile_id, name, ("timestamp" AT TIME ZONE 'UTC')::date AS day,
                     count(*) AS count, min("timestamp") AS first_at, max("timestamp") AS last_at
                FROM profiles_event GROUP BY 1, 2, 3, 4
              EXCEPT
              SELECT workspace_id, profile_id, name, day, count, first_at, last_at FROM segments_eventdailycount
            ) AS missing
            """
        )
        assert cursor.fetchone() == (0,)
    assert EventDailyCount.objects.count() == report.rollup_rows
    # The id sequences were moved past the generated ids: the next insert does not collide.
    Profile.objects.create(workspace=workspace, external_id="new")

    from bench.segments import _run_hand
    from bench.segments_data import NOW
    from segments.selectors import segment_size

    selected = cases()
    create_segments(workspace.pk, selected)
    for case in selected:
        segment = Segment.objects.get(workspace=workspace, name=case.title[:200])
        expected = _run_hand(case.hand_sql, {"ws": workspace.pk, **case.hand_params})
        assert segment_size(segment=segment, now=NOW) == expected, case.key
    assert (
        sum(segment_size(segment=Segment.objects.get(name=case.title[:200]), now=NOW) > 0 for case in selected)
        >= len(selected) - 2
    ), "the data gives most segments members"
