"""Signals that let higher apps (segments, campaigns, channels) react to what profiles stored,
without profiles importing them.

- ``events_stored(workspace_id, event_ids)``: sent after the intake's transaction commits, with the
  ids of the events it newly stored (duplicates excluded). Receivers must stay cheap: enqueue work,
  don't do it in the request.
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
