"""Helpers for the inbox tests: dispatches of in-app messages and content cards, and their inbox
items as the inbox transport creates them."""

from __future__ import annotations

import itertools
from typing import Any

from channels.models import Channel, Dispatch, DispatchStatus, InboxItem
from channels.services.inbox import inbox_item_create
from profiles.models import Profile

_keys = itertools.count(1)

CARD: dict[str, Any] = {
    "type": "classic",
    "title": "Spring sale",
    "body": "20% off everything",
    "url": "https://shop.example.com/spring",
    "link_text": "Shop now",
    "extras": {"category": "promo"},
}
MODAL: dict[str, Any] = {
    "layout": "modal",
    "header": "Welcome back",
    "body": "Your plan renews soon",
    "image_url": "https://cdn.example.com/welcome.png",
    "buttons": [
        {"text": "Renew", "action": "open_url", "url": "https://shop.example.com/renew"},
        {"text": "Later", "action": "close"},
    ],
}


def inbox_dispatch(profile: Profile, channel: str, content: dict[str, Any], **metadata: str) -> Dispatch:
    return Dispatch.objects.create(
        workspace=profile.workspace,
        profile=profile,
        channel=channel,
        address=str(profile.pk),
        content=content,
        idempotency_key=f"inbox-test-{next(_keys)}",
        metadata=metadata or {"campaign_id": "7", "variant": "B"},
        status=DispatchStatus.SENDING,
    )


def send_card(profile: Profile, **overrides: Any) -> InboxItem:
    dispatch = inbox_dispatch(profile, Channel.CONTENT_CARD, {**CARD, **overrides})
    return inbox_item_create(dispatch=dispatch)


def send_in_app(profile: Profile, **overrides: Any) -> InboxItem:
    dispatch = inbox_dispatch(profile, Channel.IN_APP, {**MODAL, **overrides})
    return inbox_item_create(dispatch=dispatch)
