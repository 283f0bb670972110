"""What Twilio tells us after a send: status callbacks (delivered, failed) and inbound messages
(STOP, START). The views in ``channels.api.twilio`` authenticate the request and call these.

Each report changes things once: it is stored as a ``ProviderEvent`` keyed by message sid and
status (Twilio repeats callbacks), and status moves only forward (``sent → delivered``; a late
``sent`` never undoes ``delivered``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from profiles.engagement import MESSAGE_BOUNCED, MESSAGE_DELIVERED
from profiles.models import Profile, SubscriptionState
from profiles.services.engagement import Engagement, engagement_record
from profiles.services.subscriptions import profile_set_subscription

from ..models import Channel, Dispatch, DispatchStatus, ProviderConfig, ProviderEvent, ProviderKind
from .dispatch import engagement_properties

PROVIDER = "twilio"
# Twilio's own opt-out and opt-in keywords (single-word messages, any case).
STOP_KEYWORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
START_KEYWORDS = {"START", "YES", "UNSTOP"}
# Delivery failures that mean the number will never take our messages.
UNSUBSCRIBING_ERROR_CODES = {
    "21610": "the person replied STOP to this sender",
    "30005": "unknown destination handset (the number does not exist)",
    "30006": "landline or unreachable carrier",
}
FAILED_STATUSES = {"failed", "undelivered"}


def twilio_configs(*, account_sid: str, workspace_ids: Iterable[int] | None = None) -> list[ProviderConfig]:
    """Twilio configs for ``account_sid`` (inactive ones too: a message sent before a config was
    switched off still reports back)."""
    configs = ProviderConfig.objects.filter(kind=ProviderKind.TWILIO, settings__account_sid=account_sid)
    if workspace_ids is not None:
        configs = configs.filter(workspace_id__in=list(workspace_ids))
    return list(configs.order_by("-is_active", "pk"))


def _record_event(
    *, workspace_id: int, dispatch: Dispatch | None, event_id: str, event_type: str, payload: Mapping[str, str]
) -> bool:
    _, created = ProviderEvent.objects.get_or_create(
        provider=PROVIDER,
        event_id=event_id[:255],
        defaults={
            "workspace_id": workspace_id,
            "dispatch": dispatch,
            "event_type": event_type[:32],
            "payload": dict(payload),
        },
    )
    return created


def sms_status_record(*, dispatch: Dispatch, params: Mapping[str, str]) -> bool:
    """Apply one Twilio status callback to ``dispatch``; return whether it was new.

    ``delivered`` marks the dispatch delivered and records MESSAGE_DELIVERED; ``failed`` and
    ``undelivered`` mark it failed with Twilio's error code and record MESSAGE_BOUNCED (and a STOP
    or dead-number code unsubscribes the person from SMS). Other statuses (queued, sent…) are kept
    as events only.
    """
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not status or not sid:
        return False
    if not _record_event(
        workspace_id=dispatch.workspace_id,
        dispatch=dispatch,
        event_id=f"{sid}:{status}",
        event_type=status,
        payload=params,
    ):
        return False
    now = timezone.now()
    if not dispatch.provider_message_id:
        Dispatch.objects.filter(pk=dispatch.pk, provider_message_id="").update(provider_message_id=sid[:255])

    if status == "delivered":
        Dispatch.objects.filter(pk=dispatch.pk, status__in=[DispatchStatus.SENDING, DispatchStatus.SENT]).update(
            status=DispatchStatus.DELIVERED, updated_at=now
        )
        _engagement(dispatch, MESSAGE_DELIVERED)
    elif status in FAILED_STATUSES:
        code = params.get("ErrorCode") or ""
        reason = UNSUBSCRIBING_ERROR_CODES.get(code, params.get("ErrorMessage") or "")
        Dispatch.objects.filter(pk=dispatch.pk, status__in=[DispatchStatus.SENDING, DispatchStatus.SENT]).update(
            status=DispatchStatus.FAILED,
            error_code=(code or status)[:64],
            error_message=f"Twilio reported the message {status}" + (f": {code} {reason}" if code else ""),
            permanent_failure=True,
            updated_at=now,
        )
        if code in UNSUBSCRIBING_ERROR_CODES:
            profile_set_subscription(
                profile_id=dispatch.profile_id, channel="sms", state=SubscriptionState.UNSUBSCRIBED
            )
        _engagement(dispatch, MESSAGE_BOUNCED, reason=code or status)
    return True


def _engagement(dispatch: Dispatch, name: str, **extra: str) -> None:
    engagement_record(
        workspace_id=dispatch.workspace_id,
        engagements=[
            Engagement(
                profile_id=dispatch.profile_id,
                name=name,
                dedupe_key=str(dispatch.pk),
                properties=engagement_properties(dispatch, **extra),
            )
        ],
    )


@dataclass(frozen=True)
class InboundResult:
    keyword: str  # "stop", "start" or "" (any other message)
    profiles_changed: int


def sms_inbound_record(*, configs: list[ProviderConfig], params: Mapping[str, str]) -> InboundResult:
    """Mirror an inbound STOP/START to the subscription state of the people with that number.

    ``configs`` are the (authenticated) Twilio configs the message arrived through. Twilio keeps
    opt-outs per sender, so when the message names our number or messaging service, only the
    workspaces sending from it are changed.
    """
    body = (params.get("Body") or "").strip().upper()
    keyword = "stop" if body in STOP_KEYWORDS else "start" if body in START_KEYWORDS else ""
    sender = params.get("From") or ""
    if not configs or not sender:
        return InboundResult(keyword, 0)
    to, service = params.get("To") or "", params.get("MessagingServiceSid") or ""
    matching = [
        c
        for c in configs
        if (to and (c.settings or {}).get("from_number") == to)
        or (service and (c.settings or {}).get("messaging_service_sid") == service)
    ]
    workspace_ids = sorted({c.workspace_id for c in (matching or configs)})
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if sid and not _record_event(
        workspace_id=workspace_ids[0], dispatch=None, event_id=f"inbound:{sid}", event_type="inbound", payload=params
    ):
        return InboundResult(keyword, 0)
    if not keyword:
        return InboundResult(keyword, 0)
    state = SubscriptionState.UNSUBSCRIBED if keyword == "stop" else SubscriptionState.SUBSCRIBED
    # A phone number is shared by few people: one small indexed query, a few conditional updates.
    profile_ids = list(
        Profile.objects.filter(Q(workspace_id__in=workspace_ids), phone=sender).values_list("pk", flat=True)
    )
    changed = sum(profile_set_subscription(profile_id=pk, channel="sms", state=state) for pk in profile_ids)
    return InboundResult(keyword, changed)


def sms_dispatch_for_callback(dispatch_id: str) -> Dispatch | None:
    try:
        pk = uuid.UUID(dispatch_id)
    except (ValueError, TypeError):
        return None
    return Dispatch.objects.filter(pk=pk, channel=Channel.SMS).first()
