"""Keeping the report rollups current (see ``campaigns.reports.models`` for what each table holds).

**Feeds.** ``reports_rollup`` (beat, every minute) reads three tables in id order, in chunks of
``REPORTS_FEED_BATCH`` rows, one transaction per chunk:

- ``profiles_event``: activity (the app's own events and session starts) becomes cohorts, active
  days and first events; engagement events (``$message_*``, ``$unsubscribed``,
  ``$control_group_enrolled``, carrying the send id) become the stages of each send;
- ``campaigns_delivery``: every main-step delivery becomes a send (targeted, its variant, status);
- ``profiles_profilemerge``: a merged person's rows move to the surviving profile.

Every write is idempotent: sends' stages are set once from NULL (a conditional update whose
changed rows are what is added to ``ReportCampaignHour``), cohorts are inserted once, active days
copy absolute counts from the segments' exact daily rollup, first events keep the earliest time.
So a chunk can be read again at no harm, which is how rows committed late are caught: ids are
taken when a row is inserted but become visible when its transaction commits, so a range already
read can gain rows. Each chunk read in the last ``REPORTS_FEED_OVERLAP`` seconds keeps its
signature (row count, id sum); each run re-counts them (an index-only scan) and reads a chunk again
if it changed.

Deliveries also change after they are read (scheduled -> sent, skipped, cancelled): sends whose
delivery had not finished are re-read every run (a partial index keeps that set small).

**Refresh.** ``reports_refresh`` (beat, every ten minutes) recomputes what cannot be added to
(distinct people: active users over 7 and 30 days, retention; revenue per currency) for the days the
feeds marked as changed, and each recent campaign's retention at most every
``REPORTS_CAMPAIGN_RETENTION_EVERY`` seconds.

**Concurrency.** One rollup or refresh at a time: each holds a PostgreSQL advisory lock for its
run (a second one returns at once). Intake, sending and tracking never wait for the reports.

``reports_rebuild`` empties the rollups and reads every feed again from the start (the same code),
then refreshes: the repair tool, and how the benchmark builds its rollups.
"""

# The SQL below is assembled from module constants (table, column and event names); every value
# that comes from data or a caller is a query parameter.
# ruff: noqa: S608
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from profiles.engagement import (
    CONTROL_GROUP_ENROLLED,
    MESSAGE_BOUNCED,
    MESSAGE_CLICKED,
    MESSAGE_COMPLAINED,
    MESSAGE_CONVERTED,
    MESSAGE_DELIVERED,
    MESSAGE_OPENED,
    MESSAGE_RECEIVED,
    SESSION_STARTED,
    UNSUBSCRIBED,
)

from .models import FIRST_TIMES_BLOCK, FIRST_TIMES_NEVER, ReportCursor

logger = logging.getLogger(__name__)

# Advisory lock keys (an arbitrary constant per job, shared by every process).
ROLLUP_LOCK = 7_310_601
REFRESH_LOCK = 7_310_602

MAIN_STEP = "main"
OPEN_STATUSES = ("scheduled", "sending")

# The stage each engagement event marks on a send, in funnel order.
STAGE_EVENTS: dict[str, str] = {
    "sent": MESSAGE_RECEIVED,
    "delivered": MESSAGE_DELIVERED,
    "opened": MESSAGE_OPENED,
    "clicked": MESSAGE_CLICKED,
    "bounced": MESSAGE_BOUNCED,
    "complained": MESSAGE_COMPLAINED,
    "unsubscribed": UNSUBSCRIBED,
    "converted": MESSAGE_CONVERTED,
}
STAGES = tuple(STAGE_EVENTS)
ENGAGEMENT_NAMES = (*STAGE_EVENTS.values(), CONTROL_GROUP_ENROLLED)

# Calls that are not the person doing anything (a back end syncing traits, an alias).
NOT_ACTIVITY = ("identify", "alias", "group")


def activity_sql(alias: str) -> str:
    """Whether the event (or daily count) row ``alias`` is the person doing something: the app's own
    events other than identify/alias/group calls, and session starts."""
    return (
        f"({alias}.name = '{SESSION_STARTED}' OR ({alias}.name NOT LIKE '$%%'"
        f" AND {alias}.name NOT IN ('identify', 'alias', 'group')))"
    )


# The whole-send status columns of ReportCampaignHour, by delivery status.
STATUS_COLUMNS = {
    "scheduled": "pending",
    "sending": "pending",
    "sent": "status_sent",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
    "control": "control",
}
COUNT_COLUMNS = ("targeted", "pending", "status_sent", "failed", "skipped", "cancelled", "control", *STAGES)
HOUR_KEY = ("campaign_id", "hour", "variant", "platform", "channel")


Params = Sequence[Any] | Mapping[str, Any]


def _execute(sql: str, params: Params = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _fetch(sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@contextmanager
def _transaction() -> Iterator[None]:
    """A rollup transaction: JIT off (compiling costs more than it saves on these set queries) and
    room to sort and hash in memory."""
    with transaction.atomic():
        _execute("SET LOCAL jit = off")
        _execute("SET LOCAL work_mem = '256MB'")
        yield


@contextmanager
def advisory_lock(key: int) -> Iterator[bool]:
    """Hold a session-level advisory lock for the block; yield whether it was acquired."""
    (acquired,) = _fetch("SELECT pg_try_advisory_lock(%s)", [key])[0]
    try:
        yield bool(acquired)
    finally:
        if acquired:
            _execute("SELECT pg_advisory_unlock(%s)", [key])


# --- sends -----------------------------------------------------------------------------------------


def _sends_ensure() -> None:
    """Create the whole-send rows of the sends in ``rpt_sends`` that do not exist yet, and count
    them (targeted, and their status) in ReportCampaignHour."""
    status_counts = ", ".join(
        f"count(*) FILTER (WHERE status IN ({', '.join(repr(s) for s, col in STATUS_COLUMNS.items() if col == c)}))"
        f" AS {c}"
        for c in dict.fromkeys(STATUS_COLUMNS.values())
    )
    _execute(
        f"""
        WITH ins AS (
            INSERT INTO campaigns_reportsend
                (send_id, channel, workspace_id, campaign_id, profile_id, variant, platform, due_at, status)
            SELECT send_id, '', workspace_id, campaign_id, profile_id, variant, platform, due_at, status
            FROM rpt_sends
            ON CONFLICT (send_id, channel) DO NOTHING
            RETURNING campaign_id, workspace_id, due_at, variant, platform, status
        ), src AS (
            SELECT campaign_id, date_trunc('hour', due_at, 'UTC') AS hour, variant, platform, '' AS channel,
                   workspace_id, count(*) AS targeted, {status_counts}
            FROM ins GROUP BY 1, 2, 3, 4, 6
        )
        INSERT INTO campaigns_reportcampaignhour
            (campaign_id, hour, variant, platform, channel, workspace_id, {", ".join(COUNT_COLUMNS)}, revenue)
        SELECT campaign_id, hour, variant, platform, channel, workspace_id, targeted,
               {", ".join(dict.fromkeys(STATUS_COLUMNS.values()))}, {", ".join("0" for _ in STAGES)}, 0
        FROM src
        ON CONFLICT (campaign_id, hour, variant, platform, channel) DO UPDATE SET
            {", ".join(f"{c} = campaigns_reportcampaignhour.{c} + excluded.{c}" for c in COUNT_COLUMNS[:7])}
        """
    )


def _sends_sync_status() -> None:
    """Sends whose delivery was still scheduled or sending when last read: take the delivery's
    status now, and move their count from pending to it."""
    closed = ", ".join(
        f"count(*) FILTER (WHERE status = '{status}') AS {column}"
        for status, column in STATUS_COLUMNS.items()
        if column != "pending"
    )
    columns = [column for status, column in STATUS_COLUMNS.items() if column != "pending"]
    _execute(
        f"""
        WITH upd AS (
            UPDATE campaigns_reportsend f SET status = d.status
            FROM campaigns_delivery d
            WHERE f.channel = '' AND f.status IN ('scheduled', 'sending') AND d.id = f.send_id
              AND d.status NOT IN ('scheduled', 'sending')
            RETURNING f.campaign_id, f.workspace_id, f.due_at, f.variant, f.platform, f.status
        ), src AS (
            SELECT campaign_id, date_trunc('hour', due_at, 'UTC') AS hour, variant, platform, workspace_id,
                   -count(*) AS pending, {closed}
            FROM upd GROUP BY 1, 2, 3, 4, 5
        )
        INSERT INTO campaigns_reportcampaignhour
            (campaign_id, hour, variant, platform, channel, workspace_id, {", ".join(COUNT_COLUMNS)}, revenue)
        SELECT campaign_id, hour, variant, platform, '', workspace_id, 0, pending, {", ".join(columns)},
               {", ".join("0" for _ in STAGES)}, 0
        FROM src
        ON CONFLICT (campaign_id, hour, variant, platform, channel) DO UPDATE SET
            pending = campaigns_reportcampaignhour.pending + excluded.pending,
            {", ".join(f"{c} = campaigns_reportcampaignhour.{c} + excluded.{c}" for c in columns)}
        """
    )


def _sends_apply_stages() -> None:
    """Apply ``rpt_sig`` (per send and channel, the earliest time of each stage in this chunk) to
    the sends: each stage is set once, and what changed is added to ReportCampaignHour."""
    # Channel rows that do not exist yet (the whole-send rows exist: _sends_ensure ran first).
    _execute(
        """
        INSERT INTO campaigns_reportsend
            (send_id, channel, workspace_id, campaign_id, profile_id, variant, platform, due_at, status)
        SELECT s.send_id, s.channel, f.workspace_id, f.campaign_id, f.profile_id, f.variant, f.platform, f.due_at, ''
        FROM rpt_sig s JOIN campaigns_reportsend f ON f.send_id = s.send_id AND f.channel = ''
        WHERE s.channel <> ''
        ON CONFLICT (send_id, channel) DO NOTHING
        """
    )
    newly = ", ".join(f"(f.{s}_at IS NULL AND s.{s}_at IS NOT NULL)::int AS {s}" for s in STAGES)
    _execute(
        f"""
        CREATE TEMP TABLE rpt_delta ON COMMIT DROP AS
        SELECT f.campaign_id, date_trunc('hour', f.due_at, 'UTC') AS hour, f.variant, f.platform, f.channel,
               f.workspace_id, {newly},
               CASE WHEN f.converted_at IS NULL AND s.converted_at IS NOT NULL THEN coalesce(s.revenue, 0) ELSE 0
               END AS revenue
        FROM rpt_sig s JOIN campaigns_reportsend f ON f.send_id = s.send_id AND f.channel = s.channel
        """
    )
    changed = " OR ".join(f"(f.{s}_at IS NULL AND s.{s}_at IS NOT NULL)" for s in STAGES)
    _execute(
        f"""
        UPDATE campaigns_reportsend f SET
            {", ".join(f"{s}_at = coalesce(f.{s}_at, s.{s}_at)" for s in STAGES)},
            revenue = CASE WHEN f.converted_at IS NULL AND s.converted_at IS NOT NULL THEN s.revenue ELSE f.revenue END
        FROM rpt_sig s
        WHERE f.send_id = s.send_id AND f.channel = s.channel AND ({changed})
        """
    )
    _execute(
        f"""
        INSERT INTO campaigns_reportcampaignhour
            (campaign_id, hour, variant, platform, channel, workspace_id, {", ".join(COUNT_COLUMNS)}, revenue)
        SELECT campaign_id, hour, variant, platform, channel, workspace_id, 0, 0, 0, 0, 0, 0, 0,
               {", ".join(f"sum({s})" for s in STAGES)}, sum(revenue)
        FROM rpt_delta
        GROUP BY campaign_id, hour, variant, platform, channel, workspace_id
        HAVING {" + ".join(f"sum({s})" for s in STAGES)} > 0
        ON CONFLICT (campaign_id, hour, variant, platform, channel) DO UPDATE SET
            {", ".join(f"{s} = campaigns_reportcampaignhour.{s} + excluded.{s}" for s in STAGES)},
            revenue = campaigns_reportcampaignhour.revenue + excluded.revenue
        """
    )
    _execute("DROP TABLE rpt_delta")


def _sends_source_sql(where: str) -> str:
    """Main-step deliveries as sends (``rpt_sends`` rows), for the deliveries ``m`` matching ``where``."""
    return f"""
        SELECT DISTINCT ON (m.id) m.id AS send_id, m.workspace_id, m.campaign_id, m.profile_id,
               CASE WHEN m.status = 'control' THEN 'control' ELSE coalesce(v.key, '') END AS variant,
               coalesce(rp.platform, p.platform, '') AS platform, m.scheduled_for AS due_at, m.status
        FROM campaigns_delivery m
        LEFT JOIN campaigns_variant v ON v.id = m.variant_id
        LEFT JOIN campaigns_reportprofile rp ON rp.profile_id = m.profile_id
        LEFT JOIN profiles_profile p ON p.id = m.profile_id
        WHERE m.step_key = '{MAIN_STEP}' AND {where}
    """


# --- the event feed ------------------------------------------------------------------------------


def _events_activity() -> None:
    activity = activity_sql("e")
    # Cohorts: people seen for the first time, counted per cohort day, platform and source.
    _execute(
        f"""
        WITH src AS (
            SELECT e.profile_id, min(e.timestamp) AS first_ts FROM rpt_ev e WHERE {activity} GROUP BY e.profile_id
        ), ins AS (
            INSERT INTO campaigns_reportprofile (profile_id, workspace_id, cohort_day, platform, source)
            SELECT p.id, p.workspace_id, (least(p.first_seen, s.first_ts) AT TIME ZONE 'UTC')::date, p.platform,
                   left(p.utm_source, 255)
            FROM src s JOIN profiles_profile p ON p.id = s.profile_id
            ON CONFLICT (profile_id) DO NOTHING
            RETURNING workspace_id, cohort_day, platform, source
        ), counted AS (
            INSERT INTO campaigns_reportcohortday (workspace_id, day, platform, source, profiles)
            SELECT workspace_id, cohort_day, platform, source, count(*) FROM ins GROUP BY 1, 2, 3, 4
            ON CONFLICT (workspace_id, day, platform, source)
                DO UPDATE SET profiles = campaigns_reportcohortday.profiles + excluded.profiles
            RETURNING workspace_id, day
        )
        INSERT INTO campaigns_reportdirtyday (workspace_id, day)
        SELECT DISTINCT workspace_id, day FROM counted ON CONFLICT DO NOTHING
        """
    )
    _execute(
        f"""
        CREATE TEMP TABLE rpt_touch ON COMMIT DROP AS
        SELECT DISTINCT e.profile_id, (e.timestamp AT TIME ZONE 'UTC')::date AS day FROM rpt_ev e WHERE {activity}
        """
    )
    active_days_recount()
    _execute("DROP TABLE rpt_touch")
    # The first times that changed (new, or earlier than known) go on to ReportFirstTimes.
    _execute(
        f"""
        CREATE TEMP TABLE rpt_first_changed ON COMMIT DROP AS
        WITH changed AS (
            INSERT INTO campaigns_reportfirstevent
                (profile_id, name, workspace_id, first_at, platform, source, cohort_day)
            SELECT e.profile_id, e.name, rp.workspace_id, min(e.timestamp), rp.platform, rp.source, rp.cohort_day
            FROM rpt_ev e JOIN campaigns_reportprofile rp ON rp.profile_id = e.profile_id
            WHERE {activity}
            GROUP BY e.profile_id, e.name, rp.workspace_id, rp.platform, rp.source, rp.cohort_day
            ON CONFLICT (profile_id, name) DO UPDATE SET first_at = excluded.first_at
                WHERE excluded.first_at < campaigns_reportfirstevent.first_at
            RETURNING workspace_id, profile_id, name
        )
        SELECT * FROM changed
        """
    )
    if not _first_times_deferred:
        first_times_sync("rpt_first_changed")
    _execute("DROP TABLE rpt_first_changed")
    # Every day an event landed on: its active users, messages, conversions or revenue may change.
    _execute(
        """
        INSERT INTO campaigns_reportdirtyday (workspace_id, day)
        SELECT DISTINCT workspace_id, (timestamp AT TIME ZONE 'UTC')::date FROM rpt_ev ON CONFLICT DO NOTHING
        """
    )


# --- first times as arrays (ReportFirstTimes) ---------------------------------------------------------

# True while reports_rebuild reads every feed from the start: the arrays are built once at the end
# instead of being rewritten by every chunk (each chunk of a rebuild touches every block).
_first_times_deferred = False

# The first time as ReportFirstTimes keeps it: microseconds since 1970, exact (a timestamptz is a
# whole number of microseconds, and every such number up to 2**53 is exact in double precision).
FIRST_US_SQL = "(date_part('epoch', {0}) * 1000000)::bigint"


def first_times_sync(changed: str) -> None:
    """Copy the first times of the (workspace_id, profile_id, name) rows of table ``changed`` from
    ReportFirstEvent into ReportFirstTimes (``FIRST_TIMES_NEVER`` where there is none any more).
    Copies absolute values, so it is idempotent like every other rollup write."""
    _execute(
        f"""
        INSERT INTO campaigns_reportfirsttimes (workspace_id, name, block, times)
        SELECT workspace_id, name, block, array_fill({FIRST_TIMES_NEVER}::bigint, ARRAY[{FIRST_TIMES_BLOCK}])
        FROM (SELECT DISTINCT workspace_id, name, (profile_id / {FIRST_TIMES_BLOCK})::int AS block FROM {changed}) AS b
        ORDER BY workspace_id, name, block
        ON CONFLICT (workspace_id, name, block) DO NOTHING
        """
    )
    _execute(
        f"""
        UPDATE campaigns_reportfirsttimes t SET times = rpt_first_times_set(t.times, c.positions, c.times)
        FROM (
            SELECT c.workspace_id, c.name, (c.profile_id / {FIRST_TIMES_BLOCK})::int AS block,
                   array_agg(mod(c.profile_id, {FIRST_TIMES_BLOCK})::int + 1) AS positions,
                   array_agg(coalesce({FIRST_US_SQL.format("f.first_at")}, {FIRST_TIMES_NEVER})) AS times
            FROM (SELECT DISTINCT workspace_id, profile_id, name FROM {changed}) AS c
            LEFT JOIN campaigns_reportfirstevent f ON f.profile_id = c.profile_id AND f.name = c.name
            GROUP BY 1, 2, 3
        ) AS c
        WHERE t.workspace_id = c.workspace_id AND t.name = c.name AND t.block = c.block
        """
    )


def first_times_build() -> None:
    """ReportFirstTimes from ReportFirstEvent, whole (after a rebuild)."""
    _execute("TRUNCATE campaigns_reportfirsttimes")
    _execute(
        f"""
        INSERT INTO campaigns_reportfirsttimes (workspace_id, name, block, times)
        SELECT workspace_id, name, block,
               rpt_first_times_set(array_fill({FIRST_TIMES_NEVER}::bigint, ARRAY[{FIRST_TIMES_BLOCK}]),
                                   array_agg(position), array_agg(first_us))
        FROM (
            SELECT workspace_id, name, (profile_id / {FIRST_TIMES_BLOCK})::int AS block,
                   mod(profile_id, {FIRST_TIMES_BLOCK})::int + 1 AS position,
                   {FIRST_US_SQL.format("first_at")} AS first_us
            FROM campaigns_reportfirstevent
        ) AS f
        GROUP BY workspace_id, name, block
        """
    )


def active_days_recount() -> None:
    """(Re)write the active days in ``rpt_touch`` (profile_id, day) with the counts of the segments'
    daily rollup, which its triggers keep exact; a pair with no activity left (moved by a merge)
    is removed."""
    activity = activity_sql("d")
    _execute(
        f"""
        CREATE TEMP TABLE rpt_counts ON COMMIT DROP AS
        SELECT t.profile_id, t.day, rp.workspace_id, rp.platform, rp.cohort_day, c.events, c.sessions
        FROM rpt_touch t
        JOIN campaigns_reportprofile rp ON rp.profile_id = t.profile_id
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(d.count) FILTER (WHERE d.name NOT LIKE '$%%'), 0) AS events,
                   coalesce(sum(d.count) FILTER (WHERE d.name = '{SESSION_STARTED}'), 0) AS sessions
            FROM segments_eventdailycount d WHERE d.profile_id = t.profile_id AND d.day = t.day AND {activity}
        ) c
        """
    )
    _execute(
        """
        INSERT INTO campaigns_reportactiveday (profile_id, day, workspace_id, platform, cohort_day, events, sessions)
        SELECT profile_id, day, workspace_id, platform, cohort_day, events, sessions FROM rpt_counts
        WHERE events + sessions > 0
        ON CONFLICT (profile_id, day) DO UPDATE SET events = excluded.events, sessions = excluded.sessions,
            platform = excluded.platform, cohort_day = excluded.cohort_day
        """
    )
    _execute(
        """
        DELETE FROM campaigns_reportactiveday a USING rpt_counts c
        WHERE a.profile_id = c.profile_id AND a.day = c.day AND c.events + c.sessions = 0
        """
    )
    _execute(
        """
        INSERT INTO campaigns_reportdirtyday (workspace_id, day)
        SELECT DISTINCT workspace_id, day FROM rpt_counts ON CONFLICT DO NOTHING
        """
    )
    _execute("DROP TABLE rpt_counts")


def _events_engagement() -> None:
    names = ", ".join(f"'{name}'" for name in ENGAGEMENT_NAMES)
    stage_columns = ", ".join(
        f"min(x.timestamp) FILTER (WHERE x.name = '{name}') AS {stage}_at" for stage, name in STAGE_EVENTS.items()
    )
    _execute(
        f"""
        CREATE TEMP TABLE rpt_eng ON COMMIT DROP AS
        WITH x AS MATERIALIZED (
            -- Validated before any cast: the join below must never see a malformed id.
            SELECT e.workspace_id, e.name, e.timestamp, coalesce(e.properties->>'channel', '') AS channel,
                   CASE WHEN e.properties->>'revenue' ~ '^-?[0-9]{{1,10}}(\\.[0-9]{{1,4}})?$'
                        THEN (e.properties->>'revenue')::numeric END AS revenue,
                   CASE WHEN e.properties->>'send_id' ~ '^[0-9]{{1,18}}$'
                        THEN (e.properties->>'send_id')::bigint END AS step_id
            FROM rpt_ev e
            WHERE e.name IN ({names})
        )
        SELECT x.name, x.timestamp, x.channel, x.revenue, m.id AS send_id, d.sent_channels
        FROM x
        JOIN campaigns_delivery d ON d.id = x.step_id AND d.workspace_id = x.workspace_id
        JOIN campaigns_delivery m ON m.campaign_id = d.campaign_id AND m.step_key = '{MAIN_STEP}'
            AND m.profile_id = d.profile_id AND m.occurrence = d.occurrence
        WHERE x.step_id IS NOT NULL
        """
    )
    _execute(
        f"CREATE TEMP TABLE rpt_sends ON COMMIT DROP AS {_sends_source_sql('m.id IN (SELECT send_id FROM rpt_eng)')}"
    )
    _sends_ensure()
    _execute("DROP TABLE rpt_sends")
    # Per send and channel (and per send as a whole, channel ''), the earliest time of each stage.
    # A conversion counts for the channels of the step that converted; a control enrolment has none.
    _execute(
        f"""
        CREATE TEMP TABLE rpt_sig ON COMMIT DROP AS
        WITH x AS (
            SELECT send_id, '' AS channel, name, timestamp, revenue FROM rpt_eng
            UNION ALL
            SELECT g.send_id, ch.channel, g.name, g.timestamp, g.revenue
            FROM rpt_eng g
            CROSS JOIN LATERAL unnest(
                CASE WHEN g.name = '{MESSAGE_CONVERTED}' THEN g.sent_channels::text[] ELSE ARRAY[g.channel] END
            ) AS ch(channel)
            WHERE g.name <> '{CONTROL_GROUP_ENROLLED}' AND ch.channel IS NOT NULL AND ch.channel <> ''
        )
        SELECT x.send_id, left(x.channel, 16) AS channel, {stage_columns},
               (array_agg(x.revenue ORDER BY x.timestamp) FILTER (WHERE x.name = '{MESSAGE_CONVERTED}'))[1] AS revenue
        FROM x GROUP BY x.send_id, left(x.channel, 16)
        """
    )
    _sends_apply_stages()
    _execute("DROP TABLE rpt_sig")
    _execute("DROP TABLE rpt_eng")


def _process_events(low: int, high: int) -> tuple[int, int]:
    _execute(
        """
        CREATE TEMP TABLE rpt_ev ON COMMIT DROP AS
        SELECT id, workspace_id, profile_id, name, timestamp,
               CASE WHEN name LIKE '$%%' THEN properties END AS properties
        FROM profiles_event WHERE id > %s AND id <= %s
        """,
        [low, high],
    )
    signature = _fetch("SELECT count(*), coalesce(sum(id), 0) FROM rpt_ev")[0]
    _events_activity()
    _events_engagement()
    _execute("DROP TABLE rpt_ev")
    return int(signature[0]), int(signature[1])


def _process_deliveries(low: int, high: int) -> tuple[int, int]:
    signature = _fetch(
        "SELECT count(*), coalesce(sum(id), 0) FROM campaigns_delivery WHERE id > %s AND id <= %s", [low, high]
    )[0]
    _execute(
        f"CREATE TEMP TABLE rpt_sends ON COMMIT DROP AS {_sends_source_sql('m.id > %s AND m.id <= %s')}",
        [low, high],
    )
    _sends_ensure()
    _execute("DROP TABLE rpt_sends")
    return int(signature[0]), int(signature[1])


def _process_merges(low: int, high: int) -> tuple[int, int]:
    merges = _fetch(
        "SELECT id, merged_profile_id, into_profile_id FROM profiles_profilemerge WHERE id > %s AND id <= %s"
        " ORDER BY id",
        [low, high],
    )
    for _merge_id, source_id, target_id in merges:
        profile_merge_apply(source_id=source_id, target_id=target_id)
    return len(merges), sum(int(row[0]) for row in merges)


def profile_merge_apply(*, source_id: int, target_id: int) -> None:
    """Move a merged person's report rows to the surviving profile (idempotent: a second run finds
    nothing left under ``source_id``)."""
    _execute("UPDATE campaigns_reportsend SET profile_id = %s WHERE profile_id = %s", [target_id, source_id])
    # The survivor keeps its own cohort; the merged person's cohort loses one. A survivor never
    # seen by the reports takes the merged person's cohort.
    if not _fetch("SELECT 1 FROM campaigns_reportprofile WHERE profile_id = %s", [target_id]):
        _execute("UPDATE campaigns_reportprofile SET profile_id = %s WHERE profile_id = %s", [target_id, source_id])
    else:
        _execute(
            """
            WITH gone AS (DELETE FROM campaigns_reportprofile WHERE profile_id = %s
                          RETURNING workspace_id, cohort_day, platform, source)
            UPDATE campaigns_reportcohortday c SET profiles = c.profiles - 1 FROM gone g
            WHERE c.workspace_id = g.workspace_id AND c.day = g.cohort_day AND c.platform = g.platform
              AND c.source = g.source
            """,
            [source_id],
        )
    # Both people's first times of the merged person's events change (the survivor's may become
    # earlier, the merged person's go).
    _execute(
        """
        CREATE TEMP TABLE rpt_first_changed ON COMMIT DROP AS
        SELECT f.workspace_id, p.profile_id, f.name
        FROM campaigns_reportfirstevent f CROSS JOIN (VALUES (%s::bigint), (%s::bigint)) AS p (profile_id)
        WHERE f.profile_id = %s
        """,
        [source_id, target_id, source_id],
    )
    _execute(
        """
        INSERT INTO campaigns_reportfirstevent (profile_id, name, workspace_id, first_at, platform, source, cohort_day)
        SELECT %s, f.name, f.workspace_id, f.first_at, coalesce(rp.platform, f.platform), coalesce(rp.source, f.source),
               coalesce(rp.cohort_day, f.cohort_day)
        FROM campaigns_reportfirstevent f LEFT JOIN campaigns_reportprofile rp ON rp.profile_id = %s
        WHERE f.profile_id = %s
        ON CONFLICT (profile_id, name) DO UPDATE SET first_at = excluded.first_at
            WHERE excluded.first_at < campaigns_reportfirstevent.first_at
        """,
        [target_id, target_id, source_id],
    )
    _execute("DELETE FROM campaigns_reportfirstevent WHERE profile_id = %s", [source_id])
    if not _first_times_deferred:
        first_times_sync("rpt_first_changed")
    _execute("DROP TABLE rpt_first_changed")
    # The merged person's events now belong to the survivor (the segments' triggers moved their
    # daily counts): recount the survivor on each of those days.
    _execute(
        """
        CREATE TEMP TABLE rpt_touch ON COMMIT DROP AS
        WITH gone AS (DELETE FROM campaigns_reportactiveday WHERE profile_id = %s RETURNING day)
        SELECT DISTINCT %s::bigint AS profile_id, day FROM gone
        """,
        [source_id, target_id],
    )
    active_days_recount()
    _execute("DROP TABLE rpt_touch")


# --- feeds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    name: str
    table: str
    process: Callable[[int, int], tuple[int, int]]  # read ids in (low, high]; return (count, id sum)


FEEDS = (
    Feed("deliveries", "campaigns_delivery", _process_deliveries),
    Feed("events", "profiles_event", _process_events),
    Feed("merges", "profiles_profilemerge", _process_merges),
)


@dataclass
class RollupResult:
    ran: bool = True
    rows: dict[str, int] = field(default_factory=dict)  # rows read per feed (new chunks)
    reread: dict[str, int] = field(default_factory=dict)  # chunks read again (rows committed late)
    caught_up: bool = True


def _signature(table: str, low: int, high: int) -> tuple[int, int]:
    row = _fetch(f"SELECT count(*), coalesce(sum(id), 0) FROM {table} WHERE id > %s AND id <= %s", [low, high])[0]
    return int(row[0]), int(row[1])


def _feed_run(feed: Feed, *, result: RollupResult, deadline: float) -> None:
    overlap = settings.REPORTS_FEED_OVERLAP
    batch = settings.REPORTS_FEED_BATCH
    cursor, _ = ReportCursor.objects.get_or_create(name=feed.name)
    now = time.time()
    chunks: list[list[float]] = [list(c) for c in cursor.chunks if now - float(c[4]) <= overlap]
    position = cursor.position
    reread = 0
    for chunk in chunks:
        low, high = int(chunk[0]), int(chunk[1])
        if _signature(feed.table, low, high) != (int(chunk[2]), int(chunk[3])):
            with _transaction():
                count, total = feed.process(low, high)
            chunk[2], chunk[3] = count, total
            reread += 1
    ReportCursor.objects.filter(name=feed.name).update(chunks=chunks, updated_at=timezone.now())
    rows = 0
    while True:
        if time.monotonic() > deadline:
            result.caught_up = False
            break
        (high,) = _fetch(
            f"SELECT max(id) FROM (SELECT id FROM {feed.table} WHERE id > %s ORDER BY id LIMIT %s) AS ids",
            [position, batch],
        )[0]
        if high is None:
            break
        with _transaction():
            count, total = feed.process(position, int(high))
            chunks.append([position, int(high), count, total, time.time()])
            ReportCursor.objects.filter(name=feed.name).update(
                position=int(high), chunks=chunks, updated_at=timezone.now()
            )
        position = int(high)
        rows += count
    result.rows[feed.name] = rows
    result.reread[feed.name] = reread


def reports_rollup(*, seconds: float | None = None) -> RollupResult:
    """Read what is new in every feed into the rollups (see the module docstring). Returns what was
    read; ``ran`` is False when another rollup held the lock, ``caught_up`` False when the time
    budget ran out first (the next run continues)."""
    budget = settings.REPORTS_ROLLUP_SECONDS if seconds is None else seconds
    with advisory_lock(ROLLUP_LOCK) as acquired:
        if not acquired:
            return RollupResult(ran=False, caught_up=False)
        return _rollup_locked(deadline=time.monotonic() + budget)


def _rollup_locked(*, deadline: float) -> RollupResult:
    result = RollupResult()
    for feed in FEEDS:
        _feed_run(feed, result=result, deadline=deadline)
    with _transaction():
        _sends_sync_status()
    return result


# --- refresh: the recomputed aggregates --------------------------------------------------------------


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def active_users_sql(members: int | None = None) -> str:
    """Daily, weekly and monthly active people, events and sessions for each day in
    [%(lo)s, %(hi)s] per platform, of workspace %(ws)s (named parameters), optionally only the
    members of the page's segment: rows (platform, d, dau, wau, mau, events, sessions).

    One pass over the active days from 29 days before ``lo``: each (person, active day) row covers
    the days until it is next active, at most 1, 7 or 30 days; +1 where a cover starts and -1 where
    it ends, summed over the days in order, is the number of distinct people covering each day.
    """
    return f"""
        WITH a AS MATERIALIZED (
            SELECT profile_id, platform, day, events, sessions,
                   lead(day) OVER (PARTITION BY profile_id ORDER BY day) AS nxt
            FROM campaigns_reportactiveday
            WHERE workspace_id = %(ws)s AND day BETWEEN %(lo)s::date - 29 AND %(hi)s
              {members_filter("profile_id", members)}
        ), deltas AS (
            SELECT platform, day AS d, 1 AS dau, 1 AS wau, 1 AS mau FROM a
            UNION ALL SELECT platform, day + 1, -1, 0, 0 FROM a
            UNION ALL SELECT platform, least(day + 7, coalesce(nxt, day + 7)), 0, -1, 0 FROM a
            UNION ALL SELECT platform, least(day + 30, coalesce(nxt, day + 30)), 0, 0, -1 FROM a
        ), per_day AS (
            SELECT platform, d, sum(dau) AS dau, sum(wau) AS wau, sum(mau) AS mau FROM deltas GROUP BY platform, d
        ), counts AS (
            SELECT platform, day AS d, sum(events) AS events, sum(sessions) AS sessions
            FROM a WHERE day >= %(lo)s GROUP BY platform, day
        ), grid AS (
            SELECT pl.platform, g.d::date AS d
            FROM (SELECT DISTINCT platform FROM a) pl
            CROSS JOIN generate_series(%(lo)s::date - 29, %(hi)s::date, interval '1 day') AS g(d)
        ), running AS (
            SELECT grid.platform, grid.d,
                   sum(coalesce(p.dau, 0)) OVER w AS dau, sum(coalesce(p.wau, 0)) OVER w AS wau,
                   sum(coalesce(p.mau, 0)) OVER w AS mau
            FROM grid LEFT JOIN per_day p ON p.platform = grid.platform AND p.d = grid.d
            WINDOW w AS (PARTITION BY grid.platform ORDER BY grid.d)
        )
        SELECT r.platform, r.d, r.dau::int, r.wau::int, r.mau::int,
               coalesce(c.events, 0)::bigint AS events, coalesce(c.sessions, 0)::bigint AS sessions
        FROM running r LEFT JOIN counts c ON c.platform = r.platform AND c.d = r.d
        WHERE r.d BETWEEN %(lo)s AND %(hi)s AND (r.dau > 0 OR r.wau > 0 OR r.mau > 0)
    """


def workspace_days_sql(members: int | None = None) -> str:
    """The ``ReportWorkspaceDay`` columns (d, platform, dau, wau, mau, new_profiles, events,
    sessions, messages, conversions) for the days [%(lo)s, %(hi)s] of workspace %(ws)s, or of the
    members of segment ``members`` only."""
    if members is None:
        fresh = """
            SELECT platform, day AS d, sum(profiles) AS new_profiles FROM campaigns_reportcohortday
            WHERE workspace_id = %(ws)s AND day BETWEEN %(lo)s AND %(hi)s GROUP BY 1, 2"""
    else:
        fresh = f"""
            SELECT platform, cohort_day AS d, count(*) AS new_profiles FROM campaigns_reportprofile
            WHERE workspace_id = %(ws)s AND cohort_day BETWEEN %(lo)s AND %(hi)s
              {members_filter("profile_id", members)} GROUP BY 1, 2"""
    return f"""
        WITH users AS ({active_users_sql(members)}),
        fresh AS ({fresh}
        ), messages AS (
            SELECT coalesce(rp.platform, '') AS platform, d.day AS d,
                   sum(d.count) FILTER (WHERE d.name = '{MESSAGE_RECEIVED}') AS messages,
                   sum(d.count) FILTER (WHERE d.name = '{MESSAGE_CONVERTED}') AS conversions
            FROM segments_eventdailycount d LEFT JOIN campaigns_reportprofile rp ON rp.profile_id = d.profile_id
            WHERE d.workspace_id = %(ws)s AND d.name IN ('{MESSAGE_RECEIVED}', '{MESSAGE_CONVERTED}')
              AND d.day BETWEEN %(lo)s AND %(hi)s {members_filter("d.profile_id", members)}
            GROUP BY 1, 2
        ), keys AS (
            SELECT platform, d FROM users UNION SELECT platform, d FROM fresh UNION SELECT platform, d FROM messages
        )
        SELECT k.d, k.platform, coalesce(u.dau, 0), coalesce(u.wau, 0), coalesce(u.mau, 0),
               coalesce(f.new_profiles, 0), coalesce(u.events, 0), coalesce(u.sessions, 0),
               coalesce(m.messages, 0), coalesce(m.conversions, 0)
        FROM keys k
        LEFT JOIN users u ON u.platform = k.platform AND u.d = k.d
        LEFT JOIN fresh f ON f.platform = k.platform AND f.d = k.d
        LEFT JOIN messages m ON m.platform = k.platform AND m.d = k.d
    """


DAY_COLUMNS = "day, platform, dau, wau, mau, new_profiles, events, sessions, messages, conversions"


def _refresh_workspace_days(workspace_id: int, lo: date, hi: date) -> None:
    params = {"ws": workspace_id, "lo": lo, "hi": hi}
    _execute(
        "DELETE FROM campaigns_reportworkspaceday WHERE workspace_id = %(ws)s AND day BETWEEN %(lo)s AND %(hi)s",
        params,
    )
    _execute(
        f"INSERT INTO campaigns_reportworkspaceday (workspace_id, {DAY_COLUMNS})"
        f" SELECT %(ws)s, * FROM ({workspace_days_sql()}) x",
        params,
    )


def bitmap_sql(column: str, table: str, where: str, bits: str = "bits", base: str = "bits_base") -> str:
    """Whether ``column`` (a profile id) is set in the bitmap ``bits`` of the one row of ``table``
    matching ``where`` (bit n is profile ``base + n``; false when there is no such row).

    The bitmap is read once per query (uncorrelated subqueries run once; ``|| ''`` makes one plain
    copy, so ``get_bit`` does not detoast it for every row) and tested per row in constant time: no
    hash of a quarter of a million ids to build. CASE keeps ``get_bit`` from seeing an id outside."""
    row = f"FROM {table} WHERE {where}"
    return (
        f"CASE WHEN {column} >= (SELECT {base} {row}) AND {column} < (SELECT {base} + 8 * length({bits}) {row})"
        f" THEN get_bit((SELECT {bits} || ''::bytea {row}), {column} - (SELECT {base} {row})) = 1 ELSE false END"
    )


def members_filter(column: str, segment_id: int | None) -> str:
    """``AND column is a member of segment segment_id`` as ``campaigns.reports.members`` last
    evaluated it (``ReportSegmentMembers.bits``; the pages make sure it is current first); nothing
    for ``None``."""
    if segment_id is None:
        return ""
    return f"AND {bitmap_sql(column, 'campaigns_reportsegmentmembers', f'segment_id = {int(segment_id)}')}"


def send_counts_sql() -> str:
    """The ReportCampaignHour columns aggregated from ReportSend rows (the same numbers)."""
    status = {
        "pending": "status IN ('scheduled', 'sending')",
        "status_sent": "status = 'sent'",
        "failed": "status = 'failed'",
        "skipped": "status = 'skipped'",
        "cancelled": "status = 'cancelled'",
        "control": "status = 'control'",
    }
    parts = ["count(*) FILTER (WHERE channel = '') AS targeted"]
    parts += [f"count(*) FILTER (WHERE channel = '' AND {condition}) AS {name}" for name, condition in status.items()]
    parts += [f"count({stage}_at) AS {stage}" for stage in STAGES]
    parts.append("coalesce(sum(revenue) FILTER (WHERE converted_at IS NOT NULL), 0) AS revenue")
    return ", ".join(parts)


def revenue_sql(members: int | None = None) -> str:
    """Purchases per day, platform and currency for the days %(days)s of workspace %(ws)s."""
    return f"""
        SELECT (pu.timestamp AT TIME ZONE 'UTC')::date AS day, coalesce(rp.platform, '') AS platform, pu.currency,
               sum(pu.price * pu.quantity) AS revenue, count(DISTINCT pu.event_id) AS orders,
               count(DISTINCT pu.profile_id) AS buyers
        FROM profiles_purchase pu LEFT JOIN campaigns_reportprofile rp ON rp.profile_id = pu.profile_id
        WHERE pu.workspace_id = %(ws)s AND pu.timestamp >= %(start)s AND pu.timestamp < %(end)s
          AND (pu.timestamp AT TIME ZONE 'UTC')::date = ANY(%(days)s::date[]) {members_filter("pu.profile_id", members)}
        GROUP BY 1, 2, 3
    """


def _refresh_revenue(workspace_id: int, days: list[date]) -> None:
    start = datetime.combine(min(days), datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(max(days) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    params = {"ws": workspace_id, "days": days, "start": start, "end": end}
    _execute(
        "DELETE FROM campaigns_reportrevenueday WHERE workspace_id = %(ws)s AND day = ANY(%(days)s::date[])", params
    )
    _execute(
        f"""
        INSERT INTO campaigns_reportrevenueday (workspace_id, day, platform, currency, revenue, orders, buyers)
        SELECT %(ws)s, day, platform, currency, revenue, orders, buyers FROM ({revenue_sql()}) r
        """,
        params,
    )


GRAINS = {"week": 7, "month": 30}


def period_index_sql(grain: str, cohort: str, period_start: str) -> str:
    if grain == "week":
        return f"(({period_start} - {cohort}) / 7)"
    return (
        f"((extract(year FROM {period_start})::int - extract(year FROM {cohort})::int) * 12"
        f" + extract(month FROM {period_start})::int - extract(month FROM {cohort})::int)"
    )


def retention_sql(grain: str, where: str) -> str:
    """Active people per first-seen cohort (calendar week or month), platform and later period:
    (cohort, platform, period, active), over the active days ``a`` matching ``where`` (which carry
    their person's cohort day and platform)."""
    cohort = f"date_trunc('{grain}', a.cohort_day)::date"
    period_start = f"date_trunc('{grain}', a.day)::date"
    return f"""
        SELECT {cohort} AS cohort, a.platform, {period_index_sql(grain, cohort, period_start)} AS period,
               count(DISTINCT a.profile_id) AS active
        FROM campaigns_reportactiveday a
        WHERE a.day >= a.cohort_day AND {where}
        GROUP BY 1, 2, 3
    """


def _refresh_retention(workspace_id: int, days: list[date]) -> None:
    for grain in GRAINS:
        periods = sorted({_period_start(grain, day) for day in days})
        ends = [_period_end(grain, start) for start in periods]
        cohort_plus_period = (
            "cohort + 7 * period" if grain == "week" else "(cohort + make_interval(months => period))::date"
        )
        _execute(
            f"DELETE FROM campaigns_reportretention WHERE workspace_id = %s AND grain = %s"
            f" AND {cohort_plus_period} = ANY(%s::date[])",
            [workspace_id, grain, periods],
        )
        ranges = " OR ".join("(a.day >= %s AND a.day < %s)" for _ in periods)
        params: list[Any] = [workspace_id, grain]
        range_params: list[Any] = [workspace_id]
        for start, end in zip(periods, ends, strict=True):
            range_params += [start, end]
        _execute(
            f"""
            INSERT INTO campaigns_reportretention (workspace_id, grain, cohort, platform, period, active)
            SELECT %s, %s, cohort, platform, period, active
            FROM ({retention_sql(grain, f"a.workspace_id = %s AND ({ranges})")}) r
            """,
            params + range_params,
        )


def _period_start(grain: str, day: date) -> date:
    if grain == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _period_end(grain: str, start: date) -> date:
    if grain == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def campaign_retention_sql(members: int | None = None) -> str:
    """Campaigns' retention per group (variant or control) and platform: each person's first send
    of a campaign in %(campaigns)s starts their periods of %(length)s days; period k counts for the
    people whose period k has ended by %(today)s. Rows: (grp, platform, period, size, eligible,
    active, campaign_id), periods 0 .. %(periods)s - 1."""
    return f"""
        WITH s AS (
            SELECT DISTINCT ON (campaign_id, profile_id) campaign_id, profile_id, variant AS grp, platform,
                   (due_at AT TIME ZONE 'UTC')::date AS start
            FROM campaigns_reportsend
            WHERE campaign_id = ANY(%(campaigns)s) AND channel = '' AND (variant = 'control' OR sent_at IS NOT NULL)
              {members_filter("profile_id", members)}
            ORDER BY campaign_id, profile_id, due_at
        ), k AS (
            SELECT generate_series(0, %(periods)s - 1) AS period
        ), sizes AS (
            SELECT campaign_id, grp, platform, count(*) AS size FROM s GROUP BY 1, 2, 3
        ), eligible AS (
            SELECT s.campaign_id, s.grp, s.platform, k.period, count(*) AS eligible
            FROM s CROSS JOIN k WHERE s.start + (k.period + 1) * %(length)s <= %(today)s
            GROUP BY 1, 2, 3, 4
        ), active AS (
            SELECT s.campaign_id, s.grp, s.platform, (a.day - s.start) / %(length)s AS period,
                   count(DISTINCT s.profile_id) AS active
            FROM s JOIN campaigns_reportactiveday a ON a.profile_id = s.profile_id
                AND a.day >= s.start AND a.day < s.start + %(periods)s * %(length)s
            WHERE s.start + ((a.day - s.start) / %(length)s + 1) * %(length)s <= %(today)s
            GROUP BY 1, 2, 3, 4
        )
        SELECT sz.grp, sz.platform, k.period, sz.size,
               coalesce(e.eligible, 0) AS eligible, coalesce(ac.active, 0) AS active, sz.campaign_id
        FROM sizes sz CROSS JOIN k
        LEFT JOIN eligible e ON e.campaign_id = sz.campaign_id AND e.grp = sz.grp AND e.platform = sz.platform
            AND e.period = k.period
        LEFT JOIN active ac ON ac.campaign_id = sz.campaign_id AND ac.grp = sz.grp AND ac.platform = sz.platform
            AND ac.period = k.period
    """


CAMPAIGN_PERIODS = {"week": 12, "month": 6}


def campaign_retention_params(*, campaign_ids: Sequence[int], grain: str, today: date) -> dict[str, Any]:
    return {
        "campaigns": list(campaign_ids),
        "periods": CAMPAIGN_PERIODS[grain],
        "length": GRAINS[grain],
        "today": today,
    }


def campaign_retention_refresh(*, campaign_id: int, workspace_id: int, now: datetime) -> None:
    today = _day(now)
    with _transaction():
        _execute("DELETE FROM campaigns_reportcampaignretention WHERE campaign_id = %s", [campaign_id])
        for grain in GRAINS:
            _execute(
                f"""
                INSERT INTO campaigns_reportcampaignretention
                    (campaign_id, grain, "group", platform, period, workspace_id, size, eligible, active, computed_at)
                SELECT %(campaign)s, %(grain)s, grp, platform, period, %(ws)s, size, eligible, active, %(now)s
                FROM ({campaign_retention_sql()}) r
                """,
                {
                    **campaign_retention_params(campaign_ids=[campaign_id], grain=grain, today=today),
                    "campaign": campaign_id,
                    "grain": grain,
                    "ws": workspace_id,
                    "now": now,
                },
            )


def _campaigns_due_for_retention(now: datetime) -> list[tuple[int, int]]:
    """Campaigns with sends recent enough for a retention period to be still open, whose retention
    is older than REPORTS_CAMPAIGN_RETENTION_EVERY (or was never computed)."""
    horizon = now - timedelta(days=CAMPAIGN_PERIODS["month"] * GRAINS["month"] + 1)
    stale = now - timedelta(seconds=settings.REPORTS_CAMPAIGN_RETENTION_EVERY)
    rows = _fetch(
        """
        SELECT h.campaign_id, min(h.workspace_id)
        FROM campaigns_reportcampaignhour h
        WHERE h.channel = '' AND h.hour >= %s
        GROUP BY h.campaign_id
        HAVING NOT EXISTS (SELECT 1 FROM campaigns_reportcampaignretention r
                           WHERE r.campaign_id = h.campaign_id AND r.computed_at >= %s)
        """,
        [horizon, stale],
    )
    return [(int(campaign_id), int(workspace_id)) for campaign_id, workspace_id in rows]


@dataclass
class RefreshResult:
    ran: bool = True
    days: int = 0
    campaigns: int = 0


def reports_refresh(*, now: datetime | None = None, campaigns: bool = True) -> RefreshResult:
    """Recompute the aggregates of the days marked as changed (and yesterday and today of every
    recently active workspace, whose 7- and 30-day windows move on even without events), then the
    retention of campaigns due for it."""
    now = now or timezone.now()
    today = _day(now)
    result = RefreshResult()
    with advisory_lock(REFRESH_LOCK) as acquired:
        if not acquired:
            return RefreshResult(ran=False)
        with _transaction():
            dirty = _fetch("DELETE FROM campaigns_reportdirtyday RETURNING workspace_id, day")
            recent = _fetch(
                "SELECT DISTINCT workspace_id FROM campaigns_reportworkspaceday WHERE day >= %s",
                [today - timedelta(days=30)],
            )
            by_workspace: dict[int, set[date]] = {}
            for workspace_id, day in dirty:
                if day <= today:
                    by_workspace.setdefault(int(workspace_id), set()).add(day)
            for (workspace_id,) in recent:
                by_workspace.setdefault(int(workspace_id), set()).update({today - timedelta(days=1), today})
            for workspace_id, days in by_workspace.items():
                lo = min(days)
                hi = min(max(days) + timedelta(days=29), today)
                _refresh_workspace_days(workspace_id, lo, hi)
                _refresh_revenue(workspace_id, sorted(days))
                _refresh_retention(workspace_id, sorted(days))
                result.days += len(days)
        if campaigns:
            for campaign_id, workspace_id in _campaigns_due_for_retention(now):
                campaign_retention_refresh(campaign_id=campaign_id, workspace_id=workspace_id, now=now)
                result.campaigns += 1
    return result


REPORT_TABLES = (
    "campaigns_reportcursor",
    "campaigns_reportdirtyday",
    "campaigns_reportprofile",
    "campaigns_reportcohortday",
    "campaigns_reportactiveday",
    "campaigns_reportfirstevent",
    "campaigns_reportfirsttimes",
    "campaigns_reportsend",
    "campaigns_reportcampaignhour",
    "campaigns_reportworkspaceday",
    "campaigns_reportrevenueday",
    "campaigns_reportretention",
    "campaigns_reportcampaignretention",
    # Computed from the tables above (campaigns.reports.funnels): recomputed at their next view.
    "campaigns_reportfunnelday",
    "campaigns_reportfunnelgroupday",
)


def reports_rebuild(*, now: datetime | None = None) -> RollupResult:
    """Empty every report table and read all the feeds again from the start, then refresh.
    Holds both locks throughout; the pages show empty reports until it is done."""
    with advisory_lock(ROLLUP_LOCK) as acquired:
        if not acquired:
            raise RuntimeError("a reports rollup is running; try again when it is done")
        _execute(f"TRUNCATE {', '.join(REPORT_TABLES)}")
        # Process-wide, and safe: this process holds the rollup lock throughout.
        global _first_times_deferred
        _first_times_deferred = True
        try:
            result = _rollup_locked(deadline=time.monotonic() + 24 * 3600)
        finally:
            _first_times_deferred = False
        with _transaction():
            first_times_build()
    reports_refresh(now=now)
    return result
