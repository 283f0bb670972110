"""Reads: a segment's size and members, computed from the data as it stands (no stored membership)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from profiles.models import Profile

from .compiler import Sql, members_query, q
from .models import LifecycleSettings, Segment

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000

# A set query scans and groups rollup rows for a whole workspace. JIT compilation costs more than it
# saves there (the planner's estimate of the boundary-day recount subplans is pessimistic, which
# triggers JIT: 850 ms compiling a 180 ms query in testing), and the default 4 MB work_mem sends
# the grouping to disk; both are set for the query's transaction only.
_SET_QUERY_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")


def run_set_query(sql: Sql) -> list[tuple[Any, ...]]:
    """Run a query built on ``members_query`` / ``compile_where(mode="set")`` over a whole workspace
    with the settings such queries need (see above), and return its rows."""
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in _SET_QUERY_SETTINGS:
            cursor.execute(setting)
        cursor.execute(sql.text, sql.params)
        return cursor.fetchall()


def segment_size(*, segment: Segment, now: datetime | None = None) -> int:
    """How many profiles are in the segment now: one counting query."""
    rows = run_set_query(q("SELECT count(*) FROM ({}) AS members", members_query(segment, now=now)))
    return int(rows[0][0])


def segment_members(
    *, segment: Segment, after_id: int | None = None, limit: int = DEFAULT_PAGE, now: datetime | None = None
) -> list[int]:
    """Member profile ids in ascending order, after ``after_id`` (keyset pagination: pass the last
    id of a page to get the next one; an empty list is the end)."""
    limit = max(1, min(limit, MAX_PAGE))
    sql = q(
        "SELECT id FROM ({}) AS members WHERE id > {} ORDER BY id LIMIT {}",
        members_query(segment, now=now),
        after_id or 0,
        limit,
    )
    return [row[0] for row in run_set_query(sql)]


def segment_profiles(*, segment: Segment, now: datetime | None = None) -> QuerySet[Profile]:
    """The members as a Profile queryset, for previews and exports (slice it; never count it on a
    big workspace without need). Membership is evaluated when the queryset runs."""
    sql = members_query(segment, now=now)
    # The SQL is compiled from a validated definition with every value passed as a parameter.
    members = RawSQL(sql.text, sql.params)  # noqa: S611
    return Profile.objects.filter(workspace_id=segment.workspace_id, pk__in=members)


def lifecycle_settings_for(*, workspace_id: int) -> LifecycleSettings:
    """The workspace's thresholds, or an unsaved row holding the defaults."""
    return LifecycleSettings.objects.filter(workspace_id=workspace_id).first() or LifecycleSettings(
        workspace_id=workspace_id
    )
