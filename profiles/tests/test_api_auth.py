"""API key authentication, scopes and workspace isolation of the REST API."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from profiles.models import ApiScope, Workspace
from profiles.services.keys import api_key_create, api_key_revoke
from profiles.tests.api_helpers import api_client_for
from profiles.tests.factories import ProfileFactory, WorkspaceFactory

PROFILE = "/api/v1/profiles/ada"


@pytest.fixture
def api(workspace: Workspace) -> APIClient:
    """A client with a key of the ``workspace`` fixture holding every profiles scope."""
    return api_client_for(workspace)


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def assert_401(response: object, message: str) -> None:
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'  # type: ignore[index]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"code", "message"}
    assert message in body["message"]


def test_a_request_without_a_key_is_401_with_a_bearer_challenge(workspace: Workspace) -> None:
    assert_401(APIClient().get(PROFILE), "Authorization: Bearer sk_")


@pytest.mark.parametrize(
    "header",
    ["Bearer sk_nothere.secret", "Bearer not-a-key", "Basic d2s6", "Bearer", "Bearer sk_a.b extra"],
)
def test_a_wrong_or_malformed_key_is_401(workspace: Workspace, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(PROFILE)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_key_with_the_right_prefix_but_wrong_secret_is_401(workspace: Workspace) -> None:
    _key, secret = api_key_create(workspace=workspace, name="k", scopes=[ApiScope.PROFILES_READ])
    assert_401(bearer(secret + "x").get(PROFILE), "unknown, revoked or expired")


def test_a_revoked_key_is_401(workspace: Workspace) -> None:
    key, secret = api_key_create(workspace=workspace, name="k", scopes=[ApiScope.PROFILES_READ])
    ProfileFactory(workspace=workspace, external_id="ada")
    assert bearer(secret).get(PROFILE).status_code == 200
    api_key_revoke(key=key)
    assert_401(bearer(secret).get(PROFILE), "unknown, revoked or expired")


def test_an_expired_key_is_401(workspace: Workspace) -> None:
    ProfileFactory(workspace=workspace, external_id="ada")
    _key, secret = api_key_create(
        workspace=workspace, name="k", scopes=[ApiScope.PROFILES_READ], expires_at=timezone.now() + timedelta(days=1)
    )
    assert bearer(secret).get(PROFILE).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=1, seconds=1)):
        assert_401(bearer(secret).get(PROFILE), "unknown, revoked or expired")


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("get", "/api/v1/profiles", "profiles.read"),
        ("get", PROFILE, "profiles.read"),
        ("put", PROFILE, "profiles.write"),
        ("patch", PROFILE, "profiles.write"),
        ("delete", PROFILE, "profiles.delete"),
        ("get", f"{PROFILE}/export", "profiles.export"),
        ("post", "/api/v1/profiles/imports", "profiles.write"),
        ("get", "/api/v1/profiles/imports/1", "profiles.write"),
    ],
)
def test_a_key_without_the_scope_is_403_naming_it(workspace: Workspace, method: str, path: str, scope: str) -> None:
    others = [s for s in ApiScope.values if s != scope]
    client = api_client_for(workspace, scopes=others)
    response = (
        getattr(client, method)(path, {}, format="json")
        if method in {"put", "patch"}
        else getattr(client, method)(path)
    )
    assert response.status_code == 403
    assert response.json()["code"] == "missing_scope"
    assert scope in response.json()["message"]


def test_a_key_cannot_read_or_change_another_workspace(workspace: Workspace) -> None:
    other = WorkspaceFactory()
    ProfileFactory(workspace=other, external_id="ada", first_name="Other")
    ProfileFactory(workspace=other, external_id="grace")
    client = api_client_for(workspace)

    assert client.get(PROFILE).status_code == 404
    assert client.get(f"{PROFILE}/export").status_code == 404
    assert client.delete(PROFILE).status_code == 404
    assert client.get("/api/v1/profiles").json()["results"] == []
    # Writing the same external id creates this workspace's own person; the other is untouched.
    assert client.patch(PROFILE, {"attributes": {"first_name": "Mine"}}, format="json").status_code == 201
    assert other.profiles.get(external_id="ada").first_name == "Other"
    assert api_client_for(other).get(PROFILE).json()["attributes"]["first_name"] == "Other"


def test_errors_are_json_objects_with_code_and_message(api: APIClient) -> None:
    response = api.post("/api/v1/profiles", {}, format="json")
    assert response.status_code == 405
    assert response.json() == {"code": "method_not_allowed", "message": 'Method "POST" not allowed.'}
    response = api.get("/api/v1/profiles/nobody")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "nobody" in response.json()["message"]
    response = api.put(PROFILE, "not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    response = api.put(PROFILE, "a=b", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
