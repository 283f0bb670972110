"""Admin for people and what they did: profiles (the profile page), events, devices, merges and
suppressions.

Profiles, events and devices are the big tables (millions of rows), so their lists never count
the whole table, show one workspace at a time, sort only on indexed columns and search only by
exact match on indexed columns. The profile page's reads live in ``profiles.selectors``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.db.models.expressions import Combinable
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..models import AnonymousId, Device, Event, Profile, ProfileMerge, Suppression, Workspace
from ..selectors import (
    TimelineCursor,
    profile_anonymous_ids,
    profile_merges_in,
    profile_timeline,
)
from ..services.privacy import profile_delete, suppression_hash
from ..traits import SUBSCRIPTION_COLUMNS, TRAIT_COLUMNS, normalize_phone, normalize_traits
from .mixins import (
    BigTableAdminMixin,
    WorkspaceScopedAdminMixin,
    WorkspaceScopedRelatedFilter,
    WorkspaceSwitcherFilter,
    json_compact,
    json_pretty,
    user_workspace_ids,
    user_workspaces,
)

TIMELINE_BEFORE_PARAM = "events_before"
TIMELINE_AFTER_PARAM = "events_after"
PROPERTIES_PREVIEW_CHARS = 160


def _pretty_json_block(value: Any) -> SafeString:
    return format_html('<pre class="engage-json">{}</pre>', json_pretty(value))


def _compact_json(value: Any) -> SafeString:
    """Compact JSON, cut at a preview length with the whole value one click away."""
    if not value:
        return mark_safe('<span class="quiet">—</span>')
    text = json_compact(value)
    if len(text) <= PROPERTIES_PREVIEW_CHARS:
        return format_html('<code class="engage-json-inline">{}</code>', text)
    return format_html(
        '<details><summary><code class="engage-json-inline">{}…</code></summary>{}</details>',
        text[:PROPERTIES_PREVIEW_CHARS],
        _pretty_json_block(value),
    )


def _attribute_value(value: Any) -> SafeString:
    """A custom attribute as a person reads it: text as text, objects as indented JSON."""
    if value is None:
        return mark_safe('<span class="quiet">null</span>')
    if isinstance(value, bool):
        return format_html("{}", "true" if value else "false")
    if isinstance(value, str | int | float):
        return format_html("{}", value)
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return format_html_join(", ", "<span>{}</span>", ((item,) for item in value))
    return _pretty_json_block(value)


# ---------------------------------------------------------------------------------------------
# Profile list filters. Each is a fixed list, so rendering the sidebar never scans the table.
# ---------------------------------------------------------------------------------------------

# The markets most lists are filtered by; any other code works as ?country=XX.
COMMON_COUNTRIES = (
    ("US", "United States"),
    ("GB", "United Kingdom"),
    ("CA", "Canada"),
    ("AU", "Australia"),
    ("DE", "Germany"),
    ("FR", "France"),
    ("ES", "Spain"),
    ("IT", "Italy"),
    ("NL", "Netherlands"),
    ("SE", "Sweden"),
    ("BR", "Brazil"),
    ("MX", "Mexico"),
    ("IN", "India"),
    ("JP", "Japan"),
    ("KR", "South Korea"),
    ("SG", "Singapore"),
    ("AE", "United Arab Emirates"),
    ("ZA", "South Africa"),
)


class CountryFilter(admin.SimpleListFilter):
    title = "country"
    parameter_name = "country"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = list(COMMON_COUNTRIES)
        current = (self.value() or "").upper()
        if len(current) == 2 and current.isalpha() and current not in dict(choices):
            choices.append((current, current))
        return [*choices, ("none", "Unknown")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").upper()
        if value == "NONE":
            return queryset.filter(country="")
        if len(value) == 2 and value.isalpha():
            return queryset.filter(country=value)
        return queryset


class IdentityFilter(admin.SimpleListFilter):
    title = "identity"
    parameter_name = "identity"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("known", "Known (has an external id)"), ("anonymous", "Anonymous")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "known":
            return queryset.filter(external_id__isnull=False)
        if self.value() == "anonymous":
            return queryset.filter(external_id__isnull=True)
        return queryset


class LastSeenFilter(admin.SimpleListFilter):
    """Ranges on last_seen (a filter over the newest-first walk of the primary key)."""

    title = "last seen"
    parameter_name = "seen"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("7d", "In the last 7 days"),
            ("30d", "In the last 30 days"),
            ("90d", "In the last 90 days"),
            ("lapsed", "Not in the last 90 days"),
            ("never", "Never"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        value = self.value()
        if value in {"7d", "30d", "90d"}:
            return queryset.filter(last_seen__gte=now - timedelta(days=int(value[:-1])))
        if value == "lapsed":
            return queryset.filter(last_seen__lt=now - timedelta(days=90))
        if value == "never":
            return queryset.filter(last_seen__isnull=True)
        return queryset


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def _labelled(field_name: str, label: str) -> Callable[[Any, Any], Any]:
    """A read-only display of a model field under a label that reads better than its column name."""

    @admin.display(description=label)
    def display(self: Any, obj: Any) -> Any:
        value = getattr(obj, field_name)
        return None if value == "" else value  # None shows as the admin's empty placeholder

    return display


# What a person edits on the profile page: the standard attributes apps send as traits. Identity
# (external id), what the SDK observes (device, app, location fixes, sessions) and first-touch
# acquisition are read-only: they are facts, not settings.
EDITABLE_PROFILE_FIELDS = tuple(
    name
    for name in (
        "first_name",
        "last_name",
        "email",
        "phone",
        "gender",
        "date_of_birth",
        "language",
        "country",
        "region",
        "city",
        "time_zone",
        *SUBSCRIPTION_COLUMNS,
    )
    if name in TRAIT_COLUMNS
)


class ProfileForm(forms.ModelForm):
    """Runs changed attributes through ``normalize_traits``, the same rules as the intake, the API
    and the CSV import: an email is stored lower-case, a phone in E.164, a country upper-case."""

    class Meta:
        model = Profile
        fields = EDITABLE_PROFILE_FIELDS

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in self.changed_data:
            if name not in TRAIT_COLUMNS or name not in cleaned:
                continue
            value = cleaned[name]
            if hasattr(value, "isoformat"):
                value = value.isoformat()
            normalized = normalize_traits({name: value})
            for _field, message in normalized.errors:
                self.add_error(name, f"This {message}." if not message.endswith(".") else message)
            if name in normalized.columns:
                cleaned[name] = normalized.columns[name]
        return cleaned


class DeviceInline(WorkspaceScopedAdminMixin, admin.TabularInline):
    """The person's devices, read-only (the SDKs own them)."""

    model = Device
    fields = ("platform", "device", "os", "app_version", "push_provider", "push_enabled", "last_seen")
    readonly_fields = fields
    ordering = ("-last_seen",)
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Devices are part of the profile page: whoever may see the profile sees them.
        user = request.user
        return (
            user.has_perm("profiles.view_device")
            or user.has_perm("profiles.view_profile")
            or (user.has_perm("profiles.change_profile"))
        )

    @admin.display(description="device")
    def device(self, device: Device) -> str:
        return " ".join(part for part in (device.manufacturer, device.model) if part) or device.device_id[:24]

    @admin.display(description="OS")
    def os(self, device: Device) -> str:
        return " ".join(part for part in (device.os_name, device.os_version) if part) or "—"


@admin.register(Profile)
class ProfileAdmin(BigTableAdminMixin, WorkspaceScopedAdminMixin, admin.ModelAdmin):
    form = ProfileForm
    list_display = (
        "name_column",
        "external_id_column",
        "email",
        "country",
        "platform",
        "last_seen",
        "session_count",
        "email_subscription",
    )
    list_display_links = ("name_column",)
    list_select_related = ("workspace",)
    list_filter = (
        WorkspaceSwitcherFilter,
        IdentityFilter,
        LastSeenFilter,
        "platform",
        CountryFilter,
        "email_subscription",
        "push_subscription",
        "sms_subscription",
    )
    list_per_page = 50
    # Newest profiles first, by primary key. There is deliberately no index on last_seen: every
    # event changes it, and an index there would make each of the intake's profile updates write
    # every index instead of staying heap-only (see profiles migration 0002).
    ordering = ("-pk",)
    indexed_sort_fields = ()
    # get_search_results does the searching; this only makes the admin draw the search box.
    search_fields = ("=external_id",)
    search_help_text = (
        "Exact match: an external id, an email address, a phone number (any format), an anonymous id, "
        "or #123 for a profile id."
    )
    inlines = (DeviceInline,)
    readonly_fields = (
        "workspace",
        "external_id_display",
        "anonymous_ids_display",
        "locale",
        "latitude",
        "longitude",
        "last_ip_display",
        "platform",
        "app_version",
        "first_seen",
        "last_seen",
        "session_count",
        "utm_source_display",
        "utm_medium_display",
        "utm_campaign_display",
        "utm_content_display",
        "utm_term_display",
        "email_subscription_changed_at",
        "push_subscription_changed_at",
        "sms_subscription_changed_at",
        "custom_attributes_display",
        "id",
        "random_bucket",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (
            "Identity",
            {"fields": ("workspace", "external_id_display", "anonymous_ids_display", "first_name", "last_name")},
        ),
        ("Contact", {"fields": ("email", "phone")}),
        ("Demographics", {"fields": ("gender", "date_of_birth", "language", "locale")}),
        (
            "Location",
            {"fields": ("country", "region", "city", "time_zone", ("latitude", "longitude"), "last_ip_display")},
        ),
        ("App usage", {"fields": ("platform", "app_version", ("first_seen", "last_seen"), "session_count")}),
        (
            "Acquisition (first touch)",
            {
                "fields": (
                    "utm_source_display",
                    "utm_medium_display",
                    "utm_campaign_display",
                    "utm_content_display",
                    "utm_term_display",
                ),
                "description": "The UTM parameters of the first event that carried any; never overwritten.",
            },
        ),
        (
            "Subscriptions",
            {
                "fields": (
                    ("email_subscription", "email_subscription_changed_at"),
                    ("push_subscription", "push_subscription_changed_at"),
                    ("sms_subscription", "sms_subscription_changed_at"),
                ),
                "description": "Subscribed is the default; opted in is explicit consent; unsubscribed is an "
                "explicit opt-out. Changing a state here records when it changed.",
            },
        ),
        ("Custom attributes", {"fields": ("custom_attributes_display",)}),
        ("Record", {"fields": ("id", "random_bucket", ("created_at", "updated_at")), "classes": ("collapse",)}),
    )

    last_ip_display = _labelled("last_ip", "last IP address")
    utm_source_display = _labelled("utm_source", "source")
    utm_medium_display = _labelled("utm_medium", "medium")
    utm_campaign_display = _labelled("utm_campaign", "campaign")
    utm_content_display = _labelled("utm_content", "content")
    utm_term_display = _labelled("utm_term", "term")

    # --- list -----------------------------------------------------------------------------------

    @admin.display(description="name")
    def name_column(self, profile: Profile) -> str:
        return " ".join(part for part in (profile.first_name, profile.last_name) if part) or "—"

    @admin.display(description="external id")
    def external_id_column(self, profile: Profile) -> str:
        if profile.external_id is None:
            return format_html('<span class="quiet">anonymous #{}</span>', profile.pk)
        return profile.external_id

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Profile], search_term: str
    ) -> tuple[QuerySet[Profile], bool]:
        """Exact matches on indexed columns only, never a ``LIKE`` scan: each branch of the OR is an
        index lookup within the workspace, and PostgreSQL ORs them with a bitmap."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(external_id=term)
        if "@" in term:
            match |= Q(email=term.lower())  # stored lower-case by every writer (normalize_traits)
        phone = normalize_phone(term)
        if phone is not None:
            match |= Q(phone=phone)
        if term.startswith("#") and term[1:].isdigit():
            match |= Q(pk=int(term[1:]))
        # Resolved first (one lookup on the (workspace, anonymous_id) unique index) so the OR stays a
        # list of ids rather than a subquery, which would defeat the bitmap OR.
        ids = user_workspace_ids(request)
        workspace_ids = list(Workspace.objects.values_list("pk", flat=True)) if ids is None else ids
        anonymous_profile_ids = list(
            AnonymousId.objects.filter(workspace_id__in=workspace_ids, anonymous_id=term).values_list(
                "profile_id", flat=True
            )[:100]
        )
        if anonymous_profile_ids:
            match |= Q(pk__in=anonymous_profile_ids)
        return queryset.filter(match), False

    # --- profile page ---------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        # People arrive through the SDKs, the REST API or a CSV import, which resolve identities.
        return False

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Erase a person through ``profile_delete`` (which also suppresses their identifiers).

        Replaces the stock view, which would cascade without suppressing and, before that, list
        every one of the person's events on its confirmation page."""
        profile = self.get_object(request, unquote(object_id))  # 404 outside the user's workspaces
        if not self.has_delete_permission(request, profile):
            raise PermissionDenied
        if request.method == "POST":
            self.log_deletions(request, Profile.objects.filter(pk=profile.pk))
            result = profile_delete(profile=profile)
            messages.success(
                request,
                f"{profile.display_name} was deleted: {result.events} events, {result.devices} devices and "
                f"{result.anonymous_ids} anonymous ids removed; {result.suppressed_identifiers} identifiers "
                "suppressed so that person cannot come back through the SDKs, the API or an import.",
            )
            return HttpResponseRedirect(reverse("admin:profiles_profile_changelist"))
        context = {
            **self.admin_site.each_context(request),
            **(extra_context or {}),
            "title": "Delete this person?",
            "opts": self.opts,
            "profile": profile,
            "change_url": reverse("admin:profiles_profile_change", args=[profile.pk]),
        }
        return TemplateResponse(request, "admin/profiles/profile/delete_person.html", context)

    @admin.display(description="external id")
    def external_id_display(self, profile: Profile) -> str:
        if profile.external_id is None:
            return "anonymous (no external id yet)"
        return format_html("<code>{}</code>", profile.external_id)

    @admin.display(description="anonymous ids")
    def anonymous_ids_display(self, profile: Profile) -> str:
        anonymous_ids, more = profile_anonymous_ids(profile=profile)
        if not anonymous_ids:
            return "—"
        items = format_html_join(
            "",
            "<li><code>{}</code> <span class='quiet'>since {}</span></li>",
            ((row.anonymous_id, row.created_at.strftime("%Y-%m-%d")) for row in anonymous_ids),
        )
        suffix = (
            format_html("<li class='quiet'>(only the {} most recent are shown)</li>", len(anonymous_ids))
            if more
            else ""
        )
        return format_html('<ul class="engage-plain-list">{}{}</ul>', items, suffix)

    @admin.display(description="attributes")
    def custom_attributes_display(self, profile: Profile) -> str:
        attributes = profile.custom_attributes
        if not isinstance(attributes, dict) or not attributes:
            return "None yet."
        rows = format_html_join(
            "",
            "<tr><th scope='row'><code>{}</code></th><td>{}</td></tr>",
            ((key, _attribute_value(attributes[key])) for key in sorted(attributes)),
        )
        return format_html('<table class="engage-attributes"><tbody>{}</tbody></table>', rows)

    def save_model(self, request: HttpRequest, obj: Profile, form: forms.ModelForm, change: bool) -> None:
        # Write only what the form changed: the intake updates the same row all the time (last seen,
        # sessions, custom attributes), and a full-row save would put back what it read a moment ago.
        changed = [name for name in form.changed_data if name in EDITABLE_PROFILE_FIELDS]
        now = timezone.now()
        for column in SUBSCRIPTION_COLUMNS:
            if column in changed:
                setattr(obj, f"{column}_changed_at", now)
                changed.append(f"{column}_changed_at")
        if changed:
            obj.save(update_fields=[*changed, "updated_at"])

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Profile | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(self._profile_page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _profile_page_context(self, request: HttpRequest, profile: Profile) -> dict[str, Any]:
        page = profile_timeline(
            profile=profile,
            before=TimelineCursor.decode(request.GET.get(TIMELINE_BEFORE_PARAM)),
            after=TimelineCursor.decode(request.GET.get(TIMELINE_AFTER_PARAM)),
        )
        merges, more_merges = profile_merges_in(profile=profile)
        return {
            "title": profile.display_name,
            "subtitle": None,
            "profile_summary": {
                "identity": profile.external_id or "anonymous",
                "is_anonymous": profile.external_id is None,
                "workspace": profile.workspace,
                "last_seen": profile.last_seen,
                "first_seen": profile.first_seen,
                "session_count": profile.session_count,
                "email": profile.email,
                "phone": profile.phone,
            },
            "timeline": [
                {
                    "event": event,
                    "app": event.app,
                    "properties": _compact_json(event.properties),
                }
                for event in page.events
            ],
            "timeline_is_first_page": not (
                request.GET.get(TIMELINE_BEFORE_PARAM) or request.GET.get(TIMELINE_AFTER_PARAM)
            ),
            "timeline_newest_url": self._timeline_url(request, None, None),
            "timeline_older_url": self._timeline_url(request, TIMELINE_BEFORE_PARAM, page.older),
            "timeline_newer_url": self._timeline_url(request, TIMELINE_AFTER_PARAM, page.newer),
            "merges": [
                {
                    "merge": merge,
                    "moved": _compact_json(merge.moved),
                    "snapshot": _pretty_json_block(merge.merged_snapshot),
                }
                for merge in merges
            ],
            "more_merges": more_merges,
        }

    @staticmethod
    def _timeline_url(request: HttpRequest, param: str | None, cursor: TimelineCursor | None) -> str | None:
        if param is not None and cursor is None:
            return None
        query = request.GET.copy()
        query.pop(TIMELINE_BEFORE_PARAM, None)
        query.pop(TIMELINE_AFTER_PARAM, None)
        if param is not None and cursor is not None:
            query[param] = cursor.encode()
        encoded = query.urlencode()
        return f"?{encoded}#timeline" if encoded else "?#timeline"


# ---------------------------------------------------------------------------------------------
# Events, devices, merges, suppressions
# ---------------------------------------------------------------------------------------------


class ReadOnlyAdminMixin:
    """Rows written only by the system: staff may look, never add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, BigTableAdminMixin, WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("timestamp", "type", "name", "profile", "app", "message_id")
    list_filter = (WorkspaceSwitcherFilter, "type", ("app", WorkspaceScopedRelatedFilter))
    list_select_related = ("profile", "app")
    list_per_page = 50
    raw_id_fields = ("profile", "app")
    search_fields = ("=message_id",)
    search_help_text = "Exact message id."
    fields = (
        "workspace",
        "profile",
        "app",
        ("type", "name"),
        ("timestamp", "received_at"),
        "message_id",
        "properties_display",
        "context_display",
    )
    readonly_fields = ("properties_display", "context_display")

    def get_ordering(self, request: HttpRequest) -> list[str | Combinable]:
        # One person's events: their (profile, -timestamp) index. Otherwise newest stored first by
        # id: the primary key is the only index that orders a whole workspace's events.
        if "profile__id__exact" in request.GET:
            return ["-timestamp", "-pk"]
        return ["-pk"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        return super().get_queryset(request).defer("context")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        term = search_term.strip()
        return (queryset.filter(message_id=term) if term else queryset), False

    @admin.display(description="properties")
    def properties_display(self, event: Event) -> str:
        return _pretty_json_block(event.properties)

    @admin.display(description="context")
    def context_display(self, event: Event) -> str:
        return _pretty_json_block(event.context)


@admin.register(Device)
class DeviceAdmin(BigTableAdminMixin, WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "profile", "platform", "push_provider", "push_enabled", "app_version", "last_seen")
    list_filter = (WorkspaceSwitcherFilter, "platform", "push_provider", "push_enabled")
    list_select_related = ("profile",)
    list_per_page = 50
    ordering = ("-pk",)
    raw_id_fields = ("profile", "app")
    search_fields = ("=device_id",)
    search_help_text = "Exact device id."
    fieldsets = (
        (None, {"fields": ("workspace", "profile", "app", "device_id")}),
        ("Hardware", {"fields": ("platform", ("manufacturer", "model"), ("os_name", "os_version"), "locale")}),
        ("App", {"fields": ("app_version", "ad_tracking_enabled", ("first_seen", "last_seen"))}),
        ("Push", {"fields": ("push_provider", "push_token", "push_enabled", "push_disabled_reason")}),
    )
    # Support may switch push off for a device (a shared test phone, a complaint); everything else
    # is what the SDK reported.
    editable_fields = ("push_enabled", "push_disabled_reason")

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> list[str]:
        return [field.name for field in Device._meta.fields if field.name not in self.editable_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Device], search_term: str
    ) -> tuple[QuerySet[Device], bool]:
        term = search_term.strip()
        return (queryset.filter(device_id=term) if term else queryset), False

    def save_model(self, request: HttpRequest, obj: Device, form: forms.ModelForm, change: bool) -> None:
        # Only the fields changed here: the intake updates the same row (last seen, token).
        changed = [name for name in form.changed_data if name in self.editable_fields]
        if changed:
            obj.save(update_fields=changed)


@admin.register(ProfileMerge)
class ProfileMergeAdmin(ReadOnlyAdminMixin, BigTableAdminMixin, WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "into_profile", "merged_profile_id", "reason", "actor")
    list_filter = (("workspace", WorkspaceScopedRelatedFilter), "reason")
    list_select_related = ("into_profile",)
    list_per_page = 50
    raw_id_fields = ("into_profile",)
    ordering = ("-pk",)
    # into_profile is the only indexed column worth searching here (merged_profile_id has no index).
    search_fields = ("=into_profile__id",)
    search_help_text = "The id of the profile the merge went into, e.g. 123."
    fields = (
        "workspace",
        "into_profile",
        "merged_profile_id",
        "reason",
        "actor",
        "message_id",
        "created_at",
        "moved_display",
        "snapshot_display",
    )
    readonly_fields = ("moved_display", "snapshot_display")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ProfileMerge], search_term: str
    ) -> tuple[QuerySet[ProfileMerge], bool]:
        term = search_term.strip().lstrip("#")
        if not term:
            return queryset, False
        if not term.isdigit():
            return queryset.none(), False
        return queryset.filter(into_profile_id=int(term)), False

    @admin.display(description="moved")
    def moved_display(self, merge: ProfileMerge) -> str:
        return _compact_json(merge.moved)

    @admin.display(description="merged profile as it was")
    def snapshot_display(self, merge: ProfileMerge) -> str:
        return _pretty_json_block(merge.merged_snapshot)


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdminMixin, BigTableAdminMixin, WorkspaceScopedAdminMixin, admin.ModelAdmin):
    """Deleted people's identifiers, as salted hashes: nothing here can be read back."""

    list_display = ("kind", "hash_display", "workspace", "created_at")
    list_filter = (("workspace", WorkspaceScopedRelatedFilter), "kind")
    list_select_related = ("workspace",)
    ordering = ("-pk",)
    fields = ("workspace", "kind", "identifier_hash", "created_at")
    search_fields = ("=identifier_hash",)
    search_help_text = "Is someone suppressed? Type their exact external id, anonymous id, email or phone."

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Suppression], search_term: str
    ) -> tuple[QuerySet[Suppression], bool]:
        # Only hashes are kept, so hash what was typed the way each of the user's workspaces would.
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(pk__in=[])
        for workspace in user_workspaces(request):
            for kind in Suppression.Kind.values:
                digest = suppression_hash(workspace=workspace, kind=kind, value=term)
                match |= Q(workspace=workspace, kind=kind, identifier_hash=digest)
        return queryset.filter(match), False

    @admin.display(description="identifier hash")
    def hash_display(self, suppression: Suppression) -> str:
        return format_html("<code>{}…</code>", suppression.identifier_hash[:16])
