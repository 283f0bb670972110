"""Beat tasks that keep the report rollups current (scheduled in config/settings/reports.py).
Thin: ``campaigns.reports.rollups`` holds the rules. Both are safe to run twice at once (the second
finds the advisory lock taken and returns) and after a crash (every write is idempotent)."""

from __future__ import annotations

from celery import shared_task

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
