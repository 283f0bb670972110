"""Background work of the profiles app. Tasks are thin: load by id, call one service, re-queue."""

from __future__ import annotations

from celery import shared_task

from .services.imports import profile_import_run


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def profile_import_task(import_id: int) -> None:
    """Import the next batches of a CSV import; queue the next run while rows remain.

    Safe to deliver twice or after a worker died mid-run: the service resumes from the last
    committed batch and a duplicate run stops at its first batch (see ``profile_import_run``).
    """
    if profile_import_run(import_id=import_id):
        profile_import_task.delay(import_id)
