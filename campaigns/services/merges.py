"""A merged person's campaign state moves to the surviving profile (``profile_merged``).

The intake merges an anonymous profile into a known one (or two anonymous ones) inside its
transaction and sends ``profile_merged`` before deleting the merged row, which would otherwise
cascade to the person's deliveries and segment-entry records. ``campaigns_profile_merged`` is the
one place campaigns react to it (``campaigns.receivers``); the person ends up with one history:

- **same send on both profiles** (same campaign, step and occurrence: the same scheduled
  occurrence, the same triggering event): one row is kept, the one furthest along (sent, being
  sent or control, then scheduled, then skipped, failed or cancelled; the survivor's on a tie), the
  other deleted, so the person is sent it at most once. When both were sent (or are being sent)
  both are kept as history, the merged one under the occurrence ``<occurrence>~merged:<id>``;
- **triggered and API-triggered campaigns**: the merged profile's pending (scheduled) main-step
  sends are checked against the survivor's history by the enrolment's rules: cancelled when the
  survivor already has one pending, or received one and is not re-eligible (yet). So an
  abandoned-cart reminder the person triggered on two devices is sent once;
- everything else moves as it is; segment-entry records too (where both were recorded in the
  same campaign's segment, the survivor's row stays).

Runs inside the merge transaction, which holds both profile rows ``FOR UPDATE``. It takes no
enrolment lock: a trigger being enrolled at that moment holds its (campaign, person) lock and waits
for the profile row (its insert checks the foreign key), so waiting for its lock here would
deadlock. The race tolerated: a send enrolled for the surviving profile while the merge runs is
not seen by the pending check (the person may get two); one enrolled for the merged profile fails
its foreign key once the merge commits, and the task's retry enrols the survivor by the usual
rules. Idempotent: a second call finds nothing of the merged profile left.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from ..models import DeliveryStatus, DeliveryType
from .triggers import MAIN_STEP

# How far along a delivery is, for keeping one of two with the same key: lower is kept.
_RANK = {
    DeliveryStatus.SENT: 0,
    DeliveryStatus.SENDING: 0,
    DeliveryStatus.CONTROL: 0,
    DeliveryStatus.SCHEDULED: 1,
}
_TERMINAL_RANK = 2
MERGED_SUFFIX = "~merged:"


@dataclass(frozen=True)
class MergeResult:
    moved: int  # deliveries now on the surviving profile
    deleted: int  # duplicates of the same send, dropped
    cancelled: int  # pending sends the survivor already has (or is not re-eligible for)
    segment_entries: int  # segment-entry records moved


def campaigns_profile_merged(*, workspace_id: int, source_id: int, target_id: int) -> MergeResult:
    """Move ``source_id``'s deliveries and segment-entry records to ``target_id`` (see the module
    docstring for what happens to duplicates). Call inside the merge transaction."""
    with connection.cursor() as cursor:
        # The same send on both profiles: keep the one furthest along.
        cursor.execute(
            "SELECT s.id, s.status, t.id, t.status, s.campaign_id, s.occurrence"
            " FROM campaigns_delivery s JOIN campaigns_delivery t ON t.profile_id = %s"
            " AND t.campaign_id = s.campaign_id AND t.step_key = s.step_key AND t.occurrence = s.occurrence"
            " WHERE s.profile_id = %s",
            [target_id, source_id],
        )
        doomed: list[int] = []
        renamed: set[tuple[int, str]] = set()
        for s_id, s_status, t_id, t_status, campaign_id, occurrence in cursor.fetchall():
            s_rank, t_rank = _RANK.get(s_status, _TERMINAL_RANK), _RANK.get(t_status, _TERMINAL_RANK)
            if s_rank == t_rank == 0:
                renamed.add((campaign_id, occurrence))  # both went out: both stay, as history
            else:
                doomed.append(t_id if s_rank < t_rank else s_id)
        if doomed:
            cursor.execute("DELETE FROM campaigns_delivery WHERE id = ANY(%s::bigint[])", [doomed])
        for campaign_id, occurrence in sorted(renamed):
            cursor.execute(
                "UPDATE campaigns_delivery SET occurrence = %s"
                " WHERE profile_id = %s AND campaign_id = %s AND occurrence = %s",
                [f"{occurrence[:200]}{MERGED_SUFFIX}{source_id}", source_id, campaign_id, occurrence],
            )

        # Triggered and API-triggered campaigns: one pending send at a time, and re-eligibility,
        # judged against the survivor's history as enrolment would have.
        cursor.execute(
            "UPDATE campaigns_delivery s SET status = %s, reason = %s"
            " FROM campaigns_campaign c"
            " WHERE s.profile_id = %s AND s.status = %s AND s.step_key = %s"
            " AND c.id = s.campaign_id AND c.delivery_type IN (%s, %s)"
            " AND EXISTS (SELECT 1 FROM campaigns_delivery t WHERE t.profile_id = %s AND t.campaign_id = s.campaign_id"
            "  AND (t.status IN (%s, %s) OR (t.status IN (%s, %s) AND (NOT c.reeligible OR"
            "   coalesce(t.sent_at, t.scheduled_for)"
            "    > s.created_at - make_interval(secs => c.reeligibility_seconds)))))"
            " RETURNING s.id",
            [
                DeliveryStatus.CANCELLED,
                f"merged into profile {target_id}, which already has or had this campaign"[:255],
                source_id,
                DeliveryStatus.SCHEDULED,
                MAIN_STEP,
                DeliveryType.ACTION,
                DeliveryType.API,
                target_id,
                DeliveryStatus.SCHEDULED,
                DeliveryStatus.SENDING,
                DeliveryStatus.SENT,
                DeliveryStatus.CONTROL,
            ],
        )
        cancelled = len(cursor.fetchall())

        cursor.execute("UPDATE campaigns_delivery SET profile_id = %s WHERE profile_id = %s", [target_id, source_id])
        moved = cursor.rowcount

        cursor.execute(
            "DELETE FROM campaigns_segmententrymember s USING campaigns_segmententrymember t"
            " WHERE s.profile_id = %s AND t.profile_id = %s AND t.campaign_id = s.campaign_id"
            " AND t.segment_id = s.segment_id",
            [source_id, target_id],
        )
        cursor.execute(
            "UPDATE campaigns_segmententrymember SET profile_id = %s WHERE profile_id = %s", [target_id, source_id]
        )
        entries = cursor.rowcount
    return MergeResult(moved=moved, deleted=len(doomed), cancelled=cancelled, segment_entries=entries)
