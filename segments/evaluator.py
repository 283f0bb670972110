"""The single-profile check: is this person in segment S right now?

Triggered campaigns call it on every event, so it must stay cheap (target: under 5 ms). It runs
the same compiled definition as the set evaluator (``segments.compiler``) for one profile row, in
"single" mode where every behavioural subquery reads only that person's index entries: one query,
a few index probes, and the two evaluators cannot disagree about what a definition means.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from .compiler import single_profile_query
from .models import Segment


def profile_in_segment(*, profile_id: int, segment: Segment, now: datetime | None = None) -> bool:
    """True if the profile is in the segment as the data stands now. A profile of another
    workspace, or one that no longer exists, is never in it."""
    sql = single_profile_query(segment, profile_id=profile_id, now=now)
    with connection.cursor() as cursor:
        cursor.execute(sql.text, sql.params)
        row = cursor.fetchone()
    return bool(row and row[0])
