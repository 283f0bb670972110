"""Funnels read from per-day results, kept current by beat while someone looks at them.

A funnel's steps, window and split are chosen on the page, so it cannot be aggregated ahead of time
the way the other pages are; computed from the per-person first times (``selectors.funnel_sql``) it
costs in proportion to the people entering it (300,000 in 30 days on the benchmark's workspace:
0.4 to 0.8 s). So a funnel's result is kept **per entry day and group** (``ReportFunnelDay``: that a
day was computed, and when; ``ReportFunnelGroupDay``: its numbers): people entering, people reaching
each later step, the sum of their times from the previous step (these add up over days), and every
one of those times, sorted, so that the medians of any range of days stay exact (``kth_smallest``
picks the two middle values from the days' arrays without sorting them again). A page reads a few
hundred rows instead of looking up every person.

**The first page** of a funnel, or one finding more than ``SYNC_DAYS`` days due, computes the
funnel live (as a page filtered by a segment always does: its members change every few minutes)
and enqueues ``reports_funnel_compute_task``, which stores the days; the next pages read them. A
few due days (today's, when beat lags) a page computes and stores itself before reading.

**When a day's result is final.** The people entering on day d can reach later steps until the end
of day d + ``window_days``; a day computed after that (and ``FINAL_MARGIN`` more, the rollup's lag)
no longer changes. Late data (an event with an old timestamp, a merge) is not re-read into final
days: ``reports_rebuild`` empties these tables with the other rollups.

**Fresh.** Beat (``funnels_refresh``, every ``REPORTS_FUNNEL_REFRESH_EVERY`` seconds) recomputes the
days that are not final of every funnel looked at in the last ``REPORTS_FUNNEL_VIEWED_SECONDS``,
over the range last shown (to today when it ended on the day it was shown), re-evaluating a split
campaign's groups first. A day is due for a page when it is missing, not final and older than
``REPORTS_FUNNEL_FRESH_SECONDS``, or computed with other groups than the campaign's current ones
(split by campaign: ``members.campaign_groups``).

Concurrency: one computation of a funnel's days at a time (a transaction-level advisory lock on
the funnel); the second waits, then finds the days computed. One refresh at a time.
"""

# The SQL below is assembled from module constants and column names; every value is a parameter.
# ruff: noqa: S608
from __future__ import annotations

import hashlib
import json
import logging
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import ReportFunnel, ReportFunnelDay, ReportFunnelGroupDay

if TYPE_CHECKING:
    from campaigns.models import Campaign

    from .selectors import Filters

logger = logging.getLogger(__name__)

__all__ = ["FunnelRows", "FunnelSpec", "funnel_compute", "funnel_rows", "funnels_refresh", "is_final", "kth_smallest"]

FUNNEL_LOCK = 7_310_604  # with the funnel's id: one computation of a funnel's days at a time
FUNNELS_REFRESH_LOCK = 7_310_605  # one refresh at a time
FINAL_MARGIN = timedelta(hours=1)
# A page computes itself at most this many due days (a few percent of a month's funnel: today's,
# when beat is behind); more are computed live for the page and stored by a task.
SYNC_DAYS = 3


@dataclass(frozen=True)
class FunnelRows:
    """A funnel's numbers in the shape of the live query's rows (``selectors.funnel_report``): per
    group and for the total, ``grp, is_total, entered`` then per later step ``reached, the two
    middle gaps, the sum of the gaps``; and as of when the days that may still change were computed
    (None when every day of the range is final)."""

    rows: list[tuple[Any, ...]]
    as_of: datetime | None
    computed_days: int  # days this call computed (0: it only read)


@dataclass(frozen=True)
class FunnelSpec:
    """A funnel as a page asks for it: the filters (their range, platform; no segment), its steps,
    window and split, and for a split by campaign the campaign and when its groups were evaluated."""

    filters: Filters
    steps: Sequence[str]
    window_days: int
    split: str
    campaign: Campaign | None = None
    groups_at: datetime | None = None

    @property
    def digest(self) -> str:
        """The funnel's identity within its workspace (any range: the days are shared)."""
        campaign_id = self.campaign.pk if self.campaign is not None else None
        canonical = json.dumps(
            [list(self.steps), self.window_days, self.split, campaign_id, self.filters.platform], separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def is_final(day: date, window_days: int, computed_at: datetime) -> bool:
    """Whether a day's result computed at ``computed_at`` can no longer change: every window of the
    people entering that day had closed (plus the rollup's lag)."""
    return computed_at >= _day_start(day + timedelta(days=1 + window_days)) + FINAL_MARGIN


def _funnel_id(spec: FunnelSpec, now: datetime) -> int:
    """The funnel's row, created at its first view; notes the view (at most once a minute) and the
    range, which beat keeps current."""
    filters = spec.filters
    found = (
        ReportFunnel.objects.filter(workspace_id=filters.workspace.pk, digest=spec.digest)
        .values_list("pk", "viewed_at", "viewed_start", "viewed_end")
        .first()
    )
    if found is None:
        row, _ = ReportFunnel.objects.get_or_create(
            workspace_id=filters.workspace.pk,
            digest=spec.digest,
            defaults={
                "steps": list(spec.steps),
                "window_days": spec.window_days,
                "split": spec.split,
                "campaign_id": spec.campaign.pk if spec.campaign is not None else None,
                "platform": filters.platform,
                "viewed_at": now,
                "viewed_start": filters.start,
                "viewed_end": filters.end,
            },
        )
        return int(row.pk)
    funnel_id, viewed_at, viewed_start, viewed_end = found
    if (viewed_start, viewed_end) != (filters.start, filters.end) or (now - viewed_at).total_seconds() > 60:
        ReportFunnel.objects.filter(pk=funnel_id).update(
            viewed_at=now, viewed_start=filters.start, viewed_end=filters.end
        )
    return int(funnel_id)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def _due_days(funnel_id: int, spec: FunnelSpec, *, now: datetime, max_age: float) -> list[date]:
    """The days of the spec's range to compute before reading: missing, computed with other
    campaign groups, or not final and computed more than ``max_age`` seconds ago (0: not final)."""
    start, end = spec.filters.start, spec.filters.end
    done = {
        day: (computed_at, groups_at)
        for day, computed_at, groups_at in ReportFunnelDay.objects.filter(
            funnel_id=funnel_id, day__range=(start, end)
        ).values_list("day", "computed_at", "groups_at")
    }

    def due(day: date) -> bool:
        if day not in done:
            return True
        computed_at, groups_at = done[day]
        if groups_at != spec.groups_at:
            return True
        if is_final(day, spec.window_days, computed_at):
            return False
        return max_age == 0 or (now - computed_at).total_seconds() > max_age

    return [day for day in _days(start, end) if due(day)]


def _compute(funnel_id: int, spec: FunnelSpec, *, start: date, end: date) -> None:
    """Compute the funnel's results for the people entering from ``start`` to ``end`` and replace
    those days' rows, in the caller's transaction."""
    from .selectors import funnel_sql

    computed_at = timezone.now()  # before reading: the result holds everything committed by then
    people, params = funnel_sql(
        filters=replace(spec.filters, start=start, end=end),
        steps=spec.steps,
        window_days=spec.window_days,
        split=spec.split,
        campaign=spec.campaign,
        with_day=True,
    )
    later = range(2, len(spec.steps) + 1)
    reached = "ARRAY[" + ", ".join(f"count(g{k})" for k in later) + "]::int[]"
    sums = "ARRAY[" + ", ".join(f"coalesce(sum(g{k}::float8), 0)" for k in later) + "]::float8[]"
    gaps = " || ".join(
        f"coalesce(array_agg(g{k} ORDER BY g{k}) FILTER (WHERE g{k} IS NOT NULL), '{{}}')" for k in later
    )
    gaps = gaps or "'{}'::bigint[]"
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM campaigns_reportfunnelgroupday WHERE funnel_id = %s AND day BETWEEN %s AND %s",
            [funnel_id, start, end],
        )
        cursor.execute(
            "INSERT INTO campaigns_reportfunnelgroupday (funnel_id, day, grp, entered, reached, total_us, gaps)"
            f" SELECT %s, day, grp::text, count(*), {reached}, {sums}, {gaps}"
            f" FROM ({people}) AS f GROUP BY day, grp",
            [funnel_id, *params],
        )
        cursor.execute(
            "INSERT INTO campaigns_reportfunnelday (funnel_id, day, computed_at, groups_at)"
            " SELECT %s, d::date, %s, %s FROM generate_series(%s::date, %s::date, interval '1 day') AS d"
            " ON CONFLICT (funnel_id, day) DO UPDATE SET computed_at = EXCLUDED.computed_at,"
            " groups_at = EXCLUDED.groups_at",
            [funnel_id, computed_at, spec.groups_at, start, end],
        )


def kth_smallest(arrays: Sequence[Sequence[int]], k: int) -> int:
    """The k-th smallest (1-based) of the values of several sorted arrays together, by bisecting
    on the value: each step counts the values at or below it with a binary search per array, so
    it takes ~40 times len(arrays) binary searches whatever the number of values (no sort, no merge)."""
    low = min(array[0] for array in arrays if array)
    high = max(array[-1] for array in arrays if array)
    while low < high:
        middle = (low + high) // 2
        if sum(bisect_right(array, middle) for array in arrays) >= k:
            high = middle
        else:
            low = middle + 1
    return low


@dataclass
class _Group:
    entered: int
    reached: list[int]
    total_us: list[float]
    gaps: list[list[list[int]]]  # per later step, each day's sorted gaps


def _read(*, funnel_id: int, steps: Sequence[str], split: str, start: date, end: date) -> list[tuple[Any, ...]]:
    """The range's numbers per group and in total, from the stored days: counts and sums added up;
    the medians picked from the days' sorted gaps (``kth_smallest``: in PostgreSQL, unnesting and
    sorting them again took three times as long)."""
    later = len(steps) - 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT grp, entered, reached, total_us, gaps FROM campaigns_reportfunnelgroupday"
            " WHERE funnel_id = %s AND day BETWEEN %s AND %s",
            [funnel_id, start, end],
        )
        stored = cursor.fetchall()
    groups: dict[str, _Group] = {}
    total = _Group(0, [0] * later, [0.0] * later, [[] for _ in range(later)])
    for grp, entered, reached, total_us, gaps in stored:
        group = groups.setdefault(grp, _Group(0, [0] * later, [0.0] * later, [[] for _ in range(later)]))
        offset = 0
        for into in (group, total):
            into.entered += entered
        for step in range(later):
            day_gaps = gaps[offset : offset + reached[step]]
            offset += reached[step]
            for into in (group, total):
                into.reached[step] += reached[step]
                into.total_us[step] += total_us[step]
                into.gaps[step].append(day_gaps)

    def row(key: Any, is_total: int, group: _Group) -> tuple[Any, ...]:
        columns: list[Any] = [key, is_total, group.entered]
        for step in range(later):
            count = group.reached[step]
            # The two middle values, as the live query's percentile_disc(MEDIAN_RANKS) gives them.
            middle = (
                [kth_smallest(group.gaps[step], (count + 1) // 2), kth_smallest(group.gaps[step], count // 2 + 1)]
                if count
                else None
            )
            columns += [count, middle, group.total_us[step] if count else None]
        return tuple(columns)

    rows = [row(int(key) if split == "campaign" else key, 0, group) for key, group in groups.items()]
    return [*rows, row(None, 1, total)]


def _ensure(funnel_id: int, spec: FunnelSpec, *, max_age: float, now: datetime) -> int:
    """Compute the days of the spec's range that are due; return how many were."""
    if not _due_days(funnel_id, spec, now=now, max_age=max_age):
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [FUNNEL_LOCK, funnel_id % 2**31])
    # Another request may have computed them while this one waited for the lock.
    due = _due_days(funnel_id, spec, now=timezone.now(), max_age=max_age)
    if due:
        _compute(funnel_id, spec, start=min(due), end=max(due))
    return len(due)


def funnel_rows(spec: FunnelSpec) -> FunnelRows | None:
    """The funnel's rows for the spec's range (unfiltered by segment) from its stored days, in the
    caller's transaction (``selectors.reading``); computes first the days that are due when they
    are at most ``SYNC_DAYS``. None when more are due (the funnel's first page, or beat is behind):
    the caller computes the funnel live, and a task computes the days after the commit."""
    now = timezone.now()
    funnel_id = _funnel_id(spec, now)
    max_age = settings.REPORTS_FUNNEL_FRESH_SECONDS
    if len(_due_days(funnel_id, spec, now=now, max_age=max_age)) > SYNC_DAYS:
        transaction.on_commit(lambda: _enqueue_compute(funnel_id))
        return None
    computed = _ensure(funnel_id, spec, max_age=max_age, now=now)
    start, end = spec.filters.start, spec.filters.end
    open_days = [
        computed_at
        for day, computed_at in ReportFunnelDay.objects.filter(
            funnel_id=funnel_id, day__range=(start, end)
        ).values_list("day", "computed_at")
        if not is_final(day, spec.window_days, computed_at)
    ]
    rows = _read(funnel_id=funnel_id, steps=spec.steps, split=spec.split, start=start, end=end)
    return FunnelRows(rows=rows, as_of=min(open_days, default=None), computed_days=computed)


def _enqueue_compute(funnel_id: int) -> None:
    from .tasks import reports_funnel_compute_task  # the tasks module imports this one

    try:
        reports_funnel_compute_task.delay(funnel_id)
    except Exception:
        # The page was right (computed live); beat computes the days at its next run.
        logger.exception("could not enqueue the days of report funnel %s", funnel_id)


def _compute_funnel(*, funnel: ReportFunnel, end: date, max_age: float, groups_max_age: int, now: datetime) -> int:
    """Compute the days of ``funnel`` from the first day last shown to ``end`` that are due; return
    how many were (0 when its workspace or campaign is gone)."""
    from campaigns.models import Campaign
    from profiles.models import Workspace

    from .members import campaign_groups
    from .selectors import Filters, reading

    workspace = Workspace.objects.filter(pk=funnel.workspace_id).first()
    campaign = None
    groups_at = None
    if funnel.split == "campaign":
        campaign = Campaign.objects.filter(id=funnel.campaign_id or 0, workspace_id=funnel.workspace_id).first()
        if campaign is None:
            return 0
        groups_at = campaign_groups(campaign_id=campaign.pk, workspace_id=funnel.workspace_id, max_age=groups_max_age)
    if workspace is None:
        return 0
    filters = Filters(workspace=workspace, start=funnel.viewed_start, end=end, platform=funnel.platform)
    spec = FunnelSpec(filters, funnel.steps, funnel.window_days, funnel.split, campaign, groups_at)
    with reading(filters):
        return _ensure(funnel.pk, spec, max_age=max_age, now=now)


def funnel_compute(*, funnel_id: int) -> int:
    """The task enqueued by a funnel's page that computed it live: the days of the range it showed
    that are still due (none when another task or beat computed them meanwhile)."""
    funnel = ReportFunnel.objects.filter(pk=funnel_id).first()
    if funnel is None:
        return 0
    return _compute_funnel(
        funnel=funnel,
        end=funnel.viewed_end,
        max_age=settings.REPORTS_FUNNEL_FRESH_SECONDS,
        groups_max_age=settings.REPORTS_SEGMENT_MEMBERS_SECONDS,
        now=timezone.now(),
    )


def funnels_refresh(*, now: datetime | None = None) -> dict[str, int]:
    """Beat: recompute the days that are not final of every funnel looked at lately (the range last
    shown; to today when it ended on the day it was shown), re-evaluating a split campaign's groups
    ahead of the pages; forget the funnels nobody looked at for ``REPORTS_FUNNEL_KEEP_SECONDS``."""
    from .rollups import advisory_lock

    with advisory_lock(FUNNELS_REFRESH_LOCK) as acquired:
        if not acquired:
            return {"funnels": 0, "days": 0, "forgotten": 0}  # a refresh still running does it
        return _funnels_refresh(now=now or timezone.now())


def _funnels_refresh(*, now: datetime) -> dict[str, int]:
    keep = now - timedelta(seconds=settings.REPORTS_FUNNEL_KEEP_SECONDS)
    forgotten = list(ReportFunnel.objects.filter(viewed_at__lt=keep).values_list("pk", flat=True))
    if forgotten:
        ReportFunnelGroupDay.objects.filter(funnel_id__in=forgotten).delete()
        ReportFunnelDay.objects.filter(funnel_id__in=forgotten).delete()
        ReportFunnel.objects.filter(pk__in=forgotten).delete()
    viewed = list(
        ReportFunnel.objects.filter(
            viewed_at__gte=now - timedelta(seconds=settings.REPORTS_FUNNEL_VIEWED_SECONDS)
        ).order_by("pk")
    )
    days = 0
    for funnel in viewed:
        days += _compute_funnel(
            funnel=funnel,
            end=now.date() if funnel.viewed_end >= funnel.viewed_at.date() else funnel.viewed_end,
            max_age=0,
            # Younger than the pages ask for, so that they find the groups (and the days) current.
            groups_max_age=settings.REPORTS_SEGMENT_MEMBERS_SECONDS // 2,
            now=now,
        )
    return {"funnels": len(viewed), "days": days, "forgotten": len(forgotten)}
