"""Report pages benchmark: how long each report page takes to render on a workspace of 1,000,000
people, 10,000,000 events and 1,000,000 campaign sends (issue: every page under 500 ms).

It builds a fresh database (its name must contain "bench"), loads a deterministic workspace with
``COPY`` straight from a generator (one ``random.Random(seed)`` decides everything, person by
person), builds the segments' daily event rollup as its triggers would, then the report rollups
the way production does (``reports_rebuild``: the same feeds beat runs every minute, over all the
data, then the refresh), and times

- each page rendered through Django's test client (view, selectors, template: the whole response),
  ``--repeat`` times after a warm-up, unfiltered (the aggregates) and filtered by a segment of about
  a quarter of the people (the per-person facts joined with the segment's members);
- one steady-state rollup run after a minute's worth of new events (the beat task's cost).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.reports
    .venv/bin/python -m bench.reports --scale 0.1        # 100,000 people, ~1,000,000 events
    .venv/bin/python -m bench.reports --reuse            # time the pages again on the loaded data
    .venv/bin/python -m bench.reports --reuse --rebuild  # rebuild the report rollups first

Without DATABASE_URL (or --database-url) it uses the embedded PostgreSQL server as ``./run`` does.
See docs/reports.md, "Benchmark".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg

from bench.common import (
    EVENT_DAILY_ROLLUP_SQL,
    BenchError,
    backing_services,
    check_loopback,
    copy_streams,
    database_name,
    exit_cleanly_on_sigterm,
    fmt_int,
    log,
    migrate,
    phase,
    print_table,
    recreate_database,
    sequences_past_ids,
    setup_django,
    vacuum_analyze,
    with_database,
)

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
HISTORY_DAYS = 180
START = NOW - timedelta(days=HISTORY_DAYS)
PROFILES_AT_SCALE_1 = 1_000_000
TARGET_MS = 500.0
BENCH_SLUG = "reports-bench"
BLASTS = 19
NULL = "\\N"

PLATFORMS = (("ios", 0.45), ("android", 0.40), ("web", 0.15))
SOURCES = (("google", 0.25), ("facebook", 0.15), ("newsletter", 0.05), ("tiktok", 0.05), ("", 0.50))


def pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    point = rng.random()
    for value, weight in weighted:
        point -= weight
        if point < 0:
            return value
    return weighted[-1][0]


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


# --- the data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignSpec:
    id: int
    variants: dict[str, int]  # key -> variant id
    control_percent: int
    due: datetime | None  # a blast's send time; None: each person's first day + 1 (onboarding)
    conversion: dict[str, float]  # per variant key (and "control")


@dataclass
class Counts:
    profiles: int = 0
    events: int = 0
    engagement: int = 0
    purchases: int = 0
    sends: int = 0


@dataclass
class Buffers:
    profiles: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    purchases: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)


PROFILE_COLUMNS = ("id", "workspace_id", "external_id", "email", "first_seen", "last_seen", "platform", "utm_source",
                   "session_count", "created_at", "updated_at")  # fmt: skip
EVENT_COLUMNS = ("id", "workspace_id", "profile_id", "type", "name", "properties", "context", "message_id",
                 "timestamp", "received_at")  # fmt: skip
PURCHASE_COLUMNS = ("workspace_id", "profile_id", "event_id", "product_id", "price", "currency", "quantity",
                    "timestamp")  # fmt: skip
DELIVERY_COLUMNS = ("id", "workspace_id", "campaign_id", "step_key", "profile_id", "occurrence", "variant_id",
                    "status", "reason", "scheduled_for", "sent_channels", "created_at", "sent_at", "converted_at",
                    "revenue")  # fmt: skip


class Generator:
    """People, their events and purchases, and their sends, in COPY text, person by person."""

    def __init__(
        self, *, seed: int, profiles: int, workspace_id: int, onboarding: CampaignSpec, blasts: list[CampaignSpec]
    ) -> None:
        self.rng = random.Random(seed)
        self.profiles = profiles
        self.workspace_id = workspace_id
        self.onboarding = onboarding
        self.blasts = blasts
        self.counts = Counts()
        self.event_id = 0
        self.delivery_id = 0

    def chunks(self, size: int = 5000) -> Iterator[Buffers]:
        buffers = Buffers()
        for index in range(self.profiles):
            self._person(index, buffers)
            if (index + 1) % size == 0:
                yield buffers
                buffers = Buffers()
        yield buffers

    def _event(self, buffers: Buffers, profile_id: int, name: str, when: datetime, properties: str = "{}") -> int:
        self.event_id += 1
        stamp = ts(when)
        buffers.events.append(
            f"{self.event_id}\t{self.workspace_id}\t{profile_id}\ttrack\t{name}\t{properties}\t{{}}"
            f"\tb{self.event_id}\t{stamp}\t{stamp}\n"
        )
        self.counts.events += 1
        return self.event_id

    def _person(self, index: int, buffers: Buffers) -> None:
        rng = self.rng
        profile_id = index + 1
        # More people sign up recently (a growing app).
        first_seen = START + timedelta(seconds=int(HISTORY_DAYS * 86400 * math.sqrt(rng.random())))
        platform = pick(rng, PLATFORMS)
        source = pick(rng, SOURCES)
        days = [first_seen]
        day = first_seen
        while len(days) < 40 and rng.random() > 0.3:
            day = day + timedelta(days=1 + int(rng.expovariate(1 / 7)), seconds=rng.randint(-3600, 3600))
            if day > NOW:
                break
            days.append(day)
        last_seen = days[-1]
        buffers.profiles.append(
            f"{profile_id}\t{self.workspace_id}\tu{profile_id}\tu{profile_id}@example.com\t{ts(first_seen)}"
            f"\t{ts(last_seen)}\t{platform}\t{source}\t{len(days)}\t{ts(first_seen)}\t{ts(last_seen)}\n"
        )
        self.counts.profiles += 1
        for moment in days:
            self._event(buffers, profile_id, "$session_started", moment)
            self._event(buffers, profile_id, "Application Opened", moment + timedelta(seconds=1))
            if rng.random() < 0.55:
                self._event(buffers, profile_id, "Product Viewed", moment + timedelta(seconds=rng.randint(5, 600)))
        if rng.random() < 0.7:
            created = first_seen + timedelta(seconds=rng.randint(30, 3600))
            self._event(buffers, profile_id, "Account Created", created)
            if rng.random() < 0.5:
                self._event(
                    buffers, profile_id, "Onboarding Completed", created + timedelta(seconds=rng.randint(60, 86400))
                )
        if rng.random() < 0.2:
            when = rng.choice(days) + timedelta(seconds=rng.randint(60, 1800))
            price = f"{rng.randint(5, 200)}.{rng.randint(0, 99):02d}"
            currency = "EUR" if rng.random() < 0.2 else "USD"
            properties = json.dumps({"revenue": price, "currency": currency})
            order = self._event(buffers, profile_id, "Order Completed", when, properties)
            buffers.purchases.append(
                f"{self.workspace_id}\t{profile_id}\t{order}\tsku-{rng.randint(1, 500)}\t{price}\t{currency}\t1"
                f"\t{ts(when)}\n"
            )
            self.counts.purchases += 1
        self._send(buffers, index, profile_id, first_seen)

    def _send(self, buffers: Buffers, index: int, profile_id: int, first_seen: datetime) -> None:
        rng = self.rng
        # Half the people get a newsletter sent after they signed up; the others (and those who
        # signed up after the last newsletter) the onboarding campaign, an hour after their first visit.
        candidates = [b for b in self.blasts if b.due is not None and first_seen < b.due <= NOW]
        if index % 2 and candidates:
            spec = rng.choice(candidates)
            assert spec.due is not None
            due = spec.due
        else:
            spec = self.onboarding
            due = first_seen + timedelta(hours=1)
        if due > NOW:
            return
        self.delivery_id += 1
        send_id = self.delivery_id
        self.counts.sends += 1
        control = rng.random() * 100 < spec.control_percent
        variant = "control" if control else rng.choice(sorted(spec.variants))
        outcome = rng.random()
        status = "control" if control else ("skipped" if outcome < 0.06 else "failed" if outcome < 0.08 else "sent")
        channel = "email" if rng.random() < 0.6 else "push"
        base = {"campaign_id": spec.id, "variant": variant, "send_id": str(send_id)}
        properties = json.dumps(base)
        with_channel = json.dumps({**base, "channel": channel})
        converted_at: datetime | None = None
        revenue = ""
        engagement = 0
        if control:
            self._event(buffers, profile_id, "$control_group_enrolled", due, properties)
            engagement += 1
        elif status == "sent":
            self._event(buffers, profile_id, "$message_received", due + timedelta(seconds=5), with_channel)
            engagement += 1
            bounced = channel == "email" and rng.random() < 0.03
            if bounced:
                self._event(buffers, profile_id, "$message_bounced", due + timedelta(seconds=30), with_channel)
                engagement += 1
            elif channel == "email" and rng.random() < 0.9:
                self._event(buffers, profile_id, "$message_delivered", due + timedelta(seconds=60), with_channel)
                engagement += 1
            if not bounced and rng.random() < (0.25 if channel == "email" else 0.12):
                opened = due + timedelta(seconds=rng.randint(120, 86400))
                self._event(buffers, profile_id, "$message_opened", opened, with_channel)
                engagement += 1
                if rng.random() < 0.3:
                    self._event(buffers, profile_id, "$message_clicked", opened + timedelta(seconds=20), with_channel)
                    engagement += 1
        if status in ("sent", "control") and rng.random() < spec.conversion[variant]:
            converted_at = due + timedelta(seconds=rng.randint(600, 3 * 86400))
            props = dict(base)
            if rng.random() < 0.5:
                revenue = f"{rng.randint(5, 120)}.{rng.randint(0, 99):02d}"
                props["revenue"] = revenue
            self._event(buffers, profile_id, "$message_converted", converted_at, json.dumps(props))
            engagement += 1
        self.counts.engagement += engagement
        variant_id = NULL if control else str(spec.variants[variant])
        sent_channels = "{" + channel + "}" if status == "sent" else "{}"
        buffers.deliveries.append(
            f"{send_id}\t{self.workspace_id}\t{spec.id}\tmain\t{profile_id}\tonce\t{variant_id}\t{status}\t"
            f"\t{ts(due)}\t{sent_channels}\t{ts(due)}\t{ts(due) if status == 'sent' else NULL}"
            f"\t{ts(converted_at) if converted_at else NULL}\t{revenue or NULL}\n"
        )


# --- loading ---------------------------------------------------------------------------------------


def _filled_columns(conn: psycopg.Connection[Any], table: str, given: Sequence[str]) -> tuple[list[str], str]:
    """The COPY column list for ``table``: ``given`` plus every NOT NULL column without a database
    default (columns other apps add keep the load working), and the constant suffix of each row
    for those extra columns."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s"
        " AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO' AND is_generated = 'NEVER'"
        " ORDER BY ordinal_position",
        [table],
    ).fetchall()
    extra = [(name, kind) for name, kind in rows if name not in given]
    values = []
    for _name, kind in extra:
        if kind in ("character varying", "text"):
            values.append("")
        elif kind in ("integer", "smallint", "bigint", "numeric", "double precision", "real"):
            values.append("0")
        elif kind == "boolean":
            values.append("f")
        elif kind in ("jsonb", "json", "ARRAY"):
            values.append("{}")
        elif kind.startswith("timestamp"):
            values.append(ts(NOW))
        elif kind == "date":
            values.append(NOW.date().isoformat())
        else:
            raise BenchError(f"cannot fill {table}.{_name} ({kind}) for COPY")
    return [*given, *(name for name, _ in extra)], "".join("\t" + v for v in values)


def _setup_workspace() -> tuple[int, CampaignSpec, list[CampaignSpec]]:
    from django.contrib.auth.models import User

    from campaigns.models import Campaign, CampaignStatus, DeliveryType, Variant
    from profiles.models import App, Platform, Workspace
    from segments.models import Segment, SegmentSizeSnapshot

    workspace = Workspace.objects.create(name="Reports bench", slug=BENCH_SLUG)
    for platform in (Platform.IOS, Platform.ANDROID, Platform.WEB):
        App.objects.create(workspace=workspace, name=f"Bench {platform}", platform=platform)
    User.objects.filter(username="bench").delete()
    User.objects.create_superuser("bench", email="bench@example.com", password=None)
    sizes = {"From Google": 250_000, "iOS": 450_000, "Buyers": 200_000}
    segments = [
        Segment.objects.create(
            workspace=workspace,
            name="From Google",
            definition={"all": [{"type": "acquisition", "field": "source", "op": "eq", "value": "google"}]},
        ),
        Segment.objects.create(
            workspace=workspace,
            name="iOS",
            definition={"all": [{"type": "platform", "op": "eq", "value": "ios"}]},
        ),
        Segment.objects.create(
            workspace=workspace,
            name="Buyers",
            definition={"all": [{"type": "purchase_count", "op": "gte", "value": 1}]},
        ),
    ]
    SegmentSizeSnapshot.objects.bulk_create(
        SegmentSizeSnapshot(
            segment=segment,
            date=(START + timedelta(days=day)).date(),
            size=int(sizes[segment.name] * (0.3 + 0.7 * day / HISTORY_DAYS)),
        )
        for segment in segments
        for day in range(HISTORY_DAYS + 1)
    )

    def make(
        name: str, keys: Sequence[str], control: int, due: datetime | None, rates: dict[str, float]
    ) -> CampaignSpec:
        campaign = Campaign.objects.create(
            workspace=workspace,
            name=name,
            control_percent=control,
            status=CampaignStatus.RUNNING,
            delivery_type=DeliveryType.ACTION if due is None else DeliveryType.SCHEDULED,
            send_at=due,
        )
        variants = {
            key: Variant.objects.create(campaign=campaign, key=key, percent=100 // len(keys)).pk for key in keys
        }
        return CampaignSpec(campaign.pk, variants, control, due, rates)

    onboarding = make("Onboarding", ("A", "B"), 10, None, {"A": 0.05, "B": 0.065, "control": 0.04})
    blasts = [
        make(
            f"Newsletter {n + 1}",
            ("A", "B") if n % 3 == 0 else ("A",),
            5,
            START + timedelta(days=9 * (n + 1), hours=10),
            {"A": 0.025, "B": 0.03, "control": 0.02},
        )
        for n in range(BLASTS)
    ]
    return workspace.pk, onboarding, blasts


@dataclass
class LoadReport:
    counts: Counts = field(default_factory=Counts)
    seconds: dict[str, float] = field(default_factory=dict)


def load(url: str, *, seed: int, profiles: int) -> LoadReport:
    """Fill the freshly migrated database at ``url``. People, events, purchases and deliveries are
    streamed with COPY over four connections in step, with ``session_replication_role = replica``
    (no per-row foreign-key checks, no rollup trigger: the segments' daily rollup is then built in
    one ``INSERT ... SELECT ... GROUP BY``, the grouping its insert trigger does)."""
    from django.db import connection

    report = LoadReport()
    workspace_id, onboarding, blasts = _setup_workspace()
    connection.close()
    generator = Generator(seed=seed, profiles=profiles, workspace_id=workspace_id, onboarding=onboarding, blasts=blasts)
    tables = {
        "profiles_profile": PROFILE_COLUMNS,
        "profiles_event": EVENT_COLUMNS,
        "profiles_purchase": PURCHASE_COLUMNS,
        "campaigns_delivery": DELIVERY_COLUMNS,
    }
    with phase(report.seconds, "COPY"), contextlib.ExitStack() as stack:
        suffixes: dict[str, str] = {}
        filled: dict[str, Sequence[str]] = {}
        with psycopg.connect(url) as conn:
            for table, given in tables.items():
                filled[table], suffixes[table] = _filled_columns(conn, table, given)
        copies = copy_streams(stack, url, filled)
        last_log = time.monotonic()
        for chunk in generator.chunks():
            for table, lines in (
                ("profiles_profile", chunk.profiles),
                ("profiles_event", chunk.events),
                ("profiles_purchase", chunk.purchases),
                ("campaigns_delivery", chunk.deliveries),
            ):
                suffix = suffixes[table]
                copies[table].write("".join(line[:-1] + suffix + "\n" for line in lines) if suffix else "".join(lines))
            if time.monotonic() - last_log > 15:
                last_log = time.monotonic()
                c = generator.counts
                log(f"  {c.profiles:,} people, {c.events:,} events, {c.sends:,} sends")
    report.counts = generator.counts
    with psycopg.connect(url, autocommit=True) as conn:
        sequences_past_ids(conn, tables)
        with phase(report.seconds, "segments rollup"):
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("SET work_mem = '1GB'")
            conn.execute(EVENT_DAILY_ROLLUP_SQL)
        with phase(report.seconds, "VACUUM ANALYZE"):
            vacuum_analyze(conn, [*tables, "segments_eventdailycount"])
    return report


def build_rollups(url: str, report: LoadReport) -> None:
    from campaigns.reports.rollups import REPORT_TABLES, reports_rebuild

    with phase(report.seconds, "report rollups (feeds over all the data, then refresh)"):
        result = reports_rebuild(now=NOW)
        log(f"  read {', '.join(f'{fmt_int(n)} {name}' for name, n in result.rows.items())}")
    with psycopg.connect(url, autocommit=True) as conn, phase(report.seconds, "VACUUM ANALYZE rollups"):
        vacuum_analyze(conn, REPORT_TABLES)


def segment_aggregates() -> tuple[float, int]:
    """The aggregates of the "From Google" segment (about a quarter of the people), rebuilt as beat
    does for a segment the pages were filtered by: (seconds, members)."""
    from campaigns.reports.members import segment_refresh, segment_status
    from segments.models import Segment

    segment = Segment.objects.filter(workspace__slug=BENCH_SLUG, name="From Google").first()
    if segment is None:
        return 0.0, 0
    log("segment aggregates (From Google)...")
    seconds = segment_refresh(segment_id=segment.pk, force=True, now=NOW) or 0.0
    status = segment_status(segment=segment)
    return seconds, status.size if status else 0


def steady_state(url: str, *, seed: int, events: int) -> tuple[float, float, int]:
    """A minute's worth of new events (through the triggers, as the intake writes them), then one
    rollup run and one refresh, timed."""
    from django.db import connection

    from campaigns.reports.rollups import reports_refresh, reports_rollup

    rng = random.Random(seed + 1)
    run = f"{seed}-{time.time_ns()}"  # fresh message ids on every run (--reuse runs again)
    with psycopg.connect(url, autocommit=True) as conn:
        (workspace_id,) = conn.execute(
            "SELECT id FROM profiles_workspace WHERE slug = %s", [BENCH_SLUG]
        ).fetchone() or (0,)
        (people,) = conn.execute("SELECT max(id) FROM profiles_profile").fetchone() or (1,)
        moment = NOW - timedelta(minutes=1)
        rows = [
            (workspace_id, rng.randint(1, people), "track", "Application Opened", "{}", "{}", f"s{run}-{n}",
             moment + timedelta(seconds=n * 60 / events), moment)
            for n in range(events)
        ]  # fmt: skip
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO profiles_event (workspace_id, profile_id, type, name, properties, context, message_id,"
                " timestamp, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (workspace_id, message_id) DO NOTHING",
                rows,
            )
    connection.close()
    started = time.perf_counter()
    result = reports_rollup()
    rollup = time.perf_counter() - started
    started = time.perf_counter()
    reports_refresh(now=NOW, campaigns=False)
    refresh = time.perf_counter() - started
    return rollup, refresh, result.rows.get("events", 0)


# --- timing pages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageCase:
    label: str
    path: str
    query: dict[str, Any]


def page_cases(workspace_slug: str, onboarding_id: int, blast_id: int, segment_id: int | None) -> list[PageCase]:
    from django.urls import reverse

    def u(name: str, *args: Any) -> str:
        return reverse(f"reports:{name}", args=[workspace_slug, *args])

    last30 = {"start": (NOW - timedelta(days=29)).date().isoformat(), "end": NOW.date().isoformat()}
    whole = {"start": START.date().isoformat(), "end": NOW.date().isoformat()}
    last12w = {"start": (NOW - timedelta(weeks=12)).date().isoformat(), "end": NOW.date().isoformat()}
    steps = "Application Opened\nAccount Created\nOrder Completed"
    cases = [
        PageCase("overview, 30 days", u("overview"), last30),
        PageCase("overview, 180 days", u("overview"), whole),
        PageCase("campaigns list", u("campaigns"), {}),
        PageCase("campaign: onboarding (~550k sends)", u("campaign", onboarding_id), whole),
        PageCase("campaign: a newsletter", u("campaign", blast_id), whole),
        PageCase("retention: weekly cohorts", u("retention"), {**last12w, "grain": "week"}),
        PageCase(
            "retention: monthly + onboarding vs control",
            u("retention"),
            {**whole, "grain": "month", "campaign": onboarding_id},
        ),
        PageCase("funnel: 3 steps, 30 days", u("funnel"), {**last30, "steps": steps}),
        PageCase("funnel: split by source", u("funnel"), {**last30, "steps": steps, "split": "source"}),
        PageCase(
            "funnel: split by campaign",
            u("funnel"),
            {**last30, "steps": steps, "split": "campaign", "campaign": onboarding_id},
        ),
        PageCase("channels and sources, 30 days", u("channels"), last30),
        PageCase(
            "people: onboarding A converted",
            u("people"),
            {**whole, "list": "campaign", "campaign": onboarding_id, "metric": "converted", "variant": "A"},
        ),
    ]
    if segment_id is not None:
        seg = {"segment": segment_id}
        cases += [
            PageCase("[segment] overview, 30 days", u("overview"), {**last30, **seg}),
            PageCase("[segment] campaign: onboarding", u("campaign", onboarding_id), {**whole, **seg}),
            PageCase("[segment] retention: weekly cohorts", u("retention"), {**last12w, "grain": "week", **seg}),
            PageCase("[segment] funnel: 3 steps, 30 days", u("funnel"), {**last30, "steps": steps, **seg}),
            PageCase("[segment] channels and sources", u("channels"), {**last30, **seg}),
        ]
    return cases


def time_pages(*, repeat: int, only: str = "") -> tuple[list[list[str]], list[list[str]]]:
    """(The pages' times; the seconds the worker took to compute the days of each funnel after its
    first page, and how many days.)"""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from campaigns.models import Campaign
    from campaigns.reports.models import ReportFunnel, ReportFunnelDay, ReportFunnelGroupDay
    from segments.models import Segment

    # A funnel's first page computes its results per day; the next ones read them (beat keeps them
    # current). Forget those of earlier runs, so that "first ms" is the first page's cost.
    funnels = list(ReportFunnel.objects.filter(workspace_id__in=_bench_workspace_ids()).values_list("pk", flat=True))
    ReportFunnelGroupDay.objects.filter(funnel_id__in=funnels).delete()
    ReportFunnelDay.objects.filter(funnel_id__in=funnels).delete()
    ReportFunnel.objects.filter(pk__in=funnels).delete()

    client = Client()
    client.force_login(User.objects.get(username="bench"))
    onboarding = Campaign.objects.get(workspace__slug=BENCH_SLUG, name="Onboarding")
    blast = Campaign.objects.get(workspace__slug=BENCH_SLUG, name="Newsletter 10")
    segment = Segment.objects.filter(workspace__slug=BENCH_SLUG, name="From Google").first()
    rows = []
    funnel_computes: list[list[str]] = []
    for case in page_cases(BENCH_SLUG, onboarding.pk, blast.pk, segment.pk if segment else None):
        if only and only not in case.label:
            continue
        url = case.path + ("?" + urlencode(case.query) if case.query else "")
        timings = []
        for attempt in range(repeat + 1):  # the first is the warm-up (and a funnel's first page)
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise BenchError(f"{case.label}: HTTP {response.status_code} for {url}")
            connection.close()  # each request on a fresh connection, as a worker's would be
            if attempt == 0:
                computed = compute_funnels()  # what the worker does after a funnel's first page
                if computed is not None:
                    funnel_computes.append([case.label, f"{computed[0]:.2f}", fmt_int(computed[1])])
        first, timings = timings[0], timings[1:]
        median = statistics.median(timings)
        target = "ok" if median < TARGET_MS else "SLOW"
        rows.append(
            [
                case.label,
                f"{median:.0f}",
                f"{max(timings):.0f}",
                f"{first:.0f}",
                f"{len(response.content) / 1024:.0f}",
                target,
            ]
        )
        log(f"  {case.label}: {median:.0f} ms")
    return rows, funnel_computes


def compute_funnels() -> tuple[float, int] | None:
    """Run the task a funnel's first page enqueues (``reports_funnel_compute_task``), as the worker
    would, for the funnels whose days are due; (seconds, days), or None when none were."""
    from campaigns.reports.funnels import funnel_compute
    from campaigns.reports.models import ReportFunnel

    started = time.perf_counter()
    days = sum(
        funnel_compute(funnel_id=funnel_id)
        for funnel_id in ReportFunnel.objects.filter(workspace_id__in=_bench_workspace_ids()).values_list(
            "pk", flat=True
        )
    )
    return (time.perf_counter() - started, days) if days else None


def _bench_workspace_ids() -> list[int]:
    from profiles.models import Workspace

    return list(Workspace.objects.filter(slug=BENCH_SLUG).values_list("pk", flat=True))


def time_funnel_refresh() -> tuple[float, dict[str, int]]:
    """One run of beat's funnel refresh of the funnels the pages showed. The benchmark's days are
    months old, so every day's window has closed and beat would have nothing to do; on a live
    workspace every day of a 30-day funnel is still open. So the days are forgotten first: the
    refresh computes all of them, as it does every minute on a live workspace."""
    from campaigns.reports.funnels import funnels_refresh
    from campaigns.reports.models import ReportFunnel, ReportFunnelDay

    funnels = ReportFunnel.objects.filter(workspace_id__in=_bench_workspace_ids()).values_list("pk", flat=True)
    ReportFunnelDay.objects.filter(funnel_id__in=list(funnels)).delete()
    started = time.perf_counter()
    result = funnels_refresh()
    return time.perf_counter() - started, result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="the PostgreSQL server (default $DATABASE_URL, else the embedded one)")
    parser.add_argument("--database-name", default="engage_reports_bench", help="its database (dropped first)")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: 1M people, ~10M events, ~1M sends")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=5, help="timed renders per page (after one warm-up)")
    parser.add_argument("--reuse", action="store_true", help="skip loading: time the pages on the data there")
    parser.add_argument("--rebuild", action="store_true", help="with --reuse: rebuild the report rollups first")
    parser.add_argument("--only", default="", help="time only the pages whose label contains this")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    try:
        with backing_services(args.database_url) as services:
            check_loopback(services.database_url)
            # Work the pages enqueue (a segment's aggregates, a funnel's days) goes to this Redis;
            # no worker takes it: the benchmark runs those tasks itself, and times them.
            os.environ.update(services.server_env())
            if "bench" not in args.database_name:
                raise BenchError("the database name must contain 'bench'")
            url = with_database(services.database_url, args.database_name)
            report = LoadReport()
            if not args.reuse:
                url = recreate_database(services.database_url, args.database_name)
                log(f"migrating {database_name(url)}")
                migrate(url)
                setup_django(url)
                report = load(url, seed=args.seed, profiles=int(PROFILES_AT_SCALE_1 * args.scale))
                build_rollups(url, report)
            else:
                migrate(url)  # the report tables may have changed since the data was loaded
                setup_django(url)
                if args.rebuild:
                    build_rollups(url, report)
            rollup_seconds, refresh_seconds, new_events = steady_state(url, seed=args.seed, events=1000)
            segment_seconds, segment_size = segment_aggregates()
            rows, funnel_computes = time_pages(repeat=args.repeat, only=args.only)
            funnel_refresh = time_funnel_refresh() if any("funnel" in row[0] for row in rows) else None
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if report.seconds:
        c = report.counts
        loaded = (
            [
                ["people", fmt_int(c.profiles)],
                ["events", fmt_int(c.events)],
                ["  of which engagement", fmt_int(c.engagement)],
                ["campaign sends (deliveries)", fmt_int(c.sends)],
                ["purchase lines", fmt_int(c.purchases)],
            ]
            if c.profiles
            else []
        )
        print_table(
            f"Workspace (seed {args.seed}, scale {args.scale})",
            [*loaded, *[[f"{name} (s)", f"{seconds:.1f}"] for name, seconds in report.seconds.items()]],
        )
    print_table(
        "Steady state: one rollup run after 1,000 new events, then the refresh of the changed days",
        [
            ["rollup run (s)", f"{rollup_seconds:.2f}"],
            ["refresh (s)", f"{refresh_seconds:.2f}"],
            ["events read", fmt_int(new_events)],
            [f"segment aggregates rebuilt, {fmt_int(segment_size)} members (s)", f"{segment_seconds:.2f}"],
        ],
    )
    print_table(
        f"Page render times (Django test client, median of {args.repeat}; target {TARGET_MS:.0f} ms)",
        rows,
        headers=["page", "median ms", "max ms", "first ms", "KiB", "target"],
    )
    if funnel_computes:
        print_table(
            "The task a funnel's first page enqueues: its days computed and stored (as the worker would, right after)",
            funnel_computes,
            headers=["page", "seconds", "days"],
        )
    if funnel_refresh is not None:
        print_table(
            "Beat's funnel refresh after the pages (every day of the funnels they showed, as on a live workspace)",
            [
                ["funnels", fmt_int(funnel_refresh[1]["funnels"])],
                ["days computed", fmt_int(funnel_refresh[1]["days"])],
                ["seconds", f"{funnel_refresh[0]:.2f}"],
            ],
        )
    return 1 if any(row[-1] == "SLOW" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
