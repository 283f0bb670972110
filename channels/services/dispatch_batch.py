"""Batch forms of ``dispatch_prepare`` and ``dispatch_send``, for callers that hand many messages
over at once (the campaign sender's batch of deliveries).

Same rules and same rows as ``channels.services.dispatch``: the same idempotency keys (the
caller's key plus the address hash), the same claim (``pending -> sending``, one winner, committed
before any provider is called), the same recording of outcomes, profile effects and engagement
events. What changes is the cost: one claim per message (committed just before its provider call,
so a worker that dies mid-batch loses nothing it had not reached) and a few statements per batch,
instead of a dozen round trips per message; and email goes over one SMTP (or ESP) connection per
batch instead of one per message. ``dispatch_send`` stays the single-message path (tasks, the
admin's test send).

Written by the campaigns sender's author to reach the send benchmark's target; the helpers it calls
are ``channels.services.dispatch``'s own, so the two paths cannot drift apart in what they record.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.utils import timezone

try:
    import psycopg
except ImportError:  # pragma: no cover - psycopg2 deployments claim through Django's cursor
    psycopg = None  # type: ignore[assignment]

from profiles.engagement import MESSAGE_RECEIVED
from profiles.models import Profile
from profiles.services.engagement import Engagement, engagement_record
from profiles.services.identity import dumps

from ..models import Channel, Dispatch, DispatchStatus, ProviderConfig, ProviderKind
from ..transports import get_transport
from ..transports.base import NotConfiguredError, PermanentError, SendResult, TransientError
from ..transports.email import EmailTransport, classify_open_error, classify_send_error
from ..transports.email_wire import send_message
from .addresses import Address, Unreachable, email_provider_kind, resolve_addresses
from .dispatch import (
    MAX_KEY_LENGTH,
    _clean_metadata,
    _record_gave_up,
    _record_permanent,
    active_config,
    address_hash,
    engagement_properties,
    max_attempts,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchRequest:
    """One ``dispatch_prepare`` call's arguments."""

    workspace_id: int
    profile: Profile
    channel: str
    content: dict[str, Any]
    idempotency_key: str
    source: str = ""
    metadata: dict[str, str] | None = None
    transactional: bool = False


def dispatch_prepare_many(*, requests: Sequence[DispatchRequest]) -> list[list[Dispatch] | Unreachable]:
    """``dispatch_prepare`` for each request, in order: the dispatches (one per address) or why the
    person cannot be reached. One INSERT ... ON CONFLICT DO NOTHING RETURNING for the lot; only the
    rows that already existed (a repeat) are read back."""
    email_kinds: dict[int, str] = {}
    answers: list[list[Dispatch] | Unreachable] = []
    rows: list[Dispatch] = []
    for request in requests:
        if request.profile.workspace_id != request.workspace_id:
            raise ValueError("the profile belongs to another workspace")
        if not request.idempotency_key or len(request.idempotency_key) > MAX_KEY_LENGTH:
            raise ValueError(f"idempotency_key must be 1 to {MAX_KEY_LENGTH} characters")
        metadata = _clean_metadata(request.metadata)
        email_provider = None
        if request.channel == Channel.EMAIL:
            if request.workspace_id not in email_kinds:
                email_kinds[request.workspace_id] = email_provider_kind(request.workspace_id)
            email_provider = email_kinds[request.workspace_id]
        resolved = resolve_addresses(
            profile=request.profile,
            channel=request.channel,
            content=request.content,
            transactional=request.transactional,
            email_provider=email_provider,
        )
        if isinstance(resolved, Unreachable):
            answers.append(resolved)
            continue
        made = [
            _row(request, address, f"{request.idempotency_key}:{address_hash(address.address)}", metadata)
            for address in resolved
        ]
        rows.extend(made)
        answers.append(made)
    if not rows:
        return answers
    inserted = _insert(rows)
    repeats = [row for row in rows if row.pk not in inserted]
    if not repeats:
        return answers
    # Asked before: the rows made the first time, as they stand now (a row that went meanwhile, e.g.
    # with its erased person, is left out).
    existing: dict[tuple[int, str], Dispatch] = {}
    profiles = {row.profile_id: row.profile for row in repeats}
    by_workspace: dict[int, list[str]] = defaultdict(list)
    for row in repeats:
        by_workspace[row.workspace_id].append(row.idempotency_key)
    for workspace_id, keys in by_workspace.items():
        for dispatch in Dispatch.objects.filter(workspace_id=workspace_id, idempotency_key__in=keys):
            if dispatch.profile_id in profiles:  # the caller's object: no query per row
                dispatch.profile = profiles[dispatch.profile_id]
            existing[(workspace_id, dispatch.idempotency_key)] = dispatch
    out: list[list[Dispatch] | Unreachable] = []
    for answer in answers:
        if isinstance(answer, Unreachable):
            out.append(answer)
            continue
        dispatches = [
            row if row.pk in inserted else existing[(row.workspace_id, row.idempotency_key)]
            for row in answer
            if row.pk in inserted or (row.workspace_id, row.idempotency_key) in existing
        ]
        out.append(sorted(dispatches, key=lambda d: (d.created_at, str(d.pk))))
    return out


def _row(request: DispatchRequest, address: Address, key: str, metadata: dict[str, str]) -> Dispatch:
    """A new pending row as an object (its id made here, so the INSERT can say which rows it made).
    Built from positional values, as the ORM builds rows it reads: keyword construction cost ~20 µs
    more per message, a visible share of a send's CPU."""
    now = timezone.now()
    values = dict(
        _NEW_ROW,
        id=uuid.uuid4(),
        workspace_id=request.workspace_id,
        profile_id=request.profile.pk,
        device_id=address.device_id,
        channel=request.channel,
        provider=address.provider,
        address=address.address,
        content=request.content,
        idempotency_key=key,
        source=request.source[:255],
        metadata=metadata,
        transactional=request.transactional,
        created_at=now,
        updated_at=now,
    )
    dispatch: Dispatch = _MODEL(*[values[name] for name in _ATTNAMES])
    _PROFILE_FIELD.set_cached_value(dispatch, request.profile)  # the caller's object: never loaded again
    return dispatch


# A new row's values by column (the model's defaults), in the model's field order.
_ATTNAMES = [f.attname for f in Dispatch._meta.concrete_fields]
_NEW_ROW: dict[str, Any] = {f.attname: None if f.null else f.get_default() for f in Dispatch._meta.concrete_fields}
_PROFILE_FIELD = Dispatch._meta.get_field("profile")
_MODEL: Any = Dispatch  # positional construction, which django-stubs cannot type


def _insert(rows: list[Dispatch]) -> set[uuid.UUID]:
    """Insert the rows whose key is new (``ON CONFLICT (workspace, key) DO NOTHING``); return their
    ids. One statement with one JSON parameter: building ``bulk_create``'s twenty-odd parameters per
    row cost more than the insert."""
    payload = [
        {
            "id": str(row.pk),
            "w": row.workspace_id,
            "p": row.profile_id,
            "d": row.device_id,
            "ch": row.channel,
            "pv": row.provider,
            "a": row.address,
            "c": row.content,
            "k": row.idempotency_key,
            "s": row.source,
            "m": row.metadata,
            "t": row.transactional,
            "at": row.created_at,
        }
        for row in rows
    ]
    with connection.cursor() as cursor:
        # Every column, with the model's defaults for a new row (pending, no attempt, no outcome).
        cursor.execute(
            "INSERT INTO channels_dispatch (id, workspace_id, profile_id, device_id, channel, provider, address,"
            " content, idempotency_key, source, metadata, transactional, status, attempts, provider_message_id,"
            " error_code, error_message, permanent_failure, created_at, claimed_at, sent_at, updated_at)"
            " SELECT x.id, x.w, x.p, x.d, x.ch, x.pv, x.a, x.c, x.k, x.s, x.m, x.t, 'pending', 0, '', '', '', false,"
            " x.at, NULL, NULL, x.at"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(id uuid, w bigint, p bigint, d bigint, ch text, pv text,"
            "  a text, c jsonb, k text, s text, m jsonb, t boolean, at timestamptz)"
            " ON CONFLICT (workspace_id, idempotency_key) DO NOTHING RETURNING id",
            [dumps(payload)],
        )
        return {row[0] for row in cursor.fetchall()}


@dataclass
class SendManyResult:
    """Every requested dispatch as it stands afterwards, and the temporary errors of those put back
    to ``pending`` for a retry (the caller decides when)."""

    dispatches: dict[str, Dispatch] = field(default_factory=dict)
    transient: dict[str, TransientError] = field(default_factory=dict)


# Outcomes are recorded every this many dispatches: a worker that dies mid-batch leaves at most this
# many handed-over messages unrecorded (given up as "outcome unknown" by channels' sweep: the
# provider has them, they are never resent).
RECORD_EVERY = 20


def dispatch_send_many(
    *,
    dispatch_ids: Sequence[uuid.UUID | str] = (),
    dispatches: Sequence[Dispatch] | None = None,
    profiles: dict[int, Profile] | None = None,
) -> SendManyResult:
    """``dispatch_send`` for many dispatches: each pending one is claimed (committed) just before
    its provider call, email goes over one connection per provider config, and what happened is
    recorded every ``RECORD_EVERY`` dispatches. Dispatches that are not pending are left alone.
    Never raises for a provider's answer; must not run inside a transaction.

    ``dispatches`` (as ``dispatch_prepare_many`` returned them) saves reading the rows again: the
    claim is what decides who sends, whatever the objects say. ``profiles`` (by id) saves loading
    the people for what the transports read of them."""
    result = SendManyResult()
    if dispatches is None:
        ids = [str(pk) for pk in dispatch_ids]
        candidates = list(
            Dispatch.objects.filter(pk__in=ids, status=DispatchStatus.PENDING).order_by("created_at", "id")
        )
    else:
        ids = [str(dispatch.pk) for dispatch in dispatches]
        candidates = sorted(
            (d for d in dispatches if d.status == DispatchStatus.PENDING), key=lambda d: (d.created_at, str(d.pk))
        )
    if not ids:
        return result
    for dispatch in candidates:
        if profiles and dispatch.profile_id in profiles:
            dispatch.profile = profiles[dispatch.profile_id]
    sender = _Sender()
    outcomes: dict[str, SendResult | Exception] = {}
    handed: list[Dispatch] = []
    known: dict[str, Dispatch] = {}  # the sent ones, as recorded: not read again
    try:
        with _Claimer() as claimer:
            for dispatch in candidates:
                # Claimed one by one, just before its provider call (autocommit: the claim is
                # committed first): a worker that dies mid-batch leaves the dispatches it had not
                # reached pending, to be sent by the next run, never lost.
                if not claimer.claim(dispatch):
                    continue  # another worker has it, or had it
                outcomes[str(dispatch.pk)] = sender.send(dispatch)
                handed.append(dispatch)
                if len(handed) >= RECORD_EVERY:
                    known.update(_record(handed, outcomes, result))
                    handed = []
        known.update(_record(handed, outcomes, result))
    finally:
        sender.close()
    result.dispatches.update(known)
    others = [pk for pk in ids if pk not in known]
    if others:
        for dispatch in Dispatch.objects.filter(pk__in=others):
            result.dispatches[str(dispatch.pk)] = dispatch
    return result


class _Claimer:
    """The per-dispatch claim, ``pending -> sending``, one statement each. On psycopg 3 it is a
    server-side prepared statement (parsed and planned once per connection) run through libpq
    directly: the claim runs once per message, so its parsing was a visible share of PostgreSQL's
    CPU per send, and psycopg's execute and fetch machinery ~25 µs of the worker's. Elsewhere
    (psycopg2), a plain statement through Django's cursor."""

    SQL = (
        "UPDATE channels_dispatch SET status = 'sending', attempts = attempts + 1, claimed_at = %s,"
        " updated_at = %s WHERE id = %s AND status = 'pending' RETURNING attempts"
    )
    NAME = b"engage_dispatch_claim"
    PREPARED_SQL = (
        b"UPDATE channels_dispatch SET status = 'sending', attempts = attempts + 1, claimed_at = $1,"
        b" updated_at = $1 WHERE id = $2 AND status = 'pending' RETURNING attempts"
    )

    def __enter__(self) -> _Claimer:
        connection.ensure_connection()
        raw = connection.connection
        self.pgconn: Any = None
        self.cursor: Any = None
        if psycopg is not None and isinstance(raw, psycopg.Connection):
            self.pgconn = raw.pgconn
            self.encoding = raw.info.encoding
            with connection.wrap_database_errors, raw.cursor() as cursor:
                # Once per connection: prepared statements live as long as the session.
                cursor.execute("SELECT 1 FROM pg_prepared_statements WHERE name = %s", [self.NAME.decode()])
                if cursor.fetchone() is None:
                    self._check(self.pgconn.prepare(self.NAME, self.PREPARED_SQL))
        else:
            self.cursor = connection.cursor()
        return self

    def _check(self, result: Any) -> Any:
        if result.status not in (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK):
            with connection.wrap_database_errors:
                raise psycopg.errors.error_from_result(result, encoding=self.encoding)
        return result

    def claim(self, dispatch: Dispatch) -> bool:
        """Claim ``dispatch`` (committed unless the caller holds a transaction); update the object."""
        now = timezone.now()
        if self.pgconn is not None:
            result = self._check(
                self.pgconn.exec_prepared(self.NAME, [now.isoformat().encode(), str(dispatch.pk).encode()])
            )
            row = (int(result.get_value(0, 0)),) if result.ntuples else None
        else:
            with connection.wrap_database_errors:
                self.cursor.execute(self.SQL, [now, now, dispatch.pk])
                row = self.cursor.fetchone()
        if row is None:
            return False
        dispatch.attempts = row[0]
        dispatch.status = DispatchStatus.SENDING
        dispatch.claimed_at = now
        dispatch.updated_at = now
        return True

    def __exit__(self, *exc: object) -> None:
        if self.cursor is not None:
            self.cursor.close()


class _Sender:
    """Hands dispatches to their transports, keeping one email connection open per provider config
    (``EmailTransport.send`` opens one per message); after a failed conversation the next message
    gets a fresh connection."""

    def __init__(self) -> None:
        self.configs: dict[tuple[int, str], ProviderConfig | None] = {}
        self.backends: dict[tuple[int, str], tuple[Any, str]] = {}

    def send(self, dispatch: Dispatch) -> SendResult | Exception:
        key = (dispatch.workspace_id, dispatch.provider)
        if key not in self.configs:
            self.configs[key] = active_config(workspace_id=dispatch.workspace_id, provider=dispatch.provider)
        config = self.configs[key]
        if dispatch.channel != Channel.EMAIL:
            try:
                return get_transport(dispatch.channel, dispatch.provider).send(dispatch, config)
            except Exception as error:  # classified by the transport; recorded per dispatch
                return error
        transport = get_transport(Channel.EMAIL, dispatch.provider)
        assert isinstance(transport, EmailTransport)
        if dispatch.provider and config is None:
            label = ProviderKind(dispatch.provider).label
            return NotConfiguredError(f"the workspace has no active {label} provider for email")
        try:
            message = transport._message(dispatch, config)
        except Exception as error:
            return error
        if key not in self.backends:
            try:
                backend, kind = transport._connection(config)
                backend.open()
            except Exception as error:
                return classify_open_error(error)
            self.backends[key] = (backend, kind)
        backend, kind = self.backends[key]
        try:
            send_message(backend, message)
        except Exception as error:
            _close(self.backends.pop(key)[0])
            return classify_send_error(error, kind)
        return SendResult(provider_message_id=transport._message_id(message), raw=transport._raw(message))

    def close(self) -> None:
        for backend, _ in self.backends.values():
            _close(backend)
        self.backends.clear()


def _close(backend: Any) -> None:
    try:
        backend.close()
    except Exception:  # closing a broken connection: nothing left to do
        logger.debug("closing the email connection failed", exc_info=True)


def _record(
    dispatches: list[Dispatch], outcomes: dict[str, SendResult | Exception], result: SendManyResult
) -> dict[str, Dispatch]:
    """Record what happened to ``dispatches``; return those recorded as sent (their objects updated
    as the row was)."""
    sent: list[tuple[Dispatch, SendResult]] = []
    for dispatch in dispatches:
        outcome = outcomes.get(str(dispatch.pk))
        if isinstance(outcome, SendResult):
            sent.append((dispatch, outcome))
        elif isinstance(outcome, PermanentError):
            _record_permanent(dispatch, outcome)
        elif isinstance(outcome, TransientError):
            if dispatch.attempts >= max_attempts():  # the claim counted this attempt
                _record_gave_up(dispatch, outcome)
            else:
                Dispatch.objects.filter(pk=dispatch.pk, status=DispatchStatus.SENDING).update(
                    status=DispatchStatus.PENDING,
                    error_code=outcome.code[:64],
                    error_message=outcome.message,
                    updated_at=timezone.now(),
                )
                result.transient[str(dispatch.pk)] = outcome
        else:
            # A bug or a time limit mid-call: the provider may have sent it. Recorded, not retried.
            error = outcome if outcome is not None else RuntimeError("no outcome")
            Dispatch.objects.filter(pk=dispatch.pk, status=DispatchStatus.SENDING).update(
                status=DispatchStatus.FAILED,
                error_code="internal_error",
                error_message=f"{type(error).__name__}: {error}; not retried to avoid a double send",
                updated_at=timezone.now(),
            )
            logger.error("dispatch %s failed: %r", dispatch.pk, error)
    return _record_sent_many(sent)


def _record_sent_many(sent: list[tuple[Dispatch, SendResult]]) -> dict[str, Dispatch]:
    """``_record_sent`` for many: one UPDATE for the statuses, one engagement call per workspace.
    Returns the dispatches now ``sent``, their objects updated as their rows were."""
    if not sent:
        return {}
    sent_at = timezone.now()
    rows = [{"id": str(d.pk), "m": (r.provider_message_id or "")[:255]} for d, r in sent]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE channels_dispatch d SET status = 'sent', provider_message_id = u.m, sent_at = %s,"
            " error_code = '', error_message = '', updated_at = %s"
            " FROM jsonb_to_recordset(%s::jsonb) AS u(id uuid, m text)"
            # By primary key; a CASE, not "d.status = 'sending'", which would let the planner scan
            # dispatch_open_idx's in-flight rows instead.
            " WHERE d.id = u.id AND CASE d.status WHEN 'sending' THEN true ELSE false END RETURNING d.id",
            [sent_at, sent_at, dumps(rows)],
        )
        updated = {str(row[0]) for row in cursor.fetchall()}
        overtaken = [row for row in rows if row["id"] not in updated]
        if overtaken:
            # A status callback (delivered, failed) overtook us: keep its status, add what we know.
            cursor.execute(
                "UPDATE channels_dispatch d SET provider_message_id = u.m, sent_at = %s, updated_at = %s"
                " FROM jsonb_to_recordset(%s::jsonb) AS u(id uuid, m text)"
                " WHERE d.id = u.id AND d.sent_at IS NULL",
                [sent_at, sent_at, dumps(overtaken)],
            )
    by_workspace: dict[int, list[Engagement]] = defaultdict(list)
    for dispatch, _ in sent:
        by_workspace[dispatch.workspace_id].append(
            Engagement(
                profile_id=dispatch.profile_id,
                name=MESSAGE_RECEIVED,
                dedupe_key=str(dispatch.pk),
                properties=engagement_properties(dispatch),
                timestamp=sent_at,
            )
        )
    for workspace_id, engagements in by_workspace.items():
        engagement_record(workspace_id=workspace_id, engagements=engagements)
    recorded: dict[str, Dispatch] = {}
    for (dispatch, _), row in zip(sent, rows, strict=True):
        if row["id"] in updated:
            dispatch.status = DispatchStatus.SENT
            dispatch.provider_message_id = row["m"]
            dispatch.sent_at = sent_at
            dispatch.error_code = dispatch.error_message = ""
            dispatch.updated_at = sent_at
            recorded[row["id"]] = dispatch
    return recorded
