"""Unmodified Segment and RudderStack Python SDKs, pointed at a live server, fill profiles."""

from __future__ import annotations

from typing import Any

import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from profiles.models import App, Event, Profile, ProfileMerge
from profiles.tests.factories import AppFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db(transaction=True)

CONTEXT = {
    "app": {"name": "Acme", "version": "2.0.1"},
    "locale": "es-MX",
    "timezone": "America/Mexico_City",
    "device": {"id": "sdk-device-1", "model": "Pixel 8", "type": "android", "token": "fcm-token-1"},
    "os": {"name": "Android", "version": "14"},
}


def make_client(kind: str, write_key: str, host: str, gzip: bool, errors: list[Any]) -> Any:
    def on_error(error: Exception, items: Any) -> None:
        errors.append(error)

    if kind == "segment":
        return SegmentClient(write_key, host=host, gzip=gzip, on_error=on_error, max_retries=1)
    return RudderClient(write_key, host=host, gzip=gzip, on_error=on_error, max_retries=1)


@pytest.mark.parametrize("kind", ["segment", "rudder"])
@pytest.mark.parametrize("gzip", [False, True])
def test_every_call_type_from_an_unmodified_sdk_shows_on_the_profile(live_server: Any, kind: str, gzip: bool) -> None:
    app: App = AppFactory(workspace=WorkspaceFactory(), platform="android")
    errors: list[Any] = []
    client = make_client(kind, app.write_key, live_server.url, gzip, errors)
    anon = f"{kind}-anon-{gzip}"
    client.track(anonymous_id=anon, event="Application Opened", context=CONTEXT)
    client.screen(anonymous_id=anon, name="Onboarding", properties={"step": 1}, context=CONTEXT)
    client.page(anonymous_id=anon, name="Pricing", properties={"url": "https://acme.test/pricing"})
    client.identify(user_id="sdk-user", anonymous_id=anon, traits={"email": "sdk@acme.test", "plan": "gold"})
    client.track(user_id="sdk-user", event="Order Completed", properties={"revenue": 30, "currency": "MXN"})
    client.group(user_id="sdk-user", group_id="team-7", traits={"name": "Team 7"})
    client.alias(previous_id="sdk-legacy-id", user_id="sdk-user")
    client.flush()
    client.join()

    assert errors == []
    profile = Profile.objects.get(workspace=app.workspace)
    assert profile.external_id == "sdk-user"
    assert profile.email == "sdk@acme.test"
    assert profile.custom_attributes == {"plan": "gold"}
    assert (profile.language, profile.country, profile.time_zone) == ("es", "MX", "America/Mexico_City")
    assert (profile.app_version, profile.platform) == ("2.0.1", "android")
    assert profile.session_count == 1
    assert sorted(profile.events.values_list("type", "name")) == [
        ("alias", ""),
        ("group", "team-7"),
        ("identify", ""),
        ("page", "Pricing"),
        ("screen", "Onboarding"),
        ("track", "$session_started"),
        ("track", "Application Opened"),
        ("track", "Order Completed"),
    ]
    assert profile.purchases.get().price == 30
    device = profile.devices.get()
    assert (device.push_provider, device.push_token) == ("fcm", "fcm-token-1")
    assert set(profile.anonymous_ids.values_list("anonymous_id", flat=True)) == {anon, "sdk-legacy-id"}
    assert not ProfileMerge.objects.exists()


def test_sdk_with_a_wrong_key_reports_401_and_stores_nothing(live_server: Any) -> None:
    AppFactory()
    errors: list[Any] = []
    client = make_client("segment", "wk_wrong", live_server.url, False, errors)
    client.track(user_id="u", event="x")
    client.flush()
    client.join()
    assert len(errors) == 1
    assert getattr(errors[0], "status", None) == 401
    assert not Event.objects.exists()


def test_resent_messages_from_an_sdk_are_stored_once(live_server: Any) -> None:
    app = AppFactory()
    for _ in range(2):
        client = make_client("segment", app.write_key, live_server.url, False, [])
        client.track(user_id="u", event="Retry Me", message_id="fixed-message-id")
        client.flush()
        client.join()
    assert Event.objects.filter(name="Retry Me").count() == 1
