"""Receivers connecting the channels app to signals sent elsewhere (connected in ``apps.py``).

``profile_merged`` (profiles): a merged person's dispatches and inbox items move to the surviving
profile, inside the merge transaction (``channels.services.inbox.channels_profile_merged``).

anymail's ``tracking`` signal is sent by its webhook views (``/anymail/<esp>/tracking/``), once per
normalised event, after the request is authenticated (basic auth, and the ESP's signature where
it has one). The receiver stays thin: the work and its idempotency are in
``channels.services.tracking``. An exception here makes the webhook answer an error, and the ESP
retries the batch; events already handled are then recognised and skipped.
"""

from __future__ import annotations

from typing import Any

from anymail.signals import AnymailTrackingEvent

from .services.inbox import channels_profile_merged
from .services.tracking import tracking_event_record


def anymail_tracking_received(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    tracking_event_record(esp_name=esp_name, event=event)


def profile_merged_received(sender: Any, workspace_id: int, source_id: int, target_id: int, **kwargs: Any) -> None:
    channels_profile_merged(workspace_id=workspace_id, source_id=source_id, target_id=target_id)
