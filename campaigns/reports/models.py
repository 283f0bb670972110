"""The report rollups: small tables the report pages read instead of the event, delivery and profile
tables, so that each page stays fast on a workspace with millions of rows.

Two layers, both written only by ``campaigns.reports.rollups`` (beat tasks):

- **Per-person facts**, kept current from feeds of new rows (events, main-step deliveries, merges):
  ``ReportProfile`` (a person's cohort: first-seen day, platform, acquisition source),
  ``ReportActiveDay`` (one row per person and active day), ``ReportFirstEvent`` (when a person
  first did each event, for funnels), ``ReportFirstTimes`` (the same first times as arrays by
  profile id, so a funnel reads its later steps by position instead of joining) and
  ``ReportSend`` (one row per send of a campaign, and one per send and channel, with the first
  time each funnel stage was reached).
- **Aggregates** the unfiltered pages read: ``ReportCampaignHour`` (a campaign's funnel per hour of
  send, variant, platform and channel, added to as facts change), ``ReportCohortDay`` (new people
  per day, platform and source), and the aggregates recomputed by beat for the days that changed:
  ``ReportWorkspaceDay``, ``ReportRevenueDay``, ``ReportRetention`` and ``ReportCampaignRetention``.

A page filtered by segment reads the facts (joined with the segment's members) instead of the
aggregates, with the same SQL shape; see ``campaigns.reports.selectors``.

None of these tables has a foreign key: they are derived data, rebuilt by
``campaigns.reports.rollups.reports_rebuild``, and a constraint check per row would only slow the
rollup down. Names start with ``Report`` so they never collide with the campaigns models beside them.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import Cast

__all__ = [
    "ReportActiveDay",
    "ReportCampaignGroups",
    "ReportCampaignHour",
    "ReportCampaignRetention",
    "ReportCohortDay",
    "ReportCursor",
    "ReportDirtyDay",
    "ReportFirstEvent",
    "ReportFirstTimes",
    "ReportFunnel",
    "ReportFunnelDay",
    "ReportFunnelGroupDay",
    "ReportProfile",
    "ReportRetention",
    "ReportRevenueDay",
    "ReportSegmentCampaignHour",
    "ReportSegmentCampaignRetention",
    "ReportSegmentCohortDay",
    "ReportSegmentDay",
    "ReportSegmentMembers",
    "ReportSegmentRetention",
    "ReportSegmentRevenueDay",
    "ReportSend",
    "ReportWorkspaceDay",
]


class ReportCursor(models.Model):
    """How far the rollup has read one feed (a table read in id order), and the recent chunks it
    read with their signature (row count and id sum), so that rows committed late into an id range
    already read (a long transaction, ids taken out of order) are noticed and folded in."""

    name = models.CharField(max_length=32, primary_key=True)
    position = models.BigIntegerField(default=0, help_text="Every id up to this one has been read.")
    chunks = models.JSONField(default=list, blank=True, help_text="[[low, high, count, id sum, read at], ...]")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"


class ReportDirtyDay(models.Model):
    """A workspace day whose recomputed aggregates (active users, revenue, retention) are out of
    date: written by the feeds, drained by the refresh."""

    pk = models.CompositePrimaryKey("workspace_id", "day")
    workspace_id = models.BigIntegerField()
    day = models.DateField()

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.day}"


class ReportProfile(models.Model):
    """A person as the reports group them: the UTC day they were first seen (their cohort), their
    platform and acquisition source (``utm_source``), as the profile had them when the reports first
    saw the person. Fixed from then on, so every count split by platform or source adds up."""

    profile_id = models.BigIntegerField(primary_key=True)
    workspace_id = models.BigIntegerField()
    cohort_day = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")
    source = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        indexes = [
            # Cohort sizes and the profile lists of a cohort or a source.
            models.Index(
                fields=["workspace_id", "cohort_day"], include=["platform", "source"], name="rpt_profile_cohort_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} first seen {self.cohort_day}"


class ReportCohortDay(models.Model):
    """How many people were first seen on a day, per platform and source (``ReportProfile`` counted)."""

    pk = models.CompositePrimaryKey("workspace_id", "day", "platform", "source")
    workspace_id = models.BigIntegerField()
    day = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")
    source = models.CharField(max_length=255, blank=True, default="")
    profiles = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.day} {self.platform}/{self.source}: {self.profiles}"


class ReportActiveDay(models.Model):
    """A day on which a person was active (did any of the app's own events other than identify,
    alias and group calls, or started a session), with how many events and sessions: the base of
    active users and retention. The counts are copied from the segments' exact daily rollup."""

    pk = models.CompositePrimaryKey("profile_id", "day")
    profile_id = models.BigIntegerField()
    day = models.DateField()
    workspace_id = models.BigIntegerField()
    platform = models.CharField(max_length=16, blank=True, default="")
    # The person's cohort (ReportProfile.cohort_day), copied so retention reads this table alone.
    cohort_day = models.DateField(null=True)
    events = models.IntegerField(default=0)
    sessions = models.IntegerField(default=0)

    class Meta:
        indexes = [
            # Active users over a range of days, and who of which cohort was active in a retention
            # period: both read by index only.
            models.Index(
                fields=["workspace_id", "day"],
                include=["profile_id", "platform", "cohort_day", "events", "sessions"],
                name="rpt_active_day_cohort_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} active {self.day}"


class ReportFirstEvent(models.Model):
    """The first time a person did an event (by name), with their cohort fields copied in, so a
    funnel or a source's completion rate reads one index."""

    pk = models.CompositePrimaryKey("profile_id", "name")
    profile_id = models.BigIntegerField()
    name = models.CharField(max_length=255)
    workspace_id = models.BigIntegerField()
    first_at = models.DateTimeField()
    platform = models.CharField(max_length=16, blank=True, default="")
    source = models.CharField(max_length=255, blank=True, default="")
    cohort_day = models.DateField()

    class Meta:
        indexes = [
            # Who first did E in a time range, with their platform, source and cohort (funnels split
            # by source, completion per source): index-only.
            models.Index(
                fields=["workspace_id", "name", "first_at"],
                include=["profile_id", "platform", "source", "cohort_day"],
                name="rpt_first_event_idx",
            ),
            # A funnel's step 1: who first did E on the days of the range, by day and then by profile
            # id, so that the later steps' lookups in ReportFirstTimes sweep each day's people in id
            # order instead of jumping at random through megabytes of arrays (~10% of a funnel).
            models.Index(
                F("workspace_id"),
                F("name"),
                # (first_at AT TIME ZONE 'UTC')::date: the UTC day, as the funnel's query writes it.
                Cast(
                    Func(Value("UTC"), F("first_at"), function="timezone", output_field=models.DateTimeField()),
                    output_field=models.DateField(),
                ),
                F("profile_id"),
                include=["first_at", "platform", "source"],
                name="rpt_first_event_day_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} first {self.name} at {self.first_at}"


# ReportFirstTimes: profile ids per block, and the value of "never did it".
FIRST_TIMES_BLOCK = 4096
FIRST_TIMES_NEVER = 2**63 - 1


class ReportFirstTimes(models.Model):
    """``ReportFirstEvent``'s first times again, as one array per event name and block of
    ``FIRST_TIMES_BLOCK`` profile ids: ``times[i]`` is when profile ``block * FIRST_TIMES_BLOCK + i - 1``
    first did ``name``, in microseconds since 1970 (UTC), or ``FIRST_TIMES_NEVER``.

    Why: a funnel's later steps were three hash joins of the hundreds of thousands of people entering
    it with everyone who ever did the step's event. Read from these arrays by subscript (a few hundred
    blocks hashed, one lookup per person), they cost next to nothing. "Never" is a large value rather
    than NULL because a subscript into an array without NULLs is a constant-time offset (with NULLs
    PostgreSQL counts the null bitmap up to the element), and it fails every "within the window"
    test by itself. Kept equal to ``ReportFirstEvent`` by the rollup, in the same transaction
    (``campaigns.reports.rollups.first_times_sync``); a block exists once anyone in it did the event.
    Stored uncompressed (``STORAGE EXTERNAL``): read whole by every funnel, rewritten by the rollup."""

    pk = models.CompositePrimaryKey("workspace_id", "name", "block")
    workspace_id = models.BigIntegerField()
    name = models.CharField(max_length=255)
    block = models.IntegerField()
    times = ArrayField(models.BigIntegerField())

    def __str__(self) -> str:
        return f"first {self.name}, profiles from {self.block * FIRST_TIMES_BLOCK}"


class ReportSend(models.Model):
    """One send of a campaign to a person (``channel`` empty: the send as a whole), or one channel
    of it, with the first time each stage was reached. ``send_id`` is the main-step delivery's id;
    follow-up steps (an email two days after a push) count towards the same send.

    Each ``*_at`` is set once, from NULL, by a conditional update; the same statement adds one to
    ``ReportCampaignHour``, so the aggregate counts each send's stage once, however often events repeat.
    """

    pk = models.CompositePrimaryKey("send_id", "channel")
    send_id = models.BigIntegerField()
    channel = models.CharField(max_length=16, blank=True, default="")
    workspace_id = models.BigIntegerField()
    campaign_id = models.BigIntegerField()
    profile_id = models.BigIntegerField()
    variant = models.CharField(max_length=16, blank=True, default="", help_text="Variant key, or 'control'.")
    platform = models.CharField(max_length=16, blank=True, default="")
    due_at = models.DateTimeField(help_text="When the send was due: the main delivery's scheduled time.")
    status = models.CharField(max_length=16, blank=True, default="", help_text="The main delivery's status.")
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    revenue = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)

    class Meta:
        indexes = [
            # A campaign's sends per person (campaign retention, the funnel split by campaign, the
            # profile lists behind its numbers): in person order, by index only where it can.
            models.Index(
                fields=["campaign_id", "channel", "profile_id"],
                include=["variant", "platform", "due_at", "sent_at"],
                name="rpt_send_campaign_person_idx",
            ),
            # A workspace's sends in a period (the channels page filtered by segment).
            models.Index(fields=["workspace_id", "due_at"], name="rpt_send_workspace_idx"),
            # Merges re-point a person's sends.
            models.Index(fields=["profile_id"], name="rpt_send_profile_idx"),
            # Sends whose delivery has not finished yet: re-read every run until they do.
            models.Index(
                fields=["send_id"],
                condition=Q(channel="", status__in=["scheduled", "sending"]),
                name="rpt_send_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"send {self.send_id} {self.channel or 'all channels'}"


class CampaignHourCounts(models.Model):
    """A campaign's counts for the sends due in an hour, in ``ReportCampaignHour`` (the workspace's)
    and ``ReportSegmentCampaignHour`` (a segment's members'): the same columns, the same SQL."""

    targeted = models.IntegerField(default=0)
    pending = models.IntegerField(default=0)
    status_sent = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)
    control = models.IntegerField(default=0)
    sent = models.IntegerField(default=0)
    delivered = models.IntegerField(default=0)
    opened = models.IntegerField(default=0)
    clicked = models.IntegerField(default=0)
    bounced = models.IntegerField(default=0)
    complained = models.IntegerField(default=0)
    unsubscribed = models.IntegerField(default=0)
    converted = models.IntegerField(default=0)
    revenue = models.DecimalField(max_digits=18, decimal_places=4, default=0)

    class Meta:
        abstract = True


class DayCounts(models.Model):
    """A day's activity, in ``ReportWorkspaceDay`` and ``ReportSegmentDay``: active users (that day,
    the 7 and 30 days ending that day), new people, events and sessions, messages received and
    conversions."""

    dau = models.IntegerField(default=0)
    wau = models.IntegerField(default=0)
    mau = models.IntegerField(default=0)
    new_profiles = models.IntegerField(default=0)
    events = models.BigIntegerField(default=0)
    sessions = models.BigIntegerField(default=0)
    messages = models.BigIntegerField(default=0)
    conversions = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class ReportCampaignHour(CampaignHourCounts):
    """A campaign's numbers for the sends due in one hour, per variant, platform and channel
    (``channel`` empty: sends as a whole). Status counts (``targeted`` .. ``control``) are on the
    whole-send rows only. Added to by the rollup; ``rollups.reports_rebuild`` recomputes it."""

    pk = models.CompositePrimaryKey("campaign_id", "hour", "variant", "platform", "channel")
    campaign_id = models.BigIntegerField()
    hour = models.DateTimeField()
    variant = models.CharField(max_length=16, blank=True, default="")
    platform = models.CharField(max_length=16, blank=True, default="")
    channel = models.CharField(max_length=16, blank=True, default="")
    workspace_id = models.BigIntegerField()

    class Meta:
        indexes = [
            # The channels page: every campaign's channel rows in a period.
            models.Index(fields=["workspace_id", "hour"], name="rpt_campaign_hour_ws_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.hour:%Y-%m-%d %H}h {self.variant}/{self.channel}"


class ReportWorkspaceDay(DayCounts):
    """A workspace's day, per platform: active users (that day, the 7 and 30 days ending that day),
    new people, events and sessions, messages received and conversions. Recomputed for changed days."""

    pk = models.CompositePrimaryKey("workspace_id", "day", "platform")
    workspace_id = models.BigIntegerField()
    day = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.day} {self.platform}"


class ReportRevenueDay(models.Model):
    """A workspace's purchases on a day, per platform and currency (currencies are never summed)."""

    pk = models.CompositePrimaryKey("workspace_id", "day", "platform", "currency")
    workspace_id = models.BigIntegerField()
    day = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")
    currency = models.CharField(max_length=3)
    revenue = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    orders = models.IntegerField(default=0)
    buyers = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.day} {self.currency} {self.revenue}"


class ReportRetention(models.Model):
    """Of the people first seen in a calendar week or month (``cohort``: its first day), how many
    were active in the ``period``-th week or month after it, per platform."""

    class Grain(models.TextChoices):
        WEEK = "week", "Week"
        MONTH = "month", "Month"

    pk = models.CompositePrimaryKey("workspace_id", "grain", "cohort", "platform", "period")
    workspace_id = models.BigIntegerField()
    grain = models.CharField(max_length=8, choices=Grain.choices)
    cohort = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")
    period = models.SmallIntegerField()
    active = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.grain} {self.cohort} +{self.period}: {self.active}"


class ReportCampaignRetention(models.Model):
    """A campaign's retention per group (a variant's recipients, or the control group): of the
    people whose ``period``-th week (7 days) or month (30 days) after their send has ended
    (``eligible``), how many were active in it. ``size`` is the whole group."""

    pk = models.CompositePrimaryKey("campaign_id", "grain", "group", "platform", "period")
    campaign_id = models.BigIntegerField()
    grain = models.CharField(max_length=8, choices=ReportRetention.Grain.choices)
    group = models.CharField(max_length=16)
    platform = models.CharField(max_length=16, blank=True, default="")
    period = models.SmallIntegerField()
    workspace_id = models.BigIntegerField()
    size = models.IntegerField(default=0)
    eligible = models.IntegerField(default=0)
    active = models.IntegerField(default=0)
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.group} {self.grain} +{self.period}: {self.active}/{self.eligible}"


class ReportSegmentMembers(models.Model):
    """A segment's members as the reports last evaluated them (when, how many, from which
    definition, and who: a bitmap of profile ids), and the per-segment aggregates built from them.
    See ``campaigns.reports.members``."""

    segment_id = models.BigIntegerField(primary_key=True)
    workspace_id = models.BigIntegerField()
    digest = models.CharField(max_length=64, help_text="sha256 of the definition the members were evaluated from.")
    computed_at = models.DateTimeField()
    size = models.IntegerField(default=0)
    took_ms = models.FloatField(default=0)
    # Bit n (byte n // 8, bit n % 8 from the least significant, as PostgreSQL's get_bit counts) is
    # set when profile ``bits_base + n`` is a member: the pages test each row against it in SQL,
    # where hashing a quarter of a million ids for every query would cost more than the query.
    bits = models.BinaryField(default=b"")
    bits_base = models.BigIntegerField(default=0)
    viewed_at = models.DateTimeField(null=True, blank=True, help_text="Last read by a report page.")
    # The aggregates (ReportSegment* tables) were built from the members computed at this time, from
    # the definition with this digest, in this long.
    aggregated_from = models.DateTimeField(null=True, blank=True)
    aggregated_digest = models.CharField(max_length=64, blank=True, default="")
    aggregated_size = models.IntegerField(default=0)
    aggregated_ms = models.FloatField(default=0)

    def __str__(self) -> str:
        return f"segment {self.segment_id}: {self.size} at {self.computed_at}"


# The aggregates of the unfiltered pages, for a segment's members (as of
# ReportSegmentMembers.aggregated_from): the same columns, recomputed whole by the segment refresh from
# the per-person facts with the same SQL the live segment path uses.


class ReportSegmentDay(DayCounts):
    """``ReportWorkspaceDay`` for a segment's members."""

    pk = models.CompositePrimaryKey("segment_id", "day", "platform")
    segment_id = models.BigIntegerField()
    day = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")

    def __str__(self) -> str:
        return f"segment {self.segment_id} {self.day} {self.platform}"


class ReportSegmentRevenueDay(models.Model):
    """``ReportRevenueDay`` for a segment's members."""

    pk = models.CompositePrimaryKey("segment_id", "day", "platform", "currency")
    segment_id = models.BigIntegerField()
    day = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")
    currency = models.CharField(max_length=3)
    revenue = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    orders = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"segment {self.segment_id} {self.day} {self.currency} {self.revenue}"


class ReportSegmentCohortDay(models.Model):
    """``ReportCohortDay`` for a segment's members."""

    pk = models.CompositePrimaryKey("segment_id", "day", "platform", "source")
    segment_id = models.BigIntegerField()
    day = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")
    source = models.CharField(max_length=255, blank=True, default="")
    profiles = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"segment {self.segment_id} {self.day} {self.platform}/{self.source}: {self.profiles}"


class ReportSegmentRetention(models.Model):
    """``ReportRetention`` for a segment's members."""

    pk = models.CompositePrimaryKey("segment_id", "grain", "cohort", "platform", "period")
    segment_id = models.BigIntegerField()
    grain = models.CharField(max_length=8, choices=ReportRetention.Grain.choices)
    cohort = models.DateField()
    platform = models.CharField(max_length=16, blank=True, default="")
    period = models.SmallIntegerField()
    active = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"segment {self.segment_id} {self.grain} {self.cohort} +{self.period}: {self.active}"


class ReportSegmentCampaignHour(CampaignHourCounts):
    """``ReportCampaignHour`` for a segment's members (every campaign of the workspace)."""

    pk = models.CompositePrimaryKey("segment_id", "campaign_id", "hour", "variant", "platform", "channel")
    segment_id = models.BigIntegerField()
    campaign_id = models.BigIntegerField()
    hour = models.DateTimeField()
    variant = models.CharField(max_length=16, blank=True, default="")
    platform = models.CharField(max_length=16, blank=True, default="")
    channel = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        indexes = [
            # The channels page: every campaign's channel rows in a period.
            models.Index(fields=["segment_id", "hour"], name="rpt_seg_campaign_hour_idx"),
        ]

    def __str__(self) -> str:
        return f"segment {self.segment_id} {self.campaign_id} {self.hour:%Y-%m-%d %H}h {self.variant}/{self.channel}"


class ReportSegmentCampaignRetention(models.Model):
    """``ReportCampaignRetention`` for a segment's members (every campaign of the workspace), as of
    the segment's ``aggregated_from``."""

    pk = models.CompositePrimaryKey("segment_id", "campaign_id", "grain", "group", "platform", "period")
    segment_id = models.BigIntegerField()
    campaign_id = models.BigIntegerField()
    grain = models.CharField(max_length=8, choices=ReportRetention.Grain.choices)
    group = models.CharField(max_length=16)
    platform = models.CharField(max_length=16, blank=True, default="")
    period = models.SmallIntegerField()
    size = models.IntegerField(default=0)
    eligible = models.IntegerField(default=0)
    active = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"segment {self.segment_id} {self.campaign_id} {self.group} {self.grain} +{self.period}"


class ReportCampaignGroups(models.Model):
    """Who a campaign reached, as bitmaps of profile ids (bit n: profile ``bits_base + n``), for the
    funnel split by campaign: in its control group, sent a message (and not in the control group),
    targeted at all. Evaluated from ``ReportSend`` when a funnel asks and reused for
    ``REPORTS_SEGMENT_MEMBERS_SECONDS``; see ``campaigns.reports.members.campaign_groups``."""

    campaign_id = models.BigIntegerField(primary_key=True)
    workspace_id = models.BigIntegerField()
    computed_at = models.DateTimeField()
    bits_base = models.BigIntegerField(default=0)
    control = models.BinaryField(default=b"")
    received = models.BinaryField(default=b"")
    targeted = models.BinaryField(default=b"")

    def __str__(self) -> str:
        return f"campaign {self.campaign_id} groups at {self.computed_at}"


class ReportFunnel(models.Model):
    """A funnel a page showed (its steps, window, split and platform, unfiltered by segment), kept
    while it is looked at: the funnel refresh keeps its per-day results current
    (``campaigns.reports.funnels``). ``digest`` identifies the definition within the workspace."""

    workspace_id = models.BigIntegerField()
    digest = models.CharField(max_length=64)
    steps = ArrayField(models.CharField(max_length=255))
    window_days = models.IntegerField()
    split = models.CharField(max_length=16)
    campaign_id = models.BigIntegerField(null=True, blank=True)
    platform = models.CharField(max_length=16, blank=True, default="")
    viewed_at = models.DateTimeField()
    viewed_start = models.DateField(help_text="First day of the range last shown.")
    viewed_end = models.DateField(help_text="Last day of the range last shown.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace_id", "digest"], name="rpt_funnel_digest_uniq")]

    def __str__(self) -> str:
        return f"funnel {' > '.join(self.steps)} ({self.split})"


class ReportFunnelDay(models.Model):
    """That a funnel's results for the people entering it on ``day`` (UTC) were computed, and when:
    with the campaign's groups as of ``groups_at`` for a funnel split by campaign."""

    pk = models.CompositePrimaryKey("funnel_id", "day")
    funnel_id = models.BigIntegerField()
    day = models.DateField()
    computed_at = models.DateTimeField()
    groups_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"funnel {self.funnel_id} {self.day} at {self.computed_at}"


class ReportFunnelGroupDay(models.Model):
    """A funnel's result for the people of one group entering it on ``day``: how many entered,
    reached each later step (``reached[k - 1]`` for step k + 1) and the sum of their microseconds
    from the previous step; and every one of those gaps, sorted, step after step in one array
    (step k + 1's are the ``reached[k - 1]`` after the earlier steps'), so that the medians of any
    range of days are exact."""

    pk = models.CompositePrimaryKey("funnel_id", "day", "grp")
    funnel_id = models.BigIntegerField()
    day = models.DateField()
    grp = models.CharField(max_length=255, blank=True, default="")
    entered = models.IntegerField()
    reached = ArrayField(models.IntegerField())
    total_us = ArrayField(models.FloatField())
    gaps = ArrayField(models.BigIntegerField())

    def __str__(self) -> str:
        return f"funnel {self.funnel_id} {self.day} {self.grp!r}: {self.entered}"
