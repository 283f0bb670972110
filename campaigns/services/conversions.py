"""Conversions: a person who received a campaign (or was held out of it in the control group) and then
did what the campaign was for, within its conversion window.

Runs on the same path as triggers (after the intake commits, in the triggers task). For one batch
of events: the people's unconverted deliveries of campaigns with conversion events are read in one
query; each delivery takes the first event (in time order) that matches one of its campaign's
conversion events inside ``[sent, sent + window]``; one conditional update (``converted_at IS
NULL``) records them, so two workers never convert a delivery twice; each conversion is recorded as
a ``$message_converted`` engagement on the person with the campaign and variant.

The control group converts the same way, from the time the message would have been sent: that is
what the uplift is measured against. Revenue is the sum of the purchase lines of a purchase event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import DecimalField, ExpressionWrapper, F, Sum

from profiles.engagement import MESSAGE_CONVERTED, PROP_CAMPAIGN_ID, PROP_SEND_ID, PROP_VARIANT
from profiles.models import Purchase
from profiles.services.engagement import Engagement, engagement_record
from profiles.services.identity import dumps
from profiles.spec import PURCHASE_EVENTS

from .variants import CONTROL

if TYPE_CHECKING:
    from .triggers import CampaignRules, StoredEvent


@dataclass(frozen=True)
class _Open:
    id: int
    campaign_id: int
    profile_id: int
    occurrence: str
    since: datetime
    variant: str
    trigger_event_id: int | None


def _open_deliveries(
    *, workspace_id: int, campaign_ids: list[int], profile_ids: list[int], earliest: datetime
) -> list[_Open]:
    """Sent or control deliveries of these people and campaigns not yet converted, whose window
    may still be open (the person's index on deliveries leads the query)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d.id, d.campaign_id, d.profile_id, d.occurrence,"
            " CASE WHEN d.status = 'control' THEN d.scheduled_for ELSE coalesce(d.sent_at, d.scheduled_for) END,"
            " CASE WHEN d.status = 'control' THEN %s ELSE coalesce(v.key, '') END, d.trigger_event_id"
            " FROM campaigns_delivery d LEFT JOIN campaigns_variant v ON v.id = d.variant_id"
            " WHERE d.profile_id = ANY(%s::bigint[]) AND d.campaign_id = ANY(%s::bigint[])"
            " AND d.workspace_id = %s AND d.status IN ('sent', 'control') AND d.converted_at IS NULL"
            " AND coalesce(d.sent_at, d.scheduled_for) >= %s"
            # One conversion per send, whatever its steps (a push, then an email two days later):
            # an occurrence one of whose steps converted is done.
            " AND NOT EXISTS (SELECT 1 FROM campaigns_delivery c WHERE c.profile_id = d.profile_id"
            "  AND c.campaign_id = d.campaign_id AND c.occurrence = d.occurrence AND c.converted_at IS NOT NULL)",
            [CONTROL, profile_ids, campaign_ids, workspace_id, earliest],
        )
        return [_Open(*row) for row in cursor.fetchall()]


def _revenues(event_ids: list[int]) -> dict[int, Decimal]:
    if not event_ids:
        return {}
    line_total = ExpressionWrapper(
        F("price") * F("quantity"), output_field=DecimalField(max_digits=20, decimal_places=4)
    )
    rows = Purchase.objects.filter(event_id__in=event_ids).values("event_id").annotate(total=Sum(line_total))
    return {row["event_id"]: row["total"] for row in rows}


def conversions_record(*, workspace_id: int, campaigns: Sequence[CampaignRules], events: Sequence[StoredEvent]) -> int:
    """Record the conversions these events (oldest first) make; return how many were new."""
    names = {name for campaign in campaigns for spec in campaign.conversions for name in spec.names}
    relevant = [event for event in events if event.name in names]
    if not relevant:
        return 0
    by_id = {campaign.id: campaign for campaign in campaigns}
    longest = max((campaign.conversion_window for campaign in campaigns), default=timedelta(0))
    open_deliveries = _open_deliveries(
        workspace_id=workspace_id,
        campaign_ids=sorted(by_id),
        profile_ids=sorted({event.profile_id for event in relevant}),
        earliest=min(event.timestamp for event in relevant) - longest,
    )
    if not open_deliveries:
        return 0
    events_of: dict[int, list[StoredEvent]] = defaultdict(list)
    for event in relevant:
        events_of[event.profile_id].append(event)

    # Per send (campaign, person, occurrence): the first matching event in the window of any of
    # its steps converts it, credited to the last step received before the event (last touch).
    steps: dict[tuple[int, int, str], list[_Open]] = defaultdict(list)
    for delivery in open_deliveries:
        steps[(delivery.campaign_id, delivery.profile_id, delivery.occurrence)].append(delivery)
    conversions: list[tuple[_Open, StoredEvent]] = []
    for (campaign_id, profile_id, _occurrence), received in steps.items():
        campaign = by_id[campaign_id]
        for event in events_of.get(profile_id, ()):
            touched = [
                d
                for d in received
                if d.since <= event.timestamp <= d.since + campaign.conversion_window and d.trigger_event_id != event.id
            ]
            if touched and any(spec.matches(event.name, event.properties) for spec in campaign.conversions):
                conversions.append((max(touched, key=lambda d: (d.since, d.id)), event))
                break
    if not conversions:
        return 0
    revenues = _revenues([event.id for _, event in conversions if event.name in PURCHASE_EVENTS])
    rows = [
        {
            "id": delivery.id,
            "at": event.timestamp.isoformat(),
            "rev": str(revenues[event.id]) if event.id in revenues else None,
        }
        for delivery, event in conversions
    ]
    with connection.cursor() as cursor:
        # First conversion only: a concurrent worker (or a retry) finds converted_at set.
        cursor.execute(
            "UPDATE campaigns_delivery d SET converted_at = x.at, revenue = x.rev"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(id bigint, at timestamptz, rev numeric)"
            " WHERE d.id = x.id AND d.converted_at IS NULL RETURNING d.id",
            [dumps(rows)],
        )
        converted = {row[0] for row in cursor.fetchall()}
    engagement_record(
        workspace_id=workspace_id,
        engagements=[
            Engagement(
                profile_id=delivery.profile_id,
                name=MESSAGE_CONVERTED,
                dedupe_key=f"delivery:{delivery.id}",
                properties={
                    PROP_CAMPAIGN_ID: delivery.campaign_id,
                    PROP_VARIANT: delivery.variant,
                    PROP_SEND_ID: str(delivery.id),
                    "event": event.name,
                    **({"revenue": str(revenues[event.id])} if event.id in revenues else {}),
                },
                timestamp=event.timestamp,
            )
            for delivery, event in conversions
            if delivery.id in converted
        ],
    )
    return len(converted)
