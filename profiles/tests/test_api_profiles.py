"""Listing, reading, creating and updating profiles through the REST API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from profiles.models import AnonymousId, Device, Profile, Workspace
from profiles.tests.api_helpers import api_client_for
from profiles.tests.factories import ProfileFactory, WorkspaceFactory
from profiles.tests.test_privacy import make_history

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def api(workspace: Workspace) -> APIClient:
    """A client with a key of the ``workspace`` fixture holding every profiles scope."""
    return api_client_for(workspace)


def ids(response: Any) -> list[str | None]:
    assert response.status_code == 200, response.json()
    return [item["external_id"] for item in response.json()["results"]]


# --- List, filters, pagination ----------------------------------------------------------------


@pytest.fixture
def people(workspace: Workspace) -> list[Profile]:
    return [
        ProfileFactory(
            workspace=workspace,
            external_id="ada",
            email="ada@example.com",
            phone="+14155550100",
            country="GB",
            language="en",
            platform="ios",
            gender="female",
            email_subscription="opted_in",
            session_count=12,
            first_seen=T0 - timedelta(days=30),
            last_seen=T0,
            custom_attributes={"plan": "pro", "age": 36, "beta": True},
        ),
        ProfileFactory(
            workspace=workspace,
            external_id="grace",
            email="grace@example.com",
            country="US",
            language="en",
            platform="android",
            gender="female",
            push_subscription="unsubscribed",
            session_count=3,
            first_seen=T0 - timedelta(days=2),
            last_seen=T0 - timedelta(days=1),
            custom_attributes={"plan": "free", "age": "36"},
        ),
        ProfileFactory(workspace=workspace, external_id=None, platform="web", session_count=1, last_seen=T0),
        ProfileFactory(workspace=WorkspaceFactory(), external_id="stranger", email="ada@example.com"),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["ada", "grace", None]),
        ("external_id=grace", ["grace"]),
        ("email=Ada@Example.COM", ["ada"]),
        ("phone=%2B1 (415) 555-0100", ["ada"]),
        ("country=us", ["grace"]),
        ("language=EN", ["ada", "grace"]),
        ("platform=web", [None]),
        ("gender=female&country=GB", ["ada"]),
        ("email_subscription=opted_in", ["ada"]),
        ("push_subscription=unsubscribed", ["grace"]),
        ("sms_subscription=subscribed", ["ada", "grace", None]),
        ("last_seen_after=2025-05-01T00:00:00Z", ["ada", None]),
        ("last_seen_before=2025-05-01T00:00:00Z", ["grace"]),
        ("first_seen_after=2025-04-25T00:00:00Z&first_seen_before=2025-05-01T00:00:00Z", ["grace"]),
        ("session_count_min=3&session_count_max=12", ["ada", "grace"]),
        ("session_count_min=4", ["ada"]),
        ("anonymous=true", [None]),
        ("anonymous=false", ["ada", "grace"]),
        ("attr.plan=pro", ["ada"]),
        ("attr.age=36", ["ada", "grace"]),
        ("attr.beta=true", ["ada"]),
        ("attr.plan=pro&attr.beta=false", []),
    ],
)
def test_list_filters(api: APIClient, people: list[Profile], query: str, expected: list[str | None]) -> None:
    assert ids(api.get(f"/api/v1/profiles?{query}")) == expected


def test_list_created_range(api: APIClient, workspace: Workspace) -> None:
    with time_machine.travel(T0, tick=False):
        ProfileFactory(workspace=workspace, external_id="old")
    with time_machine.travel(T0 + timedelta(days=3), tick=False):
        ProfileFactory(workspace=workspace, external_id="new")
    assert ids(api.get("/api/v1/profiles?created_after=2025-05-02T00:00:00Z")) == ["new"]
    assert ids(api.get("/api/v1/profiles?created_before=2025-05-02T00:00:00Z")) == ["old"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("last_seen_after=yesterday", "last_seen_after"),
        ("platform=windows", "platform"),
        ("session_count_min=many", "session_count_min"),
        ("anonymous=perhaps", "anonymous"),
    ],
)
def test_a_bad_filter_value_is_400_naming_the_filter(api: APIClient, query: str, field: str) -> None:
    response = api.get(f"/api/v1/profiles?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert response.json()["message"].startswith(f"{field}: ")


def test_list_pages_with_a_cursor_and_no_count(api: APIClient, workspace: Workspace) -> None:
    for n in range(7):
        ProfileFactory(workspace=workspace, external_id=f"p{n}")
    seen: list[str | None] = []
    page = api.get("/api/v1/profiles?limit=3").json()
    assert set(page) == {"next", "previous", "results"}
    while True:
        seen += [item["external_id"] for item in page["results"]]
        if not page["next"]:
            break
        page = api.get(page["next"]).json()
    assert seen == [f"p{n}" for n in range(7)]


def test_list_item_shape(api: APIClient, people: list[Profile]) -> None:
    ada = api.get("/api/v1/profiles?external_id=ada").json()["results"][0]
    assert ada["anonymous"] is False
    assert ada["attributes"]["email"] == "ada@example.com"
    assert ada["attributes"]["session_count"] == 12
    assert ada["custom_attributes"] == {"plan": "pro", "age": 36, "beta": True}
    assert ada["subscriptions"]["email"] == {"state": "opted_in", "changed_at": None}


# --- Detail ----------------------------------------------------------------------------------


def test_get_profile_with_devices_anonymous_ids_and_counts(api: APIClient, workspace: Workspace, app: Any) -> None:
    ada = ProfileFactory(workspace=workspace, external_id="ada", first_name="Ada", custom_attributes={"plan": "pro"})
    make_history(ada, app, events=4)

    body = api.get("/api/v1/profiles/ada").json()

    assert body["external_id"] == "ada"
    assert body["attributes"]["first_name"] == "Ada"
    assert body["custom_attributes"] == {"plan": "pro"}
    assert set(body["subscriptions"]) == {"email", "push", "sms"}
    assert body["anonymous_ids"] == ["m-anon-a", "m-anon-b"]
    assert [d["device_id"] for d in body["devices"]] == ["m-device"]
    assert body["devices"][0]["push_enabled"] is True
    assert body["counts"] == {"events": 4, "purchases": 1, "devices": 1, "anonymous_ids": 2}


def test_external_ids_with_slashes_and_spaces_are_addressable(api: APIClient, workspace: Workspace) -> None:
    ProfileFactory(workspace=workspace, external_id="crm/42 b")
    assert api.get("/api/v1/profiles/crm%2F42%20b").json()["external_id"] == "crm/42 b"
    assert api.get("/api/v1/profiles/crm%2F42%20b/export").status_code == 200


# --- Create and update -----------------------------------------------------------------------


def test_put_creates_a_profile_with_attributes_subscriptions_and_devices(api: APIClient, workspace: Workspace) -> None:
    with time_machine.travel(T0, tick=False):
        response = api.put(
            "/api/v1/profiles/ada",
            {
                "attributes": {
                    "email_address": "Ada@Example.com",
                    "firstName": "Ada",
                    "dob": "1990-04-23",
                    "phone": "+44 20 7946 0958",
                    "home_city": "London",
                    "plan": "pro",
                    "score": 9.5,
                    "tags": ["a", "b"],
                },
                "subscriptions": {"email": "opted_in", "sms": "subscribed"},
                "devices": [
                    {
                        "device_id": "ios-1",
                        "platform": "ios",
                        "push_provider": "apns",
                        "push_token": "ab12",
                        "model": "iPhone15,2",
                        "os_name": "iOS",
                        "os_version": "17.4",
                        "app_version": "3.1.0",
                        "locale": "en-GB",
                    },
                    {
                        "device_id": "web-1",
                        "platform": "web",
                        "push_provider": "webpush",
                        "push_token": {"endpoint": "https://push.example/1", "keys": {"p256dh": "x", "auth": "y"}},
                    },
                ],
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["attributes"]["email"] == "ada@example.com"
    assert body["attributes"]["first_name"] == "Ada"
    assert body["attributes"]["date_of_birth"] == "1990-04-23"
    assert body["attributes"]["phone"] == "+442079460958"
    assert body["attributes"]["city"] == "London"
    assert body["custom_attributes"] == {"plan": "pro", "score": 9.5, "tags": ["a", "b"]}
    # Only a real change of state is timestamped: "subscribed" is the default.
    assert body["subscriptions"]["email"] == {"state": "opted_in", "changed_at": "2025-05-01T09:00:00Z"}
    assert body["subscriptions"]["sms"] == {"state": "subscribed", "changed_at": None}
    devices = {d["device_id"]: d for d in body["devices"]}
    assert devices["ios-1"]["push_enabled"] is True  # a token enables push
    assert devices["ios-1"]["os_version"] == "17.4"
    assert devices["web-1"]["push_token"].startswith('{"endpoint":"https://push.example/1"')
    profile = Profile.objects.get(workspace=workspace, external_id="ada")
    assert 0 <= profile.random_bucket <= 9999


def test_patch_merges_and_null_removes_a_custom_attribute(api: APIClient, workspace: Workspace) -> None:
    ProfileFactory(
        workspace=workspace,
        external_id="ada",
        first_name="Ada",
        last_name="L",
        custom_attributes={"plan": "pro", "x": 1},
    )
    response = api.patch(
        "/api/v1/profiles/ada",
        {"attributes": {"last_name": None, "x": None, "level": 3}},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["attributes"]["first_name"] == "Ada"  # untouched
    assert body["attributes"]["last_name"] == ""  # cleared
    assert body["custom_attributes"] == {"plan": "pro", "level": 3}


def test_subscription_change_time_moves_only_when_the_state_changes(api: APIClient, workspace: Workspace) -> None:
    with time_machine.travel(T0, tick=False):
        api.put("/api/v1/profiles/ada", {"subscriptions": {"push": "opted_in"}}, format="json")
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        same = api.patch("/api/v1/profiles/ada", {"subscriptions": {"push": "opted_in"}}, format="json").json()
    assert same["subscriptions"]["push"]["changed_at"] == "2025-05-01T09:00:00Z"
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        # The attribute spelling counts as well.
        changed = api.patch("/api/v1/profiles/ada", {"attributes": {"push_subscribe": "unsubscribed"}}, format="json")
    assert changed.json()["subscriptions"]["push"] == {"state": "unsubscribed", "changed_at": "2025-05-03T09:00:00Z"}


def test_devices_are_upserted_by_device_id_and_move_between_people(api: APIClient, workspace: Workspace) -> None:
    with time_machine.travel(T0, tick=False):
        api.put(
            "/api/v1/profiles/ada",
            {"devices": [{"device_id": "d1", "platform": "android", "push_provider": "fcm", "push_token": "t1"}]},
            format="json",
        )
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        api.patch("/api/v1/profiles/ada", {"devices": [{"device_id": "d1", "os_version": "14"}]}, format="json")
        device = Device.objects.get(workspace=workspace, device_id="d1")
        # Unsent fields are kept; first seen stays.
        assert (device.platform, device.push_token, device.push_enabled, device.os_version) == (
            "android",
            "t1",
            True,
            "14",
        )
        assert device.first_seen == T0
        assert device.last_seen == T0 + timedelta(hours=1)

        api.patch("/api/v1/profiles/ada", {"devices": [{"device_id": "d1", "push_token": ""}]}, format="json")
        assert Device.objects.get(device_id="d1").push_enabled is False

        response = api.put("/api/v1/profiles/grace", {"devices": [{"device_id": "d1"}]}, format="json")
    assert [d["device_id"] for d in response.json()["devices"]] == ["d1"]
    assert api.get("/api/v1/profiles/ada").json()["devices"] == []
    assert Device.objects.filter(workspace=workspace).count() == 1


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"attributes": {"email": "not-an-email"}}, "attributes.email", "must be an email address"),
        ({"attributes": {"phone": "12"}}, "attributes.phone", "E.164"),
        ({"attributes": {"dob": "23/04/1990"}}, "attributes.dob", "ISO 8601"),
        ({"attributes": {"gender": "x"}}, "attributes.gender", "must be one of"),
        ({"attributes": {"country": "France"}}, "attributes.country", "alpha-2"),
        ({"attributes": {"time_zone": "Mars/Base"}}, "attributes.time_zone", "IANA"),
        ({"attributes": {"$plan": "pro"}}, "attributes.$plan", "may not start with $"),
        ({"attributes": {"last_seen": "2025-01-01"}}, "attributes.last_seen", "maintained by the platform"),
        ({"attributes": {"external_id": "other"}}, "attributes.external_id", "identity"),
        ({"attributes": ["not", "an", "object"]}, "attributes", "dictionary"),
        ({"subscriptions": {"email": "yes"}}, "subscriptions.email", "not a valid choice"),
        ({"subscriptions": {"fax": "opted_in"}}, "subscriptions.fax", "unknown field"),
        ({"devices": [{"platform": "ios"}]}, "devices[0].device_id", "required"),
        ({"devices": [{"device_id": "d", "push_provider": "pigeon"}]}, "devices[0].push_provider", "not a valid"),
        ({"devices": [{"device_id": "d", "push_enabled": True}]}, "devices[0].push_enabled", "without a push_token"),
        ({"devices": [{"device_id": "d"}, {"device_id": "d"}]}, "devices[1].device_id", "appears twice"),
        ({"devices": [{"device_id": "d", "colour": "red"}]}, "devices[0].colour", "unknown field"),
        ({"attribute": {"plan": "pro"}}, "attribute", "unknown field"),
    ],
)
def test_invalid_input_is_400_naming_the_field_and_the_rule(
    api: APIClient, workspace: Workspace, body: dict[str, Any], field: str, rule: str
) -> None:
    response = api.put("/api/v1/profiles/ada", body, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()
    assert error["code"] == "invalid"
    assert field in error["errors"], error
    assert any(rule in message for message in error["errors"][field]), error
    assert error["message"].startswith(f"{field}: ")
    # Nothing was written.
    assert not Profile.objects.filter(workspace=workspace, external_id="ada").exists()


def test_an_external_id_over_255_characters_is_refused(api: APIClient) -> None:
    response = api.put(f"/api/v1/profiles/{'x' * 256}", {}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"external_id": ["must be at most 255 characters"]}


def test_put_keeps_anonymous_ids_of_the_person(api: APIClient, workspace: Workspace) -> None:
    ada = ProfileFactory(workspace=workspace, external_id="ada")
    AnonymousId.objects.create(workspace=workspace, profile=ada, anonymous_id="anon-1")
    response = api.patch("/api/v1/profiles/ada", {"attributes": {"plan": "pro"}}, format="json")
    assert response.json()["anonymous_ids"] == ["anon-1"]
