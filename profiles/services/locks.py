"""Per-person advisory locks.

Every write that may create or merge a profile takes these transaction-scoped locks, keyed on the
identifiers involved (external ids and anonymous ids), before it reads. Two requests about the same
person then run one after the other: neither creates a duplicate profile nor merges half of one.
Keys are taken in sorted order so two transactions never wait on each other in a cycle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.db import connection


def identity_lock_key(workspace_id: int, kind: str, value: str) -> int:
    digest = hashlib.blake2b(f"{workspace_id}:{kind}:{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_statement(
    workspace_id: int, *, external_ids: Iterable[str] = (), anonymous_ids: Iterable[str] = ()
) -> tuple[str, list[Any]] | None:
    """The statement taking these identifiers' advisory locks (None when there are none), for a
    caller that sends it together with others."""
    keys = {identity_lock_key(workspace_id, "user", value) for value in external_ids}
    keys |= {identity_lock_key(workspace_id, "anon", value) for value in anonymous_ids}
    if not keys:
        return None
    return (
        "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY 1) AS keys",
        [sorted(keys)],
    )


def lock_identities(workspace_id: int, *, external_ids: Iterable[str] = (), anonymous_ids: Iterable[str] = ()) -> None:
    """Take the advisory locks for these identifiers until the current transaction ends."""
    statement = lock_statement(workspace_id, external_ids=external_ids, anonymous_ids=anonymous_ids)
    if statement is None:
        return
    with connection.cursor() as cursor:
        cursor.execute(*statement)
