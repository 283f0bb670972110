"""Launching a triggered campaign: what the launch refuses (naming the field), and what it records
(who is already in a segment-entry trigger's segment)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import Campaign, CampaignStatus, ChannelMessage, DeliveryType, Variant
from campaigns.services.launch import campaign_launch
from campaigns.tests.trigger_helpers import NOW, PUSH, deliveries, identify, ingest, send_events, track
from profiles.models import App, Workspace
from profiles.tests.factories import WorkspaceFactory
from segments.models import Segment
from segments.services import segment_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rules", "trigger_clock")]


def draft(workspace: Workspace, **fields: Any) -> Campaign:
    """A draft campaign with one push variant, as the builder leaves it before launch."""
    fields.setdefault("delivery_type", DeliveryType.ACTION)
    campaign = Campaign.objects.create(workspace=workspace, name="Draft", **fields)
    variant = Variant.objects.create(campaign=campaign, key="A", percent=100)
    ChannelMessage.objects.create(variant=variant, channel="push", template=PUSH)
    return campaign


def pro_segment(workspace: Workspace) -> Segment:
    definition = {
        "all": [{"type": "custom_attribute", "attribute": "plan", "data_type": "string", "op": "eq", "value": "pro"}]
    }
    return segment_create(workspace=workspace, name="Pro", definition=definition)


def refusal(campaign: Campaign) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        campaign_launch(campaign=campaign)
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.DRAFT
    return raised.value.messages


def test_people_in_the_segment_at_launch_are_not_entering_and_those_who_join_later_are(
    workspace: Workspace, app: App, trigger_clock: Any
) -> None:
    ingest(app, identify("ada", plan="pro"), identify("bob", plan="free"))
    pro = pro_segment(workspace)
    campaign = campaign_launch(campaign=draft(workspace, triggers=[{"type": "segment_entry", "segment_id": pro.pk}]))
    assert campaign.status == CampaignStatus.RUNNING

    # Bob upgrades after the launch; the campaign's first batch of events is his upgrade and an
    # event of Ada (in the segment since before the launch).
    trigger_clock.shift(timedelta(minutes=5))
    send_events(app, identify("bob", plan="pro"), track("ada", "Tapped"))
    assert [d.profile.external_id for d in deliveries(campaign)] == ["bob"]


@pytest.mark.parametrize(
    ("triggers", "problem"),
    [
        ([{"type": "segment_entry", "segment_id": 999_999}],
         "triggers[0].segment_id: no segment 999999 in this workspace"),
        ([{"type": "custom_event"}], "triggers[0].event: must be a non-empty event name of at most 255 characters"),
        ([{"type": "custom_event", "event": "Tapped", "filters": [{"property": "price", "op": "gte", "value": "a"}]}],
         "triggers[0].filters[0].value: 'gte' compares numbers; got 'a'"),
        ([{"type": "page_view"}], "triggers[0].type: must be one of"),
        ({"type": "custom_event", "event": "Tapped"}, "triggers: must be a list of at most 20 triggers"),
        ([], "triggers: an action-based campaign needs at least one trigger"),
    ],
)  # fmt: skip
def test_an_invalid_trigger_is_refused_at_launch_naming_the_field(
    workspace: Workspace, triggers: Any, problem: str
) -> None:
    messages = refusal(draft(workspace, triggers=triggers))
    assert any(message.startswith(problem) for message in messages), messages


def test_triggers_must_name_what_exists_in_the_campaigns_workspace(workspace: Workspace) -> None:
    elsewhere = pro_segment(cast(Workspace, WorkspaceFactory(name="Other", slug="other")))
    other_campaign = draft(cast(Workspace, WorkspaceFactory(name="Third", slug="third")))
    campaign = draft(workspace)
    campaign.triggers = [
        {"type": "segment_entry", "segment_id": elsewhere.pk},
        {"type": "engagement", "campaign_id": other_campaign.pk, "action": "opened"},
        {"type": "engagement", "campaign_id": campaign.pk, "action": "received"},
    ]
    campaign.save()
    assert sorted(refusal(campaign)) == [
        f"triggers[0].segment_id: no segment {elsewhere.pk} in this workspace",
        f"triggers[1].campaign_id: no campaign {other_campaign.pk} in this workspace",
        "triggers[2].campaign_id: a campaign cannot be triggered by its own messages",
    ]


def test_an_invalid_delay_or_exception_is_refused_at_launch(workspace: Workspace) -> None:
    campaign = draft(
        workspace,
        triggers=[{"type": "custom_event", "event": "Product Added"}],
        delay={"seconds": 3600},
        exception_events=[{"event": "Order Completed", "match_property": 5}],
    )
    messages = refusal(campaign)
    assert any(message.startswith("delay: must be an object whose type is one of") for message in messages)
    assert "exception_events[0].match_property: must name a property of the trigger event" in messages


def test_exclude_segments_alone_are_an_audience_for_a_triggered_campaign_not_a_scheduled_one(
    workspace: Workspace,
) -> None:
    churned = pro_segment(workspace)
    scheduled = draft(workspace, delivery_type=DeliveryType.SCHEDULED, send_at=NOW + timedelta(hours=1))
    scheduled.exclude_segments.set([churned])
    assert "audience: choose at least one segment to include, or extra conditions" in refusal(scheduled)

    triggered = draft(workspace, triggers=[{"type": "custom_event", "event": "Tapped"}])
    triggered.exclude_segments.set([churned])
    assert campaign_launch(campaign=triggered).status == CampaignStatus.RUNNING
