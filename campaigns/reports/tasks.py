"""Beat tasks that keep the report rollups current (scheduled in config/settings/reports.py).
Thin: ``campaigns.reports.rollups`` holds the rules. Both are safe to run twice at once (the second
finds the advisory lock taken and returns) and after a crash (every write is idempotent)."""

from __future__ import annotations

from celery import shared_task

from .funnels import funnel_compute, funnels_refresh
from .members import segment_refresh, segments_due_for_refresh
from .rollups import reports_refresh, reports_rollup


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def reports_rollup_task() -> dict[str, object]:
    """Every minute: new events, deliveries and merges into the rollups (for at most
    REPORTS_ROLLUP_SECONDS; a backlog continues at the next run)."""
    result = reports_rollup()
    return {"ran": result.ran, "rows": result.rows, "reread": result.reread, "caught_up": result.caught_up}


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def reports_refresh_task() -> dict[str, object]:
    """Every ten minutes: active users, revenue and retention of the days that changed, and the
    retention of campaigns due for it."""
    result = reports_refresh()
    return {"ran": result.ran, "days": result.days, "campaigns": result.campaigns}


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def reports_segment_refresh_task(segment_id: int) -> dict[str, object]:
    """A segment's report aggregates, rebuilt from its members now (enqueued by its first page)."""
    return {"segment": segment_id, "seconds": segment_refresh(segment_id=segment_id)}


@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1900)
def reports_segments_refresh_task() -> dict[str, object]:
    """Every five minutes: the aggregates of the segments viewed lately whose aggregates are older
    than REPORTS_SEGMENT_REFRESH_EVERY."""
    done = {segment_id: segment_refresh(segment_id=segment_id) for segment_id in segments_due_for_refresh()}
    return {"segments": done}


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def reports_funnels_refresh_task() -> dict[str, int]:
    """Every REPORTS_FUNNEL_REFRESH_EVERY seconds: the days that may still change of the funnels
    looked at lately, so their pages read instead of computing."""
    return funnels_refresh()


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def reports_funnel_compute_task(funnel_id: int) -> dict[str, int]:
    """A funnel's days, computed after a page computed the funnel live (its first page)."""
    return {"funnel": funnel_id, "days": funnel_compute(funnel_id=funnel_id)}
