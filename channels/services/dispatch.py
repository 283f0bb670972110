"""Handing rendered messages to providers: prepare (create-once rows), send (claim, call, record),
sweep (the outbox), and a test send for the admin.

The reliability rules (shared/reference/ecosystem-contracts.md §5.2):

1. ``dispatch_prepare`` creates one ``Dispatch`` per address, keyed by the caller's idempotency
   key plus a hash of the address, with ``INSERT … ON CONFLICT DO NOTHING``: asking twice for the
   same message creates nothing new.
2. The caller enqueues ``dispatch_send_task`` after its transaction commits (``dispatch_enqueue``).
3. ``dispatch_send`` claims the row (``pending → sending``, a conditional update: one winner)
   and commits that *before* calling the provider, outside any transaction, then records the
   outcome. A duplicate task finds the row claimed and does nothing.
4. ``dispatch_sweep`` (beat) re-enqueues ``pending`` rows whose enqueue was lost and gives up on
   rows stuck in ``sending`` (the worker died mid-call: the provider may or may not have sent it,
   so it is not retried — at most once).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from profiles.engagement import (
    MESSAGE_BOUNCED,
    MESSAGE_RECEIVED,
    PROP_CAMPAIGN_ID,
    PROP_CHANNEL,
    PROP_SEND_ID,
    PROP_VARIANT,
)
from profiles.models import CHANNELS_WITH_SUBSCRIPTION, Profile, SubscriptionState
from profiles.services.engagement import Engagement, engagement_record
from profiles.services.subscriptions import device_disable_push, profile_set_subscription

from ..models import Channel, Dispatch, DispatchStatus, ProviderConfig, ProviderKind
from ..transports import get_transport
from ..transports.base import PermanentError, ProfileEffect, SendResult, TransientError
from .addresses import Address, Unreachable, resolve_addresses

logger = logging.getLogger(__name__)

# The subscription a channel's opt-out lives in (web push shares push's).
SUBSCRIPTION_OF_CHANNEL: dict[str, str] = {
    Channel.EMAIL: "email",
    Channel.PUSH: "push",
    Channel.WEBPUSH: "push",
    Channel.SMS: "sms",
}
ADDRESS_HASH_LENGTH = 12
MAX_KEY_LENGTH = 255 - ADDRESS_HASH_LENGTH - 1
OUTCOME_UNKNOWN_MESSAGE = "outcome unknown (worker lost during send); not retried to avoid a double send"


def max_attempts() -> int:
    return int(getattr(settings, "CHANNELS_DISPATCH_MAX_ATTEMPTS", 6))


def address_hash(address: str) -> str:
    """A short stable hash of an address: part of each dispatch's idempotency key."""
    return hashlib.sha256(address.encode()).hexdigest()[:ADDRESS_HASH_LENGTH]


def _clean_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if isinstance(value, dict | list | tuple | set) or value is None:
            raise ValueError(f"metadata must be flat string pairs; {key!r} is {type(value).__name__}")
        out[str(key)] = str(value)
    if "dispatch_id" in out:
        raise ValueError("metadata key 'dispatch_id' is reserved: every message carries its own")
    return out


def dispatch_prepare(
    *,
    workspace_id: int,
    profile: Profile,
    channel: str,
    content: dict[str, Any],
    idempotency_key: str,
    source: str = "",
    metadata: dict[str, str] | None = None,
    transactional: bool = False,
) -> list[Dispatch] | Unreachable:
    """The dispatches that send ``content`` to ``profile`` on ``channel``, one per address, or why
    the person cannot be reached.

    Idempotent: the same ``idempotency_key`` returns the rows created the first time (with their
    current status) and creates only those for addresses that were not there before (a new device).
    The rows are ``pending``; enqueue them with ``dispatch_enqueue`` once the caller's transaction
    commits. ``metadata`` (flat strings: campaign_id, variant, send_id…) travels into provider
    metadata and engagement events.
    """
    if profile.workspace_id != workspace_id:
        raise ValueError("the profile belongs to another workspace")
    if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
        raise ValueError(f"idempotency_key must be 1 to {MAX_KEY_LENGTH} characters")
    clean_metadata = _clean_metadata(metadata)
    resolved = resolve_addresses(profile=profile, channel=channel, content=content, transactional=transactional)
    if isinstance(resolved, Unreachable):
        return resolved
    return _create(
        workspace_id=workspace_id,
        profile=profile,
        channel=channel,
        content=content,
        idempotency_key=idempotency_key,
        source=source,
        metadata=clean_metadata,
        transactional=transactional,
        addresses=resolved,
    )


def _create(
    *,
    workspace_id: int,
    profile: Profile,
    channel: str,
    content: dict[str, Any],
    idempotency_key: str,
    source: str,
    metadata: dict[str, str],
    transactional: bool,
    addresses: list[Address],
) -> list[Dispatch]:
    rows = [
        Dispatch(
            workspace_id=workspace_id,
            profile=profile,
            device_id=address.device_id,
            channel=channel,
            provider=address.provider,
            address=address.address,
            content=content,
            idempotency_key=f"{idempotency_key}:{address_hash(address.address)}",
            source=source[:255],
            metadata=metadata,
            transactional=transactional,
        )
        for address in addresses
    ]
    # ON CONFLICT (workspace, idempotency_key) DO NOTHING: a repeat creates nothing; the rows are
    # then read back (bulk_create cannot return the ids of rows it skipped).
    Dispatch.objects.bulk_create(rows, ignore_conflicts=True)
    return list(
        Dispatch.objects.filter(
            workspace_id=workspace_id, idempotency_key__in=[row.idempotency_key for row in rows]
        ).order_by("created_at", "id")
    )


def dispatch_enqueue(*, dispatch_ids: Iterable[uuid.UUID | str]) -> None:
    """Enqueue ``dispatch_send_task`` for each id once the current transaction commits (at once
    outside one). A lost enqueue is caught by the sweep."""
    from ..tasks import dispatch_send_task  # tasks import this module

    ids = [str(dispatch_id) for dispatch_id in dispatch_ids]
    if ids:
        transaction.on_commit(lambda: [dispatch_send_task.delay(dispatch_id) for dispatch_id in ids])


def active_config(*, workspace_id: int, provider: str) -> ProviderConfig | None:
    if not provider:
        return None
    return ProviderConfig.objects.filter(workspace_id=workspace_id, kind=provider, is_active=True).first()


def dispatch_send(*, dispatch_id: uuid.UUID | str, config_override: ProviderConfig | None = None) -> Dispatch:
    """Send one pending dispatch through its provider and record what happened.

    Returns the dispatch as it stands afterwards. A dispatch that is not ``pending`` (another
    worker has it, or it is done) is returned unchanged: nothing is sent. Raises
    ``TransientError`` after putting the dispatch back to ``pending`` so a retry can claim it
    (unless it has used its attempts: then it is recorded as failed and returned). A permanent
    failure is recorded (and its profile effect applied), not raised.

    Must not run inside a transaction: the claim has to be committed before the provider is
    called, and no transaction may stay open across the network call.

    ``config_override`` sends through that provider config instead of the workspace's active one
    (the admin's "send test message" tries a config before activating it).
    """
    now = timezone.now()
    claimed = Dispatch.objects.filter(pk=dispatch_id, status=DispatchStatus.PENDING).update(
        status=DispatchStatus.SENDING, attempts=F("attempts") + 1, claimed_at=now, updated_at=now
    )
    dispatch = Dispatch.objects.get(pk=dispatch_id)
    if claimed != 1:
        return dispatch

    config = config_override or active_config(workspace_id=dispatch.workspace_id, provider=dispatch.provider)
    try:
        transport = get_transport(dispatch.channel, dispatch.provider)
        result = transport.send(dispatch, config)
    except PermanentError as error:
        _record_permanent(dispatch, error)
    except TransientError as error:
        if dispatch.attempts >= max_attempts():
            _record_gave_up(dispatch, error)
        else:
            Dispatch.objects.filter(pk=dispatch.pk, status=DispatchStatus.SENDING).update(
                status=DispatchStatus.PENDING,
                error_code=error.code[:64],
                error_message=error.message,
                updated_at=timezone.now(),
            )
            raise
    except Exception as error:
        # A bug or a time limit mid-call: the provider may have sent it. Recorded, not retried.
        Dispatch.objects.filter(pk=dispatch.pk, status=DispatchStatus.SENDING).update(
            status=DispatchStatus.FAILED,
            error_code="internal_error",
            error_message=f"{type(error).__name__}: {error}; not retried to avoid a double send",
            updated_at=timezone.now(),
        )
        raise
    else:
        _record_sent(dispatch, result)
    dispatch.refresh_from_db()
    return dispatch


def engagement_properties(dispatch: Dispatch, **extra: Any) -> dict[str, Any]:
    """The properties of an engagement event about ``dispatch``: the caller's campaign/variant/send
    ids (from its metadata), the channel and the dispatch id."""
    metadata = dispatch.metadata or {}
    properties: dict[str, Any] = {PROP_CHANNEL: dispatch.channel, "dispatch_id": str(dispatch.pk)}
    campaign_id = metadata.get(PROP_CAMPAIGN_ID)
    if campaign_id not in (None, ""):
        properties[PROP_CAMPAIGN_ID] = int(campaign_id) if str(campaign_id).isdigit() else campaign_id
    for key in (PROP_VARIANT, PROP_SEND_ID):
        if metadata.get(key):
            properties[key] = metadata[key]
    properties.update(extra)
    return properties


def _record_sent(dispatch: Dispatch, result: SendResult) -> None:
    sent_at = timezone.now()
    message_id = (result.provider_message_id or "")[:255]
    updated = Dispatch.objects.filter(pk=dispatch.pk, status=DispatchStatus.SENDING).update(
        status=DispatchStatus.SENT,
        provider_message_id=message_id,
        sent_at=sent_at,
        error_code="",
        error_message="",
        updated_at=sent_at,
    )
    if updated != 1:
        # A status callback (delivered, failed) overtook us: keep its status, add what we know.
        Dispatch.objects.filter(pk=dispatch.pk, sent_at__isnull=True).update(
            provider_message_id=message_id, sent_at=sent_at, updated_at=sent_at
        )
    engagement_record(
        workspace_id=dispatch.workspace_id,
        engagements=[
            Engagement(
                profile_id=dispatch.profile_id,
                name=MESSAGE_RECEIVED,
                dedupe_key=str(dispatch.pk),
                properties=engagement_properties(dispatch),
                timestamp=sent_at,
            )
        ],
    )


def _record_permanent(dispatch: Dispatch, error: PermanentError) -> None:
    now = timezone.now()
    Dispatch.objects.filter(pk=dispatch.pk, status=DispatchStatus.SENDING).update(
        status=DispatchStatus.FAILED,
        error_code=error.code[:64],
        error_message=error.message,
        permanent_failure=True,
        updated_at=now,
    )
    apply_profile_effect(dispatch, error)
    if error.address_failed:
        engagement_record(
            workspace_id=dispatch.workspace_id,
            engagements=[
                Engagement(
                    profile_id=dispatch.profile_id,
                    name=MESSAGE_BOUNCED,
                    dedupe_key=str(dispatch.pk),
                    properties=engagement_properties(dispatch, reason=error.code),
                    timestamp=now,
                )
            ],
        )


def apply_profile_effect(dispatch: Dispatch, error: PermanentError) -> None:
    """Fix the profile after a permanent failure: a dead push token disables its device, an SMS
    opt-out or invalid number unsubscribes SMS. Email hard bounces are left to the provider's
    bounce webhook (channels tracking), which knows hard from soft."""
    if error.effect == ProfileEffect.DISABLE_DEVICE and dispatch.device_id is not None:
        device_disable_push(device_id=dispatch.device_id, reason=f"{dispatch.provider} {error.code}: {error.message}")
    elif error.effect == ProfileEffect.UNSUBSCRIBE:
        channel = SUBSCRIPTION_OF_CHANNEL.get(dispatch.channel)
        if channel in CHANNELS_WITH_SUBSCRIPTION:
            profile_set_subscription(
                profile_id=dispatch.profile_id, channel=channel, state=SubscriptionState.UNSUBSCRIBED
            )


def _record_gave_up(dispatch: Dispatch, error: TransientError) -> None:
    Dispatch.objects.filter(pk=dispatch.pk, status=DispatchStatus.SENDING).update(
        status=DispatchStatus.FAILED,
        error_code=error.code[:64],
        error_message=f"gave up after {dispatch.attempts} attempts: {error.message}",
        updated_at=timezone.now(),
    )


# --- the outbox sweep ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    requeue: list[str]  # ids of pending dispatches to enqueue again
    abandoned: int  # dispatches stuck in ``sending`` now recorded as failed


def dispatch_sweep(*, now: datetime | None = None, limit: int | None = None) -> SweepResult:
    """Find ``pending`` dispatches nobody is working on (their enqueue was lost, or a retry was)
    and give up on ``sending`` ones older than the claim timeout.

    Pending rows qualify once both created and last touched more than
    ``CHANNELS_SWEEP_PENDING_AFTER`` seconds ago, so a row waiting for its retry backoff is
    normally left to its retry. Enqueueing one twice is harmless: only one task can claim it.
    """
    now = now or timezone.now()
    pending_after = timedelta(seconds=int(getattr(settings, "CHANNELS_SWEEP_PENDING_AFTER", 300)))
    claim_timeout = timedelta(seconds=int(getattr(settings, "CHANNELS_CLAIM_TIMEOUT", 900)))
    limit = limit or int(getattr(settings, "CHANNELS_SWEEP_BATCH", 1000))
    cutoff = now - pending_after
    # Served by the partial (status, created_at) index over open dispatches.
    requeue = [
        str(pk)
        for pk in Dispatch.objects.filter(status=DispatchStatus.PENDING, created_at__lt=cutoff, updated_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    ]
    abandoned = Dispatch.objects.filter(status=DispatchStatus.SENDING, claimed_at__lt=now - claim_timeout).update(
        status=DispatchStatus.FAILED,
        error_code="outcome_unknown",
        error_message=OUTCOME_UNKNOWN_MESSAGE,
        updated_at=now,
    )
    if abandoned:
        logger.warning("gave up on %d dispatches stuck sending (worker lost mid-send)", abandoned)
    return SweepResult(requeue=requeue, abandoned=abandoned)


# --- the admin's test send ----------------------------------------------------------------------

CHANNELS_OF_KIND: dict[str, tuple[str, ...]] = {
    ProviderKind.SMTP: (Channel.EMAIL,),
    ProviderKind.ANYMAIL: (Channel.EMAIL,),
    ProviderKind.FCM: (Channel.PUSH,),
    ProviderKind.APNS: (Channel.PUSH,),
    ProviderKind.WEBPUSH: (Channel.WEBPUSH,),
    ProviderKind.TWILIO: (Channel.SMS,),
    ProviderKind.WEBHOOK: (Channel.WEBHOOK,),
}


@dataclass(frozen=True)
class TestSendOutcome:
    """What a test send did: the dispatches (each with its status, provider id or error) or why the
    person could not be reached."""

    dispatches: list[Dispatch]
    unreachable: Unreachable | None = None


def dispatch_send_test(
    *,
    config: ProviderConfig,
    profile: Profile,
    channel: str,
    content: dict[str, Any],
    transactional: bool = False,
) -> TestSendOutcome:
    """Send ``content`` to ``profile`` through ``config`` now, for the admin to see the provider's
    answer. The message is a real dispatch (source ``admin-test``), so it shows on the profile like
    any other. Nothing is retried: a temporary failure is recorded as failed and shown."""
    if profile.workspace_id != config.workspace_id:
        raise ValueError("the profile belongs to another workspace")
    if channel not in CHANNELS_OF_KIND.get(config.kind, ()):
        raise ValueError(f"a {config.get_kind_display()} provider does not send {channel}")
    resolved = resolve_addresses(profile=profile, channel=channel, content=content, transactional=transactional)
    if isinstance(resolved, Unreachable):
        return TestSendOutcome(dispatches=[], unreachable=resolved)
    if channel == Channel.EMAIL:
        resolved = [Address(a.address, a.device_id, config.kind) for a in resolved]
    addresses = [a for a in resolved if a.provider == config.kind]
    if not addresses:
        return TestSendOutcome(
            dispatches=[], unreachable=Unreachable(f"no {config.get_kind_display()} device for this person")
        )
    dispatches = _create(
        workspace_id=config.workspace_id,
        profile=profile,
        channel=channel,
        content=content,
        idempotency_key=f"admin-test:{uuid.uuid4()}",
        source="admin-test",
        metadata={},
        transactional=transactional,
        addresses=addresses,
    )
    out: list[Dispatch] = []
    for dispatch in dispatches:
        try:
            out.append(dispatch_send(dispatch_id=dispatch.pk, config_override=config))
        except TransientError as error:
            # A test answers now: a temporary failure is shown, not retried later through
            # whichever config is active by then.
            Dispatch.objects.filter(pk=dispatch.pk, status=DispatchStatus.PENDING).update(
                status=DispatchStatus.FAILED,
                error_code=error.code[:64],
                error_message=f"temporary error (a real send would be retried): {error.message}",
                updated_at=timezone.now(),
            )
            dispatch.refresh_from_db()
            out.append(dispatch)
    return TestSendOutcome(dispatches=out)
