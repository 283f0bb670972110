"""The inbox transport: what the dispatch pipeline calls for in-app messages and content cards, and
the whole way from a template to the app's fetch and the person's timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from channels.models import Channel, DispatchStatus, InboxItem
from channels.rendering import render_content
from channels.services.dispatch import dispatch_prepare, dispatch_send
from channels.transports.base import PermanentError
from channels.transports.inbox import InboxTransport
from profiles.models import App, Event, Profile, Workspace
from profiles.tests.factories import ProfileFactory

from .inbox_helpers import CARD, inbox_dispatch

pytestmark = pytest.mark.django_db

NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def jane(workspace: Workspace) -> Profile:
    profile: Profile = ProfileFactory(workspace=workspace)
    return profile


@time_machine.travel(NOW, tick=False)
def test_the_transport_creates_one_item_per_dispatch(jane: Profile) -> None:
    dispatch = inbox_dispatch(
        jane,
        Channel.IN_APP,
        {"layout": "slideup", "body": "Hi", "trigger": "Added To Cart", "priority": "high", "expires_in": 3600},
    )
    first = InboxTransport().send(dispatch, None)
    again = InboxTransport().send(dispatch, None)  # a retried send
    item = InboxItem.objects.get(dispatch=dispatch)
    assert first.provider_message_id == again.provider_message_id == f"inbox:{item.pk}"
    assert InboxItem.objects.count() == 1
    assert item.kind == "in_app" and item.trigger == "Added To Cart" and item.priority == 100
    assert item.expires_at == NOW + timedelta(hours=1)


@time_machine.travel(NOW, tick=False)
def test_cards_default_to_thirty_days_and_keep_pinned(jane: Profile) -> None:
    dispatch = inbox_dispatch(jane, Channel.CONTENT_CARD, {**CARD, "pinned": True})
    InboxTransport().send(dispatch, None)
    item = InboxItem.objects.get(dispatch=dispatch)
    assert item.kind == "content_card" and item.pinned
    assert item.expires_at == NOW + timedelta(days=30)
    assert item.trigger == ""  # triggers are for in-app messages


def test_invalid_rendered_content_is_a_permanent_failure(jane: Profile) -> None:
    dispatch = inbox_dispatch(jane, Channel.CONTENT_CARD, {**CARD, "type": "captioned_image"})
    with pytest.raises(PermanentError, match="image_url: is required for a captioned_image card"):
        InboxTransport().send(dispatch, None)
    dispatch = inbox_dispatch(jane, Channel.CONTENT_CARD, {**CARD, "body": "x" * 2100})
    with pytest.raises(PermanentError, match="body: must be at most 2000 characters"):
        InboxTransport().send(dispatch, None)
    dispatch = inbox_dispatch(jane, Channel.CONTENT_CARD, {**CARD, "url": "not a link"})
    with pytest.raises(PermanentError, match="url: must be a URL"):
        InboxTransport().send(dispatch, None)
    assert not InboxItem.objects.exists()


def test_a_card_over_two_kilobytes_is_refused(jane: Profile) -> None:
    extras = {f"k{i}": "v" * 100 for i in range(20)}
    dispatch = inbox_dispatch(jane, Channel.CONTENT_CARD, {**CARD, "extras": extras})
    with pytest.raises(PermanentError, match="content card maximum size exceeded"):
        InboxTransport().send(dispatch, None)


def test_a_personalised_card_goes_from_template_to_the_apps_fetch_and_the_timeline(app: App, jane: Profile) -> None:
    jane.first_name = "Jane"
    jane.external_id = "jane-1"
    jane.save()
    template = {**CARD, "title": "{{ first_name }}, 20% off", "url": "https://shop.example.com/{{ user_id }}"}
    content = render_content(channel="content_card", template=template, profile=jane)
    assert isinstance(content, dict)
    dispatches = dispatch_prepare(
        workspace_id=jane.workspace_id,
        profile=jane,
        channel=Channel.CONTENT_CARD,
        content=content,
        idempotency_key="campaign-3:jane",
        metadata={"campaign_id": "3", "variant": "A"},
    )
    assert isinstance(dispatches, list)
    [dispatch] = dispatches
    sent = dispatch_send(dispatch_id=dispatch.pk)
    assert sent.status == DispatchStatus.SENT
    item = InboxItem.objects.get(dispatch=dispatch)
    assert sent.provider_message_id == f"inbox:{item.pk}"

    client = Client()
    fetched = client.get("/v1/inbox", {"userId": "jane-1", "writeKey": app.write_key}).json()["content_cards"]
    assert [(card["id"], card["title"], card["url"]) for card in fetched] == [
        (item.pk, "Jane, 20% off", "https://shop.example.com/jane-1")
    ]
    client.post(
        f"/v1/inbox/events?writeKey={app.write_key}",
        {"userId": "jane-1", "item_id": item.pk, "type": "click"},
        content_type="application/json",
    )
    events = Event.objects.filter(profile=jane).order_by("id")
    assert [(e.name, e.properties["campaign_id"]) for e in events] == [
        ("$message_received", 3),
        ("$message_clicked", 3),
    ]
