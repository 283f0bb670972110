"""Profiles as rows, and merging one person's anonymous profile into their known one.

The intake works on plain row dicts (one per profile, keyed by column name) rather than model
instances: a batch touches up to hundreds of profiles and this is its hot path. The functions here
load, combine and write those rows in set-based statements.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from ..models import AnonymousId, Profile, ProfileMerge
from ..signals import profile_merged
from .locks import lock_identities
from .sql import Statement, run_together

ProfileRow = dict[str, Any]

_FIELDS = [f for f in Profile._meta.concrete_fields]
PROFILE_COLUMNS: list[str] = [str(f.column) for f in _FIELDS]
# Columns the intake may change. id, workspace, random bucket and created_at are fixed at creation.
MUTABLE_COLUMNS: list[str] = [
    c for c in PROFILE_COLUMNS if c not in {"id", "workspace_id", "random_bucket", "created_at", "updated_at"}
]
_SQL_TYPES = {
    "CharField": "text",
    "TextField": "text",
    "DateTimeField": "timestamptz",
    "DateField": "date",
    "FloatField": "double precision",
    "PositiveIntegerField": "integer",
    "PositiveSmallIntegerField": "integer",
    "GenericIPAddressField": "inet",
    "JSONField": "jsonb",
    "BigAutoField": "bigint",
    "ForeignKey": "bigint",
}
COLUMN_TYPES: dict[str, str] = {str(f.column): _SQL_TYPES[f.get_internal_type()] for f in _FIELDS}
SUBSCRIPTION_CHANNELS = ("email", "push", "sms")
# First-touch attribution travels as a block: the earliest profile that has any of it keeps all of it.
UTM_COLUMNS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    """JSON for a query parameter. orjson is several times faster than the json module on the
    intake's rows; the json module remains for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except TypeError:
        return json.dumps(value, default=_json_default, separators=(",", ":"))


def _decode_row(columns: list[str], values: Iterable[Any]) -> ProfileRow:
    row = dict(zip(columns, values, strict=True))
    # Django's psycopg setup hands jsonb back as text so JSONField can decode it itself.
    if isinstance(row.get("custom_attributes"), str):
        row["custom_attributes"] = json.loads(row["custom_attributes"])
    if row.get("last_ip") is not None:
        row["last_ip"] = str(row["last_ip"])
    return row


def load_statements(
    *, workspace_id: int, external_ids: Iterable[str], anonymous_ids: Iterable[str]
) -> list[Statement | None]:
    """The two statements that lock and load the profiles a batch's identifiers point at: the
    anonymous ids' owners, and the profiles (locked ``FOR NO KEY UPDATE`` in id order) those and the
    external ids point at. ``loaded_profiles`` reads their results. Callers send them after the
    identity advisory locks (``locks.lock_statement``); the row locks only guard against writers
    that reach the same profile through another identifier."""
    external_list = sorted(set(external_ids))
    anonymous_list = sorted(set(anonymous_ids))
    if not external_list and not anonymous_list:
        return [None, None]
    # Each identifier is looked up on its own, by equality on a unique index. An ``= ANY(array)``
    # next to ``workspace_id = ...`` lets the planner scan the whole workspace instead whenever its
    # statistics lag behind the table (a fresh or fast-growing workspace): measured, 5 ms instead of
    # 0.2 ms a batch once a few hundred thousand events were in.
    anonymous = (
        (
            "SELECT x.v, x.p FROM (SELECT k.v, (SELECT a.profile_id FROM profiles_anonymousid a"
            " WHERE a.workspace_id = %s AND a.anonymous_id = k.v) AS p FROM unnest(%s::text[]) AS k(v)) AS x"
            " WHERE x.p IS NOT NULL",
            [workspace_id, anonymous_list],
        )
        if anonymous_list
        else None
    )
    profiles = (
        f"SELECT {', '.join(PROFILE_COLUMNS)} FROM profiles_profile "  # noqa: S608 (column names, not input)
        "WHERE id = ANY(ARRAY("
        "SELECT (SELECT p.id FROM profiles_profile p WHERE p.workspace_id = %s AND p.external_id = k.v)"
        " FROM unnest(%s::text[]) AS k(v)"
        " UNION ALL SELECT (SELECT a.profile_id FROM profiles_anonymousid a"
        " WHERE a.workspace_id = %s AND a.anonymous_id = k.v) FROM unnest(%s::text[]) AS k(v)))"
        # NO KEY UPDATE is the lock the UPDATE takes anyway; unlike FOR UPDATE it does not make
        # other batches' event inserts wait for it in their foreign-key checks on the profile.
        " ORDER BY id FOR NO KEY UPDATE",
        [workspace_id, external_list, workspace_id, anonymous_list],
    )
    return [anonymous, profiles]


def loaded_profiles(
    anonymous_rows: list[tuple[Any, ...]], profile_rows: list[tuple[Any, ...]]
) -> tuple[dict[int, ProfileRow], dict[str, int]]:
    """``(profiles by id, profile id by anonymous id)`` from the results of ``load_statements``."""
    anon_map: dict[str, int] = dict(anonymous_rows)
    profiles = {row["id"]: row for row in (_decode_row(PROFILE_COLUMNS, values) for values in profile_rows)}
    for row in profiles.values():
        # What the row held when loaded: save_profiles writes only the columns that changed.
        row["_loaded"] = {column: row[column] for column in MUTABLE_COLUMNS}
    return profiles, anon_map


def allocate_profile_ids(cursor: CursorWrapper, count: int) -> list[int]:
    """Reserve ``count`` profile ids from the table's sequence (gaps are harmless)."""
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence('profiles_profile', 'id')) FROM generate_series(1, %s)",
        [max(count, 1)],
    )
    return sorted((value for (value,) in cursor.fetchall()), reverse=True)


# Column defaults of a new profile (custom attributes, the one mutable default, is set per row).
_DEFAULTS: ProfileRow = {str(f.column): f.get_default() for f in _FIELDS}


def new_profile_row(profile_id: int, *, workspace_id: int, external_id: str | None) -> ProfileRow:
    """A profile that exists only in memory until ``save_profiles`` inserts it."""
    row: ProfileRow = {**_DEFAULTS, "custom_attributes": {}}
    now = timezone.now()
    row.update(
        id=profile_id,
        workspace_id=workspace_id,
        external_id=external_id,
        random_bucket=random.randrange(10000),
        created_at=now,
        updated_at=now,
        _new=True,
    )
    return row


def save_statements(rows: Iterable[ProfileRow]) -> list[Statement]:
    """The statements that insert the new rows and write the changed columns of the others (one
    statement each), for a caller that sends them with others. The rows count as saved from here on."""
    statements: list[Statement] = []
    inserts: list[ProfileRow] = []
    updates: list[ProfileRow] = []
    for row in rows:
        (inserts if row.get("_new") else updates).append(row)
    if inserts:
        record = ", ".join(f"{c} {COLUMN_TYPES[c]}" for c in PROFILE_COLUMNS)
        statements.append(
            (
                f"INSERT INTO profiles_profile ({', '.join(PROFILE_COLUMNS)}) "  # noqa: S608 (column names only)
                f"SELECT * FROM jsonb_to_recordset(%s::jsonb) AS x({record})",
                [dumps([{c: row[c] for c in PROFILE_COLUMNS} for row in inserts])],
            )
        )
        for row in inserts:
            del row["_new"]
    # Most events change a column or two (last seen, a session): send and set only the columns
    # some row changed, and skip rows nothing changed on.
    changed_rows: list[ProfileRow] = []
    changed_columns: set[str] = set()
    for row in updates:
        loaded = row.get("_loaded")
        row_changes = {c for c in MUTABLE_COLUMNS if loaded is None or row[c] != loaded[c]}
        if row_changes:
            changed_rows.append(row)
            changed_columns |= row_changes
    if changed_rows:
        columns = [c for c in MUTABLE_COLUMNS if c in changed_columns]
        assignments = ", ".join(f"{c} = x.{c}" for c in columns)
        record = ", ".join(f"{c} {COLUMN_TYPES[c]}" for c in ("id", *columns))
        statements.append(
            (
                f"UPDATE profiles_profile AS p SET {assignments}, updated_at = now() "  # noqa: S608 (column names only)
                f"FROM jsonb_to_recordset(%s::jsonb) AS x({record}) WHERE p.id = x.id",
                [dumps([{c: row[c] for c in ("id", *columns)} for row in changed_rows])],
            )
        )
        for row in changed_rows:
            row["_loaded"] = {column: row[column] for column in MUTABLE_COLUMNS}
    return statements


def save_profiles(cursor: CursorWrapper, rows: Iterable[ProfileRow]) -> None:
    """Insert the new rows and write every changed column of the others, in one round trip."""
    statements = save_statements(rows)
    if statements:
        run_together(cursor, list(statements))


def combine_rows(target: ProfileRow, source: ProfileRow) -> None:
    """Fold ``source`` (the anonymous profile) into ``target`` (the known one), in place.

    The known profile's values win on conflict and the anonymous one fills the gaps; activity adds
    up (sessions) or spans both (first seen is the earlier, last seen the later). Two exceptions,
    on purpose: a subscription state follows the most recent explicit change, because consent is
    the person's latest word wherever it was given; and first-touch attribution comes from
    whichever profile was seen first, because that is what first touch means.
    """
    for column in MUTABLE_COLUMNS:
        if column in ("external_id", "custom_attributes", "session_count", "first_seen", "last_seen"):
            continue
        if column.endswith("_subscription") or column.endswith("_subscription_changed_at") or column in UTM_COLUMNS:
            continue
        if target[column] in (None, "") and source[column] not in (None, ""):
            target[column] = source[column]
    target["custom_attributes"] = {**source["custom_attributes"], **target["custom_attributes"]}
    target["session_count"] = target["session_count"] + source["session_count"]
    seen_first = [v for v in (target["first_seen"], source["first_seen"]) if v is not None]
    seen_last = [v for v in (target["last_seen"], source["last_seen"]) if v is not None]
    target["first_seen"] = min(seen_first) if seen_first else None
    target["last_seen"] = max(seen_last) if seen_last else None
    for channel in SUBSCRIPTION_CHANNELS:
        state, changed = f"{channel}_subscription", f"{channel}_subscription_changed_at"
        if source[changed] is not None and (target[changed] is None or source[changed] > target[changed]):
            target[state], target[changed] = source[state], source[changed]
    source_has_utm = any(source[c] for c in UTM_COLUMNS)
    target_has_utm = any(target[c] for c in UTM_COLUMNS)
    source_is_earlier = source["first_seen"] is not None and (
        target["first_seen"] is None or source["first_seen"] < target["first_seen"]
    )
    if source_has_utm and (not target_has_utm or source_is_earlier):
        for column in UTM_COLUMNS:
            target[column] = source[column]


def merge_rows(
    cursor: CursorWrapper,
    *,
    workspace_id: int,
    source: ProfileRow,
    target: ProfileRow,
    reason: str,
    actor: str,
    message_id: str = "",
) -> None:
    """Move everything of ``source`` onto ``target``, record the merge and delete ``source``.

    ``target`` is updated in memory only; the caller writes it with ``save_profiles``. Runs inside
    the caller's transaction, with both profiles locked.
    """
    source_id, target_id = source["id"], target["id"]
    if source.get("_new"):
        # Created earlier in this same batch and never written: nothing to move or record.
        combine_rows(target, source)
        return
    moved: dict[str, int] = {}
    for table in ("profiles_event", "profiles_purchase", "profiles_device", "profiles_anonymousid"):
        cursor.execute(f"UPDATE {table} SET profile_id = %s WHERE profile_id = %s", [target_id, source_id])  # noqa: S608
        moved[table.removeprefix("profiles_")] = cursor.rowcount
    # Earlier merges into the anonymous profile now belong to the known one's history.
    cursor.execute(
        "UPDATE profiles_profilemerge SET into_profile_id = %s WHERE into_profile_id = %s", [target_id, source_id]
    )
    combine_rows(target, source)
    cursor.execute(
        "INSERT INTO profiles_profilemerge "
        "(workspace_id, into_profile_id, merged_profile_id, merged_snapshot, reason, actor, message_id, moved,"
        " created_at)"
        " VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, now())",
        [workspace_id, target_id, source_id, dumps(source), reason, actor[:255], message_id, dumps(moved)],
    )
    profile_merged.send(sender=Profile, workspace_id=workspace_id, source_id=source_id, target_id=target_id)
    cursor.execute("DELETE FROM profiles_profile WHERE id = %s", [source_id])


def profile_merge(*, source: Profile, target: Profile, reason: str, actor: str) -> ProfileMerge:
    """Merge ``source`` into ``target`` (for the API and admin). Refuses to merge two known people."""
    if source.workspace_id != target.workspace_id:
        raise ValueError("profiles of different workspaces cannot be merged")
    if source.pk == target.pk:
        raise ValueError("a profile cannot be merged into itself")
    if source.external_id and target.external_id:
        raise ValueError(
            f"both profiles are known users ({source.external_id!r}, {target.external_id!r}); "
            "two known users are never merged"
        )
    with transaction.atomic():
        anonymous = list(
            AnonymousId.objects.filter(profile_id__in=[source.pk, target.pk]).values_list("anonymous_id", flat=True)
        )
        lock_identities(
            source.workspace_id,
            external_ids=[x for x in (source.external_id, target.external_id) if x],
            anonymous_ids=anonymous,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(PROFILE_COLUMNS)} FROM profiles_profile "  # noqa: S608
                "WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                [[source.pk, target.pk]],
            )
            rows = {r["id"]: r for r in (_decode_row(PROFILE_COLUMNS, v) for v in cursor.fetchall())}
            if len(rows) != 2:
                raise ValueError("one of the profiles no longer exists")
            src, dst = rows[source.pk], rows[target.pk]
            if src["external_id"] and not dst["external_id"]:
                src, dst = dst, src  # the known profile survives
            merge_rows(cursor, workspace_id=source.workspace_id, source=src, target=dst, reason=reason, actor=actor)
            save_profiles(cursor, [dst])
    return ProfileMerge.objects.filter(into_profile_id=dst["id"], merged_profile_id=src["id"]).latest("created_at")
