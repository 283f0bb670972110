"""Where a channel can reach a person, or why it cannot.

``resolve_addresses`` is the single place that decides reachability, so a send and a campaign's
"why was this person not sent to?" always agree. The reasons are short sentences a marketer reads
as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from profiles.models import Device, Profile, PushProvider, SubscriptionState

from ..models import Channel, ProviderConfig, ProviderKind

NO_EMAIL = "no email address"
EMAIL_UNSUBSCRIBED = "unsubscribed from email"
NO_PUSH_DEVICE = "no push-enabled device"
PUSH_UNSUBSCRIBED = "unsubscribed from push"
NO_PHONE = "no phone number"
SMS_UNSUBSCRIBED = "unsubscribed from SMS"
NO_WEBPUSH = "no web push subscription"
NO_WEBHOOK_URL = "no webhook URL"

EMAIL_PROVIDER_KINDS = (ProviderKind.SMTP, ProviderKind.ANYMAIL)


@dataclass(frozen=True)
class Address:
    """One place to send to: an email address, a push token, a web push subscription (JSON), a
    phone number, a URL, or the profile's own inbox (its id). ``provider`` is the ``ProviderKind``
    that carries it ("" when none is needed or the deployment's default is used)."""

    address: str
    device_id: int | None
    provider: str


@dataclass(frozen=True)
class Unreachable:
    reason: str


def _unsubscribed(state: str) -> bool:
    return state == SubscriptionState.UNSUBSCRIBED


def email_provider_kind(workspace_id: int) -> str:
    """The kind of the workspace's active email provider; "" sends through the deployment's
    default ``EMAIL_BACKEND`` (the embedded run's local SMTP)."""
    kind = (
        ProviderConfig.objects.filter(workspace_id=workspace_id, kind__in=EMAIL_PROVIDER_KINDS, is_active=True)
        .order_by("kind")
        .values_list("kind", flat=True)
        .first()
    )
    return kind or ""


def parse_webpush_subscription(token: str) -> dict[str, Any] | None:
    """A browser's PushSubscription JSON ({endpoint, keys: {p256dh, auth}}), or None if malformed."""
    try:
        data = json.loads(token)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    keys = data.get("keys")
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or not isinstance(keys, dict):
        return None
    if not isinstance(keys.get("p256dh"), str) or not isinstance(keys.get("auth"), str):
        return None
    return data


def resolve_addresses(
    *,
    profile: Profile,
    channel: str,
    content: dict[str, Any],
    transactional: bool = False,
    email_provider: str | None = None,
) -> list[Address] | Unreachable:
    """The addresses ``channel`` sends ``profile`` to (one per device for push), or why none.

    Subscription state is honoured for marketing messages; ``transactional`` ones ignore the email
    and push states (a receipt still reaches someone who unsubscribed from newsletters). SMS always
    honours an opt-out: after STOP, carriers and Twilio refuse every message. ``email_provider``
    is the workspace's ``email_provider_kind`` when the caller already knows it (a batch asks once).
    """
    if channel == Channel.EMAIL:
        if not profile.email:
            return Unreachable(NO_EMAIL)
        if not transactional and _unsubscribed(profile.email_subscription):
            return Unreachable(EMAIL_UNSUBSCRIBED)
        kind = email_provider if email_provider is not None else email_provider_kind(profile.workspace_id)
        return [Address(profile.email, None, kind)]

    if channel == Channel.PUSH:
        devices = list(
            Device.objects.filter(
                profile=profile,
                push_enabled=True,
                push_provider__in=[PushProvider.APNS, PushProvider.FCM],
            )
            .exclude(push_token="")
            .order_by("pk")
            .values_list("pk", "push_token", "push_provider")
        )
        if not devices:
            return Unreachable(NO_PUSH_DEVICE)
        if not transactional and _unsubscribed(profile.push_subscription):
            return Unreachable(PUSH_UNSUBSCRIBED)
        return _unique([Address(token, pk, provider) for pk, token, provider in devices])

    if channel == Channel.WEBPUSH:
        subscriptions = [
            Address(token, pk, ProviderKind.WEBPUSH)
            for pk, token in Device.objects.filter(
                profile=profile, push_enabled=True, push_provider=PushProvider.WEB_PUSH
            )
            .order_by("pk")
            .values_list("pk", "push_token")
            if parse_webpush_subscription(token) is not None
        ]
        if not subscriptions:
            return Unreachable(NO_WEBPUSH)
        if not transactional and _unsubscribed(profile.push_subscription):
            return Unreachable(PUSH_UNSUBSCRIBED)
        return _unique(subscriptions)

    if channel == Channel.SMS:
        if not profile.phone:
            return Unreachable(NO_PHONE)
        if _unsubscribed(profile.sms_subscription):
            return Unreachable(SMS_UNSUBSCRIBED)
        return [Address(profile.phone, None, ProviderKind.TWILIO)]

    if channel == Channel.WEBHOOK:
        url = content.get("url")
        if not isinstance(url, str) or not url.strip():
            return Unreachable(NO_WEBHOOK_URL)
        return [Address(url.strip(), None, ProviderKind.WEBHOOK)]

    if channel in (Channel.IN_APP, Channel.CONTENT_CARD):
        return [Address(str(profile.pk), None, "")]

    raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(Channel.values)}")


def _unique(addresses: list[Address]) -> list[Address]:
    """One address per token: two device rows carrying the same token would send twice."""
    seen: set[str] = set()
    out = []
    for address in addresses:
        if address.address not in seen:
            seen.add(address.address)
            out.append(address)
    return out
