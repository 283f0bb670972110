"""Delivery controls: each person's local time, quiet hours, global frequency caps, the per-campaign
rate limit and best time.

Every send passes through the sender (``campaigns.services.sending``), which applies these in one
place; triggered sends (``campaigns/services/triggers*``) may import the time helpers to compute
delays in a person's zone. Pure functions where possible; the database work is set-based over a
batch of deliveries (one grouped query per cap rule, one upsert per rate-limited campaign).

Time zones: a person's ``time_zone`` when it names a real IANA zone, else the workspace's
``default_time_zone``, else UTC. Local wall times that do not exist (a DST gap) resolve forwards,
as ``zoneinfo`` does with ``fold=0``.
"""

# The SQL below interpolates only fixed fragments built here; every value travels as a parameter.
# ruff: noqa: S608
from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache

from django.db import connection

from channels.models import Channel
from profiles.engagement import MESSAGE_OPENED, SESSION_STARTED
from profiles.services.locks import identity_lock_key

from ..models import Campaign, FrequencyCapRule, QuietHours, QuietHoursAction

# In-app messages and content cards are pulled by the app when it opens: they never wake anyone
# up, so quiet hours do not hold them and frequency caps do not count them (Braze does the same).
PULLED_CHANNELS = frozenset({Channel.IN_APP.value, Channel.CONTENT_CARD.value})
COUNTED_CHANNELS = tuple(channel for channel in Channel.values if channel not in PULLED_CHANNELS)

# Best time reads this much of a person's history.
BEST_TIME_HISTORY = timedelta(days=90)
BEST_TIME_EVENTS = (SESSION_STARTED, MESSAGE_OPENED)
# Engagement on the send's own weekday weighs this much more than on other days, so "Tuesdays at
# 8" wins for a Tuesday send when the person has Tuesday history, and their usual hour otherwise.
BEST_TIME_SAME_WEEKDAY_WEIGHT = 7


# --- time zones ------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def person_zone(*, time_zone: str, default_time_zone: str) -> zoneinfo.ZoneInfo:
    """The zone a person's local times are read in: theirs, the workspace default, or UTC."""
    return _zone(time_zone) or _zone(default_time_zone) or zoneinfo.ZoneInfo("UTC")


def local_wall_to_utc(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The UTC instant at which the naive wall-clock time ``wall`` happens in ``zone``."""
    naive = wall.replace(tzinfo=None)
    return naive.replace(tzinfo=zone).astimezone(UTC)


def wall_time(value: datetime) -> datetime:
    """A stored "local" date-time (saved as UTC by the admin) read as a naive wall-clock time."""
    return value.astimezone(UTC).replace(tzinfo=None)


# --- quiet hours -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietWindow:
    """A daily window in the person's local time; ``start > end`` spans midnight (22:00-06:00)."""

    start: time
    end: time
    action: str = QuietHoursAction.WAIT

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, local_now: datetime) -> datetime:
        """The local date-time at which the window containing ``local_now`` ends."""
        end = local_now.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local_now:
            end += timedelta(days=1)
        return end

    def minute_of_day_edge(self, minute: int) -> int:
        """Best time's rule: a minute of the day that falls inside the window moves to its nearest
        edge (the last minute before it starts, or the minute it ends); others stay."""
        if not self.contains(time(minute // 60, minute % 60)):
            return minute
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        day = 24 * 60
        before = (minute - start) % day + 1  # minutes back to the last minute before the start
        after = (end - minute) % day
        return (start - 1) % day if before < after else end


def quiet_windows(
    *, campaign: Campaign, workspace_rows: Iterable[QuietHours], channels: Iterable[str]
) -> dict[str, QuietWindow]:
    """The quiet window of each channel for this campaign: the campaign's own (both ends set)
    for every channel, else the workspace's row for the channel, else its "any" row. Channels
    without one (and in-app messages and cards) are absent."""
    rows = {row.channel: row for row in workspace_rows}
    found: dict[str, QuietWindow] = {}
    for channel in channels:
        if channel in PULLED_CHANNELS:
            continue
        if campaign.quiet_hours_start is not None and campaign.quiet_hours_end is not None:
            found[channel] = QuietWindow(
                campaign.quiet_hours_start, campaign.quiet_hours_end, campaign.quiet_hours_action
            )
            continue
        row = rows.get(channel) or rows.get("any")
        if row is not None:
            found[channel] = QuietWindow(row.start, row.end, row.action)
    return found


def quiet_hours_end(*, window: QuietWindow, now: datetime, zone: zoneinfo.ZoneInfo) -> datetime | None:
    """When (UTC) the quiet window the person is in now ends, or None if they are not in it."""
    local_now = now.astimezone(zone)
    if not window.contains(local_now.time()):
        return None
    ends = window.ends_after(local_now.replace(tzinfo=None))
    return local_wall_to_utc(ends, zone)


def best_time_minutes(windows: Iterable[QuietWindow]) -> list[int]:
    """For each local hour 0-23, the minute of the day a best-time send at that hour goes out once
    every quiet window is respected (moved to the nearest edge, as Braze does)."""
    minutes = [hour * 60 for hour in range(24)]
    for window in windows:
        minutes = [window.minute_of_day_edge(minute) for minute in minutes]
    return minutes


# --- frequency caps --------------------------------------------------------------------------------


_UNIT_SECONDS = {
    FrequencyCapRule.Unit.MINUTES: 60,
    FrequencyCapRule.Unit.HOURS: 3600,
    FrequencyCapRule.Unit.DAYS: 86400,
}


def cap_window_start(*, rule: FrequencyCapRule, now: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """Where the rule's window starts for a person: ``window`` units back (rolling), or local
    midnight ``window - 1`` days before today (calendar days; minutes and hours always roll)."""
    if rule.counting == FrequencyCapRule.Counting.CALENDAR_DAYS and rule.unit == FrequencyCapRule.Unit.DAYS:
        local_today = now.astimezone(zone).date() - timedelta(days=max(rule.window, 1) - 1)
        return local_wall_to_utc(datetime.combine(local_today, time(0)), zone)
    return now - timedelta(seconds=rule.window * _UNIT_SECONDS[FrequencyCapRule.Unit(rule.unit)])


def rule_applies(rule: FrequencyCapRule, *, channel: str, tags: Sequence[str]) -> bool:
    if channel in PULLED_CHANNELS:
        return False
    if rule.channel not in ("any", channel):
        return False
    return not rule.tag or rule.tag in tags


@dataclass
class CapCounts:
    """How many counted sends each person has in each rule's window, as of the check; ``add``
    records a send the caller decided on, so two deliveries of one person in one batch add up."""

    rules: list[FrequencyCapRule]
    counts: dict[tuple[int, int], int] = field(default_factory=dict)  # (rule index, profile) -> sends

    def capped_by(self, *, profile_id: int, channel: str, tags: Sequence[str]) -> FrequencyCapRule | None:
        for index, rule in enumerate(self.rules):
            if rule_applies(rule, channel=channel, tags=tags) and self.counts.get((index, profile_id), 0) >= (
                rule.max_messages
            ):
                return rule
        return None

    def add(self, *, profile_id: int, channels: Iterable[str], tags: Sequence[str]) -> None:
        """Count one delivery sending on ``channels``: once per channel rule it touches and once
        toward "any" (a multichannel send is one message to the person, on several channels)."""
        channels = [channel for channel in channels if channel not in PULLED_CHANNELS]
        for index, rule in enumerate(self.rules):
            if any(rule_applies(rule, channel=channel, tags=tags) for channel in channels):
                self.counts[(index, profile_id)] = self.counts.get((index, profile_id), 0) + 1


def cap_rules(*, workspace_id: int) -> list[FrequencyCapRule]:
    return list(FrequencyCapRule.objects.filter(workspace_id=workspace_id, is_active=True).order_by("pk"))


def lock_people_for_caps(*, workspace_id: int, profile_ids: Iterable[int]) -> None:
    """Serialise cap checks per person until the transaction ends: two campaigns sending to one
    person at the same moment must not both see room under the cap. Sorted, so never a cycle."""
    keys = sorted({identity_lock_key(workspace_id, "campaigns.caps", str(pk)) for pk in profile_ids})
    if not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY 1) AS keys",
            [keys],
        )


def cap_counts(
    *,
    rules: list[FrequencyCapRule],
    people: Mapping[int, zoneinfo.ZoneInfo],
    now: datetime,
    exclude_delivery_ids: Sequence[int] = (),
) -> CapCounts:
    """Each person's counted sends in each rule's window: one grouped query per rule.

    Counted: deliveries being sent or sent (``sent_at`` is stamped when a send passes the caps,
    before the provider is called, so concurrent senders see each other), on a counted channel, of
    campaigns that are not exempt (exempt campaigns neither obey nor count, Braze's default), and
    for a tag rule only of campaigns carrying the tag now.
    """
    result = CapCounts(rules=rules)
    if not rules or not people:
        return result
    profile_ids = list(people)
    for index, rule in enumerate(rules):
        starts = [cap_window_start(rule=rule, now=now, zone=people[pk]) for pk in profile_ids]
        channels = list(COUNTED_CHANNELS) if rule.channel == "any" else [rule.channel]
        tag_sql, params = ("AND %s = ANY(c.tags)", [rule.tag]) if rule.tag else ("", [])
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT w.profile_id, count(d.id)
                FROM unnest(%s::bigint[], %s::timestamptz[]) AS w(profile_id, since)
                JOIN campaigns_delivery d ON d.profile_id = w.profile_id AND d.sent_at >= w.since
                JOIN campaigns_campaign c ON c.id = d.campaign_id
                WHERE d.status IN ('sending', 'sent') AND d.sent_at IS NOT NULL AND d.sent_at <= %s
                  AND d.sent_channels && %s::varchar[] AND NOT c.frequency_cap_exempt
                  AND NOT d.id = ANY(%s::bigint[]) {tag_sql}
                GROUP BY w.profile_id
                """,
                [profile_ids, starts, now, channels, list(exclude_delivery_ids), *params],
            )
            for profile_id, count in cursor.fetchall():
                result.counts[(index, profile_id)] = count
    return result


def describe_rule(rule: FrequencyCapRule) -> str:
    scope = "messages" if rule.channel == "any" else f"{rule.get_channel_display()} messages"
    tag = f" tagged {rule.tag!r}" if rule.tag else ""
    unit = str(rule.unit).rstrip("s") if rule.window == 1 else str(rule.unit)
    counting = " (calendar days)" if rule.counting == FrequencyCapRule.Counting.CALENDAR_DAYS else ""
    return f"at most {rule.max_messages} {scope}{tag} per {rule.window} {unit}{counting}"


# --- rate limit ------------------------------------------------------------------------------------


def minute_start(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def rate_limit_reserve(*, campaign_id: int, limit: int, wanted: int, now: datetime) -> int:
    """Reserve up to ``wanted`` of this minute's ``limit`` sends for the campaign; return how many
    were granted. Concurrent senders share the minute's count through one locked row."""
    if wanted <= 0:
        return 0
    minute = minute_start(now)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_ratelimitwindow (campaign_id, minute, count) VALUES (%s, %s, 0)"
            " ON CONFLICT (campaign_id, minute) DO NOTHING",
            [campaign_id, minute],
        )
        cursor.execute(
            "SELECT count FROM campaigns_ratelimitwindow WHERE campaign_id = %s AND minute = %s FOR UPDATE",
            [campaign_id, minute],
        )
        row = cursor.fetchone()
        used = int(row[0]) if row else 0
        granted = max(0, min(wanted, limit - used))
        if granted:
            cursor.execute(
                "UPDATE campaigns_ratelimitwindow SET count = count + %s WHERE campaign_id = %s AND minute = %s",
                [granted, campaign_id, minute],
            )
    return granted


def throttled_campaign_ids(*, now: datetime) -> list[int]:
    """Campaigns that used up this minute's rate limit (the sender leaves their rows alone)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT w.campaign_id FROM campaigns_ratelimitwindow w JOIN campaigns_campaign c ON c.id = w.campaign_id"
            " WHERE w.minute = %s AND c.rate_limit_per_minute IS NOT NULL AND w.count >= c.rate_limit_per_minute",
            [minute_start(now)],
        )
        return [row[0] for row in cursor.fetchall()]


def rate_windows_prune(*, now: datetime) -> int:
    """Forget minutes that are over (an hour of margin)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM campaigns_ratelimitwindow WHERE minute < %s", [now - timedelta(hours=1)])
        return cursor.rowcount


# --- best time -------------------------------------------------------------------------------------


def best_hour_sql(*, recipients_sql: str, zone_sql: str, weekday: int, since: datetime) -> tuple[str, list[object]]:
    """SQL (with its parameters) for ``(profile_id, best_hour)``: each recipient's local hour of day
    in which they most often started a session or opened a message over their recent history,
    events on the send's ``weekday`` (ISO, 1 = Monday) weighing ``BEST_TIME_SAME_WEEKDAY_WEIGHT``
    times more; ties go to the earlier hour. People without history have no row (the caller falls
    back to the campaign's default hour).

    ``recipients_sql`` is a relation with ``id`` and the zone expression ``zone_sql`` is evaluated
    over it (alias ``r``). One grouped query over the recipients' own events, read through the
    ``(profile, -timestamp)`` index.
    """
    sql = f"""
        SELECT DISTINCT ON (h.profile_id) h.profile_id, h.hour
        FROM (
            SELECT e.profile_id,
                   extract(hour FROM e.timestamp AT TIME ZONE {zone_sql})::int AS hour,
                   sum(CASE WHEN extract(isodow FROM e.timestamp AT TIME ZONE {zone_sql}) = %s
                            THEN {BEST_TIME_SAME_WEEKDAY_WEIGHT} ELSE 1 END) AS score
            FROM {recipients_sql} r
            JOIN profiles_event e ON e.profile_id = r.id
            WHERE e.name = ANY(%s::text[]) AND e.timestamp >= %s
            GROUP BY e.profile_id, 2
        ) h
        ORDER BY h.profile_id, h.score DESC, h.hour
    """
    return sql, [weekday, list(BEST_TIME_EVENTS), since]
