from __future__ import annotations

from typing import Any

import pytest
from django.core import signing
from django.test import Client

from channels.services.preferences import (
    PREFERENCES_SALT,
    UNSUBSCRIBE_SALT,
    preferences_token,
    preferences_url,
    unsubscribe_token,
    unsubscribe_url,
)
from profiles.models import Profile, ProfileMerge, SubscriptionState, Workspace
from profiles.tests.factories import ProfileFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def jane(workspace: Workspace) -> Profile:
    profile: Profile = ProfileFactory(workspace=workspace, email="jane.doe@example.com", phone="+14155550100")
    return profile


def _path(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


def test_links_are_absolute_on_the_public_base_url(jane: Profile, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://mail.acme.test"
    assert unsubscribe_url(jane).startswith("https://mail.acme.test/unsubscribe/")
    assert preferences_url(jane).startswith("https://mail.acme.test/preferences/")


def test_one_click_post_unsubscribes_without_cookies_or_csrf(jane: Profile) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        _path(unsubscribe_url(jane)),
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200  # not a redirect (RFC 8058)
    assert not response.cookies
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.UNSUBSCRIBED
    assert jane.email_subscription_changed_at is not None
    assert b"You are unsubscribed" in response.content


def test_one_click_post_accepts_multipart(jane: Profile) -> None:
    response = Client(enforce_csrf_checks=True).post(
        _path(unsubscribe_url(jane, "sms")), {"List-Unsubscribe": "One-Click"}
    )  # the test client's default encoding is multipart/form-data
    assert response.status_code == 200
    jane.refresh_from_db()
    assert jane.sms_subscription == SubscriptionState.UNSUBSCRIBED
    assert jane.email_subscription == SubscriptionState.SUBSCRIBED


def test_repeating_the_unsubscribe_changes_nothing(jane: Profile) -> None:
    client = Client(enforce_csrf_checks=True)
    url = _path(unsubscribe_url(jane))
    client.post(url, {"List-Unsubscribe": "One-Click"})
    jane.refresh_from_db()
    first_change = jane.email_subscription_changed_at
    assert client.post(url, {"List-Unsubscribe": "One-Click"}).status_code == 200
    jane.refresh_from_db()
    assert jane.email_subscription_changed_at == first_change
    # The timeline shows the unsubscribe once, with its channel.
    assert list(jane.events.filter(name="$unsubscribed").values_list("properties", flat=True)) == [{"channel": "email"}]


def test_get_shows_a_confirmation_and_does_not_unsubscribe(jane: Profile) -> None:
    response = Client().get(_path(unsubscribe_url(jane)))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Unsubscribe from email?" in body
    assert 'method="post"' in body and 'name="List-Unsubscribe" value="One-Click"' in body
    assert "j•••@example.com" in body and "jane.doe" not in body
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.SUBSCRIBED


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_refused(jane: Profile, method: str) -> None:
    response = getattr(Client(), method)(_path(unsubscribe_url(jane)))
    assert response.status_code == 405


def test_tampered_and_forged_links_are_404(jane: Profile, workspace: Workspace) -> None:
    other = ProfileFactory(workspace=workspace)
    token = unsubscribe_token(jane)
    client = Client(enforce_csrf_checks=True)
    # Changing the profile id inside the signed value breaks the signature.
    payload, _, signature = token.rpartition(":")
    forged_payload = signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object({"p": other.pk, "w": workspace.pk, "c": "email"})
    tampered = forged_payload.rpartition(":")[0] + ":" + signature
    for bad in (tampered, token[:-1] + ("A" if token[-1] != "A" else "B"), "garbage", payload):
        assert client.post(f"/unsubscribe/{bad}", {"List-Unsubscribe": "One-Click"}).status_code == 404
        assert client.get(f"/preferences/{bad}").status_code == 404
    other.refresh_from_db()
    jane.refresh_from_db()
    assert other.email_subscription == jane.email_subscription == SubscriptionState.SUBSCRIBED


def test_a_link_signed_with_another_salt_or_workspace_is_refused(jane: Profile) -> None:
    # An unsubscribe link is not a preferences link (which could change every channel).
    assert Client().get(f"/preferences/{unsubscribe_token(jane)}").status_code == 404
    assert Client().post(f"/unsubscribe/{preferences_token(jane)}").status_code == 404
    # A validly signed value naming another workspace than the profile's finds nobody.
    elsewhere = WorkspaceFactory()
    token = signing.Signer(salt=PREFERENCES_SALT).sign_object({"p": jane.pk, "w": elsewhere.pk, "c": "*"})
    assert Client().get(f"/preferences/{token}").status_code == 404


def test_a_link_follows_the_profile_it_was_merged_into(jane: Profile, workspace: Workspace) -> None:
    old = ProfileFactory(workspace=workspace)
    url = _path(unsubscribe_url(old))
    ProfileMerge.objects.create(
        workspace=workspace,
        into_profile=jane,
        merged_profile_id=old.pk,
        merged_snapshot={},
        reason="identify",
        actor="t",
    )
    old.delete()
    assert Client().post(url, {"List-Unsubscribe": "One-Click"}).status_code == 200
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.UNSUBSCRIBED


def test_an_erased_persons_link_is_dead(jane: Profile) -> None:
    url = _path(unsubscribe_url(jane))
    jane.delete()
    assert Client().post(url).status_code == 404


def test_preferences_page_shows_each_channel(jane: Profile) -> None:
    Profile.objects.filter(pk=jane.pk).update(sms_subscription=SubscriptionState.UNSUBSCRIBED)
    response = Client().get(_path(preferences_url(jane)))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="email" value="on" checked' in body
    assert 'name="push" value="on" checked' in body
    assert 'name="sms" value="on">' in body  # unticked
    assert "csrfmiddlewaretoken" in body
    assert "•••00" in body


def test_preferences_post_sets_each_channel(jane: Profile) -> None:
    Profile.objects.filter(pk=jane.pk).update(sms_subscription=SubscriptionState.UNSUBSCRIBED)
    client = Client(enforce_csrf_checks=True)
    url = _path(preferences_url(jane))
    page = client.get(url)
    token = page.context["csrf_token"]
    response = client.post(url, {"csrfmiddlewaretoken": str(token), "push": "on", "sms": "on"})
    assert response.status_code == 200
    assert "Your preferences are saved" in response.content.decode()
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.UNSUBSCRIBED  # unticked
    assert jane.push_subscription == SubscriptionState.SUBSCRIBED  # left on: no consent recorded
    assert jane.sms_subscription == SubscriptionState.OPTED_IN  # turned back on: explicit consent


def test_preferences_post_needs_the_csrf_token(jane: Profile) -> None:
    response = Client(enforce_csrf_checks=True).post(_path(preferences_url(jane)), {"push": "on"})
    assert response.status_code == 403
    jane.refresh_from_db()
    assert jane.email_subscription == SubscriptionState.SUBSCRIBED
