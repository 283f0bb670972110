"""An SMTP sink on loopback (aiosmtpd): a real SMTP conversation (EHLO, optional AUTH, MAIL,
RCPT, DATA) that keeps every message. Recipients can be made to fail with 550 (a hard reject) or
450 (a deferral). ``pipelining=True`` advertises PIPELINING (RFC 2920), as production MTAs do
(aiosmtpd reads pipelined commands in order either way)."""

from __future__ import annotations

import email
import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from .http import LOOPBACK, require_loopback


@dataclass
class SmtpMessage:
    mail_from: str
    recipients: list[str]
    message: EmailMessage
    authenticated_as: str | None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def header(self, name: str) -> str:
        return str(self.message[name] or "").strip()

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return "" if part is None else str(part.get_content())


class SmtpSink:
    name = "smtp"

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        credentials: tuple[str, str] | None = None,
        on_receive: Callable[[str, SmtpMessage], None] | None = None,
        pipelining: bool = False,
    ) -> None:
        self.host = require_loopback(host)
        self.requested_port = port
        self.credentials = credentials
        self.on_receive = on_receive
        self.pipelining = pipelining
        self.messages: list[SmtpMessage] = []
        self.reject: set[str] = set()  # 550: a hard bounce at RCPT
        self.defer: set[str] = set()  # 450: try again later
        self._lock = threading.Lock()
        self._controller: Any = None

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        # aiosmtpd logs every SMTP command at INFO: the sink reports what matters itself.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        from aiosmtpd.smtp import AuthResult, LoginPassword

        sink = self

        class Handler:
            async def handle_EHLO(
                self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
            ) -> list[str]:
                # aiosmtpd hands over its answer (ending "250 HELP") for this hook to replace.
                session.host_name = hostname
                if sink.pipelining:
                    return [*responses[:-1], "250-PIPELINING", responses[-1]]
                return responses

            async def handle_RCPT(
                self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
            ) -> str:
                if address in sink.reject:
                    return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
                if address in sink.defer:
                    return f"450 4.2.1 <{address}>: Mailbox busy, try again later"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                raw = envelope.original_content or envelope.content
                parsed = email.message_from_bytes(raw, policy=default_policy)
                login = getattr(session, "auth_data", None)
                message = SmtpMessage(
                    mail_from=envelope.mail_from,
                    recipients=list(envelope.rcpt_tos),
                    message=parsed,
                    authenticated_as=login.login.decode() if isinstance(login, LoginPassword) else None,
                )
                with sink._lock:
                    sink.messages.append(message)
                if sink.on_receive is not None:
                    try:
                        sink.on_receive(sink.name, message)
                    except Exception:  # a printing callback must not break the conversation
                        logging.getLogger(__name__).exception("the SMTP sink's on_receive callback failed")
                return "250 Message accepted for delivery"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            if (
                sink.credentials is not None
                and isinstance(auth_data, LoginPassword)
                and (auth_data.login.decode(), auth_data.password.decode()) == sink.credentials
            ):
                return AuthResult(success=True, auth_data=auth_data)
            return AuthResult(success=False, handled=False)

        class EphemeralController(Controller):
            def _trigger_server(self) -> None:
                # Port 0 asks the OS for a free port: learn which before connecting to it.
                if self.port == 0:
                    assert self.server is not None
                    self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
                super()._trigger_server()

        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            kwargs.update(authenticator=authenticator, auth_require_tls=False)
        with warnings.catch_warnings():
            # AUTH without TLS: this is a loopback test server, never a real one.
            warnings.simplefilter("ignore", UserWarning)
            self._controller = EphemeralController(Handler(), hostname=self.host, port=self.requested_port, **kwargs)
            self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._controller is not None, "not started"
        return int(self._controller.port)
