"""Turning what happened to a dispatch (delivered, opened, clicked, bounced) into engagement events
on the person's profile, with the properties every engagement event carries.

Shared by provider tracking (ESP webhooks) and the client API (in-app, cards, push opens).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from profiles.engagement import PROP_CAMPAIGN_ID, PROP_CHANNEL, PROP_SEND_ID, PROP_VARIANT
from profiles.services.engagement import Engagement, engagement_record

from ..models import Dispatch

PROP_DISPATCH_ID = "dispatch_id"


def dispatch_engagement_properties(dispatch: Dispatch) -> dict[str, Any]:
    """campaign_id / variant / send_id from the caller's metadata (campaign_id as a number, which is
    how segments compare it), the channel, and the dispatch id to trace one message end to end."""
    metadata = dispatch.metadata if isinstance(dispatch.metadata, dict) else {}
    properties: dict[str, Any] = {PROP_CHANNEL: dispatch.channel, PROP_DISPATCH_ID: str(dispatch.pk)}
    campaign_id = metadata.get(PROP_CAMPAIGN_ID)
    if campaign_id not in (None, ""):
        text = str(campaign_id)
        properties[PROP_CAMPAIGN_ID] = int(text) if text.isdigit() else text
    for key in (PROP_VARIANT, PROP_SEND_ID):
        if metadata.get(key) not in (None, ""):
            properties[key] = str(metadata[key])
    return properties


def dispatch_engagement_record(
    *,
    dispatch: Dispatch,
    name: str,
    dedupe_key: str,
    properties: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
) -> bool:
    """Record engagement ``name`` for the dispatch's person, once per ``dedupe_key``; return
    whether it was new."""
    merged = dispatch_engagement_properties(dispatch)
    merged.update({key: value for key, value in (properties or {}).items() if value not in (None, "")})
    ids = engagement_record(
        workspace_id=dispatch.workspace_id,
        engagements=[
            Engagement(
                profile_id=dispatch.profile_id,
                name=name,
                dedupe_key=dedupe_key,
                properties=merged,
                timestamp=timestamp,
            )
        ],
    )
    return bool(ids)
