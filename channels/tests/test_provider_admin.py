"""Provider configuration in admin: per-kind forms, secrets encrypted and never shown back,
workspace tenancy, "send a test message" against local providers, and the read-only dispatch log;
plus the secrets module itself."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from channels.models import Dispatch, DispatchStatus, ProviderConfig
from channels.secrets import (
    SecretsUnreadableError,
    decrypt_secrets,
    encrypt_secrets,
    mask,
    provider_config_secrets,
    provider_config_set_secrets,
)
from channels.testing import FakeFcm, SmtpSink
from profiles.models import Workspace
from profiles.tests.factories import WorkspaceFactory

from .dispatch_helpers import fake_fcm, fcm_config, make_config, make_device, make_profile, smtp_sink

__all__ = ["fake_fcm", "smtp_sink"]


def staff(username: str, *workspaces: Workspace) -> User:
    user = User.objects.create_user(username=username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["channels", "profiles"]))
    for workspace in workspaces:
        workspace.members.add(user)
    return user


@pytest.fixture
def marketer_client(workspace: Workspace) -> Client:
    client = Client()
    client.force_login(staff("marketer", workspace))
    return client


def change_url(config: ProviderConfig) -> str:
    return reverse("admin:channels_providerconfig_change", args=[config.pk])


def form_data(page: Any) -> dict[str, Any]:
    """The change form's current values, as the browser would post them back."""
    form = page.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None or value is False:
            continue
        data[name] = json.dumps(value) if isinstance(value, dict) else value
    return data


# --- the form and secrets --------------------------------------------------------------------------


def test_a_provider_is_added_then_configured_with_its_own_fields(marketer_client: Client, workspace: Workspace) -> None:
    response = marketer_client.post(
        reverse("admin:channels_providerconfig_add"),
        {"workspace": workspace.pk, "kind": "twilio", "name": "Twilio US", "is_active": "on"},
    )
    config = ProviderConfig.objects.get(name="Twilio US")
    assert response.status_code == 302 and response["Location"] == change_url(config)

    page = marketer_client.get(change_url(config))
    fields = page.context["adminform"].form.fields
    assert {"setting_account_sid", "setting_from_number", "secret_auth_token"} <= set(fields)
    assert "secret_service_account_json" not in fields  # an FCM field has no place here

    response = marketer_client.post(
        change_url(config),
        {
            "workspace": workspace.pk,
            "name": "Twilio US",
            "is_active": "on",
            "setting_account_sid": "AC0123456789abcdef0123456789abcdef",
            "setting_from_number": "+15005550006",
            "secret_auth_token": "twilio-auth-token-0123456789",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    config.refresh_from_db()
    assert config.settings == {"account_sid": "AC0123456789abcdef0123456789abcdef", "from_number": "+15005550006"}
    assert provider_config_secrets(config) == {"auth_token": "twilio-auth-token-0123456789"}
    # Encrypted at rest: the token is nowhere in the row.
    assert "twilio-auth-token" not in config.secrets_encrypted


def test_secrets_are_shown_masked_and_kept_when_left_empty(marketer_client: Client, workspace: Workspace) -> None:
    config = make_config(
        workspace,
        "twilio",
        settings={"account_sid": "AC0123456789abcdef0123456789abcdef", "from_number": "+15005550006"},
        secrets={"auth_token": "twilio-auth-token-0123456789"},
    )

    page = marketer_client.get(change_url(config))
    html = page.content.decode()
    assert "twilio-auth-token-0123456789" not in html
    assert "••••6789" in html

    data = form_data(page)
    data["setting_from_number"] = "+15005550007"
    assert marketer_client.post(change_url(config), data).status_code == 302
    config.refresh_from_db()
    assert config.settings["from_number"] == "+15005550007"
    assert provider_config_secrets(config) == {"auth_token": "twilio-auth-token-0123456789"}

    listing = marketer_client.get(reverse("admin:channels_providerconfig_changelist")).content.decode()
    assert "twilio-auth-token-0123456789" not in listing and "••••6789" in listing


def test_a_required_secret_cannot_be_removed(marketer_client: Client, workspace: Workspace) -> None:
    config = make_config(
        workspace,
        "twilio",
        settings={"account_sid": "AC0123456789abcdef0123456789abcdef", "from_number": "+15005550006"},
        secrets={"auth_token": "twilio-auth-token-0123456789"},
    )
    data = form_data(marketer_client.get(change_url(config)))
    data["clear_auth_token"] = "on"

    page = marketer_client.post(change_url(config), data)

    assert page.status_code == 200
    assert page.context["adminform"].form.errors["secret_auth_token"] == ["Required."]


def test_web_push_keys_can_be_generated_and_the_public_key_is_shown(
    marketer_client: Client, workspace: Workspace
) -> None:
    config = make_config(workspace, "webpush", settings={"vapid_subject": "mailto:ops@acme.example"})
    data = form_data(marketer_client.get(change_url(config)))
    data["generate_vapid_keys"] = "on"

    assert marketer_client.post(change_url(config), data).status_code == 302

    config.refresh_from_db()
    public_key = config.settings["vapid_public_key"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{87}", public_key)  # 65 bytes, base64url
    assert provider_config_secrets(config)["vapid_private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert public_key in marketer_client.get(change_url(config)).content.decode()


def test_one_active_provider_per_kind(marketer_client: Client, workspace: Workspace) -> None:
    make_config(workspace, "smtp", settings={"host": "mail.acme.example"})

    page = marketer_client.post(
        reverse("admin:channels_providerconfig_add"),
        {"workspace": workspace.pk, "kind": "smtp", "name": "Second SMTP", "is_active": "on"},
    )

    assert page.status_code == 200
    assert page.context["adminform"].form.errors["is_active"] == [
        "“Test smtp” is already this workspace's active SMTP provider: "
        "deactivate it first (one active provider per kind)."
    ]
    assert ProviderConfig.objects.filter(kind="smtp").count() == 1


def test_another_workspaces_provider_is_out_of_reach(marketer_client: Client) -> None:
    other = make_config(cast(Workspace, WorkspaceFactory()), "webhook", secrets={"signing_secret": "s"})

    assert marketer_client.get(change_url(other)).status_code == 404
    assert marketer_client.get(reverse("admin:channels_providerconfig_test", args=[other.pk])).status_code == 404
    listing = marketer_client.get(reverse("admin:channels_providerconfig_changelist")).content.decode()
    assert other.name not in listing


def test_secrets_round_trip_and_survive_a_key_rotation_only_with_the_fallback(settings: Any) -> None:
    settings.SECRET_KEY = "old-secret-key"
    token = encrypt_secrets({"api_key": "key-123"})
    assert decrypt_secrets(token) == {"api_key": "key-123"}
    assert mask("sk_live_0123456789abcd") == "••••abcd"
    assert mask("short") == "••••"  # too short to show any of it

    settings.SECRET_KEY = "new-secret-key"
    with pytest.raises(SecretsUnreadableError):
        decrypt_secrets(token)
    settings.SECRET_KEY_FALLBACKS = ["old-secret-key"]
    assert decrypt_secrets(token) == {"api_key": "key-123"}


def test_an_explicit_secrets_key_is_used(monkeypatch: pytest.MonkeyPatch, workspace: Workspace) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("ENGAGE_SECRETS_KEY", key)
    config = provider_config_set_secrets(make_config(workspace, "webhook"), signing_secret="whsec")
    assert Fernet(key.encode()).decrypt(config.secrets_encrypted.encode()) == b'{"signing_secret": "whsec"}'

    monkeypatch.setenv("ENGAGE_SECRETS_KEY", Fernet.generate_key().decode())  # rotated away without the old key
    with pytest.raises(SecretsUnreadableError):
        provider_config_secrets(config)


# --- send a test message ----------------------------------------------------------------------------


def test_a_test_email_arrives_personalised_and_the_page_shows_the_answer(
    marketer_client: Client, workspace: Workspace, smtp_sink: SmtpSink
) -> None:
    config = make_config(
        workspace, "smtp", settings={"host": "127.0.0.1", "port": smtp_sink.port, "from_email": "news@acme.example"}
    )
    make_profile(workspace, external_id="user-42", email="ada@example.com", first_name="Ada")
    url = reverse("admin:channels_providerconfig_test", args=[config.pk])
    assert marketer_client.get(url).status_code == 200

    page = marketer_client.post(
        url,
        {
            "person": "ada@example.com",
            "channel": "email",
            "subject": "Hello {{ first_name }}",
            "body": "Hi {{ first_name | default: 'there' }}!",
        },
    )

    assert page.status_code == 200
    [message] = smtp_sink.messages
    assert message.subject == "Hello Ada"
    assert message.body("plain").strip() == "Hi Ada!"
    html = page.content.decode()
    dispatch = Dispatch.objects.get(source="admin-test")
    assert dispatch.status == DispatchStatus.SENT
    assert escape(dispatch.provider_message_id) in html
    assert "accepted" in html


def test_a_test_push_shows_the_providers_refusal(
    marketer_client: Client, workspace: Workspace, fake_fcm: FakeFcm
) -> None:
    config = fcm_config(workspace, fake_fcm)
    ada = make_profile(workspace, external_id="user-42")
    make_device(ada, "fcm", "stale-token")
    fake_fcm.unregistered.add("stale-token")

    page = marketer_client.post(
        reverse("admin:channels_providerconfig_test", args=[config.pk]),
        {"person": "user-42", "channel": "push", "subject": "Hi", "body": "Test"},
    )

    html = page.content.decode()
    assert "UNREGISTERED" in html
    assert "Requested entity was not found" in html
    assert Dispatch.objects.get(source="admin-test").status == DispatchStatus.FAILED


def test_a_test_to_someone_unreachable_says_why(
    marketer_client: Client, workspace: Workspace, smtp_sink: SmtpSink
) -> None:
    config = make_config(workspace, "smtp", settings={"host": "127.0.0.1", "port": smtp_sink.port})
    make_profile(workspace, external_id="no-email")

    page = marketer_client.post(
        reverse("admin:channels_providerconfig_test", args=[config.pk]),
        {"person": "no-email", "channel": "email", "subject": "Hi", "body": "Test"},
    )

    assert "Not sent: no email address." in page.content.decode()
    assert smtp_sink.messages == []


def test_a_test_to_someone_unknown_is_a_form_error(marketer_client: Client, workspace: Workspace) -> None:
    config = make_config(workspace, "webhook")
    make_profile(cast(Workspace, WorkspaceFactory()), external_id="stranger")

    page = marketer_client.post(
        reverse("admin:channels_providerconfig_test", args=[config.pk]),
        {"person": "stranger", "channel": "webhook", "body": "x", "url": "http://127.0.0.1:9/hook"},
    )

    assert page.context["form"].errors["person"] == [f"Nobody in {workspace} has this external id or email address."]


# --- the dispatch log -------------------------------------------------------------------------------


def test_the_dispatch_log_is_read_only_and_searchable(marketer_client: Client, workspace: Workspace) -> None:
    ada = make_profile(workspace, email="ada@example.com")
    dispatch = Dispatch.objects.create(
        workspace=workspace,
        profile=ada,
        channel="sms",
        provider="twilio",
        address="+14155550100",
        content={"body": "Hi"},
        idempotency_key="k:1",
        status=DispatchStatus.SENT,
        provider_message_id="SM0123",
    )
    changelist = reverse("admin:channels_dispatch_changelist")

    page = marketer_client.get(changelist)
    assert page.status_code == 200 and "+14155550100" in page.content.decode()
    assert marketer_client.get(changelist, {"q": "SM0123"}).context["cl"].result_count == 1
    assert marketer_client.get(changelist, {"q": str(dispatch.pk)}).context["cl"].result_count == 1
    detail = marketer_client.get(reverse("admin:channels_dispatch_change", args=[dispatch.pk]))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content  # nothing to save: read-only
    assert marketer_client.get(reverse("admin:channels_dispatch_add")).status_code == 403
