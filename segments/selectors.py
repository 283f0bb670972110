"""Reads: a segment's size and members, computed from the data as it stands (no stored membership),
sizes of draft definitions (cached briefly), sizes over time, and what a workspace's data offers the
builder (event names, property keys, custom attributes, products)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from profiles.models import Profile

from .compiler import Sql, candidates_probe, compile_where, count_query, members_query, q
from .models import LifecycleSettings, Segment, SegmentSizeSnapshot

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000

# A set query scans and groups rollup rows for a whole workspace. JIT compilation costs more than it
# saves there (the planner's estimate of the boundary-day recount subplans is pessimistic, which
# triggers JIT: 850 ms compiling a 180 ms query in testing), and the default 4 MB work_mem sends
# the grouping to disk; both are set for the query's transaction only.
SET_QUERY_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")


def run_set_query(sql: Sql, *, timeout_ms: int | None = None) -> list[tuple[Any, ...]]:
    """Run a query built on ``members_query`` / ``compile_where(mode="set")`` over a whole workspace
    with the settings such queries need (see above), and return its rows. With ``timeout_ms``, a
    query running longer is cancelled (``django.db.OperationalError``)."""
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in SET_QUERY_SETTINGS:
            cursor.execute(setting)
        if timeout_ms is not None:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{int(timeout_ms)}ms"])
        cursor.execute(sql.text, sql.params)
        return cursor.fetchall()


def segment_size(*, segment: Segment, now: datetime | None = None) -> int:
    """How many profiles are in the segment now: one counting query."""
    sql = size_query(segment.definition, workspace_id=segment.workspace_id, now=now, segment_id=segment.pk)
    return int(run_set_query(sql)[0][0])


# Reading the people an OR of behaviours leaves by primary key costs 2-5 µs each on the benchmark's
# machine, a pass over the profiles 0.3-0.5 µs per profile: by key while the planner expects the
# behaviour sets to hold at most this share of the table's rows (an overestimate of the people: an
# "at least once" set has a row per person and day).
CANDIDATES_BY_KEY_MAX_SHARE = 0.1


def size_query(definition: Any, *, workspace_id: int, now: datetime | None, segment_id: int | None) -> Sql:
    """``count_query``, reading an OR of behaviours' candidates by key only when the planner expects
    them to be few (one ``EXPLAIN`` of their union, without running it). An OR whose sets hold
    most of the workspace ("US and active in six months, or Germany and ever viewed a product")
    is counted in one pass over the profiles instead, which is then twice as fast."""
    now = now or timezone.now()
    probe = candidates_probe(definition, workspace_id=workspace_id, now=now, segment_id=segment_id)
    by_key = True
    if probe is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'profiles_profile'::regclass")
            profiles = float(cursor.fetchone()[0])
            cursor.execute("EXPLAIN (FORMAT JSON) " + probe.text, probe.params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        # reltuples is -1 until the table is first analysed: no basis to prefer the pass.
        by_key = profiles < 0 or float(plan[0]["Plan"]["Plan Rows"]) <= CANDIDATES_BY_KEY_MAX_SHARE * profiles
    return count_query(definition, workspace_id=workspace_id, now=now, segment_id=segment_id, candidates_by_key=by_key)


def segment_members(
    *, segment: Segment, after_id: int | None = None, limit: int = DEFAULT_PAGE, now: datetime | None = None
) -> list[int]:
    """Member profile ids in ascending order, after ``after_id`` (keyset pagination: pass the last
    id of a page to get the next one; an empty list is the end)."""
    return [row[0] for row in segment_member_rows(segment=segment, after_id=after_id, limit=limit, now=now)]


# Profile columns a member page or export may ask for (they are interpolated into SQL, so only these).
MEMBER_COLUMNS = (
    "id", "external_id", "email", "phone", "first_name", "last_name", "gender", "date_of_birth", "language",
    "country", "region", "city", "time_zone", "platform", "app_version", "first_seen", "last_seen",
    "session_count", "email_subscription", "push_subscription", "sms_subscription", "created_at",
)  # fmt: skip


def segment_member_rows(
    *,
    segment: Segment,
    columns: Sequence[str] = ("id",),
    after_id: int | None = None,
    limit: int = DEFAULT_PAGE,
    now: datetime | None = None,
) -> list[tuple[Any, ...]]:
    """A keyset page of members in id order: ``columns`` of each member whose id is above
    ``after_id`` (pass the last id of a page to get the next; fewer rows than ``limit`` is the end).
    The first column must be ``id``. ``p.id > after_id`` sits in the WHERE clause beside the
    segment's predicate, so each page starts where the last ended on the (workspace, id) index."""
    unknown = [column for column in columns if column not in MEMBER_COLUMNS]
    if unknown or not columns or columns[0] != "id":
        raise ValueError(f"member columns must start with id and come from MEMBER_COLUMNS; got {list(columns)}")
    limit = max(1, min(limit, MAX_PAGE))
    where = compile_where(
        segment.definition, workspace_id=segment.workspace_id, now=now, segment_id=segment.pk, definite=False
    )
    select = ", ".join(f"p.{column}" for column in columns)
    # Column names come from MEMBER_COLUMNS only (checked above); values are parameters.
    template = f"SELECT {select} FROM profiles_profile p WHERE p.workspace_id = {{}} AND p.id > {{}} AND {{}}"  # noqa: S608
    sql = q(
        template + " ORDER BY p.id LIMIT {}",
        segment.workspace_id,
        after_id or 0,
        where,
        limit,
    )
    return run_set_query(sql)


def segment_profiles(*, segment: Segment, now: datetime | None = None) -> QuerySet[Profile]:
    """The members as a Profile queryset, for previews and exports (slice it; never count it on a
    big workspace without need). Membership is evaluated when the queryset runs."""
    sql = members_query(segment, now=now)
    # The SQL is compiled from a validated definition with every value passed as a parameter.
    members = RawSQL(sql.text, sql.params)  # noqa: S611
    return Profile.objects.filter(workspace_id=segment.workspace_id, pk__in=members)


# --- sizes of drafts, cached briefly ---------------------------------------------------------------

SIZE_CACHE_SECONDS = 30


@dataclass(frozen=True)
class SizeEstimate:
    size: int
    computed_at: datetime
    took_ms: float  # how long the count took when it was computed

    def age_seconds(self, now: datetime | None = None) -> float:
        return max(0.0, ((now or timezone.now()) - self.computed_at).total_seconds())


def definition_size(
    *,
    workspace_id: int,
    definition: Any,
    segment_id: int | None = None,
    max_age: int = SIZE_CACHE_SECONDS,
    timeout_ms: int | None = None,
) -> SizeEstimate:
    """How many profiles a definition (saved or a draft) matches, reusing a count computed at most
    ``max_age`` seconds ago for the same workspace and definition (0: always count now).

    The builder asks again on every pause in typing and every user editing a segment asks the same
    question; a 30-second-old answer, shown with its age, is worth not rescanning a million
    profiles for. The definition must be valid (``segments.services.segment_definition_check``)."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    key = f"segments:size:{workspace_id}:{segment_id or 0}:{digest}"
    if max_age > 0:
        cached = cache.get(key)
        if isinstance(cached, SizeEstimate) and cached.age_seconds() <= max_age:
            return cached
    started = time.perf_counter()
    computed_at = timezone.now()
    sql = size_query(definition, workspace_id=workspace_id, now=computed_at, segment_id=segment_id)
    rows = run_set_query(sql, timeout_ms=timeout_ms)
    estimate = SizeEstimate(int(rows[0][0]), computed_at, (time.perf_counter() - started) * 1000)
    cache.set(key, estimate, timeout=max(SIZE_CACHE_SECONDS, max_age))
    return estimate


def definition_preview(
    *,
    workspace_id: int,
    definition: Any,
    segment_id: int | None = None,
    limit: int = 20,
    timeout_ms: int | None = None,
) -> list[Profile]:
    """The first ``limit`` matching profiles in id order (newest ids last), for the builder."""
    where = compile_where(definition, workspace_id=workspace_id, segment_id=segment_id, definite=False)
    ids = [
        row[0]
        for row in run_set_query(
            q(
                "SELECT p.id FROM profiles_profile p WHERE p.workspace_id = {} AND {} ORDER BY p.id LIMIT {}",
                workspace_id,
                where,
                limit,
            ),
            timeout_ms=timeout_ms,
        )
    ]
    return list(Profile.objects.filter(pk__in=ids).order_by("pk"))


def segment_size_history(*, segment: Segment, days: int = 90, today: date | None = None) -> list[SegmentSizeSnapshot]:
    """The daily sizes of the last ``days`` days, oldest first."""
    since = (today or timezone.now().date()) - timedelta(days=days)
    return list(SegmentSizeSnapshot.objects.filter(segment=segment, date__gt=since).order_by("date"))


# --- what the workspace's data offers the builder ---------------------------------------------------

SUGGESTION_LIMIT = 200
PROPERTY_SAMPLE_DAYS = 100  # rollup rows (profile-days) whose events are sampled for property keys
ATTRIBUTE_SAMPLE_PROFILES = 1000


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def workspace_event_names(*, workspace_id: int, prefix: str = "", limit: int = SUGGESTION_LIMIT) -> list[str]:
    """Distinct event names in the workspace (from the rollup), alphabetically, starting with
    ``prefix`` (case-sensitive, as names are). A skip scan: each step is one probe of the rollup's
    (workspace, name, day) index for the next name, so it costs one probe per name returned, not a
    pass over millions of rows."""
    rows = _fetch(
        """
        WITH RECURSIVE names(name) AS (
            (SELECT r.name FROM segments_eventdailycount r
              WHERE r.workspace_id = %s AND r.name >= %s ORDER BY r.name LIMIT 1)
            UNION ALL
            SELECT (SELECT r.name FROM segments_eventdailycount r
                     WHERE r.workspace_id = %s AND r.name > n.name ORDER BY r.name LIMIT 1)
              FROM names n
             WHERE n.name IS NOT NULL AND starts_with(n.name, %s)
        )
        SELECT name FROM names WHERE name IS NOT NULL AND starts_with(name, %s) LIMIT %s
        """,
        [workspace_id, prefix, workspace_id, prefix, prefix, limit],
    )
    return [row[0] for row in rows]


def workspace_event_properties(*, workspace_id: int, event: str, limit: int = SUGGESTION_LIMIT) -> list[dict[str, Any]]:
    """Property keys of recent ``event`` events with their most common JSON type and how often they
    were seen, sampled from at most three events on each of the ``PROPERTY_SAMPLE_DAYS`` most recent
    profile-days in the rollup (each read through the profile's (profile, timestamp) index)."""
    rows = _fetch(
        """
        SELECT kv.key, jsonb_typeof(kv.value) AS type, count(*)
          FROM (SELECT r.profile_id, r.day FROM segments_eventdailycount r
                 WHERE r.workspace_id = %s AND r.name = %s ORDER BY r.day DESC LIMIT %s) AS d
         CROSS JOIN LATERAL (
               SELECT e.properties FROM profiles_event e
                WHERE e.profile_id = d.profile_id AND e.name = %s
                  AND e.timestamp >= (d.day::timestamp AT TIME ZONE 'UTC')
                  AND e.timestamp < ((d.day + 1)::timestamp AT TIME ZONE 'UTC')
                LIMIT 3) AS e
         CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(e.properties) = 'object'
                                            THEN e.properties ELSE '{}'::jsonb END) AS kv
         GROUP BY 1, 2
         ORDER BY 3 DESC, 1
        """,
        [workspace_id, event, PROPERTY_SAMPLE_DAYS, event],
    )
    return _keys_with_types(rows, limit)


def workspace_custom_attributes(*, workspace_id: int, limit: int = SUGGESTION_LIMIT) -> list[dict[str, Any]]:
    """Custom attribute names with their most common JSON type, sampled from the workspace's
    ``ATTRIBUTE_SAMPLE_PROFILES`` newest profiles (read backwards on the (workspace, id) index)."""
    rows = _fetch(
        """
        SELECT kv.key, jsonb_typeof(kv.value), count(*)
          FROM (SELECT p.custom_attributes FROM profiles_profile p
                 WHERE p.workspace_id = %s ORDER BY p.id DESC LIMIT %s) AS p
         CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(p.custom_attributes) = 'object'
                                            THEN p.custom_attributes ELSE '{}'::jsonb END) AS kv
         GROUP BY 1, 2
         ORDER BY 3 DESC, 1
        """,
        [workspace_id, ATTRIBUTE_SAMPLE_PROFILES],
    )
    return _keys_with_types(rows, limit)


# JSON types as the builder's data types.
_JSON_TYPES = {"string": "string", "number": "number", "boolean": "boolean", "array": "array"}


def _keys_with_types(rows: list[tuple[Any, ...]], limit: int) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for key, json_type, seen in rows:  # most common type first, per key
        entry = found.setdefault(key, {"name": key, "data_type": _JSON_TYPES.get(json_type, "string"), "seen": 0})
        entry["seen"] += int(seen)
    return sorted(found.values(), key=lambda entry: (-entry["seen"], entry["name"]))[:limit]


def workspace_products(*, workspace_id: int, prefix: str = "", limit: int = SUGGESTION_LIMIT) -> list[str]:
    """Distinct purchased product ids starting with ``prefix``: a skip scan of the (workspace,
    product) index, one probe per product returned."""
    rows = _fetch(
        """
        WITH RECURSIVE products(product_id) AS (
            (SELECT u.product_id FROM profiles_purchase u
              WHERE u.workspace_id = %s AND u.product_id >= %s ORDER BY u.product_id LIMIT 1)
            UNION ALL
            SELECT (SELECT u.product_id FROM profiles_purchase u
                     WHERE u.workspace_id = %s AND u.product_id > n.product_id ORDER BY u.product_id LIMIT 1)
              FROM products n
             WHERE n.product_id IS NOT NULL AND starts_with(n.product_id, %s)
        )
        SELECT product_id FROM products WHERE product_id IS NOT NULL AND starts_with(product_id, %s) LIMIT %s
        """,
        [workspace_id, prefix, workspace_id, prefix, prefix, limit],
    )
    return [row[0] for row in rows]


def lifecycle_settings_for(*, workspace_id: int) -> LifecycleSettings:
    """The workspace's thresholds, or an unsaved row holding the defaults."""
    return LifecycleSettings.objects.filter(workspace_id=workspace_id).first() or LifecycleSettings(
        workspace_id=workspace_id
    )
