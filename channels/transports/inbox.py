"""The "transport" of in-app messages and content cards: the provider is the person's own inbox,
which the app pulls through the client API (``channels.api.client``).

Unlike the other transports it writes to the database (the inbox *is* the destination), once per
dispatch, so a retried send never creates a second item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..content import content_check_rendered
from ..services.inbox import inbox_item_create
from .base import PermanentError, SendResult

if TYPE_CHECKING:
    from ..models import Dispatch, ProviderConfig


class InboxTransport:
    def send(self, dispatch: Dispatch, config: ProviderConfig | None) -> SendResult:
        errors = content_check_rendered(channel=dispatch.channel, content=dispatch.content)
        if errors:
            field, message = errors[0]
            raise PermanentError("invalid_content", f"{field}: {message}")
        item = inbox_item_create(dispatch=dispatch)
        return SendResult(
            provider_message_id=f"inbox:{item.pk}",
            raw={"inbox_item_id": item.pk, "expires_at": item.expires_at.isoformat() if item.expires_at else None},
        )
