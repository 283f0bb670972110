"""Workspaces, their sources and keys, and the person at the centre of everything: the profile.

The profile tables are the hottest in the system (every event touches one), so the models stay
plain: fields, constraints and the indexes named by the queries that rely on them. All writes go
through ``profiles.services``.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Cast, Floor, Random


def new_salt() -> str:
    return secrets.token_hex(16)


class Workspace(models.Model):
    """One brand. Everything else belongs to exactly one workspace."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="workspaces",
        blank=True,
        help_text="Staff users who may see and change this workspace (superusers see every workspace).",
    )
    default_time_zone = models.CharField(
        max_length=64, default="UTC", help_text="Used for people whose own time zone is unknown."
    )
    # Salts the hashes kept of deleted people's identifiers (see Suppression).
    suppression_salt = models.CharField(max_length=64, default=new_salt, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Platform(models.TextChoices):
    IOS = "ios", "iOS"
    ANDROID = "android", "Android"
    WEB = "web", "Web"
    SERVER = "server", "Server"


def new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


class App(models.Model):
    """A source of events: an iOS, Android or web app, or a back-end service. Its write key is a
    public identifier (it ships inside apps and web pages) that only lets a client post events."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="apps")
    name = models.CharField(max_length=200)
    platform = models.CharField(max_length=16, choices=Platform.choices)
    write_key = models.CharField(max_length=64, unique=True, default=new_write_key, editable=False)
    is_active = models.BooleanField(default=True, help_text="An inactive app's write key is refused with 401.")
    rate_limit_per_second = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Intake requests per second for this write key; empty uses the server default.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workspace", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_platform_display()})"


class ApiScope(models.TextChoices):
    PROFILES_READ = "profiles.read", "Read profiles"
    PROFILES_WRITE = "profiles.write", "Create and update profiles"
    PROFILES_DELETE = "profiles.delete", "Delete profiles"
    PROFILES_EXPORT = "profiles.export", "Export a person's data"
    SEGMENTS_READ = "segments.read", "Read segments"
    SEGMENTS_WRITE = "segments.write", "Change segments"
    CAMPAIGNS_TRIGGER = "campaigns.trigger", "Trigger API campaigns"


class ApiKey(models.Model):
    """A secret REST API key for server-side calls. Only a SHA-256 digest of the secret is stored;
    the key itself is shown once, when it is created. ``prefix`` is the public, indexed half."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=32, choices=ApiScope.choices), default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["workspace", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Gender(models.TextChoices):
    MALE = "male", "Male"
    FEMALE = "female", "Female"
    OTHER = "other", "Other"
    NOT_APPLICABLE = "not_applicable", "Not applicable"
    PREFER_NOT_TO_SAY = "prefer_not_to_say", "Prefer not to say"


class SubscriptionState(models.TextChoices):
    # Braze's model: "subscribed" is the default (neither opted in nor out), "opted_in" is explicit
    # consent, "unsubscribed" an explicit opt-out.
    SUBSCRIBED = "subscribed", "Subscribed"
    OPTED_IN = "opted_in", "Opted in"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


CHANNELS_WITH_SUBSCRIPTION = ("email", "push", "sms")


class Profile(models.Model):
    """One person across every channel and device.

    Every event updates its profile row, so the table keeps few indexes and none on columns that
    change with activity (last seen, session count): updates then stay HOT (heap-only, no index
    writes), helped by a fill factor that leaves room in each page (see migration 0002).
    """

    # Covered by the (workspace, external_id) unique index and the (workspace, ...) indexes below.
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="profiles", db_index=False)
    external_id = models.CharField(
        max_length=255, null=True, blank=True, help_text="The app's user id; empty while anonymous."
    )

    first_name = models.CharField(max_length=255, blank=True, default="")
    last_name = models.CharField(max_length=255, blank=True, default="")
    email = models.CharField(max_length=254, blank=True, default="")
    phone = models.CharField(max_length=16, blank=True, default="", help_text="E.164, e.g. +14155550100")
    gender = models.CharField(max_length=20, blank=True, default="", choices=Gender.choices)
    date_of_birth = models.DateField(null=True, blank=True)

    language = models.CharField(max_length=16, blank=True, default="", help_text="ISO 639-1, e.g. en")
    locale = models.CharField(max_length=35, blank=True, default="", help_text="Most recent locale, e.g. en-US")
    country = models.CharField(max_length=2, blank=True, default="", help_text="ISO 3166-1 alpha-2")
    region = models.CharField(max_length=255, blank=True, default="")
    city = models.CharField(max_length=255, blank=True, default="")
    time_zone = models.CharField(max_length=64, blank=True, default="", help_text="IANA, e.g. Europe/Paris")
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    last_ip = models.GenericIPAddressField(null=True, blank=True)

    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    session_count = models.PositiveIntegerField(default=0)
    app_version = models.CharField(max_length=64, blank=True, default="")
    platform = models.CharField(max_length=16, blank=True, default="", choices=Platform.choices)

    # First touch: set once, from the first event that carries UTM parameters.
    utm_source = models.CharField(max_length=255, blank=True, default="")
    utm_medium = models.CharField(max_length=255, blank=True, default="")
    utm_campaign = models.CharField(max_length=255, blank=True, default="")
    utm_content = models.CharField(max_length=255, blank=True, default="")
    utm_term = models.CharField(max_length=255, blank=True, default="")

    email_subscription = models.CharField(
        max_length=16, choices=SubscriptionState.choices, default=SubscriptionState.SUBSCRIBED
    )
    email_subscription_changed_at = models.DateTimeField(null=True, blank=True)
    push_subscription = models.CharField(
        max_length=16, choices=SubscriptionState.choices, default=SubscriptionState.SUBSCRIBED
    )
    push_subscription_changed_at = models.DateTimeField(null=True, blank=True)
    sms_subscription = models.CharField(
        max_length=16, choices=SubscriptionState.choices, default=SubscriptionState.SUBSCRIBED
    )
    sms_subscription_changed_at = models.DateTimeField(null=True, blank=True)

    random_bucket = models.PositiveSmallIntegerField(
        db_default=Cast(Floor(Random() * 10000), output_field=models.PositiveSmallIntegerField()),
        help_text="0-9999, drawn once at creation: stable holdouts and random splits.",
    )
    custom_attributes = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "external_id"],
                condition=Q(external_id__isnull=False),
                name="profile_unique_external_id",
            ),
            models.CheckConstraint(
                condition=Q(random_bucket__gte=0) & Q(random_bucket__lte=9999), name="profile_random_bucket_range"
            ),
        ]
        indexes = [
            # Admin and API search by contact data.
            models.Index(fields=["workspace", "email"], name="profile_email_idx"),
            models.Index(fields=["workspace", "phone"], name="profile_phone_idx"),
            # A workspace's profiles in id order (API cursor pages, admin lists); ids never change,
            # so this costs the intake's updates nothing.
            models.Index(fields=["workspace", "id"], name="profile_workspace_id_idx"),
        ]

    def __str__(self) -> str:
        return self.external_id or f"anonymous #{self.pk}"

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or str(self)


class AnonymousId(models.Model):
    """An anonymous id (a device or browser install) and the profile it belongs to. After a merge,
    the anonymous ids of the merged profile point at the surviving one, so late events still land."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    anonymous_id = models.CharField(max_length=255)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="anonymous_ids")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "anonymous_id"], name="anonymous_id_unique"),
        ]

    def __str__(self) -> str:
        return self.anonymous_id


class PushProvider(models.TextChoices):
    APNS = "apns", "APNs"
    FCM = "fcm", "FCM"
    WEB_PUSH = "webpush", "Web Push"


class Device(models.Model):
    """A device or browser a person uses. ``device_id`` is the SDK's ``context.device.id`` (or the
    push token when no id is sent): unique per workspace, so a device that changes hands moves."""

    # Indexes: the (workspace, device_id) unique one and profile_id. Deleting an app (rare; apps are
    # normally deactivated) scans devices and events to clear their app.
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="devices")
    app = models.ForeignKey(App, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False)
    device_id = models.CharField(max_length=255)
    platform = models.CharField(max_length=16, blank=True, default="", choices=Platform.choices)
    manufacturer = models.CharField(max_length=255, blank=True, default="")
    model = models.CharField(max_length=255, blank=True, default="")
    os_name = models.CharField(max_length=64, blank=True, default="")
    os_version = models.CharField(max_length=64, blank=True, default="")
    app_version = models.CharField(max_length=64, blank=True, default="")
    locale = models.CharField(max_length=35, blank=True, default="")
    push_provider = models.CharField(max_length=16, blank=True, default="", choices=PushProvider.choices)
    # APNs and FCM tokens are strings; a Web Push subscription is JSON ({endpoint, keys}) serialised.
    push_token = models.TextField(blank=True, default="")
    push_enabled = models.BooleanField(default=False)
    push_disabled_reason = models.CharField(max_length=255, blank=True, default="")
    ad_tracking_enabled = models.BooleanField(null=True, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "device_id"], name="device_unique_id")]
        indexes = [
            # "Has a push-enabled device" and the push channel's address lookup.
            models.Index(fields=["profile"], condition=Q(push_enabled=True), name="device_push_enabled_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.model or self.platform or 'device'} {self.device_id[:12]}"


class EventType(models.TextChoices):
    TRACK = "track", "Track"
    IDENTIFY = "identify", "Identify"
    PAGE = "page", "Page"
    SCREEN = "screen", "Screen"
    GROUP = "group", "Group"
    ALIAS = "alias", "Alias"


class Event(models.Model):
    """Everything a person did, as the app reported it (and, later, every engagement with a message).

    ``message_id`` is unique per workspace: an SDK that resends a batch after a timeout stores each
    event once. ``name`` is the event name for track calls, the page/screen name for page/screen
    calls and the call type for the others.
    """

    # The event table takes every write of the intake: each index here costs on every event. The
    # workspace is covered by the message id unique index, the profile by the timeline index.
    # For the same reason the workspace and app are not checked by database foreign keys (each is
    # a lookup per inserted row at commit): the intake writes them from the authenticated app, and
    # deleting a workspace or an app goes through Django, which cascades / nulls as declared. The
    # profile keeps its database constraint: merges and erasure move and delete events by it.
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="events", db_index=False)
    app = models.ForeignKey(
        App, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False, db_constraint=False
    )
    type = models.CharField(max_length=10, choices=EventType.choices)
    name = models.CharField(max_length=255)
    properties = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    message_id = models.CharField(max_length=255)
    timestamp = models.DateTimeField(help_text="When it happened (client time, corrected for clock skew).")
    received_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "message_id"], name="event_unique_message_id")]
        indexes = [
            # The profile timeline, newest first, and per-profile behaviour checks.
            models.Index(fields=["profile", "-timestamp"], name="event_profile_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name}"


class Purchase(models.Model):
    """One product line of a purchase event (Segment's ``Order Completed`` with ``products``, or a
    single-product purchase), so purchases can be queried as such: product, price, quantity."""

    # Covered by the (workspace, product_id) and (profile, -timestamp) indexes.
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="purchases", db_index=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="purchases")
    product_id = models.CharField(max_length=255)
    price = models.DecimalField(max_digits=14, decimal_places=4)
    currency = models.CharField(max_length=3, help_text="ISO 4217")
    quantity = models.PositiveIntegerField(default=1)
    timestamp = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["profile", "-timestamp"], name="purchase_profile_time_idx"),
            models.Index(fields=["workspace", "product_id"], name="purchase_product_idx"),
            # Money spent / purchases in a window read only that window's purchases (segments).
            models.Index(fields=["workspace", "timestamp"], name="purchase_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id} at {self.price} {self.currency}"


class ProfileMerge(models.Model):
    """The record of one merge: which profile was folded into which, why, by whom, and a snapshot
    of the merged profile as it was (the row itself is gone afterwards)."""

    class Reason(models.TextChoices):
        IDENTIFY = "identify", "Identify (userId + anonymousId)"
        ALIAS = "alias", "Alias call"
        API = "api", "REST API"
        ADMIN = "admin", "Admin"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    into_profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_in")
    merged_profile_id = models.BigIntegerField(help_text="The id the merged profile had.")
    merged_snapshot = models.JSONField()
    reason = models.CharField(max_length=16, choices=Reason.choices)
    actor = models.CharField(max_length=255, help_text="Who caused it: a write key's app, an API key or a user.")
    message_id = models.CharField(max_length=255, blank=True, default="")
    moved = models.JSONField(default=dict, help_text="How many events, devices and anonymous ids moved.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # "What became of profile #123?": support looks merges up by the old id.
            models.Index(fields=["workspace", "merged_profile_id"], name="merge_merged_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.merged_profile_id} → #{self.into_profile_id}"


class Suppression(models.Model):
    """A deleted person's identifiers, kept only as salted hashes, so late events or imports carrying
    the same user id, anonymous id, email or phone do not bring the person back."""

    class Kind(models.TextChoices):
        EXTERNAL_ID = "external_id", "External id"
        ANONYMOUS_ID = "anonymous_id", "Anonymous id"
        EMAIL = "email", "Email"
        PHONE = "phone", "Phone"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    identifier_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "kind", "identifier_hash"], name="suppression_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.identifier_hash[:10]}…"


class ProfileImport(models.Model):
    """A bulk CSV import of profiles, processed in the background with progress and a row report."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="imports")
    file = models.FileField(upload_to="imports/")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    imported_rows = models.PositiveIntegerField(default=0)
    error_rows = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{row, field, message}], first 1000.")
    failure = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import #{self.pk} ({self.status})"
