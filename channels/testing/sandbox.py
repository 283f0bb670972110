"""The provider sandbox: every fake provider on fixed loopback ports, with stable credentials, so
a marketer on the embedded run can configure providers, send test messages from admin and watch
them arrive (``manage.py provider_sandbox``).

Credentials (a service account key, an APNs .p8 key, a VAPID key pair, a Twilio account, a webhook
signing secret and one browser key pair for demo web push subscriptions) are generated once and
kept in ``<ENGAGE_DATA_DIR>/provider-sandbox.json`` (mode 0600), so the sandbox process and the
app configured by ``sandbox_configure`` agree on them across restarts. They are throwaway keys
that only these local fakes accept.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.db import transaction

from ..models import ProviderConfig, ProviderKind
from ..secrets import provider_config_set_secrets
from ..transports.webpush import b64url, generate_vapid_keys
from .apns import FakeApns
from .fcm import FakeFcm
from .http import LOOPBACK, Received
from .smtp import SmtpMessage, SmtpSink
from .twilio import FakeTwilio
from .webhook import WebhookReceiver
from .webpush import BrowserKeys, FakeWebPush

DEFAULT_PORTS: dict[str, int] = {
    "smtp": 1025,
    "fcm": 9101,
    "apns": 9102,
    "webpush": 9103,
    "twilio": 9104,
    "webhook": 9105,
}
SANDBOX_NAME = "Local sandbox"
SANDBOX_PROJECT = "engage-sandbox"
SANDBOX_FROM_NUMBER = "+15005550006"


def _pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    )


def credentials_path() -> Path:
    return Path(settings.DATA_DIR) / "provider-sandbox.json"


def sandbox_credentials(path: Path | None = None) -> dict[str, Any]:
    """The sandbox's credentials, created on first use and kept in ``path``."""
    path = path or credentials_path()
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    vapid_private, vapid_public = generate_vapid_keys()
    browser = BrowserKeys.generate()
    data = {
        "fcm_client_email": f"sandbox@{SANDBOX_PROJECT}.iam.gserviceaccount.com",
        "fcm_private_key": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "apns_team_id": "SANDBOXTM1",
        "apns_key_id": "SANDBOXKY1",
        "apns_private_key": _pem(ec.generate_private_key(ec.SECP256R1())),
        "vapid_private_key": vapid_private,
        "vapid_public_key": vapid_public,
        "twilio_account_sid": "AC" + secrets.token_hex(16),
        "twilio_auth_token": secrets.token_hex(16),
        "webhook_secret": "whsec_" + secrets.token_urlsafe(24),
        "browser_private_key": _pem(browser.private_key),
        "browser_auth": b64url(browser.auth),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(data, file, indent=2)
    return data


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def sandbox_webpush_subscription(name: str, *, host: str = LOOPBACK, port: int | None = None) -> dict[str, Any]:
    """A browser PushSubscription the sandbox's push service accepts (for demo web devices)."""
    creds = sandbox_credentials()
    keys = BrowserKeys.from_strings(creds["browser_private_key"], creds["browser_auth"])
    return {
        "endpoint": f"{_url(host, port or DEFAULT_PORTS['webpush'])}/push/{name}",
        "expirationTime": None,
        "keys": {"p256dh": keys.p256dh, "auth": creds["browser_auth"]},
    }


def sandbox_configure(
    *, workspace_id: int, host: str = LOOPBACK, ports: dict[str, int] | None = None, webhook_base_url: str = ""
) -> list[ProviderConfig]:
    """Create (or update) a "Local sandbox" config of every kind for the workspace, pointing at the
    sandbox. Each is made active unless the workspace already has another active one of its kind
    (a real provider is never switched off by this). Returns the configs."""
    ports = {**DEFAULT_PORTS, **(ports or {})}
    creds = sandbox_credentials()
    service_account = {
        "type": "service_account",
        "project_id": SANDBOX_PROJECT,
        "private_key_id": "sandbox",
        "private_key": creds["fcm_private_key"],
        "client_email": creds["fcm_client_email"],
        "token_uri": f"{_url(host, ports['fcm'])}/token",
    }
    kinds: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
        ProviderKind.SMTP: (
            {"host": host, "port": ports["smtp"], "from_email": "demo@engage.localhost", "from_name": "Engage demo"},
            {},
        ),
        ProviderKind.FCM: (
            {"base_url": _url(host, ports["fcm"])},
            {"service_account_json": json.dumps(service_account)},
        ),
        ProviderKind.APNS: (
            {
                "base_url": _url(host, ports["apns"]),
                "team_id": creds["apns_team_id"],
                "key_id": creds["apns_key_id"],
                "topic": "com.example.trailhead",
                "environment": "sandbox",
            },
            {"private_key": creds["apns_private_key"]},
        ),
        ProviderKind.WEBPUSH: (
            {
                "vapid_subject": "mailto:sandbox@engage.localhost",
                "vapid_public_key": creds["vapid_public_key"],
                "allow_insecure_endpoints": True,
            },
            {"vapid_private_key": creds["vapid_private_key"]},
        ),
        ProviderKind.TWILIO: (
            {
                "base_url": _url(host, ports["twilio"]),
                "account_sid": creds["twilio_account_sid"],
                "from_number": SANDBOX_FROM_NUMBER,
                **({"webhook_base_url": webhook_base_url} if webhook_base_url else {}),
            },
            {"auth_token": creds["twilio_auth_token"]},
        ),
        ProviderKind.WEBHOOK: ({"timeout": 5}, {"signing_secret": creds["webhook_secret"]}),
    }
    configs = []
    with transaction.atomic():
        for kind, (config_settings, config_secrets) in kinds.items():
            others_active = (
                ProviderConfig.objects.filter(workspace_id=workspace_id, kind=kind, is_active=True)
                .exclude(name=SANDBOX_NAME)
                .exists()
            )
            config, _ = ProviderConfig.objects.update_or_create(
                workspace_id=workspace_id,
                kind=kind,
                name=SANDBOX_NAME,
                defaults={"settings": config_settings, "is_active": not others_active},
            )
            configs.append(provider_config_set_secrets(config, **config_secrets))
    return configs


# --- running the fakes --------------------------------------------------------------------------------


def describe(name: str, item: Received | SmtpMessage) -> str | None:
    """One line saying what a fake received (None for what is not a message, e.g. token calls)."""
    if isinstance(item, SmtpMessage):
        return (
            f"[email] {item.mail_from} -> {', '.join(item.recipients)}: {item.subject!r}\n        {item.body()[:300]}"
        )
    status = item.info.get("status")
    if name == "fcm":
        message = item.info.get("message")
        if not isinstance(message, dict):
            return None
        shown = message.get("notification") or {}
        to = str(message.get("token"))[:24]
        return f"[push/fcm {status}] -> {to}…: {shown.get('title', '')} | {shown.get('body', '')}"
    if name == "apns":
        shown = ((item.info.get("payload") or {}).get("aps") or {}).get("alert") or {}
        to = str(item.info.get("token"))[:24]
        return f"[push/apns {status}] -> {to}…: {shown.get('title', '')} | {shown.get('body', '')}"
    if name == "webpush":
        payload = item.info.get("payload") or {}
        to = str(item.info.get("subscription"))
        if isinstance(payload, dict):
            return f"[webpush {status}] -> {to}: {payload.get('title', '')} | {payload.get('body', '')}"
        return f"[webpush {status}] -> {to}: {payload!r}"
    if name == "twilio":
        form = item.info.get("form") or {}
        sender = form.get("From") or form.get("MessagingServiceSid")
        return f"[sms {status}] {sender} -> {form.get('To')}: {form.get('Body')!r}"
    if name == "webhook":
        signed = item.info.get("signature_valid")
        note = "" if signed is None else (" (signature valid)" if signed else " (signature INVALID)")
        return f"[webhook] {item.method} {item.path}{note}: {item.body[:300].decode(errors='replace')}"
    return None


class ProviderSandbox:
    """Every fake provider, on fixed ports, trusting the sandbox credentials."""

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        ports: dict[str, int] | None = None,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self.on_message = on_message
        creds = sandbox_credentials()

        def report(name: str, item: Any) -> None:
            line = describe(name, item)
            if line and self.on_message is not None:
                self.on_message(line)

        self.smtp = SmtpSink(host=host, port=self.ports["smtp"], on_receive=report)
        self.fcm = FakeFcm(host=host, port=self.ports["fcm"], on_receive=report)
        self.fcm.register_account(creds["fcm_client_email"], creds["fcm_private_key"])
        self.apns = FakeApns(host=host, port=self.ports["apns"], on_receive=report)
        self.apns.register_key(creds["apns_team_id"], creds["apns_key_id"], creds["apns_private_key"])
        self.webpush = FakeWebPush(
            host=host,
            port=self.ports["webpush"],
            on_receive=report,
            default_keys=BrowserKeys.from_strings(creds["browser_private_key"], creds["browser_auth"]),
        )
        self.twilio = FakeTwilio(host=host, port=self.ports["twilio"], on_receive=report, auto_callbacks=True)
        self.twilio.account(creds["twilio_account_sid"], creds["twilio_auth_token"])
        self.webhook = WebhookReceiver(
            host=host, port=self.ports["webhook"], secret=creds["webhook_secret"], on_receive=report
        )
        self._servers: list[Any] = [self.smtp, self.fcm, self.apns, self.webpush, self.twilio, self.webhook]

    def start(self) -> ProviderSandbox:
        started = []
        try:
            for server in self._servers:
                server.start()
                started.append(server)
                self.ports[server.name] = server.port  # the real one when asked for port 0
        except OSError as error:
            for server in started:
                server.stop()
            raise OSError(
                f"the {server.name} fake cannot listen on {self.host}:{self.ports[server.name]}: {error}"
            ) from error
        return self

    def stop(self) -> None:
        for server in reversed(self._servers):
            server.stop()

    def endpoints(self) -> dict[str, str]:
        return {
            name: f"{'smtp' if name == 'smtp' else 'http'}://{self.host}:{port}" for name, port in self.ports.items()
        }
