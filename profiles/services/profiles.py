"""Creating and updating a known person's profile from a server (the REST API), and reading one.

Attributes mean what they mean everywhere else (``profiles.traits.normalize_traits``): standard
columns by name or alias, everything else a custom attribute. Columns the platform derives from
events (last seen, session count, platform, ...) cannot be set this way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import (
    CHANNELS_WITH_SUBSCRIPTION,
    AnonymousId,
    Device,
    Event,
    Profile,
    Purchase,
    PushProvider,
    SubscriptionState,
    Workspace,
)
from ..traits import TRAIT_COLUMNS, NormalizedTraits, normalize_traits
from .locks import lock_identities
from .privacy import SuppressedIdentifierError, suppressed_identifiers

MAX_EXTERNAL_ID_LENGTH = 255
MAX_DEVICES_PER_REQUEST = 100

# Profile columns a caller may not set by name: identity, bookkeeping, and what the intake derives
# from events. Refusing them (rather than storing a custom attribute "last_seen") keeps one name
# meaning one thing in segments and templates.
RESERVED_ATTRIBUTES = frozenset(
    {name for f in Profile._meta.concrete_fields for name in (f.name, f.attname)} - TRAIT_COLUMNS
) | {"pk"}

# Device fields a caller may send; device_id identifies the row.
DEVICE_FIELDS = (
    "platform",
    "manufacturer",
    "model",
    "os_name",
    "os_version",
    "app_version",
    "locale",
    "push_provider",
    "push_token",
    "push_enabled",
)
_DEVICE_DEFAULTS: dict[str, Any] = {
    f.name: f.get_default() for f in Device._meta.concrete_fields if f.name in DEVICE_FIELDS
}


def _fold(name: str) -> str:
    # The same folding profiles.traits.column_for applies to standard names.
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def attributes_normalize(attributes: Mapping[str, Any], *, prefix: str) -> NormalizedTraits:
    """``normalize_traits`` plus the rule that platform-maintained columns cannot be set.
    Errors name ``<prefix>.<attribute>``."""
    normalized = normalize_traits(dict(attributes), prefix=prefix)
    for key in attributes:
        if isinstance(key, str) and _fold(key) in RESERVED_ATTRIBUTES:
            normalized.custom.pop(key, None)
            normalized.errors.append(
                (
                    f"{prefix}.{key}",
                    "is the profile's identity; it cannot be set as an attribute"
                    if _fold(key) in {"external_id", "id", "pk", "workspace", "workspace_id"}
                    else "is maintained by the platform from the events apps send and cannot be set",
                )
            )
    return normalized


def external_id_errors(external_id: str) -> list[str]:
    if not external_id or not external_id.strip():
        return ["may not be blank"]
    if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        return [f"must be at most {MAX_EXTERNAL_ID_LENGTH} characters"]
    if "\x00" in external_id:
        return ["may not contain NUL characters"]
    return []


@dataclass
class ProfileUpsertResult:
    profile: Profile
    created: bool


def profile_upsert(
    *,
    workspace: Workspace,
    external_id: str,
    attributes: Mapping[str, Any] | None = None,
    subscriptions: Mapping[str, str] | None = None,
    devices: Sequence[Mapping[str, Any]] = (),
) -> ProfileUpsertResult:
    """Create the profile with this external id, or update it: a merge, never a replacement.

    - ``attributes``: standard attributes by name or alias, and custom attributes (a custom
      attribute set to None is removed; a standard one set to None or "" is cleared).
    - ``subscriptions``: ``{"email"|"push"|"sms": state}``; a channel's ``*_changed_at`` moves to now
      only when its state actually changes. A subscription attribute (``email_subscribe``) counts
      too; ``subscriptions`` wins when both are sent.
    - ``devices``: upserted by ``(workspace, device_id)``; only the fields given change, and a
      device another profile had moves to this one. A push token sent without ``push_enabled``
      enables push (an empty token disables it).

    Raises ``ValidationError`` (``{"field.path": [rule]}``), before writing anything, and
    ``SuppressedIdentifierError`` when the external id belongs to a deleted person. Holds the
    person's identity lock, so it never races the intake into creating the person twice.
    """
    errors: dict[str, list[str]] = {}
    for message in external_id_errors(external_id):
        errors.setdefault("external_id", []).append(message)
    normalized = attributes_normalize(attributes or {}, prefix="attributes")
    for name, message in normalized.errors:
        errors.setdefault(name, []).append(message)
    columns = dict(normalized.columns)
    for channel, state in (subscriptions or {}).items():
        if channel not in CHANNELS_WITH_SUBSCRIPTION:
            errors.setdefault(f"subscriptions.{channel}", []).append(
                f"unknown channel; use {', '.join(CHANNELS_WITH_SUBSCRIPTION)}"
            )
        elif state not in SubscriptionState.values:
            errors.setdefault(f"subscriptions.{channel}", []).append(
                f"must be one of {', '.join(SubscriptionState.values)}"
            )
        else:
            columns[f"{channel}_subscription"] = state
    errors.update(_device_errors(devices))
    if errors:
        raise ValidationError(errors)

    now = timezone.now()
    with transaction.atomic():
        lock_identities(workspace.pk, external_ids=[external_id])
        profile = Profile.objects.select_for_update().filter(workspace=workspace, external_id=external_id).first()
        created = profile is None
        if profile is None:
            # Checked under the lock: a deletion that commits first has recorded its suppression.
            blocked, _ = suppressed_identifiers(workspace_id=workspace.pk, external_ids=[external_id], anonymous_ids=())
            if blocked:
                raise SuppressedIdentifierError("external_id", external_id)
            profile = Profile(workspace=workspace, external_id=external_id)
        changed = _apply(profile, columns=columns, custom=normalized.custom, now=now)
        if created:
            profile.save(force_insert=True)
        elif changed:
            profile.save(update_fields=[*changed, "updated_at"])
        if devices:
            _upsert_devices(profile, devices, now=now)
    return ProfileUpsertResult(profile=profile, created=created)


def _apply(profile: Profile, *, columns: Mapping[str, Any], custom: Mapping[str, Any], now: Any) -> list[str]:
    """Set the columns and merge the custom attributes on the instance; return the fields changed."""
    changed: list[str] = []
    for column, value in columns.items():
        if getattr(profile, column) == value:
            continue
        setattr(profile, column, value)
        changed.append(column)
        if column.endswith("_subscription"):
            setattr(profile, f"{column}_changed_at", now)
            changed.append(f"{column}_changed_at")
    if custom:
        merged = dict(profile.custom_attributes or {})
        for key, value in custom.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if merged != profile.custom_attributes:
            profile.custom_attributes = merged
            changed.append("custom_attributes")
    return changed


def _device_errors(devices: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if len(devices) > MAX_DEVICES_PER_REQUEST:
        return {"devices": [f"at most {MAX_DEVICES_PER_REQUEST} devices per request"]}
    seen: set[str] = set()
    for index, device in enumerate(devices):
        device_id = device.get("device_id")
        if not isinstance(device_id, str) or not device_id.strip():
            errors[f"devices[{index}].device_id"] = ["is required"]
        elif device_id in seen:
            errors[f"devices[{index}].device_id"] = ["appears twice in this request"]
        else:
            seen.add(device_id)
        unknown = sorted(set(device) - {"device_id", *DEVICE_FIELDS})
        for key in unknown:
            errors[f"devices[{index}].{key}"] = [f"unknown device field; known: device_id, {', '.join(DEVICE_FIELDS)}"]
        provider = device.get("push_provider")
        if provider not in (None, "", *PushProvider.values):
            errors[f"devices[{index}].push_provider"] = [f"must be one of {', '.join(PushProvider.values)}"]
    return errors


def _upsert_devices(profile: Profile, devices: Sequence[Mapping[str, Any]], *, now: Any) -> None:
    ids = [str(device["device_id"]) for device in devices]
    # Locks the devices that exist, so their unsent fields are read and written back unchanged.
    # A device the intake creates meanwhile keeps its first_seen (not in the update list); its other
    # unsent fields take their defaults, a race narrow enough to accept.
    existing = {
        device.device_id: device
        for device in Device.objects.select_for_update().filter(workspace_id=profile.workspace_id, device_id__in=ids)
    }
    rows: list[Device] = []
    errors: dict[str, list[str]] = {}
    for index, spec in enumerate(devices):
        device_id = str(spec["device_id"])
        current = existing.get(device_id)
        device = Device(
            workspace_id=profile.workspace_id,
            profile=profile,
            device_id=device_id,
            first_seen=current.first_seen if current else now,
            last_seen=now,
        )
        if current is not None:
            for name in (*DEVICE_FIELDS, "push_disabled_reason"):
                setattr(device, name, getattr(current, name))
        for name in DEVICE_FIELDS:
            if name in spec:
                # An explicit null resets the field to its default ("" or False).
                setattr(device, name, _DEVICE_DEFAULTS[name] if spec[name] is None else spec[name])
        if "push_token" in spec and "push_enabled" not in spec:
            device.push_enabled = bool(device.push_token)
        if current is not None and device.push_token != current.push_token:
            device.push_disabled_reason = ""
        if device.push_enabled and not device.push_token:
            errors[f"devices[{index}].push_enabled"] = ["a device without a push_token cannot be push-enabled"]
        rows.append(device)
    if errors:
        raise ValidationError(errors)
    Device.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["workspace", "device_id"],
        update_fields=["profile", *DEVICE_FIELDS, "push_disabled_reason", "last_seen"],
    )


# --- Selectors -------------------------------------------------------------------------------


def profile_list(*, workspace: Workspace) -> QuerySet[Profile]:
    """Known and anonymous profiles of a workspace; callers filter and paginate."""
    return Profile.objects.filter(workspace=workspace)


def _count_of(model: type[Event] | type[Purchase]) -> Coalesce:
    counts = (
        model.objects.filter(profile_id=OuterRef("pk"))
        .order_by()
        .values("profile_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


def profile_get(*, workspace: Workspace, external_id: str, details: bool = False) -> Profile | None:
    """The known profile with this external id. With ``details``, its devices and anonymous ids are
    prefetched and ``event_count`` / ``purchase_count`` annotated (counted on the per-profile indexes)."""
    profiles = Profile.objects.filter(workspace=workspace, external_id=external_id)
    if details:
        profiles = profiles.prefetch_related(
            Prefetch("devices", queryset=Device.objects.order_by("-last_seen", "id")),
            Prefetch("anonymous_ids", queryset=AnonymousId.objects.order_by("created_at", "id")),
        ).annotate(event_count=_count_of(Event), purchase_count=_count_of(Purchase))
    return profiles.first()
