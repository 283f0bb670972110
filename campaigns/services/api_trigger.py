"""API-triggered campaigns: a server names the recipients (up to 50 external ids, each with its own
trigger properties, or a segment) and the campaign goes to them now, its content personalised with
``{{ api_trigger_properties.* }}``.

Idempotency: every call is kept as an ``ApiTriggerRequest`` under its idempotency key (the
caller's, or a fresh one). The row is inserted with ``ON CONFLICT DO NOTHING`` in the same
transaction as the deliveries, so a repeated key, even racing the first call, waits for it and then
answers the first call's result without sending anything new. The key is also each delivery's
occurrence, so the unique delivery key backs this up.

Deliveries go through the same enrolment as triggered sends (``triggers.enrol``): the campaign's
audience (when it has one), re-eligibility, variant or control group, its delay if any.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from profiles.models import Profile
from profiles.services.identity import dumps
from segments.models import Segment
from segments.selectors import segment_members

from ..models import ApiTriggerRequest, Campaign, CampaignStatus, DeliveryType
from .triggers import Candidate, Outcome, campaign_rules, enrol

MAX_RECIPIENTS = 50
SEGMENT_PAGE = 1000
UNKNOWN = "unknown_external_id"


class TriggerRefused(Exception):
    """The campaign cannot be triggered now (not API-triggered, not running), or the idempotency
    key was used before with another body. ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Recipient:
    external_id: str
    trigger_properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TriggerAnswer:
    result: dict[str, Any]
    replayed: bool


def _occurrence(key: str) -> str:
    return f"api:{key}"[:255]


def _check(campaign: Campaign) -> None:
    if campaign.delivery_type != DeliveryType.API:
        raise TriggerRefused(
            "not_api_triggered",
            f"Campaign {campaign.pk} is {campaign.get_delivery_type_display().lower()}, not API-triggered.",
        )
    if campaign.status != CampaignStatus.RUNNING:
        raise TriggerRefused(
            "campaign_not_running",
            f"Campaign {campaign.pk} is {campaign.status}; only a running campaign can be triggered.",
        )


def _claim_key(campaign: Campaign, key: str, payload: dict[str, Any]) -> int | None:
    """Insert the request row; its id, or None if the key was used before (after waiting for a
    concurrent first call to commit, as the unique index makes a conflicting insert do)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_apitriggerrequest (campaign_id, idempotency_key, payload, created_at, result)"
            " VALUES (%s, %s, %s::jsonb, %s, '{}'::jsonb) ON CONFLICT (campaign_id, idempotency_key) DO NOTHING"
            " RETURNING id",
            [campaign.pk, key, dumps(payload), timezone.now()],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _replay(campaign: Campaign, key: str, payload: dict[str, Any]) -> TriggerAnswer:
    previous = ApiTriggerRequest.objects.get(campaign=campaign, idempotency_key=key)
    if previous.payload != payload:
        raise TriggerRefused(
            "idempotency_key_reused",
            f"The idempotency key {key!r} was used for a different request to this campaign; use a new key.",
        )
    return TriggerAnswer(result=previous.result, replayed=True)


def campaign_api_trigger(
    *,
    campaign: Campaign,
    recipients: Sequence[Recipient] | None = None,
    segment_id: int | None = None,
    trigger_properties: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> TriggerAnswer:
    """Send an API-triggered campaign to ``recipients`` (external ids) or to a segment's members.

    Returns the result to answer (counts, and per recipient what happened) and whether it is the
    replay of an earlier call with the same key. Recipients are enrolled now, in this call; a
    segment is enrolled in the background a page at a time (the answer says it is queued).
    Raises ``TriggerRefused`` when the campaign cannot be triggered, ``ValueError`` for a request
    that names both or neither of recipients and segment (the API validates before calling).
    """
    from ..tasks_triggers import api_trigger_segment_task

    if (recipients is None) == (segment_id is None):
        raise ValueError("name either recipients or a segment")
    if recipients is not None and not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(f"recipients: 1 to {MAX_RECIPIENTS} per call")
    _check(campaign)
    properties = dict(trigger_properties or {})
    key = idempotency_key or uuid.uuid4().hex
    payload: dict[str, Any] = {"trigger_properties": properties}
    if recipients is not None:
        payload["recipients"] = [
            {"external_id": r.external_id, "trigger_properties": dict(r.trigger_properties)} for r in recipients
        ]
    else:
        payload["segment_id"] = segment_id

    segment: Segment | None = None
    if segment_id is not None:
        segment = Segment.objects.filter(workspace_id=campaign.workspace_id, pk=segment_id).first()
        if segment is None:
            raise TriggerRefused("unknown_segment", f"segment_id: no segment {segment_id} in this workspace.")

    with transaction.atomic():
        request_id = _claim_key(campaign, key, payload)
        if request_id is None:
            return _replay(campaign, key, payload)
        if segment is not None:
            result: dict[str, Any] = {
                "campaign_id": campaign.pk,
                "idempotency_key": key,
                "segment_id": segment.pk,
                "status": "queued",
            }
            ApiTriggerRequest.objects.filter(pk=request_id).update(result={**result, "after_id": 0, "counts": {}})
            transaction.on_commit(lambda: api_trigger_segment_task.delay(request_id))
            return TriggerAnswer(result=result, replayed=False)

        assert recipients is not None
        external_ids = sorted({r.external_id for r in recipients})
        profiles = dict(
            Profile.objects.filter(workspace_id=campaign.workspace_id, external_id__in=external_ids).values_list(
                "external_id", "id"
            )
        )
        rules = campaign_rules(campaign)
        now = timezone.now()
        occurrence = _occurrence(key)
        candidates = [
            Candidate(
                campaign_id=campaign.pk,
                profile_id=profiles[r.external_id],
                occurrence=occurrence,
                base=now,
                properties={**properties, **dict(r.trigger_properties)},
            )
            for r in recipients
            if r.external_id in profiles
        ]
        enrolled = enrol(
            workspace_id=campaign.workspace_id, rules_by_id={campaign.pk: rules}, candidates=candidates, now=now
        )
        answers = []
        counts: dict[str, int] = {}
        seen: set[str] = set()
        for r in recipients:
            if r.external_id not in profiles:
                status = UNKNOWN
            elif r.external_id in seen:
                status = Outcome.DUPLICATE
            else:
                status = enrolled.outcomes.get((campaign.pk, profiles[r.external_id], occurrence), Outcome.DUPLICATE)
            seen.add(r.external_id)
            answers.append({"external_id": r.external_id, "status": status})
            counts[status] = counts.get(status, 0) + 1
        result = {
            "campaign_id": campaign.pk,
            "idempotency_key": key,
            "status": "done",
            "counts": counts,
            "recipients": answers,
        }
        ApiTriggerRequest.objects.filter(pk=request_id).update(result=result)
    return TriggerAnswer(result=result, replayed=False)


def api_trigger_segment_run(*, request_id: int) -> bool:
    """Enrol the next page of a segment-addressed API trigger; True while pages remain.

    The request row is locked for the page, so a duplicate task waits and then continues after
    the page this one did (or finds the work finished)."""
    with transaction.atomic():
        request = ApiTriggerRequest.objects.select_for_update().select_related("campaign").filter(pk=request_id).first()
        if request is None or request.result.get("status") != "queued":
            return False
        campaign = request.campaign
        state = dict(request.result)
        if campaign.status != CampaignStatus.RUNNING:
            state["status"] = "stopped"
            state["reason"] = f"the campaign is {campaign.status}"
            ApiTriggerRequest.objects.filter(pk=request_id).update(result=state)
            return False
        segment = Segment.objects.filter(
            workspace_id=campaign.workspace_id, pk=int(state.get("segment_id") or 0)
        ).first()
        if segment is None:
            state["status"] = "stopped"
            state["reason"] = "the segment was deleted"
            ApiTriggerRequest.objects.filter(pk=request_id).update(result=state)
            return False
        now = timezone.now()
        page = segment_members(segment=segment, after_id=int(state.get("after_id") or 0), limit=SEGMENT_PAGE, now=now)
        properties = dict(request.payload.get("trigger_properties") or {})
        occurrence = _occurrence(request.idempotency_key)
        enrolled = enrol(
            workspace_id=campaign.workspace_id,
            rules_by_id={campaign.pk: campaign_rules(campaign)},
            candidates=[
                Candidate(campaign_id=campaign.pk, profile_id=p, occurrence=occurrence, base=now, properties=properties)
                for p in page
            ],
            now=now,
        )
        counts: dict[str, int] = dict(state.get("counts") or {})
        for outcome in enrolled.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        state["counts"] = counts
        if page:
            state["after_id"] = page[-1]
        more = len(page) == SEGMENT_PAGE
        if not more:
            state["status"] = "done"
        ApiTriggerRequest.objects.filter(pk=request_id).update(result=state)
    return more
