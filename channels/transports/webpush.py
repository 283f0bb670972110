"""Web push to browsers: RFC 8030 (the push protocol), RFC 8291 (payload encryption, aes128gcm)
and RFC 8292 (VAPID).

Provider config ``webpush``: secret ``vapid_private_key`` (PEM, or the raw 32-byte key in
base64url as most tools print it); settings ``vapid_subject`` (``mailto:`` or ``https:`` contact
the push services may use), ``vapid_public_key`` (shown to the site's JavaScript as
``applicationServerKey``; derived from the private key), ``allow_insecure_endpoints`` (accept
``http://`` subscription endpoints: the local sandbox only).

The address is the browser's ``PushSubscription`` JSON. The payload is JSON the site's service
worker reads: ``{"title", "body", "icon", "image", "url", "tag", "data", "require_interaction",
"dispatch_id"}``. ``TTL`` is always sent (4 weeks unless the content says otherwise): without it a
push service may drop the message when the browser is offline.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import http_ece
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..secrets import provider_config_secrets
from ..services.addresses import parse_webpush_subscription
from .base import (
    NotConfiguredError,
    PermanentError,
    ProfileEffect,
    SendResult,
    TransientError,
    require_secret,
    retry_after_seconds,
)
from .http import classify_network_error, shared_client

if TYPE_CHECKING:
    from ..models import Dispatch, ProviderConfig

DEFAULT_TTL = 28 * 24 * 3600
VAPID_TOKEN_LIFETIME = 12 * 3600  # RFC 8292: at most 24 hours
VAPID_TOKEN_REUSE = 6 * 3600
MAX_PAYLOAD_BYTES = 3993  # 4096 on the wire minus the aes128gcm header and tag
URGENCIES = {"very-low", "low", "normal", "high"}
GONE = ProfileEffect.DISABLE_DEVICE  # the subscription is dead: stop pushing to that browser


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_vapid_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """A VAPID private key from PEM or from the raw 32-byte scalar in base64url."""
    value = value.strip()
    try:
        if value.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(value.encode(), password=None)
        else:
            key = ec.derive_private_key(int.from_bytes(b64url_decode(value), "big"), ec.SECP256R1())
    except (ValueError, TypeError) as error:
        raise NotConfiguredError(f"the VAPID private key does not load: {error}") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise NotConfiguredError("the VAPID private key must be a P-256 (prime256v1) EC key")
    return key


def vapid_public_key(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The ``applicationServerKey``: the uncompressed public point, base64url."""
    return b64url(
        private_key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def generate_vapid_keys() -> tuple[str, str]:
    """A new VAPID key pair: (private key PEM, public key base64url)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, vapid_public_key(key)


def encrypt_payload(payload: bytes, *, p256dh: str, auth: str) -> bytes:
    """RFC 8291: encrypt ``payload`` for the subscription's public key and auth secret (aes128gcm;
    a fresh ephemeral key and salt each time, the sender key in the header's keyid)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    result: bytes = http_ece.encrypt(
        payload,
        salt=os.urandom(16),
        private_key=ephemeral,
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )
    return result


class WebPushTransport:
    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def send(self, dispatch: Dispatch, config: ProviderConfig | None) -> SendResult:
        if config is None:
            raise NotConfiguredError("the workspace has no active Web Push provider")
        options = config.settings or {}
        private_key = load_vapid_private_key(
            require_secret(config, provider_config_secrets(config), "vapid_private_key")
        )
        subject = str(options.get("vapid_subject") or "")
        if not subject.startswith(("mailto:", "https:")):
            raise NotConfiguredError("the Web Push provider needs a vapid_subject (mailto: or https: contact)")

        subscription = parse_webpush_subscription(dispatch.address)
        if subscription is None:
            raise PermanentError(
                "invalid_subscription",
                "the web push subscription is not valid JSON",
                effect=GONE,
            )
        endpoint = str(subscription["endpoint"])
        parts = urlsplit(endpoint)
        # The endpoint comes from the browser (through the intake): only https push services,
        # so a forged subscription cannot point our workers at internal http services.
        if parts.scheme != "https" and not (parts.scheme == "http" and options.get("allow_insecure_endpoints")):
            raise PermanentError(
                "invalid_subscription",
                f"the push endpoint must be https:// (got {parts.scheme or 'no'} scheme)",
                effect=GONE,
            )

        content = dispatch.content or {}
        body = json.dumps(build_payload(dispatch), separators=(",", ":"), ensure_ascii=False).encode()
        if len(body) > MAX_PAYLOAD_BYTES:
            raise PermanentError("payload_too_large", f"the notification is {len(body)} bytes; at most about 4 KB")
        keys = subscription["keys"]
        try:
            encrypted = encrypt_payload(body, p256dh=keys["p256dh"], auth=keys["auth"])
        except (ValueError, TypeError, http_ece.ECEException) as error:
            raise PermanentError(
                "invalid_subscription",
                f"the subscription keys are unusable: {error}",
                effect=GONE,
            ) from error

        audience = f"{parts.scheme}://{parts.netloc}"
        ttl = content.get("ttl")
        headers = {
            "TTL": str(int(ttl) if ttl is not None else DEFAULT_TTL),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Urgency": str(content["urgency"]) if content.get("urgency") in URGENCIES else "normal",
            "Authorization": f"vapid t={self.vapid_token(private_key, audience, subject)}, "
            f"k={vapid_public_key(private_key)}",
        }
        topic = _topic(content.get("tag"))
        if topic:
            headers["Topic"] = topic
        try:
            response = shared_client().post(endpoint, content=encrypted, headers=headers)
        except httpx.HTTPError as error:
            raise classify_network_error(error, what="the push service") from error
        status = response.status_code
        if status in (200, 201, 202):
            location = response.headers.get("Location", "")
            return SendResult(provider_message_id=location[-255:], raw={"status": status, "location": location})
        if status in (404, 410):
            raise PermanentError(
                f"HTTP_{status}",
                "the push subscription has expired or was removed",
                effect=GONE,
            )
        if status == 429 or status >= 500:
            raise TransientError(
                f"the push service answered {status}",
                code=f"HTTP_{status}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        raise PermanentError(f"HTTP_{status}", f"the push service refused the message: {response.text[:200]}")

    def vapid_token(self, private_key: ec.EllipticCurvePrivateKey, audience: str, subject: str) -> str:
        key = (vapid_public_key(private_key), audience)
        now = time.time()
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and now - cached[1] < VAPID_TOKEN_REUSE:
                return cached[0]
            token = jwt.encode(
                {"aud": audience, "exp": int(now) + VAPID_TOKEN_LIFETIME, "sub": subject},
                private_key,
                algorithm="ES256",
            )
            self._tokens[key] = (token, now)
            return token


def build_payload(dispatch: Dispatch) -> dict[str, Any]:
    content = dispatch.content or {}
    payload: dict[str, Any] = {"dispatch_id": str(dispatch.pk)}
    for key in ("title", "body", "icon", "image", "url", "tag"):
        if content.get(key):
            payload[key] = str(content[key])
    if content.get("data"):
        payload["data"] = {str(key): str(value) for key, value in content["data"].items()}
    if content.get("require_interaction"):
        payload["require_interaction"] = True
    return payload


def _topic(tag: Any) -> str:
    """RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet."""
    if not isinstance(tag, str):
        return ""
    cleaned = "".join(ch for ch in tag if ch.isascii() and (ch.isalnum() or ch in "-_"))
    return cleaned[:32]
