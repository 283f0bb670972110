"""Admin for bulk CSV imports of profiles: upload a file for a workspace, follow its progress, read
its row report, retry a failed one.

Uploading goes through ``profiles.services.imports`` (header checked at once, the run queued on
commit); an import is never edited afterwards. Staff see only their workspaces' imports.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..models import ProfileImport
from ..services.imports import (
    MAX_REPORTED_ERRORS,
    csv_file_check,
    import_percent,
    profile_import_create,
    profile_import_retry,
)
from .mixins import WorkspaceScopedAdminMixin, WorkspaceScopedRelatedFilter


class ProfileImportForm(forms.ModelForm):
    class Meta:
        model = ProfileImport
        fields = ["workspace", "file"]
        help_texts = {
            "file": (
                "A UTF-8 CSV with a header row. Required column: external_id. Standard attributes by name "
                "(email, phone, first_name, last_name, dob, gender, country, language, time_zone, city, ...), "
                "email_subscription / push_subscription / sms_subscription (subscribed, opted_in, unsubscribed); "
                "any other column becomes a custom attribute. Blank cells leave attributes unchanged."
            )
        }

    def clean_file(self) -> Any:
        file = self.cleaned_data["file"]
        try:
            csv_file_check(file)
        except ValidationError as error:
            raise ValidationError(error.message_dict.get("file", error.messages)) from None
        return file


@admin.register(ProfileImport)
class ProfileImportAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    form = ProfileImportForm
    list_display = [
        "id",
        "workspace",
        "file_name",
        "status",
        "progress",
        "total_rows",
        "imported_rows",
        "error_rows",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_display_links = ["id", "file_name"]
    list_filter = ["status", ("workspace", WorkspaceScopedRelatedFilter)]
    list_select_related = ["workspace", "created_by"]
    actions = ["retry_failed"]
    readonly_fields = [
        "workspace",
        "file",
        "status",
        "progress",
        "total_rows",
        "processed_rows",
        "imported_rows",
        "error_rows",
        "failure",
        "error_report",
        "created_by",
        "created_at",
        "finished_at",
    ]

    def get_fieldsets(self, request: HttpRequest, obj: ProfileImport | None = None) -> Any:
        if obj is None:
            return [(None, {"fields": ["workspace", "file"]})]
        return [
            (None, {"fields": ["workspace", "file", "status", "progress", "failure"]}),
            ("Rows", {"fields": ["total_rows", "processed_rows", "imported_rows", "error_rows"]}),
            ("Row errors", {"fields": ["error_report"]}),
            ("History", {"fields": ["created_by", "created_at", "finished_at"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: ProfileImport | None = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: ProfileImport | None = None) -> bool:
        # The change page is a read-only report; nothing about an import is edited by hand.
        return False

    def save_model(self, request: HttpRequest, obj: ProfileImport, form: Any, change: bool) -> None:
        user = request.user if request.user.is_authenticated else None
        created = profile_import_create(
            workspace=form.cleaned_data["workspace"], file=form.cleaned_data["file"], created_by=user
        )
        obj.pk = created.pk
        obj.refresh_from_db()

    @admin.display(description="file")
    def file_name(self, obj: ProfileImport) -> str:
        return (obj.file.name or "").rsplit("/", 1)[-1]

    @admin.display(description="progress")
    def progress(self, obj: ProfileImport) -> SafeString:
        percent = int(import_percent(obj))
        return format_html(
            '<progress max="100" value="{}" style="width: 8em">{}%</progress> {}% ({} / {})',
            percent,
            percent,
            percent,
            obj.processed_rows,
            obj.total_rows or "?",
        )

    @admin.display(description="row errors")
    def error_report(self, obj: ProfileImport) -> SafeString:
        if not obj.errors:
            return mark_safe('<span class="quiet">None</span>')
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((error.get("row"), error.get("field"), error.get("message")) for error in obj.errors),
        )
        more = ""
        if obj.error_rows > len(obj.errors) or len(obj.errors) >= MAX_REPORTED_ERRORS:
            more = format_html(
                "<p>Showing the first {} errors; {} rows had errors in all.</p>", len(obj.errors), obj.error_rows
            )
        return format_html(
            "{}<table><thead><tr><th>Row</th><th>Column</th><th>Error</th></tr></thead><tbody>{}</tbody></table>",
            more,
            rows,
        )

    @admin.action(description="Retry the selected failed imports (they resume where they stopped)", permissions=["add"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[ProfileImport]) -> None:
        retried = sum(1 for profile_import in queryset if profile_import_retry(profile_import=profile_import))
        skipped = queryset.count() - retried
        self.message_user(request, f"{retried} import(s) queued again.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} import(s) had not failed and were left alone.", messages.WARNING)
