"""A segment a campaign targets cannot be deleted out from under it: the campaign's audience would
silently lose it (and with no segment left, be sent to everyone)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.tests.builder import campaign
from profiles.models import Workspace
from segments.models import Segment
from segments.services import segment_create, segment_delete

US = {"type": "location", "field": "country", "op": "eq", "value": "US"}


def test_a_segment_in_a_campaign_audience_cannot_be_deleted(workspace: Workspace) -> None:
    americans = segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    churned = segment_create(workspace=workspace, name="Churned", definition={"all": []})
    campaign(workspace, name="Spring sale", include=[americans], exclude=[churned])

    with pytest.raises(ValidationError) as caught:
        segment_delete(segment=americans)
    assert caught.value.messages == ["Segment 'Americans' is used by campaign 'Spring sale' (include segments)."]
    with pytest.raises(ValidationError) as caught:
        segment_delete(segment=churned)
    assert "campaign 'Spring sale' (exclude segments)" in caught.value.messages[0]
    assert Segment.objects.count() == 2

    unused = segment_create(workspace=workspace, name="Unused", definition={"all": []})
    segment_delete(segment=unused)
    assert not Segment.objects.filter(pk=unused.pk).exists()
