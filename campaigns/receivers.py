"""What campaigns do when other apps announce something (connected in ``CampaignsConfig.ready``).

- ``events_stored``: trigger matching for the new events. In the intake's transaction the ids are
  written to the trigger outbox (``services.trigger_backlog``), so they commit with the events;
  after the commit the matching is enqueued, off the request path, and the task deletes the row
  when done. A process that dies in between, or a broker that is down, leaves the row to the
  beat's drain. Big batches are split. Only events some campaign may react to are kept (by name,
  one primary-key query; all of them when a segment-entry trigger looks at every event): a
  workspace with no campaign that reacts to events, or a batch of page views no trigger names,
  writes and enqueues nothing. The rules come from the same few-seconds cache as the task's.
- ``profile_merged``: a merged person's deliveries and segment-entry state move to the surviving
  profile, inside the merge transaction, before the merged row is deleted; a send both profiles
  have is kept once (``services.merges``).
- Campaign changes clear this process's cache of campaign rules at once (other processes see them
  within the cache's few seconds).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from profiles.signals import events_stored, profile_merged

from .models import Campaign, ChannelMessage, Variant
from .services.merges import campaigns_profile_merged
from .services.trigger_backlog import (
    broker_known_down,
    broker_mark,
    trigger_backlog_record,
    trigger_outbox_record,
    trigger_outbox_release,
)
from .services.triggers import events_that_may_matter, rules_cache_clear, workspace_rules
from .tasks_triggers import campaign_triggers_task

logger = logging.getLogger(__name__)

# Event ids per task: a big import's batch becomes several tasks that workers share.
CHUNK = 500


@receiver(events_stored, dispatch_uid="campaigns.events_stored")
def enqueue_trigger_matching(sender: Any, workspace_id: int, event_ids: list[int], **kwargs: Any) -> None:
    ids = list(event_ids)
    try:
        # A task only for the events some campaign may react to: background traffic (page views,
        # the engagement events of sends) costs the intake one primary-key query, not a task.
        ids = events_that_may_matter(rules=workspace_rules(workspace_id), workspace_id=workspace_id, event_ids=ids)
    except Exception:  # never fail the intake's answer over this: let the task decide
        logger.exception("could not read the campaign rules of workspace %s", workspace_id)
    if not ids:
        return
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        outbox_id = trigger_outbox_record(workspace_id=workspace_id, event_ids=chunk)
        transaction.on_commit(lambda chunk=chunk, row=outbox_id: _enqueue(workspace_id, chunk, row))  # type: ignore[misc]


def _enqueue(workspace_id: int, event_ids: list[int], outbox_id: int | None = None) -> None:
    # The events are stored whatever happens here: a broker outage must not turn the intake's
    # answer into an error (the SDK would resend events that are already stored). Nor may it lose
    # the matching: the ids stay in the trigger outbox (the database is up) and the beat's drain
    # enqueues them once the broker is back. While the broker is known to be down, it is not tried
    # (each failed attempt costs this thread the client's connection retries).
    if not broker_known_down():
        try:
            campaign_triggers_task.delay(workspace_id, event_ids, outbox_id)
            return
        except Exception as exc:
            broker_mark(up=False)
            error = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "could not enqueue trigger matching for %d events of workspace %s (%s): kept in the backlog",
                len(event_ids),
                workspace_id,
                error,
            )
    else:
        error = "the broker was down moments ago"
    try:
        if outbox_id is not None:
            trigger_outbox_release(row_id=outbox_id, error=error)
        else:
            trigger_backlog_record(workspace_id=workspace_id, event_ids=event_ids, error=error)
    except Exception:
        # Both the broker and the database failed us: nothing left to keep the ids in.
        logger.exception(
            "could not keep %d events of workspace %s for trigger matching: they trigger nothing",
            len(event_ids),
            workspace_id,
        )


@receiver(profile_merged, dispatch_uid="campaigns.profile_merged")
def move_merged_persons_state(sender: Any, workspace_id: int, source_id: int, target_id: int, **kwargs: Any) -> None:
    campaigns_profile_merged(workspace_id=workspace_id, source_id=source_id, target_id=target_id)


def _clear_cache(sender: Any, **kwargs: Any) -> None:
    rules_cache_clear()


for _model in (Campaign, Variant, ChannelMessage):
    post_save.connect(_clear_cache, sender=_model, dispatch_uid=f"campaigns.rules_cache.save.{_model.__name__}")
    post_delete.connect(_clear_cache, sender=_model, dispatch_uid=f"campaigns.rules_cache.delete.{_model.__name__}")
for _through in (Campaign.include_segments.through, Campaign.exclude_segments.through):
    m2m_changed.connect(_clear_cache, sender=_through, dispatch_uid=f"campaigns.rules_cache.m2m.{_through.__name__}")
