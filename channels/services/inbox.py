"""The inbox apps pull: in-app messages and content cards waiting for a person, and what the app
reports back about them (impressions, clicks, button clicks, dismissals).

An item is created once per dispatch by the inbox transport; the app fetches the live ones
(``inbox_fetch``) and reports engagement (``inbox_event_record``), which becomes engagement events
on the profile, each recorded once per item and kind of engagement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from profiles.engagement import MESSAGE_CLICKED, MESSAGE_DISMISSED, MESSAGE_OPENED
from profiles.services.locks import identity_lock_key

from ..content import SESSION_START_TRIGGER, inbox_expires_at, inbox_priority
from ..models import Channel, Dispatch, InboxItem, InboxKind
from .engagement import dispatch_engagement_record

# Braze's limit: at most this many live cards per person; a new card expires the oldest unpinned.
MAX_LIVE_CARDS = 250


class InboxEventType:
    IMPRESSION = "impression"
    CLICK = "click"
    BUTTON_CLICK = "button_click"
    DISMISS = "dismiss"
    ALL = (IMPRESSION, CLICK, BUTTON_CLICK, DISMISS)


def _live(now: datetime) -> Q:
    return Q(status=InboxItem.Status.LIVE) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def inbox_item_create(*, dispatch: Dispatch) -> InboxItem:
    """The inbox item for this in-app or card dispatch, created once (a retried send finds the one
    it made before). Creating a card past ``MAX_LIVE_CARDS`` expires the person's oldest unpinned
    live cards, so the app never holds more than the limit."""
    if dispatch.channel not in {Channel.IN_APP, Channel.CONTENT_CARD}:
        raise ValueError(f"the inbox takes in-app messages and content cards, not {dispatch.channel!r}")
    existing = InboxItem.objects.filter(dispatch=dispatch).first()
    if existing is not None:
        return existing
    content: dict[str, Any] = dict(dispatch.content or {})
    now = timezone.now()
    is_card = dispatch.channel == Channel.CONTENT_CARD
    item = InboxItem(
        workspace_id=dispatch.workspace_id,
        profile_id=dispatch.profile_id,
        dispatch=dispatch,
        kind=InboxKind.CONTENT_CARD if is_card else InboxKind.IN_APP,
        content=content,
        trigger="" if is_card else str(content.get("trigger") or SESSION_START_TRIGGER)[:255],
        priority=0 if is_card else inbox_priority(content.get("priority")),
        pinned=bool(content.get("pinned")) if is_card else False,
        expires_at=inbox_expires_at(content, now=now),
    )
    try:
        with transaction.atomic():
            if is_card:
                # Two cards for one person created at once must not both see room for one more.
                _lock_profile_inbox(dispatch.workspace_id, dispatch.profile_id)
            item.save()
            if is_card:
                _expire_cards_over_limit(profile_id=dispatch.profile_id, now=now)
    except IntegrityError:
        # The same dispatch sent twice at once: the other call created it.
        return InboxItem.objects.get(dispatch=dispatch)
    return item


def _lock_profile_inbox(workspace_id: int, profile_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [identity_lock_key(workspace_id, "inbox", str(profile_id))])


def _expire_cards_over_limit(*, profile_id: int, now: datetime) -> int:
    """Expire the oldest unpinned live cards beyond ``MAX_LIVE_CARDS``; return how many."""
    live = InboxItem.objects.filter(_live(now), profile_id=profile_id, kind=InboxKind.CONTENT_CARD)
    excess = live.count() - MAX_LIVE_CARDS
    if excess <= 0:
        return 0
    oldest = live.filter(pinned=False).order_by("created_at", "id").values_list("id", flat=True)[:excess]
    return InboxItem.objects.filter(id__in=list(oldest)).update(status=InboxItem.Status.EXPIRED)


# --- what the app fetches -----------------------------------------------------------------------


def inbox_fetch(*, profile_id: int, now: datetime | None = None) -> tuple[list[InboxItem], list[InboxItem]]:
    """The person's live in-app messages (not yet shown; highest priority, then newest first) and
    content cards (pinned first, then newest). Expired items are never returned."""
    now = now or timezone.now()
    live = InboxItem.objects.filter(_live(now), profile_id=profile_id)
    # An in-app message is displayed once: after its impression it stays only as a record.
    in_app = list(
        live.filter(kind=InboxKind.IN_APP, first_viewed_at__isnull=True).order_by("-priority", "-created_at", "-id")
    )
    cards = list(live.filter(kind=InboxKind.CONTENT_CARD).order_by("-pinned", "-created_at", "-id"))
    return in_app, cards


# --- what the app reports -----------------------------------------------------------------------


@dataclass(frozen=True)
class InboxEventOutcome:
    item: InboxItem
    recorded: bool  # False when this engagement was already recorded for the item


def inbox_event_record(
    *,
    profile_id: int,
    item_id: int,
    event_type: str,
    button_index: int | None = None,
    url: str = "",
    at: datetime | None = None,
) -> InboxEventOutcome:
    """Record what the app reports about one of the person's inbox items.

    impression -> ``$message_opened`` (once per item); click -> ``$message_clicked`` (once per
    item); button_click -> ``$message_clicked`` with the button (once per item and button);
    dismiss -> the card leaves the inbox (a pinned card cannot be dismissed). Raises
    ``ValidationError`` naming the field for a report that breaks a rule, and
    ``InboxItem.DoesNotExist`` when the item is not this person's.
    """
    if event_type not in InboxEventType.ALL:
        raise ValidationError({"type": [f"must be one of {', '.join(InboxEventType.ALL)}"]})
    item = InboxItem.objects.select_related("dispatch").get(pk=item_id, profile_id=profile_id)
    now = at or timezone.now()
    dispatch = item.dispatch
    if event_type == InboxEventType.DISMISS:
        if item.pinned:
            raise ValidationError({"item_id": ["a pinned card cannot be dismissed"]})
        changed = InboxItem.objects.filter(pk=item.pk, status=InboxItem.Status.LIVE).update(
            status=InboxItem.Status.DISMISSED, dismissed_at=now
        )
        if changed:
            dispatch_engagement_record(
                dispatch=dispatch, name=MESSAGE_DISMISSED, dedupe_key=f"inbox:{item.pk}:dismiss", timestamp=now
            )
        item.refresh_from_db()
        return InboxEventOutcome(item=item, recorded=changed == 1)
    if event_type == InboxEventType.IMPRESSION:
        InboxItem.objects.filter(pk=item.pk, first_viewed_at__isnull=True).update(first_viewed_at=now)
        recorded = dispatch_engagement_record(
            dispatch=dispatch, name=MESSAGE_OPENED, dedupe_key=f"inbox:{item.pk}:impression", timestamp=now
        )
        item.refresh_from_db()
        return InboxEventOutcome(item=item, recorded=recorded)
    properties: dict[str, Any] = {"url": url[:2048]}
    dedupe_key = f"inbox:{item.pk}:click"
    if event_type == InboxEventType.BUTTON_CLICK:
        buttons = item.content.get("buttons") if isinstance(item.content, dict) else None
        count = len(buttons) if isinstance(buttons, list) else 0
        if button_index is None or not 0 <= button_index < count:
            rule = f"must be the index of one of the message's {count} buttons" if count else "the item has no buttons"
            raise ValidationError({"button_index": [rule]})
        button = buttons[button_index] if isinstance(buttons, list) else {}
        properties.update({"button_index": button_index, "button_action": button.get("action", "")})
        if not url and button.get("url"):
            properties["url"] = button["url"]
        dedupe_key = f"inbox:{item.pk}:button:{button_index}"
    elif not url:
        properties["url"] = item.content.get("url", "") if isinstance(item.content, dict) else ""
    InboxItem.objects.filter(pk=item.pk, clicked_at__isnull=True).update(clicked_at=now)
    recorded = dispatch_engagement_record(
        dispatch=dispatch, name=MESSAGE_CLICKED, dedupe_key=dedupe_key, properties=properties, timestamp=now
    )
    item.refresh_from_db()
    return InboxEventOutcome(item=item, recorded=recorded)


def push_opened_record(*, profile_id: int, dispatch_id: str, at: datetime | None = None) -> bool:
    """The app reports that the person opened a push notification: ``$message_opened`` once per
    dispatch. Raises ``Dispatch.DoesNotExist`` unless it is a push sent to this person."""
    dispatch = Dispatch.objects.get(pk=dispatch_id, profile_id=profile_id, channel__in=[Channel.PUSH, Channel.WEBPUSH])
    return dispatch_engagement_record(
        dispatch=dispatch, name=MESSAGE_OPENED, dedupe_key=f"push:{dispatch.pk}:opened", timestamp=at
    )


def inbox_items_remove(*, item_ids: list[int]) -> int:
    """Take items out of their people's inboxes (a marketer stopping a card); return how many were
    live. Apps stop showing them on their next fetch."""
    return InboxItem.objects.filter(pk__in=item_ids, status=InboxItem.Status.LIVE).update(
        status=InboxItem.Status.REMOVED
    )


def channels_profile_merged(*, workspace_id: int, source_id: int, target_id: int) -> None:
    """A merged person's dispatches and inbox move to the surviving profile (called inside the
    merge transaction, before the merged profile is deleted, which would otherwise cascade to
    them): their send history, pending sends and cards stay with the person. Two set-based updates;
    then the surviving inbox is brought back under the card limit. Repeating it finds nothing."""
    Dispatch.objects.filter(profile_id=source_id).update(profile_id=target_id)
    moved = InboxItem.objects.filter(profile_id=source_id).update(profile_id=target_id)
    if moved:
        _lock_profile_inbox(workspace_id, target_id)
        _expire_cards_over_limit(profile_id=target_id, now=timezone.now())
