"""Launching campaigns, their lifecycle (pause, resume, stop, finish), and starting the occurrences
of scheduled campaigns.

A scheduled campaign keeps its next occurrence in two fields: ``next_occurrence_at`` (the time it
is scheduled for; the local wall time for local-time and best-time campaigns, stored as UTC) and
``next_run_at`` (when the tick starts it: the time itself, or 14 hours earlier for local and best
time, when it is that time somewhere on Earth). ``campaigns_tick`` (beat, every ~10 s) starts due
occurrences: it materialises every recipient's Delivery with one ``INSERT ... SELECT ... ON
CONFLICT DO NOTHING`` over the audience SQL, then advances the fields to the next occurrence of a
recurring campaign. The Delivery unique key (campaign, step, person, occurrence) makes starting an
occurrence twice harmless; the sender (``campaigns.services.sending``) sends the rows as they
fall due.

Variants are assigned inside the INSERT with ``assignment_bucket_sql``, the same hash as
``assign_variant``, so a person lands in the same variant (or control group) whichever way they
reach the campaign.
"""

# ruff: noqa: S608 - SQL is composed from fixed fragments, integers from our own rows and the
# segments compiler's parameterised fragments; values travel as parameters.
from __future__ import annotations

import calendar
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from channels.rendering import validate_template
from profiles.engagement import CONTROL_GROUP_ENROLLED, PROP_CAMPAIGN_ID, PROP_SEND_ID, PROP_VARIANT
from profiles.models import Workspace
from profiles.services.engagement import Engagement, engagement_record
from segments.compiler import Sql, join, q
from segments.definition import DefinitionError
from segments.models import Segment
from segments.selectors import SET_QUERY_SETTINGS

from ..models import (
    Campaign,
    CampaignStatus,
    ChannelMessage,
    Delivery,
    DeliveryStatus,
    DeliveryType,
    QuietHours,
    Recurrence,
    ScheduleTiming,
    Variant,
)
from .audience import audience_definition, audience_has_include, audience_where, extra_conditions_check
from .controls import BEST_TIME_HISTORY, best_hour_sql, best_time_minutes, person_zone, quiet_windows
from .segment_entry import segment_entry_baselines_take
from .variants import BUCKETS, CONTROL, assignment_bucket_sql

logger = logging.getLogger(__name__)

MAX_VARIANTS = 8
MAIN_STEP = "main"
# Local time and best time start when the wall time first happens on Earth (UTC+14, Kiribati).
EARLIEST_UTC_OFFSET = timedelta(hours=14)
# A person whose local (or best) time had already passed by more than this when the occurrence
# started is not sent to (Braze's rule for Intelligent Timing); within it, they get it at once.
LATE_GRACE = timedelta(hours=1)
LATE_REASON = "their local send time had passed when the campaign started"
# A recurring campaign that the tick reaches long after an occurrence's time (the scheduler was
# down) skips to the next one rather than sending yesterday's message today.
STALE_OCCURRENCE = timedelta(hours=24)
CONTROL_ENGAGEMENT_BATCH = 1000

PENDING_STATUSES = (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING)


# --- occurrences -----------------------------------------------------------------------------------


def _add_months(value: datetime, months: int, day: int) -> datetime:
    years, month_index = divmod(value.month - 1 + months, 12)
    year, month = value.year + years, month_index + 1
    return value.replace(year=year, month=month, day=min(day, calendar.monthrange(year, month)[1]))


def _weekdays(campaign: Campaign) -> set[int]:
    """Weekly recurrence days, 0 = Monday ... 6 = Sunday; the first send's weekday by default."""
    days = {int(day) for day in campaign.recurrence_weekdays or [] if 0 <= int(day) <= 6}
    if not days and campaign.send_at is not None:
        days = {campaign.send_at.astimezone(UTC).weekday()}
    return days


def first_occurrence(campaign: Campaign) -> datetime | None:
    """The first occurrence: ``send_at``, or for a weekly campaign the first chosen weekday from it."""
    if campaign.send_at is None:
        return None
    start = campaign.send_at.astimezone(UTC)
    if campaign.recurrence == Recurrence.WEEKLY:
        days = _weekdays(campaign)
        while start.weekday() not in days:
            start += timedelta(days=1)
    return start


def occurrence_after(campaign: Campaign, occurrence: datetime) -> datetime | None:
    """The occurrence after ``occurrence`` of a recurring campaign, or None (once, or past its end).
    Calendar arithmetic on the stored time: a local-time campaign's 10:00 stays 10:00 everywhere."""
    occurrence = occurrence.astimezone(UTC)
    following: datetime | None = None
    if campaign.recurrence == Recurrence.DAILY:
        following = occurrence + timedelta(days=1)
    elif campaign.recurrence == Recurrence.WEEKLY:
        days = _weekdays(campaign)
        following = occurrence + timedelta(days=1)
        while following.weekday() not in days:
            following += timedelta(days=1)
    elif campaign.recurrence == Recurrence.MONTHLY and campaign.send_at is not None:
        base = campaign.send_at.astimezone(UTC)
        months = (occurrence.year - base.year) * 12 + occurrence.month - base.month
        following = _add_months(base, months + 1, base.day)
    if following is None:
        return None
    if campaign.recurrence_ends_at is not None and following > campaign.recurrence_ends_at:
        return None
    return following


def occurrence_run_at(campaign: Campaign, occurrence: datetime) -> datetime:
    """When the tick starts ``occurrence``."""
    if campaign.schedule_timing == ScheduleTiming.LOCAL_TIME:
        return occurrence - EARLIEST_UTC_OFFSET
    if campaign.schedule_timing == ScheduleTiming.BEST_TIME:
        midnight = datetime.combine(occurrence.astimezone(UTC).date(), time(0), tzinfo=UTC)
        return midnight - EARLIEST_UTC_OFFSET
    return occurrence


def occurrence_key(occurrence: datetime) -> str:
    return occurrence.astimezone(UTC).isoformat()


# --- launch and lifecycle ----------------------------------------------------------------------------


def _immediate_messages(variant: Variant) -> list[ChannelMessage]:
    return [message for message in variant.messages.all() if message.delay_seconds == 0]


def trigger_references_problems(*, workspace_id: int, triggers: Any, campaign_id: int | None) -> list[str]:
    """What the triggers name that is not there: a segment-entry trigger's segment, an engagement
    trigger's campaign, in the campaign's workspace (the shapes are ``rules_problems``' to check).
    Matching would silently skip them; the builder and the launch say so instead."""
    if not isinstance(triggers, list):
        return []
    wanted: dict[str, list[tuple[int, int]]] = {"segment_entry": [], "engagement": []}
    for index, item in enumerate(triggers):
        if not isinstance(item, dict) or item.get("type") not in wanted:
            continue
        key = "segment_id" if item["type"] == "segment_entry" else "campaign_id"
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            wanted[item["type"]].append((index, value))
    segments = set(
        Segment.objects.filter(workspace_id=workspace_id, pk__in=[v for _, v in wanted["segment_entry"]]).values_list(
            "pk", flat=True
        )
    )
    campaigns = set(
        Campaign.objects.filter(workspace_id=workspace_id, pk__in=[v for _, v in wanted["engagement"]]).values_list(
            "pk", flat=True
        )
    )
    problems = [
        f"triggers[{index}].segment_id: no segment {value} in this workspace"
        for index, value in wanted["segment_entry"]
        if value not in segments
    ]
    for index, value in wanted["engagement"]:
        if campaign_id is not None and value == campaign_id:
            problems.append(f"triggers[{index}].campaign_id: a campaign cannot be triggered by its own messages")
        elif value not in campaigns:
            problems.append(f"triggers[{index}].campaign_id: no campaign {value} in this workspace")
    return sorted(problems)


def campaign_launch_problems(*, campaign: Campaign, now: datetime | None = None) -> list[str]:
    """Everything that stops ``campaign`` from being launched, in words; empty when it can be."""
    now = now or timezone.now()
    problems: list[str] = []
    variants = list(campaign.variants.prefetch_related("messages").order_by("key"))
    if not variants:
        problems.append("variants: add at least one variant with its messages")
    if len(variants) > MAX_VARIANTS:
        problems.append(f"variants: at most {MAX_VARIANTS} variants; this campaign has {len(variants)}")
    if variants and sum(variant.percent for variant in variants) <= 0:
        problems.append("variants: the variants' percentages must add up to more than 0")
    if not 0 <= campaign.control_percent <= 100:
        problems.append("control_percent: must be between 0 and 100")
    elif campaign.control_percent == 100:
        problems.append("control_percent: a 100% control group would send nothing")
    for variant in variants:
        messages = list(variant.messages.all())
        if variant.percent > 0 and not messages:
            problems.append(f"variant {variant.key}: add at least one channel message")
        for message in messages:
            for field, error in validate_template(message.channel, message.template):
                problems.append(f"variant {variant.key}, {message.get_channel_display()} message: {field}: {error}")
    definition = audience_definition(campaign)
    if campaign.delivery_type == DeliveryType.SCHEDULED and not audience_has_include(campaign):
        # Exclude segments alone would mean "everyone but them": a triggered campaign may, a
        # scheduled one (sent to its whole audience at once) must name who it is for.
        problems.append("audience: choose at least one segment to include, or extra conditions")
    if definition is not None:
        try:
            extra_conditions_check(workspace_id=campaign.workspace_id, definition=campaign.extra_conditions)
            audience_where(campaign, now=now)
        except ValidationError as error:
            problems.extend(f"extra_conditions: {message}" for message in error.messages)
        except DefinitionError as error:
            problems.append(f"audience: {error}")
    if campaign.delivery_type == DeliveryType.SCHEDULED:
        if campaign.send_at is None:
            problems.append("send_at: choose when to send")
        ends = campaign.recurrence_ends_at
        if campaign.recurrence != Recurrence.ONCE and ends is not None and campaign.send_at and ends < campaign.send_at:
            problems.append("recurrence_ends_at: the recurrence ends before the first send")
        if campaign.schedule_timing == ScheduleTiming.BEST_TIME and not 0 <= campaign.default_send_hour <= 23:
            problems.append("default_send_hour: must be an hour from 0 to 23")
    if campaign.delivery_type != DeliveryType.SCHEDULED or campaign.conversion_events:
        from .trigger_rules import rules_problems  # the trigger engine's own parser

        problems += rules_problems(
            triggers=campaign.triggers if campaign.delivery_type == DeliveryType.ACTION else None,
            delay=campaign.delay or None,
            exception_events=campaign.exception_events or None,
            conversion_events=campaign.conversion_events or None,
        )
    if campaign.delivery_type == DeliveryType.ACTION:
        if not campaign.triggers:
            problems.append("triggers: an action-based campaign needs at least one trigger")
        problems += trigger_references_problems(
            workspace_id=campaign.workspace_id, triggers=campaign.triggers, campaign_id=campaign.pk
        )
        if campaign.ends_at is not None and campaign.ends_at <= now:
            problems.append("ends_at: the campaign's end has already passed")
    return problems


def campaign_launch(*, campaign: Campaign, actor: Any = None, now: datetime | None = None) -> Campaign:
    """Launch a draft campaign: a scheduled campaign becomes ``scheduled`` with its first
    occurrence set (the tick starts it when its time comes); a triggered or API-triggered one
    becomes ``running`` at once. Raises ``ValidationError`` listing every problem, or when the
    campaign is no longer a draft (a conditional update: two launches cannot both win)."""
    now = now or timezone.now()
    problems = campaign_launch_problems(campaign=campaign, now=now)
    if problems:
        raise ValidationError(problems)
    updates: dict[str, Any] = {"launched_at": now, "updated_at": now}
    if campaign.delivery_type == DeliveryType.SCHEDULED:
        occurrence = first_occurrence(campaign)
        assert occurrence is not None  # checked above
        updates.update(
            status=CampaignStatus.SCHEDULED,
            next_occurrence_at=occurrence,
            next_run_at=occurrence_run_at(campaign, occurrence),
        )
    else:
        updates.update(status=CampaignStatus.RUNNING)
    with transaction.atomic():
        if Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.DRAFT).update(**updates) != 1:
            campaign.refresh_from_db(fields=["status"])
            raise ValidationError(f"only a draft campaign can be launched; this one is {campaign.get_status_display()}")
        if campaign.delivery_type == DeliveryType.ACTION:
            # Who is in a segment-entry trigger's segment at launch is not entering it: recorded
            # now, in the launch's transaction, not whenever the first event gets processed.
            segment_entry_baselines_take(campaign=campaign, now=now)
    logger.info("campaign %s launched by %s", campaign.pk, actor)
    campaign.refresh_from_db()
    return campaign


def _transition(campaign: Campaign, *, sources: Sequence[str], target: str, verb: str, now: datetime) -> None:
    if Campaign.objects.filter(pk=campaign.pk, status__in=list(sources)).update(status=target, updated_at=now) != 1:
        campaign.refresh_from_db(fields=["status"])
        raise ValidationError(f"a {campaign.get_status_display().lower()} campaign cannot be {verb}")
    campaign.status = target


def campaign_pause(*, campaign: Campaign, actor: Any = None, now: datetime | None = None) -> Campaign:
    """Pause: nothing more is sent (due rows stay scheduled; a send already claimed is put back)."""
    _transition(
        campaign,
        sources=[CampaignStatus.SCHEDULED, CampaignStatus.RUNNING],
        target=CampaignStatus.PAUSED,
        verb="paused",
        now=now or timezone.now(),
    )
    logger.info("campaign %s paused by %s", campaign.pk, actor)
    return campaign


def campaign_resume(*, campaign: Campaign, actor: Any = None, now: datetime | None = None) -> Campaign:
    """Resume a paused campaign: running again (or scheduled, if it had not started); what fell
    due meanwhile goes out now, subject to the delivery controls."""
    started = campaign.delivery_type != DeliveryType.SCHEDULED or Delivery.objects.filter(campaign=campaign).exists()
    _transition(
        campaign,
        sources=[CampaignStatus.PAUSED],
        target=CampaignStatus.RUNNING if started else CampaignStatus.SCHEDULED,
        verb="resumed",
        now=now or timezone.now(),
    )
    logger.info("campaign %s resumed by %s", campaign.pk, actor)
    return campaign


def campaign_stop(*, campaign: Campaign, actor: Any = None, now: datetime | None = None) -> int:
    """Stop for good: no further occurrence, every pending delivery cancelled (one statement).
    Returns how many were cancelled. A send already handed to the provider is not recalled."""
    now = now or timezone.now()
    with transaction.atomic():
        _transition(
            campaign,
            sources=[CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED],
            target=CampaignStatus.STOPPED,
            verb="stopped",
            now=now,
        )
        Campaign.objects.filter(pk=campaign.pk).update(next_run_at=None)
        cancelled = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.SCHEDULED).update(
            status=DeliveryStatus.CANCELLED, reason="the campaign was stopped"
        )
    logger.info("campaign %s stopped by %s; %s pending deliveries cancelled", campaign.pk, actor, cancelled)
    return cancelled


# --- the tick ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    started: list[tuple[int, str, int]]  # (campaign, occurrence, deliveries created)
    finished: list[int]


def campaigns_tick(*, now: datetime | None = None) -> TickResult:
    """Start every occurrence whose time has come, then finish campaigns with nothing left to do.
    Idempotent and safe to run from two beats at once (row locks, the unique delivery key)."""
    now = now or timezone.now()
    due = list(
        Campaign.objects.filter(
            delivery_type=DeliveryType.SCHEDULED,
            status__in=[CampaignStatus.SCHEDULED, CampaignStatus.RUNNING],
            next_run_at__lte=now,
        )
        .order_by("next_run_at")
        .values_list("pk", flat=True)
    )
    started = []
    for campaign_id in due:
        result = occurrence_start(campaign_id=campaign_id, now=now)
        if result is not None:
            started.append((campaign_id, *result))
    return TickResult(started=started, finished=campaigns_finish(now=now))


def campaigns_finish(*, now: datetime) -> list[int]:
    """Running campaigns with no occurrence ahead (or past their end) and nothing pending become
    finished (one conditional update)."""
    pending = Delivery.objects.filter(campaign=OuterRef("pk"), status__in=PENDING_STATUSES)
    over = Q(delivery_type=DeliveryType.SCHEDULED, next_run_at__isnull=True) | Q(
        delivery_type__in=[DeliveryType.ACTION, DeliveryType.API], ends_at__lte=now
    )
    ids = list(
        Campaign.objects.filter(over, status=CampaignStatus.RUNNING)
        .filter(~Exists(pending))
        .values_list("pk", flat=True)
    )
    if ids:
        Campaign.objects.filter(pk__in=ids, status=CampaignStatus.RUNNING).update(
            status=CampaignStatus.FINISHED, updated_at=now
        )
    return ids


def occurrence_start(*, campaign_id: int, now: datetime) -> tuple[str, int] | None:
    """Start the campaign's due occurrence and move to the next; None when another tick holds it
    or it is not due. One transaction: the deliveries and the advanced schedule commit together."""
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(
                pk=campaign_id,
                status__in=[CampaignStatus.SCHEDULED, CampaignStatus.RUNNING],
                next_run_at__lte=now,
            )
            .first()
        )
        if campaign is None or campaign.next_occurrence_at is None:
            return None
        occurrence = campaign.next_occurrence_at
        created = 0
        if campaign.recurrence != Recurrence.ONCE and occurrence_run_at(campaign, occurrence) < now - STALE_OCCURRENCE:
            logger.warning("campaign %s: skipping occurrence %s, missed by over a day", campaign.pk, occurrence)
        else:
            created = deliveries_materialise(campaign=campaign, occurrence=occurrence, now=now)
        following = occurrence_after(campaign, occurrence)
        campaign.status = CampaignStatus.RUNNING
        campaign.next_occurrence_at = following
        campaign.next_run_at = occurrence_run_at(campaign, following) if following else None
        campaign.save(update_fields=["status", "next_occurrence_at", "next_run_at", "updated_at"])
    return occurrence_key(occurrence), created


# --- materialising recipients --------------------------------------------------------------------------


def _variant_case(campaign: Campaign, variants: Sequence[Variant], bucket: str) -> str:
    """``assign_variant`` as SQL over a bucket expression: NULL for the control group, else the
    variant's id. Only integers from our own rows are interpolated."""
    weights = [(int(variant.pk), int(variant.percent)) for variant in variants if variant.percent > 0]
    control_buckets = int(campaign.control_percent) * BUCKETS // 100
    if control_buckets >= BUCKETS or not weights:
        return "NULL::bigint"
    total = sum(percent for _, percent in weights)
    position = f"((({bucket}) - {control_buckets}) * {total}) / {BUCKETS - control_buckets}"
    cases, running = [], 0
    for variant_id, percent in weights[:-1]:
        running += percent
        cases.append(f"WHEN {position} < {running} THEN {variant_id}")
    return f"(CASE WHEN ({bucket}) < {control_buckets} THEN NULL::bigint {' '.join(cases)} ELSE {weights[-1][0]} END)"


def _other_columns(explicit: set[str]) -> tuple[list[str], list[Any]]:
    """Delivery's remaining columns with their Python defaults, so a field added later does not
    break the raw INSERT below."""
    columns: list[str] = []
    values: list[Any] = []
    for field in Delivery._meta.concrete_fields:
        if field.primary_key or field.column in explicit:
            continue
        columns.append(str(field.column))
        default = field.get_default() if field.has_default() else None
        values.append(field.get_db_prep_save(default, connection))
    return columns, values


def deliveries_materialise(*, campaign: Campaign, occurrence: datetime, now: datetime) -> int:
    """Create one Delivery per person in the audience for ``occurrence``: one ``INSERT ... SELECT
    ... ON CONFLICT DO NOTHING`` (so a repeat creates nothing). Control-group rows get status
    ``control`` and a ``$control_group_enrolled`` engagement event; people whose local time had
    passed by over an hour are recorded as skipped. Returns how many rows were created."""
    variants = list(campaign.variants.order_by("key"))
    workspace = Workspace.objects.only("default_time_zone").get(pk=campaign.workspace_id)
    default_zone = person_zone(time_zone="", default_time_zone=workspace.default_time_zone).key
    timing = campaign.schedule_timing
    zoned = timing in (ScheduleTiming.LOCAL_TIME, ScheduleTiming.BEST_TIME)

    ctes: list[Sql] = []
    if zoned:
        # Guard against zone names PostgreSQL does not know: one bad profile must not fail the launch.
        ctes.append(Sql("zones AS MATERIALIZED (SELECT name FROM pg_timezone_names)"))
    columns = "p.id" + (", COALESCE(z.name, {}) AS tz" if zoned else "")
    zone_join = " LEFT JOIN zones z ON z.name = p.time_zone" if zoned else ""
    limit = ""
    if campaign.max_recipients is not None:
        # A deterministic cut that does not favour the control group (a hash of its own).
        limit = f" ORDER BY md5('{int(campaign.pk)}:order:' || p.id::text), p.id LIMIT {int(campaign.max_recipients)}"
    audience_parts: list[Any] = [default_zone] if zoned else []
    audience_parts += [campaign.workspace_id, audience_where(campaign, now=now)]
    ctes.append(
        q(
            f"audience AS MATERIALIZED (SELECT {columns} FROM profiles_profile p{zone_join}"
            f" WHERE p.workspace_id = {{}} AND {{}}{limit})",
            *audience_parts,
        )
    )
    best_join = ""
    if timing == ScheduleTiming.BEST_TIME:
        wall_date = occurrence.astimezone(UTC).date()
        best_sql, best_params = best_hour_sql(
            recipients_sql="audience",
            zone_sql="r.tz",
            weekday=wall_date.isoweekday(),
            since=now - BEST_TIME_HISTORY,
        )
        ctes.append(Sql(f"best AS ({best_sql})", tuple(best_params)))
        best_join = " LEFT JOIN best b ON b.profile_id = a.id"
        channels = {
            message.channel for message in ChannelMessage.objects.filter(variant__campaign=campaign, delay_seconds=0)
        }
        windows = quiet_windows(
            campaign=campaign, workspace_rows=QuietHours.objects.filter(workspace_id=campaign.workspace_id),
            channels=channels,
        )  # fmt: skip
        minutes = best_time_minutes(windows.values())
        scheduled_for = q(
            "(({}::date + make_interval(mins => ({}::int[])[COALESCE(b.hour, {}) + 1]))::timestamp AT TIME ZONE a.tz)",
            wall_date,
            minutes,
            int(campaign.default_send_hour),
        )
    elif timing == ScheduleTiming.LOCAL_TIME:
        scheduled_for = q("({}::timestamp AT TIME ZONE a.tz)", occurrence.astimezone(UTC).replace(tzinfo=None))
    else:
        scheduled_for = q("{}::timestamptz", occurrence)
    bucket = assignment_bucket_sql(str(int(campaign.pk)), "a.id")
    ctes.append(
        q(
            f"chosen AS (SELECT a.id AS profile_id, {_variant_case(campaign, variants, bucket)} AS variant_id,"
            f" {{}} AS scheduled_for FROM audience a{best_join})",
            scheduled_for,
        )
    )
    late_cutoff = now - LATE_GRACE if zoned else datetime.min.replace(tzinfo=UTC)
    explicit = [
        "workspace_id", "campaign_id", "step_key", "profile_id", "occurrence", "variant_id", "status", "reason",
        "scheduled_for", "created_at",
    ]  # fmt: skip
    others, other_values = _other_columns(set(explicit))
    select = q(
        "SELECT {}, {}, {}, c.profile_id, {}, c.variant_id,"
        " CASE WHEN c.variant_id IS NULL THEN {} WHEN c.scheduled_for < {} THEN {} ELSE {} END,"
        " CASE WHEN c.variant_id IS NULL OR c.scheduled_for >= {} THEN '' ELSE {} END,"
        " c.scheduled_for, {}" + ", {}" * len(others) + " FROM chosen c",
        campaign.workspace_id,
        campaign.pk,
        MAIN_STEP,
        occurrence_key(occurrence),
        DeliveryStatus.CONTROL.value,
        late_cutoff,
        DeliveryStatus.SKIPPED.value,
        DeliveryStatus.SCHEDULED.value,
        late_cutoff,
        LATE_REASON,
        now,
        *other_values,
    )
    statement = q(
        "WITH {} INSERT INTO campaigns_delivery ({}) {}"
        " ON CONFLICT (campaign_id, step_key, profile_id, occurrence) DO NOTHING RETURNING id, profile_id, status",
        join(", ", ctes),
        Sql(", ".join([*explicit, *others])),
        select,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # The audience is a whole-workspace segment query: JIT off (it compiled for longer than
        # the query ran) and room to group in memory, for this transaction.
        for setting in SET_QUERY_SETTINGS:
            cursor.execute(setting)
        cursor.execute(statement.text, statement.params)
        rows = cursor.fetchall()
    controls = [
        (delivery_id, profile_id) for delivery_id, profile_id, status in rows if status == DeliveryStatus.CONTROL
    ]
    for start in range(0, len(controls), CONTROL_ENGAGEMENT_BATCH):
        engagement_record(
            workspace_id=campaign.workspace_id,
            engagements=[
                Engagement(
                    profile_id=profile_id,
                    name=CONTROL_GROUP_ENROLLED,
                    dedupe_key=f"delivery:{delivery_id}",
                    properties={PROP_CAMPAIGN_ID: campaign.pk, PROP_VARIANT: CONTROL, PROP_SEND_ID: str(delivery_id)},
                    timestamp=now,
                )
                for delivery_id, profile_id in controls[start : start + CONTROL_ENGAGEMENT_BATCH]
            ],
        )
    logger.info("campaign %s occurrence %s: %s deliveries", campaign.pk, occurrence_key(occurrence), len(rows))
    return len(rows)
