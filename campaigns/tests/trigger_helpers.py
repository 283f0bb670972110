"""Helpers for the tests of triggered and API-triggered campaigns."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, ChannelMessage, Delivery, DeliveryType, Variant
from campaigns.services.segment_entry import baseline_ensure
from campaigns.services.triggers import ProcessResult, campaign_events_process
from profiles.models import App, Workspace
from profiles.services.ingest import ingest_batch
from segments.models import Segment

# When the trigger tests run (the ``trigger_clock`` fixture): a Monday.
NOW = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)

PUSH = {"title": "Hi {{ first_name | default: 'there' }}", "body": "You left {{ event_properties.product }}"}


def action_campaign(
    workspace: Workspace,
    *,
    triggers: list[dict[str, Any]],
    name: str = "Triggered",
    variants: Sequence[tuple[str, int]] = (("A", 100),),
    channel: str = "push",
    template: dict[str, Any] | None = None,
    launched_at: datetime | None = None,
    delivery_type: str = DeliveryType.ACTION,
    **fields: Any,
) -> Campaign:
    """A running campaign with one message per variant, launched an hour ago."""
    campaign = Campaign.objects.create(
        workspace=workspace,
        name=name,
        delivery_type=delivery_type,
        status=fields.pop("status", CampaignStatus.RUNNING),
        triggers=triggers,
        launched_at=launched_at or timezone.now() - timedelta(hours=1),
        **fields,
    )
    for key, percent in variants:
        variant = Variant.objects.create(campaign=campaign, key=key, percent=percent)
        ChannelMessage.objects.create(variant=variant, channel=channel, template=template or PUSH)
    for segment in Segment.objects.filter(pk__in=[t.get("segment_id") for t in triggers if t.get("segment_id")]):
        baseline_ensure(campaign_id=campaign.pk, segment=segment, now=timezone.now())
    return campaign


def track(user_id: str, event: str, properties: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    message = {"type": "track", "userId": user_id, "event": event, "properties": properties or {}}
    message["messageId"] = fields.pop("messageId", str(uuid.uuid4()))
    message.update(fields)
    return message


def identify(user_id: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user_id, "traits": traits, "messageId": str(uuid.uuid4())}


def ingest(app: App, *messages: dict[str, Any]) -> list[int]:
    result = ingest_batch(app=app, messages=list(messages))
    assert not result.rejected, result.rejected
    return result.event_ids


def send_events(app: App, *messages: dict[str, Any]) -> ProcessResult:
    """Store the messages through the intake's service and run trigger matching on them, as the
    triggers task does after commit."""
    return campaign_events_process(workspace_id=app.workspace_id, event_ids=ingest(app, *messages))


def deliveries(campaign: Campaign, **filters: Any) -> list[Delivery]:
    return list(Delivery.objects.filter(campaign=campaign, **filters).select_related("profile").order_by("id"))


def no_rules_cache(settings: Any) -> None:
    """Read campaign rules fresh on every batch (tests change campaigns between events)."""
    settings.CAMPAIGN_RULES_CACHE_SECONDS = 0
