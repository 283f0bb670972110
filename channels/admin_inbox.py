"""Admin for the inbox (in-app messages and content cards waiting in people's inboxes) and the
"Preview a message" page: any channel's template rendered for a chosen real person.

Both are scoped to the user's workspaces (see ``profiles.admin.mixins``). The preview renders
through ``channels.rendering.preview_content``, exactly as a send would; nothing is sent or stored.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from profiles.admin.mixins import (
    BigTableAdminMixin,
    WorkspaceScopedAdminMixin,
    WorkspaceSwitcherFilter,
    json_pretty,
    user_workspaces,
)
from profiles.models import Profile, Workspace

from .models import Channel, InboxItem
from .rendering import Preview, preview_content
from .services.inbox import inbox_items_remove

# What the preview form starts with for each channel: every field the channel knows, with Liquid.
EXAMPLE_TEMPLATES: dict[str, dict[str, Any]] = {
    Channel.EMAIL: {
        "subject": "{{ first_name | default: 'Hello' }}, our spring sale starts today",
        "preheader": "20% off for {{ custom_attributes.plan | default: 'every' }} member",
        "html": (
            "<h1>Hi {{ first_name | default: 'there' }}!</h1>\n<p>Everything is 20% off this week in "
            "{{ city | default: 'your city' }}.</p>\n<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"
        ),
        "text": "Hi {{ first_name | default: 'there' }}! Everything is 20% off. Unsubscribe: {{ unsubscribe_url }}",
    },
    Channel.PUSH: {
        "title": "Hi {{ first_name | default: 'there' }}",
        "body": "Your {{ event_properties.product | default: 'cart' }} is waiting",
        "deep_link": "myapp://cart",
    },
    Channel.WEBPUSH: {
        "title": "Hi {{ first_name | default: 'there' }}",
        "body": "Your cart is waiting",
        "url": "https://shop.example.com/cart",
    },
    Channel.SMS: {"body": "{{ first_name | default: 'Hi' }}, your code is {{ api_trigger_properties.code }}"},
    Channel.WEBHOOK: {
        "url": "https://hooks.example.com/engage",
        "method": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": '{"user": "{{ user_id }}", "plan": "{{ custom_attributes.plan }}"}',
    },
    Channel.IN_APP: {
        "layout": "modal",
        "header": "Welcome back, {{ first_name | default: 'friend' }}",
        "body": "Finish setting up your profile",
        "buttons": [
            {"text": "Continue", "action": "deep_link", "url": "myapp://profile"},
            {"text": "Later", "action": "close"},
        ],
    },
    Channel.CONTENT_CARD: {
        "type": "classic",
        "title": "{{ first_name | default: 'Hi' }}, 20% off",
        "body": "This week only",
        "url": "https://shop.example.com/spring",
        "link_text": "Shop now",
    },
}


def find_profile(*, workspace: Workspace, term: str) -> Profile | None:
    """A person by external id, email or ``#id`` in ``workspace`` (each an index lookup)."""
    term = term.strip()
    if not term:
        return None
    match = Q(external_id=term)
    if "@" in term:
        match |= Q(email=term.lower())
    if term.startswith("#") and term[1:].isdigit():
        match |= Q(pk=int(term[1:]))
    return Profile.objects.filter(match, workspace=workspace).order_by("pk").first()


class JSONObjectField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 14, "cols": 100, "class": "vLargeTextField"}))
        super().__init__(**kwargs)

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if not text:
            return {}
        try:
            parsed = json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(f"not valid JSON: {error}") from None
        if not isinstance(parsed, dict):
            raise forms.ValidationError("must be a JSON object")
        return parsed


class PreviewForm(forms.Form):
    workspace = forms.ModelChoiceField(queryset=Workspace.objects.none())
    channel = forms.ChoiceField(choices=Channel.choices)
    person = forms.CharField(
        max_length=255, help_text="External id, email address or #profile-id of a real person in the workspace."
    )
    template = JSONObjectField(help_text="The message's fields as JSON; Liquid works in every text field.")
    event_properties = JSONObjectField(
        required=False,
        help_text="Optional: the triggering event's properties, as JSON ({{ event_properties.x }}).",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 100}),
    )

    def __init__(self, *args: Any, workspaces: QuerySet[Workspace], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["workspace"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = workspaces

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        workspace, term = cleaned.get("workspace"), cleaned.get("person")
        if workspace is not None and term:
            profile = find_profile(workspace=workspace, term=term)
            if profile is None:
                self.add_error("person", f"nobody with this external id, email or #id in {workspace}")
            cleaned["profile"] = profile
        return cleaned


@admin.register(InboxItem)
class InboxItemAdmin(BigTableAdminMixin, WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "kind", "title_column", "profile", "status", "pinned", "priority", "created_at", "expires_at")
    list_filter = (WorkspaceSwitcherFilter, "kind", "status", "pinned")
    list_select_related = ("profile",)
    raw_id_fields = ("profile", "dispatch")
    # Newest first by primary key: inbox items have no (workspace, created_at) index.
    ordering = ("-id",)
    indexed_sort_fields = ("id",)
    readonly_fields = (
        "workspace",
        "profile",
        "dispatch",
        "kind",
        "content_display",
        "trigger",
        "priority",
        "pinned",
        "status",
        "expires_at",
        "created_at",
        "first_viewed_at",
        "clicked_at",
        "dismissed_at",
    )
    exclude = ("content",)
    actions = ["remove_from_inbox"]
    change_list_template = "admin/channels/inboxitem/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # items arrive through sends (the inbox transport)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a sent message is not edited; it is removed

    @admin.display(description="header / title")
    def title_column(self, item: InboxItem) -> str:
        content = item.content if isinstance(item.content, dict) else {}
        return str(content.get("header") or content.get("title") or content.get("body") or "")[:80]

    @admin.display(description="content")
    def content_display(self, item: InboxItem) -> str:
        return format_html('<pre class="engage-json">{}</pre>', json_pretty(item.content))

    @admin.action(description="Remove from the person's inbox", permissions=["delete"])
    def remove_from_inbox(self, request: HttpRequest, queryset: QuerySet[InboxItem]) -> None:
        removed = inbox_items_remove(item_ids=list(queryset.values_list("pk", flat=True)[:1000]))
        messages.success(request, f"{removed} item(s) removed; apps stop showing them on their next fetch.")

    def get_urls(self) -> list[URLPattern]:
        return [
            path("preview/", self.admin_site.admin_view(self.preview_view), name="channels_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """ "Preview a message": render a template for a chosen real person of the user's workspaces."""
        if not request.user.has_perm("profiles.view_profile"):
            raise PermissionDenied
        workspaces = user_workspaces(request)
        preview: Preview | None = None
        profile: Profile | None = None
        if request.method == "POST":
            form = PreviewForm(request.POST, workspaces=workspaces)
            if form.is_valid():
                profile = form.cleaned_data["profile"]
                assert profile is not None
                preview = preview_content(
                    channel=form.cleaned_data["channel"],
                    template=form.cleaned_data["template"],
                    profile=profile,
                    event_properties=form.cleaned_data.get("event_properties") or None,
                )
        else:
            channel = request.GET.get("channel") or Channel.EMAIL
            channel = channel if channel in EXAMPLE_TEMPLATES else Channel.EMAIL
            first = workspaces.first()
            form = PreviewForm(
                initial={
                    "workspace": first.pk if first else None,
                    "channel": channel,
                    "person": request.GET.get("person", ""),
                    "template": json.dumps(EXAMPLE_TEMPLATES[channel], indent=2, ensure_ascii=False),
                },
                workspaces=workspaces,
            )
        channel_value = form.cleaned_data.get("channel") if form.is_bound and form.is_valid() else None
        context = {
            **self.admin_site.each_context(request),
            "title": "Preview a message",
            "opts": self.opts,
            "form": form,
            "preview": preview,
            "channel": channel_value,
            "profile": profile,
            "profile_url": reverse("admin:profiles_profile_change", args=[profile.pk]) if profile else "",
            "rendered_json": json_pretty(preview.content) if preview and preview.content is not None else "",
            "example_links": [
                (label, f"{reverse('admin:channels_preview')}?channel={value}") for value, label in Channel.choices
            ],
        }
        return TemplateResponse(request, "admin/channels/preview.html", context)
