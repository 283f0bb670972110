"""Recording what the platform itself observed about a person (a message received, opened,
clicked; a control-group enrolment) as events on their profile.

Channels and campaigns call this; segments and triggers then read engagement like any behaviour.
Each record carries a dedupe key that becomes the event's message id, so a provider repeating a
webhook, or a task retried after a crash, records the engagement once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ..engagement import RESERVED_PREFIX
from ..models import App
from ..signals import events_stored
from .identity import dumps


@dataclass(frozen=True)
class Engagement:
    profile_id: int
    name: str
    dedupe_key: str
    properties: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None


def engagement_record(*, workspace_id: int, engagements: Sequence[Engagement]) -> list[int]:
    """Store these engagement events, each at most once per dedupe key; return the new event ids.

    Profiles that no longer exist (erased since the message went out) are skipped silently: there
    is nobody left to record it on.
    """
    for engagement in engagements:
        if not engagement.name.startswith(RESERVED_PREFIX):
            raise ValueError(f"engagement event names start with {RESERVED_PREFIX!r}; got {engagement.name!r}")
        if not engagement.dedupe_key:
            raise ValueError("an engagement needs a dedupe key")
    if not engagements:
        return []
    now = timezone.now()
    rows = [
        {
            "p": e.profile_id,
            "n": e.name,
            "pr": e.properties,
            "m": f"{e.name}:{e.dedupe_key}"[:255],
            "ts": e.timestamp or now,
        }
        for e in engagements
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_event (workspace_id, profile_id, app_id, type, name, properties, context,"
            " message_id, timestamp, received_at)"
            " SELECT %s, x.p, NULL, 'track', x.n, x.pr, '{}'::jsonb, x.m, x.ts, %s"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(p bigint, n text, pr jsonb, m text, ts timestamptz)"
            " WHERE EXISTS (SELECT 1 FROM profiles_profile p WHERE p.id = x.p AND p.workspace_id = %s)"
            " ON CONFLICT (workspace_id, message_id) DO NOTHING RETURNING id",
            [workspace_id, now, dumps(rows), workspace_id],
        )
        event_ids = [event_id for (event_id,) in cursor.fetchall()]
        if event_ids:
            events_stored.send(sender=App, workspace_id=workspace_id, event_ids=event_ids)
    return event_ids
