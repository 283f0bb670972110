"""The inbox services: the 250-card limit, what a fetch returns, and engagement reports becoming
engagement events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError

from channels.models import Channel, InboxItem
from channels.services.inbox import MAX_LIVE_CARDS, inbox_event_record, inbox_fetch, push_opened_record
from profiles.models import Event, Profile, Workspace
from profiles.services.identity import profile_merge
from profiles.tests.factories import ProfileFactory

from .inbox_helpers import inbox_dispatch, send_card, send_in_app

pytestmark = pytest.mark.django_db

NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def jane(workspace: Workspace) -> Profile:
    profile: Profile = ProfileFactory(workspace=workspace)
    return profile


def _names(profile: Profile) -> list[str]:
    return list(Event.objects.filter(profile=profile).order_by("id").values_list("name", flat=True))


def test_at_most_250_live_cards_the_oldest_unpinned_expire(jane: Profile) -> None:
    start = NOW
    with time_machine.travel(start, tick=False) as clock:
        pinned_oldest = send_card(jane, pinned=True, title="pinned")
        clock.shift(timedelta(seconds=1))
        oldest_unpinned = send_card(jane, title="oldest")
        for i in range(MAX_LIVE_CARDS - 2):
            clock.shift(timedelta(seconds=1))
            send_card(jane, title=f"card {i}")
        assert len(inbox_fetch(profile_id=jane.pk)[1]) == MAX_LIVE_CARDS
        clock.shift(timedelta(seconds=1))
        newest = send_card(jane, title="newest")
        cards = inbox_fetch(profile_id=jane.pk)[1]
    assert len(cards) == MAX_LIVE_CARDS
    ids = {card.pk for card in cards}
    assert pinned_oldest.pk in ids and newest.pk in ids
    assert oldest_unpinned.pk not in ids
    oldest_unpinned.refresh_from_db()
    assert oldest_unpinned.status == InboxItem.Status.EXPIRED


def test_fetch_orders_cards_pinned_first_then_newest_and_drops_expired(jane: Profile) -> None:
    with time_machine.travel(NOW, tick=False) as clock:
        old = send_card(jane, title="old")
        clock.shift(timedelta(minutes=1))
        pinned = send_card(jane, title="pinned", pinned=True)
        clock.shift(timedelta(minutes=1))
        short = send_card(jane, title="short", expires_in=600)
        clock.shift(timedelta(minutes=1))
        new = send_card(jane, title="new")
        assert [c.pk for c in inbox_fetch(profile_id=jane.pk)[1]] == [pinned.pk, new.pk, short.pk, old.pk]
        clock.shift(timedelta(minutes=10))
        assert [c.pk for c in inbox_fetch(profile_id=jane.pk)[1]] == [pinned.pk, new.pk, old.pk]


def test_fetch_orders_in_app_by_priority_and_shows_each_once(jane: Profile) -> None:
    with time_machine.travel(NOW, tick=False) as clock:
        low = send_in_app(jane, priority="low")
        clock.shift(timedelta(minutes=1))
        high = send_in_app(jane, priority="high")
        clock.shift(timedelta(minutes=1))
        medium = send_in_app(jane, priority=50)
        assert [m.pk for m in inbox_fetch(profile_id=jane.pk)[0]] == [high.pk, medium.pk, low.pk]
        inbox_event_record(profile_id=jane.pk, item_id=high.pk, event_type="impression")
        assert [m.pk for m in inbox_fetch(profile_id=jane.pk)[0]] == [medium.pk, low.pk]


def test_impressions_and_clicks_are_engagement_events_recorded_once(jane: Profile) -> None:
    card = send_card(jane)
    assert inbox_event_record(profile_id=jane.pk, item_id=card.pk, event_type="impression").recorded
    assert not inbox_event_record(profile_id=jane.pk, item_id=card.pk, event_type="impression").recorded
    assert inbox_event_record(profile_id=jane.pk, item_id=card.pk, event_type="click").recorded
    assert not inbox_event_record(profile_id=jane.pk, item_id=card.pk, event_type="click").recorded
    assert _names(jane) == ["$message_opened", "$message_clicked"]
    click = Event.objects.get(profile=jane, name="$message_clicked")
    assert click.properties == {
        "channel": "content_card",
        "dispatch_id": str(card.dispatch_id),
        "campaign_id": 7,
        "variant": "B",
        "url": "https://shop.example.com/spring",
    }
    card.refresh_from_db()
    assert card.first_viewed_at is not None and card.clicked_at is not None


def test_button_clicks_are_recorded_per_button(jane: Profile) -> None:
    message = send_in_app(jane)
    inbox_event_record(profile_id=jane.pk, item_id=message.pk, event_type="button_click", button_index=0)
    inbox_event_record(profile_id=jane.pk, item_id=message.pk, event_type="button_click", button_index=0)
    inbox_event_record(profile_id=jane.pk, item_id=message.pk, event_type="button_click", button_index=1)
    clicks = Event.objects.filter(profile=jane, name="$message_clicked").order_by("id")
    assert [(c.properties["button_index"], c.properties.get("url")) for c in clicks] == [
        (0, "https://shop.example.com/renew"),
        (1, None),
    ]
    with pytest.raises(ValidationError) as error:
        inbox_event_record(profile_id=jane.pk, item_id=message.pk, event_type="button_click", button_index=2)
    assert "button_index" in error.value.message_dict


def test_dismissing_a_card_removes_it_but_a_pinned_card_stays(jane: Profile) -> None:
    card = send_card(jane)
    pinned = send_card(jane, pinned=True)
    assert inbox_event_record(profile_id=jane.pk, item_id=card.pk, event_type="dismiss").recorded
    with pytest.raises(ValidationError) as error:
        inbox_event_record(profile_id=jane.pk, item_id=pinned.pk, event_type="dismiss")
    assert error.value.message_dict == {"item_id": ["a pinned card cannot be dismissed"]}
    assert [c.pk for c in inbox_fetch(profile_id=jane.pk)[1]] == [pinned.pk]
    assert jane.events.filter(name="$message_dismissed").count() == 1


def test_another_persons_item_is_not_found(jane: Profile, workspace: Workspace) -> None:
    card = send_card(ProfileFactory(workspace=workspace))
    with pytest.raises(InboxItem.DoesNotExist):
        inbox_event_record(profile_id=jane.pk, item_id=card.pk, event_type="click")


def test_push_opened_is_recorded_once_for_the_persons_push(jane: Profile, workspace: Workspace) -> None:
    push = inbox_dispatch(jane, Channel.PUSH, {"body": "Hi"})
    assert push_opened_record(profile_id=jane.pk, dispatch_id=str(push.pk))
    assert not push_opened_record(profile_id=jane.pk, dispatch_id=str(push.pk))
    assert _names(jane) == ["$message_opened"]
    other = ProfileFactory(workspace=workspace)
    with pytest.raises(push.DoesNotExist):
        push_opened_record(profile_id=other.pk, dispatch_id=str(push.pk))


def test_a_merged_persons_inbox_and_sends_move_to_the_surviving_profile(workspace: Workspace, jane: Profile) -> None:
    anonymous = ProfileFactory(workspace=workspace, external_id=None)
    card = send_card(anonymous)
    push = inbox_dispatch(anonymous, Channel.PUSH, {"body": "Hi"})
    profile_merge(source=anonymous, target=jane, reason="api", actor="test")
    card.refresh_from_db()
    push.refresh_from_db()
    assert card.profile_id == jane.pk and push.profile_id == jane.pk
    assert [c.pk for c in inbox_fetch(profile_id=jane.pk)[1]] == [card.pk]
