"""Several SQL statements in one round trip.

The intake's batch is a handful of set-based statements; sent one by one, each costs a round trip
and, on a busy machine, a wait for the scheduler on both sides. ``run_together`` sends them as one
simple-protocol query string (client-side binding, as Django's psycopg cursors do) and reads one
result per statement. PostgreSQL still runs them one after the other, each with a fresh snapshot
under READ COMMITTED, and an error in one aborts the transaction the caller is in.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.utils import CursorWrapper

Statement = tuple[str, list[Any]]


def run_together(cursor: CursorWrapper, statements: list[Statement | None]) -> list[list[tuple[Any, ...]]]:
    """Execute the statements (``None`` entries are skipped, and answered ``[]``) in one round trip;
    return each one's rows (``[]`` for a statement that returns none), in order."""
    present = [statement for statement in statements if statement is not None]
    if not present:
        return [[] for _ in statements]
    cursor.execute("; ".join(sql for sql, _ in present), [param for _, params in present for param in params])
    results: list[list[tuple[Any, ...]]] = []
    for index, _ in enumerate(present):
        if index:
            cursor.nextset()
        results.append(cursor.fetchall() if cursor.description is not None else [])
    answers = iter(results)
    return [next(answers) if statement is not None else [] for statement in statements]
