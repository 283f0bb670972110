"""Admin for segments: the builder (a marketer composes the condition tree by clicking; the JSON
stays hidden), its live size estimate and preview of matching people, a member export to CSV, the
size over time, and the workspace's lifecycle thresholds.

Every page and endpoint is scoped to the user's workspaces (``WorkspaceScopedAdminMixin``); writes
go through ``segments.services`` (which validates the definition and refuses cycles). The builder's
script is segments/static/segments/builder.js; what it offers comes from ``segments.builder``.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import OperationalError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

from profiles.admin.mixins import WorkspaceScopedAdminMixin, WorkspaceScopedRelatedFilter, user_workspace_ids
from profiles.models import Workspace

from .builder import catalog, problems_as_json
from .charts import size_chart_svg
from .definition import Problem
from .models import LifecycleSettings, Segment, SegmentSizeSnapshot, empty_definition
from .selectors import (
    definition_preview,
    definition_size,
    segment_member_rows,
    segment_size_history,
    workspace_custom_attributes,
    workspace_event_names,
    workspace_event_properties,
    workspace_products,
)
from .services import (
    lifecycle_settings_update,
    segment_create,
    segment_definition_problems,
    segment_delete,
    segment_name_check,
    segment_update,
    segment_users_elsewhere,
)

logger = logging.getLogger(__name__)

PREVIEW_SIZE = 20
ESTIMATE_TIMEOUT_MS = 15_000
EXPORT_PAGE = 5000
EXPORT_COLUMNS = (
    "id", "external_id", "email", "phone", "first_name", "last_name", "country", "region", "city", "language",
    "time_zone", "platform", "app_version", "first_seen", "last_seen", "session_count", "email_subscription",
    "push_subscription", "sms_subscription", "created_at",
)  # fmt: skip
HISTORY_DAYS = 90


# --- the builder widget ----------------------------------------------------------------------------


class DefinitionBuilderWidget(forms.Widget):
    """The definition as a tree of groups and conditions to click together. The JSON itself travels
    in a hidden textarea the script keeps in step (and shows, for those who want it, on request)."""

    template_name = "admin/segments/definition_builder.html"

    def __init__(self, config: dict[str, Any] | None = None, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.config = config or {}

    class Media:
        js = ("segments/builder.js",)
        css = {"all": ("segments/builder.css",)}

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        element_id = context["widget"]["attrs"].get("id") or f"id_{name}"
        context["widget"].update(
            catalog=catalog(),
            config=self.config,
            catalog_id=f"{element_id}-catalog",
            config_id=f"{element_id}-config",
        )
        return context

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        # The project's template engine (templates/admin/segments/), not the form renderer's own,
        # which only looks in the apps' template directories.
        return mark_safe(render_to_string(self.template_name, self.get_context(name, value, attrs)))  # noqa: S308


class SegmentForm(forms.ModelForm):
    definition = forms.JSONField(
        widget=DefinitionBuilderWidget,
        initial=empty_definition,
        help_text="Add conditions and groups; the size and a preview follow as you go.",
    )

    class Meta:
        model = Segment
        fields = ["workspace", "name", "description", "definition"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.definition_problems: list[Problem] = []

    def _workspace_id(self) -> int | None:
        if self.instance.pk:
            return self.instance.workspace_id
        workspace = self.cleaned_data.get("workspace")
        return workspace.pk if isinstance(workspace, Workspace) else None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        workspace_id = self._workspace_id()
        if workspace_id is None:
            return cleaned
        segment = self.instance if self.instance.pk else None
        if "name" in cleaned:
            try:
                cleaned["name"] = segment_name_check(workspace_id=workspace_id, name=cleaned["name"], segment=segment)
            except ValidationError as error:
                self.add_error("name", error.message_dict["name"])
        if "definition" in cleaned:
            self.definition_problems = segment_definition_problems(
                workspace_id=workspace_id, definition=cleaned["definition"], segment=segment
            )
            if self.definition_problems:
                self.add_error("definition", [str(problem) for problem in self.definition_problems])
        return cleaned

    def _get_validation_exclusions(self) -> set[str]:
        # The name is checked in clean() with a message that names the workspace's segment; the
        # (workspace, name) constraint would otherwise report it a second time.
        exclusions: set[str] = super()._get_validation_exclusions()  # type: ignore[misc]  # not in the stubs
        return exclusions | {"name"}


# --- the segment admin ------------------------------------------------------------------------------


@admin.register(Segment)
class SegmentAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    form = SegmentForm
    change_form_template = "admin/segments/segment/change_form.html"
    list_display = ("name", "workspace", "last_size", "updated_at")
    list_filter = (("workspace", WorkspaceScopedRelatedFilter),)
    list_select_related = ("workspace",)
    search_fields = ("name",)
    actions: list[Any] = []  # deleting goes through the segment's page (refused while another segment uses it)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Segment]:
        latest = SegmentSizeSnapshot.objects.filter(segment=OuterRef("pk")).order_by("-date")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_size_value=Subquery(latest.values("size")[:1]), last_size_date=Subquery(latest.values("date")[:1])
            )
        )

    @admin.display(description="size (last recorded)", ordering="last_size_value")
    def last_size(self, segment: Segment) -> str:
        size = getattr(segment, "last_size_value", None)
        if size is None:
            return "—"
        return format_html('{} <span class="quiet">on {}</span>', f"{size:,}", segment.last_size_date)  # type: ignore[attr-defined]

    def get_readonly_fields(self, request: HttpRequest, obj: Segment | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # A definition refers to the workspace's segments, campaigns and data: it never moves.
        return ("workspace", "created_by", "created_at", "updated_at")

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None) -> Any:
        record = ("Record", {"fields": ("created_by", ("created_at", "updated_at")), "classes": ("collapse",)})
        return [
            (None, {"fields": ("workspace", "name", "description")}),
            ("Who is in it", {"fields": ("definition",), "classes": ("segment-builder-fieldset",)}),
            *([record] if obj is not None else []),
        ]

    def get_form(self, request: HttpRequest, obj: Segment | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        config = {
            "workspace": obj.workspace_id if obj is not None else None,
            "segment": obj.pk if obj is not None else None,
            "urls": {
                "suggest": reverse("admin:segments_segment_suggest"),
                "estimate": reverse("admin:segments_segment_estimate"),
                "preview": reverse("admin:segments_segment_preview"),
            },
            "can_preview": request.user.has_perm("profiles.view_profile"),
        }
        # A field of this request's own: the form class's fields are shared by every request, so
        # setting the widget on them would let one user's page draw with another's settings.
        definition = copy.deepcopy(form.base_fields["definition"])
        definition.widget = DefinitionBuilderWidget(config=config)
        return type(form.__name__, (form,), {"definition": definition})

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Segment | None = None,
    ) -> HttpResponse:
        form = context.get("adminform").form if context.get("adminform") else None  # type: ignore[union-attr]
        widget = form.fields["definition"].widget if form is not None else None
        if isinstance(widget, DefinitionBuilderWidget):
            # Server-side problems (after a failed save) are drawn next to their conditions too.
            widget.config["problems"] = problems_as_json(getattr(form, "definition_problems", []))
        if obj is not None:
            history = segment_size_history(segment=obj, days=HISTORY_DAYS)
            context["size_chart"] = size_chart_svg(
                [(snapshot.date, snapshot.size) for snapshot in history], title=f"{obj.name}: size over time"
            )
            context["history_days"] = HISTORY_DAYS
            context["can_export"] = request.user.has_perm("profiles.view_profile")
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            segment_update(
                segment=obj, name=data["name"], description=data["description"], definition=data["definition"]
            )
            return
        created = segment_create(
            workspace=data["workspace"],
            name=data["name"],
            description=data["description"],
            definition=data["definition"],
            created_by=request.user,
        )
        obj.pk, obj.created_at, obj.updated_at, obj.created_by = (
            created.pk,
            created.created_at,
            created.updated_at,
            created.created_by,
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, Any]:
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Segments that use one of these: the confirmation page lists them as what stands in the way.
        for segment in objs:
            users = [
                other
                for other in Segment.objects.filter(workspace_id=segment.workspace_id).exclude(pk=segment.pk)
                if segment.pk in _references(other.definition)
            ]
            protected = [*protected, *(f"Segment: {user.name} (uses {segment.name})" for user in users)]
            protected = [
                *protected,
                *(f"{user[0].upper()}{user[1:]}" for user in segment_users_elsewhere(segment=segment)),
            ]
        return deleted, model_count, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        segment_delete(segment=obj)

    # --- the builder's endpoints ----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path("builder/suggest/", self.admin_site.admin_view(self.suggest_view), name="segments_segment_suggest"),
            path("builder/estimate/", self.admin_site.admin_view(self.estimate_view), name="segments_segment_estimate"),
            path("builder/preview/", self.admin_site.admin_view(self.preview_view), name="segments_segment_preview"),
            path(
                "<path:object_id>/export/", self.admin_site.admin_view(self.export_view), name="segments_segment_export"
            ),
            *super().get_urls(),
        ]

    def _workspace(self, request: HttpRequest, raw: Any) -> Workspace:
        """The workspace named by the request, if the user may see it (404 otherwise)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            workspace_id = int(raw)
        except (TypeError, ValueError):
            raise Http404("Choose a workspace.") from None
        ids = user_workspace_ids(request)
        workspace = Workspace.objects.filter(pk=workspace_id).first()
        if workspace is None or (ids is not None and workspace_id not in ids):
            raise Http404("No such workspace.")
        return workspace

    def _draft(self, request: HttpRequest) -> tuple[Workspace, Segment | None, Any]:
        if request.method != "POST":
            raise Http404("POST the draft definition.")
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            raise Http404("Send JSON.") from None
        if not isinstance(body, dict):
            raise Http404("Send a JSON object.")
        workspace = self._workspace(request, body.get("workspace"))
        segment = None
        if body.get("segment") is not None:
            segment = Segment.objects.filter(workspace=workspace, pk=body["segment"]).first()
            if segment is None:
                raise Http404("No such segment in this workspace.")
        return workspace, segment, body.get("definition")

    def suggest_view(self, request: HttpRequest) -> JsonResponse:
        """What the workspace's data offers: event names, an event's property keys, custom attribute
        names, purchased products, the other segments. Bounded and sampled (see the selectors)."""
        workspace = self._workspace(request, request.GET.get("workspace"))
        what = request.GET.get("what", "")
        prefix = request.GET.get("q", "")[:255]
        items: list[Any]
        if what == "events":
            items = workspace_event_names(workspace_id=workspace.pk, prefix=prefix)
        elif what == "properties":
            items = workspace_event_properties(workspace_id=workspace.pk, event=request.GET.get("event", "")[:255])
        elif what == "attributes":
            items = workspace_custom_attributes(workspace_id=workspace.pk)
        elif what == "products":
            items = workspace_products(workspace_id=workspace.pk, prefix=prefix)
        elif what == "segments":
            items = [
                {"id": pk, "name": name}
                for pk, name in Segment.objects.filter(workspace=workspace).order_by("name").values_list("pk", "name")
            ]
        else:
            raise Http404("Unknown suggestion kind.")
        return JsonResponse({"items": items})

    def estimate_view(self, request: HttpRequest) -> JsonResponse:
        """The draft's size (reused for 30 s for the same definition), or its problems by path."""
        workspace, segment, definition = self._draft(request)
        problems = segment_definition_problems(workspace_id=workspace.pk, definition=definition, segment=segment)
        if problems:
            return JsonResponse({"problems": problems_as_json(problems)})
        try:
            estimate = definition_size(
                workspace_id=workspace.pk,
                definition=definition,
                segment_id=segment.pk if segment else None,
                timeout_ms=ESTIMATE_TIMEOUT_MS,
            )
        except OperationalError:
            logger.warning("segment estimate timed out in workspace %s", workspace.pk, exc_info=True)
            return JsonResponse(
                {"problems": [], "error": f"Counting took longer than {ESTIMATE_TIMEOUT_MS // 1000} s; try again."},
                status=503,
            )
        return JsonResponse(
            {
                "problems": [],
                "size": estimate.size,
                "computed_at": estimate.computed_at.isoformat(),
                "age_seconds": round(estimate.age_seconds(), 1),
                "took_ms": round(estimate.took_ms),
            }
        )

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The first people the draft matches, each linking to their profile page."""
        if not request.user.has_perm("profiles.view_profile"):
            raise PermissionDenied
        workspace, segment, definition = self._draft(request)
        problems = segment_definition_problems(workspace_id=workspace.pk, definition=definition, segment=segment)
        if problems:
            return JsonResponse({"problems": problems_as_json(problems), "profiles": []})
        try:
            profiles = definition_preview(
                workspace_id=workspace.pk,
                definition=definition,
                segment_id=segment.pk if segment else None,
                limit=PREVIEW_SIZE,
                timeout_ms=ESTIMATE_TIMEOUT_MS,
            )
        except OperationalError:
            return JsonResponse({"problems": [], "profiles": [], "error": "The preview took too long."}, status=503)
        return JsonResponse(
            {
                "problems": [],
                "profiles": [
                    {
                        "id": profile.pk,
                        "url": reverse("admin:profiles_profile_change", args=[profile.pk]),
                        "name": " ".join(part for part in (profile.first_name, profile.last_name) if part),
                        "external_id": profile.external_id,
                        "email": profile.email,
                        "country": profile.country,
                        "last_seen": profile.last_seen.isoformat() if profile.last_seen else None,
                    }
                    for profile in profiles
                ],
            }
        )

    def export_view(self, request: HttpRequest, object_id: str) -> StreamingHttpResponse:
        """Every member as CSV, streamed a keyset page at a time (memory stays flat however big the
        segment). Membership is evaluated at one instant for the whole file."""
        segment = self.get_object(request, object_id)
        if not self.has_view_permission(request, segment) or not request.user.has_perm("profiles.view_profile"):
            raise PermissionDenied
        now = timezone.now()
        filename = f"segment-{segment.pk}-{slugify(segment.name) or 'members'}-{now:%Y%m%d-%H%M}.csv"
        response = StreamingHttpResponse(_csv_rows(segment, now), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def _references(definition: Any) -> set[int]:
    from .definition import raw_segment_references

    return raw_segment_references(definition)


class _Echo:
    """A file-like object whose write returns what it was given (csv.writer into a stream)."""

    def write(self, value: str) -> str:
        return value


# A cell a spreadsheet would run as a formula; a phone number ("+14155550100") or a negative
# number is data, not a formula.
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?[0-9][0-9 .]*$")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if _FORMULA.match(text) and not _NUMBER.match(text):
        return "'" + text
    return text


def _csv_rows(segment: Segment, now: datetime) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_COLUMNS)
    after = 0
    while True:
        rows = segment_member_rows(segment=segment, columns=EXPORT_COLUMNS, after_id=after, limit=EXPORT_PAGE, now=now)
        for row in rows:
            yield writer.writerow([_cell(value) for value in row])
        if len(rows) < EXPORT_PAGE:
            return
        after = rows[-1][0]


# --- lifecycle thresholds -----------------------------------------------------------------------------


class LifecycleSettingsForm(forms.ModelForm):
    class Meta:
        model = LifecycleSettings
        fields = ["workspace", "new_days", "lapsed_after_days", "churned_after_days"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        lapsed, churned = cleaned.get("lapsed_after_days"), cleaned.get("churned_after_days")
        if lapsed is not None and churned is not None and churned <= lapsed:
            self.add_error("churned_after_days", "Must be longer than 'lapsed after': churned comes after lapsed.")
        for field in ("new_days", "lapsed_after_days"):
            if cleaned.get(field) == 0:
                self.add_error(field, "At least one day.")
        return cleaned

    def _get_validation_exclusions(self) -> set[str]:
        # clean() says what is wrong with the thresholds field by field; the model's check
        # constraint would add a second, less helpful message.
        exclusions: set[str] = super()._get_validation_exclusions()  # type: ignore[misc]  # not in the stubs
        return exclusions | {"churned_after_days"}


@admin.register(LifecycleSettings)
class LifecycleSettingsAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    form = LifecycleSettingsForm
    list_display = ("workspace", "new_days", "lapsed_after_days", "churned_after_days", "updated_at")
    fields = ("workspace", "new_days", "lapsed_after_days", "churned_after_days")

    def get_readonly_fields(self, request: HttpRequest, obj: LifecycleSettings | None = None) -> tuple[str, ...]:
        return ("workspace",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: LifecycleSettings, form: Any, change: bool) -> None:
        lifecycle_settings_update(
            workspace=obj.workspace,
            new_days=obj.new_days,
            lapsed_after_days=obj.lapsed_after_days,
            churned_after_days=obj.churned_after_days,
        )
