"""A fake push service with the browser's side of the keys: it hands out subscriptions (P-256
key pair + auth secret, as a browser's PushSubscription) and, when a push arrives, checks the
VAPID authorization (RFC 8292), requires a TTL (RFC 8030) and decrypts the aes128gcm payload
(RFC 8291) with the subscription's private key — proving the encryption end to end."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..transports.webpush import b64url, b64url_decode
from .http import FakeHttpServer, Received, Response


@dataclass
class BrowserKeys:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def generate(cls) -> BrowserKeys:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @classmethod
    def from_strings(cls, private_key_pem: str, auth: str) -> BrowserKeys:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key, b64url_decode(auth))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )


class FakeWebPush(FakeHttpServer):
    name = "webpush"

    def __init__(self, *, default_keys: BrowserKeys | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.browsers: dict[str, BrowserKeys] = {}
        # The sandbox: every /push/<name> decrypts with one key pair, so any number of demo
        # browsers can share it.
        self.default_keys = default_keys
        self.gone: set[str] = set()
        self.notifications: list[dict[str, Any]] = []

    def subscribe(self, name: str | None = None, keys: BrowserKeys | None = None) -> dict[str, Any]:
        """A browser PushSubscription (as ``JSON.stringify(subscription)`` gives it) on this fake."""
        name = name or secrets.token_urlsafe(8)
        browser = keys or BrowserKeys.generate()
        self.browsers[name] = browser
        return {
            "endpoint": f"{self.url}/push/{name}",
            "expirationTime": None,
            "keys": {"p256dh": browser.p256dh, "auth": b64url(browser.auth)},
        }

    def respond(self, received: Received) -> Response:
        if received.method != "POST" or not received.path.startswith("/push/"):
            return Response(404)
        name = received.path.removeprefix("/push/")
        received.info["subscription"] = name
        browser = self.browsers.get(name) or self.default_keys
        if browser is None or name in self.gone:
            return Response(410, b"push subscription has unsubscribed or expired.")
        headers = received.headers
        if "ttl" not in headers:
            return Response(400, b"TTL header required")
        problem = self._check_vapid(headers.get("authorization", ""))
        if problem:
            received.info["rejected"] = problem
            return Response(401, problem.encode())
        if headers.get("content-encoding") != "aes128gcm":
            return Response(415, b"aes128gcm required")
        try:
            plaintext = http_ece.decrypt(
                received.body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
        except Exception as error:
            received.info["rejected"] = f"cannot decrypt: {error!r}"
            return Response(400, b"decryption failed")
        try:
            payload = json.loads(plaintext)
        except ValueError:
            payload = plaintext.decode(errors="replace")
        received.info.update(payload=payload, ttl=int(headers["ttl"]), urgency=headers.get("urgency"))
        self.notifications.append({"subscription": name, "payload": payload, "headers": headers})
        location = f"{self.url}/message/{secrets.token_hex(8)}"
        return Response(201, b"", {"Location": location})

    def _check_vapid(self, authorization: str) -> str:
        if not authorization.lower().startswith("vapid "):
            return "VAPID authorization required"
        fields = dict(part.strip().split("=", 1) for part in authorization[6:].split(",") if "=" in part)
        token, key = fields.get("t", ""), fields.get("k", "")
        try:
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
            claims = jwt.decode(
                token, public_key, algorithms=["ES256"], audience=self.url, options={"require": ["exp"]}
            )
        except (ValueError, jwt.PyJWTError) as error:
            return f"invalid VAPID token: {error}"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return "VAPID sub must be a mailto: or https: contact"
        return ""
