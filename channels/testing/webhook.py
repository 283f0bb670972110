"""A webhook receiver: records every request (method, path, headers, body) and, given the signing
secret, whether ``X-Engage-Signature`` verifies."""

from __future__ import annotations

from typing import Any

from ..transports.webhook import verify
from .http import FakeHttpServer, Received, Response


class WebhookReceiver(FakeHttpServer):
    name = "webhook"

    def __init__(self, *, secret: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secret = secret

    def respond(self, received: Received) -> Response:
        signature = received.headers.get("x-engage-signature", "")
        if self.secret:
            received.info["signature_valid"] = bool(signature) and verify(self.secret, received.body, signature)
        return Response.json(200, {"ok": True}, {"X-Request-Id": f"req-{len(self.requests) + 1}"})
