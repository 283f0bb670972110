"""Segment benchmark: how fast the set evaluator counts a segment, and how fast the single-profile
check answers, on a workspace of 1,000,000 people and 10,000,000 events.

It builds a fresh database (its name must contain "bench"), loads a deterministic workspace with
``COPY`` from a generator (bench/segments_data.py), builds the event rollup as the triggers would
have, runs ``ANALYZE``, then for each of fourteen representative segments times

- the segment's count through ``segments.selectors.segment_size`` (compile + one query), and
- a hand-written SQL query of the same meaning on the same data, in the same run and with the same
  session settings — it must return the same count, or the row is flagged. "Same meaning" includes
  case: free text (regions, UTM values, custom attributes, event properties) is compared
  case-insensitively as segments do; codes and choices (country, platform, subscription states)
  exactly, as every writer stores them in one case;

and prints both times (the fastest of ``--repeat`` runs after a warm-up, alternating the two so
both see the same conditions: on a shared machine the fastest run is the one least disturbed by
other load; medians are in the JSON output), their ratio, and the
single-profile check (``profile_in_segment``) p50/p99 over ``--checks`` people.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.segments
    .venv/bin/python -m bench.segments --scale 0.1          # 100,000 people, 1,000,000 events
    .venv/bin/python -m bench.segments --reuse              # time again without regenerating
    .venv/bin/python -m bench.segments --only lapsed,nested --explain

Without DATABASE_URL (or --database-url) it uses the embedded PostgreSQL server as ``./run`` does.
Targets (2-core machine): every count under 1 s and within 1.5x of the hand-written SQL; a
single-profile check under 5 ms. See docs/segments.md, "Benchmark".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    BASE_DIR,
    EVENT_DAILY_ROLLUP_SQL,
    BenchError,
    check_loopback,
    copy_streams,
    database_name,
    exit_cleanly_on_sigterm,
    fmt_int,
    log,
    migrate,
    percentile,
    phase,
    print_table,
    recreate_database,
    sequences_past_ids,
    setup_django,
    vacuum_analyze,
    with_database,
)
from bench.segments_data import (
    DEVICE_COLUMNS,
    EVENT_COLUMNS,
    NOW,
    PROFILE_COLUMNS,
    PURCHASE_COLUMNS,
    Generator,
)

PROFILES_AT_SCALE_1 = 1_000_000
EVENTS_AT_SCALE_1 = 10_000_000
TARGET_COUNT_SECONDS = 1.0
TARGET_RATIO = 1.5
TARGET_CHECK_MS = 5.0
BENCH_SLUG = "segments-bench"


# --- the segments and their hand-written twins ------------------------------------------------------

DAY = timedelta(days=1)


def _window(days: int) -> dict[str, Any]:
    return {"last": days, "unit": "days"}


def _since(days: int) -> datetime:
    return NOW - days * DAY


def _boundary(days: int) -> dict[str, Any]:
    """The parameters of a hand-written "in the last N days" over the rollup: whole days after the
    window's first day count in full; the first day only from the window's start (recounted from the
    events for people with events on both sides of it)."""
    start = _since(days)
    first_day = start.date()
    return {
        "start": start,
        "first_day": first_day,
        "next_day": datetime.combine(first_day + DAY, datetime.min.time(), NOW.tzinfo),
    }


def _event_count_sql(event: str, days: int, having: str, alias: str = "r") -> tuple[str, dict[str, Any]]:
    """People whose count of ``event`` in the last ``days`` days satisfies ``having`` (on ``n``)."""
    b = _boundary(days)
    key = f"{alias}{days}"
    text = f"""
        SELECT {alias}.profile_id FROM segments_eventdailycount {alias}
         WHERE {alias}.workspace_id = %(ws)s AND {alias}.name = %({key}_event)s AND {alias}.day >= %({key}_first_day)s
         GROUP BY {alias}.profile_id
        HAVING sum(CASE WHEN {alias}.first_at >= %({key}_start)s THEN {alias}.count
                        WHEN {alias}.last_at < %({key}_start)s THEN 0
                        ELSE (SELECT count(*) FROM profiles_event e
                               WHERE e.profile_id = {alias}.profile_id AND e.name = {alias}.name
                                 AND e.timestamp >= %({key}_start)s AND e.timestamp < %({key}_next_day)s)
                   END) {having}"""
    params = {f"{key}_event": event, f"{key}_first_day": b["first_day"], f"{key}_start": b["start"]}
    params[f"{key}_next_day"] = b["next_day"]
    return text, params


def _did_sql(event: str, days: int, alias: str) -> tuple[str, dict[str, Any]]:
    """People who did ``event`` at least once in the last ``days`` days: a rollup row of a day in the
    window whose last event is inside it (no recount needed for "at least once")."""
    b = _boundary(days)
    text = (
        f"SELECT {alias}.profile_id FROM segments_eventdailycount {alias} WHERE {alias}.workspace_id = %(ws)s"
        f" AND {alias}.name = %({alias}_event)s AND {alias}.day >= %({alias}_first_day)s"
        f" AND {alias}.last_at >= %({alias}_start)s"
    )
    return text, {f"{alias}_event": event, f"{alias}_first_day": b["first_day"], f"{alias}_start": b["start"]}


def _age_bounds(low: int, high: int) -> dict[str, Any]:
    today = NOW.date()
    return {
        "born_by": today.replace(year=today.year - low),
        "born_after": today.replace(year=today.year - high - 1),
    }


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    definition: dict[str, Any]
    hand_sql: str
    hand_params: dict[str, Any] = field(default_factory=dict)


def cases() -> list[Case]:
    lapsed = {"not_new": NOW - 7 * DAY, "active_since": NOW - 30 * DAY, "lapsed_since": NOW - 90 * DAY}
    lapsed_where = (
        "(p.first_seen IS NULL OR p.first_seen < %(not_new)s)"
        " AND p.last_seen < %(active_since)s AND p.last_seen >= %(lapsed_since)s"
    )
    added3, added3_params = _event_count_sql("Product Added", 30, ">= 3")
    sessions5w, sessions5w_params = _event_count_sql("$session_started", 7, ">= 5", "s")
    sessions5m, sessions5m_params = _event_count_sql("$session_started", 30, ">= 5", "s")
    sessions3, sessions3_params = _event_count_sql("$session_started", 14, ">= 3", "s")
    viewed5, viewed5_params = _event_count_sql("Product Viewed", 30, ">= 5", "v")
    added7, added7_params = _did_sql("Product Added", 7, "a")
    _, ordered7_params = _did_sql("Order Completed", 7, "o")
    shoes = _boundary(14)
    near_lat, near_lon, radius = 41.88, -87.63, 50.0
    band = radius / 6371.0088 * 180 / 3.141592653589793 + 1e-9
    return [
        Case(
            "attributes",
            "Opted-in iOS users in North America (attributes only)",
            {"all": [
                {"type": "subscription", "channel": "email", "op": "eq", "value": "opted_in"},
                {"type": "location", "field": "country", "op": "one_of", "value": ["US", "CA"]},
                {"type": "platform", "op": "eq", "value": "ios"},
            ]},
            "SELECT count(*) FROM profiles_profile p WHERE p.workspace_id = %(ws)s"
            " AND p.email_subscription = 'opted_in' AND p.country IN ('US', 'CA') AND p.platform = 'ios'",
        ),
        Case(
            "teens_ms",
            "Teens in Mississippi (location + age)",
            {"all": [
                {"type": "location", "field": "region", "op": "eq", "value": "Mississippi"},
                {"type": "age", "op": "between", "value": [13, 19]},
            ]},
            "SELECT count(*) FROM profiles_profile p WHERE p.workspace_id = %(ws)s AND lower(p.region) = 'mississippi'"
            " AND p.date_of_birth <= %(born_by)s AND p.date_of_birth > %(born_after)s",
            _age_bounds(13, 19),
        ),
        Case(
            "near_chicago",
            "25-34 within 50 km of Chicago (distance + age)",
            {"all": [
                {"type": "near", "latitude": near_lat, "longitude": near_lon, "radius_km": radius},
                {"type": "age", "op": "between", "value": [25, 34]},
            ]},
            "SELECT count(*) FROM profiles_profile p WHERE p.workspace_id = %(ws)s"
            " AND p.latitude BETWEEN %(lat_low)s AND %(lat_high)s AND p.longitude IS NOT NULL"
            " AND 2 * 6371.0088 * asin(least(1, sqrt(power(sin(radians(p.latitude - %(lat)s) / 2), 2)"
            " + cos(radians(%(lat)s)) * cos(radians(p.latitude)) * power(sin(radians(p.longitude - %(lon)s) / 2), 2))))"
            " <= %(radius)s AND p.date_of_birth <= %(born_by)s AND p.date_of_birth > %(born_after)s",
            {"lat": near_lat, "lon": near_lon, "radius": radius, "lat_low": near_lat - band,
             "lat_high": near_lat + band, **_age_bounds(25, 34)},
        ),
        Case(
            "added_3_in_30d",
            "Added to cart 3+ times in the last 30 days",
            {"all": [{"type": "event", "event": "Product Added", "op": "gte", "value": 3, "window": _window(30)}]},
            f"SELECT count(*) FROM ({added3}) AS m",
            added3_params,
        ),
        Case(
            "cart_not_bought_7d",
            "Added to cart in the last 7 days but did not buy",
            {"all": [
                {"type": "event", "event": "Product Added", "window": _window(7)},
                {"type": "never_performed", "event": "Order Completed", "window": _window(7)},
            ]},
            f"SELECT count(DISTINCT a.profile_id) FROM ({added7}) AS a"
            " WHERE NOT EXISTS (SELECT 1 FROM segments_eventdailycount o WHERE o.profile_id = a.profile_id"
            " AND o.name = %(o_event)s AND o.day >= %(o_first_day)s AND o.last_at >= %(o_start)s)",
            {**added7_params, **ordered7_params},
        ),
        Case(
            "spent_200_90d",
            "Spent 200+ in the last 90 days",
            {"all": [{"type": "money_spent", "op": "gte", "value": 200, "window": _window(90)}]},
            "SELECT count(*) FROM (SELECT u.profile_id FROM profiles_purchase u WHERE u.workspace_id = %(ws)s"
            " AND u.timestamp >= %(since)s GROUP BY u.profile_id HAVING sum(u.price * u.quantity) >= 200) AS m",
            {"since": _since(90)},
        ),
        Case(
            "nested",
            "3-level tree: (US and 3+ sessions in 14d, or GB/DE/FR and 5+ views in 30d),"
            " none of (unsubscribed, bought in 30d)",
            {"all": [
                {"any": [
                    {"all": [
                        {"type": "location", "field": "country", "op": "eq", "value": "US"},
                        {"type": "sessions", "op": "gte", "value": 3, "window": _window(14)},
                    ]},
                    {"all": [
                        {"type": "location", "field": "country", "op": "one_of", "value": ["GB", "DE", "FR"]},
                        {"type": "event", "event": "Product Viewed", "op": "gte", "value": 5, "window": _window(30)},
                    ]},
                ]},
                {"none": [
                    {"any": [
                        {"type": "subscription", "channel": "email", "op": "eq", "value": "unsubscribed"},
                        {"type": "purchase_count", "op": "gte", "value": 1, "window": _window(30)},
                    ]},
                ]},
            ]},
            # The people in either behaviour set, each set computed once, with a flag per set, in
            # id order (their profiles are then read page after page), rather than an OR of two
            # subplans probed for each of a million profiles (1.5-1.8 s here).
            "SELECT count(*) FROM ("
            "  SELECT b.profile_id, bool_or(b.s) AS s, bool_or(b.v) AS v FROM ("
            f"   SELECT profile_id, TRUE AS s, FALSE AS v FROM ({sessions3}) AS s3"
            f"   UNION ALL SELECT profile_id, FALSE, TRUE FROM ({viewed5}) AS v5"
            "  ) AS b GROUP BY b.profile_id ORDER BY b.profile_id"
            ") AS c JOIN profiles_profile p ON p.id = c.profile_id WHERE p.workspace_id = %(ws)s"
            " AND ((p.country = 'US' AND c.s) OR (p.country IN ('GB', 'DE', 'FR') AND c.v))"
            " AND p.email_subscription <> 'unsubscribed'"
            " AND NOT EXISTS (SELECT 1 FROM profiles_purchase u"
            "                 WHERE u.profile_id = p.id AND u.timestamp >= %(since)s)",
            {**sessions3_params, **viewed5_params, "since": _since(30)},
        ),
        Case(
            "app_version",
            "iOS on app version 4.10 or later (semantic version)",
            {"all": [
                {"type": "platform", "op": "eq", "value": "ios"},
                {"type": "app_version", "op": "gte", "value": "4.10.0"},
            ]},
            "SELECT count(*) FROM profiles_profile p WHERE p.workspace_id = %(ws)s AND p.platform = 'ios'"
            " AND segments_semver_key(p.app_version) >= '{4,10,0,0,1}'::bigint[]",
        ),
        Case(
            "lapsed",
            "Lifecycle stage: lapsed",
            {"all": [{"type": "lifecycle_stage", "op": "eq", "value": "lapsed"}]},
            f"SELECT count(*) FROM profiles_profile p WHERE p.workspace_id = %(ws)s AND {lapsed_where}",
            lapsed,
        ),
        Case(
            "lapsed_social",
            "Lapsed users who came from social ads",
            {"all": [
                {"type": "lifecycle_stage", "op": "eq", "value": "lapsed"},
                {"type": "acquisition", "field": "medium", "op": "one_of", "value": ["social", "paid_social"]},
            ]},
            f"SELECT count(*) FROM profiles_profile p WHERE p.workspace_id = %(ws)s AND {lapsed_where}"
            " AND lower(p.utm_medium) IN ('social', 'paid_social')",
            lapsed,
        ),
        Case(
            "custom_attributes",
            "Plus or Pro plan who like shoes (custom attributes: string, array)",
            {"all": [
                {"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": "one_of",
                 "value": ["plus", "pro"]},
                {"type": "custom_attribute", "attribute": "favorite_categories", "data_type": "array",
                 "op": "includes", "value": "shoes"},
            ]},
            "SELECT count(*) FROM profiles_profile p WHERE p.workspace_id = %(ws)s"
            " AND lower(p.custom_attributes ->> 'plan') IN ('plus', 'pro')"
            " AND lower((p.custom_attributes -> 'favorite_categories')::text)::jsonb @> '[\"shoes\"]'",
        ),
        Case(
            "sessions_5_in_7d",
            "5+ sessions in the last 7 days",
            {"all": [{"type": "sessions", "op": "gte", "value": 5, "window": _window(7)}]},
            f"SELECT count(*) FROM ({sessions5w}) AS m",
            sessions5w_params,
        ),
        Case(
            "opened_5_never_bought",
            "Opened the app 5+ times in 30 days but never purchased",
            {"all": [
                {"type": "sessions", "op": "gte", "value": 5, "window": _window(30)},
                {"none": [{"type": "purchase_count", "op": "gte", "value": 1}]},
            ]},
            f"SELECT count(*) FROM ({sessions5m}) AS m"
            " WHERE NOT EXISTS (SELECT 1 FROM profiles_purchase u WHERE u.profile_id = m.profile_id)",
            sessions5m_params,
        ),
        Case(
            "viewed_shoes_3_in_14d",
            "Viewed shoes 3+ times in 14 days (event property filter)",
            {"all": [{
                "type": "event", "event": "Product Viewed", "op": "gte", "value": 3, "window": _window(14),
                "properties": [{"property": "category", "data_type": "string", "op": "eq", "value": "shoes"}],
            }]},
            "SELECT count(*) FROM (SELECT r.profile_id FROM segments_eventdailycount r WHERE r.workspace_id = %(ws)s"
            " AND r.name = 'Product Viewed' AND r.day >= %(first_day)s"
            " GROUP BY r.profile_id HAVING sum(r.count) >= 3) c"
            " WHERE (SELECT count(*) FROM profiles_event e WHERE e.profile_id = c.profile_id"
            " AND e.name = 'Product Viewed' AND e.timestamp >= %(start)s"
            " AND lower(e.properties ->> 'category') = 'shoes') >= 3",
            {"first_day": shoes["first_day"], "start": shoes["start"]},
        ),
    ]  # fmt: skip


# --- loading ----------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    profiles: int = 0
    events: int = 0
    purchases: int = 0
    devices: int = 0
    rollup_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    sizes_mb: dict[str, float] = field(default_factory=dict)


def _setup_workspace() -> tuple[int, dict[str, int]]:
    from profiles.models import App, Workspace

    workspace = Workspace.objects.create(name="Segments bench", slug=BENCH_SLUG)
    apps = {
        platform: App.objects.create(workspace=workspace, name=f"Bench {platform}", platform=platform).pk
        for platform in ("ios", "android", "web")
    }
    return workspace.pk, apps


def load(url: str, *, seed: int, profiles: int, events: int) -> LoadReport:
    """Fill the freshly migrated database at ``url`` and return what went in.

    People, events, purchases and devices are streamed with COPY over four connections at once
    (one table each, in step, person by person) with ``session_replication_role = replica``: that
    skips the per-row foreign-key checks (the generator's ids are consistent by construction) and
    the rollup trigger, which would otherwise run its upsert once per COPY statement over every
    event. The rollup is then built in one ``INSERT ... SELECT ... GROUP BY`` — the same grouping
    the insert trigger does (segments migration 0002), over all events at once — with its covering
    index dropped during the insert and recreated from its own definition afterwards.
    """
    from django.db import connection

    report = LoadReport()
    workspace_id, app_ids = _setup_workspace()
    connection.close()
    generator = Generator(seed=seed, profiles=profiles, events=events, workspace_id=workspace_id, app_ids=app_ids)
    tables = {
        "profiles_profile": PROFILE_COLUMNS,
        "profiles_event": EVENT_COLUMNS,
        "profiles_purchase": PURCHASE_COLUMNS,
        "profiles_device": DEVICE_COLUMNS,
    }
    with phase(report.seconds, "COPY"), contextlib.ExitStack() as stack:
        copies = copy_streams(stack, url, tables)
        last_log = time.monotonic()
        for chunk in generator:
            copies["profiles_profile"].write(chunk.profiles)
            copies["profiles_event"].write(chunk.events)
            copies["profiles_purchase"].write(chunk.purchases)
            copies["profiles_device"].write(chunk.devices)
            if time.monotonic() - last_log > 15:
                last_log = time.monotonic()
                counts = generator.counts
                log(f"  {counts.profiles:,} people, {counts.events:,} events, {counts.purchases:,} purchase lines")
    counts = generator.counts
    report.profiles, report.events, report.purchases, report.devices = (
        counts.profiles,
        counts.events,
        counts.purchases,
        counts.devices,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        sequences_past_ids(conn, tables)
        with phase(report.seconds, "rollup"):
            index = conn.execute("SELECT pg_get_indexdef('event_daily_ws_name_day_idx'::regclass)").fetchone()
            assert index is not None
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("SET work_mem = '1GB'")
            with conn.transaction():
                conn.execute("DROP INDEX event_daily_ws_name_day_idx")
                conn.execute(EVENT_DAILY_ROLLUP_SQL)
                conn.execute(index[0])
        with phase(report.seconds, "VACUUM ANALYZE"):
            vacuum_analyze(conn, [*tables, "segments_eventdailycount"])
        row = conn.execute("SELECT count(*) FROM segments_eventdailycount").fetchone()
        report.rollup_rows = int(row[0]) if row else 0
        report.sizes_mb = _sizes(conn)
    return report


def _sizes(conn: psycopg.Connection[Any]) -> dict[str, float]:
    rows = conn.execute(
        "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname = ANY(%s)",
        [["profiles_profile", "profiles_event", "profiles_purchase", "profiles_device", "segments_eventdailycount"]],
    ).fetchall()
    return {str(name): round(int(size) / 1e6, 1) for name, size in rows}


# --- timing -----------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    key: str
    title: str
    count: int
    hand_count: int
    compiled_ms: float  # fastest run
    hand_ms: float
    compiled_median_ms: float
    hand_median_ms: float
    check_p50_ms: float
    check_p99_ms: float
    check_in_segment: int
    checks: int

    @property
    def ratio(self) -> float:
        return self.compiled_ms / self.hand_ms if self.hand_ms else float("inf")

    @property
    def meets_targets(self) -> bool:
        return (
            self.count == self.hand_count
            and self.compiled_ms < TARGET_COUNT_SECONDS * 1000
            and self.ratio <= TARGET_RATIO
            and self.check_p99_ms < TARGET_CHECK_MS
        )


def _run_hand(text: str, params: dict[str, Any]) -> int:
    from django.db import connection, transaction

    from segments.selectors import SET_QUERY_SETTINGS

    with transaction.atomic(), connection.cursor() as cursor:
        for setting in SET_QUERY_SETTINGS:
            cursor.execute(setting)
        cursor.execute(text, params)
        row = cursor.fetchone()
    return int(row[0])


def _time_pair(first: Callable[[], int], second: Callable[[], int], repeat: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``repeat`` runs of each, alternating, after one warm-up run of each."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for run, found in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            run()
            found.append((time.perf_counter() - started) * 1000)
    return times


def time_case(case: Case, *, workspace_id: int, repeat: int, checks: int, seed: int, explain: bool) -> CaseResult:
    from segments.evaluator import profile_in_segment
    from segments.models import Segment
    from segments.selectors import segment_size

    segment = Segment.objects.get(workspace_id=workspace_id, name=case.title[:200])
    params = {"ws": workspace_id, **case.hand_params}
    if explain:
        _explain(segment, case, params)
    count = segment_size(segment=segment, now=NOW)
    hand_count = _run_hand(case.hand_sql, params)
    compiled_times, hand_times = _time_pair(
        lambda: segment_size(segment=segment, now=NOW), lambda: _run_hand(case.hand_sql, params), repeat
    )
    # Members and non-members alike: a deterministic sample of everyone.
    from profiles.models import Profile

    high = Profile.objects.filter(workspace_id=workspace_id).order_by("-pk").values_list("pk", flat=True).first() or 1
    rng = random.Random(seed)
    sample = [rng.randrange(1, high + 1) for _ in range(checks)]
    profile_in_segment(profile_id=sample[0], segment=segment, now=NOW)  # warm-up
    check_times = []
    inside = 0
    for profile_id in sample:
        started = time.perf_counter()
        inside += profile_in_segment(profile_id=profile_id, segment=segment, now=NOW)
        check_times.append((time.perf_counter() - started) * 1000)
    check_times.sort()
    return CaseResult(
        key=case.key,
        title=case.title,
        count=count,
        hand_count=hand_count,
        compiled_ms=min(compiled_times),
        hand_ms=min(hand_times),
        compiled_median_ms=statistics.median(compiled_times),
        hand_median_ms=statistics.median(hand_times),
        check_p50_ms=percentile(check_times, 0.5),
        check_p99_ms=percentile(check_times, 0.99),
        check_in_segment=inside,
        checks=checks,
    )


def _explain(segment: Any, case: Case, params: dict[str, Any]) -> None:
    from django.db import connection, transaction

    from segments.selectors import SET_QUERY_SETTINGS, size_query

    # The query segment_size runs (size_query chooses how an OR of behaviours is read).
    compiled = size_query(segment.definition, workspace_id=segment.workspace_id, now=NOW, segment_id=segment.pk)
    for label, text, query_params in (
        ("compiled", compiled.text, compiled.params),
        ("hand-written", case.hand_sql, params),
    ):
        with transaction.atomic(), connection.cursor() as cursor:
            for setting in SET_QUERY_SETTINGS:
                cursor.execute(setting)
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {text}", query_params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        print(f"\n--- {case.key}: {label} ---\n{plan}")


def create_segments(workspace_id: int, selected: Sequence[Case]) -> None:
    from profiles.models import Workspace
    from segments.models import Segment
    from segments.services import segment_create, segment_update

    workspace = Workspace.objects.get(pk=workspace_id)
    for case in selected:
        existing = Segment.objects.filter(workspace=workspace, name=case.title[:200]).first()
        if existing is None:
            segment_create(workspace=workspace, name=case.title[:200], definition=case.definition)
        else:
            segment_update(segment=existing, definition=case.definition)


# --- the run ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.segments",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--scale", type=float, default=1.0, help="1.0 = 1,000,000 people and 10,000,000 events; 0.1 = a tenth"
    )
    data.add_argument("--seed", type=int, default=42, help="seed of the generated workspace")
    data.add_argument("--reuse", action="store_true", help="time the existing benchmark database (no regeneration)")
    run = parser.add_argument_group("timing")
    run.add_argument("--repeat", type=int, default=5, help="timed runs per query after one warm-up (fastest shown)")
    run.add_argument("--checks", type=int, default=300, help="single-profile checks per segment")
    run.add_argument("--only", default="", help="comma-separated case keys to run (default: all)")
    run.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of both queries per case")
    db = parser.add_argument_group("database")
    db.add_argument("--database-url", help="PostgreSQL server to use (default: $DATABASE_URL, else embedded)")
    db.add_argument("--db-name", default="engage_segments_bench", help="benchmark database (dropped and recreated)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if "bench" not in args.db_name:
        parser.error("--db-name must contain 'bench' (the database is dropped and recreated)")
    return args


def run(args: argparse.Namespace, server_url: str) -> int:
    profiles = max(100, round(PROFILES_AT_SCALE_1 * args.scale))
    events = max(1000, round(EVENTS_AT_SCALE_1 * args.scale))
    url = with_database(server_url, args.db_name)
    report: LoadReport | None = None
    if args.reuse:
        log(f"reusing database {args.db_name}")
        setup_django(url)
    else:
        log(f"recreating database {args.db_name}")
        url = recreate_database(server_url, args.db_name)
        migrate(url)
        setup_django(url)
        report = load(url, seed=args.seed, profiles=profiles, events=events)
        print_load(report)
    from profiles.models import Workspace

    workspace = Workspace.objects.filter(slug=BENCH_SLUG).first()
    if workspace is None:
        raise BenchError(f"database {args.db_name} holds no benchmark workspace; run without --reuse first")
    wanted = {key.strip() for key in args.only.split(",") if key.strip()}
    selected = [case for case in cases() if not wanted or case.key in wanted]
    if wanted - {case.key for case in selected}:
        raise BenchError(f"unknown case(s): {', '.join(sorted(wanted - {c.key for c in selected}))}")
    create_segments(workspace.pk, selected)
    load_before = os.getloadavg()[0]
    log(f"timing {len(selected)} segments (load average {load_before:.1f} on {os.cpu_count()} CPUs)")
    results = []
    for case in selected:
        result = time_case(
            case,
            workspace_id=workspace.pk,
            repeat=args.repeat,
            checks=args.checks,
            seed=args.seed,
            explain=args.explain,
        )
        log(f"  {case.key}: {result.count:,} people, {result.compiled_ms:.0f} ms vs {result.hand_ms:.0f} ms")
        results.append(result)
    print_results(results)
    load_after = os.getloadavg()[0]
    print(
        f"Load average (1 min): {load_before:.1f} before timing, {load_after:.1f} after, on {os.cpu_count()} CPUs."
        " Other processes' load slows every figure, the single-profile p99 most."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "load": asdict(report) if report else None,
            "results": [{**asdict(r), "ratio": r.ratio, "meets_targets": r.meets_targets} for r in results],
            "load_average": {"before": load_before, "after": load_after, "cpus": os.cpu_count()},
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


def print_load(report: LoadReport) -> None:
    print_table(
        "Generated workspace",
        [
            ("people", fmt_int(report.profiles)),
            ("events", fmt_int(report.events)),
            ("purchase lines", fmt_int(report.purchases)),
            ("devices", fmt_int(report.devices)),
            (
                "rollup rows",
                f"{fmt_int(report.rollup_rows)} ({report.rollup_rows / max(1, report.events):.0%} of events)",
            ),
            *((f"{name} (MB)", f"{size:,.0f}") for name, size in sorted(report.sizes_mb.items())),
            *((f"{phase} seconds", f"{seconds:.0f}") for phase, seconds in report.seconds.items()),
        ],
    )


def print_results(results: Sequence[CaseResult]) -> None:
    rows = []
    for r in results:
        flags = []
        if r.count != r.hand_count:
            flags.append(f"COUNT MISMATCH (hand {r.hand_count:,})")
        if r.compiled_ms >= TARGET_COUNT_SECONDS * 1000:
            flags.append(">1s")
        if r.ratio > TARGET_RATIO:
            flags.append(f">{TARGET_RATIO}x")
        if r.check_p99_ms >= TARGET_CHECK_MS:
            flags.append(f"check>{TARGET_CHECK_MS:.0f}ms")
        rows.append(
            (
                r.key,
                fmt_int(r.count),
                f"{r.compiled_ms:.0f}",
                f"{r.hand_ms:.0f}",
                f"{r.ratio:.2f}",
                f"{r.check_p50_ms:.2f}",
                f"{r.check_p99_ms:.2f}",
                "ok" if not flags else ", ".join(flags),
            )
        )
    print_table(
        f"Segments at {NOW:%Y-%m-%d %H:%M} UTC: segment_size vs hand-written SQL (fastest run, ms),"
        " single-profile check (ms)",
        rows,
        headers=("segment", "members", "segment ms", "hand ms", "ratio", "check p50", "check p99", "targets"),
    )
    met = sum(r.meets_targets for r in results)
    print(
        f"\n{met} of {len(results)} segments meet every target (count < {TARGET_COUNT_SECONDS:.0f} s, "
        f"<= {TARGET_RATIO}x hand-written, check p99 < {TARGET_CHECK_MS:.0f} ms)."
    )


@contextlib.contextmanager
def _server_url(database_url: str | None) -> Iterator[str]:
    """The PostgreSQL server: --database-url, $DATABASE_URL, else the embedded one as ./run has it."""
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    sys.path.insert(0, str(BASE_DIR))
    from scripts.embedded import Layout, postgres_ready, start_postgres
    from scripts.processes import StartupError, Supervisor

    layout = Layout.for_data_dir(Path(os.environ.get("ENGAGE_DATA_DIR") or BASE_DIR / ".data"))
    with Supervisor() as supervisor:
        if not postgres_ready(layout):
            log(f"PostgreSQL: starting the embedded server as ./run does (data in {layout.pgdata})")
            try:
                start_postgres(supervisor, layout)
            except StartupError as error:
                raise BenchError(f"could not start PostgreSQL: {error}") from None
        else:
            log(f"PostgreSQL: the embedded server of the running ./run ({layout.socket_dir})")
        yield with_database(layout.database_url, "postgres")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    try:
        with _server_url(args.database_url) as server_url:
            check_loopback(server_url)
            log(f"benchmark database {database_name(with_database(server_url, args.db_name))}")
            return run(args, server_url)
    except BenchError as exc:
        print(f"bench.segments: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.segments: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
