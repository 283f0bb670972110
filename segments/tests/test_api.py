"""The segments REST API: CRUD with definition errors that name the condition, size (with its age),
member pages, and "is this person in the segment?", all scoped to the key's workspace."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from rest_framework.test import APIClient

from profiles.models import ApiScope, Workspace
from profiles.tests.api_helpers import api_client_for
from profiles.tests.factories import WorkspaceFactory
from segments.models import Segment
from segments.services import segment_create
from segments.tests.conftest import NOW, make_profile

US = {"type": "location", "field": "country", "op": "eq", "value": "US"}
READ_WRITE = (ApiScope.SEGMENTS_READ, ApiScope.SEGMENTS_WRITE)


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


@pytest.fixture
def api(workspace: Workspace) -> APIClient:
    return api_client_for(workspace, READ_WRITE)


@pytest.fixture
def americans(workspace: Workspace) -> Segment:
    return segment_create(workspace=workspace, name="Americans", definition={"all": [US]})


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    return body


def test_create_a_segment_and_read_it_back(api: APIClient, workspace: Workspace) -> None:
    response = api.post(
        "/api/v1/segments",
        {"name": "Americans", "description": "In the US", "definition": {"all": [US]}},
        format="json",
    )
    body = error_of(response, 201)
    assert body["name"] == "Americans"
    assert body["definition"] == {"all": [US]}
    segment = Segment.objects.get(workspace=workspace)
    assert body["id"] == segment.pk
    assert api.get(f"/api/v1/segments/{segment.pk}").json()["description"] == "In the US"
    listed = api.get("/api/v1/segments").json()
    assert [item["name"] for item in listed["results"]] == ["Americans"]


def test_an_invalid_definition_is_a_400_naming_the_condition(api: APIClient) -> None:
    definition = {"all": [US, {"any": [{"type": "age", "op": "between", "value": [30, 20]}]}]}
    body = error_of(api.post("/api/v1/segments", {"name": "Bad", "definition": definition}, format="json"), 400)
    assert body["code"] == "invalid"
    assert body["message"] == "definition: all[1].any[0]: age: 'between' needs low <= high; got [30, 20]"
    assert body["errors"] == {"definition": ["all[1].any[0]: age: 'between' needs low <= high; got [30, 20]"]}
    assert not Segment.objects.exists()


def test_unknown_fields_and_duplicate_names_are_refused(api: APIClient, americans: Segment) -> None:
    body = error_of(api.post("/api/v1/segments", {"name": "X", "definiton": {"all": []}}, format="json"), 400)
    assert "definiton" in body["errors"]
    body = error_of(api.post("/api/v1/segments", {"name": "Americans", "definition": {"all": []}}, format="json"), 400)
    assert body["message"] == "name: A segment named 'Americans' already exists in this workspace."


def test_patch_changes_only_what_is_sent_and_put_needs_everything(api: APIClient, americans: Segment) -> None:
    url = f"/api/v1/segments/{americans.pk}"
    body = error_of(api.patch(url, {"description": "People in the US"}, format="json"), 200)
    assert body["name"] == "Americans"
    assert body["definition"] == {"all": [US]}
    assert body["description"] == "People in the US"
    body = error_of(api.put(url, {"name": "Yanks"}, format="json"), 400)
    assert "definition" in body["errors"]
    body = error_of(api.put(url, {"name": "Yanks", "definition": {"none": [US]}}, format="json"), 200)
    americans.refresh_from_db()
    assert (americans.name, americans.definition) == ("Yanks", {"none": [US]})


def test_a_cycle_is_refused_naming_the_chain(api: APIClient, workspace: Workspace, americans: Segment) -> None:
    outer = segment_create(
        workspace=workspace, name="Outer", definition={"all": [{"type": "segment", "segment_id": americans.pk}]}
    )
    definition = {"all": [{"type": "segment", "segment_id": outer.pk}]}
    body = error_of(api.patch(f"/api/v1/segments/{americans.pk}", {"definition": definition}, format="json"), 400)
    assert body["message"] == (
        'definition: all[0]: segment: membership would make a cycle: "Americans" → "Outer" → "Americans"'
    )


def test_delete_refuses_a_segment_another_one_uses(api: APIClient, workspace: Workspace, americans: Segment) -> None:
    user = segment_create(
        workspace=workspace, name="Uses it", definition={"all": [{"type": "segment", "segment_id": americans.pk}]}
    )
    body = error_of(api.delete(f"/api/v1/segments/{americans.pk}"), 409)
    assert body["code"] == "segment_in_use"
    assert "'Uses it'" in body["message"]
    assert api.delete(f"/api/v1/segments/{user.pk}").status_code == 204
    assert api.delete(f"/api/v1/segments/{americans.pk}").status_code == 204
    assert not Segment.objects.exists()


def test_scopes_and_workspaces_are_enforced(workspace: Workspace, americans: Segment) -> None:
    reader = api_client_for(workspace, [ApiScope.SEGMENTS_READ])
    assert reader.get(f"/api/v1/segments/{americans.pk}").status_code == 200
    body = error_of(reader.patch(f"/api/v1/segments/{americans.pk}", {"name": "X"}, format="json"), 403)
    assert body["code"] == "missing_scope"
    assert error_of(reader.delete(f"/api/v1/segments/{americans.pk}"), 403)["code"] == "missing_scope"
    profiles_only = api_client_for(workspace, [ApiScope.PROFILES_READ])
    assert profiles_only.get(f"/api/v1/segments/{americans.pk}/size").status_code == 403
    assert APIClient().get("/api/v1/segments").status_code == 401

    other = api_client_for(WorkspaceFactory(), READ_WRITE)
    assert other.get(f"/api/v1/segments/{americans.pk}").status_code == 404
    assert other.get(f"/api/v1/segments/{americans.pk}/size").status_code == 404
    assert other.post(f"/api/v1/segments/{americans.pk}/check", {"profile_id": 1}, format="json").status_code == 404
    assert other.get("/api/v1/segments").json()["results"] == []


def test_size_is_counted_live_and_reused_for_max_age_seconds(
    api: APIClient, workspace: Workspace, americans: Segment
) -> None:
    make_profile(workspace, "ada", country="US")
    make_profile(workspace, "bob", country="FR")
    url = f"/api/v1/segments/{americans.pk}/size"
    with time_machine.travel(NOW, tick=False) as traveller:
        body = error_of(api.get(url), 200)
        assert (body["segment_id"], body["size"], body["age_seconds"]) == (americans.pk, 1, 0)
        make_profile(workspace, "cy", country="US")
        traveller.shift(timedelta(seconds=10))
        body = api.get(url).json()
        assert (body["size"], body["age_seconds"]) == (1, 10), "a 10-second-old count is reused"
        assert api.get(url, {"max_age": 0}).json()["size"] == 2
        traveller.shift(timedelta(seconds=31))
        assert api.get(url).json() == {
            "segment_id": americans.pk,
            "size": 2,
            "computed_at": "2026-03-15T12:00:41Z",
            "age_seconds": 0.0,
        }
    assert error_of(api.get(url, {"max_age": "soon"}), 400)["message"].startswith("max_age: must be a whole number")


def test_members_come_in_id_order_pages_that_follow_next(
    api: APIClient, workspace: Workspace, americans: Segment
) -> None:
    people = [make_profile(workspace, f"us-{n}", country="US") for n in range(5)]
    make_profile(workspace, "fr", country="FR")
    anonymous = make_profile(workspace, "x", country="US")
    anonymous.external_id = None
    anonymous.save()
    url: str | None = f"/api/v1/segments/{americans.pk}/members?limit=2"
    seen = []
    pages = 0
    while url:
        body = error_of(api.get(url), 200)
        seen += body["results"]
        url = body["next"]
        pages += 1
    assert pages == 4  # 2 + 2 + 2 (a full page may be the last: the next one is empty)
    assert seen == [{"id": p.pk, "external_id": p.external_id} for p in people] + [
        {"id": anonymous.pk, "external_id": None}
    ]


def test_check_answers_whether_a_person_is_in_the_segment(
    api: APIClient, workspace: Workspace, americans: Segment
) -> None:
    ada = make_profile(workspace, "ada", country="US", date_of_birth=date(1990, 1, 1))
    make_profile(workspace, "bob", country="FR")
    url = f"/api/v1/segments/{americans.pk}/check"
    body = error_of(api.post(url, {"external_id": "ada"}, format="json"), 200)
    assert (body["in_segment"], body["profile_id"], body["external_id"]) == (True, ada.pk, "ada")
    assert api.post(url, {"external_id": "bob"}, format="json").json()["in_segment"] is False
    assert api.post(url, {"profile_id": ada.pk}, format="json").json()["in_segment"] is True
    assert error_of(api.post(url, {"external_id": "nobody"}, format="json"), 404)["code"] == "not_found"
    body = error_of(api.post(url, {"external_id": "ada", "profile_id": ada.pk}, format="json"), 400)
    assert body["message"] == "external_id: give either external_id or profile_id (not both)"


def test_the_openapi_schema_describes_the_segments_api() -> None:
    from io import StringIO

    import yaml
    from django.core.management import call_command

    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    paths = yaml.safe_load(out.getvalue())["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/segments"])
    assert {"get", "put", "patch", "delete"} <= set(paths["/api/v1/segments/{id}"])
    assert "get" in paths["/api/v1/segments/{id}/size"]
    assert "get" in paths["/api/v1/segments/{id}/members"]
    assert "post" in paths["/api/v1/segments/{id}/check"]
