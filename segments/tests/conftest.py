from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from profiles.models import Device, Event, Profile, Purchase, Workspace
from segments.evaluator import profile_in_segment
from segments.models import Segment
from segments.selectors import segment_members, segment_size

# Tests run at a fixed instant: Sunday 15 March 2026, noon UTC (2026 is a common year).
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)

_message_ids = itertools.count(1)


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def make_profile(workspace: Workspace, external_id: str, **fields: Any) -> Profile:
    return Profile.objects.create(workspace=workspace, external_id=external_id, **fields)


def track(profile: Profile, name: str, at: datetime, properties: dict[str, Any] | None = None) -> Event:
    return Event.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        type="track",
        name=name,
        properties=properties or {},
        message_id=f"msg-{next(_message_ids)}",
        timestamp=at,
        received_at=at,
    )


def track_many(profile: Profile, name: str, times: list[datetime], properties: dict[str, Any] | None = None) -> None:
    Event.objects.bulk_create(
        Event(
            workspace_id=profile.workspace_id,
            profile=profile,
            type="track",
            name=name,
            properties=properties or {},
            message_id=f"msg-{next(_message_ids)}",
            timestamp=at,
            received_at=at,
        )
        for at in times
    )


def buy(
    profile: Profile, product: str, price: str, at: datetime, *, quantity: int = 1, currency: str = "USD"
) -> Purchase:
    event = track(profile, "Order Completed", at, {"product_id": product})
    return Purchase.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        event=event,
        product_id=product,
        price=Decimal(price),
        currency=currency,
        quantity=quantity,
        timestamp=at,
    )


def add_device(profile: Profile, device_id: str, *, push_enabled: bool) -> Device:
    return Device.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        device_id=device_id,
        push_enabled=push_enabled,
        first_seen=NOW,
        last_seen=NOW,
    )


def members_of(workspace: Workspace, definition: dict[str, Any], *, segment: Segment | None = None) -> set[str]:
    """The external ids in the segment, asserting that both evaluators and the size agree."""
    segment = segment or Segment(workspace=workspace, name="under test", definition=definition)
    ids = set(segment_members(segment=segment, limit=10_000))
    one_by_one = {
        pk
        for pk in Profile.objects.filter(workspace=workspace).values_list("pk", flat=True)
        if profile_in_segment(profile_id=pk, segment=segment)
    }
    assert ids == one_by_one, "the set evaluator and the single-profile check disagree"
    assert segment_size(segment=segment) == len(ids)
    return set(Profile.objects.filter(pk__in=ids).values_list("external_id", flat=True))


@pytest.fixture
def members(workspace: Workspace, frozen: Any) -> Callable[..., set[str]]:
    """``members(condition_or_group)``: who matches, in the ``workspace`` fixture, now."""

    def run(node: dict[str, Any]) -> set[str]:
        definition = node if set(node) & {"all", "any", "none"} else {"all": [node]}
        return members_of(workspace, definition)

    return run
