"""Signals that let higher apps (segments, campaigns, channels) react to what profiles stored,
without profiles importing them.

- ``events_stored(workspace_id, event_ids)``: sent inside the transaction that stores the events,
  once they are written and just before it commits, with the ids of the events it newly stored
  (duplicates excluded). A receiver may write rows in that transaction (an outbox: they commit
  with the events or not at all) and must enqueue its work with ``transaction.on_commit``, so that
  no worker looks for events not yet committed. Receivers must stay cheap and must not raise:
  don't do the work in the request.
- ``profile_merged(workspace_id, source_id, target_id)``: sent inside the merge transaction, before the
  merged profile row is deleted. Apps holding rows that point at profiles must re-point them to
  ``target_id`` here, or they go with the merged profile.
- ``profile_erased(workspace_id, profile_id)``: sent inside the erasure transaction, before the
  profile row is deleted.
"""

from django.dispatch import Signal

events_stored = Signal()
profile_merged = Signal()
profile_erased = Signal()
