"""Celery tasks of the channels app: send one dispatch, and the beat sweep (the outbox).

Both are thin: the services hold the rules (claiming, recording, giving up). Arguments are ids.
"""

from __future__ import annotations

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from .services.dispatch import dispatch_send, dispatch_sweep
from .transports.base import TransientError

RETRY_BACKOFF = 15  # seconds for the first retry, doubling up to RETRY_BACKOFF_MAX
RETRY_BACKOFF_MAX = 600


@shared_task(
    bind=True,
    autoretry_for=(TransientError,),
    retry_backoff=RETRY_BACKOFF,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    # The service gives up (records failed) once a dispatch has used CHANNELS_DISPATCH_MAX_ATTEMPTS;
    # this bound only matters if settings and task disagree.
    max_retries=int(getattr(settings, "CHANNELS_DISPATCH_MAX_ATTEMPTS", 6)) + 2,
    acks_late=True,
    reject_on_worker_lost=True,
    # Every transport's network timeouts are well under this: a send never hangs a worker.
    soft_time_limit=90,
    time_limit=120,
)
def dispatch_send_task(self: Task, dispatch_id: str) -> str:
    """Send one dispatch; returns its status afterwards. Idempotent: a duplicate delivery of the
    task (late ack, a sweep re-enqueue) finds the dispatch claimed or done and does nothing."""
    try:
        return dispatch_send(dispatch_id=dispatch_id).status
    except TransientError as error:
        if error.retry_after is None:
            raise  # autoretry: exponential backoff with jitter
        # The provider said when to come back (429 Retry-After): not sooner than that.
        backoff = get_exponential_backoff_interval(
            factor=RETRY_BACKOFF, retries=self.request.retries, maximum=RETRY_BACKOFF_MAX, full_jitter=True
        )
        raise self.retry(exc=error, countdown=max(error.retry_after, backoff)) from error


@shared_task(soft_time_limit=50, time_limit=60)
def dispatch_sweep_task() -> dict[str, int]:
    """Beat, every minute: re-enqueue pending dispatches whose enqueue was lost, give up on ones
    stuck sending (see ``dispatch_sweep``)."""
    result = dispatch_sweep()
    for dispatch_id in result.requeue:
        dispatch_send_task.delay(dispatch_id)
    return {"requeued": len(result.requeue), "abandoned": result.abandoned}
