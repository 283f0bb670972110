"""A fake APNs: a real HTTP/2 server (hypercorn serving a tiny ASGI app, cleartext HTTP/2 with
prior knowledge) that checks the provider token (an ES256 JWT from a registered team and key) and
the ``apns-*`` headers, and answers 200 with ``apns-id``, 410 ``Unregistered`` or 400
``BadDeviceToken`` as Apple does."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .http import LOOPBACK, Received, Response, require_loopback

Scope = dict[str, Any]
Message = dict[str, Any]


def apns_error(status: int, reason: str, *, timestamp: bool = False) -> Response:
    data: dict[str, Any] = {"reason": reason}
    if timestamp:
        data["timestamp"] = int(time.time() * 1000)
    return Response.json(status, data)


class FakeApns:
    name = "apns"

    def __init__(
        self, *, host: str = LOOPBACK, port: int = 0, on_receive: Callable[[str, Received], None] | None = None
    ) -> None:
        self.host = require_loopback(host)
        self.requested_port = port
        self.on_receive = on_receive
        self.keys: dict[tuple[str, str], Any] = {}  # (team_id, key_id) -> EC public key
        self.unregistered: set[str] = set()
        self.bad_tokens: set[str] = set()
        self.requests: list[Received] = []
        self.notifications: list[dict[str, Any]] = []
        self._forced: deque[Response] = deque()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None

    # -- keys --------------------------------------------------------------------------------------

    def register_key(self, team_id: str, key_id: str, private_key_pem: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        self.keys[(team_id, key_id)] = key.public_key()

    def signing_key(self, team_id: str = "TEAM123456", key_id: str = "KEY1234567") -> str:
        """A new .p8-style private key (PEM) registered with this fake."""
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.register_key(team_id, key_id, pem)
        return pem

    def fail_next(self, *responses: Response) -> None:
        with self._lock:
            self._forced.extend(responses)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeApns:
        from hypercorn.config import Config, Sockets

        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))
        sock.listen(64)
        sock.setblocking(False)
        self._socket = sock
        config = Config()
        config.accesslog = None
        config.errorlog = None
        config.h2_max_concurrent_streams = 100
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            from hypercorn.asyncio.run import worker_serve
            from hypercorn.utils import wrap_app

            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._shutdown = asyncio.Event()

            async def main() -> None:
                assert self._shutdown is not None
                loop.call_soon(ready.set)
                await worker_serve(
                    wrap_app(self._asgi, config.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
                    config,
                    sockets=Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[]),
                    shutdown_trigger=self._shutdown.wait,
                )

            try:
                loop.run_until_complete(main())
            except BaseException as error:  # surfaced by start() if it happens before ready
                failure.append(error)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-apns", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError(f"the fake APNs did not start: {failure[0]!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._shutdown is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._shutdown.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> FakeApns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._socket is not None, "not started"
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- the ASGI app --------------------------------------------------------------------------------

    async def _asgi(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received = Received(
            method=scope["method"],
            path=scope["path"],
            query={},
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
            info={"http_version": scope.get("http_version")},
        )
        with self._lock:
            forced = self._forced.popleft() if self._forced else None
        response = forced or self._respond(received)
        received.info.setdefault("status", response.status)
        with self._lock:
            self.requests.append(received)
        if self.on_receive is not None:
            try:
                self.on_receive(self.name, received)
            except Exception as error:
                received.info["callback_error"] = repr(error)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    def _respond(self, received: Received) -> Response:
        if received.method != "POST" or not received.path.startswith("/3/device/"):
            return apns_error(404, "BadPath")
        if received.info.get("http_version") != "2":
            # APNs speaks HTTP/2 only.
            return apns_error(400, "BadProtocol")
        token = received.path.removeprefix("/3/device/")
        headers = received.headers
        received.info["token"] = token
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return apns_error(403, "MissingProviderToken")
        provider_token = auth[7:]
        try:
            header = jwt.get_unverified_header(provider_token)
            claims = jwt.decode(provider_token, options={"verify_signature": False})
            public_key = self.keys[(str(claims.get("iss")), str(header.get("kid")))]
            jwt.decode(provider_token, public_key, algorithms=["ES256"], options={"require": ["iat"]})
        except (KeyError, jwt.PyJWTError):
            return apns_error(403, "InvalidProviderToken")
        if time.time() - int(claims["iat"]) > 3600:
            return apns_error(403, "ExpiredProviderToken")
        if not headers.get("apns-topic"):
            return apns_error(400, "MissingTopic")
        if headers.get("apns-push-type") not in {"alert", "background", "voip", "complication", "fileprovider", "mdm"}:
            return apns_error(400, "InvalidPushType")
        try:
            payload = json.loads(received.body)
        except ValueError:
            return apns_error(400, "PayloadEmpty")
        received.info["payload"] = payload
        if token in self.unregistered:
            return apns_error(410, "Unregistered", timestamp=True)
        if token in self.bad_tokens or not all(c in "0123456789abcdefABCDEF" for c in token):
            return apns_error(400, "BadDeviceToken")
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        self.notifications.append({"token": token, "headers": headers, "payload": payload})
        return Response(200, b"", {"apns-id": apns_id})
