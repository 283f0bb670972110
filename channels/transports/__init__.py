"""Which transport sends a channel's messages through which provider.

``get_transport(channel, provider)`` answers with a ready instance. Transports are created once
per process and reused: they keep their OAuth tokens, signed JWTs and HTTP/2 connections between
sends. Modules are imported by name on first use, so a deployment without (say) the HTTP/2 extra
only fails when it sends through APNs, and the inbox transport (in-app messages and content cards,
``channels/transports/inbox.py``) lives in its own module.
"""

from __future__ import annotations

import importlib
import threading

from ..models import Channel, ProviderKind
from .base import (
    NotConfiguredError,
    OutcomeUnknownError,
    PermanentError,
    ProfileEffect,
    SendResult,
    TransientError,
    Transport,
)

__all__ = [
    "NotConfiguredError",
    "OutcomeUnknownError",
    "PermanentError",
    "ProfileEffect",
    "SendResult",
    "TransientError",
    "Transport",
    "UnknownTransportError",
    "get_transport",
    "providers_for_channel",
]

# (channel, provider) -> "module:Class". The provider is ``Dispatch.provider``: empty where the
# channel needs no provider (in-app, cards, unsigned webhooks) or uses the deployment's default
# (email through settings.EMAIL_BACKEND when the workspace configured no email provider).
REGISTRY: dict[tuple[str, str], str] = {
    (Channel.EMAIL, ""): "channels.transports.email:EmailTransport",
    (Channel.EMAIL, ProviderKind.SMTP): "channels.transports.email:EmailTransport",
    (Channel.EMAIL, ProviderKind.ANYMAIL): "channels.transports.email:EmailTransport",
    (Channel.PUSH, ProviderKind.FCM): "channels.transports.fcm:FcmTransport",
    (Channel.PUSH, ProviderKind.APNS): "channels.transports.apns:ApnsTransport",
    (Channel.WEBPUSH, ProviderKind.WEBPUSH): "channels.transports.webpush:WebPushTransport",
    (Channel.SMS, ProviderKind.TWILIO): "channels.transports.sms:TwilioTransport",
    (Channel.WEBHOOK, ""): "channels.transports.webhook:WebhookTransport",
    (Channel.WEBHOOK, "webhook"): "channels.transports.webhook:WebhookTransport",
    (Channel.IN_APP, ""): "channels.transports.inbox:InboxTransport",
    (Channel.CONTENT_CARD, ""): "channels.transports.inbox:InboxTransport",
}

_instances: dict[str, Transport] = {}
_lock = threading.Lock()


class UnknownTransportError(LookupError):
    pass


def providers_for_channel(channel: str) -> list[str]:
    """The provider kinds that can carry ``channel`` (empty string: none needed)."""
    return [provider for (known, provider) in REGISTRY if known == channel]


def get_transport(channel: str, provider: str) -> Transport:
    """The transport for ``channel`` through ``provider`` (a ``ProviderKind`` value or "")."""
    try:
        target = REGISTRY[(channel, provider)]
    except KeyError:
        raise UnknownTransportError(f"no transport sends {channel!r} through {provider or 'no provider'!r}") from None
    with _lock:
        instance = _instances.get(target)
        if instance is None:
            module_name, class_name = target.split(":")
            instance = getattr(importlib.import_module(module_name), class_name)()
            _instances[target] = instance
    return instance
