"""The campaign builder in admin, through the test client."""

from __future__ import annotations

from typing import Any, cast

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.test import Client

from campaigns.models import Campaign, CampaignStatus, ChannelMessage, Delivery, FrequencyCapRule, QuietHours, Variant
from campaigns.services.launch import campaign_launch, campaigns_tick
from campaigns.services.sending import deliveries_enqueue_due, delivery_send_batch
from profiles.models import SubscriptionState, Workspace
from profiles.tests.factories import WorkspaceFactory

from .builder import NOW, campaign, person, segment

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def admin_client(db: None) -> Client:
    user = User.objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def page(client: Client, url: str, **params: Any) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def change_url(c: Campaign) -> str:
    return f"/admin/campaigns/campaign/{c.pk}/change/"


def form_data(workspace: Workspace, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "workspace": workspace.pk, "name": "Welcome", "description": "", "tags": "onboarding",
        "delivery_type": "scheduled", "include_mode": "any", "extra_conditions": "", "max_recipients": "",
        "schedule_timing": "at_time", "send_at_0": "2030-01-09", "send_at_1": "10:00:00", "recurrence": "once",
        "recurrence_weekdays": "", "default_send_hour": 10, "triggers": "", "delay": "", "exception_events": "",
        "reeligibility_seconds": "", "recheck_audience": "on", "control_percent": 10, "conversion_events": "",
        "conversion_window_seconds": 259200, "quiet_hours_action": "wait", "rate_limit_per_minute": "",
        "variants-TOTAL_FORMS": 1, "variants-INITIAL_FORMS": 0, "variants-MIN_NUM_FORMS": 0,
        "variants-MAX_NUM_FORMS": 8, "variants-0-key": "A", "variants-0-name": "", "variants-0-percent": 100,
    }  # fmt: skip
    data.update(overrides)
    return data


def test_a_marketer_builds_previews_tests_and_launches_a_campaign(
    frozen: Any, admin_client: Client, workspace: Workspace
) -> None:
    everyone = segment(workspace, "Everyone")
    person(workspace, "ana", first_name="Ana")
    person(workspace, "ben")

    response = admin_client.post("/admin/campaigns/campaign/add/", form_data(workspace, include_segments=[everyone.pk]))
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = Campaign.objects.get(name="Welcome")
    variant = created.variants.get()
    assert (variant.key, variant.percent, created.tags) == ("A", 100, ["onboarding"])

    text = page(admin_client, change_url(created))
    assert "Audience size (now)" in text and "2" in text
    assert "variant A: add at least one channel message" in text  # what stops the launch
    assert "subject" in text and "Field hints per channel" in text

    # The variant's page: a message whose template is wrong is refused, naming the field.
    variant_url = f"/admin/campaigns/variant/{variant.pk}/change/"
    message_form = {
        "key": "A", "name": "", "percent": 100,
        "messages-TOTAL_FORMS": 1, "messages-INITIAL_FORMS": 0, "messages-MIN_NUM_FORMS": 0,
        "messages-MAX_NUM_FORMS": 1000, "messages-0-channel": "email", "messages-0-position": 0,
        "messages-0-delay_seconds": 0, "messages-0-template": '{"text": "Hi {{ first_name"}',
    }  # fmt: skip
    refused = admin_client.post(variant_url, message_form).content.decode()
    assert "subject: is required" in refused
    assert "text: " in refused  # the unclosed Liquid tag
    message_form["messages-0-template"] = '{"subject": "Hi {{ first_name | default: \'there\' }}", "text": "Hello"}'
    saved = admin_client.post(variant_url, message_form)
    assert saved.status_code == 302 and saved["Location"] == change_url(created)
    assert ChannelMessage.objects.get(variant=variant).template["text"] == "Hello"

    # Preview for a chosen person.
    preview = page(admin_client, change_url(created), preview="ana")
    assert "Hi Ana" in preview
    assert "no profile &#x27;nobody&#x27;" in page(admin_client, change_url(created), preview="nobody")

    # A test send goes out now, without a delivery.
    response = admin_client.post(
        f"/admin/campaigns/campaign/{created.pk}/send-test/", {"profile": "ana@example.com", "variant": variant.pk},
        follow=True,
    )  # fmt: skip
    assert "Test send to ana: Email: sent to ana@example.com" in response.content.decode()
    assert [m.subject for m in mail.outbox] == ["Hi Ana"]
    assert not Delivery.objects.exists()

    # Launch.
    response = admin_client.post(f"/admin/campaigns/campaign/{created.pk}/lifecycle/launch/", follow=True)
    assert "Launched." in response.content.decode()
    created.refresh_from_db()
    assert created.status == CampaignStatus.SCHEDULED


def test_the_form_names_what_is_wrong(admin_client: Client, workspace: Workspace) -> None:
    bad = form_data(
        workspace,
        extra_conditions='{"all": [{"type": "attribute", "attribute": "country", "op": "sorta", "value": "FR"}]}',
        quiet_hours_start="22:00",
    )
    text = admin_client.post("/admin/campaigns/campaign/add/", bad).content.decode()
    assert "all[0]" in text  # the node of the extra conditions that is wrong
    assert "set both ends, or neither" in text
    many = form_data(workspace, **{"variants-TOTAL_FORMS": 9})
    for n in range(9):
        many.update({f"variants-{n}-key": f"V{n}", f"variants-{n}-percent": 10})
    text = admin_client.post("/admin/campaigns/campaign/add/", many).content.decode()
    assert "Please submit at most 8 forms" in text or "at most 8 variants" in text
    assert not Campaign.objects.exists()


def test_a_triggered_campaign_with_an_invalid_trigger_is_not_saved(admin_client: Client, workspace: Workspace) -> None:
    triggered = form_data(
        workspace,
        delivery_type="action",
        triggers='[{"type": "segment_entry", "segment_id": 424242}, {"type": "custom_event", "event": ""}]',
        delay='{"seconds": 3600}',
    )
    response = admin_client.post("/admin/campaigns/campaign/add/", triggered)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "triggers[0].segment_id: no segment 424242 in this workspace" in errors["triggers"]
    assert "triggers[1].event: must be a non-empty event name of at most 255 characters" in errors["triggers"]
    assert any(error.startswith("delay: must be an object whose type is one of") for error in errors["delay"])
    assert not Campaign.objects.exists()

    pro = segment(workspace, "Pro")
    triggered.update(
        triggers=f'[{{"type": "segment_entry", "segment_id": {pro.pk}}}]', delay='{"type": "duration", "seconds": 3600}'
    )
    assert admin_client.post("/admin/campaigns/campaign/add/", triggered).status_code == 302
    assert Campaign.objects.get().triggers == [{"type": "segment_entry", "segment_id": pro.pk}]


def test_progress_pause_resume_stop_and_why_not(frozen: Any, admin_client: Client, workspace: Workspace) -> None:
    ana = person(workspace, "ana")
    person(workspace, "gone", email_subscription=SubscriptionState.UNSUBSCRIBED)
    person(workspace, "ben")
    c = campaign(workspace, include=[segment(workspace, "All")])
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()
    batch = deliveries_enqueue_due(enqueue=False, batch_size=2, max_batches=1).batches[0]
    delivery_send_batch(delivery_ids=batch)

    text = page(admin_client, change_url(c))
    assert "Progress" in text and "Targeted" in text
    assert "email: unsubscribed from email" in text  # skipped, by reason

    for action, status, note in (
        ("pause", CampaignStatus.PAUSED, "Paused"),
        ("resume", CampaignStatus.RUNNING, "Resumed."),
        ("stop", CampaignStatus.STOPPED, "Stopped: 1 pending deliveries cancelled."),
    ):
        response = admin_client.post(f"/admin/campaigns/campaign/{c.pk}/lifecycle/{action}/", follow=True)
        assert note in response.content.decode()
        assert Campaign.objects.get(pk=c.pk).status == status
    response = admin_client.post(f"/admin/campaigns/campaign/{c.pk}/lifecycle/resume/", follow=True)
    assert "A stopped campaign cannot be resumed" in response.content.decode()  # admin capitalises messages
    assert admin_client.get(f"/admin/campaigns/campaign/{c.pk}/lifecycle/stop/").status_code == 405

    answer = page(admin_client, "/admin/campaigns/campaign/why-not/", campaign=c.pk, profile="ana")
    assert f"For {ana}" in answer and "sent at 2030-01-08 12:00 UTC by email" in answer
    answer = page(admin_client, "/admin/campaigns/campaign/why-not/", campaign=c.pk, profile="gone@example.com")
    assert "not sent: email: unsubscribed from email" in answer
    assert "no profile with this external id" in page(
        admin_client, "/admin/campaigns/campaign/why-not/", campaign=c.pk, profile="nobody"
    )


def test_deliveries_are_a_read_only_big_table(frozen: Any, admin_client: Client, workspace: Workspace) -> None:
    person(workspace, "ana")
    c = campaign(workspace, include=[segment(workspace, "All")])
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()
    delivery = Delivery.objects.get()
    text = page(admin_client, "/admin/campaigns/delivery/", campaign__id__exact=c.pk)
    assert "ana" in text
    assert "Add delivery" not in text
    detail = page(admin_client, f"/admin/campaigns/delivery/{delivery.pk}/change/")
    assert "Save" not in detail or 'name="_save"' not in detail
    assert admin_client.post(f"/admin/campaigns/delivery/{delivery.pk}/delete/").status_code == 403


def test_workspace_delivery_controls(admin_client: Client, workspace: Workspace) -> None:
    response = admin_client.post(
        "/admin/campaigns/frequencycaprule/add/",
        {"workspace": workspace.pk, "channel": "any", "tag": "", "max_messages": 3, "window": 1, "unit": "days",
         "counting": "calendar", "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    assert str(FrequencyCapRule.objects.get()) == "≤3 any per 1 days"
    response = admin_client.post(
        "/admin/campaigns/quiethours/add/",
        {"workspace": workspace.pk, "channel": "push", "start": "22:00", "end": "07:00", "action": "wait"},
    )
    assert response.status_code == 302
    assert QuietHours.objects.get().channel == "push"


def test_staff_see_only_their_workspaces_campaigns(workspace: Workspace) -> None:
    other = cast(Workspace, WorkspaceFactory(name="Other", slug="other"))
    mine = campaign(workspace, name="Mine", include=[segment(workspace, "All")])
    theirs = campaign(other, name="Theirs", include=[segment(other, "All")])
    staff = User.objects.create_user("staff", "s@example.com", "pw", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="campaigns"))
    workspace.members.add(staff)
    client = Client()
    client.force_login(staff)
    assert client.get(change_url(mine)).status_code == 200
    assert client.get(change_url(theirs)).status_code == 404
    assert client.post(f"/admin/campaigns/campaign/{theirs.pk}/lifecycle/launch/").status_code == 404
    listing = page(client, "/admin/campaigns/campaign/")
    assert "Mine" in listing and "Theirs" not in listing
    why = page(client, "/admin/campaigns/campaign/why-not/")
    assert "Mine" in why and "Theirs" not in why
    variant = Variant.objects.get(campaign=theirs)
    assert client.get(f"/admin/campaigns/variant/{variant.pk}/change/").status_code == 404


def test_why_not_link_preselects_the_campaign(admin_client: Client, workspace: Workspace) -> None:
    c = campaign(workspace, include=[segment(workspace, "All")])
    text = page(admin_client, "/admin/campaigns/campaign/why-not/", campaign=c.pk)
    assert f'<option value="{c.pk}" selected>' in text
    assert "This field is required" not in text


def test_the_campaign_page_links_to_its_report(admin_client: Client, workspace: Workspace) -> None:
    c = campaign(workspace, include=[segment(workspace, "All")])
    text = page(admin_client, change_url(c))
    link = f'href="/reports/campaigns/{c.pk}/"'
    assert link in text
    response = admin_client.get(f"/reports/campaigns/{c.pk}/")
    assert response.status_code == 302
    assert response["Location"].endswith(f"/campaigns/{c.pk}/")
