"""The segment admin as marketers use it: saving what the builder composed (errors next to their
condition), the live estimate and preview, suggestions from the workspace's data, the member
export, the size over time, lifecycle thresholds, and workspace tenancy throughout."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from profiles.engagement import SESSION_STARTED
from profiles.models import Workspace
from profiles.tests.factories import WorkspaceFactory
from segments import admin as segments_admin
from segments.models import LifecycleSettings, Segment, SegmentSizeSnapshot
from segments.services import segment_create
from segments.tests.conftest import NOW, buy, make_profile, track, track_many

US = {"type": "location", "field": "country", "op": "eq", "value": "US"}
ESTIMATE = reverse("admin:segments_segment_estimate")
PREVIEW = reverse("admin:segments_segment_preview")
SUGGEST = reverse("admin:segments_segment_suggest")


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


def staff(username: str, *workspaces: Workspace, profiles: bool = True) -> User:
    user = User.objects.create_user(username=username, password="pw", is_staff=True)
    permissions = Permission.objects.filter(content_type__app_label="segments")
    if profiles:
        permissions |= Permission.objects.filter(content_type__app_label="profiles", codename="view_profile")
    user.user_permissions.set(permissions)
    for workspace in workspaces:
        workspace.members.add(user)
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def marketer(workspace: Workspace) -> Client:
    return client_for(staff("marketer", workspace))


def post_json(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


# --- saving what the builder composed ---------------------------------------------------------------


def test_the_add_page_draws_the_builder_with_its_catalog(marketer: Client, workspace: Workspace) -> None:
    response = marketer.get(reverse("admin:segments_segment_add"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="segment-builder"' in page
    assert "segments/builder.js" in page
    catalog = json.loads(page.split('id="id_definition-catalog" type="application/json">')[1].split("</script>")[0])
    types = {item["type"] for item in catalog["types"]}
    assert {"event", "sessions", "near", "money_spent", "segment", "app_version"} <= types
    assert {op["value"] for op in catalog["operators"]["date"]} >= {"before", "less_than_days_ago"}


def test_saving_a_segment_goes_through_the_service(marketer: Client, workspace: Workspace) -> None:
    definition = {"all": [US, {"type": "sessions", "op": "gte", "value": 5, "window": {"last": 30, "unit": "days"}}]}
    response = marketer.post(
        reverse("admin:segments_segment_add"),
        {
            "workspace": workspace.pk,
            "name": "  Keen Americans ",
            "description": "",
            "definition": json.dumps(definition),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    segment = Segment.objects.get()
    assert (segment.name, segment.definition, segment.created_by.username) == (  # type: ignore[union-attr]
        "Keen Americans",
        definition,
        "marketer",
    )
    # And changing it: the workspace is fixed, the rest changes.
    change = reverse("admin:segments_segment_change", args=[segment.pk])
    response = marketer.post(
        change, {"name": "Keen", "description": "5+ sessions", "definition": json.dumps({"all": [US]})}
    )
    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.description, segment.definition) == ("Keen", "5+ sessions", {"all": [US]})


def test_problems_are_shown_with_the_path_of_their_condition(marketer: Client, workspace: Workspace) -> None:
    segment_create(workspace=workspace, name="Taken", definition={"all": []})
    definition = {"all": [US, {"any": [{"type": "age", "op": "between", "value": [30, 20]}]}]}
    response = marketer.post(
        reverse("admin:segments_segment_add"),
        {"workspace": workspace.pk, "name": "Taken", "description": "", "definition": json.dumps(definition)},
    )
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["definition"] == ["all[1].any[0]: age: 'between' needs low <= high; got [30, 20]"]
    assert form.errors["name"] == ["A segment named 'Taken' already exists in this workspace."]
    page = response.content.decode()
    config = json.loads(page.split('id="id_definition-config" type="application/json">')[1].split("</script>")[0])
    assert config["problems"] == [
        {"path": "all[1].any[0]", "message": "age: 'between' needs low <= high; got [30, 20]"}
    ]
    assert Segment.objects.count() == 1


def test_a_segment_another_uses_cannot_be_deleted(marketer: Client, workspace: Workspace) -> None:
    americans = segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    segment_create(
        workspace=workspace, name="Uses it", definition={"all": [{"type": "segment", "segment_id": americans.pk}]}
    )
    url = reverse("admin:segments_segment_delete", args=[americans.pk])
    response = marketer.get(url)
    assert "Segment: Uses it (uses Americans)" in response.content.decode()
    marketer.post(url, {"post": "yes"})
    assert Segment.objects.filter(pk=americans.pk).exists()


# --- the live estimate and preview ----------------------------------------------------------------


def test_the_estimate_counts_the_draft_and_says_how_old_the_count_is(marketer: Client, workspace: Workspace) -> None:
    make_profile(workspace, "ada", country="US")
    make_profile(workspace, "bob", country="FR")
    draft = {"workspace": workspace.pk, "segment": None, "definition": {"all": [US]}}
    with time_machine.travel(NOW, tick=False) as traveller:
        body = post_json(marketer, ESTIMATE, draft).json()
        assert (body["size"], body["age_seconds"], body["problems"]) == (1, 0, [])
        assert body["computed_at"] == "2026-03-15T12:00:00+00:00"
        make_profile(workspace, "cy", country="US")
        traveller.shift(timedelta(seconds=12))
        body = post_json(marketer, ESTIMATE, draft).json()
        assert (body["size"], body["age_seconds"]) == (1, 12), "the same draft within 30 s reuses the count"
        traveller.shift(timedelta(seconds=30))
        assert post_json(marketer, ESTIMATE, draft).json()["size"] == 2


def test_the_estimate_names_each_problem_by_path(marketer: Client, workspace: Workspace) -> None:
    draft = {
        "workspace": workspace.pk,
        "definition": {
            "all": [
                {"type": "event", "event": ""},
                {"none": [{"type": "near", "latitude": 95, "longitude": 0, "radius_km": 5}]},
            ]
        },
    }
    body = post_json(marketer, ESTIMATE, draft).json()
    assert "size" not in body
    paths = [problem["path"] for problem in body["problems"]]
    assert paths == ["all[0]", "all[1].none[0]"]
    assert body["problems"][0]["message"] == "event: 'event' is required"


def test_the_preview_lists_the_first_matches_with_links_to_their_profiles(
    marketer: Client, workspace: Workspace
) -> None:
    people = [make_profile(workspace, f"us-{n}", country="US", first_name=f"P{n}") for n in range(25)]
    make_profile(workspace, "fr", country="FR")
    body = post_json(marketer, PREVIEW, {"workspace": workspace.pk, "definition": {"all": [US]}}).json()
    assert [row["external_id"] for row in body["profiles"]] == [p.external_id for p in people[:20]]
    assert body["profiles"][0]["url"] == reverse("admin:profiles_profile_change", args=[people[0].pk])
    assert body["profiles"][0]["name"] == "P0"


def test_previewing_people_needs_permission_to_view_profiles(workspace: Workspace) -> None:
    client = client_for(staff("segments-only", workspace, profiles=False))
    assert post_json(client, PREVIEW, {"workspace": workspace.pk, "definition": {"all": []}}).status_code == 403
    assert post_json(client, ESTIMATE, {"workspace": workspace.pk, "definition": {"all": []}}).status_code == 200


# --- suggestions from the workspace's data -----------------------------------------------------------


def test_suggestions_come_from_the_workspace_data(marketer: Client, workspace: Workspace) -> None:
    ada = make_profile(workspace, "ada", custom_attributes={"plan": "pro", "points": 12, "tags": ["a"]})
    make_profile(workspace, "bob", custom_attributes={"plan": "free"})
    track(ada, "Added to Cart", NOW, {"sku": "p1", "price": 9.5})
    track(ada, "Added to Cart", NOW - timedelta(days=3), {"sku": "p2", "coupon": True})
    track_many(ada, SESSION_STARTED, [NOW])
    buy(ada, "sku-1", "9.99", NOW)
    other = WorkspaceFactory()
    track(make_profile(other, "x"), "Secret Event", NOW)
    segment_create(workspace=workspace, name="Americans", definition={"all": [US]})

    def suggest(**params: Any) -> Any:
        response = marketer.get(SUGGEST, {"workspace": workspace.pk, **params})
        assert response.status_code == 200
        return response.json()["items"]

    assert suggest(what="events") == [SESSION_STARTED, "Added to Cart", "Order Completed"]
    assert suggest(what="events", q="Add") == ["Added to Cart"]
    properties = {item["name"]: item["data_type"] for item in suggest(what="properties", event="Added to Cart")}
    assert properties == {"sku": "string", "price": "number", "coupon": "boolean"}
    attributes = {item["name"]: item["data_type"] for item in suggest(what="attributes")}
    assert attributes == {"plan": "string", "points": "number", "tags": "array"}
    assert suggest(what="products") == ["sku-1"]
    assert [item["name"] for item in suggest(what="segments")] == ["Americans"]
    assert marketer.get(SUGGEST, {"workspace": other.pk, "what": "events"}).status_code == 404


# --- export, size over time, tenancy -----------------------------------------------------------------


def test_members_export_as_csv_page_by_page(
    marketer: Client, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments_admin, "EXPORT_PAGE", 2)
    for n in range(5):
        make_profile(workspace, f"us-{n}", country="US", email=f"p{n}@example.com", phone="+14155550100")
    make_profile(workspace, "=cmd", country="US", first_name="@SUM(A1)")
    make_profile(workspace, "fr", country="FR")
    segment = segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    response = marketer.get(reverse("admin:segments_segment_export", args=[segment.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="segment-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))  # type: ignore[arg-type]
    assert [row["external_id"] for row in rows] == ["us-0", "us-1", "us-2", "us-3", "us-4", "'=cmd"]
    assert rows[0]["email"] == "p0@example.com"
    assert rows[0]["phone"] == "+14155550100", "a phone number is data, not a formula"
    assert rows[5]["first_name"] == "'@SUM(A1)"


def test_the_change_page_charts_the_daily_sizes_and_links_the_export(marketer: Client, workspace: Workspace) -> None:
    segment = segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    SegmentSizeSnapshot.objects.create(segment=segment, date=date(2026, 3, 1), size=120)
    SegmentSizeSnapshot.objects.create(segment=segment, date=date(2026, 3, 2), size=180)
    with time_machine.travel(NOW, tick=False):
        page = marketer.get(reverse("admin:segments_segment_change", args=[segment.pk])).content.decode()
    assert '<svg class="segment-size-chart"' in page
    assert "<title>2026-03-02: 180</title>" in page
    assert reverse("admin:segments_segment_export", args=[segment.pk]) in page
    listing = marketer.get(reverse("admin:segments_segment_changelist")).content.decode()
    assert "180" in listing and "2026" in listing


def test_other_workspaces_are_out_of_reach(workspace: Workspace) -> None:
    other = WorkspaceFactory(name="Globex", slug="globex")
    theirs = segment_create(workspace=other, name="Theirs", definition={"all": []})
    client = client_for(staff("marketer", workspace))
    assert client.get(reverse("admin:segments_segment_change", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("admin:segments_segment_export", args=[theirs.pk])).status_code == 404
    assert post_json(client, ESTIMATE, {"workspace": other.pk, "definition": {"all": []}}).status_code == 404
    assert post_json(client, ESTIMATE, {"workspace": workspace.pk, "segment": theirs.pk,
                                        "definition": {"all": []}}).status_code == 404  # fmt: skip
    assert "Theirs" not in client.get(reverse("admin:segments_segment_changelist")).content.decode()


def test_lifecycle_thresholds_are_set_per_workspace(marketer: Client, workspace: Workspace) -> None:
    url = reverse("admin:segments_lifecyclesettings_add")
    response = marketer.post(
        url, {"workspace": workspace.pk, "new_days": 7, "lapsed_after_days": 30, "churned_after_days": 20}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "churned_after_days": ["Must be longer than 'lapsed after': churned comes after lapsed."]
    }
    response = marketer.post(
        url, {"workspace": workspace.pk, "new_days": 3, "lapsed_after_days": 14, "churned_after_days": 60}
    )
    assert response.status_code == 302
    settings = LifecycleSettings.objects.get(workspace=workspace)
    assert (settings.new_days, settings.lapsed_after_days, settings.churned_after_days) == (3, 14, 60)


def test_each_request_draws_the_builder_with_its_own_settings(workspace: Workspace) -> None:
    first = segment_create(workspace=workspace, name="First", definition={"all": []})
    second = segment_create(workspace=workspace, name="Second", definition={"all": [US]})
    admin_site_segment = segments_admin.SegmentAdmin(Segment, segments_admin.admin.site)
    request = type("R", (), {"user": staff("marketer", workspace)})()
    form_one = admin_site_segment.get_form(request, first, change=True)  # type: ignore[arg-type]
    form_two = admin_site_segment.get_form(request, second, change=True)  # type: ignore[arg-type]
    assert form_one.base_fields["definition"].widget.config["segment"] == first.pk
    assert form_two.base_fields["definition"].widget.config["segment"] == second.pk
    assert segments_admin.SegmentForm.base_fields["definition"].widget.config == {}, "the shared field is untouched"
