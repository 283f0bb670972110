"""Trigger matching kept in PostgreSQL until it is done: an outbox written with the events.

The intake sends ``events_stored`` inside its transaction; ``campaigns.receivers`` writes the ids
of the events some campaign may react to into ``TriggerBacklog`` there (``trigger_outbox_record``:
the row commits with the events or not at all), claimed for ``OUTBOX_GRACE_SECONDS``, and after
the commit enqueues ``campaign_triggers_task`` with the row's id; the task deletes the row once it
has matched the events (``trigger_outbox_done``). So a web process that dies between its commit
and its enqueue, or a broker that refuses the enqueue, loses nothing: the row stays. Beat runs
``trigger_backlog_drain`` every few seconds (``campaign_triggers_backlog_task``): it enqueues the
rows nobody holds, oldest first (an enqueue that failed releases its row at once; a row whose
process died is taken once its grace has passed), and deletes each one it enqueued.

Delivery is at least once: a row is claimed (``claimed_until``) and committed before its enqueue,
and deleted after it, so a drain killed between the two leaves the row to the next drain once the
claim expires. Matching the same events twice creates nothing new (deliveries are unique per
triggering event, cancellations and conversions are conditional updates).

While the broker is known to be down, the receiver skips it for ``BROKER_DOWN_SECONDS`` and writes
straight here: each failed attempt costs the intake's thread the client's connection retries
(most of a second), which would otherwise be paid for every batch of the outage.
"""

from __future__ import annotations

import logging
import time as clock
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from ..models import TriggerBacklog

logger = logging.getLogger(__name__)

# After a failed enqueue, this process writes to the backlog without trying the broker for this long.
BROKER_DOWN_SECONDS = 5.0
# Rows a drain enqueues at most per run (each is one task of up to 500 events).
DRAIN_LIMIT = 1000
# How long a drain's claim on a row lasts: longer than enqueueing DRAIN_LIMIT rows takes.
CLAIM_SECONDS = 120
# How long an outbox row is left to the task its intake enqueued before a drain enqueues it again:
# longer than the trigger queue's usual wait, so that a busy queue is not fed every batch twice.
OUTBOX_GRACE_SECONDS = 300

_broker_down_until = 0.0


def broker_known_down() -> bool:
    """True while a recent enqueue of this process failed (the receiver goes straight to the backlog)."""
    return clock.monotonic() < _broker_down_until


def broker_mark(*, up: bool) -> None:
    global _broker_down_until
    _broker_down_until = 0.0 if up else clock.monotonic() + BROKER_DOWN_SECONDS


def trigger_backlog_record(*, workspace_id: int, event_ids: Sequence[int], error: str = "") -> int:
    """Keep these stored events for a later trigger matching; returns the row's id. Runs in its
    own transaction (the intake's has committed already)."""
    row = TriggerBacklog.objects.create(workspace_id=workspace_id, event_ids=list(event_ids), last_error=error[:255])
    return row.pk


def trigger_outbox_record(*, workspace_id: int, event_ids: Sequence[int]) -> int | None:
    """In the intake's transaction: keep these events for trigger matching until the task says it
    is done; returns the row's id. None when the row could not be written (its savepoint rolled
    back, the intake's transaction goes on): the enqueue after commit is then the only way."""
    try:
        now = timezone.now()  # the drain's clock, as it compares claims with it
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO campaigns_triggerbacklog (workspace_id, event_ids, created_at, claimed_until, attempts,"
                " last_error) VALUES (%s, %s, %s, %s, 0, '') RETURNING id",
                [workspace_id, list(event_ids), now, now + timedelta(seconds=OUTBOX_GRACE_SECONDS)],
            )
            (row_id,) = cursor.fetchone()
            return int(row_id)
    except DatabaseError:
        logger.exception("could not keep %d events of workspace %s in the trigger outbox", len(event_ids), workspace_id)
        return None


def trigger_outbox_release(*, row_id: int, error: str) -> None:
    """The enqueue after commit failed: leave the row to the next drain at once (not after its grace)."""
    TriggerBacklog.objects.filter(pk=row_id).update(claimed_until=None, last_error=error[:255])


def trigger_outbox_done(*, row_id: int) -> None:
    """The task matched the row's events: forget them."""
    TriggerBacklog.objects.filter(pk=row_id).delete()


@dataclass(frozen=True)
class DrainResult:
    enqueued: int  # rows handed to the broker (and deleted)
    events: int  # events in those rows
    left: int  # rows claimed but not enqueued (the broker failed again): the next drain retries them


def _claim(now: datetime, limit: int) -> list[tuple[int, int, list[int]]]:
    """Claim up to ``limit`` rows nobody holds, oldest first, in one committed statement (two
    drains never take the same row; the enqueue happens after this commit, outside any transaction)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_triggerbacklog b SET claimed_until = %s, attempts = b.attempts + 1"
            " FROM (SELECT id FROM campaigns_triggerbacklog"
            "       WHERE claimed_until IS NULL OR claimed_until < %s"
            "       ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) AS pick"
            " WHERE b.id = pick.id RETURNING b.id, b.workspace_id, b.event_ids",
            [now + timedelta(seconds=CLAIM_SECONDS), now, limit],
        )
        rows = [(row[0], row[1], list(row[2])) for row in cursor.fetchall()]
    rows.sort()
    return rows


def trigger_backlog_drain(
    *, enqueue: Callable[[int, list[int]], object], limit: int = DRAIN_LIMIT, now: datetime | None = None
) -> DrainResult:
    """Enqueue the backlog's rows (``enqueue(workspace_id, event_ids)``), oldest first, deleting each
    one enqueued. Stops at the first failure: the broker is still down, the rest waits for the next
    run (the claims are released so that it need not wait for them to expire)."""
    rows = _claim(now or timezone.now(), limit)
    if not rows:
        return DrainResult(0, 0, 0)
    done: list[int] = []
    events = 0
    error = ""
    for row_id, workspace_id, event_ids in rows:
        try:
            enqueue(workspace_id, event_ids)
        except Exception as exc:  # the broker again: leave this row and the rest for later
            error = f"{type(exc).__name__}: {exc}"
            break
        done.append(row_id)
        events += len(event_ids)
    if done:
        TriggerBacklog.objects.filter(pk__in=done).delete()
    left = [row_id for row_id, _, _ in rows if row_id not in set(done)]
    if left:
        TriggerBacklog.objects.filter(pk__in=left).update(claimed_until=None, last_error=error[:255])
        logger.warning("trigger backlog: %d rows still waiting for the broker (%s)", len(left), error)
    if done:
        logger.info("trigger backlog: enqueued %d rows (%d events)", len(done), events)
    return DrainResult(len(done), events, len(left))
