"""Building campaigns for the launch, sender, controls, why-not and admin tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from campaigns.models import Campaign, ChannelMessage, DeliveryType, Variant
from profiles.models import Event, Profile, Workspace
from segments.models import Segment

# A Tuesday, 12:00 UTC.
NOW = datetime(2030, 1, 8, 12, 0, tzinfo=UTC)

EMAIL = {"subject": "Hi {{ first_name | default: 'there' }}", "text": "Hello {{ first_name | default: 'friend' }}!"}

_ids = itertools.count(1)


def segment(workspace: Workspace, name: str, definition: dict[str, Any] | None = None) -> Segment:
    return Segment.objects.create(workspace=workspace, name=name, definition=definition or {"all": []})


def person(workspace: Workspace, external_id: str | None = None, **fields: Any) -> Profile:
    external_id = external_id or f"p{next(_ids)}"
    fields.setdefault("email", f"{external_id}@example.com")
    return Profile.objects.create(workspace=workspace, external_id=external_id, **fields)


def people(workspace: Workspace, count: int, **fields: Any) -> list[Profile]:
    start = next(_ids) * 100_000
    return list(
        Profile.objects.bulk_create(
            Profile(workspace=workspace, external_id=f"bulk{start + n}", email=f"bulk{start + n}@example.com", **fields)
            for n in range(count)
        )
    )


def campaign(
    workspace: Workspace,
    *,
    name: str = "Spring sale",
    include: Iterable[Segment] = (),
    exclude: Iterable[Segment] = (),
    messages: Sequence[tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], int]] = (("email", EMAIL),),
    variants: Sequence[tuple[str, int]] = (("A", 100),),
    **fields: Any,
) -> Campaign:
    """A campaign with ``variants`` (key, percent), each with the same ``messages`` (channel,
    template[, delay seconds]) in order."""
    fields.setdefault("send_at", NOW)
    created = Campaign.objects.create(workspace=workspace, name=name, **fields)
    created.include_segments.set(list(include))
    created.exclude_segments.set(list(exclude))
    for key, percent in variants:
        variant = Variant.objects.create(campaign=created, key=key, percent=percent)
        for position, spec in enumerate(messages):
            channel, template = spec[0], spec[1]
            delay = spec[2] if len(spec) > 2 else 0  # type: ignore[misc]
            ChannelMessage.objects.create(
                variant=variant, channel=channel, position=position, template=template, delay_seconds=delay
            )
    return created


def action_campaign(workspace: Workspace, **fields: Any) -> Campaign:
    fields.setdefault("triggers", [{"type": "custom_event", "event": "Signed Up"}])
    return campaign(workspace, delivery_type=DeliveryType.ACTION, send_at=None, **fields)


def track(profile: Profile, name: str, at: datetime, properties: dict[str, Any] | None = None) -> Event:
    return Event.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        type="track",
        name=name,
        properties=properties or {},
        message_id=f"evt-{next(_ids)}",
        timestamp=at,
        received_at=at,
    )
