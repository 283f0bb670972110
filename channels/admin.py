"""Admin for provider configurations (with "send a test message") and the dispatch log.

A provider config's form has the fields its kind needs: settings as ordinary inputs, secrets as
write-only inputs (leave one empty to keep what is stored; the stored value shows only masked).
Secrets go through ``channels.secrets.provider_config_set_secrets``, encrypted; they are never put
back into a page. Everything is scoped to the user's workspaces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.expressions import Combinable
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from profiles.admin.mixins import (
    BigTableAdminMixin,
    WorkspaceScopedAdminMixin,
    WorkspaceScopedRelatedFilter,
    WorkspaceSwitcherFilter,
    json_pretty,
)
from profiles.models import Profile

from .models import Channel, Dispatch, ProviderConfig, ProviderKind
from .secrets import SecretsUnreadableError, masked_secrets, provider_config_secrets, provider_config_set_secrets
from .services.dispatch import CHANNELS_OF_KIND, dispatch_send_test
from .transports.email import anymail_backend_path
from .transports.webpush import generate_vapid_keys, load_vapid_private_key, vapid_public_key

# --- what each kind of provider needs ------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str = "text"  # text | int | bool | json | choice
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Secret:
    name: str
    help: str = ""
    multiline: bool = False
    required: bool = False


KIND_SETTINGS: dict[str, tuple[Setting, ...]] = {
    ProviderKind.SMTP: (
        Setting("host", required=True, help="SMTP server host name."),
        Setting("port", "int", help="587 (STARTTLS) by default; 465 for SMTPS."),
        Setting("username"),
        Setting("use_tls", "bool", help="STARTTLS after connecting."),
        Setting("use_ssl", "bool", help="Implicit TLS (SMTPS, port 465)."),
        Setting("timeout", "int", help="Seconds; 10 by default."),
        Setting("from_email", help="Default sender address (a message's own from_email wins)."),
        Setting("from_name", help="Default sender name."),
        Setting("unsubscribe_mailto", help="Optional mailto: target added to List-Unsubscribe."),
    ),
    ProviderKind.ANYMAIL: (
        Setting("esp", required=True, help="django-anymail ESP: postmark, mailgun, amazon_ses, brevo, resend, …"),
        Setting("options", "json", help='Non-secret backend options as JSON, e.g. {"sender_domain": "mg.acme.com"}.'),
        Setting("from_email", help="Default sender address (a message's own from_email wins)."),
        Setting("from_name", help="Default sender name."),
        Setting("unsubscribe_mailto", help="Optional mailto: target added to List-Unsubscribe."),
    ),
    ProviderKind.FCM: (
        Setting("project_id", help="Firebase project id; the service account's by default."),
        Setting("token_uri", help="OAuth token endpoint; the service account's (Google's) by default."),
        Setting("base_url", help="FCM API origin; https://fcm.googleapis.com by default."),
    ),
    ProviderKind.APNS: (
        Setting("team_id", required=True, help="Apple Developer team id (10 characters)."),
        Setting("key_id", required=True, help="The .p8 key's id (10 characters)."),
        Setting("topic", required=True, help="The app's bundle id, e.g. com.acme.app."),
        Setting("environment", "choice", choices=("production", "sandbox"), help="Development builds use sandbox."),
        Setting("base_url", help="Overrides the environment's APNs origin (a local sandbox)."),
    ),
    ProviderKind.WEBPUSH: (
        Setting("vapid_subject", required=True, help="Contact for push services: mailto:ops@… or https://…"),
        Setting("allow_insecure_endpoints", "bool", help="Accept http:// push endpoints (the local sandbox only)."),
    ),
    ProviderKind.TWILIO: (
        Setting("account_sid", required=True, help="AC…"),
        Setting("messaging_service_sid", help="MG… (preferred over a from number)."),
        Setting("from_number", help="E.164 sender number, when no messaging service is set."),
        Setting("base_url", help="Twilio API origin; https://api.twilio.com by default."),
        Setting("webhook_base_url", help="The public origin Twilio calls back (PUBLIC_BASE_URL by default)."),
    ),
    ProviderKind.WEBHOOK: (Setting("timeout", "int", help="Seconds to wait for the endpoint; 10 by default."),),
}

KIND_SECRETS: dict[str, tuple[Secret, ...]] = {
    ProviderKind.SMTP: (Secret("password"),),
    ProviderKind.ANYMAIL: (
        Secret("api_key", help="Most ESPs (Mailgun, Brevo, Resend, SparkPost, MailerSend…)."),
        Secret("server_token", help="Postmark."),
        Secret("api_secret", help="Mailjet."),
    ),
    ProviderKind.FCM: (Secret("service_account_json", "The service account key file (JSON).", True, True),),
    ProviderKind.APNS: (Secret("private_key", "The .p8 key file's contents (PEM).", True, True),),
    ProviderKind.WEBPUSH: (Secret("vapid_private_key", "PEM, or the raw key in base64url.", True),),
    ProviderKind.TWILIO: (Secret("auth_token", required=True),),
    ProviderKind.WEBHOOK: (Secret("signing_secret", "Signs each request: X-Engage-Signature."),),
}

SETTING_PREFIX, SECRET_PREFIX, CLEAR_PREFIX = "setting_", "secret_", "clear_"


class ProviderConfigForm(forms.ModelForm):
    """The base form; ``form_for_kind`` adds the kind's fields."""

    class Meta:
        model = ProviderConfig
        fields = ("workspace", "kind", "name", "is_active")

    provider_kind: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.settings or {}
        for setting in KIND_SETTINGS.get(self.provider_kind, ()):
            field_name = SETTING_PREFIX + setting.name
            if field_name in self.fields and setting.name in current:
                value = current[setting.name]
                self.initial[field_name] = json.dumps(value) if setting.kind == "json" else value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = self.provider_kind
        self._check_one_active(cleaned)
        stored: dict[str, str] = {}
        if self.instance.pk and self.instance.secrets_encrypted:
            try:
                stored = provider_config_secrets(self.instance)
            except SecretsUnreadableError:
                stored = {}
        for secret in KIND_SECRETS.get(kind, ()):
            given = cleaned.get(SECRET_PREFIX + secret.name)
            cleared = cleaned.get(CLEAR_PREFIX + secret.name)
            generated = kind == ProviderKind.WEBPUSH and cleaned.get("generate_vapid_keys")
            if secret.required and not given and (cleared or not stored.get(secret.name)) and not generated:
                self.add_error(SECRET_PREFIX + secret.name, "Required.")
        if kind == ProviderKind.ANYMAIL and cleaned.get(SETTING_PREFIX + "esp"):
            try:
                anymail_backend_path(str(cleaned[SETTING_PREFIX + "esp"]))
            except Exception as error:
                self.add_error(SETTING_PREFIX + "esp", str(error))
        if kind == ProviderKind.FCM and cleaned.get(SECRET_PREFIX + "service_account_json"):
            try:
                account = json.loads(cleaned[SECRET_PREFIX + "service_account_json"])
                if not (isinstance(account, dict) and account.get("client_email") and account.get("private_key")):
                    raise ValueError("it has no client_email or private_key")
            except ValueError as error:
                self.add_error(SECRET_PREFIX + "service_account_json", f"Not a service account key file: {error}")
        if kind == ProviderKind.WEBPUSH and cleaned.get(SECRET_PREFIX + "vapid_private_key"):
            try:
                load_vapid_private_key(cleaned[SECRET_PREFIX + "vapid_private_key"])
            except Exception as error:
                self.add_error(SECRET_PREFIX + "vapid_private_key", str(error))
        if kind == ProviderKind.TWILIO and self.instance.pk is not None:
            has_sender = cleaned.get(SETTING_PREFIX + "messaging_service_sid") or cleaned.get(
                SETTING_PREFIX + "from_number"
            )
            if not has_sender:
                self.add_error(SETTING_PREFIX + "from_number", "Set a messaging service or a from number.")
        return cleaned

    def _check_one_active(self, cleaned: dict[str, Any]) -> None:
        kind = cleaned.get("kind") or self.instance.kind
        workspace = cleaned.get("workspace") or getattr(self.instance, "workspace", None)
        if not (cleaned.get("is_active") and kind and workspace):
            return
        active = ProviderConfig.objects.filter(workspace=workspace, kind=kind, is_active=True).exclude(
            pk=self.instance.pk
        )
        other = active.first()
        if other is not None:
            self.add_error(
                "is_active",
                f"“{other.name}” is already this workspace's active {other.get_kind_display()} provider: "
                "deactivate it first (one active provider per kind).",
            )

    def settings_value(self) -> dict[str, Any]:
        """The settings as stored: the kind's fields, plus keys this form does not know (kept)."""
        out = dict(self.instance.settings or {})
        for setting in KIND_SETTINGS.get(self.provider_kind, ()):
            value = self.cleaned_data.get(SETTING_PREFIX + setting.name)
            if value in (None, "") or (setting.kind == "bool" and value is False):
                out.pop(setting.name, None)
            else:
                out[setting.name] = value
        return out

    def secrets_value(self) -> dict[str, str | None]:
        """Secrets to change: new values, and None for the ones to clear."""
        changes: dict[str, str | None] = {}
        for secret in KIND_SECRETS.get(self.provider_kind, ()):
            if self.cleaned_data.get(CLEAR_PREFIX + secret.name):
                changes[secret.name] = None
            value = self.cleaned_data.get(SECRET_PREFIX + secret.name)
            if value:
                changes[secret.name] = value.strip() if secret.multiline else value
        return changes


def _setting_field(setting: Setting) -> forms.Field:
    common: dict[str, Any] = {"required": setting.required, "help_text": setting.help, "label": setting.name}
    if setting.kind == "int":
        return forms.IntegerField(min_value=0, **common)
    if setting.kind == "bool":
        return forms.BooleanField(**{**common, "required": False})
    if setting.kind == "json":
        return forms.JSONField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), **common)
    if setting.kind == "choice":
        return forms.ChoiceField(choices=[("", "—"), *((c, c) for c in setting.choices)], **common)
    return forms.CharField(max_length=2000, **common)


def form_for_kind(kind: str) -> type[ProviderConfigForm]:
    """``ProviderConfigForm`` with ``kind``'s settings and write-only secret fields declared."""
    attrs: dict[str, Any] = {"provider_kind": kind}
    for setting in KIND_SETTINGS.get(kind, ()):
        attrs[SETTING_PREFIX + setting.name] = _setting_field(setting)
    for secret in KIND_SECRETS.get(kind, ()):
        widget: forms.Widget = (
            forms.Textarea(attrs={"rows": 4, "cols": 60, "autocomplete": "off", "spellcheck": "false"})
            if secret.multiline
            else forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
        )
        attrs[SECRET_PREFIX + secret.name] = forms.CharField(
            required=False,
            strip=False,
            widget=widget,
            label=secret.name,
            help_text=(secret.help + " " if secret.help else "") + "Write-only: leave empty to keep the stored value.",
        )
        attrs[CLEAR_PREFIX + secret.name] = forms.BooleanField(required=False, label=f"Remove the stored {secret.name}")
    if kind == ProviderKind.WEBPUSH:
        attrs["generate_vapid_keys"] = forms.BooleanField(
            required=False,
            label="Generate a new VAPID key pair",
            help_text="Browsers subscribed with the old public key must subscribe again.",
        )
    return type(f"ProviderConfigForm_{kind or 'new'}", (ProviderConfigForm,), attrs)


@admin.register(ProviderConfig)
class ProviderConfigAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "workspace", "kind", "is_active", "stored_secrets", "updated_at", "test_link")
    list_filter = (("workspace", WorkspaceScopedRelatedFilter), "kind", "is_active")
    search_fields = ("name",)
    change_form_template = "admin/channels/providerconfig/change_form.html"
    actions = ["send_test_message"]

    # -- the form ----------------------------------------------------------------------------------

    def _kind(self, request: HttpRequest, obj: ProviderConfig | None) -> str:
        if obj is not None:
            return obj.kind
        return ""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = form_for_kind(self._kind(request, obj))
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A config's kind never changes: its settings and secrets would not fit another kind.
        return ("kind", "stored_secrets", "public_key") if obj is not None else ()

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        kind = self._kind(request, obj)
        base = (None, {"fields": ("workspace", "kind", "name", "is_active")})
        if obj is None:
            return [
                (
                    None,
                    {
                        "fields": ("workspace", "kind", "name", "is_active"),
                        "description": "Choose the kind of provider; its settings and secrets come next.",
                    },
                )
            ]
        settings_fields = [SETTING_PREFIX + s.name for s in KIND_SETTINGS.get(kind, ())]
        secret_fields: list[Any] = ["stored_secrets"]
        for secret in KIND_SECRETS.get(kind, ()):
            secret_fields += [SECRET_PREFIX + secret.name, CLEAR_PREFIX + secret.name]
        if kind == ProviderKind.WEBPUSH:
            settings_fields.append("public_key")
            secret_fields.append("generate_vapid_keys")
        return [base, ("Settings", {"fields": settings_fields}), ("Secrets", {"fields": secret_fields})]

    def save_model(self, request: HttpRequest, obj: ProviderConfig, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        obj.settings = form.settings_value()
        secret_changes = form.secrets_value()
        if obj.kind == ProviderKind.WEBPUSH:
            if form.cleaned_data.get("generate_vapid_keys"):
                private_pem, _ = generate_vapid_keys()
                secret_changes["vapid_private_key"] = private_pem
            private = secret_changes.get("vapid_private_key")
            if private:
                obj.settings["vapid_public_key"] = vapid_public_key(load_vapid_private_key(private))
            elif "vapid_private_key" in secret_changes:
                obj.settings.pop("vapid_public_key", None)
        obj.save()
        if secret_changes:
            provider_config_set_secrets(obj, **secret_changes)

    def response_add(self, request: HttpRequest, obj: ProviderConfig, post_url_continue: str | None = None) -> Any:
        # The kind's settings and secrets are on the change page: always continue there.
        messages.info(request, f"Now fill in the {obj.get_kind_display()} settings and secrets.")
        return HttpResponseRedirect(reverse("admin:channels_providerconfig_change", args=[obj.pk]))

    @admin.display(description="secrets")
    def stored_secrets(self, config: ProviderConfig) -> str:
        masked = masked_secrets(config)
        if not masked:
            return "—"
        return format_html_join(", ", "{}: <code>{}</code>", sorted(masked.items()))

    @admin.display(description="VAPID public key (applicationServerKey)")
    def public_key(self, config: ProviderConfig) -> str:
        return str((config.settings or {}).get("vapid_public_key") or "—")

    @admin.display(description="")
    def test_link(self, config: ProviderConfig) -> str:
        return format_html(
            '<a href="{}">Send test message</a>', reverse("admin:channels_providerconfig_test", args=[config.pk])
        )

    # -- send a test message -------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/test/",
                self.admin_site.admin_view(self.test_view),
                name="channels_providerconfig_test",
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Send a test message through the selected provider")
    def send_test_message(self, request: HttpRequest, queryset: QuerySet[ProviderConfig]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select one provider to test.", messages.WARNING)
            return None
        config = queryset.get()
        return HttpResponseRedirect(reverse("admin:channels_providerconfig_test", args=[config.pk]))

    def test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        config = self.get_object(request, object_id)
        if not self.has_change_permission(request, config):
            raise PermissionDenied
        form = TestMessageForm(request.POST or None, config=config)
        outcome = None
        if request.method == "POST" and form.is_valid():
            outcome = form.send()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Send a test message through {config}",
            "opts": self.model._meta,
            "original": config,
            "config": config,
            "form": form,
            "outcome": outcome,
            "inactive": not config.is_active,
        }
        return TemplateResponse(request, "admin/channels/providerconfig/test_send.html", context)


# --- the test message ---------------------------------------------------------------------------------


@dataclass
class TestOutcome:
    profile: Profile
    rows: list[dict[str, str]]
    problem: str = ""  # the person is unreachable or the template failed for them


class TestMessageForm(forms.Form):
    person = forms.CharField(
        max_length=255, help_text="External id or email address of a person in this provider's workspace."
    )
    channel = forms.ChoiceField()
    subject = forms.CharField(
        max_length=998,
        required=False,
        initial="Test message for {{ first_name | default: 'you' }}",
        help_text="Email subject or push title. Liquid works: {{ first_name }}, {{ custom_attributes.plan }}…",
    )
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        initial="Hello {{ first_name | default: 'there' }}, this is a test message from Engage.",
        help_text="Message text (email body, push/SMS text, webhook body). Liquid works.",
    )
    url = forms.CharField(
        max_length=2000,
        required=False,
        help_text="Webhook: the endpoint to call. Push: a deep link. Web push: the page to open.",
    )
    transactional = forms.BooleanField(
        required=False,
        help_text="Send even if the person unsubscribed (email/push); no unsubscribe headers are required.",
    )

    def __init__(self, *args: Any, config: ProviderConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config
        channels = CHANNELS_OF_KIND.get(config.kind, ())
        channel_field = self.fields["channel"]
        assert isinstance(channel_field, forms.ChoiceField)
        channel_field.choices = [(c, Channel(c).label) for c in channels]
        if channels:
            self.fields["channel"].initial = channels[0]
        self.profile: Profile | None = None

    def clean_person(self) -> str:
        value = self.cleaned_data["person"].strip()
        people = Profile.objects.filter(workspace_id=self.config.workspace_id)
        by_id = list(people.filter(external_id=value)[:1])
        if by_id:
            self.profile = by_id[0]
            return value
        by_email = list(people.filter(email__iexact=value)[:2]) if "@" in value else []
        if len(by_email) > 1:
            raise forms.ValidationError("Several people have this email address: use the external id.")
        if not by_email:
            raise forms.ValidationError(f"Nobody in {self.config.workspace} has this external id or email address.")
        self.profile = by_email[0]
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("channel") == Channel.WEBHOOK and not cleaned.get("url"):
            self.add_error("url", "A webhook needs the URL to call.")
        return cleaned

    def template(self) -> dict[str, Any]:
        data = self.cleaned_data
        channel, subject, body, url = data["channel"], data.get("subject") or "", data["body"], data.get("url") or ""
        if channel == Channel.EMAIL:
            return {"subject": subject or "Test message", "text": body}
        if channel == Channel.PUSH:
            return {"title": subject, "body": body, **({"deep_link": url} if url else {})}
        if channel == Channel.WEBPUSH:
            return {"title": subject or "Test message", "body": body, **({"url": url} if url else {})}
        if channel == Channel.SMS:
            return {"body": body}
        return {"url": url, "method": "POST", "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"message": body, "test": True})}  # fmt: skip

    def send(self) -> TestOutcome:
        from .rendering import render_content

        assert self.profile is not None
        channel = self.cleaned_data["channel"]
        rendered = render_content(channel=channel, template=self.template(), profile=self.profile)
        if not isinstance(rendered, dict):
            return TestOutcome(self.profile, [], problem=f"The template failed for this person: {rendered.reason}")
        result = dispatch_send_test(
            config=self.config,
            profile=self.profile,
            channel=channel,
            content=rendered,
            transactional=bool(self.cleaned_data.get("transactional")),
        )
        if result.unreachable is not None:
            return TestOutcome(self.profile, [], problem=f"Not sent: {result.unreachable.reason}.")
        rows = [
            {
                "address": dispatch.address if dispatch.channel != Channel.WEBPUSH else "web push subscription",
                "status": dispatch.get_status_display(),
                "ok": "yes" if dispatch.status in ("sent", "delivered") else "",
                "provider_message_id": dispatch.provider_message_id,
                "error": f"{dispatch.error_code}: {dispatch.error_message}" if dispatch.error_code else "",
                "url": reverse("admin:channels_dispatch_change", args=[dispatch.pk]),
            }
            for dispatch in result.dispatches
        ]
        return TestOutcome(self.profile, rows)


# --- the dispatch log ------------------------------------------------------------------------------------


@admin.register(Dispatch)
class DispatchAdmin(BigTableAdminMixin, WorkspaceScopedAdminMixin, admin.ModelAdmin):
    """Every message handed to a provider. Read-only: dispatches change only through the send
    pipeline and provider reports."""

    list_display = ("created_at", "channel", "provider", "short_address", "status", "attempts", "error_code", "profile")
    list_filter = (WorkspaceSwitcherFilter, "channel", "status")
    list_select_related = ("profile",)
    list_per_page = 50
    indexed_sort_fields = ("created_at",)
    search_fields = ("=id",)
    search_help_text = "Exact dispatch id or provider message id."
    fields = (
        "id",
        "workspace",
        "profile",
        "device",
        ("channel", "provider", "transactional"),
        "address",
        ("status", "attempts", "permanent_failure"),
        ("error_code", "error_message"),
        "provider_message_id",
        ("created_at", "claimed_at", "sent_at", "updated_at"),
        ("idempotency_key", "source"),
        "metadata_display",
        "content_display",
    )
    readonly_fields = tuple(name for entry in fields for name in (entry if isinstance(entry, tuple) else (entry,)))

    def get_ordering(self, request: HttpRequest) -> list[str | Combinable]:
        return ["-created_at"]  # the (workspace, -created_at) index, one workspace at a time

    def get_queryset(self, request: HttpRequest) -> QuerySet[Dispatch]:
        return super().get_queryset(request).defer("content")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Dispatch], search_term: str
    ) -> tuple[QuerySet[Dispatch], bool]:
        import uuid

        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            # (provider, provider_message_id) is indexed: name every provider so it is used.
            providers = [kind.value for kind in ProviderKind]
            return queryset.filter(provider__in=providers, provider_message_id=term), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="address")
    def short_address(self, dispatch: Dispatch) -> str:
        if dispatch.channel == Channel.WEBPUSH:
            return "web push subscription"
        return dispatch.address if len(dispatch.address) <= 48 else dispatch.address[:45] + "…"

    @admin.display(description="metadata")
    def metadata_display(self, dispatch: Dispatch) -> str:
        return format_html("<pre>{}</pre>", json_pretty(dispatch.metadata))

    @admin.display(description="content")
    def content_display(self, dispatch: Dispatch) -> str:
        return format_html("<pre>{}</pre>", json_pretty(dispatch.content))


# The inbox (in-app messages and content cards) and the message preview have their own module.
from . import admin_inbox  # noqa: E402, F401
