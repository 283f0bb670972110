"""A small threaded HTTP/1.1 server on loopback that the fake providers build on.

Each fake records every request it receives (``requests``), can be told to answer the next
requests with chosen responses (``fail_next``: a 503, a 429 with Retry-After…), and calls an
optional ``on_receive`` callback (the sandbox prints what arrives).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"


def require_loopback(host: str) -> str:
    """Fakes listen on loopback only: they are never reachable from another machine."""
    if host not in {"127.0.0.1", "localhost", "::1"} and not host.startswith("127."):
        raise ValueError(f"fake providers listen on loopback only; got {host!r}")
    return host


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class Received:
    """One request as the fake saw it, plus whatever the fake made of it (``info``)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    info: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {key: values[-1] for key, values in parse_qs(self.body.decode(), keep_blank_values=True).items()}


class FakeHttpServer:
    """Subclasses implement ``respond(received) -> Response`` (and may fill ``received.info``)."""

    name = "http"

    def __init__(
        self, *, host: str = LOOPBACK, port: int = 0, on_receive: Callable[[str, Received], None] | None = None
    ) -> None:
        self.host = require_loopback(host)
        self.requested_port = port
        self.on_receive = on_receive
        self.requests: list[Received] = []
        self._forced: deque[Response] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the fake reports itself
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                received = Received(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                response = fake._dispatch(received)
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if response.body and self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer((self.host, self.requested_port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- behaviour -------------------------------------------------------------------------------

    def fail_next(self, *responses: Response) -> None:
        """Answer the next requests with these responses, in order, before the normal behaviour."""
        with self._lock:
            self._forced.extend(responses)

    def _dispatch(self, received: Received) -> Response:
        with self._lock:
            forced = self._forced.popleft() if self._forced else None
        response = forced if forced is not None else self._safe_respond(received)
        received.info.setdefault("status", response.status)
        with self._lock:
            self.requests.append(received)
        if self.on_receive is not None:
            try:
                self.on_receive(self.name, received)
            except Exception as error:  # a printing callback must not break the fake
                received.info["callback_error"] = repr(error)
        return response

    def _safe_respond(self, received: Received) -> Response:
        try:
            return self.respond(received)
        except Exception as error:
            received.info["error"] = repr(error)
            return Response.json(500, {"error": f"fake {self.name} failed: {error!r}"})

    def respond(self, received: Received) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError
