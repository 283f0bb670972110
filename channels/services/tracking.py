"""What email providers report about sent messages (anymail's normalised tracking events): kept
once per provider event, tied back to the dispatch, turned into the dispatch's status, engagement
events on the person's profile, and subscription changes.

Each report is handled in one transaction that starts by inserting its ``ProviderEvent``: a
provider repeating a webhook (they do, on any timeout) finds the row there and changes nothing,
and two copies racing each other serialise on the unique index. If anything fails the whole
report rolls back and the webhook answers an error, so the provider retries it.

Effects, by anymail event type:

- ``delivered``: dispatch ``delivered`` (only from pending/sending/sent) and ``$message_delivered``.
- ``bounced``, hard (``reject_reason`` invalid/bounced and not the ESP's soft kind): dispatch
  ``bounced``, ``$message_bounced``, and the email channel unsubscribed when the bounced address is
  still the person's. A soft bounce only notes the reason on the dispatch: the ESP may still
  deliver it.
- ``rejected``: dispatch ``failed`` and ``$message_bounced``; rejected because the ESP holds the
  address as unsubscribed or a spam complainer: the email channel is unsubscribed here too.
- ``failed``: dispatch ``failed`` with the reason.
- ``opened`` / ``clicked`` (with the URL): ``$message_opened`` / ``$message_clicked``, one per
  provider event; the status never moves back.
- ``complained``, ``unsubscribed``: the email channel is unsubscribed.
- anything else (queued, deferred, autoresponded...): kept as a ``ProviderEvent`` only.

Status only moves forward (pending < sending < sent < delivered < bounced/failed): events arrive
out of order and an open never undoes a bounce.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.db import transaction
from django.utils import timezone

from profiles.engagement import (
    MESSAGE_BOUNCED,
    MESSAGE_CLICKED,
    MESSAGE_COMPLAINED,
    MESSAGE_DELIVERED,
    MESSAGE_OPENED,
    UNSUBSCRIBED,
)
from profiles.models import Profile

from ..models import Channel, Dispatch, DispatchStatus, ProviderEvent, ProviderKind
from .engagement import dispatch_engagement_record
from .preferences import profile_unsubscribe

logger = logging.getLogger(__name__)

_HARD_REASONS = {RejectReason.INVALID, RejectReason.BOUNCED}
_SUPPRESSION_REASONS = {RejectReason.UNSUBSCRIBED, RejectReason.SPAM}
# SparkPost's bounce classes that mean the address will never work (invalid recipient, no RCPT).
_SPARKPOST_HARD_CLASSES = {"10", "30"}
_EMAIL_PROVIDERS = ["", ProviderKind.SMTP.value, ProviderKind.ANYMAIL.value]


@dataclass(frozen=True)
class TrackingOutcome:
    provider_event: ProviderEvent
    created: bool  # False: a repeat of a report already handled
    dispatch: Dispatch | None


def esp_slug(esp_name: str) -> str:
    """anymail's display name as a stable key: "Amazon SES" -> "amazon_ses"."""
    return esp_name.strip().lower().replace(" ", "_")[:32]


def tracking_event_key(esp_name: str, event: AnymailTrackingEvent) -> str:
    """The identity of a provider report, for storing it once.

    The ESP's own event id where it has one; Mailgun's event-data id rather than the signature
    token anymail uses (a signature is per delivery attempt, the event id per event); Amazon SES
    reports several recipients under one SNS id, so the recipient is part of the key there. Without
    an id (Postmark opens and deliveries, Brevo), a digest of message id, recipient, type,
    timestamp and clicked URL.
    """
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    slug = esp_slug(esp_name)
    event_id: str | None = event.event_id
    if slug == "mailgun":
        data = raw.get("event-data")
        if isinstance(data, dict) and data.get("id"):
            event_id = str(data["id"])
    if event_id and slug == "amazon_ses":
        event_id = f"{event_id}:{event.recipient or ''}"
    if event_id:
        key = str(event_id)
        return key if len(key) <= 255 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    parts = [
        event.message_id or "",
        (event.recipient or "").lower(),
        event.event_type or "",
        event.timestamp.isoformat() if event.timestamp else "",
        event.click_url or "",
    ]
    return "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {"repr": repr(value)[:10_000]}


def _find_dispatch(event: AnymailTrackingEvent) -> Dispatch | None:
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    dispatch_id = metadata.get("dispatch_id")
    if dispatch_id:
        try:
            pk = uuid.UUID(str(dispatch_id))
        except ValueError:
            pk = None
        if pk is not None:
            dispatch = Dispatch.objects.filter(pk=pk, channel=Channel.EMAIL).first()
            if dispatch is not None:
                return dispatch
    if event.message_id:
        # Providers that drop metadata on some events still carry their own message id.
        candidates = list(
            Dispatch.objects.filter(
                provider__in=_EMAIL_PROVIDERS, provider_message_id=str(event.message_id)[:255], channel=Channel.EMAIL
            )[:2]
        )
        if len(candidates) == 1:
            return candidates[0]
        recipient = (event.recipient or "").lower()
        for dispatch in candidates:
            if dispatch.address.lower() == recipient:
                return dispatch
    return None


def is_hard_bounce(esp_name: str, event: AnymailTrackingEvent) -> bool:
    """Whether a bounce means the address will never work (anymail reports some ESPs' soft
    bounces with the same reject reason as hard ones; their raw event tells them apart)."""
    if event.event_type != EventType.BOUNCED or event.reject_reason not in _HARD_REASONS:
        return False
    if event.reject_reason == RejectReason.INVALID:
        return True
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    slug = esp_slug(esp_name)
    if slug == "postmark":
        return raw.get("Type") != "SoftBounce"
    if slug in {"brevo", "sendinblue"}:
        return raw.get("event") != "soft_bounce"
    if slug == "sparkpost":
        msys = raw.get("msys")
        body: Any = next(iter(msys.values()), {}) if isinstance(msys, dict) and msys else {}
        return isinstance(body, dict) and str(body.get("bounce_class", "")) in _SPARKPOST_HARD_CLASSES
    if slug == "amazon_ses":
        bounce: Any = raw.get("bounce")
        return not (isinstance(bounce, dict) and bounce.get("bounceType") == "Transient")
    return True


def tracking_event_record(*, esp_name: str, event: AnymailTrackingEvent) -> TrackingOutcome:
    """Handle one provider report (see the module docstring); repeating it changes nothing."""
    key = tracking_event_key(esp_name, event)
    slug = esp_slug(esp_name)
    dispatch = _find_dispatch(event)
    with transaction.atomic():
        provider_event, created = ProviderEvent.objects.get_or_create(
            provider=slug,
            event_id=key,
            defaults={
                "workspace_id": dispatch.workspace_id if dispatch else None,
                "dispatch": dispatch,
                "event_type": (event.event_type or "unknown")[:32],
                "payload": _jsonable(event.esp_event),
            },
        )
        if not created:
            return TrackingOutcome(provider_event=provider_event, created=False, dispatch=dispatch)
        if dispatch is None:
            logger.info(
                "%s %s event for message %s matches no dispatch; kept as provider event %s",
                esp_name,
                event.event_type,
                event.message_id,
                provider_event.pk,
            )
            return TrackingOutcome(provider_event=provider_event, created=True, dispatch=None)
        _apply(esp_name=esp_name, event=event, key=f"{slug}:{key}", dispatch=dispatch)
    return TrackingOutcome(provider_event=provider_event, created=True, dispatch=dispatch)


def _reason_text(event: AnymailTrackingEvent) -> str:
    parts = [part for part in (event.description, event.mta_response) if part]
    return " — ".join(str(part) for part in parts)[:2000]


def _apply(*, esp_name: str, event: AnymailTrackingEvent, key: str, dispatch: Dispatch) -> None:
    event_type = event.event_type
    when = event.timestamp or timezone.now()
    now = timezone.now()
    if event_type == EventType.DELIVERED:
        Dispatch.objects.filter(
            pk=dispatch.pk, status__in=[DispatchStatus.PENDING, DispatchStatus.SENDING, DispatchStatus.SENT]
        ).update(status=DispatchStatus.DELIVERED, updated_at=now)
        dispatch_engagement_record(
            dispatch=dispatch, name=MESSAGE_DELIVERED, dedupe_key=str(dispatch.pk), timestamp=when
        )
    elif event_type == EventType.BOUNCED:
        if is_hard_bounce(esp_name, event):
            _mark_failed(dispatch, DispatchStatus.BOUNCED, code=event.reject_reason or "bounced", event=event, now=now)
            dispatch_engagement_record(
                dispatch=dispatch,
                name=MESSAGE_BOUNCED,
                dedupe_key=str(dispatch.pk),
                properties={"reason": event.reject_reason, "provider_reason": _reason_text(event)[:500]},
                timestamp=when,
            )
            _unsubscribe_if_still_theirs(dispatch, event.recipient)
        else:
            Dispatch.objects.filter(pk=dispatch.pk).update(
                error_code="soft_bounce", error_message=_reason_text(event) or "soft bounce", updated_at=now
            )
    elif event_type == EventType.REJECTED:
        _mark_failed(dispatch, DispatchStatus.FAILED, code=event.reject_reason or "rejected", event=event, now=now)
        dispatch_engagement_record(
            dispatch=dispatch,
            name=MESSAGE_BOUNCED,
            dedupe_key=str(dispatch.pk),
            properties={"reason": event.reject_reason, "provider_reason": _reason_text(event)[:500]},
            timestamp=when,
        )
        if event.reject_reason in _SUPPRESSION_REASONS:
            profile_unsubscribe(profile_id=dispatch.profile_id, channel="email", record=False)
        elif event.reject_reason == RejectReason.INVALID:
            _unsubscribe_if_still_theirs(dispatch, event.recipient)
    elif event_type == EventType.FAILED:
        _mark_failed(dispatch, DispatchStatus.FAILED, code="provider_failed", event=event, now=now)
    elif event_type == EventType.OPENED:
        dispatch_engagement_record(
            dispatch=dispatch,
            name=MESSAGE_OPENED,
            dedupe_key=key,
            properties={"user_agent": (event.user_agent or "")[:500]},
            timestamp=when,
        )
    elif event_type == EventType.CLICKED:
        dispatch_engagement_record(
            dispatch=dispatch,
            name=MESSAGE_CLICKED,
            dedupe_key=key,
            properties={"url": (event.click_url or "")[:2048], "user_agent": (event.user_agent or "")[:500]},
            timestamp=when,
        )
    elif event_type in {EventType.COMPLAINED, EventType.UNSUBSCRIBED}:
        # A complaint means "stop": Braze, Gmail and Yahoo all expect no more marketing email.
        dispatch_engagement_record(
            dispatch=dispatch,
            name=MESSAGE_COMPLAINED if event_type == EventType.COMPLAINED else UNSUBSCRIBED,
            dedupe_key=key,
            timestamp=when,
        )
        profile_unsubscribe(profile_id=dispatch.profile_id, channel="email", record=False)


def _mark_failed(dispatch: Dispatch, status: str, *, code: str, event: AnymailTrackingEvent, now: Any) -> None:
    # From any state short of a final failure: a bounce may follow a "delivered" (an async bounce).
    Dispatch.objects.filter(pk=dispatch.pk).exclude(
        status__in=[DispatchStatus.BOUNCED, DispatchStatus.FAILED, DispatchStatus.ABORTED]
    ).update(
        status=status,
        error_code=str(code)[:64],
        error_message=_reason_text(event) or f"the provider reported {event.event_type}",
        permanent_failure=True,
        updated_at=now,
    )


def _unsubscribe_if_still_theirs(dispatch: Dispatch, recipient: str | None) -> None:
    """A hard bounce is about an address: it unsubscribes the person only while that address is
    still theirs (they may have changed it since the message went out)."""
    address = (recipient or dispatch.address or "").strip().lower()
    current = Profile.objects.filter(pk=dispatch.profile_id).values_list("email", flat=True).first()
    if current is not None and address and current.strip().lower() == address:
        profile_unsubscribe(profile_id=dispatch.profile_id, channel="email", record=False)
