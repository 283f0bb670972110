"""Changing a person's reachability: per-channel subscription state and device push registration.

Channels call these when a provider reports a permanent failure (an unregistered push token, a
hard bounce, a spam complaint, an SMS STOP) and when a person uses the preferences page; the API
and admin call them too. Each is a conditional update: repeating one changes nothing and does not
move the changed-at time.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from ..models import CHANNELS_WITH_SUBSCRIPTION, Device, Profile, SubscriptionState


def profile_set_subscription(*, profile_id: int, channel: str, state: str, at: datetime | None = None) -> bool:
    """Set ``channel``'s subscription state; return whether it changed."""
    if channel not in CHANNELS_WITH_SUBSCRIPTION:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS_WITH_SUBSCRIPTION)}; got {channel!r}")
    if state not in SubscriptionState.values:
        raise ValueError(f"state must be one of {', '.join(SubscriptionState.values)}; got {state!r}")
    field = f"{channel}_subscription"
    updated = (
        Profile.objects.filter(pk=profile_id)
        .exclude(**{field: state})
        .update(**{field: state, f"{field}_changed_at": at or timezone.now(), "updated_at": timezone.now()})
    )
    return updated == 1


def device_disable_push(*, device_id: int, reason: str) -> bool:
    """Stop pushing to a device whose token the provider refused for good; return whether it was on.

    The token is kept (so the record shows what was refused) but ``push_enabled`` goes off until
    the app registers a new token, which the intake turns back on.
    """
    updated = Device.objects.filter(pk=device_id, push_enabled=True).update(
        push_enabled=False, push_disabled_reason=reason[:255]
    )
    return updated == 1
