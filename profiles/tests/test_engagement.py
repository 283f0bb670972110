from __future__ import annotations

import pytest

from profiles.engagement import MESSAGE_OPENED
from profiles.models import Event, Profile, Workspace
from profiles.services.engagement import Engagement, engagement_record
from profiles.signals import events_stored
from profiles.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def test_engagement_is_recorded_once_per_dedupe_key_and_announced(
    workspace: Workspace, django_capture_on_commit_callbacks: object
) -> None:
    profile: Profile = ProfileFactory(workspace=workspace)
    announced: list[list[int]] = []

    def receiver(sender: object, workspace_id: int, event_ids: list[int], **kwargs: object) -> None:
        announced.append(event_ids)

    events_stored.connect(receiver, weak=False)
    try:
        opened = Engagement(
            profile_id=profile.pk, name=MESSAGE_OPENED, dedupe_key="esp-event-1", properties={"campaign_id": 7}
        )
        with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
            first = engagement_record(workspace_id=workspace.pk, engagements=[opened])
            again = engagement_record(workspace_id=workspace.pk, engagements=[opened])
    finally:
        events_stored.disconnect(receiver)
    assert len(first) == 1
    assert again == []
    event = Event.objects.get()
    assert (event.name, event.properties, event.profile_id) == (MESSAGE_OPENED, {"campaign_id": 7}, profile.pk)
    assert announced == [first]


def test_engagement_names_must_be_reserved_ones(workspace: Workspace) -> None:
    profile: Profile = ProfileFactory(workspace=workspace)
    with pytest.raises(ValueError, match="start with"):
        engagement_record(
            workspace_id=workspace.pk, engagements=[Engagement(profile_id=profile.pk, name="Opened", dedupe_key="k")]
        )


def test_engagement_for_an_erased_profile_is_skipped(workspace: Workspace) -> None:
    assert (
        engagement_record(
            workspace_id=workspace.pk,
            engagements=[Engagement(profile_id=999_999, name=MESSAGE_OPENED, dedupe_key="k")],
        )
        == []
    )
