"""Reads behind the profile page: the event timeline, anonymous ids and merge history.

Every read here is bounded (a page, a limit) and walks an index; none counts or offsets, because a
profile can have hundreds of thousands of events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Q

from .models import AnonymousId, Event, Profile, ProfileMerge

TIMELINE_PAGE_SIZE = 50

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class TimelineCursor:
    """A position in a timeline: the (timestamp, id) of an event, the timeline's sort key."""

    timestamp: datetime
    event_id: int

    def encode(self) -> str:
        # Integer microseconds since the epoch: exact, URL-safe and short.
        return f"{(self.timestamp - _EPOCH) // _MICROSECOND}_{self.event_id}"

    @classmethod
    def decode(cls, value: str | None) -> TimelineCursor | None:
        """The cursor ``value`` encodes, or None when it is missing or malformed."""
        if not value:
            return None
        micros, _, event_id = value.partition("_")
        try:
            return cls(timestamp=_EPOCH + int(micros) * _MICROSECOND, event_id=int(event_id))
        except (ValueError, OverflowError):
            return None

    @classmethod
    def of(cls, event: Event) -> TimelineCursor:
        return cls(timestamp=event.timestamp, event_id=event.pk)


@dataclass
class TimelinePage:
    """One page of events, newest first. ``older`` / ``newer`` are the cursors of the adjacent
    pages (pass ``older`` as ``before`` and ``newer`` as ``after``), or None at either end."""

    events: list[Event] = field(default_factory=list)
    older: TimelineCursor | None = None
    newer: TimelineCursor | None = None


def profile_timeline(
    *,
    profile: Profile,
    before: TimelineCursor | None = None,
    after: TimelineCursor | None = None,
    limit: int = TIMELINE_PAGE_SIZE,
) -> TimelinePage:
    """A page of the profile's events, newest first, keyset-paginated on (timestamp, id).

    With neither cursor: the newest page. ``before``: the page of events older than that cursor;
    ``after``: the page of events just newer than it (walking back towards the newest). Each page
    costs one index range scan on ``event_profile_time_idx`` reading ``limit + 1`` rows, however
    deep it is: no OFFSET, no COUNT.
    """
    events = Event.objects.filter(profile=profile).select_related("app").defer("context")
    if after is not None:
        # The redundant ``timestamp >= t`` bound is what PostgreSQL can turn into an index range;
        # the OR that breaks ties on id is only a filter on top.
        rows = list(
            events.filter(timestamp__gte=after.timestamp)
            .filter(Q(timestamp__gt=after.timestamp) | Q(timestamp=after.timestamp, pk__gt=after.event_id))
            .order_by("timestamp", "pk")[: limit + 1]
        )
        has_newer = len(rows) > limit
        page = list(reversed(rows[:limit]))
        return TimelinePage(
            events=page,
            older=TimelineCursor.of(page[-1]) if page else None,
            newer=TimelineCursor.of(page[0]) if page and has_newer else None,
        )
    if before is not None:
        events = events.filter(timestamp__lte=before.timestamp).filter(
            Q(timestamp__lt=before.timestamp) | Q(timestamp=before.timestamp, pk__lt=before.event_id)
        )
    rows = list(events.order_by("-timestamp", "-pk")[: limit + 1])
    has_older = len(rows) > limit
    page = rows[:limit]
    return TimelinePage(
        events=page,
        older=TimelineCursor.of(page[-1]) if page and has_older else None,
        # Coming from a newer page, there is one to go back to (the first page has none).
        newer=TimelineCursor.of(page[0]) if page and before is not None else None,
    )


def profile_anonymous_ids(*, profile: Profile, limit: int = 50) -> tuple[list[AnonymousId], bool]:
    """The profile's most recent anonymous ids (up to ``limit``) and whether there are more."""
    rows = list(AnonymousId.objects.filter(profile=profile).order_by("-created_at", "-pk")[: limit + 1])
    return rows[:limit], len(rows) > limit


def profile_merges_in(*, profile: Profile, limit: int = 50) -> tuple[list[ProfileMerge], bool]:
    """The merges that folded other profiles into this one, newest first, and whether there are more."""
    rows = list(ProfileMerge.objects.filter(into_profile=profile).order_by("-created_at", "-pk")[: limit + 1])
    return rows[:limit], len(rows) > limit
