"""The provider sandbox a marketer runs beside ``./run``: every fake on its ports, configs for a
workspace pointing at them, and a test message on every channel arriving where it should."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from channels.models import DispatchStatus, ProviderConfig
from channels.services.dispatch import dispatch_send_test
from channels.testing.sandbox import DEFAULT_PORTS, ProviderSandbox, sandbox_configure, sandbox_webpush_subscription
from channels.transports.http import close_shared_clients
from profiles.models import Workspace

from .dispatch_helpers import make_config, make_device, make_profile


@pytest.fixture
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


@pytest.fixture
def sandbox(data_dir: Path) -> Iterator[ProviderSandbox]:
    lines: list[str] = []
    box = ProviderSandbox(ports=dict.fromkeys(DEFAULT_PORTS, 0), on_message=lines.append)
    box.twilio.auto_callbacks = False  # nothing listens for Twilio's callbacks in a test
    box.start()
    box.lines = lines  # type: ignore[attr-defined]
    yield box
    box.stop()
    close_shared_clients()


def test_a_test_message_on_every_channel_arrives_in_the_sandbox(workspace: Workspace, sandbox: ProviderSandbox) -> None:
    configs = {c.kind: c for c in sandbox_configure(workspace_id=workspace.pk, ports=sandbox.ports)}
    sam = make_profile(workspace, email="sam@example.com", phone="+14155550123", first_name="Sam")
    make_device(sam, "fcm", "fcm-token-sam")
    make_device(sam, "apns", "ab" * 32)
    make_device(sam, "webpush", json.dumps(sandbox_webpush_subscription("sams-browser", port=sandbox.ports["webpush"])))
    hook_url = f"http://127.0.0.1:{sandbox.ports['webhook']}/hooks/demo"

    sends = [
        ("smtp", "email", {"subject": "Hello Sam", "text": "Hi"}),
        ("fcm", "push", {"title": "Hi", "body": "Android"}),
        ("apns", "push", {"title": "Hi", "body": "iOS"}),
        ("webpush", "webpush", {"title": "Hi", "body": "Browser"}),
        ("twilio", "sms", {"body": "Text"}),
        ("webhook", "webhook", {"url": hook_url, "body": '{"hello": "sam"}'}),
    ]
    for kind, channel, content in sends:
        outcome = dispatch_send_test(config=configs[kind], profile=sam, channel=channel, content=content)
        assert [d.status for d in outcome.dispatches] == [DispatchStatus.SENT], (kind, outcome)

    assert sandbox.smtp.messages[0].subject == "Hello Sam"
    assert sandbox.fcm.messages[0]["notification"]["body"] == "Android"
    assert sandbox.apns.notifications[0]["payload"]["aps"]["alert"]["body"] == "iOS"
    assert sandbox.webpush.notifications[0]["payload"]["body"] == "Browser"  # decrypted
    assert sandbox.twilio.messages[0]["Body"] == "Text"
    assert sandbox.webhook.requests[0].info["signature_valid"] is True
    lines = sandbox.lines  # type: ignore[attr-defined]
    assert any(line.startswith("[email]") and "Hello Sam" in line for line in lines)
    assert any(line.startswith("[webpush 201]") and "Browser" in line for line in lines)
    assert len(lines) == 6


def test_configuring_twice_updates_and_never_switches_off_a_real_provider(workspace: Workspace, data_dir: Path) -> None:
    real = make_config(workspace, "twilio", name="Twilio production", settings={"account_sid": "AC1"})

    first = sandbox_configure(workspace_id=workspace.pk)
    second = sandbox_configure(workspace_id=workspace.pk)

    assert [c.pk for c in first] == [c.pk for c in second]
    assert ProviderConfig.objects.filter(workspace=workspace).count() == 7
    real.refresh_from_db()
    assert real.is_active
    sandbox_twilio = ProviderConfig.objects.get(workspace=workspace, kind="twilio", name="Local sandbox")
    assert sandbox_twilio.is_active is False
    # The credentials are kept, private to their owner, and reused.
    assert (data_dir / "provider-sandbox.json").stat().st_mode & 0o777 == 0o600


def test_the_command_configures_a_workspace(workspace: Workspace, data_dir: Path, capsys: Any) -> None:
    call_command("provider_sandbox", "--configure", workspace.slug, "--no-serve")

    assert ProviderConfig.objects.filter(workspace=workspace, name="Local sandbox", is_active=True).count() == 6
    assert "Local sandbox (SMTP) -> active" in capsys.readouterr().out


def test_the_command_listens_on_loopback_only(db: None) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="loopback"):
        call_command("provider_sandbox", "--host", "0.0.0.0", "--no-serve")  # noqa: S104
