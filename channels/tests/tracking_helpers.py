"""Shared helpers for the tracking tests: fixtures of real ESP payloads, posting them as the ESP
would (basic auth, Mailgun's signature), and reading the profile's timeline."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

from django.http import HttpResponse
from django.test import Client

from channels.models import Channel, Dispatch, DispatchStatus
from profiles.models import Profile
from profiles.selectors import profile_timeline

FIXTURES = Path(__file__).parent / "fixtures"
DISPATCH_ID = uuid.UUID("5b0a7c4e-2f52-4d6e-9a0b-0c4f2b9e8d11")
OTHER_DISPATCH_ID = uuid.UUID("6c1b8d5f-3a63-4e7f-8b1c-1d5a3c0f9e22")
WEBHOOK_USER, WEBHOOK_PASSWORD = "esp", "s3cret-webhook"
MAILGUN_SIGNING_KEY = "key-mailgun-signing-test"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def make_dispatch(
    profile: Profile,
    *,
    dispatch_id: uuid.UUID = DISPATCH_ID,
    address: str = "jane@example.com",
    provider_message_id: str = "",
    status: str = DispatchStatus.SENT,
) -> Dispatch:
    return Dispatch.objects.create(
        id=dispatch_id,
        workspace=profile.workspace,
        profile=profile,
        channel=Channel.EMAIL,
        provider="anymail",
        address=address,
        content={"subject": "Spring deals", "text": "Hi"},
        idempotency_key=f"test:{dispatch_id}",
        metadata={"campaign_id": "12", "variant": "A", "send_id": "send-1"},
        status=status,
        provider_message_id=provider_message_id,
    )


def basic_auth(user: str = WEBHOOK_USER, password: str = WEBHOOK_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def post_webhook(esp: str, payload: Any, *, auth: str | None = None) -> HttpResponse:
    headers = {"HTTP_AUTHORIZATION": auth if auth is not None else basic_auth()}
    response: HttpResponse = Client().post(
        f"/anymail/{esp}/tracking/", json.dumps(payload), content_type="application/json", **headers
    )
    return response


def sign_mailgun(
    payload: dict[str, Any], *, key: str = MAILGUN_SIGNING_KEY, token: str | None = None
) -> dict[str, Any]:
    signed = json.loads(json.dumps(payload))
    block = signed["signature"]
    if token is not None:
        block["token"] = token
    block["signature"] = hmac.new(
        key.encode(), f"{block['timestamp']}{block['token']}".encode(), hashlib.sha256
    ).hexdigest()
    return signed


def timeline_names(profile: Profile) -> list[str]:
    """The event names on the person's timeline, oldest first (what the profile page shows)."""
    return [event.name for event in reversed(profile_timeline(profile=profile, limit=100).events)]
