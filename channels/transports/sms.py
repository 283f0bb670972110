"""SMS through Twilio's Programmable Messaging REST API.

Provider config ``twilio``: settings ``account_sid``, ``messaging_service_sid`` (``MG…``) or
``from_number`` (E.164), ``base_url`` (default ``https://api.twilio.com``; the local fake in tests
and the sandbox), ``webhook_base_url`` (the public origin Twilio calls back, default
``PUBLIC_BASE_URL``); secret ``auth_token``.

``POST {base}/2010-04-01/Accounts/{sid}/Messages.json``, form-encoded, HTTP Basic ``sid:token``.
Each message asks for status callbacks at ``/channels/twilio/status?dispatch=<id>`` (see
``channels.api.twilio``), so delivery and failure reports find their dispatch directly.

Twilio's error codes decide the outcome: 21610 (the person replied STOP), 21211 (not a valid
number) and 21614 (not a mobile number) unsubscribe the person from SMS; other 4xx are permanent;
429 and 5xx are retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.urls import reverse

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

TWILIO_BASE_URL = "https://api.twilio.com"
# Codes after which the number will not take our messages: unsubscribe SMS.
UNSUBSCRIBING_CODES = {
    21610: "the person replied STOP to this sender",
    21211: "not a valid phone number",
    21614: "not a mobile number",
}


def status_callback_url(config: ProviderConfig, dispatch_id: str) -> str:
    base = str((config.settings or {}).get("webhook_base_url") or settings.PUBLIC_BASE_URL).rstrip("/")
    return f"{base}{reverse('channels-twilio-status')}?{urlencode({'dispatch': dispatch_id})}"


class TwilioTransport:
    def send(self, dispatch: Dispatch, config: ProviderConfig | None) -> SendResult:
        if config is None:
            raise NotConfiguredError("the workspace has no active Twilio provider")
        options = config.settings or {}
        account_sid = require_setting(config, "account_sid")
        auth_token = require_secret(config, provider_config_secrets(config), "auth_token")
        base_url = str(options.get("base_url") or TWILIO_BASE_URL).rstrip("/")
        content = dispatch.content or {}

        form: dict[str, str] = {
            "To": dispatch.address,
            "Body": str(content.get("body") or ""),
            "StatusCallback": status_callback_url(config, str(dispatch.pk)),
        }
        if options.get("messaging_service_sid"):
            form["MessagingServiceSid"] = str(options["messaging_service_sid"])
        elif options.get("from_number"):
            form["From"] = str(options["from_number"])
        else:
            raise NotConfiguredError("the Twilio provider needs a messaging_service_sid or a from_number")
        if content.get("media_url"):
            form["MediaUrl"] = str(content["media_url"])

        try:
            response = shared_client().post(
                f"{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json",
                data=form,
                auth=(account_sid, auth_token),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as error:
            raise classify_network_error(error, what="Twilio") from error
        data = _json(response)
        if response.status_code in (200, 201) and data.get("sid"):
            return SendResult(
                provider_message_id=str(data["sid"]), raw={"sid": data["sid"], "status": data.get("status", "")}
            )
        raise classify_twilio_error(response, data)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def classify_twilio_error(response: httpx.Response, data: dict[str, Any]) -> Exception:
    status = response.status_code
    code = data.get("code")
    message = str(data.get("message") or response.text[:200] or response.reason_phrase)
    if isinstance(code, int) and code in UNSUBSCRIBING_CODES:
        return PermanentError(
            str(code), f"Twilio {code}: {UNSUBSCRIBING_CODES[code]} ({message})", effect=ProfileEffect.UNSUBSCRIBE
        )
    label = str(code) if code else f"HTTP_{status}"
    if status == 429 or status >= 500:
        return TransientError(
            f"Twilio answered {status}: {message}",
            code=label,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    return PermanentError(label, f"Twilio refused the message: {message}")
