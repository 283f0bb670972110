"""Turning what happened to a dispatch (delivered, opened, clicked, bounced) into engagement events
on the person's profile, with the properties every engagement event carries.

Shared by provider tracking (ESP webhooks) and the client API (in-app, cards, push opens).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from profiles.services.engagement import Engagement, engagement_record

from ..models import Dispatch
from .dispatch import engagement_properties


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
    # The same properties as the dispatch pipeline's own events ($message_received, $message_bounced):
    # campaign_id (a number), variant, send_id, channel, dispatch_id. Empty extras are left out.
    merged = engagement_properties(
        dispatch, **{key: value for key, value in (properties or {}).items() if value not in (None, "")}
    )
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
