"""Helpers for tests that post to the intake the way SDKs do."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from typing import Any

from django.test import Client
from django.test.client import Client as DjangoClient

from profiles.models import App


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def post_json(
    client: DjangoClient,
    path: str,
    body: Any,
    *,
    app: App | None = None,
    gzipped: bool = False,
    content_type: str = "application/json",
    raw: bytes | None = None,
) -> Any:
    data = raw if raw is not None else json.dumps(body).encode()
    headers: dict[str, str] = {}
    if app is not None:
        headers["HTTP_AUTHORIZATION"] = basic_auth(app.write_key)
    if gzipped:
        data = gzip.compress(data)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    return client.post(path, data=data, content_type=content_type, **headers)


def msg(kind: str, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind, "messageId": str(uuid.uuid4())}
    message.update(fields)
    return message


def batch(client: Client, app: App, *messages: dict[str, Any], **extra: Any) -> Any:
    return post_json(client, "/v1/batch", {"batch": list(messages), **extra}, app=app)
