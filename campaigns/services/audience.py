"""A campaign's audience as one segment definition, compiled by the segments compiler.

Include segments (any or all of them), exclude segments and the extra conditions become one tree::

    {"all": [{"any": [{"type": "segment", "segment_id": 1}, ...]},   # include (or "all")
             {"none": [{"type": "segment", "segment_id": 7}, ...]},  # exclude
             <extra conditions>]}

so the audience means exactly what the same segments mean everywhere else (one compiler, one set
evaluator, one single-profile check), and a launch selects it in one query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.utils import OperationalError
from django.utils import timezone

from segments.compiler import Sql, compile_where, q
from segments.definition import DefinitionError
from segments.evaluator import profile_in_segment
from segments.models import Segment
from segments.selectors import run_set_query
from segments.services import segment_definition_check

from ..models import Campaign, DeliveryType

# The admin shows the audience size on every campaign page; a huge workspace must not hang it.
SIZE_TIMEOUT_MS = 5000


def _segment_ref(segment_id: int) -> dict[str, Any]:
    return {"type": "segment", "segment_id": segment_id}


def _ids(campaign: Campaign) -> tuple[list[int], list[int]]:
    if campaign.pk is None:
        return [], []
    include = sorted(campaign.include_segments.values_list("pk", flat=True))
    exclude = sorted(campaign.exclude_segments.values_list("pk", flat=True))
    return include, exclude


def audience_tree(
    *, include: Sequence[int], include_mode: str, exclude: Sequence[int], extra: Any
) -> dict[str, Any] | None:
    """Include (any or all), exclude and extra conditions as one segment definition; None when
    there is none of the three. The one shape both the launch and the trigger engine use."""
    parts: list[Any] = []
    if include:
        parts.append({include_mode if include_mode in ("any", "all") else "any": [_segment_ref(pk) for pk in include]})
    if exclude:
        parts.append({"none": [_segment_ref(pk) for pk in exclude]})
    if extra:
        parts.append(extra)
    return {"all": parts} if parts else None


def audience_definition(
    campaign: Campaign, *, include: list[int] | None = None, exclude: list[int] | None = None
) -> dict[str, Any] | None:
    """The campaign's audience as a segment definition, or None when it has none (no segment and
    no extra conditions). Exclude segments alone are an audience (everyone but them), which a
    triggered campaign may have; a scheduled one must also include someone (the launch says so).
    ``include``/``exclude`` override the saved segments (the admin form validates before saving)."""
    saved_include, saved_exclude = _ids(campaign)
    return audience_tree(
        include=saved_include if include is None else include,
        include_mode=campaign.include_mode,
        exclude=saved_exclude if exclude is None else exclude,
        extra=campaign.extra_conditions or None,
    )


def _checked_audience(campaign: Campaign) -> tuple[dict[str, Any] | None, bool]:
    """The definition to check people against, and whether to check at all (False: nobody is
    excluded, or, for a scheduled campaign without an include, nobody is in)."""
    include, exclude = _ids(campaign)
    definition = audience_tree(
        include=include, include_mode=campaign.include_mode, exclude=exclude, extra=campaign.extra_conditions or None
    )
    return definition, definition is not None and (
        campaign.delivery_type != DeliveryType.SCHEDULED or bool(include or campaign.extra_conditions)
    )


def audience_has_include(campaign: Campaign) -> bool:
    """Does the audience name who is in it (an include segment or extra conditions), rather than
    only who is not? A scheduled campaign needs this: it is sent to its audience."""
    return bool(_ids(campaign)[0] or campaign.extra_conditions)


def extra_conditions_check(*, workspace_id: int, definition: Any) -> None:
    """Raise ``ValidationError({"extra_conditions": [...]})`` naming every problem of the extra
    conditions (the segments' own validator: structure, values, references)."""
    if not definition:
        return
    try:
        segment_definition_check(workspace_id=workspace_id, definition=definition)
    except ValidationError as error:
        messages = error.message_dict.get("definition", error.messages)
        raise ValidationError({"extra_conditions": messages}) from None


def audience_where(campaign: Campaign, *, now: datetime, alias: str = "p", mode: str = "set") -> Sql:
    """The audience as a boolean over the profile row ``alias`` (``DefinitionError`` if a segment
    it names is gone or broken)."""
    definition = audience_definition(campaign)
    if definition is None:
        raise DefinitionError([])
    return compile_where(
        definition,
        workspace_id=campaign.workspace_id,
        now=now,
        alias=alias,
        mode="single" if mode == "single" else "set",
    )


def audience_sql(campaign: Campaign, *, now: datetime) -> Sql:
    """``SELECT p.id FROM profiles_profile p WHERE <in the audience>`` (the set evaluator)."""
    return q(
        "SELECT p.id FROM profiles_profile p WHERE p.workspace_id = {} AND {}",
        campaign.workspace_id,
        audience_where(campaign, now=now),
    )


@dataclass(frozen=True)
class AudienceSize:
    count: int | None  # None: unknown (no audience yet, or the count took too long)
    note: str = ""

    def __str__(self) -> str:
        if self.count is None:
            return self.note
        return f"{self.count:,}{f' ({self.note})' if self.note else ''}"


def audience_size(*, campaign: Campaign, now: datetime | None = None) -> AudienceSize:
    """How many people are in the audience now (before reachability, control group and
    ``max_recipients``), counted by one query with a time limit."""
    now = now or timezone.now()
    definition, check = _checked_audience(campaign)
    if campaign.delivery_type == DeliveryType.API and definition is None:
        return AudienceSize(None, "the API call names the recipients")
    if campaign.delivery_type == DeliveryType.ACTION and definition is None:
        return AudienceSize(None, "everyone who performs the trigger")
    if not check:
        return AudienceSize(None, "no audience yet: choose segments to include or conditions")
    try:
        sql = q("SELECT count(*) FROM ({}) AS audience", audience_sql(campaign, now=now))
    except DefinitionError as error:
        return AudienceSize(None, f"the audience cannot be evaluated: {error}")
    try:
        # A whole-workspace query like a segment's size: with the settings those need (JIT off).
        rows = run_set_query(sql, timeout_ms=SIZE_TIMEOUT_MS)
        row = rows[0] if rows else None
    except OperationalError:
        return AudienceSize(None, "unknown: counting took longer than 5 seconds")
    count = int(row[0]) if row else 0
    if campaign.max_recipients is not None and count > campaign.max_recipients:
        return AudienceSize(campaign.max_recipients, f"capped at max recipients; {count:,} match")
    return AudienceSize(count)


def profile_in_audience(*, campaign: Campaign, profile_id: int, now: datetime | None = None) -> bool:
    """Is this person in the campaign's audience right now (the single-profile check)? A triggered
    or API-triggered campaign without an audience lets everyone in (whoever triggers it, whoever
    the call names), and with exclude segments alone everyone but them; a scheduled campaign
    without an include segment or conditions reaches nobody."""
    return profile_id in audience_members_among(campaign=campaign, profile_ids=[profile_id], now=now)


def audience_members_among(*, campaign: Campaign, profile_ids: Iterable[int], now: datetime | None = None) -> set[int]:
    """Which of ``profile_ids`` are in the audience now: one query for the lot (the single-profile
    form of the definition, correlated on each row, so it reads only these people's rows). The
    sender's re-check at send time goes through here."""
    ids = sorted(set(profile_ids))
    if not ids:
        return set()
    definition, check = _checked_audience(campaign)
    if not check:
        return set(ids) if campaign.delivery_type != DeliveryType.SCHEDULED else set()
    assert definition is not None
    where = compile_where(definition, workspace_id=campaign.workspace_id, now=now or timezone.now(), mode="single")
    sql = q(
        "SELECT p.id FROM profiles_profile p WHERE p.id = ANY({}) AND p.workspace_id = {} AND {}",
        ids,
        campaign.workspace_id,
        where,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql.text, sql.params)
        return {row[0] for row in cursor.fetchall()}


def audience_explain(*, campaign: Campaign, profile_id: int, now: datetime | None = None) -> list[str]:
    """Why a person is outside the audience, part by part ("not in segment "VIP""...); empty
    when they are in it."""
    now = now or timezone.now()
    include, exclude = _ids(campaign)
    segments = {s.pk: s for s in Segment.objects.filter(pk__in=[*include, *exclude])}
    reasons: list[str] = []
    if include:
        inside = [pk for pk in include if pk in segments and profile_in_segment(
            profile_id=profile_id, segment=segments[pk], now=now
        )]  # fmt: skip
        names = ", ".join(f'"{segments[pk].name}"' for pk in include if pk in segments)
        if campaign.include_mode == "all" and len(inside) < len(include):
            missing = ", ".join(f'"{segments[pk].name}"' for pk in include if pk in segments and pk not in inside)
            reasons.append(f"not in audience: not in segment {missing} (all of {names} are required)")
        elif campaign.include_mode != "all" and not inside:
            reasons.append(f"not in audience: in none of the segments {names}")
    for pk in exclude:
        if pk in segments and profile_in_segment(profile_id=profile_id, segment=segments[pk], now=now):
            reasons.append(f'not in audience: in the excluded segment "{segments[pk].name}"')
    if campaign.extra_conditions:
        sql = q(
            "SELECT {} FROM profiles_profile p WHERE p.id = {}",
            compile_where(campaign.extra_conditions, workspace_id=campaign.workspace_id, now=now, mode="single"),
            profile_id,
        )
        with connection.cursor() as cursor:
            cursor.execute(sql.text, sql.params)
            row = cursor.fetchone()
        if not (row and row[0]):
            reasons.append("not in audience: does not match the campaign's extra conditions")
    return reasons
