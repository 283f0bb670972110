"""Channels: the providers a workspace sends through, every message handed to one, and the
inbox of in-app messages and content cards that apps pull.

A channel never knows what a campaign is. It takes a rendered message and an address, hands it
to a provider, and records what happened on a ``Dispatch``; the caller's opaque ``source`` and
``metadata`` travel with it (into provider metadata and engagement events) so the caller can
tie the outcome back to its own records.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from profiles.models import Device, Profile, Workspace


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    PUSH = "push", "Mobile push"
    WEBPUSH = "webpush", "Web push"
    SMS = "sms", "SMS"
    WEBHOOK = "webhook", "Webhook"
    IN_APP = "in_app", "In-app message"
    CONTENT_CARD = "content_card", "Content card"


class ProviderKind(models.TextChoices):
    SMTP = "smtp", "SMTP"
    ANYMAIL = "anymail", "Email service (django-anymail)"
    FCM = "fcm", "Firebase Cloud Messaging (HTTP v1)"
    APNS = "apns", "Apple Push Notification service (HTTP/2, token auth)"
    WEBPUSH = "webpush", "Web Push (VAPID)"
    TWILIO = "twilio", "Twilio SMS"
    WEBHOOK = "webhook", "Webhook signing (outbound webhooks)"


class ProviderConfig(models.Model):
    """A workspace's credentials for one provider. ``settings`` holds what may be shown (hosts,
    project ids, sender addresses); ``secrets`` holds keys and tokens, encrypted at rest and never
    shown back in full (see channels.secrets)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="provider_configs")
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One live provider per kind and workspace: a send never has to choose.
            models.UniqueConstraint(
                fields=["workspace", "kind"], condition=Q(is_active=True), name="provider_one_active_per_kind"
            ),
        ]
        ordering = ["workspace", "kind", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class DispatchStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"  # claimed; the provider is being called
    SENT = "sent", "Sent"  # the provider accepted it
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"
    ABORTED = "aborted", "Aborted"  # the template cancelled it for this person


class Dispatch(models.Model):
    """One rendered message for one address, and what the provider said about it.

    Created ``pending``; a sender claims it with a conditional update to ``sending`` before calling
    the provider, so two workers can never both send it. ``idempotency_key`` (from the caller) is
    unique: asking twice for the same message creates one dispatch.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="dispatches")
    # Indexed only where set (dispatch_device_idx): most dispatches (email, SMS, webhooks) have no device.
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    provider = models.CharField(max_length=16, blank=True, default="", choices=ProviderKind.choices)
    address = models.TextField(help_text="Email address, push token, phone number or URL.")
    content = models.JSONField(help_text="The rendered message, as the channel's content type describes it.")
    idempotency_key = models.CharField(max_length=255)
    source = models.CharField(max_length=255, blank=True, default="", help_text="The caller's opaque reference.")
    transactional = models.BooleanField(
        default=False,
        help_text="Transactional (a receipt, a password reset): sent whatever the email/push subscription "
        "state, and email goes without List-Unsubscribe headers when it has no unsubscribe link.",
    )
    metadata = models.JSONField(
        default=dict, blank=True, help_text="Flat str->str pairs copied into provider metadata and engagement."
    )
    status = models.CharField(max_length=16, choices=DispatchStatus.choices, default=DispatchStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    provider_message_id = models.CharField(max_length=255, blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    permanent_failure = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "idempotency_key"], name="dispatch_unique_key"),
        ]
        indexes = [
            # The admin's list: one workspace's dispatches, newest first.
            models.Index(fields=["workspace", "-created_at"], name="dispatch_workspace_time_idx"),
            # Provider webhooks that carry only the provider's id (no metadata) find their dispatch.
            models.Index(
                fields=["provider", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="dispatch_provider_msg_idx",
            ),
            # A deleted device's dispatches (SET_NULL); partial: every row version of an email,
            # SMS or webhook dispatch would otherwise add a NULL entry.
            models.Index(fields=["device"], condition=Q(device__isnull=False), name="dispatch_device_idx"),
            # The outbox sweep: dispatches stuck pending or sending.
            models.Index(
                fields=["status", "created_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="dispatch_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.address[:40]} ({self.status})"


class InboxKind(models.TextChoices):
    IN_APP = "in_app", "In-app message"
    CONTENT_CARD = "content_card", "Content card"


class InboxItem(models.Model):
    """An in-app message or content card waiting in a person's inbox for the app to pull.

    ``content`` is already rendered for the person (layout, header/title, body, image, buttons or
    link, key-values). In-app messages carry a display ``trigger`` (session start or an event name)
    and a ``priority``; cards may be ``pinned``. Both expire.
    """

    class Status(models.TextChoices):
        LIVE = "live", "Live"
        DISMISSED = "dismissed", "Dismissed"
        EXPIRED = "expired", "Expired"
        REMOVED = "removed", "Removed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="inbox_items")
    dispatch = models.OneToOneField(Dispatch, on_delete=models.CASCADE, related_name="inbox_item")
    kind = models.CharField(max_length=16, choices=InboxKind.choices)
    content = models.JSONField()
    trigger = models.CharField(
        max_length=255, blank=True, default="", help_text="In-app: '$session_start' or an event name."
    )
    priority = models.SmallIntegerField(default=0, help_text="Higher shows first when several match.")
    pinned = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    first_viewed_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The client fetch: a person's live items.
            models.Index(fields=["profile", "kind"], condition=Q(status="live"), name="inbox_live_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for #{self.profile_id} ({self.status})"


class ProviderEvent(models.Model):
    """What a provider reported (a webhook, an SMS status callback), kept once per provider event
    id: providers repeat webhooks, and each report must change things once."""

    workspace = models.ForeignKey(Workspace, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    dispatch = models.ForeignKey(Dispatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    provider = models.CharField(max_length=32)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="provider_event_unique")]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_type} {self.event_id}"
