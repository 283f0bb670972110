"""The sender: every due Delivery, whatever created it (a scheduled occurrence, a trigger, an API
call, a follow-up step), leaves through here. It is the one place every send passes, so the
delivery controls (quiet hours, frequency caps, the rate limit) are enforced here.

**Never twice, never lost.** Three layers, each cheap:

1. ``deliveries_enqueue_due`` (beat, every few seconds) claims due ``scheduled`` rows in bounded
   batches with ``SELECT ... FOR UPDATE SKIP LOCKED`` and marks them ``sending`` (``claimed_at``),
   commits, then enqueues one ``delivery_send_task`` per batch (on commit). Two beats never claim
   the same row.
2. ``delivery_send_batch`` sends each message through ``channels.dispatch_prepare`` with the
   idempotency key ``delivery:<delivery id>:<message id>``: whoever runs a delivery again (a
   retried or duplicated task, the sweep after a worker died) finds the same Dispatch rows.
3. ``dispatch_send`` claims each dispatch (``pending -> sending``) before calling the provider, so
   a dispatch already sent, or being sent, is never sent again.

A delivery left ``sending`` longer than ``CAMPAIGNS_CLAIM_TIMEOUT`` (its worker died, its enqueue
was lost) is re-enqueued by the same beat task; re-running it is safe by (2) and (3). A dispatch
whose worker died mid-call is given up by channels' sweep ("outcome unknown": at most once); the
delivery then records that.

**Steps.** A delivery is one step of a journey (``step_key``). The main step sends the variant's
undelayed messages; each message with ``delay_seconds`` becomes a follow-up delivery (step
``msg<id>``) scheduled that much later, created when the main step has run, re-checked when it
falls due, cancellable by exception events like any scheduled row. A multi-step journey is more
steps, each creating the next.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels.models import Dispatch, DispatchStatus
from channels.rendering import Aborted, RenderFailed, render_content
from channels.services.addresses import Unreachable, resolve_addresses
from channels.services.dispatch import dispatch_prepare, dispatch_send
from channels.services.dispatch_batch import (
    DispatchRequest,
    SendManyResult,
    dispatch_prepare_many,
    dispatch_send_many,
)
from channels.transports.base import TransientError
from profiles.engagement import PROP_CAMPAIGN_ID, PROP_CHANNEL, PROP_SEND_ID, PROP_VARIANT
from profiles.models import Profile, Workspace
from profiles.services.identity import dumps

from ..models import (
    Campaign,
    CampaignStatus,
    ChannelMessage,
    Delivery,
    DeliveryStatus,
    DeliveryType,
    FrequencyCapRule,
    QuietHours,
    QuietHoursAction,
    Variant,
)
from .audience import audience_members_among
from .controls import (
    CapCounts,
    cap_counts,
    cap_rules,
    describe_rule,
    lock_people_for_caps,
    minute_start,
    person_zone,
    quiet_hours_end,
    quiet_windows,
    rate_limit_reserve,
    throttled_campaign_ids,
)

logger = logging.getLogger(__name__)

MAIN_STEP = "main"
FOLLOW_UP_PREFIX = "msg"
TERMINAL_DISPATCH = frozenset(
    {
        DispatchStatus.SENT,
        DispatchStatus.DELIVERED,
        DispatchStatus.FAILED,
        DispatchStatus.BOUNCED,
        DispatchStatus.ABORTED,
    }
)
SENT_DISPATCH = frozenset({DispatchStatus.SENT, DispatchStatus.DELIVERED, DispatchStatus.BOUNCED})
# A delivery whose sends failed for a temporary reason is tried again this much later, doubling.
RETRY_BACKOFF = timedelta(seconds=30)
MAX_RETRIES = 8

# Reasons, as the "Why not?" page and the progress panel show them.
REASON_STOPPED = "the campaign was stopped"
REASON_ENDED = "the campaign had ended by the send time"
REASON_LEFT_AUDIENCE = "not in audience at send time"
REASON_VARIANT_GONE = "the variant was deleted"
REASON_NO_MESSAGE = "no message at this step"
REASON_QUIET = "quiet hours"
REASON_CAPPED = "frequency-capped"
REASON_RATE = "rate limit: waiting for the next minute"
REASON_ABORTED = "aborted by the template"
REASON_GAVE_UP = "gave up: the worker sending it was lost {attempts} times"


def send_batch_size() -> int:
    return int(getattr(settings, "CAMPAIGNS_SEND_BATCH", 300))


def claim_timeout() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "CAMPAIGNS_CLAIM_TIMEOUT", 600)))


def max_claims() -> int:
    return int(getattr(settings, "CAMPAIGNS_MAX_CLAIMS", 5))


def max_in_flight() -> int:
    return int(getattr(settings, "CAMPAIGNS_MAX_IN_FLIGHT", 10_000))


def deliveries_in_flight() -> int:
    """How many deliveries are claimed and not finished (served by the partial index on them)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM campaigns_delivery WHERE status = 'sending'")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


# --- claiming ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnqueueResult:
    batches: list[list[int]]
    recovered: int
    gave_up: int

    @property
    def claimed(self) -> int:
        return sum(len(batch) for batch in self.batches)


def _enqueue(ids: list[int]) -> None:
    from ..tasks import delivery_send_task  # tasks import this module

    # CAMPAIGNS_SEND_QUEUE routes the sender to workers of its own (None: the default queue).
    queue = getattr(settings, "CAMPAIGNS_SEND_QUEUE", None)
    if queue:
        transaction.on_commit(lambda: delivery_send_task.apply_async(args=(ids,), queue=str(queue)))
    else:
        transaction.on_commit(lambda: delivery_send_task.delay(ids))


def deliveries_enqueue_due(
    *, now: datetime | None = None, batch_size: int | None = None, max_batches: int = 50, enqueue: bool = True
) -> EnqueueResult:
    """Claim due deliveries of running campaigns in batches (oldest first) and enqueue a send task
    per batch after each claim commits; recover stale claims. Bounded: at most ``max_batches``
    batches per call (beat calls again in a few seconds), and no more than keeps
    ``CAMPAIGNS_MAX_IN_FLIGHT`` deliveries claimed at once: claiming a big campaign far ahead of the
    workers would only age the claims in the broker's queue. ``enqueue=False`` only claims (tests
    and the benchmark drive ``delivery_send_batch`` themselves)."""
    now = now or timezone.now()
    batch_size = batch_size or send_batch_size()
    recovered, gave_up = deliveries_recover_stale(now=now, enqueue=enqueue)
    throttled = throttled_campaign_ids(now=now)
    batches: list[list[int]] = []
    room = max_in_flight() - deliveries_in_flight()
    max_batches = min(max_batches, max(0, room) // batch_size + (1 if room % batch_size > 0 else 0))
    for _ in range(max_batches):
        with transaction.atomic(), connection.cursor() as cursor:
            # Served by the partial index on scheduled rows (delivery_due_idx), oldest first. Paused
            # and stopped campaigns' rows are left alone; throttled ones wait for the next minute.
            # The pick is a MATERIALIZED CTE: as an IN (subquery) the planner may rescan it inside
            # a join, and with SKIP LOCKED each rescan can pick other rows, claiming more than the
            # LIMIT (seen once an index changed the plan).
            cursor.execute(
                "WITH picked AS MATERIALIZED ("
                "  SELECT x.id FROM campaigns_delivery x JOIN campaigns_campaign c ON c.id = x.campaign_id"
                "  WHERE x.status = 'scheduled' AND x.scheduled_for <= %s AND c.status = 'running'"
                "    AND NOT (x.campaign_id = ANY(%s::bigint[]))"
                "  ORDER BY x.scheduled_for LIMIT %s FOR UPDATE OF x SKIP LOCKED"
                ") UPDATE campaigns_delivery d SET status = 'sending', claimed_at = %s"
                " FROM picked WHERE d.id = picked.id RETURNING d.id",
                [now, throttled, batch_size, now],
            )
            ids = sorted(row[0] for row in cursor.fetchall())
            if ids and enqueue:
                _enqueue(ids)
        if ids:
            batches.append(ids)
        if len(ids) < batch_size:
            break
    return EnqueueResult(batches=batches, recovered=recovered, gave_up=gave_up)


def deliveries_recover_stale(*, now: datetime, enqueue: bool = True, limit: int = 10_000) -> tuple[int, int]:
    """Deliveries claimed longer ago than the claim timeout (a worker died mid-batch, an enqueue
    was lost): claim them again and re-enqueue, or give up after ``CAMPAIGNS_MAX_CLAIMS``.
    Returns (recovered, given up)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            # A MATERIALIZED pick, as in deliveries_enqueue_due: LIMIT with SKIP LOCKED must run once.
            "WITH picked AS MATERIALIZED (SELECT id FROM campaigns_delivery WHERE status = 'sending'"
            "  AND claimed_at < %s ORDER BY claimed_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE campaigns_delivery d SET claimed_at = %s, attempts = d.attempts + 1"
            " FROM picked WHERE d.id = picked.id RETURNING d.id, d.attempts",
            [now - claim_timeout(), limit, now],
        )
        rows = cursor.fetchall()
        give_up = [delivery_id for delivery_id, attempts in rows if attempts >= max_claims()]
        retry = sorted(delivery_id for delivery_id, attempts in rows if attempts < max_claims())
        if give_up:
            cursor.execute(
                "UPDATE campaigns_delivery SET status = 'failed', reason = 'gave up: the worker sending it was lost '"
                " || attempts || ' times', sent_at = NULL WHERE id = ANY(%s) AND status = 'sending'",
                [give_up],
            )
        if enqueue:
            for start in range(0, len(retry), send_batch_size()):
                _enqueue(retry[start : start + send_batch_size()])
    if rows:
        logger.warning("recovered %d stale deliveries, gave up on %d", len(retry), len(give_up))
    return len(retry), len(give_up)


def deliveries_claim(*, delivery_ids: Sequence[int], now: datetime) -> None:
    """At the start of a send task: claim those of ``delivery_ids`` that are due and still
    ``scheduled`` (a trigger's direct hand-off, which does not wait for the beat), and restamp
    ``claimed_at`` on those claimed long ago, so the stale-claim sweep measures the time since
    work started on them, not the time they waited in the broker's queue.

    Claims younger than a tenth of ``CAMPAIGNS_CLAIM_TIMEOUT`` are left as they are (the usual
    case: the beat claimed them seconds ago): with the task's time limit under the timeout, such a
    run still ends before the sweep would look, and each row is written once less per send."""
    restamp_before = now - claim_timeout() / 10
    with connection.cursor() as cursor:
        # The rows are found by primary key alone: the status tests sit in a CASE, which the
        # planner cannot match to the partial indexes on scheduled and sending rows. Written as
        # plain conditions, it would AND those indexes in when their statistics lag (a campaign
        # that just materialised 100,000 rows looks empty) and read every due row per batch.
        cursor.execute(
            "UPDATE campaigns_delivery d SET status = 'sending', claimed_at = %s WHERE d.id IN ("
            " SELECT x.id FROM campaigns_delivery x JOIN campaigns_campaign c ON c.id = x.campaign_id"
            " WHERE x.id = ANY(%s) AND CASE x.status WHEN 'sending' THEN x.claimed_at < %s"
            "  WHEN 'scheduled' THEN x.scheduled_for <= %s AND c.status = 'running' ELSE false END"
            " FOR UPDATE OF x SKIP LOCKED)",
            [now, list(delivery_ids), restamp_before, now],
        )


# --- sending ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What becomes of one delivery (written for the whole batch in one statement)."""

    status: str
    reason: str = ""
    dispatch_ids: list[str] = field(default_factory=list)
    sent_channels: list[str] = field(default_factory=list)
    sent_at: datetime | None = None
    scheduled_for: datetime | None = None  # when put back to ``scheduled``
    retried: bool = False
    follow_ups: bool = False  # the step ran: create the next steps


@dataclass
class _Workspace:
    zone_default: str
    quiet_rows: list[QuietHours]
    rules: list[FrequencyCapRule]


@dataclass
class _Prepared:
    message: ChannelMessage
    dispatches: list[Dispatch]


@dataclass
class _Plan:
    """One delivery's messages as rendered, and the channels chosen to send."""

    delivery: Delivery
    rendered: list[tuple[ChannelMessage, dict[str, Any]]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    chosen: list[tuple[ChannelMessage, dict[str, Any]]] = field(default_factory=list)
    prepared: list[_Prepared] = field(default_factory=list)


@dataclass(frozen=True)
class BatchResult:
    counts: dict[str, int]


def _campaign_variables(delivery: Delivery) -> dict[str, Any]:
    campaign = delivery.campaign
    variant = delivery.variant
    return {
        "id": campaign.pk,
        "name": campaign.name,
        "tags": list(campaign.tags),
        "variant": variant.key if variant else "",
        "variant_name": (variant.name or variant.key) if variant else "",
        "send_id": str(delivery.pk),
    }


def _step_messages(delivery: Delivery, messages: Sequence[ChannelMessage]) -> list[ChannelMessage]:
    if delivery.step_key == MAIN_STEP:
        return [message for message in messages if message.delay_seconds == 0]
    if delivery.step_key.startswith(FOLLOW_UP_PREFIX):
        wanted = delivery.step_key[len(FOLLOW_UP_PREFIX) :]
        return [message for message in messages if str(message.pk) == wanted]
    return []


def _render(plan: _Plan, messages: Sequence[ChannelMessage]) -> None:
    delivery = plan.delivery
    properties = dict(delivery.trigger_properties or {})
    campaign = delivery.campaign
    for message in messages:
        result = render_content(
            channel=message.channel,
            template=message.template,
            profile=delivery.profile,
            event_properties=properties if campaign.delivery_type == DeliveryType.ACTION else None,
            api_trigger_properties=properties if campaign.delivery_type == DeliveryType.API else None,
            campaign=_campaign_variables(delivery),
        )
        if isinstance(result, Aborted):
            plan.skipped.append(f"{REASON_ABORTED}: {result.reason}")
        elif isinstance(result, RenderFailed):
            plan.failed.append(f"{message.channel}: template error: {result.reason}")
        else:
            plan.rendered.append((message, result))


def _load_workspaces(ids: Iterable[int]) -> dict[int, _Workspace]:
    found: dict[int, _Workspace] = {}
    for workspace in Workspace.objects.filter(pk__in=set(ids)).only("pk", "default_time_zone"):
        found[workspace.pk] = _Workspace(
            zone_default=workspace.default_time_zone,
            quiet_rows=list(QuietHours.objects.filter(workspace=workspace)),
            rules=cap_rules(workspace_id=workspace.pk),
        )
    return found


def delivery_send_batch(*, delivery_ids: Sequence[int], now: datetime | None = None) -> BatchResult:
    """Send these deliveries (those still ``scheduled`` and due are claimed first; those another
    run holds in ``sending`` are sent too, safely: see the module docstring). Returns how many
    ended in each status. Must run outside a transaction: providers are called."""
    now = now or timezone.now()
    deliveries_claim(delivery_ids=delivery_ids, now=now)
    # By primary key only, the status checked here (see deliveries_claim on the partial indexes).
    deliveries = [
        delivery
        for delivery in Delivery.objects.filter(pk__in=list(delivery_ids)).select_related("profile").order_by("pk")
        if delivery.status == DeliveryStatus.SENDING
    ]
    if not deliveries:
        return BatchResult(counts={})
    # A batch is mostly one campaign and variant: one object each, not one per row (select_related).
    campaigns = Campaign.objects.in_bulk({d.campaign_id for d in deliveries})
    variants = Variant.objects.in_bulk({d.variant_id for d in deliveries if d.variant_id})
    for delivery in deliveries:
        delivery.campaign = campaigns[delivery.campaign_id]
        delivery.variant = variants.get(delivery.variant_id) if delivery.variant_id else None
    messages_by_variant: dict[int, list[ChannelMessage]] = defaultdict(list)
    for message in ChannelMessage.objects.filter(
        variant_id__in={d.variant_id for d in deliveries if d.variant_id}
    ).order_by("position", "pk"):
        messages_by_variant[message.variant_id].append(message)
    workspaces = _load_workspaces(d.workspace_id for d in deliveries)

    outcomes: dict[int, Outcome] = {}
    plans: list[_Plan] = []
    outside = _outside_audience(deliveries, now)
    for delivery in deliveries:
        outcome = _precheck(delivery, now, outside)
        if outcome is not None:
            outcomes[delivery.pk] = outcome
            continue
        plan = _Plan(delivery)
        messages = _step_messages(delivery, messages_by_variant.get(delivery.variant_id or 0, []))
        _render(plan, messages)
        plans.append(plan)

    plans = _apply_quiet_hours(plans, workspaces, outcomes, now)
    plans = _apply_rate_limits(plans, outcomes, now)
    _choose_and_prepare(plans, workspaces, outcomes, now)
    _send(plans, outcomes)
    _write(outcomes, now)
    follow_ups_create(
        deliveries=[d for d in deliveries if outcomes.get(d.pk) and outcomes[d.pk].follow_ups],
        messages_by_variant=messages_by_variant,
        now=now,
    )
    counts: dict[str, int] = defaultdict(int)
    for outcome in outcomes.values():
        counts[outcome.status] += 1
    return BatchResult(counts=dict(counts))


def _needs_recheck(delivery: Delivery) -> bool:
    """Triggered sends and later steps look at the audience again when they fall due (the person
    may have left it since); a scheduled occurrence's main step was selected moments ago."""
    campaign = delivery.campaign
    return campaign.recheck_audience and (
        campaign.delivery_type == DeliveryType.ACTION or delivery.step_key != MAIN_STEP
    )


def _outside_audience(deliveries: Sequence[Delivery], now: datetime) -> set[int]:
    """Ids of the deliveries whose person is no longer in the audience: one query per campaign."""
    by_campaign: dict[int, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        if delivery.campaign.status == CampaignStatus.RUNNING and _needs_recheck(delivery):
            by_campaign[delivery.campaign_id].append(delivery)
    outside: set[int] = set()
    for group in by_campaign.values():
        inside = audience_members_among(campaign=group[0].campaign, profile_ids=[d.profile_id for d in group], now=now)
        outside |= {d.pk for d in group if d.profile_id not in inside}
    return outside


def _precheck(delivery: Delivery, now: datetime, outside: set[int]) -> Outcome | None:
    """The campaign's state and the audience: an outcome when the delivery goes no further."""
    campaign = delivery.campaign
    if campaign.status == CampaignStatus.STOPPED:
        return Outcome(DeliveryStatus.CANCELLED, REASON_STOPPED)
    if campaign.status != CampaignStatus.RUNNING:
        # Paused (or not started): back to the queue as it was; resuming sends it.
        return Outcome(DeliveryStatus.SCHEDULED, scheduled_for=delivery.scheduled_for)
    if campaign.delivery_type != DeliveryType.SCHEDULED and campaign.ends_at and campaign.ends_at < now:
        return Outcome(DeliveryStatus.SKIPPED, REASON_ENDED)
    if delivery.variant_id is None:
        return Outcome(DeliveryStatus.SKIPPED, REASON_VARIANT_GONE)
    if delivery.pk in outside:
        return Outcome(DeliveryStatus.SKIPPED, REASON_LEFT_AUDIENCE)
    return None


def _zone_of(delivery: Delivery, workspaces: dict[int, _Workspace]) -> Any:
    return person_zone(
        time_zone=delivery.profile.time_zone, default_time_zone=workspaces[delivery.workspace_id].zone_default
    )


def _apply_quiet_hours(
    plans: list[_Plan], workspaces: dict[int, _Workspace], outcomes: dict[int, Outcome], now: datetime
) -> list[_Plan]:
    """A send that would reach a person in their quiet hours waits for the window's end (the
    whole delivery moves, so a multichannel message still arrives together) or is dropped for
    that channel, as the campaign (or workspace) says."""
    kept = []
    for plan in plans:
        delivery = plan.delivery
        channels = {message.channel for message, _ in plan.rendered}
        windows = quiet_windows(
            campaign=delivery.campaign, workspace_rows=workspaces[delivery.workspace_id].quiet_rows, channels=channels
        )
        if not windows:
            kept.append(plan)
            continue
        zone = _zone_of(delivery, workspaces)
        wait_until: datetime | None = None
        dropped: set[str] = set()
        for channel, window in windows.items():
            ends = quiet_hours_end(window=window, now=now, zone=zone)
            if ends is None:
                continue
            if window.action == QuietHoursAction.DROP:
                dropped.add(channel)
            else:
                wait_until = max(wait_until or ends, ends)
        if wait_until is not None:
            outcomes[delivery.pk] = Outcome(
                DeliveryStatus.SCHEDULED, f"{REASON_QUIET}: waiting until they end", scheduled_for=wait_until
            )
            continue
        if dropped:
            plan.rendered = [(m, c) for m, c in plan.rendered if m.channel not in dropped]
            plan.skipped.extend(f"{channel}: {REASON_QUIET}" for channel in sorted(dropped))
        kept.append(plan)
    return kept


def _apply_rate_limits(plans: list[_Plan], outcomes: dict[int, Outcome], now: datetime) -> list[_Plan]:
    """Each rate-limited campaign gets what is left of this minute's allowance (one sends per
    person and step); the rest waits for the next minute."""
    by_campaign: dict[int, list[_Plan]] = defaultdict(list)
    kept = []
    for plan in plans:
        limit = plan.delivery.campaign.rate_limit_per_minute
        if limit and plan.rendered:
            by_campaign[plan.delivery.campaign_id].append(plan)
        else:
            kept.append(plan)
    next_minute = minute_start(now) + timedelta(minutes=1)
    for campaign_id, group in by_campaign.items():
        limit = int(group[0].delivery.campaign.rate_limit_per_minute or 0)
        with transaction.atomic():
            granted = rate_limit_reserve(campaign_id=campaign_id, limit=limit, wanted=len(group), now=now)
        kept.extend(group[:granted])
        for plan in group[granted:]:
            outcomes[plan.delivery.pk] = Outcome(DeliveryStatus.SCHEDULED, REASON_RATE, scheduled_for=next_minute)
    kept.sort(key=lambda plan: plan.delivery.pk)
    return kept


def _reachable(plan: _Plan) -> list[tuple[ChannelMessage, dict[str, Any]]]:
    """First-reachable sends: the rendered messages in order, minus channels that cannot reach the
    person (their reasons noted)."""
    reachable = []
    for message, content in plan.rendered:
        resolved = resolve_addresses(
            profile=plan.delivery.profile, channel=message.channel, content=content, transactional=message.transactional
        )
        if isinstance(resolved, Unreachable):
            plan.skipped.append(f"{message.channel}: {resolved.reason}")
        else:
            reachable.append((message, content))
    return reachable


def _choose_and_prepare(
    plans: list[_Plan], workspaces: dict[int, _Workspace], outcomes: dict[int, Outcome], now: datetime
) -> None:
    """Choose each delivery's channels under the frequency caps and create their dispatches.

    Where a workspace has cap rules, its people are locked (advisory, per person, sorted) and
    their counts read and reserved in one transaction, so two campaigns sending to one person at
    once cannot both slip under a cap: ``sent_at`` and ``sent_channels`` are stamped before the
    provider is called, and concurrent checks count them.
    """
    capped = [
        p for p in plans if workspaces[p.delivery.workspace_id].rules and not p.delivery.campaign.frequency_cap_exempt
    ]
    free = [p for p in plans if p not in capped]
    for plan in free:
        _choose(plan, None)
    _prepare(free)
    by_workspace: dict[int, list[_Plan]] = defaultdict(list)
    for plan in capped:
        by_workspace[plan.delivery.workspace_id].append(plan)
    for workspace_id, group in by_workspace.items():
        people = {plan.delivery.profile_id: _zone_of(plan.delivery, workspaces) for plan in group}
        with transaction.atomic():
            lock_people_for_caps(workspace_id=workspace_id, profile_ids=people)
            counts = cap_counts(
                rules=workspaces[workspace_id].rules,
                people=people,
                now=now,
                exclude_delivery_ids=[plan.delivery.pk for plan in group],
            )
            for plan in group:
                _choose(plan, counts)
            _prepare(group)
            reserve = []
            for plan in group:
                channels = [message.channel for message, _ in plan.chosen]
                if channels:
                    reserve.append({"id": plan.delivery.pk, "c": channels})
            if reserve:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "UPDATE campaigns_delivery d SET sent_at = %s, sent_channels = u.c"
                        " FROM jsonb_to_recordset(%s::jsonb) AS u(id bigint, c varchar[])"
                        " WHERE d.id = u.id AND CASE d.status WHEN 'sending' THEN true ELSE false END",
                        [now, dumps(reserve)],
                    )


def _choose(plan: _Plan, counts: CapCounts | None) -> None:
    delivery = plan.delivery
    campaign = delivery.campaign
    candidates = _reachable(plan) if campaign.send_first_reachable_only else list(plan.rendered)
    for message, content in candidates:
        if counts is not None:
            rule = counts.capped_by(profile_id=delivery.profile_id, channel=message.channel, tags=campaign.tags)
            if rule is not None:
                plan.skipped.append(f"{message.channel}: {REASON_CAPPED} ({describe_rule(rule)})")
                continue
        plan.chosen.append((message, content))
        if campaign.send_first_reachable_only:
            break
    if counts is not None and plan.chosen:
        counts.add(profile_id=delivery.profile_id, channels=[m.channel for m, _ in plan.chosen], tags=campaign.tags)


def _metadata(delivery: Delivery, channel: str) -> dict[str, str]:
    return {
        PROP_CAMPAIGN_ID: str(delivery.campaign_id),
        PROP_VARIANT: delivery.variant.key if delivery.variant else "",
        "delivery_id": str(delivery.pk),
        PROP_SEND_ID: str(delivery.pk),
        PROP_CHANNEL: channel,
    }


def _prepare(plans: list[_Plan]) -> None:
    """Create the dispatches of every chosen message of these deliveries: one batch call."""
    requests: list[DispatchRequest] = []
    owners: list[tuple[_Plan, ChannelMessage]] = []
    for plan in plans:
        delivery = plan.delivery
        for message, content in plan.chosen:
            requests.append(
                DispatchRequest(
                    workspace_id=delivery.workspace_id,
                    profile=delivery.profile,
                    channel=message.channel,
                    content=content,
                    idempotency_key=f"delivery:{delivery.pk}:{message.pk}",
                    source=f"campaign:{delivery.campaign_id}",
                    metadata=_metadata(delivery, message.channel),
                    transactional=message.transactional,
                )
            )
            owners.append((plan, message))
    if not requests:
        return
    for (plan, message), answer in zip(owners, dispatch_prepare_many(requests=requests), strict=True):
        if isinstance(answer, Unreachable):
            plan.skipped.append(f"{message.channel}: {answer.reason}")
        else:
            plan.prepared.append(_Prepared(message, answer))


def _send(plans: list[_Plan], outcomes: dict[int, Outcome]) -> None:
    """Hand every pending dispatch of the batch to its provider in one batch call (outside any
    transaction), then decide each delivery's outcome from what its dispatches say. Dispatches an
    earlier run already sent are not sent again: they are read as they are."""
    pending = [
        dispatch
        for plan in plans
        for item in plan.prepared
        for dispatch in item.dispatches
        if dispatch.status == DispatchStatus.PENDING
    ]
    profiles = {plan.delivery.profile_id: plan.delivery.profile for plan in plans}
    sent = dispatch_send_many(dispatches=pending, profiles=profiles) if pending else SendManyResult()
    for plan in plans:
        transient: list[str] = []
        results: list[tuple[str, Dispatch]] = []
        for item in plan.prepared:
            for dispatch in item.dispatches:
                error = sent.transient.get(str(dispatch.pk))
                if error is not None:
                    transient.append(f"{item.message.channel}: {error.code}: {error.message}")
                    continue
                results.append((item.message.channel, sent.dispatches.get(str(dispatch.pk), dispatch)))
        outcomes[plan.delivery.pk] = _decide(plan, results, transient)


def _decide(plan: _Plan, results: list[tuple[str, Dispatch]], transient: list[str]) -> Outcome:
    delivery = plan.delivery
    dispatch_ids = [str(dispatch.pk) for _, dispatch in results]
    sent = [(channel, d) for channel, d in results if d.status in SENT_DISPATCH]
    if sent:
        channels = sorted({channel for channel, _ in sent})
        sent_at = min((d.sent_at for _, d in sent if d.sent_at), default=timezone.now())
        notes = [
            *plan.skipped,
            *plan.failed,
            *(f"{c}: {_dispatch_error(d)}" for c, d in results if d.status == DispatchStatus.FAILED),
        ]
        return Outcome(
            DeliveryStatus.SENT,
            "; ".join(notes)[:255],
            dispatch_ids=dispatch_ids,
            sent_channels=channels,
            sent_at=sent_at,
            follow_ups=True,
        )
    if transient:
        attempt = delivery.attempts + 1
        if attempt <= MAX_RETRIES:
            return Outcome(
                DeliveryStatus.SCHEDULED,
                f"retrying: {'; '.join(transient)}"[:255],
                dispatch_ids=dispatch_ids,
                scheduled_for=timezone.now() + RETRY_BACKOFF * (2 ** (attempt - 1)),
                retried=True,
            )
        plan.failed.extend(transient)
    if any(d.status not in TERMINAL_DISPATCH for _, d in results):
        # Another run (or a worker that died) holds a dispatch mid-send: stay ``sending``; the
        # sweep comes back once channels knows how it ended.
        return Outcome(DeliveryStatus.SENDING, dispatch_ids=dispatch_ids)
    failures = [f"{channel}: {_dispatch_error(d)}" for channel, d in results if d.status == DispatchStatus.FAILED]
    failures += plan.failed
    if failures:
        return Outcome(DeliveryStatus.FAILED, "; ".join(failures)[:255], dispatch_ids=dispatch_ids, follow_ups=True)
    if not plan.rendered and not plan.skipped:
        return Outcome(DeliveryStatus.SKIPPED, REASON_NO_MESSAGE, follow_ups=True)
    return Outcome(
        DeliveryStatus.SKIPPED, "; ".join(dict.fromkeys(plan.skipped))[:255] or REASON_NO_MESSAGE, follow_ups=True
    )


def _dispatch_error(dispatch: Dispatch) -> str:
    if dispatch.status == DispatchStatus.ABORTED:
        return f"{REASON_ABORTED}: {dispatch.error_message}"
    code = f"{dispatch.error_code}: " if dispatch.error_code else ""
    return f"provider error: {code}{dispatch.error_message}".strip()


def _write(outcomes: dict[int, Outcome], now: datetime) -> None:
    """Every outcome of the batch in one conditional statement (rows no longer ``sending`` were
    finished by another run and are left as they are). The rows are found by primary key: the
    status test is a CASE so the planner cannot read every in-flight row of the partial index on
    ``sending`` instead (its choice when the index's statistics lag)."""
    rows = []
    for delivery_id, outcome in outcomes.items():
        if outcome.status == DeliveryStatus.SENDING:
            continue  # left for the sweep
        rows.append(
            {
                "id": delivery_id,
                "s": outcome.status,
                "r": outcome.reason,
                "d": outcome.dispatch_ids,
                "c": outcome.sent_channels,
                "t": outcome.sent_at.isoformat() if outcome.sent_at else None,
                "f": outcome.scheduled_for.isoformat() if outcome.scheduled_for else None,
                "a": 1 if outcome.retried else 0,
            }
        )
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_delivery d SET status = u.s, reason = u.r, dispatch_ids = u.d, sent_channels = u.c,"
            " sent_at = u.t, scheduled_for = COALESCE(u.f, d.scheduled_for), attempts = d.attempts + u.a,"
            " claimed_at = CASE WHEN u.s = 'scheduled' THEN NULL ELSE d.claimed_at END"
            " FROM jsonb_to_recordset(%s::jsonb)"
            "  AS u(id bigint, s text, r text, d uuid[], c varchar[], t timestamptz, f timestamptz, a int)"
            " WHERE d.id = u.id AND CASE d.status WHEN 'sending' THEN true ELSE false END",
            [dumps(rows)],
        )


def follow_ups_create(
    *, deliveries: Sequence[Delivery], messages_by_variant: dict[int, list[ChannelMessage]], now: datetime
) -> int:
    """The next steps of deliveries whose main step ran: one scheduled delivery per delayed message
    (step ``msg<id>``), ``delay_seconds`` from now, same occurrence, variant and trigger. Created
    once (the unique key), whoever runs the step again."""
    rows = []
    for delivery in deliveries:
        if delivery.step_key != MAIN_STEP:
            continue
        for message in messages_by_variant.get(delivery.variant_id or 0, []):
            if message.delay_seconds <= 0:
                continue
            rows.append(
                Delivery(
                    workspace_id=delivery.workspace_id,
                    campaign_id=delivery.campaign_id,
                    step_key=f"{FOLLOW_UP_PREFIX}{message.pk}",
                    profile_id=delivery.profile_id,
                    occurrence=delivery.occurrence,
                    variant_id=delivery.variant_id,
                    status=DeliveryStatus.SCHEDULED,
                    scheduled_for=now + timedelta(seconds=message.delay_seconds),
                    trigger_event_id=delivery.trigger_event_id,
                    trigger_properties=delivery.trigger_properties,
                    match_value=delivery.match_value,
                )
            )
    if not rows:
        return 0
    return len(Delivery.objects.bulk_create(rows, ignore_conflicts=True))


# --- test sends -------------------------------------------------------------------------------------


def campaign_send_test(*, campaign: Campaign, variant: Variant, profile: Profile, actor: Any = None) -> list[str]:
    """Send ``variant``'s messages to one person now, as a test: rendered for them, through the
    real channels, but with no Delivery, no delivery controls and no campaign id in the metadata
    (a test must not count as a receipt in reports or caps). Returns one line per message saying
    what happened (sent to which address, or why not)."""
    if profile.workspace_id != campaign.workspace_id or variant.campaign_id != campaign.pk:
        raise ValueError("the person and the variant must belong to the campaign's workspace and campaign")
    lines = []
    for message in variant.messages.order_by("position", "pk"):
        label = message.get_channel_display()
        result = render_content(
            channel=message.channel,
            template=message.template,
            profile=profile,
            campaign={"id": campaign.pk, "name": campaign.name, "tags": list(campaign.tags), "variant": variant.key,
                      "variant_name": variant.name or variant.key, "send_id": "test"},
        )  # fmt: skip
        if isinstance(result, Aborted):
            lines.append(f"{label}: not sent: {REASON_ABORTED}: {result.reason}")
            continue
        if isinstance(result, RenderFailed):
            lines.append(f"{label}: not sent: template error: {result.reason}")
            continue
        prepared = dispatch_prepare(
            workspace_id=campaign.workspace_id,
            profile=profile,
            channel=message.channel,
            content=result,
            idempotency_key=f"campaign-test:{campaign.pk}:{message.pk}:{uuid.uuid4().hex}",
            source=f"campaign-test:{campaign.pk}",
            metadata={"campaign_test": str(campaign.pk), PROP_VARIANT: variant.key, PROP_CHANNEL: message.channel},
            transactional=message.transactional,
        )
        if isinstance(prepared, Unreachable):
            lines.append(f"{label}: not sent: {prepared.reason}")
            continue
        for dispatch in prepared:
            try:
                sent = dispatch_send(dispatch_id=dispatch.pk)
            except TransientError as error:
                lines.append(f"{label} to {dispatch.address[:60]}: temporary error (retried later): {error.message}")
                continue
            if sent.status in SENT_DISPATCH:
                lines.append(f"{label}: sent to {sent.address[:60]}")
            else:
                lines.append(
                    f"{label} to {sent.address[:60]}: {sent.get_status_display().lower()}: {_dispatch_error(sent)}"
                )
    logger.info("test send of campaign %s variant %s to profile %s by %s", campaign.pk, variant.key, profile.pk, actor)
    return lines or ["the variant has no messages"]
