"""A fake Twilio Messaging API: ``POST /2010-04-01/Accounts/{sid}/Messages.json`` with HTTP
Basic auth, answering with a message resource, or Twilio's error body for numbers marked as
opted out (21610) or invalid (21211). It can also produce the signed status callbacks Twilio would
send (and, in the sandbox, post them)."""

from __future__ import annotations

import base64
import re
import secrets
import threading
from typing import Any

import httpx

from ..api.twilio import twilio_signature
from .http import FakeHttpServer, Received, Response

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-zA-Z]+)/Messages\.json$")


def twilio_error(status: int, code: int, message: str) -> Response:
    return Response.json(
        status,
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
    )


class FakeTwilio(FakeHttpServer):
    name = "twilio"

    def __init__(self, *, auto_callbacks: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accounts: dict[str, str] = {}  # sid -> auth token
        self.opted_out: set[str] = set()
        self.invalid: set[str] = set()
        self.messages: list[dict[str, str]] = []
        # Post "sent" then "delivered" status callbacks after each accepted message (the sandbox).
        self.auto_callbacks = auto_callbacks
        self.callback_results: list[str] = []

    def account(self, sid: str | None = None, token: str | None = None) -> tuple[str, str]:
        sid = sid or "AC" + secrets.token_hex(16)
        token = token or secrets.token_hex(16)
        self.accounts[sid] = token
        return sid, token

    def respond(self, received: Received) -> Response:
        match = MESSAGES_PATH.match(received.path)
        if received.method != "POST" or match is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        sid = match.group("sid")
        if not self._authorized(received, sid):
            return twilio_error(401, 20003, "Authenticate")
        form = received.form()
        received.info["form"] = form
        to = form.get("To", "")
        if not form.get("Body") and not form.get("MediaUrl"):
            return twilio_error(400, 21602, "Message body is required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if to in self.opted_out:
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        if to in self.invalid or not re.fullmatch(r"\+[1-9]\d{6,14}", to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        message_sid = "SM" + secrets.token_hex(16)
        message = {**form, "sid": message_sid, "account_sid": sid}
        self.messages.append(message)
        received.info["sid"] = message_sid
        if self.auto_callbacks and form.get("StatusCallback"):
            threading.Thread(target=self._post_callbacks, args=(message,), daemon=True).start()
        return Response.json(
            201,
            {
                "sid": message_sid,
                "account_sid": sid,
                "to": to,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form.get("Body"),
                "status": "queued" if form.get("MessagingServiceSid") else "accepted",
                "num_segments": "1",
            },
        )

    def _authorized(self, received: Received, sid: str) -> bool:
        auth = received.headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False
        return (
            user == sid and self.accounts.get(sid) is not None and secrets.compare_digest(password, self.accounts[sid])
        )

    # -- callbacks ---------------------------------------------------------------------------------

    def status_callback(
        self, message: dict[str, str], status: str, *, error_code: str = ""
    ) -> tuple[str, dict[str, str], str]:
        """(url, form params, X-Twilio-Signature) of the status callback Twilio would send."""
        url = message["StatusCallback"]
        params = {
            "AccountSid": message["account_sid"],
            "MessageSid": message["sid"],
            "SmsSid": message["sid"],
            "MessageStatus": status,
            "SmsStatus": status,
            "To": message.get("To", ""),
            "From": message.get("From", ""),
            "ApiVersion": "2010-04-01",
        }
        if message.get("MessagingServiceSid"):
            params["MessagingServiceSid"] = message["MessagingServiceSid"]
        if error_code:
            params["ErrorCode"] = error_code
        return url, params, twilio_signature(url, params, self.accounts[message["account_sid"]])

    def inbound(self, *, account_sid: str, url: str, from_: str, to: str, body: str) -> tuple[dict[str, str], str]:
        """(form params, signature) of an inbound message Twilio would post to ``url``."""
        params = {
            "AccountSid": account_sid,
            "MessageSid": "SM" + secrets.token_hex(16),
            "SmsSid": "",
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
        params["SmsSid"] = params["MessageSid"]
        return params, twilio_signature(url, params, self.accounts[account_sid])

    def _post_callbacks(self, message: dict[str, str]) -> None:
        for status in ("sent", "delivered"):
            url, params, signature = self.status_callback(message, status)
            try:
                response = httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
                self.callback_results.append(f"{status}: {response.status_code}")
            except httpx.HTTPError as error:
                self.callback_results.append(f"{status}: {error!r}")
