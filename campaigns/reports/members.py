"""A segment's members for the report pages, and the aggregates of the pages built for them.

**Aggregates per segment.** Filtered by a segment, a page cannot read the workspace's aggregates.
Aggregating the per-person facts of a quarter of a million people when the page is asked for takes
seconds (it reads every active day, send and purchase of the members), so the refresh builds, for
each segment a page was filtered by in the last ``REPORTS_SEGMENT_VIEWED_SECONDS``, the same
aggregates the unfiltered pages read (``ReportSegmentDay``, ``ReportSegmentRevenueDay``,
``ReportSegmentCohortDay``, ``ReportSegmentRetention``, ``ReportSegmentCampaignHour``) from its
members as evaluated then, with the same SQL as the live path below. The pages read those while they
were built from the segment's current definition, and say as of when. Beat rebuilds them every
``REPORTS_SEGMENT_REFRESH_EVERY`` seconds; a segment's first page enqueues the first build.

**Live path.** Until a segment's aggregates exist (its first view, or its definition just changed),
a page joins the per-person facts with the members, as below; so does every funnel (its steps are
chosen on the page).

**Members.**

A page filtered by a segment joins the per-person facts with the segment's members. Evaluating a
segment of a quarter of a million people on a million-profile workspace takes about as long as the
page itself should, and a reader flipping between pages (or a CSV export reading chunk after chunk)
asks for the same set again and again; so the members are kept as a bitmap of profile ids with
when they were computed (``ReportSegmentMembers``), reused while younger than
``REPORTS_SEGMENT_MEMBERS_SECONDS`` and while the segment's definition is the one they were
computed from, and every page says how old they are (as the segment builder does for its sizes).

Writes only those two tables. Two requests that find the set stale at once: the first takes the
row lock and recomputes, the second waits for it and then finds the set fresh. Readers never wait:
a page reads the set committed before its own transaction began.
"""

# The SQL below is assembled from module constants and ids read from the database; every value
# that comes from a request is a query parameter.
# ruff: noqa: S608
from __future__ import annotations

import hashlib
import json
import logging
import time
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from segments.compiler import Sql, members_query
from segments.models import Segment

from .models import ReportCampaignGroups, ReportSegmentMembers
from .rollups import (
    COUNT_COLUMNS,
    DAY_COLUMNS,
    GRAINS,
    campaign_retention_params,
    campaign_retention_sql,
    members_filter,
    retention_sql,
    revenue_sql,
    send_counts_sql,
    workspace_days_sql,
)

logger = logging.getLogger(__name__)

SEGMENT_TABLES = (
    "campaigns_reportsegmentday",
    "campaigns_reportsegmentrevenueday",
    "campaigns_reportsegmentcohortday",
    "campaigns_reportsegmentretention",
    "campaigns_reportsegmentcampaignhour",
    "campaigns_reportsegmentcampaignretention",
)

__all__ = [
    "SegmentMembers",
    "SegmentSource",
    "campaign_groups",
    "segment_aggregates_refresh",
    "segment_members",
    "segment_members_refresh",
    "segment_refresh",
    "segment_source",
    "segment_status",
    "segments_due_for_refresh",
]


@dataclass(frozen=True)
class SegmentMembers:
    segment_id: int
    size: int
    computed_at: datetime
    took_ms: float  # how long evaluating the segment took when it was computed

    def age_seconds(self, now: datetime | None = None) -> float:
        return max(0.0, ((now or timezone.now()) - self.computed_at).total_seconds())


def _digest(segment: Segment) -> str:
    canonical = json.dumps(segment.definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _of(row: ReportSegmentMembers) -> SegmentMembers:
    return SegmentMembers(row.segment_id, row.size, row.computed_at, row.took_ms)


def segment_members(*, segment: Segment, max_age: int | None = None) -> SegmentMembers:
    """The segment's members (``ReportSegmentMembers.bits``), computed at most ``max_age`` seconds ago
    (default ``REPORTS_SEGMENT_MEMBERS_SECONDS``; 0: now) from its current definition."""
    max_age = settings.REPORTS_SEGMENT_MEMBERS_SECONDS if max_age is None else max_age
    digest = _digest(segment)
    row = ReportSegmentMembers.objects.filter(segment_id=segment.pk).defer("bits").first()
    if row is not None and row.digest == digest and _fresh(row, max_age):
        return _of(row)
    return segment_members_refresh(segment=segment, max_age=max_age)


def _fresh(row: ReportSegmentMembers, max_age: int) -> bool:
    return max_age > 0 and (timezone.now() - row.computed_at).total_seconds() <= max_age


def _bitmap(members: Sql, chunk: int = 50_000) -> tuple[bytes, int, int]:
    """(bitmap, base, count) of the profile ids the query selects: bit n is profile ``base + n``."""
    ids = array("q")
    with connection.cursor() as cursor:
        cursor.execute(members.text, members.params)
        while rows := cursor.fetchmany(chunk):
            ids.extend(row[0] for row in rows)
    if not ids:
        return b"", 0, 0
    low = min(ids)
    bits = _bits(ids, low)
    # Counted from the bitmap: a query may name a person twice.
    return bits, low, int.from_bytes(bits, "little").bit_count()


def segment_members_refresh(*, segment: Segment, max_age: int = 0) -> SegmentMembers:
    """Evaluate the segment into ``ReportSegmentMembers.bits`` (unless another request did so within
    ``max_age`` seconds while this one waited for the lock). Idempotent; one transaction."""
    digest = _digest(segment)
    with transaction.atomic():
        ReportSegmentMembers.objects.get_or_create(
            segment_id=segment.pk,
            defaults={"workspace_id": segment.workspace_id, "digest": "", "computed_at": timezone.now()},
        )
        row = ReportSegmentMembers.objects.select_for_update().get(segment_id=segment.pk)
        if row.digest == digest and _fresh(row, max_age):
            return _of(row)
        started = time.perf_counter()
        computed_at = timezone.now()
        bits, base, size = _bitmap(members_query(segment, now=computed_at))
        row.workspace_id = segment.workspace_id
        row.digest = digest
        row.computed_at = computed_at
        row.size = size
        row.bits = bits
        row.bits_base = base
        row.took_ms = (time.perf_counter() - started) * 1000
        row.save()
    return _of(row)


# --- aggregates per segment -------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentSource:
    """How a page filtered by a segment reads it: from the segment's aggregates (``aggregated``),
    built from its members as of ``as_of``, or live from the per-person facts and its members."""

    segment_id: int
    aggregated: bool
    as_of: datetime
    size: int


def segment_source(*, segment: Segment, now: datetime | None = None) -> SegmentSource:
    """Where a page filtered by ``segment`` reads its numbers. Notes the view (the refresh keeps
    aggregates for segments viewed lately); enqueues the first build of the segment's aggregates
    when they are missing or were built from another definition."""
    now = now or timezone.now()
    row = ReportSegmentMembers.objects.filter(segment_id=segment.pk).defer("bits").first()
    if row is not None and (row.viewed_at is None or (now - row.viewed_at).total_seconds() > 60):
        _note_view(segment.pk, now)
    if row is not None and _aggregated(row, segment):
        return SegmentSource(segment.pk, True, row.aggregated_from or now, row.aggregated_size)
    members = segment_members(segment=segment)
    _note_view(segment.pk, now)
    segment_id = segment.pk
    transaction.on_commit(lambda: _enqueue_refresh(segment_id))
    return SegmentSource(segment.pk, False, members.computed_at, members.size)


def _note_view(segment_id: int, now: datetime) -> None:
    """Record that a page read the segment, unless its row is locked: a build of its aggregates
    holds the lock for tens of seconds, and a page must not wait for it (the build is the sign of a
    recent view anyway)."""
    with transaction.atomic():
        if ReportSegmentMembers.objects.select_for_update(skip_locked=True).filter(segment_id=segment_id).exists():
            ReportSegmentMembers.objects.filter(segment_id=segment_id).update(viewed_at=now)


def segment_status(*, segment: Segment) -> SegmentSource | None:
    """What the last ``segment_source`` of this segment found, without noting anything (for the
    notice on the page); None before any."""
    row = ReportSegmentMembers.objects.filter(segment_id=segment.pk).defer("bits").first()
    if row is None:
        return None
    if _aggregated(row, segment):
        return SegmentSource(segment.pk, True, row.aggregated_from or row.computed_at, row.aggregated_size)
    return SegmentSource(segment.pk, False, row.computed_at, row.size)


def _aggregated(row: ReportSegmentMembers, segment: Segment) -> bool:
    return row.aggregated_from is not None and row.aggregated_digest == _digest(segment)


def _enqueue_refresh(segment_id: int) -> None:
    from .tasks import reports_segment_refresh_task  # the tasks module imports this one

    try:
        reports_segment_refresh_task.delay(segment_id)
    except Exception:
        # The page is still right (read live); beat builds the aggregates at its next run.
        logger.exception("could not enqueue the report aggregates of segment %s", segment_id)


def segment_aggregates_refresh(*, segment: Segment, now: datetime | None = None) -> float:
    """Evaluate the segment's members now and rebuild its aggregates from them, in one transaction
    (pages read the previous ones until it commits). Returns the seconds it took."""
    started = time.perf_counter()
    now = now or timezone.now()
    today = now.date()
    members = segment_members_refresh(segment=segment)
    ws = segment.workspace_id
    seg = segment.pk
    with transaction.atomic():
        row = ReportSegmentMembers.objects.select_for_update().get(segment_id=seg)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL TIME ZONE 'UTC'")
            for table in SEGMENT_TABLES:
                cursor.execute(f"DELETE FROM {table} WHERE segment_id = %s", [seg])
            cursor.execute("SELECT min(day) FROM campaigns_reportactiveday WHERE workspace_id = %s", [ws])
            (first_active,) = cursor.fetchone() or (None,)
            cursor.execute("SELECT min(cohort_day) FROM campaigns_reportprofile WHERE workspace_id = %s", [ws])
            (first_cohort,) = cursor.fetchone() or (None,)
            lo = min([d for d in (first_active, first_cohort, today) if d is not None])
            days_params = {"ws": ws, "lo": lo, "hi": today}
            cursor.execute(
                f"INSERT INTO campaigns_reportsegmentday (segment_id, {DAY_COLUMNS})"
                f" SELECT %(seg)s, * FROM ({workspace_days_sql(seg)}) x",
                {**days_params, "seg": seg},
            )
            days = [lo + timedelta(days=n) for n in range((today - lo).days + 1)]
            cursor.execute(
                "INSERT INTO campaigns_reportsegmentrevenueday (segment_id, day, platform, currency, revenue, orders)"
                f" SELECT %(seg)s, day, platform, currency, revenue, orders FROM ({revenue_sql(seg)}) r",
                {
                    "seg": seg,
                    "ws": ws,
                    "days": days,
                    "start": datetime.combine(lo, datetime.min.time(), tzinfo=UTC),
                    "end": datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC),
                },
            )
            cursor.execute(
                "INSERT INTO campaigns_reportsegmentcohortday (segment_id, day, platform, source, profiles)"
                " SELECT %s, cohort_day, platform, source, count(*) FROM campaigns_reportprofile"
                f" WHERE workspace_id = %s {members_filter('profile_id', seg)} GROUP BY 2, 3, 4",
                [seg, ws],
            )
            for grain in GRAINS:
                where = f"a.workspace_id = %s {members_filter('a.profile_id', seg)}"
                cursor.execute(
                    "INSERT INTO campaigns_reportsegmentretention (segment_id, grain, cohort, platform, period, active)"
                    f" SELECT %s, %s, cohort, platform, period, active FROM ({retention_sql(grain, where)}) r",
                    [seg, grain, ws],
                )
            cursor.execute(
                f"INSERT INTO campaigns_reportsegmentcampaignhour"
                f" (segment_id, campaign_id, hour, variant, platform, channel, {', '.join(COUNT_COLUMNS)}, revenue)"
                f" SELECT %s, campaign_id, date_trunc('hour', due_at), variant, platform, channel, {send_counts_sql()}"
                f" FROM campaigns_reportsend WHERE workspace_id = %s {members_filter('profile_id', seg)}"
                " GROUP BY 2, 3, 4, 5, 6",
                [seg, ws],
            )
            campaigns = [
                row[0] for row in _rows(cursor, "SELECT id FROM campaigns_campaign WHERE workspace_id = %s", [ws])
            ]
            for grain in GRAINS:
                cursor.execute(
                    "INSERT INTO campaigns_reportsegmentcampaignretention"
                    ' (segment_id, campaign_id, grain, "group", platform, period, size, eligible, active)'
                    " SELECT %(seg)s, campaign_id, %(grain)s, grp, platform, period, size, eligible, active"
                    f" FROM ({campaign_retention_sql(seg)}) r",
                    {
                        **campaign_retention_params(campaign_ids=campaigns, grain=grain, today=today),
                        "seg": seg,
                        "grain": grain,
                    },
                )
            # Fresh tables have no statistics: without them a page's plan reads one whole segment
            # through an index where a scan of its rows is several times cheaper.
            for table in SEGMENT_TABLES:
                cursor.execute(f"ANALYZE {table}")
        took = time.perf_counter() - started
        row.aggregated_from = members.computed_at
        row.aggregated_digest = row.digest
        row.aggregated_size = members.size
        row.aggregated_ms = took * 1000
        row.save(update_fields=["aggregated_from", "aggregated_digest", "aggregated_size", "aggregated_ms"])
    return took


def _rows(cursor: Any, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    cursor.execute(sql, params)
    return list(cursor.fetchall())


def segments_due_for_refresh(*, now: datetime | None = None) -> list[int]:
    """Segments a page was filtered by in the last REPORTS_SEGMENT_VIEWED_SECONDS whose aggregates
    are older than REPORTS_SEGMENT_REFRESH_EVERY seconds (or missing)."""
    now = now or timezone.now()
    viewed = now - timedelta(seconds=settings.REPORTS_SEGMENT_VIEWED_SECONDS)
    stale = now - timedelta(seconds=settings.REPORTS_SEGMENT_REFRESH_EVERY)
    rows = ReportSegmentMembers.objects.filter(viewed_at__gte=viewed).values_list("segment_id", "aggregated_from")
    return [segment_id for segment_id, built in rows if built is None or built <= stale]


SEGMENT_LOCK = 7_310_603  # with the segment's id: one build of a segment's aggregates at a time


def segment_refresh(*, segment_id: int, force: bool = False, now: datetime | None = None) -> float | None:
    """Rebuild a segment's aggregates unless another build of it is running, or (unless ``force``)
    they were built from its current definition less than REPORTS_SEGMENT_REFRESH_EVERY seconds
    ago, or the segment is gone: then None. Returns the seconds the build took."""
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:  # deleted since it was viewed: drop what the reports kept for it
        with transaction.atomic(), connection.cursor() as cursor:
            for table in SEGMENT_TABLES:
                cursor.execute(f"DELETE FROM {table} WHERE segment_id = %s", [segment_id])
            ReportSegmentMembers.objects.filter(segment_id=segment_id).delete()
        return None
    if not force:
        row = ReportSegmentMembers.objects.filter(segment_id=segment_id).defer("bits").first()
        fresh = timezone.now() - timedelta(seconds=settings.REPORTS_SEGMENT_REFRESH_EVERY)
        if row is not None and _aggregated(row, segment) and row.aggregated_from and row.aggregated_from > fresh:
            return None  # built lately (the page and beat may both ask)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SEGMENT_LOCK, segment_id % 2**31])
        (acquired,) = cursor.fetchone() or (False,)
    if not acquired:
        return None
    try:
        return segment_aggregates_refresh(segment=segment, now=now)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SEGMENT_LOCK, segment_id % 2**31])


# --- who a campaign reached, for funnels split by campaign -------------------------------------------

CAMPAIGN_GROUPS = ("control", "received", "targeted")


def campaign_groups(*, campaign_id: int, workspace_id: int, max_age: int | None = None) -> datetime:
    """Make sure ``ReportCampaignGroups`` holds the campaign's groups as of at most ``max_age``
    seconds ago (default REPORTS_SEGMENT_MEMBERS_SECONDS); return when they were computed.

    A funnel split by campaign reads each person's group there with ``bitmap_sql`` instead of
    grouping the campaign's hundreds of thousands of sends by person for every funnel."""
    max_age = settings.REPORTS_SEGMENT_MEMBERS_SECONDS if max_age is None else max_age
    row = ReportCampaignGroups.objects.filter(campaign_id=campaign_id).only("computed_at").first()
    if row is not None and max_age > 0 and (timezone.now() - row.computed_at).total_seconds() <= max_age:
        return row.computed_at
    with transaction.atomic():
        ReportCampaignGroups.objects.get_or_create(
            campaign_id=campaign_id, defaults={"workspace_id": workspace_id, "computed_at": timezone.now()}
        )
        locked = ReportCampaignGroups.objects.select_for_update().only("computed_at").get(campaign_id=campaign_id)
        if row is not None and locked.computed_at != row.computed_at:
            return locked.computed_at  # another request computed them while this one waited
        computed_at = timezone.now()
        people: dict[str, array[int]] = {group: array("q") for group in CAMPAIGN_GROUPS}
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            # Per person, as the funnel groups them: 0 in the control group, 1 received (any send),
            # 2 targeted but never sent.
            cursor.execute(
                "SELECT profile_id,"
                " min(CASE WHEN variant = 'control' THEN 0 WHEN sent_at IS NOT NULL THEN 1 ELSE 2 END)"
                " FROM campaigns_reportsend WHERE campaign_id = %s AND channel = '' GROUP BY profile_id",
                [campaign_id],
            )
            while rows := cursor.fetchmany(50_000):
                for profile_id, group in rows:
                    people["targeted"].append(profile_id)
                    if group == 0:
                        people["control"].append(profile_id)
                    elif group == 1:
                        people["received"].append(profile_id)
        base = min(people["targeted"], default=0)
        bitmaps = {group: _bits(ids, base) for group, ids in people.items()}
        ReportCampaignGroups.objects.filter(campaign_id=campaign_id).update(
            workspace_id=workspace_id, computed_at=computed_at, bits_base=base, **bitmaps
        )
    return computed_at


def _bits(ids: array[int], base: int) -> bytes:
    if not ids:
        return b""
    bits = bytearray((max(ids) - base) // 8 + 1)
    for profile_id in ids:
        offset = profile_id - base
        bits[offset >> 3] |= 1 << (offset & 7)
    return bytes(bits)
