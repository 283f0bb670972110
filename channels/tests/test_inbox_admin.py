"""The inbox admin and the "Preview a message" page, as a marketer uses them."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from channels.models import InboxItem
from profiles.models import Profile, Workspace
from profiles.tests.factories import ProfileFactory, WorkspaceFactory

from .inbox_helpers import send_card

pytestmark = pytest.mark.django_db

PREVIEW_URL = "/admin/channels/inboxitem/preview/"


def _marketer(*workspaces: Workspace, app_labels: tuple[str, ...] = ("profiles", "channels")) -> Client:
    user = User.objects.create_user(username="marketer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=app_labels))
    for workspace in workspaces:
        workspace.members.add(user)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def jane(workspace: Workspace) -> Profile:
    profile: Profile = ProfileFactory(
        workspace=workspace, external_id="jane-1", first_name="Jane", email="jane@example.com", city="Lyon"
    )
    return profile


def _preview(client: Client, workspace: Workspace, channel: str, template: dict[str, Any], person: str) -> Any:
    return client.post(
        PREVIEW_URL,
        {"workspace": workspace.pk, "channel": channel, "person": person, "template": json.dumps(template)},
    )


def test_the_preview_page_starts_from_an_example(workspace: Workspace) -> None:
    response = _marketer(workspace).get(PREVIEW_URL, {"channel": "push"})
    assert response.status_code == 200
    assert "Preview a message" in response.content.decode()
    assert "deep_link" in response.context["form"].initial["template"]


def test_an_email_renders_in_a_sandboxed_iframe_for_the_chosen_person(workspace: Workspace, jane: Profile) -> None:
    template = {"subject": "Hi {{ first_name }}", "html": "<p>Deals in {{ city }}</p><script>alert(1)</script>"}
    response = _preview(_marketer(workspace), workspace, "email", template, "jane@example.com")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<dd>Hi Jane</dd>" in body
    assert '<iframe class="email" sandbox=""' in body
    # The message's HTML is only ever inside the srcdoc attribute, escaped.
    assert html.escape("<p>Deals in Lyon</p>") in body
    assert "<script>alert(1)</script>" not in body


def test_push_and_cards_render_as_they_would_look(workspace: Workspace, jane: Profile) -> None:
    client = _marketer(workspace)
    body = _preview(client, workspace, "push", {"title": "Hi {{ first_name }}", "body": "Cart"}, "jane-1")
    assert '<div class="push-card">' in body.content.decode() and "Hi Jane" in body.content.decode()
    card = {"type": "classic", "title": "{{ first_name }}, 20% off", "url": "https://x.test", "link_text": "Go"}
    body = _preview(client, workspace, "content_card", card, f"#{jane.pk}")
    assert "Jane, 20% off" in body.content.decode()


def test_abort_and_errors_are_shown(workspace: Workspace, jane: Profile) -> None:
    client = _marketer(workspace)
    aborted = _preview(client, workspace, "sms", {"body": "{% abort_message 'no code' %}"}, "jane-1")
    assert "aborted this message for this person: no code" in aborted.content.decode()
    broken = _preview(client, workspace, "sms", {"body": "{% if %}"}, "jane-1")
    assert broken.context["preview"].errors == (("body", "missing expression (line 1)"),)


def test_the_form_names_what_is_wrong(workspace: Workspace, jane: Profile) -> None:
    client = _marketer(workspace)
    response = client.post(
        PREVIEW_URL, {"workspace": workspace.pk, "channel": "sms", "person": "nobody", "template": "{not json"}
    )
    errors = response.context["form"].errors
    assert errors["template"][0].startswith("not valid JSON")
    assert errors["person"] == ["nobody with this external id, email or #id in Acme"]


def test_the_preview_only_finds_people_of_the_users_workspaces(workspace: Workspace) -> None:
    globex = WorkspaceFactory(name="Globex")
    stranger = ProfileFactory(workspace=globex, external_id="stranger")
    client = _marketer(workspace)
    # Another workspace cannot be chosen, and its people are not found through this one.
    response = _preview(client, globex, "sms", {"body": "Hi"}, "stranger")
    assert "workspace" in response.context["form"].errors
    response = _preview(client, workspace, "sms", {"body": "Hi"}, f"#{stranger.pk}")
    assert "person" in response.context["form"].errors


def test_the_preview_needs_permission_to_see_profiles(workspace: Workspace) -> None:
    response = _marketer(workspace, app_labels=("channels",)).get(PREVIEW_URL)
    assert response.status_code == 403


def test_inbox_items_list_and_removal(workspace: Workspace, jane: Profile) -> None:
    card = send_card(jane)
    other = send_card(ProfileFactory(workspace=WorkspaceFactory(name="Globex")))
    client = _marketer(workspace)
    response = client.get("/admin/channels/inboxitem/")
    assert response.status_code == 200
    assert [item.pk for item in response.context["cl"].result_list] == [card.pk]
    assert "Preview a message" in response.content.decode()
    assert client.get(f"/admin/channels/inboxitem/{other.pk}/change/").status_code == 404
    client.post("/admin/channels/inboxitem/", {"action": "remove_from_inbox", "_selected_action": [card.pk, other.pk]})
    card.refresh_from_db()
    other.refresh_from_db()
    assert card.status == InboxItem.Status.REMOVED
    assert other.status == InboxItem.Status.LIVE
