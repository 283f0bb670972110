"""Creating and changing segments: validation, references between segments, cycles, sizes."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from profiles.models import Workspace
from profiles.tests.factories import WorkspaceFactory
from segments.evaluator import profile_in_segment
from segments.models import Segment, SegmentSizeSnapshot
from segments.selectors import segment_members, segment_profiles, segment_size
from segments.services import segment_create, segment_delete, segment_size_record, segment_update
from segments.tests.conftest import NOW, make_profile, members_of, track

US = {"type": "location", "field": "country", "op": "eq", "value": "US"}


def refers_to(segment: Segment) -> dict[str, Any]:
    return {"all": [{"type": "segment", "segment_id": segment.pk}]}


def definition_errors(caught: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return caught.value.message_dict["definition"]


def test_create_validates_the_definition_and_names_the_broken_node(workspace: Workspace) -> None:
    with pytest.raises(ValidationError) as caught:
        segment_create(workspace=workspace, name="Bad", definition={"all": [US, {"any": [{"type": "age"}]}]})
    assert definition_errors(caught) == ["all[1].any[0]: age: 'op' must be one of eq, ne, gt, gte, lt, lte, between "
                                         "for a count value; got None"]  # fmt: skip
    assert not Segment.objects.exists()


def test_names_are_unique_per_workspace(workspace: Workspace) -> None:
    segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    with pytest.raises(ValidationError) as caught:
        segment_create(workspace=workspace, name=" Americans ", definition={"all": [US]})
    assert "already exists" in caught.value.message_dict["name"][0]
    segment_create(workspace=WorkspaceFactory(), name="Americans", definition={"all": [US]})


def test_segment_membership_is_live(workspace: Workspace, frozen: Any) -> None:
    americans = segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    buyers = segment_create(
        workspace=workspace,
        name="American buyers",
        definition={"all": [{"type": "segment", "segment_id": americans.pk}, {"type": "event", "event": "Buy"}]},
    )
    ann = make_profile(workspace, "ann", country="US")
    make_profile(workspace, "bob", country="FR")
    assert members_of(workspace, buyers.definition, segment=buyers) == set()
    track(ann, "Buy", NOW)
    assert members_of(workspace, buyers.definition, segment=buyers) == {"ann"}
    segment_update(segment=americans, definition={"all": [{**US, "value": "FR"}]})
    assert members_of(workspace, buyers.definition, segment=buyers) == set()


def test_references_to_missing_or_foreign_segments_are_refused(workspace: Workspace) -> None:
    elsewhere = segment_create(workspace=WorkspaceFactory(), name="Elsewhere", definition={"all": []})
    with pytest.raises(ValidationError) as caught:
        segment_create(
            workspace=workspace, name="X", definition={"any": [US, {"type": "segment", "segment_id": 999999}]}
        )
    assert definition_errors(caught) == ["any[1]: segment: segment #999999 does not exist in this workspace"]
    with pytest.raises(ValidationError):
        segment_create(workspace=workspace, name="Y", definition=refers_to(elsewhere))


def test_cycles_are_refused_naming_the_chain(workspace: Workspace) -> None:
    teens = segment_create(workspace=workspace, name="Teens", definition={"all": []})
    mississippi = segment_create(workspace=workspace, name="Mississippi", definition=refers_to(teens))
    teens_in_ms = segment_create(workspace=workspace, name="Teens in MS", definition=refers_to(mississippi))

    with pytest.raises(ValidationError) as caught:
        back = {"type": "segment", "segment_id": teens_in_ms.pk}
        segment_update(segment=teens, definition={"all": [US, {"none": [back]}]})
    assert definition_errors(caught) == [
        'all[1].none[0]: segment: membership would make a cycle: "Teens" → "Teens in MS" → "Mississippi" → "Teens"'
    ]
    with pytest.raises(ValidationError) as caught:
        segment_update(segment=teens, definition=refers_to(teens))
    assert definition_errors(caught) == ['all[0]: segment: membership would make a cycle: "Teens" → "Teens"']
    teens.refresh_from_db()
    assert teens.definition == {"all": []}


def test_a_segment_in_use_cannot_be_deleted(workspace: Workspace) -> None:
    base = segment_create(workspace=workspace, name="Base", definition={"all": []})
    user = segment_create(workspace=workspace, name="User", definition=refers_to(base))
    with pytest.raises(ValidationError, match="'User'"):
        segment_delete(segment=base)
    segment_delete(segment=user)
    segment_delete(segment=base)
    assert not Segment.objects.exists()


def test_sizes_members_pages_and_daily_snapshots(workspace: Workspace, frozen: Any) -> None:
    profiles = [make_profile(workspace, f"u{n}", country="US" if n % 2 else "FR") for n in range(7)]
    americans = segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    expected = [p.pk for p in profiles if p.country == "US"]

    assert segment_size(segment=americans) == 3
    first = segment_members(segment=americans, limit=2)
    second = segment_members(segment=americans, after_id=first[-1], limit=2)
    assert first + second == expected
    assert segment_members(segment=americans, after_id=second[-1]) == []
    assert list(segment_profiles(segment=americans).order_by("pk").values_list("external_id", flat=True)) == [
        "u1",
        "u3",
        "u5",
    ]

    segment_size_record(segment=americans)
    make_profile(workspace, "late", country="US")
    segment_size_record(segment=americans)  # same day: replaced, not duplicated
    segment_size_record(segment=americans, on=NOW.date() - timedelta(days=1))
    assert list(americans.size_snapshots.values_list("date", "size")) == [
        (date(2026, 3, 14), 4),
        (date(2026, 3, 15), 4),
    ]
    assert SegmentSizeSnapshot.objects.count() == 2


def test_other_workspaces_profiles_are_never_members(workspace: Workspace, frozen: Any) -> None:
    other = WorkspaceFactory()
    stranger = make_profile(other, "stranger", country="US")
    everyone = segment_create(workspace=workspace, name="Everyone", definition={"all": []})
    make_profile(workspace, "local")
    assert members_of(workspace, everyone.definition, segment=everyone) == {"local"}
    assert profile_in_segment(profile_id=stranger.pk, segment=everyone) is False
