"""The numbers of each report page, read from the rollups (see ``campaigns.reports.models``).

One function per page. Each takes ``Filters`` (date range, platform, segment) and returns plain
dataclasses; ``campaigns.reports.pages`` turns them into tables and charts.

Unfiltered by segment, a page reads the aggregates (``ReportCampaignHour``, ``ReportWorkspaceDay``,
``ReportRetention``, ...), which stay small however big the workspace. Filtered by segment, it
reads the per-person facts (``ReportSend``, ``ReportActiveDay``, ``ReportFirstEvent``,
``ReportProfile``) joined with the segment's members, which the segments compiler puts into the
temp table ``rpt_members`` once per page; the SQL has the same shape as the aggregation that built
the aggregates, so both paths give the same numbers. Every page runs in one transaction with JIT
off (it costs more than it saves on these queries).
"""

# The SQL below is assembled from module constants and column names; every value that comes from
# a request is a query parameter.
# ruff: noqa: S608
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from profiles.models import Workspace
from profiles.spec import PURCHASE_EVENTS
from segments.models import Segment, SegmentSizeSnapshot

from ..models import Campaign, Variant
from .funnels import FunnelSpec, funnel_rows
from .members import SegmentSource, campaign_groups, segment_source
from .models import FIRST_TIMES_BLOCK
from .rollups import (
    CAMPAIGN_PERIODS,
    COUNT_COLUMNS,
    FIRST_US_SQL,
    GRAINS,
    STAGES,
    active_users_sql,
    bitmap_sql,
    campaign_retention_params,
    campaign_retention_sql,
    members_filter,
    retention_sql,
    revenue_sql,
    send_counts_sql,
)
from .stats import Uplift, uplift

CONTROL = "control"
METRICS = (*COUNT_COLUMNS, "revenue")

Params = Sequence[Any] | Mapping[str, Any]


@dataclass(frozen=True)
class Filters:
    """What every page is filtered by: a date range (UTC days, both ends included), a platform
    (the person's, as the reports recorded it; empty for all) and a segment (its members now)."""

    workspace: Workspace
    start: date
    end: date
    platform: str = ""
    segment: Segment | None = None

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, datetime.min.time(), tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        """The first moment after the range."""
        return datetime.combine(self.end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    @property
    def members(self) -> int | None:
        """The segment's id (its members: ``ReportSegmentMembers.bits``), or None."""
        return self.segment.pk if self.segment is not None else None


def _fetch(sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@dataclass(frozen=True)
class Source:
    """Where a page reads its numbers: the workspace's aggregates (no segment), the aggregates built
    for the segment's members (``campaigns.reports.members``), or, until those exist, live from the
    per-person facts joined with the members (``live``)."""

    workspace_id: int
    segment: SegmentSource | None = None

    @property
    def live(self) -> bool:
        return self.segment is not None and not self.segment.aggregated

    def table(self, name: str) -> str:
        """The aggregate table ``name`` (workspaceday, revenueday, cohortday, retention, campaignhour)
        of the workspace or of the segment."""
        if self.segment is None:
            return f"campaigns_report{name}"
        return SEGMENT_TABLES[name]

    def scope(self, alias: str = "") -> tuple[str, list[Any]]:
        """The condition selecting the workspace's rows (or the segment's) of such a table."""
        column = "workspace_id" if self.segment is None else "segment_id"
        value = self.workspace_id if self.segment is None else self.segment.segment_id
        return f"{alias}{column} = %s", [value]


SEGMENT_TABLES = {
    "workspaceday": "campaigns_reportsegmentday",
    "revenueday": "campaigns_reportsegmentrevenueday",
    "cohortday": "campaigns_reportsegmentcohortday",
    "retention": "campaigns_reportsegmentretention",
    "campaignhour": "campaigns_reportsegmentcampaignhour",
}


@contextmanager
def reading(filters: Filters) -> Iterator[Source]:
    """The transaction a page reads in: JIT off, room to sort and hash in memory, and the
    segment's members in ``ReportSegmentMembers`` (evaluated at most a few minutes ago, see
    ``campaigns.reports.members``) when the page is filtered by one."""
    source = Source(
        filters.workspace.pk, segment_source(segment=filters.segment) if filters.segment is not None else None
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            # Days are UTC days; the two-argument date_trunc (several times faster than naming the
            # zone in each call) truncates in the session's zone.
            cursor.execute("SET LOCAL TIME ZONE 'UTC'")
            cursor.execute("SET LOCAL work_mem = '64MB'")
        yield source


def _platform(column: str, filters: Filters) -> tuple[str, list[Any]]:
    return (f"AND {column} = %s", [filters.platform]) if filters.platform else ("", [])


# --- campaign report -----------------------------------------------------------------------------


@dataclass
class Counts:
    """A campaign's numbers for some slice (a variant, a channel, a day): see ReportCampaignHour."""

    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Sequence[Any]) -> Counts:
        """From a row of METRICS, in order (counts as int, revenue as Decimal)."""
        return cls(
            {
                metric: (Decimal(value or 0) if metric == "revenue" else int(value or 0))
                for metric, value in zip(METRICS, values, strict=True)
            }
        )

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key, Decimal(0) if key == "revenue" else 0)

    def add(self, other: Counts) -> None:
        for key in METRICS:
            self.values[key] = self[key] + other[key]

    @property
    def recipients(self) -> int:
        """People a message reached (received on at least one channel)."""
        return int(self["sent"])

    @property
    def revenue_per_recipient(self) -> Decimal | None:
        return (Decimal(self["revenue"]) / self.recipients).quantize(Decimal("0.01")) if self.recipients else None


@dataclass
class VariantResult:
    key: str
    name: str
    counts: Counts
    uplift: Uplift | None  # against the control group; None for the control group itself

    @property
    def is_control(self) -> bool:
        return self.key == CONTROL

    @property
    def population(self) -> int:
        """Whom the conversion rate is of: recipients for a variant, the whole control group."""
        return int(self.counts["control"] if self.is_control else self.counts.recipients)


@dataclass
class CampaignReport:
    campaign: Campaign
    total: Counts  # the variants' sends (the control group is apart: nothing was sent to it)
    everyone: Counts  # every targeted send, the control group included
    variants: list[VariantResult]
    channels: dict[str, Counts]
    series_bucket: str  # "hour" or "day"
    series: list[tuple[datetime, Counts]]
    first_due: datetime | None
    last_due: datetime | None


def _campaign_source(campaign: Campaign, filters: Filters, src: Source) -> tuple[str, list[Any]]:
    """The campaign's numbers as rows of (hour, variant, channel, METRICS...), to be summed: the
    aggregate's rows as they are or, filtered by segment, the sends of the segment's members
    counted per hour, variant and channel."""
    platform, platform_params = _platform("platform", filters)
    if not src.live:
        scope, scope_params = src.scope() if src.segment is not None else ("TRUE", [])
        return (
            f"SELECT hour, variant, channel, {', '.join(METRICS)} FROM {src.table('campaignhour')}"
            f" WHERE {scope} AND campaign_id = %s AND hour >= %s AND hour < %s {platform}",
            [*scope_params, campaign.pk, filters.start_at, filters.end_at, *platform_params],
        )
    return (
        f"SELECT date_trunc('hour', due_at) AS hour, variant, channel, {send_counts_sql()}"
        f" FROM campaigns_reportsend WHERE campaign_id = %s AND due_at >= %s AND due_at < %s {platform}"
        f" {members_filter('profile_id', filters.members)} GROUP BY 1, 2, 3",
        [campaign.pk, filters.start_at, filters.end_at, *platform_params],
    )


def campaign_span(campaign: Campaign) -> tuple[datetime | None, datetime | None]:
    """The first and last hour the campaign's sends were due in."""
    row = _fetch("SELECT min(hour), max(hour) FROM campaigns_reportcampaignhour WHERE campaign_id = %s", [campaign.pk])[
        0
    ]
    return row[0], row[1]


def campaign_report(*, campaign: Campaign, filters: Filters) -> CampaignReport:
    first_due, last_due = campaign_span(campaign)
    span_hours = (filters.end_at - filters.start_at).total_seconds() / 3600
    if first_due and last_due:
        lo, hi = max(first_due, filters.start_at), min(last_due, filters.end_at)
        span_hours = (hi - lo).total_seconds() / 3600
    bucket = "hour" if span_hours <= 72 else "day"
    with reading(filters) as src:
        source, params = _campaign_source(campaign, filters, src)
        sums = ", ".join(f"sum({m}) AS {m}" for m in METRICS)
        # One pass, two groupings: per variant and channel, and per hour or day (sends as a whole,
        # the variants' apart from the control group's).
        rows = _fetch(
            f"SELECT GROUPING(b) AS by_variant, variant, channel, b, in_series, {sums}"
            f" FROM (SELECT *, date_trunc('{bucket}', hour) AS b,"
            f" (channel = '' AND variant <> '{CONTROL}') AS in_series FROM ({source}) x) s"
            " GROUP BY GROUPING SETS ((variant, channel), (b, in_series))",
            params,
        )
    by_variant_channel = [(row[1], row[2], *row[5:]) for row in rows if row[0] == 1]
    by_bucket = sorted(((row[3], *row[5:]) for row in rows if row[0] == 0 and row[4]), key=lambda r: r[0])
    names = {v.key: v.name or f"Variant {v.key}" for v in Variant.objects.filter(campaign=campaign)}
    total = Counts()
    everyone = Counts()
    per_variant: dict[str, Counts] = {}
    channels: dict[str, Counts] = defaultdict(Counts)
    for variant, channel, *values in by_variant_channel:
        counts = Counts.of(values)
        if channel == "":
            everyone.add(counts)
            if variant != CONTROL:
                total.add(counts)
            per_variant.setdefault(variant, Counts()).add(counts)
        else:
            channels[channel].add(counts)
    control = per_variant.get(CONTROL)
    variants: list[VariantResult] = []
    for key in sorted(set(per_variant) | set(names), key=lambda k: (k == CONTROL, k)):
        counts = per_variant.get(key, Counts())
        if key == CONTROL:
            continue
        result = VariantResult(key=key, name=names.get(key, key or "(no variant)"), counts=counts, uplift=None)
        if control is not None:
            result.uplift = uplift(
                variant_successes=int(counts["converted"]),
                variant_size=result.population,
                control_successes=int(control["converted"]),
                control_size=int(control["control"]),
            )
        variants.append(result)
    if control is not None:
        variants.append(VariantResult(key=CONTROL, name="Control group", counts=control, uplift=None))
    series = [(row[0], Counts.of(row[1:])) for row in by_bucket]
    return CampaignReport(
        campaign=campaign,
        total=total,
        everyone=everyone,
        variants=variants,
        channels=dict(sorted(channels.items())),
        series_bucket=bucket,
        series=series,
        first_due=first_due,
        last_due=last_due,
    )


@dataclass
class CampaignSummary:
    campaign: Campaign
    targeted: int
    recipients: int
    converted: int
    revenue: Decimal
    last_due: datetime | None


def campaign_list(*, workspace: Workspace) -> list[CampaignSummary]:
    campaigns = {c.pk: c for c in Campaign.objects.filter(workspace=workspace)}
    rows = _fetch(
        "SELECT campaign_id, sum(targeted), sum(sent), sum(converted), sum(revenue), max(hour)"
        " FROM campaigns_reportcampaignhour WHERE workspace_id = %s AND channel = '' GROUP BY campaign_id",
        [workspace.pk],
    )
    numbers = {row[0]: row[1:] for row in rows}
    summaries = []
    for pk, campaign in campaigns.items():
        targeted, sent, converted, revenue, last = numbers.get(pk, (0, 0, 0, Decimal(0), None))
        summaries.append(CampaignSummary(campaign, int(targeted), int(sent), int(converted), revenue, last))
    return sorted(summaries, key=lambda s: (s.last_due is None, -(s.last_due.timestamp() if s.last_due else 0)))


# --- retention -----------------------------------------------------------------------------------


@dataclass
class Cohort:
    start: date
    size: int
    active: dict[int, int]  # period -> active people
    periods_ended: int  # how many periods (from 0) have ended by today; the next one is partial

    def share(self, period: int) -> float | None:
        return self.active.get(period, 0) / self.size if self.size else None


@dataclass
class RetentionReport:
    grain: str
    periods: int
    cohorts: list[Cohort]
    today: date

    def average(self, period: int) -> float | None:
        """Share active in ``period``, over the cohorts whose period has started (weighted by size)."""
        cohorts = [c for c in self.cohorts if c.periods_ended >= period]
        size = sum(c.size for c in cohorts)
        return sum(c.active.get(period, 0) for c in cohorts) / size if size else None


def period_start(grain: str, day: date) -> date:
    return day - timedelta(days=day.weekday()) if grain == "week" else day.replace(day=1)


def period_add(grain: str, start: date, periods: int) -> date:
    if grain == "week":
        return start + timedelta(days=7 * periods)
    month = start.month - 1 + periods
    return date(start.year + month // 12, month % 12 + 1, 1)


def periods_between(grain: str, start: date, later: date) -> int:
    if grain == "week":
        return (later - start).days // 7
    return (later.year - start.year) * 12 + later.month - start.month


RETENTION_PERIODS = {"week": 12, "month": 12}


def retention_report(*, filters: Filters, grain: str, today: date | None = None) -> RetentionReport:
    """Cohorts first seen in the range (widened to whole weeks or months), and the share of each
    active in each later week or month."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {sorted(GRAINS)}")
    today = today or timezone.now().date()
    first = period_start(grain, filters.start)
    last = period_add(grain, period_start(grain, filters.end), 1)  # exclusive
    platform, platform_params = _platform("platform", filters)
    cohort = f"date_trunc('{grain}', {{}})::date"
    with reading(filters) as src:
        if not src.live:
            scope, scope_params = src.scope()
            sizes = _fetch(
                f"SELECT {cohort.format('day')}, sum(profiles) FROM {src.table('cohortday')}"
                f" WHERE {scope} AND day >= %s AND day < %s {platform} GROUP BY 1",
                [*scope_params, first, last, *platform_params],
            )
            active = _fetch(
                f"SELECT cohort, period, sum(active) FROM {src.table('retention')} WHERE {scope}"
                f" AND grain = %s AND cohort >= %s AND cohort < %s {platform} GROUP BY 1, 2",
                [*scope_params, grain, first, last, *platform_params],
            )
        else:
            a_platform, a_params = _platform("a.platform", filters)
            sizes = _fetch(
                f"SELECT {cohort.format('cohort_day')}, count(*) FROM campaigns_reportprofile"
                f" WHERE workspace_id = %s AND cohort_day >= %s AND cohort_day < %s {platform}"
                f" {members_filter('profile_id', filters.members)} GROUP BY 1",
                [filters.workspace.pk, first, last, *platform_params],
            )
            where = (
                f"a.workspace_id = %s AND a.day >= %s AND a.cohort_day >= %s AND a.cohort_day < %s {a_platform}"
                f" {members_filter('a.profile_id', filters.members)}"
            )
            active = _fetch(
                f"SELECT cohort, period, sum(active) FROM ({retention_sql(grain, where)}) r GROUP BY 1, 2",
                [filters.workspace.pk, first, first, last, *a_params],
            )
    periods = RETENTION_PERIODS[grain]
    by_cohort: dict[date, dict[int, int]] = defaultdict(dict)
    for start, period, count in active:
        if 0 <= period < periods:
            by_cohort[start][int(period)] = int(count)
    current = period_start(grain, today)
    cohorts = [
        Cohort(
            start=start,
            size=int(size),
            active=by_cohort.get(start, {}),
            periods_ended=periods_between(grain, start, current),
        )
        for start, size in sorted(sizes)
        if size
    ]
    return RetentionReport(grain=grain, periods=periods, cohorts=cohorts, today=today)


@dataclass
class RetentionGroup:
    key: str  # a variant key, "recipients" (every variant) or "control"
    name: str
    size: int
    eligible: dict[int, int]
    active: dict[int, int]

    def share(self, period: int) -> float | None:
        eligible = self.eligible.get(period, 0)
        return self.active.get(period, 0) / eligible if eligible else None


@dataclass
class CampaignRetention:
    campaign: Campaign
    grain: str
    periods: int
    groups: list[RetentionGroup]
    compare_period: int
    comparison: Uplift | None  # recipients against control in compare_period
    computed_at: datetime | None

    def group(self, key: str) -> RetentionGroup | None:
        return next((g for g in self.groups if g.key == key), None)


DEFAULT_COMPARE_PERIOD = {"week": 8, "month": 2}


def campaign_retention(
    *, campaign: Campaign, filters: Filters, grain: str, period: int | None = None, today: date | None = None
) -> CampaignRetention:
    """Retention of the campaign's recipients (per variant and all together) against its control
    group: each person's periods start at their first send. Filtered by platform and segment; the
    date range does not apply (the campaign's own sends do)."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {sorted(GRAINS)}")
    periods = CAMPAIGN_PERIODS[grain]
    compare = DEFAULT_COMPARE_PERIOD[grain] if period is None else max(0, min(period, periods - 1))
    compare = min(compare, periods - 1)
    computed_at: datetime | None = None
    with reading(filters) as src:
        if src.segment is None:
            platform, platform_params = _platform("platform", filters)
            rows = _fetch(
                f'SELECT "group", period, sum(size), sum(eligible), sum(active), max(computed_at)'
                f" FROM campaigns_reportcampaignretention WHERE campaign_id = %s AND grain = %s {platform}"
                f" GROUP BY 1, 2",
                [campaign.pk, grain, *platform_params],
            )
            computed_at = max((row[5] for row in rows), default=None)
            data = [row[:5] for row in rows]
        elif not src.live:
            platform, platform_params = _platform("platform", filters)
            data = _fetch(
                f'SELECT "group", period, sum(size), sum(eligible), sum(active)'
                f" FROM campaigns_reportsegmentcampaignretention WHERE segment_id = %s AND campaign_id = %s"
                f" AND grain = %s {platform} GROUP BY 1, 2",
                [src.segment.segment_id, campaign.pk, grain, *platform_params],
            )
            computed_at = src.segment.as_of
        else:
            today = today or timezone.now().date()
            params = campaign_retention_params(campaign_ids=[campaign.pk], grain=grain, today=today)
            platform = "WHERE platform = %(platform)s" if filters.platform else ""
            data = _fetch(
                f"SELECT grp, period, sum(size), sum(eligible), sum(active)"
                f" FROM ({campaign_retention_sql(members=filters.members)}) r {platform} GROUP BY 1, 2",
                {**params, "platform": filters.platform},
            )
    names = {v.key: v.name or f"Variant {v.key}" for v in Variant.objects.filter(campaign=campaign)}
    groups: dict[str, RetentionGroup] = {}
    for key, period_index, size, eligible, active in data:
        group = groups.setdefault(
            key,
            RetentionGroup(
                key=key,
                name="Control group" if key == CONTROL else names.get(key, key or "(no variant)"),
                size=0,
                eligible={},
                active={},
            ),
        )
        group.size = int(size)  # the same on every period's row
        group.eligible[int(period_index)] = int(eligible)
        group.active[int(period_index)] = int(active)
    ordered = sorted(groups.values(), key=lambda g: (g.key == CONTROL, g.key))
    variants = [g for g in ordered if g.key != CONTROL]
    recipients = RetentionGroup(
        key="recipients",
        name="All recipients",
        size=sum(g.size for g in variants),
        eligible={p: sum(g.eligible.get(p, 0) for g in variants) for p in range(periods)},
        active={p: sum(g.active.get(p, 0) for g in variants) for p in range(periods)},
    )
    result_groups = ([recipients] if len(variants) > 1 else []) + ordered
    control = groups.get(CONTROL)
    comparison = None
    if control is not None and variants:
        comparison = uplift(
            variant_successes=recipients.active.get(compare, 0),
            variant_size=recipients.eligible.get(compare, 0),
            control_successes=control.active.get(compare, 0),
            control_size=control.eligible.get(compare, 0),
        )
    return CampaignRetention(
        campaign=campaign,
        grain=grain,
        periods=periods,
        groups=result_groups,
        compare_period=compare,
        comparison=comparison,
        computed_at=computed_at,
    )


# --- funnel --------------------------------------------------------------------------------------


@dataclass
class FunnelGroup:
    key: str
    counts: list[int]
    median_seconds: list[float | None]  # from the previous step, per step (None for step 1)
    mean_seconds: list[float | None]

    def conversion(self, step: int) -> float | None:
        """Share of the previous step that reached ``step``."""
        if step == 0:
            return 1.0 if self.counts[0] else None
        before = self.counts[step - 1]
        return self.counts[step] / before if before else None

    def overall(self, step: int) -> float | None:
        return self.counts[step] / self.counts[0] if self.counts[0] else None


@dataclass
class FunnelReport:
    steps: list[str]
    window_days: int
    split: str
    total: FunnelGroup
    groups: list[FunnelGroup]
    more_groups: int  # groups left out (the smallest)
    campaign_groups_at: datetime | None = None  # split by campaign: who it reached, as of then
    # When the days that may still change were counted (None: computed live, or every day final).
    as_of: datetime | None = None


FUNNEL_SPLITS = ("none", "source", "campaign")
MAX_STEPS = 6
MAX_GROUPS = 10


# A funnel split by campaign: each person's group, by the number funnel_sql gives it.
CAMPAIGN_FUNNEL_GROUPS = ("control group", "received", "targeted, not sent", "not in the campaign")
# percentile_disc(MEDIAN_RANKS) is the two middle values (one for an odd count): the row at
# ceil(0.5 n) and the one at ceil((0.5 + 1e-10) n), which is the next row when n is even (for any n
# under 10^10). Their mean is percentile_cont(0.5), from exact microseconds and one sort.
MEDIAN_RANKS = "ARRAY[0.5, 0.5000000001]"


def funnel_sql(
    *,
    filters: Filters,
    steps: Sequence[str],
    window_days: int,
    split: str,
    campaign: Campaign | None,
    with_day: bool = False,
) -> tuple[str, list[Any]]:
    """(A query of the funnel's people: ``profile_id``, ``grp`` (their group in the split) and
    ``g2``..``gn``, the microseconds from each step to the next, NULL when the step was not reached,
    and with ``with_day`` the UTC ``day`` they entered; its parameters). Step 1: first did
    ``steps[0]`` in the date range; step k: first did ``steps[k-1]`` at or after step k-1 and within
    ``window_days`` of step 1.

    Step 1's people come from ReportFirstEvent (one index range). Each later step's first time is
    read from ReportFirstTimes by position: the step's arrays (a few hundred blocks of profile ids)
    are hashed by block and each person's element is a subscript, instead of joining the people
    with everyone who ever did the step's event."""
    platform, platform_params = _platform("s1.platform", filters)
    params: list[Any] = []
    lookups = ""
    join = ""
    if len(steps) > 1:
        # One row per block with every later step's array: one hash join for all the steps. OFFSET 0
        # keeps the subquery whole, so ``|| '{}'`` runs once per block: it makes a plain copy of the
        # array in the hash table instead of a pointer to be detoasted at every subscript.
        arrays = ", ".join(
            f"min(times) FILTER (WHERE name = %s) || '{{}}'::bigint[] AS a{index}" for index in range(2, len(steps) + 1)
        )
        join = (
            f"LEFT JOIN (SELECT block, block::bigint * {FIRST_TIMES_BLOCK} - 1 AS base, {arrays}"
            f" FROM campaigns_reportfirsttimes WHERE workspace_id = %s AND name = ANY(%s) GROUP BY block OFFSET 0) b"
            f" ON b.block = (s1.profile_id / {FIRST_TIMES_BLOCK})::int"
        )
        lookups = "".join(f", b.a{index}[s1.profile_id - b.base] AS x{index}" for index in range(2, len(steps) + 1))
        params += [*steps[1:], filters.workspace.pk, list(steps[1:])]
    group = "''"
    if split == "source":
        # Byte order: the groups are only told apart here (the page sorts them), and comparing bytes
        # is cheaper than collating when the people are sorted by group.
        group = 's1.source COLLATE "C"'
    elif split == "campaign" and campaign is not None:
        campaign_groups(campaign_id=campaign.pk, workspace_id=campaign.workspace_id)

        # Each person's group from the campaign's bitmaps (evaluated at most minutes ago): in the
        # control group (of any occurrence), else received, else targeted but never sent.
        def member(group: str) -> str:
            return bitmap_sql(
                "s1.profile_id", "campaigns_reportcampaigngroups", f"campaign_id = {int(campaign.pk)}", bits=group
            )

        # A number, not the label: sorting the people by group is a good part of the funnel's time.
        group = (
            f"(CASE WHEN {member('control')} THEN 0 WHEN {member('received')} THEN 1"
            f" WHEN {member('targeted')} THEN 2 ELSE 3 END)"
        )
    day = "(s1.first_at AT TIME ZONE 'UTC')::date"
    people = (
        f"SELECT s1.profile_id, {group} AS grp, {FIRST_US_SQL.format('s1.first_at')} AS t1{lookups}"
        f"{f', {day} AS day' if with_day else ''}"
        f" FROM campaigns_reportfirstevent s1 {join}"
        # By UTC day (the range is whole UTC days), as rpt_first_event_day_idx holds them: each day's
        # people come in profile id order.
        f" WHERE s1.workspace_id = %s AND s1.name = %s AND {day} BETWEEN %s AND %s"
        f" {platform} {members_filter('s1.profile_id', filters.members)} OFFSET 0"
    )
    params += [filters.workspace.pk, steps[0], filters.start, filters.end, *platform_params]
    # Step k is reached when step k-1 was, its first time is at or after step k-1's and within the
    # window of step 1 ("never" is not). g_k: microseconds from step k-1 to step k, NULL if not reached.
    window = int(window_days) * 24 * 3600 * 1_000_000
    reached = ""
    gaps = ""
    for index in range(2, len(steps) + 1):
        before = "t1" if index == 2 else f"x{index - 1}"
        reached += f"{' AND ' if reached else ''}x{index} >= {before} AND x{index} <= t1 + {window}"
        gaps += f", CASE WHEN {reached} THEN x{index} - {before} END AS g{index}"
    return f"SELECT profile_id, grp{gaps}{', day' if with_day else ''} FROM ({people}) AS p", params


def _funnel_live(
    *, filters: Filters, steps: Sequence[str], window_days: int, split: str, campaign: Campaign | None
) -> list[tuple[Any, ...]]:
    """The funnel computed from the people entering it now: per group and in total, ``grp,
    is_total, entered`` then per later step ``reached, the two middle gaps, the sum of the gaps``."""
    people, params = funnel_sql(filters=filters, steps=steps, window_days=window_days, split=split, campaign=campaign)
    # The median from percentile_disc over the microseconds (bigint: cheaper to sort than double
    # precision, and exact); the mean from a sum in double precision (a bigint sum is numeric,
    # several times slower).
    columns = ["count(*)"]
    for index in range(2, len(steps) + 1):
        columns += [
            f"count(g{index})",
            f"percentile_disc({MEDIAN_RANKS}) WITHIN GROUP (ORDER BY g{index})",
            f"sum(g{index}::float8)",
        ]
    # OFFSET 0: each person's gaps are computed once, not again in every aggregate that uses them.
    source = f"({people} OFFSET 0) AS f"
    if split == "none":
        return _fetch(f"SELECT 'All', 1, {', '.join(columns)} FROM {source}", params)
    return _fetch(
        f"SELECT grp, GROUPING(grp) AS is_total, {', '.join(columns)} FROM {source} GROUP BY GROUPING SETS ((grp), ())",
        params,
    )


def funnel_report(
    *, filters: Filters, steps: Sequence[str], window_days: int = 30, split: str = "none", campaign: Campaign | None
) -> FunnelReport:
    steps = list(steps)[:MAX_STEPS]
    if not steps:
        raise ValueError("a funnel needs at least one step")
    groups_at = None
    if split == "campaign" and campaign is not None:
        groups_at = campaign_groups(campaign_id=campaign.pk, workspace_id=campaign.workspace_id)
    else:
        split, campaign = ("none" if split == "campaign" else split), None
    as_of = None
    with reading(filters):
        # From the funnel's results per day (campaigns.reports.funnels) when they are there.
        stored = None
        if filters.segment is None:
            stored = funnel_rows(FunnelSpec(filters, steps, window_days, split, campaign, groups_at))
        if stored is not None:
            rows, as_of = stored.rows, stored.as_of
        else:
            rows = _funnel_live(filters=filters, steps=steps, window_days=window_days, split=split, campaign=campaign)
    groups: list[FunnelGroup] = []
    total = FunnelGroup(
        key="All", counts=[0] * len(steps), median_seconds=[None] * len(steps), mean_seconds=[None] * len(steps)
    )
    for row in rows:
        key, is_total, first, *rest = row
        counts = [int(first)]
        medians: list[float | None] = [None]
        means: list[float | None] = [None]
        for index in range(len(steps) - 1):
            count, middle, total_us = rest[3 * index : 3 * index + 3]
            counts.append(int(count))
            medians.append((middle[0] + middle[-1]) / 2 / 1e6 if count else None)
            means.append(total_us / count / 1e6 if count else None)
        if split == "campaign" and not is_total:
            key = CAMPAIGN_FUNNEL_GROUPS[key]
        item = FunnelGroup(
            key=key if not is_total else "All", counts=counts, median_seconds=medians, mean_seconds=means
        )
        if is_total:
            total = item
        else:
            groups.append(item)
    groups.sort(key=lambda g: (-g.counts[0], g.key))
    more = max(0, len(groups) - MAX_GROUPS)
    return FunnelReport(
        steps=steps,
        window_days=window_days,
        split=split,
        total=total,
        groups=groups[:MAX_GROUPS] if split != "none" else [],
        more_groups=more if split != "none" else 0,
        campaign_groups_at=groups_at,
        as_of=as_of,
    )


def event_names(*, workspace: Workspace, limit: int = 300) -> list[str]:
    """The names of the events people did in the workspace (a loose index scan: one probe per name)."""
    rows = _fetch(
        """
        WITH RECURSIVE names AS (
            (SELECT name FROM campaigns_reportfirstevent WHERE workspace_id = %s ORDER BY name LIMIT 1)
            UNION ALL
            SELECT (SELECT f.name FROM campaigns_reportfirstevent f WHERE f.workspace_id = %s AND f.name > n.name
                    ORDER BY f.name LIMIT 1)
            FROM names n WHERE n.name IS NOT NULL
        )
        SELECT name FROM names WHERE name IS NOT NULL LIMIT %s
        """,
        [workspace.pk, workspace.pk, limit],
    )
    return [row[0] for row in rows]


# --- channels and sources ------------------------------------------------------------------------


@dataclass
class ChannelResult:
    channel: str
    counts: Counts
    comparison: Uplift | None  # this channel's conversion rate against every other channel's


@dataclass
class SourceResult:
    source: str
    people: int
    onboarded: int
    converted: int

    def rate(self, value: int) -> float | None:
        return value / self.people if self.people else None


@dataclass
class ChannelsReport:
    channels: list[ChannelResult]
    total: Counts
    sources: list[SourceResult]
    onboarding_event: str
    conversion_event: str

    @property
    def underperforming(self) -> list[str]:
        return [
            c.channel
            for c in self.channels
            if c.comparison and c.comparison.significant and (c.comparison.difference or 0) < 0
        ]


def default_events(names: Sequence[str]) -> tuple[str, str]:
    """A guess at the onboarding and conversion events among the workspace's event names."""
    lowered = {name.lower(): name for name in names}
    onboarding = next((n for low, n in lowered.items() if "onboard" in low and "complet" in low), "")
    onboarding = onboarding or next(
        (n for low, n in lowered.items() if "account created" in low or "signed up" in low), ""
    )
    conversion = next((n for n in names if n in PURCHASE_EVENTS), "")
    return onboarding, conversion


def channels_report(*, filters: Filters, onboarding_event: str, conversion_event: str) -> ChannelsReport:
    """Per channel: the sends due in the range across every campaign. Per acquisition source: the
    people first seen in the range, and how many of them ever did the onboarding and the
    conversion event."""
    platform, platform_params = _platform("platform", filters)
    with reading(filters) as src:
        if not src.live:
            scope, scope_params = src.scope()
            sums = ", ".join(f"sum({m})" for m in METRICS)
            channel_rows = _fetch(
                f"SELECT channel, {sums} FROM {src.table('campaignhour')} WHERE {scope} AND hour >= %s"
                f" AND hour < %s {platform} GROUP BY channel",
                [*scope_params, filters.start_at, filters.end_at, *platform_params],
            )
            source_rows = _fetch(
                f"SELECT source, sum(profiles) FROM {src.table('cohortday')} WHERE {scope}"
                f" AND day BETWEEN %s AND %s {platform} GROUP BY source",
                [*scope_params, filters.start, filters.end, *platform_params],
            )
        else:
            channel_rows = _fetch(
                f"SELECT channel, {send_counts_sql()} FROM campaigns_reportsend WHERE workspace_id = %s"
                f" AND due_at >= %s AND due_at < %s {platform} {members_filter('profile_id', filters.members)}"
                " GROUP BY channel",
                [filters.workspace.pk, filters.start_at, filters.end_at, *platform_params],
            )
            source_rows = _fetch(
                f"SELECT source, count(*) FROM campaigns_reportprofile WHERE workspace_id = %s"
                f" AND cohort_day BETWEEN %s AND %s {platform} {members_filter('profile_id', filters.members)}"
                " GROUP BY source",
                [filters.workspace.pk, filters.start, filters.end, *platform_params],
            )
        done: dict[str, dict[str, int]] = {}
        for name in {onboarding_event, conversion_event} - {""}:
            rows = _fetch(
                f"SELECT source, count(*) FROM campaigns_reportfirstevent WHERE workspace_id = %s AND name = %s"
                f" AND first_at >= %s AND cohort_day BETWEEN %s AND %s {platform}"
                f" {members_filter('profile_id', filters.members)} GROUP BY source",
                [filters.workspace.pk, name, filters.start_at, filters.start, filters.end, *platform_params],
            )
            done[name] = {source: int(count) for source, count in rows}
    total = Counts()
    per_channel: dict[str, Counts] = {}
    for channel, *values in channel_rows:
        counts = Counts.of(values)
        if channel == "":
            total = counts
        else:
            per_channel[channel] = counts
    channels = []
    for channel, counts in sorted(per_channel.items(), key=lambda item: -item[1].recipients):
        others_sent = sum(c.recipients for k, c in per_channel.items() if k != channel)
        others_converted = sum(int(c["converted"]) for k, c in per_channel.items() if k != channel)
        comparison = (
            uplift(
                variant_successes=int(counts["converted"]),
                variant_size=counts.recipients,
                control_successes=others_converted,
                control_size=others_sent,
            )
            if others_sent and counts.recipients
            else None
        )
        channels.append(ChannelResult(channel=channel, counts=counts, comparison=comparison))
    sources = [
        SourceResult(
            source=source,
            people=int(people),
            onboarded=done.get(onboarding_event, {}).get(source, 0),
            converted=done.get(conversion_event, {}).get(source, 0),
        )
        for source, people in source_rows
    ]
    sources.sort(key=lambda s: (-s.people, s.source))
    return ChannelsReport(
        channels=channels,
        total=total,
        sources=sources,
        onboarding_event=onboarding_event,
        conversion_event=conversion_event,
    )


# --- workspace overview --------------------------------------------------------------------------


DAY_METRICS = ("dau", "wau", "mau", "new_profiles", "events", "sessions", "messages", "conversions")


@dataclass
class OverviewReport:
    days: list[date]
    daily: dict[date, dict[str, int]]
    revenue: dict[str, dict[date, Decimal]]  # currency -> day -> revenue
    orders: dict[str, int]  # currency -> orders in the range
    segments: list[tuple[Segment, dict[date, int]]]

    def total(self, metric: str) -> int:
        return sum(values.get(metric, 0) for values in self.daily.values())

    def last(self, metric: str) -> int:
        return self.daily.get(self.days[-1], {}).get(metric, 0) if self.days else 0


def overview_report(*, filters: Filters) -> OverviewReport:
    platform, platform_params = _platform("platform", filters)
    ws = filters.workspace.pk
    daily: dict[date, dict[str, int]] = {day: dict.fromkeys(DAY_METRICS, 0) for day in filters.days}
    with reading(filters) as src:
        if not src.live:
            scope, scope_params = src.scope()
            rows = _fetch(
                f"SELECT day, {', '.join(f'sum({m})' for m in DAY_METRICS)} FROM {src.table('workspaceday')}"
                f" WHERE {scope} AND day BETWEEN %s AND %s {platform} GROUP BY day",
                [*scope_params, filters.start, filters.end, *platform_params],
            )
            for day, *values in rows:
                daily[day] = {m: int(v) for m, v in zip(DAY_METRICS, values, strict=True)}
            revenue_rows = _fetch(
                f"SELECT day, currency, sum(revenue), sum(orders) FROM {src.table('revenueday')}"
                f" WHERE {scope} AND day BETWEEN %s AND %s {platform} GROUP BY 1, 2",
                [*scope_params, filters.start, filters.end, *platform_params],
            )
        else:
            params = {"ws": ws, "lo": filters.start, "hi": filters.end, "platform": filters.platform}
            only = "AND platform = %(platform)s" if filters.platform else ""
            for _, day, *values in _fetch(
                f"SELECT * FROM ({active_users_sql(members=filters.members)}) u WHERE TRUE {only}", params
            ):
                for metric, value in zip(("dau", "wau", "mau", "events", "sessions"), values, strict=True):
                    daily[day][metric] += int(value)
            for day, count in _fetch(
                f"SELECT cohort_day, count(*) FROM campaigns_reportprofile WHERE workspace_id = %(ws)s"
                f" AND cohort_day BETWEEN %(lo)s AND %(hi)s {only} {members_filter('profile_id', filters.members)}"
                " GROUP BY 1",
                params,
            ):
                daily[day]["new_profiles"] = int(count)
            rp_only = "AND coalesce(rp.platform, '') = %(platform)s" if filters.platform else ""
            for day, messages, conversions in _fetch(
                f"SELECT d.day, sum(d.count) FILTER (WHERE d.name = '$message_received'),"
                f" sum(d.count) FILTER (WHERE d.name = '$message_converted')"
                f" FROM segments_eventdailycount d LEFT JOIN campaigns_reportprofile rp ON rp.profile_id = d.profile_id"
                f" WHERE d.workspace_id = %(ws)s AND d.name IN ('$message_received', '$message_converted')"
                f" AND d.day BETWEEN %(lo)s AND %(hi)s {rp_only} {members_filter('d.profile_id', filters.members)}"
                " GROUP BY 1",
                params,
            ):
                daily[day]["messages"], daily[day]["conversions"] = int(messages or 0), int(conversions or 0)
            revenue_rows = _fetch(
                f"SELECT day, currency, sum(revenue), sum(orders) FROM ({revenue_sql(members=filters.members)}) r"
                f" WHERE TRUE {only} GROUP BY 1, 2",
                {
                    **params,
                    "days": filters.days,
                    "start": filters.start_at,
                    "end": filters.end_at,
                },
            )
    revenue: dict[str, dict[date, Decimal]] = defaultdict(dict)
    orders: dict[str, int] = defaultdict(int)
    for day, currency, amount, count in revenue_rows:
        revenue[currency][day] = amount
        orders[currency] += int(count)
    segments_qs = Segment.objects.filter(workspace=filters.workspace).order_by("name")
    if filters.segment is not None:
        segments_qs = segments_qs.filter(pk=filters.segment.pk)
    sizes: dict[int, dict[date, int]] = defaultdict(dict)
    for snapshot in SegmentSizeSnapshot.objects.filter(
        segment__in=segments_qs, date__range=(filters.start, filters.end)
    ).only("segment_id", "date", "size"):
        sizes[snapshot.segment_id][snapshot.date] = snapshot.size
    segments = [(segment, sizes[segment.pk]) for segment in segments_qs if segment.pk in sizes]
    return OverviewReport(
        days=filters.days,
        daily=daily,
        revenue=dict(sorted(revenue.items(), key=lambda item: -orders[item[0]])),
        orders=dict(orders),
        segments=segments,
    )


# --- the people behind a number ------------------------------------------------------------------


STAGE_CONDITIONS = {stage: f"{stage}_at IS NOT NULL" for stage in STAGES}
STATUS_CONDITIONS = {
    "targeted": "TRUE",
    "pending": "status IN ('scheduled', 'sending')",
    "status_sent": "status = 'sent'",
    "failed": "status = 'failed'",
    "skipped": "status = 'skipped'",
    "cancelled": "status = 'cancelled'",
    "control": "status = 'control'",
}


class UnknownList(ValueError):
    """The request does not describe a list of people this page can show."""


def people_sql(*, filters: Filters, params: Mapping[str, str]) -> tuple[str, list[Any], str]:
    """(SQL selecting ``profile_id``, its parameters, a description) of the people behind a number,
    from the query string of a link on a report page (see ``pages``)."""
    kind = params.get("list", "")
    ws = filters.workspace.pk
    platform, platform_params = _platform("platform", filters)
    members = members_filter("profile_id", filters.members)
    if kind in ("campaign", "channel"):
        metric = params.get("metric", "")
        condition = STAGE_CONDITIONS.get(metric) or STATUS_CONDITIONS.get(metric)
        if condition is None:
            raise UnknownList(f"unknown metric {metric!r}")
        channel = params.get("channel", "")
        if kind == "campaign":
            campaign = Campaign.objects.filter(workspace=filters.workspace, pk=_int(params.get("campaign"))).first()
            if campaign is None:
                raise UnknownList("no such campaign")
            where = "campaign_id = %s"
            where_params: list[Any] = [campaign.pk]
            # No variant: the variants' sends (as the funnel counts them); "*": the control group too.
            variant = params.get("variant")
            if variant is None:
                where += f" AND variant <> '{CONTROL}'"
            elif variant != "*":
                where += " AND variant = %s"
                where_params.append(variant)
            described = f"{campaign.name}: {metric}" + (f", variant {variant}" if variant not in (None, "*") else "")
        else:
            where, where_params, described = "workspace_id = %s", [ws], f"{channel}: {metric}"
        if kind == "campaign" and metric in STATUS_CONDITIONS:
            channel = ""
        return (
            f"SELECT profile_id FROM campaigns_reportsend WHERE {where} AND channel = %s AND {condition}"
            f" AND due_at >= %s AND due_at < %s {platform} {members}",
            [*where_params, channel, filters.start_at, filters.end_at, *platform_params],
            described + (f" on {channel}" if channel and kind == "campaign" else ""),
        )
    if kind == "cohort":
        grain = params.get("grain", "week")
        if grain not in GRAINS:
            raise UnknownList("unknown grain")
        start = _date(params.get("cohort"))
        end = period_add(grain, start, 1)
        period = params.get("period")
        if period in (None, ""):
            return (
                f"SELECT profile_id FROM campaigns_reportprofile WHERE workspace_id = %s AND cohort_day >= %s"
                f" AND cohort_day < %s {platform} {members}",
                [ws, start, end, *platform_params],
                f"first seen in the {grain} of {start}",
            )
        active_start = period_add(grain, start, int(_int(period)))
        return (
            f"SELECT a.profile_id FROM campaigns_reportactiveday a WHERE a.workspace_id = %s"
            f" AND a.cohort_day >= %s AND a.cohort_day < %s AND a.day >= %s AND a.day < %s"
            f" {_platform('a.platform', filters)[0]} {members_filter('a.profile_id', filters.members)}",
            [ws, start, end, active_start, period_add(grain, active_start, 1), *platform_params],
            f"first seen in the {grain} of {start}, active in {grain} {period}",
        )
    if kind == "campaign_retention":
        campaign = Campaign.objects.filter(workspace=filters.workspace, pk=_int(params.get("campaign"))).first()
        grain = params.get("grain", "month")
        if campaign is None or grain not in GRAINS:
            raise UnknownList("no such campaign or grain")
        group = params.get("group", "")
        length = GRAINS[grain]
        index = _int(params.get("period"))
        group_filter = "variant <> 'control'" if group == "recipients" else "variant = %s"
        group_params = [] if group == "recipients" else [group]
        return (
            f"SELECT s.profile_id FROM (SELECT DISTINCT ON (profile_id) profile_id, (due_at AT TIME ZONE 'UTC')::date"
            f" AS start FROM campaigns_reportsend WHERE campaign_id = %s AND channel = ''"
            f" AND (variant = 'control' OR sent_at IS NOT NULL) AND {group_filter} {platform} {members}"
            f" ORDER BY profile_id, due_at) s WHERE EXISTS (SELECT 1 FROM campaigns_reportactiveday a"
            f" WHERE a.profile_id = s.profile_id AND a.day >= s.start + %s AND a.day < s.start + %s)"
            f" AND s.start + %s <= %s",
            [
                campaign.pk,
                *group_params,
                *platform_params,
                index * length,
                (index + 1) * length,
                (index + 1) * length,
                timezone.now().date(),
            ],
            f"{campaign.name}: {group}, active in {grain} {index} after their send",
        )
    if kind == "funnel":
        steps = [s for s in params.get("steps", "").split("\n") if s][:MAX_STEPS]
        step = int(_int(params.get("step")))
        if not steps or not 1 <= step <= len(steps):
            raise UnknownList("unknown funnel step")
        split = params.get("split", "none")
        campaign = None
        if split == "campaign":
            campaign = Campaign.objects.filter(workspace=filters.workspace, pk=_int(params.get("campaign"))).first()
        people, source_params = funnel_sql(
            filters=filters,
            steps=steps,
            window_days=int(_int(params.get("window"), 30)),
            split=split,
            campaign=campaign,
        )
        sql = f"SELECT profile_id FROM ({people}) AS f WHERE {'true' if step == 1 else f'g{step} IS NOT NULL'}"
        described = f"reached step {step} ({steps[step - 1]})"
        if "group" in params and split != "none":
            sql += " AND grp = %s"
            if split == "campaign":
                if params["group"] not in CAMPAIGN_FUNNEL_GROUPS:
                    raise UnknownList("unknown funnel group")
                source_params.append(CAMPAIGN_FUNNEL_GROUPS.index(params["group"]))
            else:
                source_params.append(params["group"])
            described += f", {params['group']}"
        return sql, source_params, described
    if kind == "source":
        source = params.get("source", "")
        event = params.get("event", "")
        if event:
            return (
                f"SELECT profile_id FROM campaigns_reportfirstevent WHERE workspace_id = %s AND name = %s"
                f" AND first_at >= %s AND cohort_day BETWEEN %s AND %s AND source = %s {platform} {members}",
                [ws, event, filters.start_at, filters.start, filters.end, source, *platform_params],
                f"first seen from {source or '(none)'} who did {event}",
            )
        return (
            f"SELECT profile_id FROM campaigns_reportprofile WHERE workspace_id = %s AND cohort_day BETWEEN %s"
            f" AND %s AND source = %s {platform} {members}",
            [ws, filters.start, filters.end, source, *platform_params],
            f"first seen from {source or '(none)'}",
        )
    if kind in ("active", "new"):
        day = _date(params.get("day"))
        table, column = (
            ("campaigns_reportactiveday", "day") if kind == "active" else ("campaigns_reportprofile", "cohort_day")
        )
        return (
            f"SELECT profile_id FROM {table} WHERE workspace_id = %s AND {column} = %s {platform} {members}",
            [ws, day, *platform_params],
            f"{'active' if kind == 'active' else 'first seen'} on {day}",
        )
    raise UnknownList(f"unknown list {kind!r}")


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value or default)
    except ValueError as error:
        raise UnknownList(f"not a number: {value!r}") from error


def _date(value: str | None) -> date:
    try:
        return date.fromisoformat(value or "")
    except ValueError as error:
        raise UnknownList(f"not a date: {value!r}") from error


@dataclass
class PeoplePage:
    description: str
    rows: list[tuple[Any, ...]]  # id, external_id, email, first_seen, last_seen, platform
    next_after: int | None


PEOPLE_COLUMNS = ("id", "external_id", "email", "first_seen", "last_seen", "platform")


def people(*, filters: Filters, params: Mapping[str, str], after: int = 0, limit: int = 100) -> PeoplePage:
    """One page of the people behind a number, in id order after ``after``."""
    sql, sql_params, description = people_sql(filters=filters, params=params)
    with reading(filters):
        rows = _fetch(
            f"SELECT {', '.join(f'p.{c}' for c in PEOPLE_COLUMNS)} FROM profiles_profile p"
            f" WHERE p.workspace_id = %s AND p.id > %s AND p.id IN ({sql}) ORDER BY p.id LIMIT %s",
            [filters.workspace.pk, after, *sql_params, limit + 1],
        )
    next_after = rows[limit - 1][0] if len(rows) > limit else None
    return PeoplePage(description=description, rows=rows[:limit], next_after=next_after)


def people_all(*, filters: Filters, params: Mapping[str, str], chunk: int = 5000) -> Iterator[tuple[Any, ...]]:
    """Every person behind a number, for the CSV export, read in keyset chunks."""
    after = 0
    while True:
        page = people(filters=filters, params=params, after=after, limit=chunk)
        yield from page.rows
        if page.next_after is None:
            return
        after = page.next_after
