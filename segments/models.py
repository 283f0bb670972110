"""Segments: saved audience definitions, their daily sizes, lifecycle thresholds, and the per-profile
event rollup that keeps behavioural conditions fast.

A segment stores only its definition (see ``segments.definition``); membership is never stored. It
is computed from the data as it stands whenever it is asked for, by ``segments.compiler``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from profiles.models import Profile, Workspace


def empty_definition() -> dict[str, list[object]]:
    # An empty "all" group matches everyone: the natural starting point of the builder.
    return {"all": []}


class Segment(models.Model):
    """A named audience in one workspace. Write through ``segments.services`` (it validates the
    definition and refuses cycles between segments)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    definition = models.JSONField(default=empty_definition, help_text="The condition tree; see docs/segments.md.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["workspace", "name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="segment_unique_name")]

    def __str__(self) -> str:
        return self.name


class SegmentSizeSnapshot(models.Model):
    """A segment's size on one day, recorded by beat, for the size-over-time chart."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="size_snapshots")
    date = models.DateField()
    size = models.PositiveIntegerField()
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["segment", "date"]
        constraints = [models.UniqueConstraint(fields=["segment", "date"], name="segment_size_unique_day")]

    def __str__(self) -> str:
        return f"{self.segment_id} on {self.date}: {self.size}"


class LifecycleStage(models.TextChoices):
    NEW = "new", "New"
    ACTIVE = "active", "Active"
    LAPSED = "lapsed", "Lapsed"
    CHURNED = "churned", "Churned"


class LifecycleSettings(models.Model):
    """A workspace's lifecycle thresholds. Without a row, the defaults below apply.

    A person is *new* while their first visit is at most ``new_days`` old; otherwise *active* if
    last seen within ``lapsed_after_days``, *lapsed* if last seen within ``churned_after_days``,
    and *churned* beyond that. Someone never seen has no stage.
    """

    DEFAULT_NEW_DAYS = 7
    DEFAULT_LAPSED_AFTER_DAYS = 30
    DEFAULT_CHURNED_AFTER_DAYS = 90

    workspace = models.OneToOneField(
        Workspace, on_delete=models.CASCADE, primary_key=True, related_name="lifecycle_settings"
    )
    new_days = models.PositiveIntegerField(
        default=DEFAULT_NEW_DAYS, help_text="People first seen at most this many days ago are new."
    )
    lapsed_after_days = models.PositiveIntegerField(
        default=DEFAULT_LAPSED_AFTER_DAYS, help_text="Not seen for this many days: lapsed."
    )
    churned_after_days = models.PositiveIntegerField(
        default=DEFAULT_CHURNED_AFTER_DAYS, help_text="Not seen for this many days: churned."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "lifecycle settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(new_days__gte=1)
                & Q(lapsed_after_days__gte=1)
                & Q(churned_after_days__gt=F("lapsed_after_days")),
                name="lifecycle_thresholds_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"Lifecycle thresholds for workspace {self.workspace_id}"


class EventDailyCount(models.Model):
    """How many events of one name a profile did on one UTC day, with the first and last time.

    Maintained by PostgreSQL statement-level triggers on ``profiles_event`` (migration 0002), so
    every writer (the intake, merges, deletes, imports, raw SQL) keeps it current with no Python
    hook. Never write it from Python. Behavioural conditions read it instead of the event table:
    it is a small fraction of the events' size and indexed for both evaluators.
    """

    pk = models.CompositePrimaryKey("profile_id", "name", "day")
    # No database-level foreign keys: the triggers keep the rows consistent (a profile's rows go when
    # its events go), and an FK check per rolled-up row would only slow the intake down.
    # No single-column indexes either: the primary key leads with profile_id and the covering index
    # below with workspace_id.
    workspace = models.ForeignKey(
        Workspace, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    profile = models.ForeignKey(
        Profile, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    name = models.CharField(max_length=255)
    day = models.DateField(help_text="The UTC day of the events' timestamps.")
    count = models.PositiveIntegerField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The set evaluator: every profile that did event E on days D1..D2, read by index only.
            models.Index(
                fields=["workspace", "name", "day"],
                include=["profile", "count", "first_at", "last_at"],
                name="event_daily_ws_name_day_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.name} {self.day}: {self.count}"
