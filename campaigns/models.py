"""Campaigns: what marketers build (audience, variants, channel messages, schedule or trigger,
conversions, delivery controls) and what the pipeline records as it runs (one Delivery per person,
campaign and occurrence).

A campaign is a journey of one step. ``Delivery`` is the unit the pipeline schedules, claims and
sends; it names its step (``step_key``) so that multi-step journeys can reuse the same table and
the same sender unchanged, each step creating the next step's deliveries.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from channels.models import Channel
from profiles.models import Profile, Workspace
from segments.models import Segment


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"
    FINISHED = "finished", "Finished"


class DeliveryType(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    ACTION = "action", "Action-based (triggered)"
    API = "api", "API-triggered"


class ScheduleTiming(models.TextChoices):
    AT_TIME = "at_time", "At a time (UTC or the given time zone)"
    LOCAL_TIME = "local_time", "At a time in each person's time zone"
    BEST_TIME = "best_time", "At each person's best time"


class Recurrence(models.TextChoices):
    ONCE = "once", "Once"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"


class QuietHoursAction(models.TextChoices):
    WAIT = "wait", "Wait for the end of quiet hours"
    DROP = "drop", "Drop the message"


class Campaign(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    delivery_type = models.CharField(max_length=16, choices=DeliveryType.choices, default=DeliveryType.SCHEDULED)

    # Audience: include segments (any or all of them), exclude segments, extra conditions in the
    # segment definition format, and a cap on recipients.
    include_segments = models.ManyToManyField(Segment, related_name="+", blank=True)
    include_mode = models.CharField(max_length=3, choices=[("any", "Any"), ("all", "All")], default="any")
    exclude_segments = models.ManyToManyField(Segment, related_name="+", blank=True)
    extra_conditions = models.JSONField(null=True, blank=True, help_text="A segment definition tree, or empty.")
    max_recipients = models.PositiveIntegerField(null=True, blank=True)

    # Scheduled delivery.
    schedule_timing = models.CharField(max_length=16, choices=ScheduleTiming.choices, default=ScheduleTiming.AT_TIME)
    send_at = models.DateTimeField(null=True, blank=True, help_text="The first send (or the local date/time).")
    recurrence = models.CharField(max_length=16, choices=Recurrence.choices, default=Recurrence.ONCE)
    recurrence_weekdays = ArrayField(models.PositiveSmallIntegerField(), default=list, blank=True)
    recurrence_ends_at = models.DateTimeField(null=True, blank=True)
    default_send_hour = models.PositiveSmallIntegerField(
        default=10, help_text="Best time fallback: local hour for people without enough history."
    )

    # Action-based delivery: triggers, delay, exceptions (see docs/campaigns.md for the JSON shapes).
    triggers = models.JSONField(default=list, blank=True)
    delay = models.JSONField(default=dict, blank=True)
    exception_events = models.JSONField(default=list, blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    reeligible = models.BooleanField(default=False)
    reeligibility_seconds = models.PositiveIntegerField(null=True, blank=True)
    recheck_audience = models.BooleanField(default=True, help_text="Re-check the audience at send time.")

    # Conversions: [{"event": name, "filters": [...]}, or {"purchase": true, ...}], the first primary.
    conversion_events = models.JSONField(default=list, blank=True)
    conversion_window_seconds = models.PositiveIntegerField(default=3 * 86400)

    control_percent = models.PositiveSmallIntegerField(default=0)
    frequency_cap_exempt = models.BooleanField(default=False)
    quiet_hours_start = models.TimeField(null=True, blank=True, help_text="Overrides the workspace default.")
    quiet_hours_end = models.TimeField(null=True, blank=True)
    quiet_hours_action = models.CharField(max_length=8, choices=QuietHoursAction.choices, default=QuietHoursAction.WAIT)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    send_first_reachable_only = models.BooleanField(
        default=False,
        help_text="Multichannel: send only the first channel (in order) the person can be reached on.",
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    launched_at = models.DateTimeField(null=True, blank=True)

    # The scheduler's bookkeeping for scheduled campaigns, set by ``campaign_launch`` and advanced by
    # the tick after each occurrence starts (occurrences are fields here, never broker ETAs).
    next_occurrence_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="The next occurrence's scheduled time (for local and best time: the wall time, read as UTC).",
    )
    next_run_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the tick starts the next occurrence."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(control_percent__lte=100), name="campaign_control_percent_max"),
        ]

    def __str__(self) -> str:
        return self.name


class Variant(models.Model):
    """One version of the campaign's messages; up to 8 per campaign, with a percentage split."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    key = models.CharField(max_length=16, help_text="A, B, ... (control is not a variant).")
    name = models.CharField(max_length=200, blank=True, default="")
    percent = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["campaign", "key"]
        constraints = [models.UniqueConstraint(fields=["campaign", "key"], name="variant_unique_key")]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.key}"


class ChannelMessage(models.Model):
    """A variant's message on one channel: a template per the channel's content fields, with Liquid."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="messages")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order, for first-reachable sends.")
    delay_seconds = models.PositiveIntegerField(
        default=0, help_text="Extra wait after the campaign's own delay (e.g. an email two days after a push)."
    )
    template = models.JSONField(default=dict)
    transactional = models.BooleanField(default=False)

    class Meta:
        ordering = ["variant", "position"]

    def __str__(self) -> str:
        return f"{self.variant} {self.channel}"


class DeliveryStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"  # waiting for its time (delay, local time, quiet hours)
    SENDING = "sending", "Sending"  # claimed by a sender
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"  # not sent, with a reason
    CONTROL = "control", "Control group"
    CANCELLED = "cancelled", "Cancelled"  # an exception event arrived first


class Delivery(models.Model):
    """One person's passage through one step of a campaign, for one occurrence.

    ``occurrence`` distinguishes sends of the same campaign to the same person: the scheduled time
    of a recurring campaign, the triggering event's message id, the API call's idempotency key. The
    unique key (campaign, step, profile, occurrence) is what makes a retried task, a duplicated
    trigger or a restarted launch never send one person the same message twice.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    # No single-column indexes on campaign and profile: the unique key and delivery_campaign_status_idx
    # lead with campaign_id, delivery_profile_campaign_idx with profile_id, and serve every lookup
    # (cascades included). Each row version is written to every index: the sender writes three.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    step_key = models.CharField(max_length=32, default="main")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    occurrence = models.CharField(max_length=255)
    variant = models.ForeignKey(Variant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.SCHEDULED)
    reason = models.CharField(max_length=255, blank=True, default="", help_text="Why it was skipped or failed.")
    scheduled_for = models.DateTimeField()
    trigger_event_id = models.BigIntegerField(null=True, blank=True)
    trigger_properties = models.JSONField(default=dict, blank=True)
    match_value = models.CharField(
        max_length=255, blank=True, default="", help_text="The trigger's property value exceptions must match."
    )
    dispatch_ids = ArrayField(models.UUIDField(), default=list, blank=True)
    # The channels this delivery sent on (stamped with ``sent_at`` when the sender passes the
    # frequency caps, before calling the provider): what the caps count.
    sent_channels = ArrayField(models.CharField(max_length=16), default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    revenue = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "step_key", "profile", "occurrence"], name="delivery_unique_occurrence"
            ),
        ]
        indexes = [
            # The due-deliveries sweep: scheduled rows whose time has come, oldest first.
            models.Index(fields=["scheduled_for"], condition=Q(status="scheduled"), name="delivery_due_idx"),
            # Why not? / re-eligibility / exception events: a person's deliveries of a campaign.
            models.Index(fields=["profile", "campaign"], name="delivery_profile_campaign_idx"),
            # Progress counts per campaign and status.
            models.Index(fields=["campaign", "status"], name="delivery_campaign_status_idx"),
            # Frequency caps: a person's sends in a window.
            models.Index(fields=["profile", "sent_at"], condition=Q(sent_at__isnull=False), name="delivery_sent_idx"),
            # The sender's sweep: claims older than the timeout (a worker died, an enqueue was lost).
            models.Index(fields=["claimed_at"], condition=Q(status="sending"), name="delivery_sending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.profile_id}:{self.occurrence} ({self.status})"


class CapChannel(models.TextChoices):
    ANY = "any", "All channels"
    EMAIL = "email", "Email"
    PUSH = "push", "Mobile push"
    WEBPUSH = "webpush", "Web push"
    SMS = "sms", "SMS"
    WEBHOOK = "webhook", "Webhook"


class FrequencyCapRule(models.Model):
    """No more than ``max_messages`` per ``window`` ``unit`` on ``channel`` (optionally counting only
    campaigns with ``tag``); counted by calendar day in the person's time zone, or rolling."""

    class Unit(models.TextChoices):
        MINUTES = "minutes", "Minutes"
        HOURS = "hours", "Hours"
        DAYS = "days", "Days"

    class Counting(models.TextChoices):
        CALENDAR_DAYS = "calendar", "Calendar days in the person's time zone"
        ROLLING = "rolling", "Rolling window"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="frequency_caps")
    channel = models.CharField(max_length=16, choices=CapChannel.choices, default=CapChannel.ANY)
    tag = models.CharField(max_length=64, blank=True, default="")
    max_messages = models.PositiveIntegerField()
    window = models.PositiveIntegerField()
    unit = models.CharField(max_length=8, choices=Unit.choices, default=Unit.DAYS)
    counting = models.CharField(max_length=16, choices=Counting.choices, default=Counting.CALENDAR_DAYS)
    is_active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"≤{self.max_messages} {self.channel} per {self.window} {self.unit}"


class QuietHours(models.Model):
    """The workspace's default quiet hours for a channel, in each person's time zone."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="quiet_hours")
    channel = models.CharField(max_length=16, choices=CapChannel.choices, default=CapChannel.ANY)
    start = models.TimeField()
    end = models.TimeField()
    action = models.CharField(max_length=8, choices=QuietHoursAction.choices, default=QuietHoursAction.WAIT)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "channel"], name="quiet_hours_per_channel")]

    def __str__(self) -> str:
        return f"{self.channel} {self.start}-{self.end}"


class RateLimitWindow(models.Model):
    """How many messages a rate-limited campaign sent in one minute; the sender reserves slots here
    with one upsert (``count = count + n``), so concurrent workers share the limit."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "minute"], name="rate_window_unique_minute")]

    def __str__(self) -> str:
        return f"{self.campaign_id} at {self.minute:%H:%M}: {self.count}"


class ApiTriggerRequest(models.Model):
    """An API-triggered send request, kept per idempotency key so a retried POST sends once."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="api_requests")
    idempotency_key = models.CharField(max_length=255)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "idempotency_key"], name="api_trigger_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.idempotency_key}"


class SegmentEntryMember(models.Model):
    """Who was in a segment-entry trigger's segment when last looked at, per campaign.

    A person *enters* when they are in the segment now and have no row here; their row is removed
    when they are found outside it again. The rows start from a snapshot of the members taken the
    first time the campaign runs (``SegmentEntryBaseline``), so people already in the segment at
    launch do not count as entering.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+", db_index=False)
    # Covered by the unique index below (campaign, segment, profile) for lookups; merges re-point by profile.
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    since = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "segment", "profile"], name="segment_entry_member_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.segment_id}: {self.profile_id}"


class SegmentEntryBaseline(models.Model):
    """When the members of a segment-entry trigger's segment were first snapshotted for a campaign."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+", db_index=False)
    taken_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "segment"], name="segment_entry_baseline_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.segment_id} at {self.taken_at}"


class TriggerBacklog(models.Model):
    """Stored events whose trigger matching could not be enqueued (the broker was down).

    The intake has committed the events by then, and the database is up even when the broker is
    not: the ids wait here until the beat's drain (``campaign_triggers_backlog_task``) enqueues
    them again. A row is claimed (``claimed_until``) before its enqueue and deleted after it, so a
    drain that dies midway leaves the row to the next one; matching the same events twice changes
    nothing (deliveries are unique per triggering event). Normally empty.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    event_ids = ArrayField(models.BigIntegerField())
    created_at = models.DateTimeField(auto_now_add=True)
    # A drain has taken the row and is enqueueing it; after this time another drain may.
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True, default="")

    def __str__(self) -> str:
        return f"workspace {self.workspace_id}: {len(self.event_ids)} events since {self.created_at:%H:%M:%S}"


from .reports.models import *  # noqa: E402, F403  (report rollups: campaigns/reports/models.py)
