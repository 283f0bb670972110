"""Why did (or didn't) this person get this campaign?

The answer comes from two places: the person's Delivery rows for the campaign (what the pipeline
decided, with its reason: control group, quiet hours, frequency cap, template abort, exception
event, provider error, sent at ...) and a live re-check of what would stop a send now (the
campaign's state, the audience part by part, the control group, reachability per channel, the
caps, quiet hours, re-eligibility). Every line is a sentence a marketer reads as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from channels.models import Dispatch, DispatchStatus
from channels.rendering import Aborted, render_content
from channels.services.addresses import Unreachable, resolve_addresses
from profiles.models import Profile, Workspace

from ..models import (
    Campaign,
    CampaignStatus,
    ChannelMessage,
    Delivery,
    DeliveryStatus,
    DeliveryType,
    QuietHours,
)
from .audience import audience_definition, audience_explain
from .controls import cap_counts, cap_rules, describe_rule, person_zone, quiet_hours_end, quiet_windows
from .variants import CONTROL, Split, assign_variant

HISTORY = 20  # deliveries shown, newest first


def _when(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if value else "an unknown time"


def _step(delivery: Delivery, many: bool) -> str:
    if not many:
        return ""
    step = "" if delivery.step_key == "main" else f", step {delivery.step_key}"
    return f" [{delivery.occurrence}{step}]"


def describe_delivery(delivery: Delivery, dispatches: dict[str, Dispatch], *, many: bool = False) -> str:
    """One delivery as a sentence."""
    where = _step(delivery, many)
    status = delivery.status
    reason = delivery.reason
    if status == DeliveryStatus.SENT:
        channels = ", ".join(delivery.sent_channels) or "no channel"
        extra = [f"{d.channel}: {d.get_status_display().lower()}" for d in _dispatches(delivery, dispatches)]
        notes = "; ".join([*extra, *([reason] if reason else [])])
        return f"sent at {_when(delivery.sent_at)} by {channels}{where}" + (f" ({notes})" if notes else "")
    if status == DeliveryStatus.CONTROL:
        return f"control group: held out on purpose, nothing is sent{where}"
    if status == DeliveryStatus.CANCELLED:
        if reason.startswith("exception event"):
            return f"cancelled by an exception event{where}: {reason}"
        return f"cancelled{where}: {reason or 'no reason recorded'}"
    if status == DeliveryStatus.FAILED:
        errors = [
            f"{d.channel} to {d.address[:60]}: provider error: {d.error_code + ': ' if d.error_code else ''}"
            f"{d.error_message}"
            for d in _dispatches(delivery, dispatches)
            if d.status in (DispatchStatus.FAILED, DispatchStatus.BOUNCED)
        ]
        return f"failed{where}: " + ("; ".join(errors) or reason or "no reason recorded")
    if status == DeliveryStatus.SKIPPED:
        return f"not sent{where}: {reason or 'no reason recorded'}"
    if status == DeliveryStatus.SCHEDULED:
        note = f" ({reason})" if reason else ""
        return f"scheduled for {_when(delivery.scheduled_for)}{where}{note}"
    return f"being sent now (claimed at {_when(delivery.claimed_at)}){where}"


def _dispatches(delivery: Delivery, dispatches: dict[str, Dispatch]) -> list[Dispatch]:
    return [dispatches[str(pk)] for pk in delivery.dispatch_ids if str(pk) in dispatches]


def why_not(*, campaign: Campaign, profile: Profile, now: datetime | None = None) -> list[str]:
    """What happened to this person in this campaign, newest first, then what would stop a send
    to them now (lines starting "now:"). Never empty."""
    now = now or timezone.now()
    if profile.workspace_id != campaign.workspace_id:
        return ["this person belongs to another workspace"]
    history = list(Delivery.objects.filter(campaign=campaign, profile=profile).order_by("-created_at", "-pk")[:HISTORY])
    ids = [pk for delivery in history for pk in delivery.dispatch_ids]
    dispatches = {str(d.pk): d for d in Dispatch.objects.filter(pk__in=ids)}
    many = len(history) > 1
    answers = [describe_delivery(delivery, dispatches, many=many) for delivery in history]
    answers += [f"now: {line}" for line in live_check(campaign=campaign, profile=profile, history=history, now=now)]
    if not answers:
        answers.append("nothing stops a send to this person now")
    return answers


def live_check(*, campaign: Campaign, profile: Profile, history: list[Delivery], now: datetime) -> list[str]:
    """What would stop a send to the person now, in words (empty: nothing)."""
    lines: list[str] = []
    status = campaign.status
    if status == CampaignStatus.DRAFT:
        lines.append("the campaign has not been launched")
    elif status == CampaignStatus.SCHEDULED:
        lines.append(f"the campaign has not started yet: its first send is {_when(campaign.next_occurrence_at)}")
    elif status == CampaignStatus.PAUSED:
        lines.append("the campaign is paused")
    elif status == CampaignStatus.STOPPED:
        lines.append("the campaign was stopped")
    elif status == CampaignStatus.FINISHED:
        lines.append("the campaign has finished")

    if audience_definition(campaign) is not None:
        try:
            lines += audience_explain(campaign=campaign, profile_id=profile.pk, now=now)
        except Exception as error:  # a deleted or broken segment: say so rather than fail the page
            lines.append(f"the audience cannot be evaluated: {error}")
    variants = list(campaign.variants.order_by("key"))
    splits = [Split(v.key, v.percent) for v in variants]
    if any(split.percent > 0 for split in splits):
        key = assign_variant(
            campaign_id=campaign.pk, profile_id=profile.pk, control_percent=campaign.control_percent, variants=splits
        )
        if key == CONTROL:
            lines.append("in the control group: they are held out of every send of this campaign")
            return lines
        variant = next(v for v in variants if v.key == key)
        messages = list(ChannelMessage.objects.filter(variant=variant).order_by("position", "pk"))
        lines += _reachability(campaign, profile, messages)
        lines += _controls(campaign, profile, messages, now)
    elif campaign.delivery_type != DeliveryType.SCHEDULED or variants:
        lines.append("the campaign has no variant with a percentage above 0")
    lines += _reeligibility(campaign, history, now)
    if campaign.delivery_type == DeliveryType.ACTION and not history and status == CampaignStatus.RUNNING:
        lines.append("no delivery yet: they have not performed a trigger since the launch (or it did not match)")
    return lines


def _reachability(campaign: Campaign, profile: Profile, messages: list[ChannelMessage]) -> list[str]:
    lines = []
    reachable = 0
    for message in messages:
        content = render_content(channel=message.channel, template=message.template, profile=profile)
        if isinstance(content, Aborted):
            lines.append(f"{message.channel}: the template would abort: {content.reason or 'aborted by the template'}")
            continue
        resolved = resolve_addresses(
            profile=profile,
            channel=message.channel,
            content=content if isinstance(content, dict) else dict(message.template),
            transactional=message.transactional,
        )
        if isinstance(resolved, Unreachable):
            lines.append(f"{message.channel}: {resolved.reason}")
        else:
            reachable += 1
    if messages and not reachable:
        lines.append("no channel of their variant can reach them")
    return lines


def _controls(campaign: Campaign, profile: Profile, messages: list[ChannelMessage], now: datetime) -> list[str]:
    lines = []
    workspace = Workspace.objects.only("default_time_zone").get(pk=campaign.workspace_id)
    zone = person_zone(time_zone=profile.time_zone, default_time_zone=workspace.default_time_zone)
    channels = {message.channel for message in messages}
    windows = quiet_windows(
        campaign=campaign,
        workspace_rows=QuietHours.objects.filter(workspace_id=campaign.workspace_id),
        channels=channels,
    )
    for channel, window in sorted(windows.items()):
        ends = quiet_hours_end(window=window, now=now, zone=zone)
        if ends is not None:
            action = "it would wait until" if window.action == "wait" else "it would be dropped; they end"
            lines.append(f"{channel}: in quiet hours in their time zone ({zone.key}): {action} {_when(ends)}")
    if campaign.frequency_cap_exempt:
        return lines
    rules = cap_rules(workspace_id=campaign.workspace_id)
    counts = cap_counts(rules=rules, people={profile.pk: zone}, now=now)
    for channel in sorted(channels):
        rule = counts.capped_by(profile_id=profile.pk, channel=channel, tags=campaign.tags)
        if rule is not None:
            lines.append(f"{channel}: frequency-capped: {describe_rule(rule)}")
    return lines


def _reeligibility(campaign: Campaign, history: list[Delivery], now: datetime) -> list[str]:
    received = [d.sent_at for d in history if d.status == DeliveryStatus.SENT and d.sent_at is not None]
    if not received or campaign.delivery_type == DeliveryType.SCHEDULED:
        return []
    last = max(received)
    if not campaign.reeligible:
        return [f"not re-eligible: they received it at {_when(last)} and the campaign sends once per person"]
    if campaign.reeligibility_seconds:
        again = last + timedelta(seconds=campaign.reeligibility_seconds)
        if again > now:
            return [f"not re-eligible until {_when(again)} (received at {_when(last)})"]
    return []
