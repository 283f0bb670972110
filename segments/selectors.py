"""Reads: a segment's size and members, computed from the data as it stands (no stored membership)."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from profiles.models import Profile

from .compiler import members_query, q
from .models import LifecycleSettings, Segment

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000


def segment_size(*, segment: Segment, now: datetime | None = None) -> int:
    """How many profiles are in the segment now: one counting query."""
    sql = q("SELECT count(*) FROM ({}) AS members", members_query(segment, now=now))
    with connection.cursor() as cursor:
        cursor.execute(sql.text, sql.params)
        row = cursor.fetchone()
    return int(row[0]) if row else 0


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
    with connection.cursor() as cursor:
        cursor.execute(sql.text, sql.params)
        return [row[0] for row in cursor.fetchall()]


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
