"""Shared helpers for the transport and dispatch tests: the fake provider servers as fixtures,
provider configs pointing at them, devices, and reading what a dispatch did to the profile.

Test modules import the fixtures they use by name (``from .dispatch_helpers import fake_fcm``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.utils import timezone

from channels.models import Dispatch, ProviderConfig
from channels.secrets import provider_config_set_secrets
from channels.services.dispatch import dispatch_prepare
from channels.testing import FakeApns, FakeFcm, FakeTwilio, FakeWebPush, SmtpSink, WebhookReceiver
from channels.transports.http import close_shared_clients
from profiles.models import Device, Event, Platform, Profile, PushProvider, Workspace
from profiles.tests.factories import ProfileFactory

APNS_TEAM, APNS_KEY = "TEAM123456", "KEY1234567"
PLATFORMS: dict[str, str] = {PushProvider.APNS: Platform.IOS, PushProvider.FCM: Platform.ANDROID}


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def fake_fcm() -> Iterator[FakeFcm]:
    with FakeFcm() as fake:
        yield fake
    close_shared_clients()


@pytest.fixture
def fake_apns() -> Iterator[FakeApns]:
    with FakeApns() as fake:
        yield fake
    close_shared_clients()


@pytest.fixture
def fake_webpush() -> Iterator[FakeWebPush]:
    with FakeWebPush() as fake:
        yield fake
    close_shared_clients()


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake
    close_shared_clients()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret="whsec-test-secret") as receiver:
        yield receiver
    close_shared_clients()


def make_config(
    workspace: Workspace,
    kind: str,
    *,
    settings: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    name: str = "",
    is_active: bool = True,
) -> ProviderConfig:
    config = ProviderConfig.objects.create(
        workspace=workspace, kind=kind, name=name or f"Test {kind}", settings=settings or {}, is_active=is_active
    )
    return provider_config_set_secrets(config, **(secrets or {}))


def fcm_config(workspace: Workspace, fake: FakeFcm) -> ProviderConfig:
    account = fake.service_account(project_id="acme-app")
    return make_config(
        workspace, "fcm", settings={"base_url": fake.url}, secrets={"service_account_json": json.dumps(account)}
    )


def apns_config(workspace: Workspace, fake: FakeApns) -> ProviderConfig:
    return make_config(
        workspace,
        "apns",
        settings={"base_url": fake.url, "team_id": APNS_TEAM, "key_id": APNS_KEY, "topic": "com.acme.app"},
        secrets={"private_key": fake.signing_key(APNS_TEAM, APNS_KEY)},
    )


def twilio_config(workspace: Workspace, fake: FakeTwilio, **settings: Any) -> ProviderConfig:
    sid, token = fake.account()
    return make_config(
        workspace,
        "twilio",
        settings={"base_url": fake.url, "account_sid": sid, "from_number": "+15005550006", **settings},
        secrets={"auth_token": token},
    )


def make_profile(workspace: Workspace, **fields: Any) -> Profile:
    return cast(Profile, ProfileFactory(workspace=workspace, **fields))


def make_device(profile: Profile, provider: str, token: str, *, push_enabled: bool = True) -> Device:
    now = timezone.now()
    return Device.objects.create(
        workspace=profile.workspace,
        profile=profile,
        device_id=str(uuid.uuid4()),
        platform=PLATFORMS.get(provider, Platform.WEB),
        push_provider=provider,
        push_token=token,
        push_enabled=push_enabled,
        first_seen=now,
        last_seen=now,
    )


def prepare_one(
    profile: Profile,
    channel: str,
    content: dict[str, Any],
    *,
    key: str = "campaign-7:run-1",
    transactional: bool = False,
    metadata: dict[str, str] | None = None,
) -> Dispatch:
    prepared = dispatch_prepare(
        workspace_id=profile.workspace_id,
        profile=profile,
        channel=channel,
        content=content,
        idempotency_key=key,
        source="tests",
        metadata={"campaign_id": "7", "variant": "A", "send_id": "send-1"} if metadata is None else metadata,
        transactional=transactional,
    )
    assert isinstance(prepared, list) and len(prepared) == 1, prepared
    return prepared[0]


def engagement_names(profile: Profile) -> list[str]:
    return list(
        Event.objects.filter(profile=profile, name__startswith="$").order_by("id").values_list("name", flat=True)
    )


def engagement(profile: Profile, name: str) -> Event:
    return Event.objects.get(profile=profile, name=name)
