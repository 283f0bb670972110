"""The hosted pages people reach from a message, by a signed link and without logging in:
one-click unsubscribe (RFC 8058) and the preferences page.

Plain Django views (HTML, not the JSON API). The link's signature is the only credential, so a
tampered, forged or dead link answers 404 and never shows or changes anyone's preferences.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from profiles.models import CHANNELS_WITH_SUBSCRIPTION, Profile, SubscriptionState

from ..services.preferences import (
    preferences_link_resolve,
    preferences_url,
    profile_preferences_set,
    profile_unsubscribe,
    unsubscribe_link_resolve,
)

CHANNEL_LABELS = {"email": "Email", "push": "Push notifications", "sms": "Text messages (SMS)"}


def _invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "channels/link_invalid.html", status=404)


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` -> ``j•••@example.com``: enough for a person to recognise their
    address on a page that anyone holding the link can open."""
    local, at, domain = value.partition("@")
    if not at:
        return ""
    return f"{local[:1]}•••@{domain}"


def mask_phone(value: str) -> str:
    return f"•••{value[-2:]}" if len(value) > 2 else ""


# RFC 8058: the mailbox provider POSTs "List-Unsubscribe=One-Click" (urlencoded or multipart)
# without cookies, so no CSRF token can be asked for; the signed URL is the credential. A GET (a
# person clicking, or a link scanner prefetching) must never unsubscribe: it shows a button.
@csrf_exempt
@never_cache
def unsubscribe_view(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in {"GET", "HEAD", "POST"}:
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    target = unsubscribe_link_resolve(token)
    if target is None:
        return _invalid_link(request)
    profile = target.profile
    context: dict[str, Any] = {
        "workspace": profile.workspace,
        "channel": target.channel,
        "channel_label": CHANNEL_LABELS[target.channel],
        "address": _address(profile, target.channel),
        "preferences_url": preferences_url(profile),
    }
    if request.method == "POST":
        # Any POST to the signed URL unsubscribes, whatever the body: mailbox providers send
        # "List-Unsubscribe=One-Click", the confirmation page's button sends the same, and a
        # client that sends nothing has still asked to stop. Answered 200 with no redirect.
        profile_unsubscribe(profile_id=profile.pk, channel=target.channel)
        return render(request, "channels/unsubscribed.html", context)
    context["already_unsubscribed"] = getattr(profile, f"{target.channel}_subscription") == (
        SubscriptionState.UNSUBSCRIBED
    )
    return render(request, "channels/unsubscribe_confirm.html", context)


@never_cache
@csrf_protect
def preferences_view(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in {"GET", "HEAD", "POST"}:
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    profile = preferences_link_resolve(token)
    if profile is None:
        return _invalid_link(request)
    saved = False
    if request.method == "POST":
        # Every channel is on the form: an unticked box is absent from the POST and means "off".
        wanted = {channel: request.POST.get(channel) == "on" for channel in CHANNELS_WITH_SUBSCRIPTION}
        profile_preferences_set(profile=profile, wanted=wanted)
        profile.refresh_from_db()
        saved = True
    channels = [
        {
            "name": channel,
            "label": CHANNEL_LABELS[channel],
            "address": _address(profile, channel),
            "on": getattr(profile, f"{channel}_subscription") != SubscriptionState.UNSUBSCRIBED,
            "state": getattr(profile, f"{channel}_subscription"),
        }
        for channel in CHANNELS_WITH_SUBSCRIPTION
    ]
    return render(
        request,
        "channels/preferences.html",
        {"workspace": profile.workspace, "channels": channels, "saved": saved},
    )


def _address(profile: Profile, channel: str) -> str:
    if channel == "email":
        return mask_email(profile.email)
    if channel == "sms":
        return mask_phone(profile.phone)
    return ""
