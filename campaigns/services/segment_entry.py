"""Segment-entry triggers: a campaign that fires when a person enters a segment.

Membership is never stored by segments, so entry is detected here, on the event path: for the
people of a batch of events, membership *now* (one query per segment, the segments' single-profile
check over those rows) is compared with what was recorded for the campaign (``SegmentEntryMember``).
In now and not recorded is an entry; recorded and out now removes the row, so leaving and coming
back is a new entry.

When the campaign is launched, its segments' current members are snapshotted in one
``INSERT … SELECT`` each (``SegmentEntryBaseline``, in the launch's transaction), so people who were
already in them at launch do not "enter", and people who enter afterwards do, even before the
campaign's first batch of events. (A campaign without a baseline, say one launched before this
existed, takes it at its first batch.) Membership that changes with no event (time passing: "last
seen more than 30 days ago") is noticed at the person's next event, not at the moment it changes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import connection

from profiles.services.identity import dumps
from segments.compiler import compile_where, members_query, q
from segments.definition import DefinitionError
from segments.models import Segment
from segments.selectors import SET_QUERY_SETTINGS

from ..models import Campaign, SegmentEntryBaseline

if TYPE_CHECKING:
    from .triggers import CampaignRules, Candidate, StoredEvent

logger = logging.getLogger(__name__)


def _baseline_lock(campaign_id: int, segment_id: int) -> None:
    digest = hashlib.blake2b(f"segment-entry:{campaign_id}:{segment_id}".encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])


def baseline_ensure(*, campaign_id: int, segment: Segment, now: datetime) -> bool:
    """Snapshot the segment's members for the campaign once; True if this call took it. Runs in
    the caller's transaction, under a lock, so two workers never both take it."""
    if SegmentEntryBaseline.objects.filter(campaign_id=campaign_id, segment_id=segment.pk).exists():
        return False
    _baseline_lock(campaign_id, segment.pk)
    if SegmentEntryBaseline.objects.filter(campaign_id=campaign_id, segment_id=segment.pk).exists():
        return False
    members = members_query(segment, now=now)
    sql = q(
        "INSERT INTO campaigns_segmententrymember (campaign_id, segment_id, profile_id, since)"
        " SELECT {}, {}, m.id, {} FROM ({}) AS m ON CONFLICT DO NOTHING",
        campaign_id,
        segment.pk,
        now,
        members,
    )
    with connection.cursor() as cursor:
        # A whole-segment query: JIT off and room to group in memory, as for a segment's size.
        for setting in SET_QUERY_SETTINGS:
            cursor.execute(setting)
        cursor.execute(sql.text, sql.params)
    SegmentEntryBaseline.objects.create(campaign_id=campaign_id, segment_id=segment.pk, taken_at=now)
    return True


def segment_entry_baselines_take(*, campaign: Campaign, now: datetime) -> list[int]:
    """Snapshot the members of every segment the campaign's segment-entry triggers name, where
    not taken yet; returns the segment ids snapshotted now. The launch calls it in its transaction,
    so "already in the segment" means in it when the campaign started, not when its first event
    happened to be processed (a person who entered in between is entering); the builder calls it
    when a running campaign gains such a trigger."""
    segment_ids = sorted(
        {
            item["segment_id"]
            for item in campaign.triggers or []
            if isinstance(item, dict)
            and item.get("type") == "segment_entry"
            and isinstance(item.get("segment_id"), int)
            and not isinstance(item.get("segment_id"), bool)
        }
    )
    taken = []
    for segment in Segment.objects.filter(workspace_id=campaign.workspace_id, pk__in=segment_ids).order_by("pk"):
        try:
            if baseline_ensure(campaign_id=campaign.pk, segment=segment, now=now):
                taken.append(segment.pk)
        except DefinitionError as error:  # the launch check names it; matching skips the segment
            logger.warning("campaign %s: segment %s cannot be evaluated: %s", campaign.pk, segment.pk, error)
    return taken


def _members_among(segment: Segment, profile_ids: list[int], now: datetime) -> set[int]:
    where = compile_where(
        segment.definition, workspace_id=segment.workspace_id, now=now, mode="single", segment_id=segment.pk
    )
    sql = q(
        "SELECT p.id FROM profiles_profile p WHERE p.workspace_id = {} AND p.id = ANY({}::bigint[]) AND {}",
        segment.workspace_id,
        profile_ids,
        where,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql.text, sql.params)
        return {row[0] for row in cursor.fetchall()}


def segment_entry_candidates(
    *, workspace_id: int, rules: Sequence[CampaignRules], events: Sequence[StoredEvent], now: datetime
) -> list[Candidate]:
    """The people of these events who entered a segment that triggers a running campaign, as
    candidates (in the caller's transaction: if enrolment fails, the recorded entries roll back too).

    The occurrence is the message id of the person's last event in the batch (the one that found
    them inside), so a retried task finds the same entries already recorded and enrols nobody twice.
    """
    from .triggers import Candidate

    wanted = [(campaign, t.segment_id) for campaign in rules for t in campaign.triggers if t.segment_id]
    if not wanted:
        return []
    last_event: dict[int, StoredEvent] = {}
    for event in events:  # oldest first: the last one wins
        last_event[event.profile_id] = event
    segments = {s.pk: s for s in Segment.objects.filter(workspace_id=workspace_id, pk__in={s for _, s in wanted})}
    candidates: list[Candidate] = []
    for campaign, segment_id in wanted:
        segment = segments.get(segment_id)
        if segment is None:
            continue
        # Only events since launch can make someone enter.
        people = sorted(
            profile_id
            for profile_id, event in last_event.items()
            if campaign.launched_at is None or event.timestamp >= campaign.launched_at
        )
        if not people:
            continue
        try:
            baseline_ensure(campaign_id=campaign.id, segment=segment, now=now)
            inside = _members_among(segment, people, now)
        except DefinitionError as error:
            logger.warning("campaign %s: segment %s cannot be evaluated: %s", campaign.id, segment_id, error)
            continue
        outside = [p for p in people if p not in inside]
        with connection.cursor() as cursor:
            if outside:
                cursor.execute(
                    "DELETE FROM campaigns_segmententrymember"
                    " WHERE campaign_id = %s AND segment_id = %s AND profile_id = ANY(%s::bigint[])",
                    [campaign.id, segment_id, outside],
                )
            if not inside:
                continue
            # The rows this statement inserts are the entries: a concurrent worker evaluating the
            # same person inserts nothing, so each entry is enrolled once.
            cursor.execute(
                "INSERT INTO campaigns_segmententrymember (campaign_id, segment_id, profile_id, since)"
                " SELECT %s, %s, x.p, %s FROM jsonb_to_recordset(%s::jsonb) AS x(p bigint)"
                " ON CONFLICT DO NOTHING RETURNING profile_id",
                [campaign.id, segment_id, now, dumps([{"p": p} for p in sorted(inside)])],
            )
            entered = sorted(row[0] for row in cursor.fetchall())
        for profile_id in entered:
            event = last_event[profile_id]
            candidates.append(
                Candidate(
                    campaign_id=campaign.id,
                    profile_id=profile_id,
                    occurrence=f"segment:{segment_id}:{event.message_id}",
                    base=event.timestamp,
                    event_id=event.id,
                    properties={"segment_id": segment_id, "segment_name": segment.name},
                )
            )
    return candidates
