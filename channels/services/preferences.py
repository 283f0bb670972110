"""Signed links to the hosted pages (one-click unsubscribe, the preferences page) and what those
pages change.

A link carries the profile id, its workspace and the channel, signed with ``SECRET_KEY`` under a
salt of its own per page (``django.core.signing``): nobody can forge or alter one, and an
unsubscribe link cannot be replayed as a preferences link (which can change every channel). Links
never expire: CAN-SPAM wants the opt-out to work for at least 30 days after a send, and a person
may find an old email years later. Rotating ``SECRET_KEY`` (with the old key in
``SECRET_KEY_FALLBACKS``) keeps old links working.

A profile merged into another since the message went out is followed to the surviving profile,
so an old link still changes the right person's preferences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone

from profiles.engagement import UNSUBSCRIBED
from profiles.models import CHANNELS_WITH_SUBSCRIPTION, Profile, ProfileMerge, SubscriptionState
from profiles.services.engagement import Engagement, engagement_record
from profiles.services.subscriptions import profile_set_subscription

UNSUBSCRIBE_SALT = "channels.hosted.unsubscribe"
PREFERENCES_SALT = "channels.hosted.preferences"
# How many merges an old link follows to the surviving profile (each merge is one hop).
MAX_MERGE_HOPS = 8


def _token(*, salt: str, profile: Profile, channel: str) -> str:
    return _signed(salt, profile.pk, profile.workspace_id, channel, settings.SECRET_KEY)


@lru_cache(maxsize=4096)
def _signed(salt: str, profile_id: int, workspace_id: int, channel: str, secret_key: str) -> str:
    # No timestamp (Signer, not TimestampSigner): the links never expire, and are shorter for it.
    # Cached: a send signs the same person's link for the body and again for the List-Unsubscribe
    # header. The key includes SECRET_KEY, so a rotated key signs anew.
    return signing.Signer(salt=salt).sign_object({"p": profile_id, "w": workspace_id, "c": channel})


_PLACEHOLDER = "engage-link-placeholder"


@lru_cache(maxsize=64)
def _link_parts(name: str, script_prefix: str, urlconf: Any) -> tuple[str, str]:
    """The path of the ``name`` link around its token, reversed once (``reverse`` costs more than
    signing). A token is base64url and ':' only, which the URL keeps as it is."""
    path = reverse(name, kwargs={"token": _PLACEHOLDER}, urlconf=urlconf)
    before, mark, after = path.partition(_PLACEHOLDER)
    if not mark:
        raise ValueError(f"the {name!r} URL does not carry its token in the path")
    return before, after


def _link(name: str, token: str) -> str:
    before, after = _link_parts(name, get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF)
    return f"{settings.PUBLIC_BASE_URL}{before}{token}{after}"


def unsubscribe_token(profile: Profile, channel: str = "email") -> str:
    if channel not in CHANNELS_WITH_SUBSCRIPTION:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS_WITH_SUBSCRIPTION)}; got {channel!r}")
    return _token(salt=UNSUBSCRIBE_SALT, profile=profile, channel=channel)


def preferences_token(profile: Profile) -> str:
    return _token(salt=PREFERENCES_SALT, profile=profile, channel="*")


def unsubscribe_url(profile: Profile, channel: str = "email") -> str:
    """The absolute one-click unsubscribe URL for ``profile`` on ``channel`` (List-Unsubscribe, body
    links)."""
    return _link("channels-unsubscribe", unsubscribe_token(profile, channel))


def preferences_url(profile: Profile) -> str:
    """The absolute URL of ``profile``'s preferences page."""
    return _link("channels-preferences", preferences_token(profile))


@dataclass(frozen=True)
class LinkTarget:
    profile: Profile
    channel: str


def _resolve(token: str, *, salt: str) -> LinkTarget | None:
    try:
        payload: Any = signing.Signer(salt=salt).unsign_object(token)
    except (signing.BadSignature, ValueError):  # ValueError: a signed value that is not our JSON
        return None
    if not isinstance(payload, dict):
        return None
    profile_id, workspace_id, channel = payload.get("p"), payload.get("w"), payload.get("c")
    if not isinstance(profile_id, int) or not isinstance(workspace_id, int) or not isinstance(channel, str):
        return None
    for _ in range(MAX_MERGE_HOPS):
        profile = Profile.objects.select_related("workspace").filter(pk=profile_id, workspace_id=workspace_id).first()
        if profile is not None:
            return LinkTarget(profile=profile, channel=channel)
        into_id = (
            ProfileMerge.objects.filter(workspace_id=workspace_id, merged_profile_id=profile_id)
            .order_by("-created_at")
            .values_list("into_profile_id", flat=True)
            .first()
        )
        if into_id is None:
            return None  # erased, or never existed
        profile_id = into_id
    return None


def unsubscribe_link_resolve(token: str) -> LinkTarget | None:
    """The person and channel an unsubscribe link is for, or None for a tampered, forged or dead link."""
    target = _resolve(token, salt=UNSUBSCRIBE_SALT)
    if target is None or target.channel not in CHANNELS_WITH_SUBSCRIPTION:
        return None
    return target


def preferences_link_resolve(token: str) -> Profile | None:
    """The person a preferences link is for, or None for a tampered, forged or dead link."""
    target = _resolve(token, salt=PREFERENCES_SALT)
    return None if target is None else target.profile


def profile_unsubscribe(*, profile_id: int, channel: str, record: bool = True) -> bool:
    """Unsubscribe a person from ``channel`` (an unsubscribe link, an ESP's unsubscribe report);
    return whether it changed. Repeating it changes nothing.

    ``record`` puts an ``$unsubscribed`` event on the timeline when the state changed; callers that
    record their own event (with the message's campaign) or whose cause is not the person's wish
    (a hard bounce, a spam complaint) pass False."""
    now = timezone.now()
    changed = profile_set_subscription(
        profile_id=profile_id, channel=channel, state=SubscriptionState.UNSUBSCRIBED, at=now
    )
    if changed and record:
        _record_unsubscribe(profile_id=profile_id, channel=channel, at=now)
    return changed


def _record_unsubscribe(*, profile_id: int, channel: str, at: datetime) -> None:
    # On the timeline and countable by segments and reports; one event per actual change.
    workspace_id = Profile.objects.filter(pk=profile_id).values_list("workspace_id", flat=True).first()
    if workspace_id is not None:
        engagement_record(
            workspace_id=workspace_id,
            engagements=[
                Engagement(
                    profile_id=profile_id,
                    name=UNSUBSCRIBED,
                    dedupe_key=f"{profile_id}:{channel}:{at.isoformat()}",
                    properties={"channel": channel},
                    timestamp=at,
                )
            ],
        )


def profile_preferences_set(*, profile: Profile, wanted: Mapping[str, bool]) -> list[str]:
    """Apply a person's choices from the preferences page (channel -> wants messages); return the
    channels whose state changed.

    Turning a channel off unsubscribes it. Turning it on opts in only a channel that was
    unsubscribed: a channel left on keeps "subscribed" (the default, no explicit consent) or
    "opted_in" as it was, so saving the page for one channel never records consent for another.
    """
    unknown = [channel for channel in wanted if channel not in CHANNELS_WITH_SUBSCRIPTION]
    if unknown:
        expected = ", ".join(CHANNELS_WITH_SUBSCRIPTION)
        raise ValidationError({channel: [f"unknown channel; expected one of {expected}"] for channel in unknown})
    now = timezone.now()
    changed: list[str] = []
    with transaction.atomic():
        for channel, on in wanted.items():
            current = getattr(profile, f"{channel}_subscription")
            if on and current != SubscriptionState.UNSUBSCRIBED:
                continue
            state = SubscriptionState.OPTED_IN if on else SubscriptionState.UNSUBSCRIBED
            if profile_set_subscription(profile_id=profile.pk, channel=channel, state=state, at=now):
                changed.append(channel)
                if not on:
                    _record_unsubscribe(profile_id=profile.pk, channel=channel, at=now)
    return changed
