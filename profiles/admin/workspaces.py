"""Admin for workspaces, their apps (write keys) and their secret REST API keys.

Keys are created and rotated only through ``profiles.services.keys``: the admin never sets a key
or a digest from a form.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.forms import ModelMultipleChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ..models import ApiKey, ApiScope, App, Workspace
from ..services.keys import api_key_create, api_key_revoke, app_rotate_write_key
from ..traits import is_valid_time_zone
from .mixins import WorkspaceScopedAdminMixin, WorkspaceScopedRelatedFilter, user_workspace_ids


def _time_zone_choices() -> list[tuple[str, str]]:
    import zoneinfo

    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


def api_key_status(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "Revoked"
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return "Expired"
    return "Active"


class WorkspaceForm(forms.ModelForm):
    default_time_zone = forms.ChoiceField(
        choices=_time_zone_choices, initial="UTC", help_text=Workspace._meta.get_field("default_time_zone").help_text
    )

    class Meta:
        model = Workspace
        fields = ("name", "slug", "default_time_zone", "members")

    def clean_default_time_zone(self) -> str:
        value: str = self.cleaned_data["default_time_zone"]
        if not is_valid_time_zone(value):
            raise forms.ValidationError("Choose an IANA time zone, e.g. Europe/Paris.")
        return value


class AppInline(WorkspaceScopedAdminMixin, admin.TabularInline):
    model = App
    fields = ("name", "platform", "write_key", "is_active", "rate_limit_per_second")
    readonly_fields = ("write_key",)
    extra = 0
    show_change_link = True


class ApiKeyInline(WorkspaceScopedAdminMixin, admin.TabularInline):
    """Read-only: a key is created from the API key form, which is the only place its secret shows."""

    model = ApiKey
    fields = ("name", "prefix", "scopes_display", "status", "created_at", "last_used_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "API keys"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="scopes")
    def scopes_display(self, key: ApiKey) -> str:
        return ", ".join(key.scopes) or "—"

    @admin.display(description="status")
    def status(self, key: ApiKey) -> str:
        return api_key_status(key)


@admin.register(Workspace)
class WorkspaceAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    workspace_field = "pk"
    form = WorkspaceForm
    list_display = ("name", "slug", "default_time_zone", "open_links", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members",)
    fieldsets = (
        (None, {"fields": ("name", "slug", "default_time_zone")}),
        ("Members", {"fields": ("members",), "description": "Staff users who can see and change this workspace."}),
    )
    inlines = (AppInline, ApiKeyInline)

    @admin.display(description="open")
    def open_links(self, workspace: Workspace) -> str:
        links = (
            (reverse("admin:profiles_profile_changelist") + f"?workspace={workspace.pk}", "Profiles"),
            (reverse("admin:profiles_event_changelist") + f"?workspace={workspace.pk}", "Events"),
            (reverse("admin:profiles_app_changelist") + f"?workspace__id__exact={workspace.pk}", "Apps"),
        )
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    def formfield_for_manytomany(
        self, db_field: models.ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelMultipleChoiceField | None:
        if db_field.name == "members":
            # Only staff can use the admin, so only staff membership means anything.
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not change and user_workspace_ids(request) is not None:
            # A staff user who creates a workspace must be able to see it afterwards.
            form.instance.members.add(request.user)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if request.user.has_perm("profiles.add_apikey"):
            context["add_api_key_url"] = reverse("admin:profiles_apikey_add") + f"?workspace={object_id}"
        return super().change_view(request, object_id, form_url, context)


@admin.register(App)
class AppAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "platform", "workspace", "write_key_display", "is_active", "rate_limit_per_second")
    list_filter = (("workspace", WorkspaceScopedRelatedFilter), "platform", "is_active")
    list_select_related = ("workspace",)
    search_fields = ("name", "=write_key")
    fields = ("workspace", "name", "platform", "write_key", "is_active", "rate_limit_per_second", "created_at")
    actions = ("rotate_write_key",)

    def get_readonly_fields(self, request: HttpRequest, obj: App | None = None) -> tuple[str, ...]:
        # Moving an app to another workspace would strand its events and devices in the old one.
        return ("workspace", "write_key", "created_at") if obj is not None else ("write_key", "created_at")

    @admin.display(description="write key")
    def write_key_display(self, app: App) -> str:
        return format_html("<code>{}</code>", app.write_key)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/rotate-write-key/",
                self.admin_site.admin_view(self.rotate_write_key_view),
                name="profiles_app_rotate_write_key",
            ),
            *super().get_urls(),
        ]

    def _rotate(self, request: HttpRequest, apps: list[App]) -> None:
        for app in apps:
            new_key = app_rotate_write_key(app=app)
            self.log_change(request, app, [{"changed": {"fields": ["write key"]}}])
            messages.success(
                request,
                format_html(
                    "New write key for {}: <code>{}</code>. The old key no longer works: update the app's "
                    "SDK configuration with the new one.",
                    app,
                    new_key,
                ),
            )

    def _confirmation(
        self, request: HttpRequest, apps: list[App], *, action_post: bool, cancel_url: str
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Rotate write key?",
            "opts": self.opts,
            "apps": apps,
            "action_post": action_post,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": cancel_url,
        }
        return TemplateResponse(request, "admin/profiles/app/rotate_write_key.html", context)

    @admin.action(description="Rotate write key…", permissions=["change"])
    def rotate_write_key(self, request: HttpRequest, queryset: QuerySet[App]) -> TemplateResponse | None:
        apps = list(queryset.select_related("workspace"))
        if request.POST.get("post") == "yes":
            self._rotate(request, apps)
            return None  # back to the changelist, which shows the messages
        return self._confirmation(request, apps, action_post=True, cancel_url=reverse("admin:profiles_app_changelist"))

    def rotate_write_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        app = self.get_object(request, object_id)  # 404 outside the user's workspaces
        if not self.has_change_permission(request, app):
            raise PermissionDenied
        change_url = reverse("admin:profiles_app_change", args=[app.pk])
        if request.method == "POST":
            self._rotate(request, [app])
            return HttpResponseRedirect(change_url)
        return self._confirmation(request, [app], action_post=False, cancel_url=change_url)


class ApiKeyCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do. Give each integration only the scopes it needs.",
    )

    class Meta:
        model = ApiKey
        fields = ("workspace", "name", "scopes", "expires_at")
        help_texts = {
            "name": "Who or what uses the key, e.g. “Billing service”.",
            "expires_at": "Optional. After this moment the key is refused.",
        }

    def clean_expires_at(self) -> datetime | None:
        expires_at: datetime | None = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(ApiKey)
class ApiKeyAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "workspace", "prefix_display", "scopes_display", "status", "created_at", "last_used_at")
    list_filter = (("workspace", WorkspaceScopedRelatedFilter),)
    list_select_related = ("workspace",)
    search_fields = ("name", "=prefix")
    actions = ("revoke",)
    readonly_fields = (
        "workspace",
        "prefix_display",
        "scopes_display",
        "status",
        "created_at",
        "created_by",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )

    def get_fieldsets(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ((None, {"fields": ("workspace", "name", "scopes", "expires_at")}),)
        return (
            (None, {"fields": ("workspace", "name", "prefix_display", "scopes_display", "status")}),
            ("History", {"fields": ("created_at", "created_by", "expires_at", "last_used_at", "revoked_at")}),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # Revoke instead: the row stays as the record of who could call the API, and when.
        return False

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        user = request.user if isinstance(request.user, AbstractBaseUser) else None
        key, raw_key = api_key_create(
            workspace=form.cleaned_data["workspace"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            created_by=user,
            expires_at=form.cleaned_data.get("expires_at"),
        )
        # The admin goes on with ``obj`` (logging, the redirect): make it the row the service made.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False
        messages.success(
            request,
            format_html(
                "The new API key is <code class='engage-secret'>{}</code> — copy it now, it won't be shown "
                "again. Only its prefix <code>{}</code> is kept in the clear.",
                raw_key,
                key.prefix,
            ),
        )

    @admin.display(description="prefix")
    def prefix_display(self, key: ApiKey) -> str:
        return format_html("<code>sk_{}…</code>", key.prefix)

    @admin.display(description="scopes")
    def scopes_display(self, key: ApiKey) -> str:
        labels = dict(ApiScope.choices)
        return ", ".join(str(labels.get(scope, scope)) for scope in key.scopes) or "—"

    @admin.display(description="status")
    def status(self, key: ApiKey) -> str:
        return api_key_status(key)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            api_key_revoke(key=key)
            self.log_change(request, key, "Revoked.")
        if keys:
            messages.success(request, f"Revoked {len(keys)} API key(s); calls made with them are now refused (401).")
        else:
            messages.info(request, "The selected keys were already revoked.")
