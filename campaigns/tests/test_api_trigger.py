"""POST /api/v1/campaigns/{id}/trigger: API-key auth with the campaigns.trigger scope, recipients or a
segment, trigger properties, idempotency, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from campaigns.models import ApiTriggerRequest, Campaign, CampaignStatus, Delivery, DeliveryStatus, DeliveryType
from campaigns.services import api_trigger
from campaigns.services.api_trigger import api_trigger_segment_run
from campaigns.tests.trigger_helpers import action_campaign, identify, ingest
from profiles.models import ApiScope, App, Workspace
from profiles.tests.api_helpers import api_client_for
from profiles.tests.factories import WorkspaceFactory
from segments.services import segment_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rules")]

TEMPLATE = {"title": "Order {{ api_trigger_properties.order_id }}", "body": "Use {{ api_trigger_properties.coupon }}"}


@pytest.fixture
def campaign(workspace: Workspace) -> Campaign:
    return action_campaign(workspace, triggers=[], delivery_type=DeliveryType.API, name="Storm", template=TEMPLATE)


@pytest.fixture
def client(workspace: Workspace) -> APIClient:
    return api_client_for(workspace, scopes=[ApiScope.CAMPAIGNS_TRIGGER])


@pytest.fixture
def people(app: App) -> None:
    ingest(app, identify("ada"), identify("bob"))


def url(campaign: Campaign | int) -> str:
    return f"/api/v1/campaigns/{campaign if isinstance(campaign, int) else campaign.pk}/trigger"


def test_recipients_are_enrolled_now_with_their_trigger_properties(
    client: APIClient, campaign: Campaign, people: None
) -> None:
    response = client.post(
        url(campaign),
        {
            "recipients": [
                {"external_id": "ada", "trigger_properties": {"order_id": "A-1"}},
                {"external_id": "bob"},
                {"external_id": "nobody"},
            ],
            "trigger_properties": {"coupon": "STORM10", "order_id": "default"},
            "idempotency_key": "k-1",
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "done"
    assert body["idempotency_key"] == "k-1"
    assert body["counts"] == {"scheduled": 2, "unknown_external_id": 1}
    assert body["recipients"] == [
        {"external_id": "ada", "status": "scheduled"},
        {"external_id": "bob", "status": "scheduled"},
        {"external_id": "nobody", "status": "unknown_external_id"},
    ]
    rows = {d.profile.external_id: d for d in Delivery.objects.filter(campaign=campaign).select_related("profile")}
    assert rows["ada"].trigger_properties == {"coupon": "STORM10", "order_id": "A-1"}
    assert rows["bob"].trigger_properties == {"coupon": "STORM10", "order_id": "default"}
    assert {d.occurrence for d in rows.values()} == {"api:k-1"}
    assert {d.status for d in rows.values()} == {DeliveryStatus.SCHEDULED}


def test_a_repeated_idempotency_key_answers_the_first_result_and_sends_nothing_new(
    client: APIClient, campaign: Campaign, people: None
) -> None:
    body = {"recipients": [{"external_id": "ada"}], "trigger_properties": {"coupon": "X"}}
    first = client.post(url(campaign), body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    again = client.post(url(campaign), body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Delivery.objects.filter(campaign=campaign).count() == 1
    assert ApiTriggerRequest.objects.filter(campaign=campaign).count() == 1

    other = client.post(url(campaign), {**body, "trigger_properties": {"coupon": "Y"}}, format="json",
                        HTTP_IDEMPOTENCY_KEY="retry-me")  # fmt: skip
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"


def test_without_a_key_each_call_is_new_and_re_eligibility_applies(
    client: APIClient, campaign: Campaign, people: None
) -> None:
    body = {"recipients": [{"external_id": "ada"}]}
    first = client.post(url(campaign), body, format="json").json()
    second = client.post(url(campaign), body, format="json").json()
    assert first["idempotency_key"] != second["idempotency_key"]
    assert first["recipients"] == [{"external_id": "ada", "status": "scheduled"}]
    assert second["recipients"] == [{"external_id": "ada", "status": "not_eligible"}]  # one is pending
    assert Delivery.objects.filter(campaign=campaign).count() == 1


def test_the_campaigns_audience_and_control_group_apply(
    client: APIClient, workspace: Workspace, app: App, people: None
) -> None:
    ingest(app, identify("vip", plan="vip"))
    vips = segment_create(
        workspace=workspace,
        name="VIP",
        definition={
            "all": [
                {"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": "eq", "value": "vip"}
            ]
        },
    )
    campaign = action_campaign(workspace, triggers=[], delivery_type=DeliveryType.API, control_percent=100)
    campaign.include_segments.set([vips])
    body = client.post(
        url(campaign), {"recipients": [{"external_id": "ada"}, {"external_id": "vip"}]}, format="json"
    ).json()
    assert body["recipients"] == [
        {"external_id": "ada", "status": "not_in_audience"},
        {"external_id": "vip", "status": "control"},
    ]
    assert Delivery.objects.get(campaign=campaign).status == DeliveryStatus.CONTROL


def test_a_segment_is_enrolled_in_the_background_a_page_at_a_time(
    client: APIClient,
    campaign: Campaign,
    workspace: Workspace,
    app: App,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest(app, *[identify(f"user-{n}", plan="pro") for n in range(5)], identify("free", plan="free"))
    pros = segment_create(
        workspace=workspace,
        name="Pro",
        definition={
            "all": [
                {"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": "eq", "value": "pro"}
            ]
        },
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            url(campaign), {"segment_id": pros.pk, "trigger_properties": {"coupon": "P"}}, format="json"
        )
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert len(callbacks) == 1  # the background job is enqueued after commit
    request = ApiTriggerRequest.objects.get(campaign=campaign)

    monkeypatch.setattr(api_trigger, "SEGMENT_PAGE", 2)
    pages = 1
    while api_trigger_segment_run(request_id=request.pk):
        pages += 1
    assert pages == 3
    assert api_trigger_segment_run(request_id=request.pk) is False  # finished: a duplicate task does nothing
    request.refresh_from_db()
    assert request.result["status"] == "done"
    assert request.result["counts"] == {"scheduled": 5}
    rows = Delivery.objects.filter(campaign=campaign)
    assert sorted(rows.values_list("profile__external_id", flat=True)) == [f"user-{n}" for n in range(5)]
    assert {d.trigger_properties["coupon"] for d in rows} == {"P"}

    replay = client.post(url(campaign), {"segment_id": pros.pk, "trigger_properties": {"coupon": "P"}}, format="json",
                         HTTP_IDEMPOTENCY_KEY=request.idempotency_key)  # fmt: skip
    assert replay.json()["status"] == "done" and "after_id" not in replay.json()


# --- refusals -----------------------------------------------------------------------------------


def test_a_key_is_required_and_must_hold_the_trigger_scope(campaign: Campaign, workspace: Workspace) -> None:
    anonymous = APIClient().post(url(campaign), {"recipients": [{"external_id": "ada"}]}, format="json")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    reader = api_client_for(workspace, scopes=[ApiScope.PROFILES_READ])
    forbidden = reader.post(url(campaign), {"recipients": [{"external_id": "ada"}]}, format="json")
    assert forbidden.status_code == 403
    assert "campaigns.trigger" in forbidden.json()["message"]


def test_another_workspaces_campaign_is_not_found(client: APIClient) -> None:
    other = action_campaign(WorkspaceFactory(), triggers=[], delivery_type=DeliveryType.API)
    response = client.post(url(other), {"recipients": [{"external_id": "ada"}]}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert client.post(url(999_999), {"recipients": [{"external_id": "a"}]}, format="json").status_code == 404


def test_only_a_running_api_triggered_campaign_can_be_triggered(client: APIClient, workspace: Workspace) -> None:
    triggered = action_campaign(workspace, triggers=[{"type": "session_start"}], name="Action")
    paused = action_campaign(workspace, triggers=[], delivery_type=DeliveryType.API, status=CampaignStatus.PAUSED)
    body = {"recipients": [{"external_id": "ada"}]}
    assert client.post(url(triggered), body, format="json").json()["code"] == "not_api_triggered"
    response = client.post(url(paused), body, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "campaign_not_running")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "recipients"),
        ({"recipients": [{"external_id": "a"}], "segment_id": 1}, "recipients"),
        ({"recipients": []}, "recipients"),
        ({"recipients": [{"external_id": f"u{n}"} for n in range(51)]}, "recipients"),
        ({"recipients": [{}]}, "recipients[0].external_id"),
        ({"recipients": [{"external_id": "a"}], "trigger_properties": "x"}, "trigger_properties"),
    ],
)
def test_invalid_bodies_name_the_field(client: APIClient, campaign: Campaign, body: dict[str, Any], field: str) -> None:
    response = client.post(url(campaign), body, format="json")
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "invalid"
    assert payload["message"].startswith(f"{field}:"), payload
    assert not Delivery.objects.exists()


def test_an_unknown_segment_is_not_found(client: APIClient, campaign: Campaign) -> None:
    response = client.post(url(campaign), {"segment_id": 123456}, format="json")
    assert response.status_code == 404
    assert "segment_id" in response.json()["message"]


def test_recipients_are_enrolled_in_a_bounded_number_of_queries(
    client: APIClient, campaign: Campaign, app: App
) -> None:
    from django.db import connection

    ingest(app, *[identify(f"user-{n}") for n in range(50)])
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            url(campaign), {"recipients": [{"external_id": f"user-{n}"} for n in range(50)]}, format="json"
        )
    assert response.json()["counts"] == {"scheduled": 50}
    assert len(queries) < 30  # set-wise: no query per recipient
