"""The daily size of every segment: recorded by beat, one task per segment, once per day."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from django.conf import settings

from config.celery import app as celery_app
from profiles.models import Workspace
from segments.models import SegmentSizeSnapshot
from segments.services import segment_create
from segments.tasks import segment_record_size_task, segments_record_sizes_task
from segments.tests.conftest import make_profile

US = {"type": "location", "field": "country", "op": "eq", "value": "US"}


def test_beat_records_the_daily_size_of_every_segment(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    make_profile(workspace, "ada", country="US")
    make_profile(workspace, "bob", country="FR")
    americans = segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    everyone = segment_create(workspace=workspace, name="Everyone", definition={"all": []})

    assert segments_record_sizes_task.apply(kwargs={"on": "2026-03-15"}).get() == 2
    sizes = {(s.segment_id, s.date, s.size) for s in SegmentSizeSnapshot.objects.all()}
    assert sizes == {(americans.pk, date(2026, 3, 15), 1), (everyone.pk, date(2026, 3, 15), 2)}

    # A second run the same day has nothing left to do; the next day records again.
    assert segments_record_sizes_task.apply(kwargs={"on": "2026-03-15"}).get() == 0
    make_profile(workspace, "cy", country="US")
    assert segments_record_sizes_task.apply(kwargs={"on": "2026-03-16"}).get() == 2
    assert SegmentSizeSnapshot.objects.get(segment=americans, date=date(2026, 3, 16)).size == 2
    assert SegmentSizeSnapshot.objects.count() == 4


def test_a_redelivered_task_replaces_the_figure_and_a_deleted_segment_is_skipped(workspace: Workspace) -> None:
    americans = segment_create(workspace=workspace, name="Americans", definition={"all": [US]})
    assert segment_record_size_task(americans.pk, "2026-03-15") == 0
    make_profile(workspace, "ada", country="US")
    assert segment_record_size_task(americans.pk, "2026-03-15") == 1
    assert list(SegmentSizeSnapshot.objects.values_list("size", flat=True)) == [1]
    assert segment_record_size_task(americans.pk + 1000, "2026-03-15") is None


def test_beat_runs_the_recording_daily() -> None:
    entry: Any = settings.CELERY_BEAT_SCHEDULE["segments-record-sizes"]
    assert entry["task"] == "segments.tasks.segments_record_sizes_task"
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"].hour == {0} and entry["schedule"].minute == {5}
