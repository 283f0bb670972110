"""Celery tasks of the campaigns pipeline: the beat tick that starts scheduled occurrences, the
beat task that claims due deliveries, and the sender. Thin: the services hold the rules (claims,
idempotency, controls); arguments are ids. Triggered sends' tasks live in ``tasks_triggers``.
"""

from __future__ import annotations

from celery import shared_task

from .services.launch import campaigns_tick
from .services.sending import deliveries_enqueue_due, delivery_send_batch


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def campaigns_tick_task() -> dict[str, int]:
    """Beat, every ~10 s: start the occurrences whose time has come, finish campaigns with nothing
    left. Idempotent (row locks, the unique delivery key): two beats are harmless."""
    result = campaigns_tick()
    return {"started": len(result.started), "finished": len(result.finished)}


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def deliveries_enqueue_due_task() -> dict[str, int]:
    """Beat, every few seconds: claim due deliveries in batches and enqueue their sends; recover
    stale claims."""
    result = deliveries_enqueue_due()
    return {"claimed": result.claimed, "recovered": result.recovered, "gave_up": result.gave_up}


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=240, time_limit=300)
def delivery_send_task(delivery_ids: list[int]) -> dict[str, int]:
    """Send one batch of deliveries. Safe to run twice or after a crash: the delivery claim, the
    dispatch idempotency key and the dispatch claim mean nothing is sent twice (see
    ``campaigns.services.sending``)."""
    return delivery_send_batch(delivery_ids=[int(pk) for pk in delivery_ids]).counts


# Triggered sends hand their due rows over directly (campaigns.services.triggers.hand_off); the
# same task claims what is still scheduled and sends it.
deliveries_send_task = delivery_send_task
