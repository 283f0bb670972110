"""A person's rights over their data: erasure (with suppression) and export.

Erasure removes the profile and everything hanging off it, set-based, and keeps only salted
hashes of the person's identifiers (``Suppression``), so late events from an SDK's retry queue
and re-imports of an old CRM export do not bring them back. The intake and the CSV import ask
``suppressed_identifiers`` once per batch; the REST API refuses to re-create a suppressed id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.deletion import get_candidate_relations_to_delete

from ..models import (
    AnonymousId,
    Device,
    Event,
    Profile,
    ProfileMerge,
    Purchase,
    Suppression,
    Workspace,
)
from ..traits import normalize_phone
from .locks import lock_identities

Kind = Suppression.Kind


class SuppressedIdentifierError(Exception):
    """The identifier belongs to a person who was deleted; it cannot be used to create a profile."""

    def __init__(self, kind: str, value: str) -> None:
        self.kind = kind
        self.value = value
        super().__init__(
            f"{kind} {value!r} belongs to a person who was deleted; "
            "their identifiers are suppressed and cannot be used to create a profile again"
        )


def _normalized(kind: str, value: str) -> str:
    # Emails and phones are hashed in the form profiles store them, so "Ada@Example.com " and
    # "ada@example.com" suppress alike. Ids are opaque and case-sensitive: hashed as given.
    if kind == Kind.EMAIL:
        return value.strip().lower()
    if kind == Kind.PHONE:
        return normalize_phone(value) or value.strip()
    return value


def suppression_hash(*, workspace: Workspace | str, kind: str, value: str) -> str:
    """The hex SHA-256 of ``"<salt>:<kind>:<value>"``, the form ``Suppression`` rows keep.

    ``workspace`` is the workspace or its ``suppression_salt``. The construction is plain salted
    SHA-256 (not HMAC) on purpose: PostgreSQL computes the same digest with its built-in
    ``sha256()``, which lets ``suppressed_identifiers`` check a batch in one query.
    """
    if kind not in Kind.values:
        raise ValueError(f"kind must be one of {', '.join(Kind.values)}; got {kind!r}")
    salt = workspace.suppression_salt if isinstance(workspace, Workspace) else workspace
    return hashlib.sha256(f"{salt}:{kind}:{_normalized(kind, value)}".encode()).hexdigest()


def suppressed_identifiers(
    *, workspace_id: int, external_ids: Iterable[str], anonymous_ids: Iterable[str]
) -> tuple[set[str], set[str]]:
    """Which of these external ids and anonymous ids belong to deleted people: ``(external, anonymous)``.

    One query whatever the batch size: the digests are computed in SQL with the workspace's salt,
    and matched through the ``(workspace, kind, identifier_hash)`` unique index.
    """
    external = sorted({value for value in external_ids if value})
    anonymous = sorted({value for value in anonymous_ids if value})
    if not external and not anonymous:
        return set(), set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT c.kind, c.value
            FROM (
                SELECT %s AS kind, unnest(%s::text[]) AS value
                UNION ALL
                SELECT %s AS kind, unnest(%s::text[]) AS value
            ) AS c
            JOIN {Workspace._meta.db_table} AS w ON w.id = %s
            JOIN {Suppression._meta.db_table} AS s
              ON s.workspace_id = w.id
             AND s.kind = c.kind
             AND s.identifier_hash = encode(sha256(convert_to(w.suppression_salt || ':' || c.kind || ':' || c.value,
                                                              'UTF8')), 'hex')
            """,  # noqa: S608 (table names from model meta, values are parameters)
            [Kind.EXTERNAL_ID.value, external, Kind.ANONYMOUS_ID.value, anonymous, workspace_id],
        )
        rows = cursor.fetchall()
    return (
        {value for kind, value in rows if kind == Kind.EXTERNAL_ID},
        {value for kind, value in rows if kind == Kind.ANONYMOUS_ID},
    )


def suppression_add(*, workspace: Workspace, identifiers: Iterable[tuple[str, str]]) -> int:
    """Record ``(kind, value)`` pairs as suppressed (empty values are skipped; recording one twice
    is harmless). Returns how many distinct identifiers the call covered."""
    hashes = {
        (kind, suppression_hash(workspace=workspace, kind=kind, value=value)) for kind, value in identifiers if value
    }
    Suppression.objects.bulk_create(
        [Suppression(workspace=workspace, kind=kind, identifier_hash=digest) for kind, digest in sorted(hashes)],
        ignore_conflicts=True,
    )
    return len(hashes)


# --- Erasure ---------------------------------------------------------------------------------


@dataclass
class DeletionResult:
    """How many rows of each kind went, and how many identifiers are now suppressed."""

    profiles: int = 0
    events: int = 0
    purchases: int = 0
    devices: int = 0
    anonymous_ids: int = 0
    merges: int = 0
    suppressed_identifiers: int = 0
    other: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _raw_delete(table: str, where: str, params: list[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {where}", params)  # noqa: S608 (table from model meta)
        return cursor.rowcount


def _delete_referenced(model: type[models.Model], rows: Q, *, skip: set[type[models.Model]]) -> dict[str, int]:
    """Delete, through the ORM, the few ``rows`` of ``model`` that other tables point at.

    Raw deletes skip Django's collector, and Django's foreign keys are deferred constraints, so a
    row elsewhere (a delivery pointing at its trigger event or at a device, say) would fail the
    commit. Those rows go through the collector, which applies each relation's ``on_delete``; the
    rest (nearly all of a history) are then deleted raw. Returns ``{model label: count}``.
    """
    referenced = []
    relation: Any
    for relation in get_candidate_relations_to_delete(model._meta):
        related: Any = relation.related_model
        if related in skip:
            continue
        referenced.append(Exists(related._base_manager.filter(**{relation.field.name: OuterRef("pk")})))
    if not referenced:
        return {}
    condition = Q(referenced[0])
    for exists in referenced[1:]:
        condition |= Q(exists)
    _total, per_model = model._base_manager.filter(rows).filter(condition).delete()
    return {label.lower(): count for label, count in per_model.items() if count}


def profile_delete(*, profile: Profile) -> DeletionResult:
    """Erase a person: their profile, events, purchases, devices, anonymous ids and the merge
    records into it; then suppress their external id, anonymous ids, email and phone (and those a
    merged-away profile had, taken from the merge snapshots).

    Runs in one transaction holding the person's identity locks, so an intake batch or API call
    about them waits and then sees them suppressed. The big tables go with raw ``DELETE ... WHERE
    profile_id = %s`` statements (an ORM delete would load every event to cascade); the profile row
    itself goes through the ORM so that other apps' relations to it cascade as they declare.
    Returns zero counts if the profile is already gone.
    """
    result = DeletionResult()
    workspace = Workspace.objects.get(pk=profile.workspace_id)
    with transaction.atomic():
        # Locks are taken in one sorted call (two calls could deadlock against the intake, which
        # locks a user's ids together); an anonymous id linked after this read is locked below.
        anonymous = set(AnonymousId.objects.filter(profile_id=profile.pk).values_list("anonymous_id", flat=True))
        external = [profile.external_id] if profile.external_id else []
        lock_identities(workspace.pk, external_ids=external, anonymous_ids=anonymous)
        current = Profile.objects.select_for_update().filter(pk=profile.pk).first()
        if current is None:
            return result
        late = set(AnonymousId.objects.filter(profile_id=current.pk).values_list("anonymous_id", flat=True)) - anonymous
        if late:
            lock_identities(workspace.pk, anonymous_ids=late)
            anonymous |= late

        identifiers: list[tuple[str, str]] = [
            (Kind.EXTERNAL_ID, current.external_id or ""),
            (Kind.EMAIL, current.email),
            (Kind.PHONE, current.phone),
        ]
        identifiers += [(Kind.ANONYMOUS_ID, value) for value in anonymous]
        for snapshot in ProfileMerge.objects.filter(into_profile_id=current.pk).values_list(
            "merged_snapshot", flat=True
        ):
            if isinstance(snapshot, dict):
                for kind, key in ((Kind.EXTERNAL_ID, "external_id"), (Kind.EMAIL, "email"), (Kind.PHONE, "phone")):
                    if isinstance(snapshot.get(key), str):
                        identifiers.append((kind, snapshot[key]))

        pid = current.pk
        # Children before parents: purchases point at events, everything points at the profile.
        steps: list[tuple[type[models.Model], Q, str, list[Any]]] = [
            (
                Purchase,
                Q(profile_id=pid) | Q(event__profile_id=pid),
                f"profile_id = %s OR event_id IN (SELECT id FROM {Event._meta.db_table} WHERE profile_id = %s)",  # noqa: S608
                [pid, pid],
            ),
            (Event, Q(profile_id=pid), "profile_id = %s", [pid]),
            (Device, Q(profile_id=pid), "profile_id = %s", [pid]),
            (AnonymousId, Q(profile_id=pid), "profile_id = %s", [pid]),
            (ProfileMerge, Q(into_profile_id=pid), "into_profile_id = %s", [pid]),
        ]
        ours = {model for model, *_ in steps}
        counts: dict[str, int] = {}
        for model, rows, where, params in steps:
            for label, count in _delete_referenced(model, rows, skip=ours).items():
                counts[label] = counts.get(label, 0) + count
            label = model._meta.label_lower
            counts[label] = counts.get(label, 0) + _raw_delete(model._meta.db_table, where, params)
        _total, per_model = Profile.objects.filter(pk=pid).delete()
        for label, count in per_model.items():
            counts[label.lower()] = counts.get(label.lower(), 0) + count
        result.profiles = counts.pop(Profile._meta.label_lower, 0)
        result.purchases = counts.pop(Purchase._meta.label_lower, 0)
        result.events = counts.pop(Event._meta.label_lower, 0)
        result.devices = counts.pop(Device._meta.label_lower, 0)
        result.anonymous_ids = counts.pop(AnonymousId._meta.label_lower, 0)
        result.merges = counts.pop(ProfileMerge._meta.label_lower, 0)
        result.other = {label: count for label, count in counts.items() if count}
        result.suppressed_identifiers = suppression_add(workspace=workspace, identifiers=identifiers)
    return result


# --- Export ----------------------------------------------------------------------------------


def _row(instance_values: Mapping[str, Any], drop: Iterable[str] = ("workspace_id",)) -> dict[str, Any]:
    return {key: value for key, value in instance_values.items() if key not in drop}


@dataclass
class ProfileExport:
    """Everything kept about one person. ``events`` and ``purchases`` are lazy iterators read in
    chunks, so a long history streams instead of sitting in memory."""

    profile: dict[str, Any]
    anonymous_ids: list[str]
    devices: list[dict[str, Any]]
    merges: list[dict[str, Any]]
    events: Iterator[dict[str, Any]]
    purchases: Iterator[dict[str, Any]]


def profile_export(*, profile: Profile) -> ProfileExport:
    """Everything about ``profile``: every column (custom attributes and subscription states
    included), devices, anonymous ids, the merges into it with their snapshots, events, purchases."""
    pid = profile.pk
    profile_values = _row(Profile.objects.filter(pk=pid).values().get())
    return ProfileExport(
        profile=profile_values,
        anonymous_ids=list(
            AnonymousId.objects.filter(profile_id=pid)
            .order_by("created_at", "id")
            .values_list("anonymous_id", flat=True)
        ),
        devices=[
            _row(d, ("workspace_id", "profile_id"))
            for d in Device.objects.filter(profile_id=pid).order_by("id").values()
        ],
        merges=[
            _row(m, ("workspace_id", "into_profile_id"))
            for m in ProfileMerge.objects.filter(into_profile_id=pid).order_by("created_at", "id").values()
        ],
        events=(
            _row(e, ("workspace_id", "profile_id"))
            for e in Event.objects.filter(profile_id=pid).order_by("timestamp", "id").values().iterator(chunk_size=2000)
        ),
        purchases=(
            _row(p, ("workspace_id", "profile_id"))
            for p in Purchase.objects.filter(profile_id=pid)
            .order_by("timestamp", "id")
            .values()
            .iterator(chunk_size=2000)
        ),
    )


def profile_export_json(export: ProfileExport) -> Iterator[str]:
    """The export as one JSON document, in pieces: ``{"profile", "anonymous_ids", "devices",
    "merges", "events": [...], "purchases": [...]}`` (decimals and datetimes as strings)."""

    def dump(value: Any) -> str:
        return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)

    yield "{"
    yield f'"profile": {dump(export.profile)}, "anonymous_ids": {dump(export.anonymous_ids)}, '
    yield f'"devices": {dump(export.devices)}, "merges": {dump(export.merges)}, "events": ['
    for index, event in enumerate(export.events):
        yield ("," if index else "") + dump(event)
    yield '], "purchases": ['
    for index, purchase in enumerate(export.purchases):
        yield ("," if index else "") + dump(purchase)
    yield "]}"
