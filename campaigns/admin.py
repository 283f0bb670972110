"""The campaign builder: Django admin for campaigns, their variants and channel messages, the
workspace's delivery controls, the deliveries table and the "Why not?" page.

Every admin is scoped to the user's workspaces (``WorkspaceScopedAdminMixin``). The admin only
displays and calls services: launching, pausing, resuming and stopping go through
``campaigns.services.launch`` (conditional status updates), test sends through
``campaigns.services.sending.campaign_send_test``, previews and progress through
``campaigns.selectors``, the answer of "Why not?" through ``campaigns.services.whynot``.

Variants are edited inline on the campaign (at most 8); each variant's channel messages on the
variant's own page (Django admin does not nest inlines), linked from the campaign page, where every
variant's messages are also listed with the per-channel field hints.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from channels.content import SCHEMAS, Field
from channels.rendering import validate_template
from profiles.admin.mixins import (
    BigTableAdminMixin,
    WorkspaceScopedAdminMixin,
    WorkspaceScopedRelatedFilter,
    json_pretty,
    scope_to_workspaces,
    user_workspace_ids,
)
from segments.models import Segment

from .models import (
    Campaign,
    CampaignStatus,
    ChannelMessage,
    Delivery,
    DeliveryType,
    FrequencyCapRule,
    QuietHours,
    Variant,
)
from .selectors import campaign_preview, campaign_progress, profile_find
from .services.audience import audience_size, extra_conditions_check
from .services.launch import (
    MAX_VARIANTS,
    campaign_launch,
    campaign_launch_problems,
    campaign_pause,
    campaign_resume,
    campaign_stop,
    trigger_references_problems,
)
from .services.segment_entry import segment_entry_baselines_take
from .services.sending import campaign_send_test
from .services.whynot import why_not

LIFECYCLE = {
    "launch": (campaign_launch, "Launched."),
    "pause": (campaign_pause, "Paused: nothing more is sent until you resume."),
    "resume": (campaign_resume, "Resumed."),
}


# --- hints -----------------------------------------------------------------------------------------


def _field_hint(field: Field) -> str:
    parts = [field.kind]
    if field.required:
        parts.append("required")
    if field.choices:
        parts.append("one of " + ", ".join(field.choices))
    if field.max_length:
        parts.append(f"≤ {field.max_length} chars")
    if field.liquid:
        parts.append("Liquid")
    if field.help:
        parts.append(field.help)
    return "; ".join(parts)


def channel_field_hints() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(channel, label, [(field, hint)]) for every channel, from ``channels.content``."""
    from channels.models import Channel

    return [
        (channel, Channel(channel).label, [(field.name, _field_hint(field)) for field in fields])
        for channel, fields in SCHEMAS.items()
    ]


def _json_field(help_text: str, rows: int = 6) -> forms.JSONField:
    return forms.JSONField(
        required=False,
        help_text=help_text,
        widget=forms.Textarea(attrs={"rows": rows, "cols": 90, "class": "vLargeTextField", "spellcheck": "false"}),
    )


# --- campaigns -------------------------------------------------------------------------------------


class CampaignForm(forms.ModelForm):
    extra_conditions = _json_field(
        'A segment definition tree ({"all": [...]}) the audience must also match; empty for none. '
        "See docs/segments.md.",
    )
    triggers = _json_field(
        'Action-based: a list, e.g. [{"type": "custom_event", "event": "Product Added"}, '
        '{"type": "segment_entry", "segment_id": 5}]; see docs/campaigns-triggers.md.'
    )
    delay = _json_field(
        'Action-based: {"type": "duration", "seconds": 3600}, {"type": "next_weekday", "weekday": "monday", '
        '"time": "10:00"}, {"type": "days_at", "days": 2, "time": "10:00"}, {"type": "best_time"}; empty for none.',
        rows=3,
    )
    exception_events = _json_field('Action-based: [{"event": "Order Completed", "match_property": "cart_id"}]', rows=3)
    conversion_events = _json_field('[{"event": "Order Completed"}] or [{"purchase": true}]; the first is primary.')

    class Meta:
        model = Campaign
        fields = (
            "workspace", "name", "description", "tags", "delivery_type", "include_segments", "include_mode",
            "exclude_segments", "extra_conditions", "max_recipients", "schedule_timing", "send_at", "recurrence",
            "recurrence_weekdays", "recurrence_ends_at", "default_send_hour", "triggers", "delay", "exception_events",
            "starts_at", "ends_at", "reeligible", "reeligibility_seconds", "recheck_audience", "control_percent",
            "conversion_events", "conversion_window_seconds", "frequency_cap_exempt", "quiet_hours_start",
            "quiet_hours_end", "quiet_hours_action", "rate_limit_per_minute", "send_first_reachable_only",
        )  # fmt: skip

    def clean_extra_conditions(self) -> Any:
        value = self.cleaned_data.get("extra_conditions")
        return value or None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        workspace = data.get("workspace") or getattr(self.instance, "workspace", None)
        if workspace is not None:
            try:
                extra_conditions_check(workspace_id=workspace.pk, definition=data.get("extra_conditions"))
            except ValidationError as error:
                self.add_error("extra_conditions", error.message_dict.get("extra_conditions", error.messages))
            for name in ("include_segments", "exclude_segments"):
                foreign = [s.name for s in data.get(name) or [] if s.workspace_id != workspace.pk]
                if foreign:
                    self.add_error(name, f"not in the campaign's workspace: {', '.join(foreign)}")
        start, end = data.get("quiet_hours_start"), data.get("quiet_hours_end")
        if (start is None) != (end is None):
            self.add_error("quiet_hours_end" if end is None else "quiet_hours_start", "set both ends, or neither")
        weekdays = data.get("recurrence_weekdays") or []
        if any(not 0 <= int(day) <= 6 for day in weekdays):
            self.add_error("recurrence_weekdays", "weekdays are 0 (Monday) to 6 (Sunday)")
        if data.get("control_percent") is not None and data["control_percent"] > 100:
            self.add_error("control_percent", "at most 100")
        if data.get("default_send_hour") is not None and data["default_send_hour"] > 23:
            self.add_error("default_send_hour", "an hour from 0 to 23")
        self._check_trigger_rules(data)
        return data

    def _check_trigger_rules(self, data: dict[str, Any]) -> None:
        """The triggered-campaign fields, checked by the trigger engine's own parser; each problem
        goes to the field its path names."""
        from .services.trigger_rules import rules_problems

        names = ("triggers", "delay", "exception_events", "conversion_events")
        problems = rules_problems(**{name: data.get(name) or None for name in names})
        workspace = data.get("workspace") or getattr(self.instance, "workspace", None)
        if workspace is not None and data.get("delivery_type") == DeliveryType.ACTION:
            problems += trigger_references_problems(
                workspace_id=workspace.pk, triggers=data.get("triggers"), campaign_id=self.instance.pk
            )
        for problem in problems:
            field = next((name for name in names if problem.startswith(name)), None)
            if field is None and problem.startswith("conversion"):
                field = "conversion_events"
            self.add_error(field if field in self.fields else None, problem)

    # JSON fields left empty are stored as the model's empty values, not null.
    def clean_triggers(self) -> Any:
        return self.cleaned_data.get("triggers") or []

    def clean_delay(self) -> Any:
        return self.cleaned_data.get("delay") or {}

    def clean_exception_events(self) -> Any:
        return self.cleaned_data.get("exception_events") or []

    def clean_conversion_events(self) -> Any:
        return self.cleaned_data.get("conversion_events") or []


class VariantFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        live = [
            form.cleaned_data
            for form in self.forms
            if getattr(form, "cleaned_data", None) and not form.cleaned_data.get("DELETE")
        ]
        if len(live) > MAX_VARIANTS:
            raise ValidationError(f"at most {MAX_VARIANTS} variants")
        keys = [str(data.get("key") or "").strip() for data in live]
        if len(set(keys)) != len(keys):
            raise ValidationError("each variant needs its own key (A, B, ...)")


class VariantInline(admin.TabularInline):
    model = Variant
    formset = VariantFormSet
    extra = 0
    max_num = MAX_VARIANTS
    fields = ("key", "name", "percent", "messages_link")
    readonly_fields = ("messages_link",)
    verbose_name_plural = f"Variants (up to {MAX_VARIANTS}; percentages split the people outside the control group)"

    @admin.display(description="Channel messages")
    def messages_link(self, variant: Variant) -> SafeString:
        if variant.pk is None:
            return mark_safe('<span class="quiet">save first, then add its messages</span>')
        channels = ", ".join(m.get_channel_display() for m in variant.messages.all()) or "none yet"
        url = reverse("admin:campaigns_variant_change", args=[variant.pk])
        return format_html('{} — <a href="{}">edit messages</a>', channels, url)


@admin.register(Campaign)
class CampaignAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    form = CampaignForm
    inlines = [VariantInline]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = ("name", "workspace", "delivery_type", "status", "schedule", "launched_at")
    list_filter = ("status", "delivery_type", ("workspace", WorkspaceScopedRelatedFilter))
    search_fields = ("name",)
    list_select_related = ("workspace",)
    filter_horizontal = ("include_segments", "exclude_segments")
    readonly_fields = (
        "status", "launched_at", "next_occurrence_at", "next_run_at", "created_by", "created_at", "updated_at",
        "audience_estimate",
    )  # fmt: skip
    fieldsets = (
        (None, {"fields": ("workspace", "name", "description", "tags", "status", "delivery_type")}),
        (
            "Audience",
            {
                "fields": (
                    "include_segments",
                    "include_mode",
                    "exclude_segments",
                    "extra_conditions",
                    "max_recipients",
                    "audience_estimate",
                ),
                "description": "People in the included segments (any or all of them), minus the excluded ones, "
                "matching the extra conditions. Reachability (subscribed, has an address or token) is applied "
                "per channel when sending.",
            },
        ),
        (
            "Schedule (scheduled campaigns)",
            {
                "fields": (
                    "schedule_timing",
                    "send_at",
                    "recurrence",
                    "recurrence_weekdays",
                    "recurrence_ends_at",
                    "default_send_hour",
                    "next_occurrence_at",
                    "next_run_at",
                ),
                "description": "For local time and best time, the send time is read as a wall-clock time in each "
                "person's time zone. Weekdays: 0 = Monday ... 6 = Sunday.",
            },
        ),
        (
            "Trigger (action-based campaigns)",
            {
                "classes": ("collapse",),
                "fields": (
                    "triggers",
                    "delay",
                    "exception_events",
                    "starts_at",
                    "ends_at",
                    "reeligible",
                    "reeligibility_seconds",
                    "recheck_audience",
                ),
            },
        ),
        ("Variants and conversions", {"fields": ("control_percent", "conversion_events", "conversion_window_seconds")}),
        (
            "Delivery controls",
            {
                "fields": (
                    "frequency_cap_exempt",
                    "quiet_hours_start",
                    "quiet_hours_end",
                    "quiet_hours_action",
                    "rate_limit_per_minute",
                    "send_first_reachable_only",
                ),
                "description": "Quiet hours here override the workspace's for every channel.",
            },
        ),
        ("History", {"classes": ("collapse",), "fields": ("launched_at", "created_by", "created_at", "updated_at")}),
    )

    # -- list -------------------------------------------------------------------------------------

    @admin.display(description="Schedule")
    def schedule(self, campaign: Campaign) -> str:
        if campaign.delivery_type != "scheduled":
            return campaign.get_delivery_type_display()
        if campaign.send_at is None:
            return "—"
        when = f"{campaign.send_at:%Y-%m-%d %H:%M}"
        timing = {"local_time": " local time", "best_time": " best time"}.get(campaign.schedule_timing, " UTC")
        recurrence = "" if campaign.recurrence == "once" else f", {campaign.get_recurrence_display().lower()}"
        return f"{when}{timing}{recurrence}"

    @admin.display(description="Audience size (now)")
    def audience_estimate(self, campaign: Campaign) -> str:
        if campaign.pk is None:
            return "save to see the audience size"
        return str(audience_size(campaign=campaign))

    # -- form -------------------------------------------------------------------------------------

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in ("include_segments", "exclude_segments"):
            kwargs["queryset"] = scope_to_workspaces(
                Segment.objects.select_related("workspace").order_by("workspace__name", "name"),
                "workspace",
                user_workspace_ids(request),
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None and request.user.is_authenticated:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if obj.status == CampaignStatus.RUNNING and obj.delivery_type == DeliveryType.ACTION:
            # A running campaign given a new segment-entry trigger: its members now are not entering.
            segment_entry_baselines_take(campaign=obj, now=timezone.now())

    # -- the change page ---------------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        campaign = self.get_object(request, object_id)
        context: dict[str, Any] = dict(extra_context or {})
        if campaign is not None and request.method == "GET":
            context.update(self._page_context(request, campaign))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _page_context(self, request: HttpRequest, campaign: Campaign) -> dict[str, Any]:
        variants = list(campaign.variants.order_by("key").prefetch_related("messages"))
        context: dict[str, Any] = {
            "campaign_variants": [
                (variant, sorted(variant.messages.all(), key=lambda m: (m.position, m.pk))) for variant in variants
            ],
            "can_launch": campaign.status == CampaignStatus.DRAFT,
            "can_pause": campaign.status in (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING),
            "can_resume": campaign.status == CampaignStatus.PAUSED,
            "can_stop": campaign.status in (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED),
            "channel_hints": channel_field_hints(),
        }
        if campaign.status == CampaignStatus.DRAFT:
            context["launch_problems"] = campaign_launch_problems(campaign=campaign)
        else:
            context["progress"] = campaign_progress(campaign=campaign)
        identifier = request.GET.get("preview", "").strip()
        if identifier:
            context["preview_for"] = identifier
            profile = profile_find(workspace_id=campaign.workspace_id, identifier=identifier)
            if profile is None:
                context["preview_error"] = f"no profile {identifier!r} in this workspace (external id, email or #id)"
            else:
                properties = _json_object(request.GET.get("properties", ""))
                context["preview_profile"] = profile
                context["preview_items"] = [
                    (item, json_pretty(item.content) if item.content is not None else "")
                    for item in campaign_preview(campaign=campaign, profile=profile, properties=properties)
                ]
        return context

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("why-not/", view(self.why_not_view), name="campaigns_campaign_why_not"),
            path(
                "<path:object_id>/lifecycle/<str:action>/",
                view(self.lifecycle_view),
                name="campaigns_campaign_lifecycle",
            ),
            path("<path:object_id>/send-test/", view(self.send_test_view), name="campaigns_campaign_send_test"),
            *super().get_urls(),
        ]  # fmt: skip

    def _editable(self, request: HttpRequest, object_id: str) -> Campaign:
        campaign = self.get_object(request, object_id)  # 404 outside the user's workspaces
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def _back(self, campaign: Campaign) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    @staticmethod
    def _user(request: HttpRequest) -> str:
        return str(getattr(request.user, "get_username", lambda: "")() or "admin")

    def lifecycle_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        return require_POST(self._lifecycle)(request, object_id, action)

    def _lifecycle(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        campaign = self._editable(request, object_id)
        try:
            if action == "stop":
                cancelled = campaign_stop(campaign=campaign, actor=self._user(request))
                messages.success(request, f"Stopped: {cancelled} pending deliveries cancelled.")
            elif action in LIFECYCLE:
                service, done = LIFECYCLE[action]
                service(campaign=campaign, actor=self._user(request))
                messages.success(request, done)
            else:
                raise PermissionDenied
        except ValidationError as error:
            for message in error.messages:
                messages.error(request, message)
        return self._back(campaign)

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._send_test)(request, object_id)

    def _send_test(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._editable(request, object_id)
        identifier = request.POST.get("profile", "")
        profile = profile_find(workspace_id=campaign.workspace_id, identifier=identifier)
        variant = campaign.variants.filter(pk=request.POST.get("variant") or 0).first()
        if profile is None:
            messages.error(request, f"Test send: no profile {identifier!r} in this workspace.")
        elif variant is None:
            messages.error(request, "Test send: choose a variant.")
        else:
            for line in campaign_send_test(
                campaign=campaign, variant=variant, profile=profile, actor=self._user(request)
            ):
                messages.info(request, f"Test send to {profile}: {line}")
        return self._back(campaign)

    def why_not_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        campaigns = self.get_queryset(request).select_related("workspace").order_by("-created_at")
        # The campaign page links here with ?campaign=<id>: preselected, not yet an answer to check.
        bound = request.GET if "profile" in request.GET else None
        form = WhyNotForm(bound, campaigns=campaigns, initial={"campaign": request.GET.get("campaign")})
        answer: list[str] | None = None
        profile = None
        if form.is_bound and form.is_valid():
            campaign = form.cleaned_data["campaign"]
            profile = profile_find(workspace_id=campaign.workspace_id, identifier=form.cleaned_data["profile"])
            if profile is None:
                form.add_error("profile", "no profile with this external id, email or #id in the campaign's workspace")
            else:
                answer = why_not(campaign=campaign, profile=profile)
        context = {
            **self.admin_site.each_context(request),
            "title": "Why not?",
            "opts": self.model._meta,
            "form": form,
            "answer": answer,
            "answer_profile": profile,
        }
        return TemplateResponse(request, "admin/campaigns/why_not.html", context)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class WhyNotForm(forms.Form):
    campaign = forms.ModelChoiceField(queryset=Campaign.objects.none())
    profile = forms.CharField(help_text="External id, email or #id of the person.")

    def __init__(self, *args: Any, campaigns: QuerySet[Campaign], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["campaign"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = campaigns


# --- variants and their messages -----------------------------------------------------------------------


class ChannelMessageForm(forms.ModelForm):
    template = forms.JSONField(
        help_text="The message's fields as a JSON object (see the field hints for its channel below the form); "
        "text fields take Liquid.",
        widget=forms.Textarea(attrs={"rows": 10, "cols": 100, "class": "vLargeTextField", "spellcheck": "false"}),
    )

    class Meta:
        model = ChannelMessage
        fields = ("channel", "position", "delay_seconds", "transactional", "template")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        channel, template = data.get("channel"), data.get("template")
        if channel and "template" in data:
            errors = validate_template(channel, template)
            for field, message in errors:
                self.add_error("template", f"{field}: {message}")
        return data


class ChannelMessageInline(admin.StackedInline):
    model = ChannelMessage
    form = ChannelMessageForm
    extra = 0
    ordering = ("position", "pk")


@admin.register(Variant)
class VariantAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    workspace_field = "campaign__workspace"
    inlines = [ChannelMessageInline]
    change_form_template = "admin/campaigns/variant/change_form.html"
    list_display = ("__str__", "campaign", "key", "percent")
    list_select_related = ("campaign",)
    fields = ("campaign", "key", "name", "percent")
    raw_id_fields = ("campaign",)

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        # Reached from its campaign's page, not listed on the admin index.
        return {}

    def get_readonly_fields(self, request: HttpRequest, obj: Variant | None = None) -> tuple[str, ...]:
        return ("campaign",) if obj is not None else ()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if "campaign" in form.base_fields:
            field = form.base_fields["campaign"]
            field.queryset = scope_to_workspaces(  # type: ignore[attr-defined]
                Campaign.objects.all(), "workspace", user_workspace_ids(request)
            )
        return form

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "channel_hints": channel_field_hints()}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "channel_hints": channel_field_hints()}
        return super().add_view(request, form_url, extra_context=context)

    def response_change(self, request: HttpRequest, obj: Variant) -> HttpResponse:
        if "_continue" not in request.POST and "_addanother" not in request.POST:
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[obj.campaign_id]))
        return super().response_change(request, obj)


# --- workspace delivery controls ----------------------------------------------------------------------


@admin.register(FrequencyCapRule)
class FrequencyCapRuleAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "workspace", "channel", "tag", "max_messages", "window", "unit", "counting", "is_active")
    list_filter = (("workspace", WorkspaceScopedRelatedFilter), "channel", "is_active")
    list_select_related = ("workspace",)
    fields = ("workspace", "channel", "tag", "max_messages", "window", "unit", "counting", "is_active")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault(
            "help_texts",
            {
                "max_messages": "No more than this many messages per window (every rule applies; the strictest wins).",
                "tag": "Only campaigns with this tag count and obey; empty for all.",
                "counting": "Calendar days start at midnight in each person's time zone (Braze's default); minutes "
                "and hours always roll.",
            },
        )
        return super().get_form(request, obj, change, **kwargs)


@admin.register(QuietHours)
class QuietHoursAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("workspace", "channel", "start", "end", "action")
    list_filter = (("workspace", WorkspaceScopedRelatedFilter),)
    list_select_related = ("workspace",)
    fields = ("workspace", "channel", "start", "end", "action")


# --- deliveries (a big table: read-only, no counts) ------------------------------------------------------


@admin.register(Delivery)
class DeliveryAdmin(WorkspaceScopedAdminMixin, BigTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "id", "campaign", "profile", "step_key", "occurrence", "variant", "status", "reason", "scheduled_for",
        "sent_at",
    )  # fmt: skip
    list_select_related = ("campaign", "profile", "variant")
    list_filter = ("status", ("campaign", WorkspaceScopedRelatedFilter))
    ordering = ("-id",)
    indexed_sort_fields = ("id",)
    raw_id_fields = ("campaign", "profile", "variant", "workspace")
    readonly_fields = (
        "workspace", "campaign", "step_key", "profile", "occurrence", "variant", "status", "reason",
        "scheduled_for", "claimed_at", "sent_at", "attempts", "sent_channels", "dispatches", "trigger_event_id",
        "trigger_properties_json", "match_value", "converted_at", "revenue", "created_at",
    )  # fmt: skip
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Trigger properties")
    def trigger_properties_json(self, delivery: Delivery) -> SafeString:
        return format_html('<pre class="engage-json">{}</pre>', json_pretty(delivery.trigger_properties))

    @admin.display(description="Dispatches")
    def dispatches(self, delivery: Delivery) -> SafeString:
        if not delivery.dispatch_ids:
            return mark_safe("—")
        return format_html_join(", ", "<code>{}</code>", ((str(pk),) for pk in delivery.dispatch_ids))
