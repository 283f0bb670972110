"""The client API through the Django test client, as an SDK calls it."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from django.test import Client

from channels.models import Channel
from profiles.models import AnonymousId, App, Event, Profile, Workspace
from profiles.tests.factories import AppFactory, ProfileFactory

from .inbox_helpers import inbox_dispatch, send_card, send_in_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def jane(workspace: Workspace) -> Profile:
    profile: Profile = ProfileFactory(workspace=workspace, external_id="jane-1")
    AnonymousId.objects.create(workspace=workspace, anonymous_id="anon-jane", profile=profile)
    return profile


def _auth(app: App) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{app.write_key}:".encode()).decode()}


def _post(app: App, path: str, body: dict[str, Any]) -> Any:
    return Client().post(path, json.dumps(body), content_type="application/json", **_auth(app))


def test_fetch_returns_in_app_messages_and_cards(app: App, jane: Profile) -> None:
    message = send_in_app(jane)
    card = send_card(jane)
    response = Client().get("/v1/inbox", {"userId": "jane-1"}, **_auth(app))
    assert response.status_code == 200
    body = response.json()
    assert response["Access-Control-Allow-Origin"] == "*"
    [in_app] = body["in_app_messages"]
    assert in_app["id"] == message.pk
    assert in_app["layout"] == "modal" and in_app["header"] == "Welcome back"
    assert in_app["buttons"][0] == {"text": "Renew", "action": "open_url", "url": "https://shop.example.com/renew"}
    assert in_app["trigger"] == "$session_start" and in_app["expires_at"]
    [content_card] = body["content_cards"]
    assert content_card["id"] == card.pk
    assert content_card["type"] == "classic" and content_card["link_text"] == "Shop now"
    assert content_card["extras"] == {"category": "promo"}
    assert content_card["pinned"] is False and content_card["viewed"] is False


def test_fetch_by_anonymous_id_and_write_key_in_the_query(app: App, jane: Profile) -> None:
    send_card(jane)
    response = Client().get("/v1/inbox", {"anonymousId": "anon-jane", "writeKey": app.write_key})
    assert response.status_code == 200
    assert len(response.json()["content_cards"]) == 1


def test_an_unknown_person_has_an_empty_inbox(app: App, jane: Profile) -> None:
    response = Client().get("/v1/inbox", {"userId": "nobody"}, **_auth(app))
    assert response.json() == {"in_app_messages": [], "content_cards": []}


def test_another_workspaces_write_key_sees_nothing_of_this_person(jane: Profile) -> None:
    send_card(jane)
    other_app = AppFactory()  # another workspace
    response = Client().get("/v1/inbox", {"userId": "jane-1"}, **_auth(other_app))
    assert response.json() == {"in_app_messages": [], "content_cards": []}


def test_errors_name_the_field(app: App, jane: Profile) -> None:
    response = Client().get("/v1/inbox", **_auth(app))
    assert response.status_code == 400
    assert response.json()["message"] == "userId: userId or anonymousId is required"
    response = Client().get("/v1/inbox", {"userId": "jane-1"})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    response = Client().get("/v1/inbox", {"userId": "jane-1", "writeKey": "wk_nope"})
    assert response.status_code == 401
    response = _post(app, "/v1/inbox/events", {"userId": "jane-1", "item_id": 1, "type": "swipe"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("type:")
    response = _post(app, "/v1/inbox/events", {"userId": "jane-1", "item_id": 1, "type": "button_click"})
    assert response.json()["message"] == "button_index: is required for a button_click"


def test_impression_click_and_dismissal_through_the_api(app: App, jane: Profile) -> None:
    card = send_card(jane)
    for _ in range(2):
        response = _post(app, "/v1/inbox/events", {"userId": "jane-1", "item_id": card.pk, "type": "impression"})
        assert response.status_code == 200
    assert response.json() == {"success": True, "recorded": False}
    _post(
        app,
        "/v1/inbox/events",
        {"anonymousId": "anon-jane", "item_id": card.pk, "type": "click", "url": "https://shop.example.com/x"},
    )
    names = list(Event.objects.filter(profile=jane).order_by("id").values_list("name", flat=True))
    assert names == ["$message_opened", "$message_clicked"]
    assert Event.objects.get(name="$message_clicked").properties["url"] == "https://shop.example.com/x"
    assert (
        _post(app, "/v1/inbox/events", {"userId": "jane-1", "item_id": card.pk, "type": "dismiss"}).status_code == 200
    )
    assert Client().get("/v1/inbox", {"userId": "jane-1"}, **_auth(app)).json()["content_cards"] == []


def test_a_pinned_card_cannot_be_dismissed(app: App, jane: Profile) -> None:
    card = send_card(jane, pinned=True)
    response = _post(app, "/v1/inbox/events", {"userId": "jane-1", "item_id": card.pk, "type": "dismiss"})
    assert response.status_code == 400
    assert response.json()["message"] == "item_id: a pinned card cannot be dismissed"


def test_someone_elses_item_is_404(app: App, jane: Profile, workspace: Workspace) -> None:
    card = send_card(ProfileFactory(workspace=workspace))
    response = _post(app, "/v1/inbox/events", {"userId": "jane-1", "item_id": card.pk, "type": "click"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = _post(app, "/v1/inbox/events", {"userId": "ghost", "item_id": card.pk, "type": "click"})
    assert response.status_code == 404
    assert not Event.objects.exists()


def test_push_opened(app: App, jane: Profile) -> None:
    push = inbox_dispatch(jane, Channel.PUSH, {"body": "Hi"})
    for expected in (True, False):
        response = _post(app, "/v1/push/opened", {"userId": "jane-1", "dispatch_id": str(push.pk)})
        assert response.status_code == 200
        assert response.json() == {"success": True, "recorded": expected}
    opened = Event.objects.get(profile=jane, name="$message_opened")
    assert opened.properties["channel"] == "push" and opened.properties["dispatch_id"] == str(push.pk)
    response = _post(app, "/v1/push/opened", {"userId": "jane-1", "dispatch_id": "not-a-uuid"})
    assert response.status_code == 400 and response.json()["message"].startswith("dispatch_id:")
    response = _post(app, "/v1/push/opened", {"userId": "jane-1", "dispatch_id": str(uuid.uuid4())})
    assert response.status_code == 404


def test_cors_preflight_needs_no_credentials(app: App) -> None:
    response = Client().options("/v1/inbox/events")
    assert response.status_code == 200
    assert "POST" in response["Access-Control-Allow-Methods"]
