"""Mobile push through Firebase Cloud Messaging, HTTP v1 API.

Provider config ``fcm``: secret ``service_account_json`` (the service account key file Firebase
gives, as JSON text); settings ``project_id`` (default: the service account's), ``token_uri``
(default: the service account's, else Google's) and ``base_url`` (default
``https://fcm.googleapis.com``; the local fake in tests and the sandbox).

Authentication is OAuth 2.0 with a service-account JWT (RFC 7523): an RS256 assertion signed with
the service account's private key is exchanged at the token endpoint for an access token, which is
cached until shortly before it expires. No firebase-admin: it hard-codes Google's URLs and brings
a large dependency tree for two HTTP calls.

Content (``channels.content``, push): title, body, image_url, deep_link, badge, sound, data
(string key-values), collapse_key, thread_id, ttl (seconds; FCM's own default of 4 weeks if unset).
The app receives ``engage_dispatch_id`` (and ``deep_link``) in the data so it can report opens.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
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
    retry_after_seconds,
)
from .http import classify_network_error, shared_client

if TYPE_CHECKING:
    from ..models import Dispatch, ProviderConfig

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
FCM_BASE_URL = "https://fcm.googleapis.com"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600
TOKEN_REFRESH_MARGIN = 300  # refresh five minutes before the access token expires
MAX_PAYLOAD_BYTES = 4096

# FCM error codes that mean the token is dead: stop pushing to that device.
DEAD_TOKEN_CODES = {"UNREGISTERED", "SENDER_ID_MISMATCH"}


@dataclass
class _AccessToken:
    value: str
    expires_at: float


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key: str
    private_key_id: str
    project_id: str
    token_uri: str

    @classmethod
    def from_config(cls, config: ProviderConfig) -> ServiceAccount:
        raw = require_secret(config, provider_config_secrets(config), "service_account_json")
        try:
            data = json.loads(raw)
        except ValueError:
            raise NotConfiguredError("the FCM service account JSON does not parse") from None
        if not isinstance(data, dict) or not data.get("client_email") or not data.get("private_key"):
            raise NotConfiguredError("the FCM service account JSON has no client_email or private_key")
        options = config.settings or {}
        project_id = options.get("project_id") or data.get("project_id") or ""
        if not project_id:
            raise NotConfiguredError("the FCM provider has no project_id (setting or service account)")
        return cls(
            client_email=str(data["client_email"]),
            private_key=str(data["private_key"]),
            private_key_id=str(data.get("private_key_id") or ""),
            project_id=str(project_id),
            token_uri=str(options.get("token_uri") or data.get("token_uri") or GOOGLE_TOKEN_URI),
        )


class FcmTransport:
    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _AccessToken] = {}
        self._lock = threading.Lock()

    def send(self, dispatch: Dispatch, config: ProviderConfig | None) -> SendResult:
        if config is None:
            raise NotConfiguredError("the workspace has no active FCM provider")
        account = ServiceAccount.from_config(config)
        base_url = str((config.settings or {}).get("base_url") or FCM_BASE_URL).rstrip("/")
        body = {"message": build_message(dispatch)}
        encoded = json.dumps(body, separators=(",", ":")).encode()
        if len(encoded) > MAX_PAYLOAD_BYTES + 512:  # the limit is on the message; allow for envelope
            raise PermanentError("payload_too_large", f"the push is {len(encoded)} bytes; FCM takes about 4 KB")
        url = f"{base_url}/v1/projects/{account.project_id}/messages:send"
        token = self.access_token(account)
        try:
            response = shared_client().post(
                url,
                content=encoded,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=UTF-8"},
            )
        except httpx.HTTPError as error:
            raise classify_network_error(error, what="FCM") from error
        if response.status_code == 200:
            name = _json(response).get("name", "")
            return SendResult(provider_message_id=str(name), raw={"name": name})
        if response.status_code == 401:
            self.forget_token(account)
        raise classify_fcm_error(response)

    # -- OAuth -----------------------------------------------------------------------------------

    def access_token(self, account: ServiceAccount) -> str:
        key = (account.client_email, account.token_uri, account.private_key_id)
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_at - TOKEN_REFRESH_MARGIN > time.time():
                return cached.value
        token = self._fetch_token(account)
        with self._lock:
            self._tokens[key] = token
        return token.value

    def forget_token(self, account: ServiceAccount) -> None:
        with self._lock:
            self._tokens.pop((account.client_email, account.token_uri, account.private_key_id), None)

    def _fetch_token(self, account: ServiceAccount) -> _AccessToken:
        now = int(time.time())
        headers = {"kid": account.private_key_id} if account.private_key_id else None
        try:
            assertion = jwt.encode(
                {
                    "iss": account.client_email,
                    "scope": FCM_SCOPE,
                    "aud": account.token_uri,
                    "iat": now,
                    "exp": now + TOKEN_LIFETIME,
                },
                account.private_key,
                algorithm="RS256",
                headers=headers,
            )
        except (ValueError, TypeError, jwt.PyJWTError) as error:
            raise NotConfiguredError(f"the FCM service account private key cannot sign: {error}") from error
        try:
            response = shared_client().post(
                account.token_uri, data={"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
            )
        except httpx.HTTPError as error:
            # Nothing was sent to FCM yet: a lost token answer is safe to retry.
            raise TransientError(
                f"no answer from the OAuth token endpoint: {error}", code="oauth_unavailable"
            ) from error
        data = _json(response)
        if response.status_code == 200 and data.get("access_token"):
            expires_in = float(data.get("expires_in") or TOKEN_LIFETIME)
            return _AccessToken(str(data["access_token"]), time.time() + expires_in)
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(
                f"the OAuth token endpoint answered {response.status_code}",
                code="oauth_unavailable",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        reason = data.get("error_description") or data.get("error") or response.text[:200]
        raise PermanentError("auth_failed", f"the OAuth token endpoint refused the service account: {reason}")


def build_message(dispatch: Dispatch) -> dict[str, Any]:
    """The FCM v1 ``message`` object for ``dispatch``."""
    content = dispatch.content or {}
    notification: dict[str, str] = {}
    for key, source in (("title", "title"), ("body", "body"), ("image", "image_url")):
        if content.get(source):
            notification[key] = str(content[source])

    data = {str(key): str(value) for key, value in (content.get("data") or {}).items()}
    data["engage_dispatch_id"] = str(dispatch.pk)
    if content.get("deep_link"):
        data["deep_link"] = str(content["deep_link"])

    ttl = content.get("ttl")
    android: dict[str, Any] = {"priority": "high"}
    android_notification: dict[str, Any] = {}
    if ttl is not None:
        android["ttl"] = f"{int(ttl)}s"
    if content.get("collapse_key"):
        android["collapse_key"] = str(content["collapse_key"])
    if content.get("sound"):
        android_notification["sound"] = str(content["sound"])
    if content.get("badge") is not None:
        android_notification["notification_count"] = int(content["badge"])
    if content.get("deep_link"):
        android_notification["click_action"] = str(content["deep_link"])
    if android_notification:
        android["notification"] = android_notification

    aps: dict[str, Any] = {}
    apns_headers: dict[str, str] = {"apns-priority": "10"}
    if content.get("badge") is not None:
        aps["badge"] = int(content["badge"])
    if content.get("sound"):
        aps["sound"] = str(content["sound"])
    if content.get("thread_id"):
        aps["thread-id"] = str(content["thread_id"])
    if content.get("image_url"):
        aps["mutable-content"] = 1  # lets the app's notification service extension attach the image
    if content.get("collapse_key"):
        apns_headers["apns-collapse-id"] = str(content["collapse_key"])[:64]
    if ttl is not None:
        apns_headers["apns-expiration"] = str(int(time.time()) + int(ttl))

    message: dict[str, Any] = {"token": dispatch.address, "data": data, "android": android}
    if notification:
        message["notification"] = notification
    apns: dict[str, Any] = {"headers": apns_headers}
    if aps:
        apns["payload"] = {"aps": aps}
    if content.get("image_url"):
        apns["fcm_options"] = {"image": str(content["image_url"])}
    message["apns"] = apns
    return message


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def fcm_error_code(payload: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
    """(FCM error code, message, details) from FCM's error envelope."""
    error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    assert isinstance(error, dict)
    details = [item for item in error.get("details") or [] if isinstance(item, dict)]
    code = ""
    for item in details:
        if str(item.get("@type", "")).endswith("google.firebase.fcm.v1.FcmError") and item.get("errorCode"):
            code = str(item["errorCode"])
    return code or str(error.get("status") or ""), str(error.get("message") or ""), details


def _token_is_invalid(message: str, details: list[dict[str, Any]]) -> bool:
    """INVALID_ARGUMENT is about the token (not the payload) when FCM says so."""
    for item in details:
        for violation in item.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                return True
    return "registration token" in message.lower()


def classify_fcm_error(response: httpx.Response) -> Exception:
    status = response.status_code
    code, message, details = fcm_error_code(_json(response))
    code = code or f"HTTP_{status}"
    text = message or response.text[:200] or response.reason_phrase
    if code in DEAD_TOKEN_CODES or status == 404:
        return PermanentError(code, f"FCM: {text}", effect=ProfileEffect.DISABLE_DEVICE)
    if code == "INVALID_ARGUMENT" or status == 400:
        if _token_is_invalid(message, details):
            return PermanentError(code, f"FCM: {text}", effect=ProfileEffect.DISABLE_DEVICE)
        return PermanentError(code, f"FCM refused the message: {text}")
    if status == 429 or status >= 500 or code in {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"}:
        return TransientError(
            f"FCM answered {status} {code}: {text}",
            code=code,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    if status == 401 and code != "THIRD_PARTY_AUTH_ERROR":
        # Our access token was refused (revoked, clock skew): a new one may work.
        return TransientError(f"FCM refused the access token: {text}", code=code)
    # THIRD_PARTY_AUTH_ERROR (APNs/web push credentials in Firebase), 403 permissions: fix the config.
    return PermanentError(code, f"FCM: {text}")
