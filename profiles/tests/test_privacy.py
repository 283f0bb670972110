"""Erasure, suppression and export, at the service level (the API tests cover the endpoints)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from profiles.models import (
    AnonymousId,
    App,
    Device,
    Event,
    EventType,
    Profile,
    ProfileMerge,
    Purchase,
    Suppression,
    Workspace,
)
from profiles.services.privacy import (
    profile_delete,
    profile_export,
    profile_export_json,
    suppressed_identifiers,
    suppression_add,
    suppression_hash,
)
from profiles.tests.api_helpers import api_client_for
from profiles.tests.factories import ProfileFactory, WorkspaceFactory

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_history(profile: Profile, app: App, *, events: int = 3, prefix: str = "m") -> None:
    """A person with events, a purchase, a device, two anonymous ids and a merge record."""
    stored = Event.objects.bulk_create(
        Event(
            workspace_id=profile.workspace_id,
            profile=profile,
            app=app,
            type=EventType.TRACK,
            name="Order Completed" if i == 0 else "Screen Viewed",
            properties={"i": i},
            message_id=f"{prefix}-{i}",
            timestamp=T0 + timedelta(minutes=i),
            received_at=T0 + timedelta(minutes=i),
        )
        for i in range(events)
    )
    Purchase.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        event=stored[0],
        product_id="sku-1",
        price=Decimal("9.99"),
        currency="EUR",
        quantity=2,
        timestamp=T0,
    )
    Device.objects.create(
        workspace_id=profile.workspace_id,
        profile=profile,
        device_id=f"{prefix}-device",
        platform="ios",
        push_token="tok",
        push_provider="apns",
        push_enabled=True,
        first_seen=T0,
        last_seen=T0,
    )
    for anon in ("a", "b"):
        AnonymousId.objects.create(
            workspace_id=profile.workspace_id, profile=profile, anonymous_id=f"{prefix}-anon-{anon}"
        )
    ProfileMerge.objects.create(
        workspace_id=profile.workspace_id,
        into_profile=profile,
        merged_profile_id=999_999,
        merged_snapshot={"id": 999_999, "external_id": None, "email": "old@example.com", "phone": ""},
        reason=ProfileMerge.Reason.IDENTIFY,
        actor="test",
    )


def test_suppression_hash_is_salted_sha256_of_the_normalized_value(workspace: Workspace) -> None:
    expected = hashlib.sha256(f"{workspace.suppression_salt}:email:ada@example.com".encode()).hexdigest()
    assert suppression_hash(workspace=workspace, kind="email", value=" Ada@Example.com ") == expected
    assert suppression_hash(workspace=workspace.suppression_salt, kind="email", value="ada@example.com") == expected
    other = WorkspaceFactory()
    assert suppression_hash(workspace=other, kind="email", value="ada@example.com") != expected
    with pytest.raises(ValueError, match="kind must be one of"):
        suppression_hash(workspace=workspace, kind="nickname", value="x")


def test_suppressed_identifiers_answers_for_a_batch_in_one_query(
    workspace: Workspace, django_assert_num_queries: object
) -> None:
    suppression_add(
        workspace=workspace,
        identifiers=[("external_id", "gone-1"), ("anonymous_id", "anon-gone"), ("email", "gone@example.com")],
    )
    other = WorkspaceFactory()
    suppression_add(workspace=other, identifiers=[("external_id", "other-gone")])

    with django_assert_num_queries(1):  # type: ignore[operator]
        external, anonymous = suppressed_identifiers(
            workspace_id=workspace.pk,
            external_ids=["gone-1", "alive", "other-gone", "anon-gone"],
            anonymous_ids=["anon-gone", "gone-1", "anon-alive"],
        )
    assert external == {"gone-1"}
    # Kinds are separate namespaces: an anonymous id equal to a deleted user id is not suppressed.
    assert anonymous == {"anon-gone"}


def test_suppressed_identifiers_with_nothing_to_check_runs_no_query(
    workspace: Workspace, django_assert_num_queries: object
) -> None:
    with django_assert_num_queries(0):  # type: ignore[operator]
        assert suppressed_identifiers(workspace_id=workspace.pk, external_ids=[], anonymous_ids=[""]) == (set(), set())


def test_profile_delete_erases_the_history_and_suppresses_every_identifier(workspace: Workspace, app: App) -> None:
    person = ProfileFactory(workspace=workspace, external_id="ada", email="ada@example.com", phone="+14155550100")
    make_history(person, app, events=5)
    bystander = ProfileFactory(workspace=workspace, external_id="grace")
    make_history(bystander, app, prefix="g")

    result = profile_delete(profile=person)

    assert result.as_dict() == {
        "profiles": 1,
        "events": 5,
        "purchases": 1,
        "devices": 1,
        "anonymous_ids": 2,
        "merges": 1,
        # external id, email, phone, two anonymous ids, and the merged profile's email
        "suppressed_identifiers": 6,
        "other": {},
    }
    assert not Profile.objects.filter(pk=person.pk).exists()
    for model in (Event, Purchase, Device, AnonymousId):
        assert not model.objects.filter(profile_id=person.pk).exists()
    assert not ProfileMerge.objects.filter(into_profile_id=person.pk).exists()
    # The bystander keeps everything.
    assert Event.objects.filter(profile=bystander).count() == 3
    assert Device.objects.filter(profile=bystander).count() == 1

    assert suppressed_identifiers(
        workspace_id=workspace.pk, external_ids=["ada", "grace"], anonymous_ids=["m-anon-a", "m-anon-b", "g-anon-a"]
    ) == ({"ada"}, {"m-anon-a", "m-anon-b"})
    digests = set(Suppression.objects.filter(workspace=workspace).values_list("kind", "identifier_hash"))
    assert ("email", suppression_hash(workspace=workspace, kind="email", value="ada@example.com")) in digests
    assert ("phone", suppression_hash(workspace=workspace, kind="phone", value="+14155550100")) in digests
    assert ("email", suppression_hash(workspace=workspace, kind="email", value="old@example.com")) in digests
    # Nothing readable is kept: only 64-character hex digests ("ada" itself is valid hex, so a
    # substring check could match a digest by chance).
    stored = list(Suppression.objects.values_list("identifier_hash", flat=True))
    assert stored and all(len(h) == 64 and set(h) <= set("0123456789abcdef") for h in stored)
    assert not any("example.com" in h or "+1415" in h for h in stored)


def test_profile_delete_of_a_profile_already_gone_changes_nothing(workspace: Workspace) -> None:
    person = ProfileFactory(workspace=workspace, external_id="ada")
    Profile.objects.filter(pk=person.pk).delete()
    assert profile_delete(profile=person).profiles == 0
    assert not Suppression.objects.exists()


def test_profile_export_holds_everything_about_the_person(workspace: Workspace, app: App) -> None:
    person = ProfileFactory(
        workspace=workspace, external_id="ada", email="ada@example.com", custom_attributes={"plan": "pro"}
    )
    make_history(person, app, events=2)

    export = profile_export(profile=person)
    document = "".join(profile_export_json(export))

    data = json.loads(document)
    assert data["profile"]["external_id"] == "ada"
    assert data["profile"]["custom_attributes"] == {"plan": "pro"}
    assert data["profile"]["email_subscription"] == "subscribed"
    assert sorted(data["anonymous_ids"]) == ["m-anon-a", "m-anon-b"]
    assert [d["device_id"] for d in data["devices"]] == ["m-device"]
    assert [e["message_id"] for e in data["events"]] == ["m-0", "m-1"]
    assert data["purchases"][0]["price"] == "9.9900"
    assert data["merges"][0]["merged_snapshot"]["email"] == "old@example.com"


# --- Through the API ---------------------------------------------------------------------------


@pytest.fixture
def api(workspace: Workspace) -> APIClient:
    return api_client_for(workspace)


def test_delete_through_the_api_erases_and_refuses_re_creation(api: APIClient, workspace: Workspace, app: App) -> None:
    person = ProfileFactory(workspace=workspace, external_id="ada", email="ada@example.com")
    make_history(person, app, events=3)

    response = api.delete("/api/v1/profiles/ada")

    assert response.status_code == 200
    assert response.json() == {
        "external_id": "ada",
        "deleted": {
            "profiles": 1,
            "events": 3,
            "purchases": 1,
            "devices": 1,
            "anonymous_ids": 2,
            "merges": 1,
            "suppressed_identifiers": 5,
            "other": {},
        },
    }
    assert api.get("/api/v1/profiles/ada").status_code == 404
    assert not Event.objects.filter(workspace=workspace).exists()
    assert not Profile.objects.filter(workspace=workspace).exists()

    again = api.put("/api/v1/profiles/ada", {"attributes": {"first_name": "Ada"}}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "suppressed"
    assert "deleted" in again.json()["message"]
    assert not Profile.objects.filter(workspace=workspace).exists()
    assert api.delete("/api/v1/profiles/ada").status_code == 404


def test_suppression_is_per_workspace(api: APIClient, workspace: Workspace) -> None:
    ProfileFactory(workspace=workspace, external_id="ada")
    api.delete("/api/v1/profiles/ada")
    other = WorkspaceFactory()
    assert api_client_for(other).put("/api/v1/profiles/ada", {}, format="json").status_code == 201


def test_export_through_the_api_streams_the_whole_person(api: APIClient, workspace: Workspace, app: App) -> None:
    person = ProfileFactory(workspace=workspace, external_id="ada", email="ada@example.com", first_name="Ada")
    make_history(person, app, events=3)

    response = api.get("/api/v1/profiles/ada/export")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="profile-{person.pk}.json"'
    data = json.loads(b"".join(response.streaming_content))  # type: ignore[attr-defined]
    assert set(data) == {"profile", "anonymous_ids", "devices", "merges", "events", "purchases"}
    assert (data["profile"]["email"], data["profile"]["first_name"]) == ("ada@example.com", "Ada")
    assert len(data["events"]) == 3
    assert data["events"][0]["name"] == "Order Completed"
    assert data["purchases"][0]["product_id"] == "sku-1"
    assert "workspace_id" not in data["profile"]
