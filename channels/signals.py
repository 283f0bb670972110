"""Receivers connecting the channels app to signals sent elsewhere (connected in ``apps.py``).

anymail's ``tracking`` signal is sent by its webhook views (``/anymail/<esp>/tracking/``), once per
normalised event, after the request is authenticated (basic auth, and the ESP's signature where
it has one). The receiver stays thin: the work and its idempotency are in
``channels.services.tracking``. An exception here makes the webhook answer an error, and the ESP
retries the batch; events already handled are then recognised and skipped.
"""

from __future__ import annotations

from typing import Any

from anymail.signals import AnymailTrackingEvent

from .services.tracking import tracking_event_record


def anymail_tracking_received(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    tracking_event_record(esp_name=esp_name, event=event)
