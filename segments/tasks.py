"""Celery tasks of the segments app: the daily size of every segment, for the size-over-time chart.

Beat runs ``segments_record_sizes_task`` once a day; it enqueues one ``segment_record_size_task`` per
segment not yet recorded for the day, so each count is a bounded unit of work with its own time
limit, a slow segment delays no other, and running the beat task twice records nothing twice.
"""

from __future__ import annotations

from datetime import date

from celery import shared_task
from django.utils import timezone

from .models import Segment
from .services import segment_size_record


@shared_task(soft_time_limit=50, time_limit=60)
def segments_record_sizes_task(on: str | None = None) -> int:
    """Beat, daily: enqueue the size recording of every segment without a size for ``on`` (ISO
    date, default today in UTC). Returns how many were enqueued. The day travels with each task, so
    one that runs after midnight still records the day it was meant for."""
    day = date.fromisoformat(on) if on else timezone.now().date()
    pending = Segment.objects.exclude(size_snapshots__date=day).order_by("pk").values_list("pk", flat=True)
    enqueued = 0
    for segment_id in pending.iterator(chunk_size=1000):
        segment_record_size_task.delay(segment_id, day.isoformat())
        enqueued += 1
    return enqueued


@shared_task(soft_time_limit=240, time_limit=300)
def segment_record_size_task(segment_id: int, on: str) -> int | None:
    """Count one segment and record it for day ``on``; None if the segment is gone. Recording the
    same day again replaces the figure (``segment_size_record``), so a redelivered task is harmless."""
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return None
    return segment_size_record(segment=segment, on=date.fromisoformat(on)).size
