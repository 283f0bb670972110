"""The intake: Segment-spec messages in, profiles, devices, events and purchases out.

One batch is one transaction of a handful of set-based statements, whatever its size:

1. take the advisory locks of every identifier in the batch (no duplicate profiles, no half merges);
2. load the profiles those identifiers point at, resolve each message to a profile, creating
   profiles and merging anonymous ones into known ones as identify/alias calls require;
3. insert the events, skipping message ids already stored (an SDK resending a batch after a
   timeout stores each event once, and a duplicate changes nothing on the profile);
4. apply the new events to the profiles in time order (last seen, sessions, traits, context) and
   write every touched profile back in one statement; upsert devices; insert purchase lines.

Reactions (trigger matching, segment changes) are not done here: ``events_stored`` is sent in the
storing transaction, just before its commit; its receivers keep what they must do in an outbox row
of that transaction and enqueue it after the commit, off the request path.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from ..engagement import SESSION_STARTED
from ..models import App, Platform, PushProvider, Suppression
from ..signals import events_stored
from ..spec import SESSION_START_EVENT, Message, Rejection, parse_message
from ..traits import is_valid_time_zone, parse_locale
from .identity import (
    ProfileRow,
    allocate_profile_ids,
    dumps,
    load_statements,
    loaded_profiles,
    merge_rows,
    new_profile_row,
    save_statements,
)
from .locks import lock_statement
from .privacy import suppressed_identifiers
from .sql import Statement, run_together

logger = logging.getLogger(__name__)

_DEADLOCK_RETRIES = 3


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    suppressed: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)
    profile_ids: set[int] = field(default_factory=set)


def parse_batch(
    raw_messages: Sequence[Any],
    *,
    received_at: datetime,
    forced_type: str | None = None,
    batch_context: dict[str, Any] | None = None,
    batch_sent_at: datetime | None = None,
) -> tuple[list[Message], list[Rejection]]:
    messages: list[Message] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(raw_messages):
        parsed = parse_message(
            raw,
            index=index,
            received_at=received_at,
            forced_type=forced_type,
            batch_context=batch_context,
            batch_sent_at=batch_sent_at,
        )
        (rejected if isinstance(parsed, Rejection) else messages).append(parsed)  # type: ignore[arg-type]
    return messages, rejected


def ingest_batch(
    *,
    app: App,
    messages: Sequence[Any],
    received_at: datetime | None = None,
    forced_type: str | None = None,
    batch_context: dict[str, Any] | None = None,
    batch_sent_at: datetime | None = None,
) -> IngestResult:
    """Validate and store raw Segment-spec messages posted with ``app``'s write key.

    Invalid messages are rejected alone (``result.rejected`` names each one's index, field and rule);
    the rest are stored. Idempotent per message id: a message already stored counts as a duplicate
    and changes nothing. Messages about a deleted (suppressed) person are dropped.
    """
    received = received_at or timezone.now()
    parsed, rejected = parse_batch(
        messages,
        received_at=received,
        forced_type=forced_type,
        batch_context=batch_context,
        batch_sent_at=batch_sent_at,
    )
    result = IngestResult(rejected=rejected)
    if parsed:
        store_messages(app=app, messages=parsed, received_at=received, result=result)
    return result


def store_messages(*, app: App, messages: list[Message], received_at: datetime, result: IngestResult) -> None:
    precheck = False
    for attempt in range(_DEADLOCK_RETRIES + 1):
        try:
            with transaction.atomic():
                _store(app, messages, received_at, result, precheck=precheck)
                if result.event_ids:
                    # In the transaction: a receiver's outbox rows commit with the events or not at all.
                    events_stored.send(sender=App, workspace_id=app.workspace_id, event_ids=list(result.event_ids))
            break
        except _Resent:
            # Some message ids were stored before (an SDK resending a batch): once more, this time
            # asking first which, so that only the new events change the profiles.
            precheck = True
            _reset(result)
        except OperationalError as error:
            # Two batches reaching one profile through different identifiers can deadlock on its
            # row; PostgreSQL aborts one of them, which then runs again from the start.
            if getattr(error.__cause__, "sqlstate", None) != "40P01" or attempt >= _DEADLOCK_RETRIES - 1:
                raise
            logger.warning("intake deadlock on app %s, retrying (attempt %s)", app.pk, attempt + 1)
            _reset(result)


def _reset(result: IngestResult) -> None:
    """Forget what a rolled-back attempt counted (rejections for invalid input stay)."""
    result.rejected = [r for r in result.rejected if r.code != "alias_conflict"]
    result.stored = result.duplicates = result.suppressed = 0
    result.event_ids, result.profile_ids = [], set()


class _Resent(Exception):
    """The batch holds message ids stored before; its attempt is rolled back and made again."""


class _Resolver:
    """Maps each message to a profile row, creating and merging profiles as identity calls say."""

    def __init__(self, cursor: CursorWrapper, app: App, profiles: dict[int, ProfileRow], anon_map: dict[str, int]):
        self.cursor = cursor
        self.app = app
        self.workspace_id = app.workspace_id
        self.by_id = profiles
        self.by_external = {row["external_id"]: row for row in profiles.values() if row["external_id"]}
        self.anon_map = anon_map
        self.new_links: dict[str, int] = {}
        self.merged_into: dict[int, int] = {}
        self.actor = f"app:{app.pk} {app.name}"[:255]
        # Ids for new profiles come from the sequence in one round trip, sized to the identifiers
        # this batch did not find; the rows are inserted once, with their final state.
        self.id_pool: list[int] = []
        self.pool_size = 1

    def final(self, row: ProfileRow) -> ProfileRow:
        """The row a profile ended up as, following merges made later in the batch."""
        profile_id = row["id"]
        while profile_id in self.merged_into:
            profile_id = self.merged_into[profile_id]
        return self.by_id[profile_id]

    def _create(self, external_id: str | None) -> ProfileRow:
        if not self.id_pool:
            self.id_pool = allocate_profile_ids(self.cursor, self.pool_size)
        row = new_profile_row(self.id_pool.pop(), workspace_id=self.workspace_id, external_id=external_id)
        self.by_id[row["id"]] = row
        if external_id:
            self.by_external[external_id] = row
        return row

    def _link(self, anonymous_id: str, row: ProfileRow) -> None:
        self.anon_map[anonymous_id] = row["id"]
        self.new_links[anonymous_id] = row["id"]

    def _merge(self, source: ProfileRow, target: ProfileRow, reason: str, message_id: str) -> None:
        merge_rows(
            self.cursor,
            workspace_id=self.workspace_id,
            source=source,
            target=target,
            reason=reason,
            actor=self.actor,
            message_id=message_id,
        )
        del self.by_id[source["id"]]
        self.merged_into[source["id"]] = target["id"]
        for anonymous_id, profile_id in self.anon_map.items():
            if profile_id == source["id"]:
                self.anon_map[anonymous_id] = target["id"]
                if anonymous_id in self.new_links:
                    self.new_links[anonymous_id] = target["id"]

    def _by_anonymous(self, anonymous_id: str | None) -> ProfileRow | None:
        if anonymous_id is None or anonymous_id not in self.anon_map:
            return None
        return self.by_id.get(self.anon_map[anonymous_id])

    def resolve(self, message: Message) -> ProfileRow:
        if message.type == "alias":
            return self._resolve_alias(message)
        known = self.by_external.get(message.user_id) if message.user_id else None
        anonymous = self._by_anonymous(message.anonymous_id)
        if message.user_id is None:
            if anonymous is None:
                anonymous = self._create(None)
                self._link(message.anonymous_id, anonymous)  # type: ignore[arg-type]
            return anonymous
        if known is None:
            if anonymous is not None and anonymous["external_id"] is None:
                # The anonymous profile becomes the known one: nothing to merge.
                anonymous["external_id"] = message.user_id
                self.by_external[message.user_id] = anonymous
                return anonymous
            known = self._create(message.user_id)
        if anonymous is not None and anonymous is not known and anonymous["external_id"] is None:
            self._merge(anonymous, known, "identify", message.message_id)
        elif message.anonymous_id is not None and anonymous is None:
            self._link(message.anonymous_id, known)
        # An anonymous id already tied to another known user stays with them: a shared device does
        # not make two people one.
        return known

    def _resolve_alias(self, message: Message) -> ProfileRow:
        user_id, previous_id = message.user_id, message.previous_id
        assert user_id is not None and previous_id is not None
        known = self.by_external.get(user_id)
        previous = self.by_external.get(previous_id) or self._by_anonymous(previous_id)
        if previous is not None and previous["external_id"] not in (None, user_id):
            raise _AliasConflict(
                f"previousId {previous_id!r} belongs to another known user; two known users are never merged"
            )
        if previous is None:
            known = known or self._create(user_id)
            self._link(previous_id, known)
            return known
        if known is None:
            previous["external_id"] = user_id
            self.by_external[user_id] = previous
            return previous
        if previous is not known:
            self._merge(previous, known, "alias", message.message_id)
        return known


class _AliasConflict(Exception):
    pass


def _store(app: App, messages: list[Message], received_at: datetime, result: IngestResult, *, precheck: bool) -> None:
    """Store one batch in the caller's transaction, in two round trips when nothing was stored before.

    Resent message ids are rare (an SDK retrying after a timeout), so the batch does not ask which
    of its ids are stored already; the events insert tells. When it stores fewer events than it
    was given, ``_Resent`` rolls the attempt back and ``precheck`` runs it again asking first.
    """
    workspace_id = app.workspace_id
    external_ids = {m.user_id for m in messages if m.user_id} | {m.previous_id for m in messages if m.previous_id}
    anonymous_ids = {m.anonymous_id for m in messages if m.anonymous_id} | {
        m.previous_id for m in messages if m.previous_id
    }

    with connection.cursor() as cursor:
        # The batch reads everything it needs in one round trip. Locks first: a person being erased
        # right now holds them, so their suppression is visible by the time this batch checks for
        # it and a late event cannot bring them back. Each statement after the locks reads a fresh
        # snapshot, so a batch about the same people that committed while this one waited is seen
        # whole: its profiles, and (with ``precheck``) its message ids.
        _, suppressing, anonymous_rows, profile_rows, stored_rows = run_together(
            cursor,
            [
                lock_statement(workspace_id, external_ids=external_ids, anonymous_ids=anonymous_ids),
                (f"SELECT 1 FROM {Suppression._meta.db_table} WHERE workspace_id = %s LIMIT 1", [workspace_id]),  # noqa: S608
                *load_statements(workspace_id=workspace_id, external_ids=external_ids, anonymous_ids=anonymous_ids),
                (
                    # One unique-index probe per id (see load_statements on ``= ANY`` plans).
                    "SELECT k.m FROM unnest(%s::text[]) AS k(m) WHERE (SELECT 1 FROM profiles_event e"
                    " WHERE e.workspace_id = %s AND e.message_id = k.m) IS NOT NULL",
                    [sorted({m.message_id for m in messages}), workspace_id],
                )
                if precheck
                else None,
            ],
        )
        # Most workspaces have deleted nobody; hashing every identifier is only worth it when some did.
        if suppressing:
            messages = _without_suppressed(workspace_id, messages, external_ids, anonymous_ids, result)
            if not messages:
                return
        profiles, anon_map = loaded_profiles(anonymous_rows, profile_rows)
        resolver = _Resolver(cursor, app, profiles, anon_map)
        resolver.pool_size = len(external_ids - resolver.by_external.keys()) + len(anonymous_ids - anon_map.keys())
        targets: list[tuple[Message, ProfileRow]] = []
        for message in messages:
            try:
                targets.append((message, resolver.resolve(message)))
            except _AliasConflict as conflict:
                result.rejected.append(Rejection(index=message.index, code="alias_conflict", message=str(conflict)))
        resolved = [(message, resolver.final(row)) for message, row in targets]

        # Only the first message of each message id not stored yet changes its profile: the others
        # were stored before (an SDK retry) or repeat an id within this batch.
        fresh: list[tuple[Message, ProfileRow]] = []
        seen: set[str] = {message_id for (message_id,) in stored_rows}
        for message, row in resolved:
            if message.message_id not in seen:
                seen.add(message.message_id)
                fresh.append((message, row))

        timeout = timedelta(minutes=settings.SESSION_TIMEOUT_MINUTES)
        sessions: list[tuple[Message, ProfileRow]] = []
        ordered = sorted(fresh, key=lambda pair: pair[0].timestamp)
        # Context fields (locale, time zone, app version, location, ...) are "latest wins": only
        # each profile's latest message that carries some is worth reading.
        context_from = {row["id"]: message.message_id for message, row in ordered if _has_profile_context(message)}
        for message, row in ordered:
            with_context = context_from.get(row["id"]) == message.message_id
            if apply_message(row, message, app=app, session_timeout=timeout, with_context=with_context):
                # Sessions are events too, so "sessions in the last N days" and "on session start"
                # triggers read them like any other behaviour.
                sessions.append((session_event(message), row))

        # Everything the batch writes, in a second round trip.
        touched = {row["id"]: row for _, row in resolved}
        profile_statements = save_statements(touched.values())
        written = run_together(
            cursor,
            [
                _links_statement(workspace_id, resolver),
                *profile_statements,
                _events_statement(app, fresh + sessions, received_at),
                _devices_statement(app, fresh),
            ],
        )
        new_ids = dict(written[1 + len(profile_statements)])
        if not precheck and len(new_ids) < len(fresh) + len(sessions):
            raise _Resent
        result.event_ids = list(new_ids.values())
        # Counted from what the insert stored: after a precheck, a message id stored meanwhile by a
        # concurrent batch about other people (ids that collide across people) is a duplicate too.
        result.stored = sum(1 for message, _ in fresh if message.message_id in new_ids)
        result.duplicates = len(resolved) - result.stored
        result.profile_ids = set(touched)


def _without_suppressed(
    workspace_id: int, messages: list[Message], external_ids: set[str], anonymous_ids: set[str], result: IngestResult
) -> list[Message]:
    blocked_external, blocked_anonymous = suppressed_identifiers(
        workspace_id=workspace_id, external_ids=external_ids, anonymous_ids=anonymous_ids
    )
    if not blocked_external and not blocked_anonymous:
        return messages
    kept = [
        m
        for m in messages
        if m.user_id not in blocked_external
        and m.anonymous_id not in blocked_anonymous
        and m.previous_id not in blocked_external
        and m.previous_id not in blocked_anonymous
    ]
    result.suppressed = len(messages) - len(kept)
    return kept


def _links_statement(workspace_id: int, resolver: _Resolver) -> Statement | None:
    """The anonymous ids this batch tied to profiles."""
    if not resolver.new_links:
        return None
    links = [
        {"a": a, "p": resolver.final(resolver.by_id.get(p) or {"id": p})["id"]} for a, p in resolver.new_links.items()
    ]
    return (
        "INSERT INTO profiles_anonymousid (workspace_id, anonymous_id, profile_id, created_at) "
        "SELECT %s, x.a, x.p, now() FROM jsonb_to_recordset(%s::jsonb) AS x(a text, p bigint) "
        "ON CONFLICT (workspace_id, anonymous_id) DO NOTHING",
        [workspace_id, dumps(links)],
    )


# Context keys that describe the device, the installation or the person rather than the event.
# The intake keeps them on the device row and the profile, updated from every call (latest wins),
# so the event row does not repeat them: they were about two thirds of a mobile event's bytes, and
# writing them on every event was the largest cost of the events insert after the row itself.
DEVICE_CONTEXT_KEYS = frozenset(
    {"device", "os", "library", "screen", "network", "locale", "timezone", "userAgent", "userAgentData", "traits"}
)


def event_context(context: dict[str, Any]) -> dict[str, Any]:
    """What an event row keeps of its call's context: what is about this event (the app build that
    sent it, the page and referrer, the visit's campaign, IP and location, custom keys)."""
    return {key: value for key, value in context.items() if key not in DEVICE_CONTEXT_KEYS}


_EVENTS_INSERT = (
    "INSERT INTO profiles_event (workspace_id, profile_id, app_id, type, name, properties, context, message_id,"
    " timestamp, received_at) SELECT %s, x.p, %s, x.t, x.n, x.pr, x.c, x.m, x.ts, %s"
    " FROM jsonb_to_recordset(%s::jsonb) AS x(p bigint, t text, n text, pr jsonb, c jsonb, m text, ts timestamptz)"
    " ON CONFLICT (workspace_id, message_id) DO NOTHING"
)


def _events_statement(app: App, events: list[tuple[Message, ProfileRow]], received_at: datetime) -> Statement:
    """Insert the events, and the purchase lines of those that are purchases; the statement returns
    the message ids newly stored, with their event ids."""
    rows = [
        {
            "p": row["id"],
            "t": m.type,
            "n": m.name,
            "pr": m.properties,
            "c": event_context(m.context),
            "m": m.message_id,
            "ts": m.timestamp,
        }
        for m, row in events
    ]
    params: list[Any] = [app.workspace_id, app.pk, received_at, dumps(rows)]
    lines = [
        {"m": m.message_id, "pid": line.product_id, "pr": str(line.price), "c": line.currency, "q": line.quantity}
        for m, _ in events
        for line in m.purchases
    ]
    if not lines:
        return f"{_EVENTS_INSERT} RETURNING message_id, id", params
    # Purchase lines point at their event, so they are written from the insert's own result.
    return (
        f"WITH e AS ({_EVENTS_INSERT} RETURNING message_id, id, profile_id, timestamp),"  # noqa: S608 (a constant)
        " lines AS (INSERT INTO profiles_purchase (workspace_id, profile_id, event_id, product_id, price, currency,"
        " quantity, timestamp) SELECT %s, e.profile_id, e.id, x.pid, x.pr, x.c, x.q, e.timestamp"
        " FROM jsonb_to_recordset(%s::jsonb) AS x(m text, pid text, pr numeric, c text, q integer)"
        " JOIN e ON e.message_id = x.m)"
        " SELECT message_id, id FROM e",
        [*params, app.workspace_id, dumps(lines)],
    )


def _text(value: Any, limit: int = 255) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value)[:limit]


def _platform(context: dict[str, Any], app: App) -> str:
    os_name = _text((context.get("os") or {}).get("name") if isinstance(context.get("os"), dict) else "").lower()
    device_type = _text((context.get("device") or {}).get("type") if isinstance(context.get("device"), dict) else "")
    hint = device_type.lower() or os_name
    if hint in ("ios", "ipados", "iphone os", "tvos", "watchos", "macos") or hint.startswith("ios"):
        return Platform.IOS
    if hint.startswith("android"):
        return Platform.ANDROID
    if app.platform == Platform.SERVER:
        return ""  # a back-end call says nothing about the person's device
    return str(app.platform)


def session_event(message: Message) -> Message:
    """The ``$session_started`` event recorded beside the call that started a session."""
    return Message(
        index=message.index,
        type="track",
        message_id=f"{SESSION_STARTED}:{message.message_id}"[:255],
        user_id=message.user_id,
        anonymous_id=message.anonymous_id,
        name=SESSION_STARTED,
        properties={"started_by": message.type, "name": message.name},
        context={key: message.context[key] for key in ("app", "os", "device") if key in message.context},
        timestamp=message.timestamp,
    )


_PROFILE_CONTEXT_KEYS = ("app", "os", "device", "locale", "timezone", "location", "ip")


def _has_profile_context(message: Message) -> bool:
    context = message.context
    return any(key in context for key in _PROFILE_CONTEXT_KEYS)


def apply_message(
    row: ProfileRow, message: Message, *, app: App, session_timeout: timedelta, with_context: bool = True
) -> bool:
    """Apply what one new event changes on its profile: activity, sessions, context, traits.

    Returns whether the event started a session."""
    ts = message.timestamp
    previous_seen = row["last_seen"]
    if row["first_seen"] is None or ts < row["first_seen"]:
        row["first_seen"] = ts
    if previous_seen is None or ts > previous_seen:
        row["last_seen"] = ts
    if (message.type == "track" and message.name == SESSION_START_EVENT) or (
        message.type in ("screen", "page") and (previous_seen is None or ts - previous_seen > session_timeout)
    ):
        row["session_count"] += 1
        started_session = True
    else:
        started_session = False

    context = message.context
    is_latest = previous_seen is None or ts >= previous_seen
    if with_context and is_latest:
        _apply_context(row, context, app)
    campaign = context.get("campaign")
    if isinstance(campaign, dict) and not any(row[f"utm_{k}"] for k in ("source", "medium", "campaign")):
        for key, column in (
            ("source", "utm_source"),
            ("medium", "utm_medium"),
            ("name", "utm_campaign"),
            ("content", "utm_content"),
            ("term", "utm_term"),
        ):
            row[column] = _text(campaign.get(key))

    if message.traits is not None:
        for column, value in message.traits.columns.items():
            if column.endswith("_subscription"):
                if row[column] != value:
                    row[column] = value
                    row[f"{column}_changed_at"] = ts
            else:
                row[column] = value
        if message.traits.custom:
            custom = dict(row["custom_attributes"])
            for key, value in message.traits.custom.items():
                if value is None:
                    custom.pop(key, None)
                else:
                    custom[key] = value
            row["custom_attributes"] = custom
    return started_session


def _apply_context(row: ProfileRow, context: dict[str, Any], app: App) -> None:
    app_context = context.get("app")
    if isinstance(app_context, dict) and app_context.get("version"):
        row["app_version"] = _text(app_context["version"], 64)
    platform = _platform(context, app)
    if platform:
        row["platform"] = platform
    locale = context.get("locale")
    if isinstance(locale, str) and locale:
        parsed = parse_locale(locale)
        if parsed is not None:
            row["locale"] = locale[:35]
            language, country = parsed
            if not row["language"]:
                row["language"] = language
            if country and not row["country"]:
                row["country"] = country
    zone = context.get("timezone")
    if isinstance(zone, str) and is_valid_time_zone(zone):
        row["time_zone"] = zone
    location = context.get("location")
    if isinstance(location, dict):
        latitude, longitude = location.get("latitude"), location.get("longitude")
        if (
            isinstance(latitude, int | float)
            and isinstance(longitude, int | float)
            and not isinstance(latitude, bool)
            and -90 <= latitude <= 90
            and -180 <= longitude <= 180
        ):
            row["latitude"], row["longitude"] = float(latitude), float(longitude)
        for key, column in (("city", "city"), ("region", "region")):
            if isinstance(location.get(key), str) and location[key]:
                row[column] = location[key][:255]
        location_country = location.get("country")
        if isinstance(location_country, str) and len(location_country) == 2 and location_country.isalpha():
            row["country"] = location_country.upper()
    ip = context.get("ip")
    if isinstance(ip, str) and ip:
        # A malformed IP from a client is not worth rejecting the event for.
        with contextlib.suppress(ValueError):
            row["last_ip"] = str(ipaddress.ip_address(ip))


def _device_key(message: Message, app: App) -> str | None:
    """The device a message came from: ``context.device.id``, else its push token, else (a browser
    has no device id) ``browser:<anonymous id>`` for web apps; None for calls from no device."""
    context = message.context
    device = context.get("device")
    if isinstance(device, dict):
        device_id = _text(device.get("id")) or _text(device.get("token"), 4096)[:255]
        if device_id:
            return device_id
    if app.platform == Platform.WEB and message.anonymous_id and context.get("userAgent"):
        return f"browser:{message.anonymous_id}"
    return None


def _device_row(message: Message, row: ProfileRow, app: App) -> dict[str, Any] | None:
    context = message.context
    device_id = _device_key(message, app)
    if device_id is None:
        return None
    device = context.get("device") if isinstance(context.get("device"), dict) else {}
    assert isinstance(device, dict)
    token = _text(device.get("token"), 4096)
    os_context = context.get("os") if isinstance(context.get("os"), dict) else {}
    assert isinstance(os_context, dict)
    app_context = context.get("app") if isinstance(context.get("app"), dict) else {}
    assert isinstance(app_context, dict)
    platform = _platform(context, app)
    provider = ""
    if token:
        provider = {Platform.IOS: PushProvider.APNS, Platform.ANDROID: PushProvider.FCM}.get(
            platform,  # type: ignore[call-overload]
            PushProvider.WEB_PUSH if platform == Platform.WEB else "",
        )
    push_enabled = device.get("pushEnabled", device.get("push_enabled"))
    ad_tracking = device.get("adTrackingEnabled")
    return {
        "d": device_id,
        "p": row["id"],
        "pl": platform,
        "ma": _text(device.get("manufacturer")),
        "mo": _text(device.get("model")),
        "osn": _text(os_context.get("name"), 64),
        "ov": _text(os_context.get("version"), 64),
        "av": _text(app_context.get("version"), 64),
        "lo": _text(context.get("locale"), 35),
        "pv": str(provider),
        "tk": token,
        "pe": bool(token) and push_enabled is not False,
        "at": ad_tracking if isinstance(ad_tracking, bool) else None,
        "ts": message.timestamp,
    }


def _devices_statement(app: App, fresh: list[tuple[Message, ProfileRow]]) -> Statement | None:
    # Only each device's latest message is worth turning into a row (the upsert keeps the latest).
    newest: dict[str, tuple[Message, ProfileRow]] = {}
    for message, row in fresh:
        key = _device_key(message, app)
        if key is not None and (key not in newest or message.timestamp >= newest[key][0].timestamp):
            newest[key] = (message, row)
    latest: dict[str, dict[str, Any]] = {}
    for message, row in newest.values():
        device = _device_row(message, row, app)
        if device is not None:
            latest[device["d"]] = device
    if not latest:
        return None
    return (
        "INSERT INTO profiles_device AS d (workspace_id, profile_id, app_id, device_id, platform, manufacturer, model,"
        " os_name, os_version, app_version, locale, push_provider, push_token, push_enabled, push_disabled_reason,"
        " ad_tracking_enabled, first_seen, last_seen)"
        " SELECT %s, x.p, %s, x.d, x.pl, x.ma, x.mo, x.osn, x.ov, x.av, x.lo, x.pv, x.tk, x.pe, '', x.at, x.ts, x.ts"
        " FROM jsonb_to_recordset(%s::jsonb) AS x(d text, p bigint, pl text, ma text, mo text, osn text, ov text,"
        " av text, lo text, pv text, tk text, pe boolean, at boolean, ts timestamptz)"
        " ON CONFLICT (workspace_id, device_id) DO UPDATE SET"
        " profile_id = EXCLUDED.profile_id, app_id = EXCLUDED.app_id,"
        " platform = COALESCE(NULLIF(EXCLUDED.platform, ''), d.platform),"
        " manufacturer = COALESCE(NULLIF(EXCLUDED.manufacturer, ''), d.manufacturer),"
        " model = COALESCE(NULLIF(EXCLUDED.model, ''), d.model),"
        " os_name = COALESCE(NULLIF(EXCLUDED.os_name, ''), d.os_name),"
        " os_version = COALESCE(NULLIF(EXCLUDED.os_version, ''), d.os_version),"
        " app_version = COALESCE(NULLIF(EXCLUDED.app_version, ''), d.app_version),"
        " locale = COALESCE(NULLIF(EXCLUDED.locale, ''), d.locale),"
        # A call without a token (most calls) leaves the push registration as it was.
        " push_provider = CASE WHEN EXCLUDED.push_token <> '' THEN EXCLUDED.push_provider ELSE d.push_provider END,"
        # A token the provider refused stays off until the app registers a different one.
        " push_enabled = CASE WHEN EXCLUDED.push_token <> ''"
        "   AND (EXCLUDED.push_token <> d.push_token OR d.push_disabled_reason = '')"
        "   THEN EXCLUDED.push_enabled ELSE d.push_enabled END,"
        " push_disabled_reason = CASE WHEN EXCLUDED.push_token <> '' AND EXCLUDED.push_token <> d.push_token"
        "   THEN '' ELSE d.push_disabled_reason END,"
        " push_token = CASE WHEN EXCLUDED.push_token <> '' THEN EXCLUDED.push_token ELSE d.push_token END,"
        " ad_tracking_enabled = COALESCE(EXCLUDED.ad_tracking_enabled, d.ad_tracking_enabled),"
        " last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen)"
        # Most calls repeat what the device row says; then only a last-seen older than five minutes
        # is worth a row update (device last seen is kept to that precision).
        " WHERE d.profile_id <> EXCLUDED.profile_id"
        " OR (EXCLUDED.push_token <> '' AND (EXCLUDED.push_token <> d.push_token"
        "     OR EXCLUDED.push_enabled <> d.push_enabled))"
        " OR (EXCLUDED.app_version <> '' AND EXCLUDED.app_version <> d.app_version)"
        " OR (EXCLUDED.os_version <> '' AND EXCLUDED.os_version <> d.os_version)"
        " OR (EXCLUDED.locale <> '' AND EXCLUDED.locale <> d.locale)"
        " OR (EXCLUDED.model <> '' AND EXCLUDED.model <> d.model)"
        " OR d.last_seen < EXCLUDED.last_seen - interval '5 minutes'",
        [app.workspace_id, app.pk, dumps(sorted(latest.values(), key=lambda d: d["d"]))],
    )
