"""iOS push through the Apple Push Notification service: HTTP/2, token-based authentication.

Provider config ``apns``: settings ``team_id``, ``key_id`` (the .p8 key's 10-character id),
``topic`` (the app's bundle id), ``environment`` (``production`` or ``sandbox``) or ``base_url``
(overrides it: the local fake in tests and the sandbox); secret ``private_key`` (the .p8 file's
PEM text).

The provider token is an ES256 JWT (``{"alg": "ES256", "kid": key_id}``, ``{"iss": team_id,
"iat": now}``) reused for 50 minutes: Apple refuses tokens older than an hour and throttles
(``TooManyProviderTokenUpdates``) ones renewed more often than every 20. Requests go over one
long-lived HTTP/2 connection (``httpx`` with ``h2``), as Apple asks.

``apns-id`` is the dispatch id (a UUID), so Apple's answer and our record carry the same id.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from ..secrets import provider_config_secrets
from .base import (
    NotConfiguredError,
    PermanentError,
    ProfileEffect,
    SendResult,
    TransientError,
    require_secret,
    require_setting,
    retry_after_seconds,
)
from .http import classify_network_error, shared_client

if TYPE_CHECKING:
    from ..models import Dispatch, ProviderConfig

APNS_PRODUCTION = "https://api.push.apple.com"
APNS_SANDBOX = "https://api.sandbox.push.apple.com"
TOKEN_REUSE_SECONDS = 50 * 60
MAX_PAYLOAD_BYTES = 4096
DEAD_TOKEN_REASONS = {"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"}


class ApnsTransport:
    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def send(self, dispatch: Dispatch, config: ProviderConfig | None) -> SendResult:
        if config is None:
            raise NotConfiguredError("the workspace has no active APNs provider")
        options = config.settings or {}
        team_id = require_setting(config, "team_id")
        key_id = require_setting(config, "key_id")
        topic = require_setting(config, "topic")
        private_key = require_secret(config, provider_config_secrets(config), "private_key")
        base_url = str(options.get("base_url") or "").rstrip("/") or (
            APNS_SANDBOX if options.get("environment") == "sandbox" else APNS_PRODUCTION
        )

        payload, headers = build_request(dispatch, topic=topic)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if len(body) > MAX_PAYLOAD_BYTES:
            raise PermanentError("PayloadTooLarge", f"the push is {len(body)} bytes; APNs takes at most 4096")
        headers["authorization"] = f"bearer {self.provider_token(team_id, key_id, private_key)}"
        try:
            response = shared_client(http2=True).post(
                f"{base_url}/3/device/{dispatch.address}", content=body, headers=headers
            )
        except httpx.HTTPError as error:
            raise classify_network_error(error, what="APNs") from error
        if response.status_code == 200:
            apns_id = response.headers.get("apns-id", headers["apns-id"])
            return SendResult(provider_message_id=apns_id, raw={"apns-id": apns_id})
        reason = _reason(response)
        if reason in {"ExpiredProviderToken", "InvalidProviderToken"}:
            self.forget_token(team_id, key_id, private_key)
        raise classify_apns_error(response.status_code, reason, response)

    def provider_token(self, team_id: str, key_id: str, private_key: str) -> str:
        key = (team_id, key_id, private_key)
        now = time.time()
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and now - cached[1] < TOKEN_REUSE_SECONDS:
                return cached[0]
            try:
                token = jwt.encode(
                    {"iss": team_id, "iat": int(now)}, private_key, algorithm="ES256", headers={"kid": key_id}
                )
            except (ValueError, TypeError, jwt.PyJWTError) as error:
                raise NotConfiguredError(f"the APNs private key cannot sign (is it the .p8 file?): {error}") from error
            self._tokens[key] = (token, now)
            return token

    def forget_token(self, team_id: str, key_id: str, private_key: str) -> None:
        with self._lock:
            self._tokens.pop((team_id, key_id, private_key), None)


def build_request(dispatch: Dispatch, *, topic: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON payload and the ``apns-*`` headers for ``dispatch``."""
    content = dispatch.content or {}
    alert = {key: str(content[key]) for key in ("title", "body") if content.get(key)}
    aps: dict[str, Any] = {}
    if alert:
        aps["alert"] = alert
    if content.get("badge") is not None:
        aps["badge"] = int(content["badge"])
    if content.get("sound"):
        aps["sound"] = str(content["sound"])
    if content.get("thread_id"):
        aps["thread-id"] = str(content["thread_id"])
    if content.get("image_url"):
        aps["mutable-content"] = 1  # the app's notification service extension downloads the image
    background = not alert
    if background:
        aps["content-available"] = 1

    payload: dict[str, Any] = {str(key): str(value) for key, value in (content.get("data") or {}).items()}
    payload["aps"] = aps
    payload["engage_dispatch_id"] = str(dispatch.pk)
    if content.get("deep_link"):
        payload["deep_link"] = str(content["deep_link"])
    if content.get("image_url"):
        payload["image_url"] = str(content["image_url"])

    headers = {
        "apns-id": str(dispatch.pk),
        "apns-topic": topic,
        "apns-push-type": "background" if background else "alert",
        # Background pushes must use priority 5 (Apple throttles or drops them otherwise).
        "apns-priority": "5" if background else "10",
    }
    if content.get("ttl") is not None:
        headers["apns-expiration"] = str(int(time.time()) + int(content["ttl"]) if int(content["ttl"]) else 0)
    if content.get("collapse_key"):
        headers["apns-collapse-id"] = str(content["collapse_key"]).encode()[:64].decode(errors="ignore")
    return payload, headers


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    return str(data.get("reason") or "") if isinstance(data, dict) else ""


def classify_apns_error(status: int, reason: str, response: httpx.Response) -> Exception:
    code = reason or f"HTTP_{status}"
    if status == 410 or reason in DEAD_TOKEN_REASONS:
        return PermanentError(
            code, f"APNs: the device token is no longer valid ({code})", effect=ProfileEffect.DISABLE_DEVICE
        )
    if status == 429 or status >= 500 or reason == "ExpiredProviderToken":
        return TransientError(
            f"APNs answered {status} {code}",
            code=code,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    # 400 BadTopic/PayloadEmpty/…, 403 InvalidProviderToken, 413 PayloadTooLarge: fix the config or message.
    return PermanentError(code, f"APNs refused the push ({status} {code})")
