"""Background work of triggered and API-triggered campaigns. Tasks are thin: ids in, one service.

Imported by ``campaigns.receivers`` (so every process that loads the app registers them, workers
included); Celery's autodiscovery only looks at ``tasks.py``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import IntegrityError, OperationalError

from .services.api_trigger import api_trigger_segment_run
from .services.sending import delivery_send_batch
from .services.trigger_backlog import trigger_backlog_drain, trigger_outbox_done
from .services.triggers import campaign_events_process, hand_off

logger = logging.getLogger(__name__)

# Undelayed triggers of one batch up to this many are sent by the triggers task itself, right after
# its commit: one queue hop less between the event and the provider. More go to the sender's queue.
INLINE_SEND_MAX = 10


@shared_task(
    acks_late=True,
    # As long as the sender's own task: a few sends may happen here.
    time_limit=300,
    soft_time_limit=240,
    autoretry_for=(OperationalError, IntegrityError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def campaign_triggers_task(workspace_id: int, event_ids: list[int], outbox_id: int | None = None) -> dict[str, Any]:
    """Match a batch of stored events against the workspace's campaigns (triggers, segment
    entries, exception events, conversions), then delete their trigger outbox row (``outbox_id``,
    written by the intake: until then a drain would enqueue them again).

    Safe to run twice: deliveries are unique per triggering event, cancellations and conversions
    are conditional updates. Retried on transient database errors (a deadlock, a profile merged
    away between the event and the insert). A few deliveries due at once are sent here, after the
    matching committed (the sender claims them first, so a concurrent sweep cannot send them too).
    """
    result = campaign_events_process(workspace_id=workspace_id, event_ids=event_ids, enqueue_due=False)
    if outbox_id is not None:
        trigger_outbox_done(row_id=outbox_id)
    if len(result.due_now) > INLINE_SEND_MAX:
        hand_off(result.due_now)
    elif result.due_now:
        try:
            delivery_send_batch(delivery_ids=result.due_now)
        except Exception:
            # Claimed rows left "sending" are re-sent by the sender's sweep after its claim timeout;
            # retrying this task would only match the events again.
            logger.exception("sending %d triggered deliveries failed; the sweep will retry", len(result.due_now))
    return {
        "events": result.events,
        "enrolled": result.enrolled,
        "cancelled": result.cancelled,
        "converted": result.converted,
    }


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def campaign_triggers_backlog_task() -> dict[str, int]:
    """Beat, every few seconds: enqueue the trigger matching that the intake could not enqueue
    while the broker was down (``campaigns.services.trigger_backlog``). Cheap when the backlog is
    empty (one statement). That this task runs at all means the broker is back."""
    result = trigger_backlog_drain(enqueue=lambda workspace_id, ids: campaign_triggers_task.delay(workspace_id, ids))
    return {"enqueued": result.enqueued, "events": result.events, "left": result.left}


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def api_trigger_segment_task(request_id: int) -> None:
    """Enrol the next page of an API-triggered send's segment; queue the next page while any remain.

    Resumable and idempotent: the request row keeps the last profile id done, and deliveries are
    unique per (campaign, person, idempotency key), so a re-run of a page creates nothing twice.
    """
    if api_trigger_segment_run(request_id=request_id):
        api_trigger_segment_task.delay(request_id)
