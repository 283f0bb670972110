"""Reads for the campaign builder: progress counts, message previews for a person, profile look-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from channels.rendering import Aborted, RenderFailed, render_content
from profiles.models import Profile

from .models import Campaign, ChannelMessage, DeliveryStatus, DeliveryType, Variant

# The progress panel lists this many reasons per status; the rest are summed as "other reasons".
TOP_REASONS = 15


@dataclass
class StepProgress:
    step_key: str
    counts: dict[str, int] = field(default_factory=dict)  # status -> deliveries
    reasons: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # status -> [(reason, n)], biggest first

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


@dataclass
class Progress:
    """Where a campaign's deliveries stand: the main step (``targeted`` = everyone it reached,
    control group included) and each follow-up step."""

    main: StepProgress
    follow_ups: list[StepProgress]

    @property
    def targeted(self) -> int:
        return self.main.total

    def rows(self) -> list[tuple[str, int]]:
        order = [
            ("sent", DeliveryStatus.SENT),
            ("failed", DeliveryStatus.FAILED),
            ("skipped", DeliveryStatus.SKIPPED),
            ("control group", DeliveryStatus.CONTROL),
            ("cancelled", DeliveryStatus.CANCELLED),
            ("scheduled", DeliveryStatus.SCHEDULED),
            ("sending", DeliveryStatus.SENDING),
        ]
        return [(label, self.main.count(status)) for label, status in order]


def campaign_progress(*, campaign: Campaign) -> Progress:
    """One grouped query over the campaign's deliveries (by step, status and reason), served by
    the (campaign, status) index."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT step_key, status, reason, count(*) FROM campaigns_delivery WHERE campaign_id = %s"
            " GROUP BY step_key, status, reason ORDER BY count(*) DESC",
            [campaign.pk],
        )
        rows = cursor.fetchall()
    steps: dict[str, StepProgress] = {}
    for step_key, status, reason, count in rows:
        step = steps.setdefault(step_key, StepProgress(step_key))
        step.counts[status] = step.counts.get(status, 0) + count
        if reason and status in (DeliveryStatus.SKIPPED, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED,
                                 DeliveryStatus.SCHEDULED, DeliveryStatus.SENT):  # fmt: skip
            step.reasons.setdefault(status, []).append((reason, count))
    for step in steps.values():
        for status, reasons in step.reasons.items():
            if len(reasons) > TOP_REASONS:
                other = sum(count for _, count in reasons[TOP_REASONS:])
                step.reasons[status] = [*reasons[:TOP_REASONS], ("other reasons", other)]
    main = steps.pop("main", StepProgress("main"))
    return Progress(main=main, follow_ups=[steps[key] for key in sorted(steps)])


def profile_find(*, workspace_id: int, identifier: str) -> Profile | None:
    """A profile of the workspace by external id, else by email (both indexed), else by id."""
    identifier = identifier.strip()
    if not identifier:
        return None
    found = Profile.objects.filter(workspace_id=workspace_id, external_id=identifier).first()
    if found is None and "@" in identifier:
        found = Profile.objects.filter(workspace_id=workspace_id, email=identifier).order_by("pk").first()
    if found is None and identifier.lstrip("#").isdigit():
        found = Profile.objects.filter(workspace_id=workspace_id, pk=int(identifier.lstrip("#"))).first()
    return found


@dataclass
class PreviewItem:
    variant: Variant
    message: ChannelMessage
    content: dict[str, Any] | None = None
    aborted: str = ""
    error: str = ""


def campaign_preview(
    *, campaign: Campaign, profile: Profile, properties: dict[str, Any] | None = None
) -> list[PreviewItem]:
    """Every message of every variant rendered for ``profile`` (trigger or API properties from
    ``properties``), as the sender would render it."""
    items = []
    action = campaign.delivery_type == DeliveryType.ACTION
    api = campaign.delivery_type == DeliveryType.API
    for variant in campaign.variants.order_by("key").prefetch_related("messages"):
        for message in sorted(variant.messages.all(), key=lambda m: (m.position, m.pk)):
            result = render_content(
                channel=message.channel,
                template=message.template,
                profile=profile,
                event_properties=properties if action else None,
                api_trigger_properties=properties if api else None,
                campaign={"id": campaign.pk, "name": campaign.name, "tags": list(campaign.tags),
                          "variant": variant.key, "variant_name": variant.name or variant.key, "send_id": "preview"},
            )  # fmt: skip
            item = PreviewItem(variant=variant, message=message)
            if isinstance(result, Aborted):
                item.aborted = result.reason or "aborted by the template"
            elif isinstance(result, RenderFailed):
                item.error = result.reason
            else:
                item.content = result
            items.append(item)
    return items
