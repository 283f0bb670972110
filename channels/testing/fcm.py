"""A fake Firebase Cloud Messaging: the OAuth 2.0 token endpoint (checks the service-account JWT
assertion's signature, audience and scope, as Google does) and the HTTP v1 ``messages:send``
endpoint (checks the bearer token; answers with a message name, or the real error envelope for
tokens marked unregistered or invalid)."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..transports.fcm import FCM_SCOPE, JWT_BEARER_GRANT
from .http import FakeHttpServer, Received, Response

SEND_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")


def fcm_error(status: int, code: str, message: str, *, token_field: bool = False) -> Response:
    """FCM's error envelope, as https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode shows it."""
    status_names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
    ]
    if token_field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}],
            }
        )
    return Response.json(
        status,
        {"error": {"code": status, "message": message, "status": status_names.get(status, code), "details": details}},
    )


class FakeFcm(FakeHttpServer):
    name = "fcm"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accounts: dict[str, Any] = {}  # client_email -> RSA public key
        self.access_tokens: set[str] = set()
        self.unregistered: set[str] = set()
        self.invalid: set[str] = set()
        self.messages: list[dict[str, Any]] = []

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def register_account(self, client_email: str, private_key_pem: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        self.accounts[client_email] = key.public_key()

    def service_account(self, project_id: str = "engage-test", client_email: str | None = None) -> dict[str, str]:
        """A new service account key file (as Firebase gives it) whose token_uri is this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        email = client_email or f"firebase-adminsdk-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com"
        self.register_account(email, pem)
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbits(64)),
            "token_uri": self.token_uri,
        }

    def respond(self, received: Received) -> Response:
        if received.method == "POST" and received.path == "/token":
            return self._token(received)
        match = SEND_PATH.match(received.path)
        if received.method == "POST" and match:
            return self._send(received, match.group("project"))
        return Response.json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

    def _token(self, received: Received) -> Response:
        form = received.form()
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return Response.json(400, {"error": "unsupported_grant_type"})
        assertion = form.get("assertion", "")
        try:
            email = jwt.decode(assertion, options={"verify_signature": False}).get("iss", "")
            public_key = self.accounts[email]
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                options={"require": ["exp", "iat"]},
            )
        except (KeyError, jwt.PyJWTError) as error:
            received.info["rejected"] = repr(error)
            return Response.json(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return Response.json(400, {"error": "invalid_scope"})
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.access_tokens.add(token)
        received.info["issued_to"] = email
        return Response.json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _send(self, received: Received, project: str) -> Response:
        auth = received.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.access_tokens:
            return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        try:
            message = json.loads(received.body)["message"]
        except (ValueError, KeyError, TypeError):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        token = str(message.get("token", ""))
        received.info.update(token=token, message=message, project=project)
        if token in self.unregistered:
            return fcm_error(404, "UNREGISTERED", "Requested entity was not found.")
        if token in self.invalid or not token:
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                token_field=True,
            )
        self.messages.append(message)
        name = f"projects/{project}/messages/{int(time.time() * 1000)}{len(self.messages)}"
        received.info["name"] = name
        return Response.json(200, {"name": name})
