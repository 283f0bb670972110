"""Action-based campaigns: stored events in, Delivery rows out.

``campaign_events_process`` runs in a Celery task after the intake commits (never in the request).
For one batch of stored events it loads the events once and the workspace's campaign rules once
(cached for a few seconds), then, set-wise:

1. **triggers**: every event is matched against the running action-based campaigns' triggers
   (custom event, purchase, session start, engagement with another campaign) and property
   filters; segment-entry triggers compare the people's membership now with what was recorded;
2. **enrolment** (``enrol``, shared with API-triggered sends): the audience check, re-eligibility,
   the variant (or the control group), the delay, then one ``INSERT … ON CONFLICT DO NOTHING`` of
   ``scheduled`` deliveries. The occurrence is the triggering event's message id, so a replayed
   event never triggers twice. The sender (``campaigns.services.sending``) sends due rows: a
   delayed send is nothing but a row whose ``scheduled_for`` is later;
3. **exception events** cancel the person's pending deliveries of the campaign (optionally only
   those whose trigger had the same ``match_property`` value) by conditional update;
4. **conversions** (``campaigns.services.conversions``).

Ordering within a batch is by event time: an exception cancels the triggers that happened at or
before it, never a later one; and a trigger whose exception is already stored is recorded as
cancelled straight away. Both paths take a per-(campaign, person) advisory lock, so an exception
processed by another worker at the same moment cannot slip between the check and the insert.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time as clock
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from profiles.engagement import CONTROL_GROUP_ENROLLED, PROP_CAMPAIGN_ID, PROP_SEND_ID, PROP_VARIANT
from profiles.models import Event, Profile, Workspace
from profiles.services.engagement import Engagement, engagement_record
from profiles.services.identity import dumps
from segments.compiler import compile_where, q
from segments.definition import DefinitionError

from ..models import Campaign, CampaignStatus, Delivery, DeliveryStatus, DeliveryType
from .audience import audience_tree
from .controls import BEST_TIME_HISTORY, best_hour_sql, person_zone
from .trigger_rules import (
    MISSING,
    Delay,
    EventSpec,
    ExceptionSpec,
    TriggerSpec,
    delay_until,
    parse_conversions,
    parse_delay,
    parse_exceptions,
    parse_triggers,
    property_value,
)
from .variants import CONTROL, Split, assign_variant

logger = logging.getLogger(__name__)

MAIN_STEP = "main"
# Braze's rule for triggered sends: at most one trigger per person and campaign per second.
DEDUPE_WINDOW = timedelta(seconds=1)
DEFAULT_CACHE_SECONDS = 5.0


# --- the campaigns' rules, cached per process -----------------------------------------------------


@dataclass(frozen=True)
class VariantRule:
    id: int
    key: str
    percent: int


@dataclass(frozen=True)
class CampaignRules:
    """What matching and enrolment need of a campaign, parsed once from its JSON."""

    id: int
    workspace_id: int
    name: str
    status: str
    delivery_type: str
    triggers: tuple[TriggerSpec, ...]
    exceptions: tuple[ExceptionSpec, ...]
    delay: Delay
    conversions: tuple[EventSpec, ...]
    conversion_window: timedelta
    starts_at: datetime | None
    ends_at: datetime | None
    launched_at: datetime | None
    reeligible: bool
    reeligibility: timedelta | None
    control_percent: int
    variants: tuple[VariantRule, ...]
    include_segments: tuple[int, ...]
    include_mode: str
    exclude_segments: tuple[int, ...]
    extra_conditions: Any
    default_send_hour: int

    @property
    def match_property(self) -> str:
        return next((spec.match_property for spec in self.exceptions if spec.match_property), "")

    def audience_definition(self) -> dict[str, Any] | None:
        """The audience as one segment definition (include any/all, exclude none, extra
        conditions), so it compiles to one query; None when everyone qualifies. The same tree the
        sender re-checks at send time (``audience.audience_members_among``)."""
        return audience_tree(
            include=self.include_segments,
            include_mode=self.include_mode,
            exclude=self.exclude_segments,
            extra=self.extra_conditions,
        )

    def variant_key(self, profile_id: int) -> str:
        splits = [Split(v.key, v.percent) for v in self.variants]
        if not splits:
            return CONTROL if self.control_percent >= 100 else ""
        return assign_variant(
            campaign_id=self.id, profile_id=profile_id, control_percent=self.control_percent, variants=splits
        )


def campaign_rules(campaign: Campaign) -> CampaignRules:
    """Parse a campaign's rules. Invalid parts (which the builder refuses) are logged and left out:
    one broken trigger never stops the others."""
    triggers, problems = parse_triggers(campaign.triggers)
    exceptions, more = parse_exceptions(campaign.exception_events, triggers=triggers)
    problems += more
    delay, more = parse_delay(campaign.delay)
    problems += more
    conversions, more = parse_conversions(campaign.conversion_events)
    problems += more
    if problems:
        logger.warning("campaign %s has invalid rules: %s", campaign.pk, "; ".join(problems))
    variants = tuple(VariantRule(v.pk, v.key, v.percent) for v in campaign.variants.all())
    return CampaignRules(
        id=campaign.pk,
        workspace_id=campaign.workspace_id,
        name=campaign.name,
        status=campaign.status,
        delivery_type=campaign.delivery_type,
        triggers=tuple(triggers),
        exceptions=tuple(exceptions),
        delay=delay,
        conversions=tuple(conversions),
        conversion_window=timedelta(seconds=campaign.conversion_window_seconds),
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        launched_at=campaign.launched_at,
        reeligible=campaign.reeligible,
        reeligibility=timedelta(seconds=campaign.reeligibility_seconds)
        if campaign.reeligibility_seconds is not None
        else None,
        control_percent=campaign.control_percent,
        variants=variants,
        include_segments=tuple(s.pk for s in campaign.include_segments.all()),
        include_mode=campaign.include_mode,
        exclude_segments=tuple(s.pk for s in campaign.exclude_segments.all()),
        extra_conditions=campaign.extra_conditions,
        default_send_hour=campaign.default_send_hour,
    )


@dataclass(frozen=True)
class WorkspaceRules:
    """The campaigns of one workspace that react to events."""

    triggered: tuple[CampaignRules, ...]  # running action-based campaigns
    exceptions: tuple[CampaignRules, ...]  # running or paused campaigns with exception events
    converting: tuple[CampaignRules, ...]  # launched campaigns with conversion events

    @property
    def empty(self) -> bool:
        return not (self.triggered or self.exceptions or self.converting)

    @property
    def every_event_matters(self) -> bool:
        """A segment-entry trigger may fire on any event of a person."""
        return any(t.segment_id for c in self.triggered for t in c.triggers)

    @property
    def names(self) -> frozenset[str]:
        """The event names any trigger, exception or conversion of these campaigns can match."""
        specs = [t.event for c in self.triggered for t in c.triggers if t.event is not None]
        specs += [x.event for c in self.exceptions for x in c.exceptions]
        specs += [spec for c in self.converting for spec in c.conversions]
        return frozenset(name for spec in specs for name in spec.names)


_cache: dict[int, tuple[float, WorkspaceRules]] = {}


def rules_cache_clear() -> None:
    """Forget the cached rules (the campaign models' signals call this; so can tests)."""
    _cache.clear()


def _cache_seconds() -> float:
    return float(getattr(settings, "CAMPAIGN_RULES_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))


def workspace_rules(workspace_id: int) -> WorkspaceRules:
    """The workspace's reacting campaigns, from a per-process cache of a few seconds: a campaign
    launched, paused or edited in admin takes effect within that time on every worker."""
    now = clock.monotonic()
    cached = _cache.get(workspace_id)
    if cached is not None and now - cached[0] < _cache_seconds():
        return cached[1]
    campaigns = (
        Campaign.objects.filter(workspace_id=workspace_id)
        .exclude(status=CampaignStatus.DRAFT)
        .prefetch_related("variants", "include_segments", "exclude_segments")
    )
    triggered: list[CampaignRules] = []
    exceptions: list[CampaignRules] = []
    converting: list[CampaignRules] = []
    for campaign in campaigns:
        reacts = (
            (campaign.delivery_type == DeliveryType.ACTION and campaign.status == CampaignStatus.RUNNING)
            or (campaign.exception_events and campaign.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED))
            or campaign.conversion_events
        )
        if not reacts:
            continue
        rules = campaign_rules(campaign)
        if campaign.delivery_type == DeliveryType.ACTION and campaign.status == CampaignStatus.RUNNING:
            triggered.append(rules)
        if rules.exceptions and campaign.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
            exceptions.append(rules)
        if rules.conversions:
            converting.append(rules)
    result = WorkspaceRules(tuple(triggered), tuple(exceptions), tuple(converting))
    _cache[workspace_id] = (now, result)
    return result


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    id: int
    profile_id: int
    name: str
    properties: dict[str, Any]
    message_id: str
    timestamp: datetime
    received_at: datetime


def events_that_may_matter(*, rules: WorkspaceRules, workspace_id: int, event_ids: Sequence[int]) -> list[int]:
    """Which of these events any of the workspace's campaigns could react to: all of them when a
    segment-entry trigger looks at every event, else those whose name a trigger, exception or
    conversion names (one query by primary key). Most events of a busy workspace match nothing
    (page views, background traffic): the receiver enqueues no task for them at all."""
    if rules.empty:
        return []
    if rules.every_event_matters:
        return list(event_ids)
    # Raw SQL: this runs on the intake's request path, once per batch; the ORM's compilation cost
    # more than the query.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM profiles_event"
            " WHERE workspace_id = %s AND id = ANY(%s::bigint[]) AND name = ANY(%s::text[])",
            [workspace_id, list(event_ids), sorted(rules.names)],
        )
        return [row[0] for row in cursor.fetchall()]


def load_events(
    *, workspace_id: int, event_ids: Sequence[int], names: Iterable[str] | None = None
) -> list[StoredEvent]:
    """The events (only those named ``names``, if given), oldest first (ties by id): the order
    triggers and exceptions are applied in."""
    events_qs = Event.objects.filter(workspace_id=workspace_id, pk__in=list(event_ids))
    if names is not None:
        events_qs = events_qs.filter(name__in=list(names))
    rows = events_qs.values_list("id", "profile_id", "name", "properties", "message_id", "timestamp", "received_at")
    events = [StoredEvent(*row) for row in rows]
    events.sort(key=lambda e: (e.timestamp, e.id))
    return events


# --- enrolment ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A person who qualifies for a campaign by an event (or an API call): ``occurrence`` makes the
    delivery unique, ``base`` is when the trigger happened (the delay counts from it)."""

    campaign_id: int
    profile_id: int
    occurrence: str
    base: datetime
    event_id: int | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


class Outcome:
    SCHEDULED = "scheduled"
    CONTROL = "control"
    SKIPPED = "skipped"  # recorded: the delay ends after the campaign does
    CANCELLED = "cancelled"  # recorded: its exception event is already there
    NOT_IN_AUDIENCE = "not_in_audience"
    NOT_ELIGIBLE = "not_eligible"  # received before and not re-eligible (yet), or already pending
    DUPLICATE = "duplicate"  # another trigger within the same second, or the same occurrence


@dataclass
class EnrolResult:
    outcomes: dict[tuple[int, int, str], str] = field(default_factory=dict)
    delivery_ids: list[int] = field(default_factory=list)
    due_now: list[int] = field(default_factory=list)  # created scheduled and already due

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)


def lock_key(campaign_id: int, profile_id: int) -> int:
    digest = hashlib.blake2b(f"campaign-person:{campaign_id}:{profile_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_people(pairs: Iterable[tuple[int, int]]) -> None:
    """Transaction-scoped advisory locks per (campaign, person), taken in sorted order (no cycles):
    enrolment and exception cancellation of the same person and campaign run one after the other."""
    keys = sorted({lock_key(c, p) for c, p in pairs})
    if not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY 1) AS keys",
            [keys],
        )


def audience_members(*, rules: CampaignRules, profile_ids: Iterable[int], now: datetime) -> set[int]:
    """Which of these people are in the campaign's audience now: one query over their rows, the
    same compiled conditions as the segments' single-profile check."""
    ids = sorted(set(profile_ids))
    definition = rules.audience_definition()
    if not ids:
        return set()
    if definition is None:
        return set(ids)
    try:
        where = compile_where(definition, workspace_id=rules.workspace_id, now=now, mode="single")
    except DefinitionError as error:
        # A segment was deleted or broken after launch: nobody qualifies until it is fixed.
        logger.warning("campaign %s: audience cannot be evaluated: %s", rules.id, error)
        return set()
    sql = q(
        "SELECT p.id FROM profiles_profile p WHERE p.workspace_id = {} AND p.id = ANY({}::bigint[]) AND {}",
        rules.workspace_id,
        ids,
        where,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql.text, sql.params)
        return {row[0] for row in cursor.fetchall()}


@dataclass(frozen=True)
class _History:
    pending: bool
    received: bool
    last_receipt: datetime | None
    last_created: datetime | None


def _histories(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], _History]:
    """Each (campaign, person)'s past deliveries, summarised in one grouped query."""
    rows = [{"c": c, "p": p} for c, p in set(pairs)]
    if not rows:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d.campaign_id, d.profile_id,"
            " bool_or(d.status IN ('scheduled', 'sending')),"
            " bool_or(d.status IN ('sent', 'control')),"
            " max(CASE WHEN d.status = 'sent' THEN coalesce(d.sent_at, d.scheduled_for)"
            "          WHEN d.status = 'control' THEN d.scheduled_for END),"
            " max(d.created_at)"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(c bigint, p bigint)"
            " JOIN campaigns_delivery d ON d.profile_id = x.p AND d.campaign_id = x.c"
            " GROUP BY d.campaign_id, d.profile_id",
            [dumps(rows)],
        )
        return {(c, p): _History(pending, received, last, created) for c, p, pending, received, last, created in cursor}


def _eligibility(rules: CampaignRules, history: _History | None, now: datetime) -> str | None:
    """Why this person cannot have the campaign again now, or None."""
    if history is None:
        return None
    if history.pending:
        return Outcome.NOT_ELIGIBLE
    if history.last_created is not None and history.last_created > now - DEDUPE_WINDOW:
        return Outcome.DUPLICATE
    if not history.received:
        return None  # cancelled, skipped or failed before: never received, so eligible again
    if not rules.reeligible:
        return Outcome.NOT_ELIGIBLE
    if rules.reeligibility and history.last_receipt is not None and history.last_receipt > now - rules.reeligibility:
        return Outcome.NOT_ELIGIBLE
    return None


def match_key(value: Any) -> str:
    """The text a match property's value is compared by: 42, 42.0 and "42" all match."""
    if value is None or value is MISSING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal) and float(value).is_integer():
        return str(int(value))
    return str(value)[:255]


def _match_value(rules: CampaignRules, properties: Mapping[str, Any]) -> str:
    prop = rules.match_property
    if not prop:
        return ""
    return match_key(property_value(properties, prop))


def _profiles_zones(workspace_id: int, profile_ids: Iterable[int]) -> dict[int, str]:
    return dict(
        Profile.objects.filter(workspace_id=workspace_id, pk__in=list(set(profile_ids))).values_list("id", "time_zone")
    )


def _best_times(
    rules: CampaignRules, profile_ids: Sequence[int], base: datetime, zones: Mapping[int, ZoneInfo]
) -> dict[int, datetime]:
    """Each person's best time after ``base``: the local hour they most often open the app or a
    message (the delivery controls' estimate from their own history), else the campaign's default
    hour, in their time zone. Quiet hours are the sender's to apply, as for any send."""
    ids = sorted(set(profile_ids))
    weekday = base.isoweekday()
    sql, params = best_hour_sql(
        recipients_sql="(SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS tz)",
        zone_sql="r.tz",
        weekday=weekday,
        since=base - BEST_TIME_HISTORY,
    )
    # best_hour_sql's own parameters are [weekday, names, since]; the recipients relation sits
    # between the weekday and the names in the statement.
    ordered: list[Any] = [params[0], ids, [zones[i].key for i in ids], *params[1:]]
    with connection.cursor() as cursor:
        cursor.execute(sql, ordered)
        hours = {profile_id: hour for profile_id, hour in cursor.fetchall()}
    return {
        profile_id: delay_until(
            Delay("days_at", days=0, at=time(hour=hours.get(profile_id, rules.default_send_hour) % 24)),
            base=base,
            tz=zones[profile_id],
        )
        for profile_id in ids
    }


def _already_excepted(
    *, workspace_id: int, rules_by_id: Mapping[int, CampaignRules], wanted: Sequence[tuple[Candidate, datetime]]
) -> dict[tuple[int, int, str], str]:
    """Triggers whose exception event is already stored (at or after the trigger, before the send):
    they are recorded as cancelled at once. Returns the exception's name per candidate key."""
    relevant = [(c, until) for c, until in wanted if rules_by_id[c.campaign_id].exceptions]
    if not relevant:
        return {}
    names = {name for c, _ in relevant for spec in rules_by_id[c.campaign_id].exceptions for name in spec.event.names}
    since = min(c.base for c, _ in relevant)
    events = list(
        Event.objects.filter(
            workspace_id=workspace_id,
            profile_id__in={c.profile_id for c, _ in relevant},
            name__in=names,
            timestamp__gte=since,
        ).values_list("profile_id", "name", "properties", "timestamp")
    )
    by_profile: dict[int, list[tuple[str, dict[str, Any], datetime]]] = defaultdict(list)
    for profile_id, name, properties, at in events:
        by_profile[profile_id].append((name, properties, at))
    found: dict[tuple[int, int, str], str] = {}
    for candidate, until in relevant:
        rules = rules_by_id[candidate.campaign_id]
        match = _match_value(rules, candidate.properties)
        for name, properties, at in by_profile.get(candidate.profile_id, ()):
            if not candidate.base <= at <= until:
                continue
            for spec in rules.exceptions:
                if not spec.event.matches(name, properties):
                    continue
                if spec.match_property and match_key(property_value(properties, spec.match_property)) != match:
                    continue
                found[(candidate.campaign_id, candidate.profile_id, candidate.occurrence)] = name
    return found


def enrol(
    *,
    workspace_id: int,
    rules_by_id: Mapping[int, CampaignRules],
    candidates: Sequence[Candidate],
    now: datetime | None = None,
    check_audience: bool = True,
    enqueue_due: bool = True,
) -> EnrolResult:
    """Create the deliveries of these candidates (in the caller's transaction, which must be open).

    Set-wise: one query each for the locks, the people's zones, their delivery histories, stored
    exception events, one audience query per campaign, one insert. Idempotent: a candidate whose
    (campaign, person, occurrence) exists already creates nothing. Rows already due are enqueued
    for the sender after commit (``enqueue_due``), or left to the caller (``result.due_now``), who
    may send them itself once committed.
    """
    now = now or timezone.now()
    result = EnrolResult()
    if not candidates:
        return result
    lock_people((c.campaign_id, c.profile_id) for c in candidates)
    default_zone = Workspace.objects.values_list("default_time_zone", flat=True).get(pk=workspace_id)
    zones = {
        profile_id: person_zone(time_zone=name, default_time_zone=default_zone)
        for profile_id, name in _profiles_zones(workspace_id, (c.profile_id for c in candidates)).items()
    }

    # The audience, per campaign, over the people it has candidates for.
    by_campaign: dict[int, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        if candidate.profile_id in zones:  # people deleted since the event are nobody's audience
            by_campaign[candidate.campaign_id].append(candidate)
    members: dict[int, set[int]] = {}
    for campaign_id, group in by_campaign.items():
        people = {c.profile_id for c in group}
        members[campaign_id] = (
            audience_members(rules=rules_by_id[campaign_id], profile_ids=people, now=now) if check_audience else people
        )

    histories = _histories((c.campaign_id, c.profile_id) for c in candidates)
    seen: set[tuple[int, int]] = set()
    wanted: list[tuple[Candidate, datetime]] = []
    for candidate in candidates:
        key = (candidate.campaign_id, candidate.profile_id, candidate.occurrence)
        pair = (candidate.campaign_id, candidate.profile_id)
        rules = rules_by_id[candidate.campaign_id]
        if candidate.profile_id not in members.get(candidate.campaign_id, set()):
            result.outcomes[key] = Outcome.NOT_IN_AUDIENCE
            continue
        if pair in seen:  # one enrolment per person and campaign per batch (and per second)
            result.outcomes[key] = Outcome.DUPLICATE
            continue
        why_not = _eligibility(rules, histories.get(pair), now)
        if why_not is not None:
            result.outcomes[key] = why_not
            continue
        seen.add(pair)
        wanted.append((candidate, candidate.base))

    # When each one is due.
    due: dict[tuple[int, int, str], datetime] = {}
    best_time_groups: dict[tuple[int, datetime], list[Candidate]] = defaultdict(list)
    for candidate, base in wanted:
        rules = rules_by_id[candidate.campaign_id]
        key = (candidate.campaign_id, candidate.profile_id, candidate.occurrence)
        if rules.delay.type == "best_time":
            best_time_groups[(candidate.campaign_id, base)].append(candidate)
        else:
            due[key] = delay_until(rules.delay, base=base, tz=zones[candidate.profile_id])
    for (campaign_id, base), group in best_time_groups.items():
        times = _best_times(rules_by_id[campaign_id], [c.profile_id for c in group], base, zones)
        for candidate in group:
            due[(campaign_id, candidate.profile_id, candidate.occurrence)] = times.get(candidate.profile_id, base)

    excepted = _already_excepted(
        workspace_id=workspace_id,
        rules_by_id=rules_by_id,
        wanted=[(c, due[(c.campaign_id, c.profile_id, c.occurrence)]) for c, _ in wanted],
    )

    rows: list[Delivery] = []
    for candidate, _base in wanted:
        rules = rules_by_id[candidate.campaign_id]
        key = (candidate.campaign_id, candidate.profile_id, candidate.occurrence)
        scheduled_for = due[key]
        variant_key = rules.variant_key(candidate.profile_id)
        variant_id = next((v.id for v in rules.variants if v.key == variant_key), None)
        status, reason = DeliveryStatus.SCHEDULED, ""
        if rules.ends_at is not None and scheduled_for > rules.ends_at:
            status, reason = (
                DeliveryStatus.SKIPPED,
                f"the delay ends after the campaign's end ({rules.ends_at:%Y-%m-%d %H:%M} UTC)",
            )
        elif key in excepted:
            status, reason = DeliveryStatus.CANCELLED, f"exception event {excepted[key]}"
        elif variant_key == CONTROL:
            status, reason = DeliveryStatus.CONTROL, "control group"
        elif variant_id is None:
            status, reason = DeliveryStatus.SKIPPED, "the campaign has no variant to send"
        result.outcomes[key] = {
            DeliveryStatus.SCHEDULED: Outcome.SCHEDULED,
            DeliveryStatus.CONTROL: Outcome.CONTROL,
            DeliveryStatus.SKIPPED: Outcome.SKIPPED,
            DeliveryStatus.CANCELLED: Outcome.CANCELLED,
        }[status]
        rows.append(
            Delivery(
                workspace_id=workspace_id,
                campaign_id=candidate.campaign_id,
                step_key=MAIN_STEP,
                profile_id=candidate.profile_id,
                occurrence=candidate.occurrence[:255],
                variant_id=variant_id,
                status=status,
                reason=reason,
                scheduled_for=scheduled_for,
                trigger_event_id=candidate.event_id,
                trigger_properties=dict(candidate.properties),
                match_value=_match_value(rules, candidate.properties),
            )
        )
    if not rows:
        return result
    # ON CONFLICT DO NOTHING on (campaign, step, person, occurrence): a replayed event or a retried
    # task creates nothing. The rows are read back for their ids (bulk_create cannot return the ids
    # of rows it skipped); a row this call inserted has the creation time bulk_create stamped on the
    # object (rows of an earlier call are older, and the per-person lock keeps others out meanwhile).
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    stamped = {(r.campaign_id, r.profile_id, r.occurrence): r.created_at for r in rows}
    found = Delivery.objects.filter(
        campaign_id__in={r.campaign_id for r in rows},
        profile_id__in={r.profile_id for r in rows},
        occurrence__in={r.occurrence for r in rows},
        step_key=MAIN_STEP,
    ).values_list("id", "campaign_id", "profile_id", "occurrence", "status", "scheduled_for", "created_at")
    created: list[tuple[int, int, int, str, datetime]] = []  # id, campaign, person, status, due
    for delivery_id, campaign_id, profile_id, occurrence, row_status, scheduled_for, created_at in found:
        key = (campaign_id, profile_id, occurrence)
        if key not in stamped:
            continue
        if created_at == stamped[key]:
            created.append((delivery_id, campaign_id, profile_id, row_status, scheduled_for))
        else:
            result.outcomes[key] = Outcome.DUPLICATE
    result.delivery_ids = [row[0] for row in created]

    controls = [
        Engagement(
            profile_id=profile_id,
            name=CONTROL_GROUP_ENROLLED,
            dedupe_key=f"delivery:{delivery_id}",
            properties={PROP_CAMPAIGN_ID: campaign_id, PROP_VARIANT: CONTROL, PROP_SEND_ID: str(delivery_id)},
            timestamp=now,
        )
        for delivery_id, campaign_id, profile_id, row_status, _due in created
        if row_status == DeliveryStatus.CONTROL
    ]
    if controls:
        engagement_record(workspace_id=workspace_id, engagements=controls)
    result.due_now = [row[0] for row in created if row[3] == DeliveryStatus.SCHEDULED and row[4] <= now]
    if result.due_now and enqueue_due:
        hand_off(result.due_now)
    return result


def hand_off(delivery_ids: list[int]) -> None:
    """Ask the sender to send these due deliveries as soon as this transaction commits, rather than
    at its next sweep (an undelayed trigger should leave within a second or two). The sweep remains
    the safety net: a lost enqueue only delays the send."""
    try:
        deliveries_send_task = importlib.import_module("campaigns.tasks").deliveries_send_task
    except (ImportError, AttributeError):
        return  # no direct hand-off: the sender's sweep picks the rows up
    ids = list(delivery_ids)
    transaction.on_commit(lambda: _enqueue_send(deliveries_send_task, ids))


def _enqueue_send(task: Any, ids: list[int]) -> None:
    # The sender's own queue when the deployment gives it one (CAMPAIGNS_SEND_QUEUE), as its sweep does.
    queue = getattr(settings, "CAMPAIGNS_SEND_QUEUE", None) or None
    try:
        task.apply_async(args=[ids], queue=queue)
    except Exception:  # the broker is down: the sweep sends them, a little later
        logger.exception("could not enqueue the sender for %d due deliveries", len(ids))


# --- exception events -----------------------------------------------------------------------------


def _cancel(workspace_id: int, cancellations: list[dict[str, Any]]) -> int:
    """Cancel pending deliveries (and control enrolments not yet due) that the exceptions cover.

    Conditional: only ``scheduled`` rows (a row the sender claimed is beyond recall), only those
    whose trigger happened at or before the exception, and with a match property, only those whose
    trigger carried the same value."""
    if not cancellations:
        return 0
    lock_people((c["c"], c["p"]) for c in cancellations)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_delivery d SET status = 'cancelled', reason = x.r"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(c bigint, p bigint, m text, ts timestamptz, r text)"
            " WHERE d.campaign_id = x.c AND d.profile_id = x.p AND d.workspace_id = %s"
            " AND (d.status = 'scheduled' OR (d.status = 'control' AND d.scheduled_for > x.ts))"
            " AND (x.m IS NULL OR d.match_value = x.m)"
            " AND NOT EXISTS (SELECT 1 FROM profiles_event e WHERE e.id = d.trigger_event_id AND e.timestamp > x.ts)"
            " RETURNING d.id",
            [dumps(cancellations), workspace_id],
        )
        return len(cursor.fetchall())


def _exceptions_of(rules: WorkspaceRules, events: Sequence[StoredEvent]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        for campaign in rules.exceptions:
            for spec in campaign.exceptions:
                if not spec.event.matches(event.name, event.properties):
                    continue
                match = None
                if spec.match_property:
                    match = match_key(property_value(event.properties, spec.match_property))
                out.append(
                    {
                        "c": campaign.id,
                        "p": event.profile_id,
                        "m": match,
                        "ts": event.timestamp.isoformat(),
                        "r": f"exception event {event.name}"[:255],
                    }
                )
                break
    return out


# --- triggers -------------------------------------------------------------------------------------


def _qualifies(campaign: CampaignRules, event: StoredEvent) -> bool:
    """The campaign's window: people who fired the trigger before launch (or before the start, or
    after the end) do not qualify."""
    if campaign.launched_at is not None and event.timestamp < campaign.launched_at:
        return False
    if campaign.starts_at is not None and event.timestamp < campaign.starts_at:
        return False
    return not (campaign.ends_at is not None and event.timestamp > campaign.ends_at)


def _event_candidates(rules: WorkspaceRules, events: Sequence[StoredEvent]) -> list[Candidate]:
    candidates = []
    last: dict[tuple[int, int], datetime] = {}
    for event in events:
        for campaign in rules.triggered:
            if not _qualifies(campaign, event):
                continue
            if not any(
                t.event is not None and t.event.matches(event.name, event.properties) for t in campaign.triggers
            ):
                continue
            pair = (campaign.id, event.profile_id)
            previous = last.get(pair)
            if previous is not None and event.timestamp - previous < DEDUPE_WINDOW:
                continue  # at most one trigger per person and campaign per second
            last[pair] = event.timestamp
            candidates.append(
                Candidate(
                    campaign_id=campaign.id,
                    profile_id=event.profile_id,
                    occurrence=event.message_id,
                    base=event.timestamp,
                    event_id=event.id,
                    properties=event.properties,
                )
            )
    return candidates


@dataclass
class ProcessResult:
    events: int = 0
    enrolled: int = 0
    due_now: list[int] = field(default_factory=list)
    cancelled: int = 0
    converted: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def campaign_events_process(*, workspace_id: int, event_ids: Sequence[int], enqueue_due: bool = True) -> ProcessResult:
    """Apply one batch of stored events to the workspace's campaigns: triggers, segment entries,
    exception events, conversions. Idempotent (a retried or duplicated task changes nothing more).

    Deliveries due at once are enqueued for the sender after commit, or with ``enqueue_due=False``
    returned in ``due_now`` for the caller to send (the triggers task does, saving a queue hop)."""
    from .conversions import conversions_record
    from .segment_entry import segment_entry_candidates

    result = ProcessResult()
    rules = workspace_rules(workspace_id)
    if rules.empty:
        return result
    # Most events of a busy workspace match nothing (the receiver usually left them out already;
    # the backlog's rows and a rules change since then are why this filters again): only the
    # events whose name matters are loaded, in the same query.
    events = load_events(
        workspace_id=workspace_id, event_ids=event_ids, names=None if rules.every_event_matters else rules.names
    )
    result.events = len(events)
    if not events:
        return result
    now = timezone.now()
    rules_by_id = {c.id: c for c in (*rules.triggered, *rules.exceptions)}
    with transaction.atomic():
        candidates = _event_candidates(rules, events)
        candidates += segment_entry_candidates(workspace_id=workspace_id, rules=rules.triggered, events=events, now=now)
        enrolled = enrol(
            workspace_id=workspace_id, rules_by_id=rules_by_id, candidates=candidates, now=now, enqueue_due=enqueue_due
        )
        result.enrolled = len(enrolled.delivery_ids)
        result.due_now = enrolled.due_now
        for outcome in enrolled.outcomes.values():
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
        # After the inserts: an exception in this batch cancels the triggers that came before it
        # (the timestamps decide, not the position in the batch).
        result.cancelled = _cancel(workspace_id, _exceptions_of(rules, events))
    if rules.converting:
        result.converted = conversions_record(workspace_id=workspace_id, campaigns=rules.converting, events=events)
    return result


def new_occurrence() -> str:
    return uuid.uuid4().hex
