"""Email on the wire, fast: the bytes Django's SMTP backend would send for a message, without the
``email`` package's MIME objects, and an SMTP conversation that pipelines its commands where the
server allows it.

Why: for a campaign, building each message with Django's MIME classes and flattening it with the
``email`` generator (header parsing and folding, address re-parsing) cost ~0.8 ms of CPU per email,
more than everything else the sender does. ``wire_message`` writes the same bytes directly for the
shapes the email transport builds (a text body, optionally one HTML alternative, headers, no
attachments): Django's own functions still check and encode every header
(``forbid_multi_line_headers``, ``sanitize_address``), and any header that is not short plain ASCII
is folded by the same policy the generator uses. Anything else (attachments, other encodings,
overridden address headers, lines over 998 bytes that need quoted-printable) returns None and goes
through Django as before. ``channels/tests/test_email_wire.py`` checks the output against Django's
for many messages.

``send_message`` hands a message to an open backend: for Django's SMTP backend, the wire bytes go
straight to its SMTP connection (pipelined, RFC 2920, when the server offers PIPELINING: MAIL,
RCPT and DATA in one round trip instead of three); any other backend (anymail's ESPs, test
backends) gets ``send_messages``. Errors are smtplib's own exceptions, as Django's backend raises
them, so the transport classifies them the same way.
"""

from __future__ import annotations

import contextlib
import random
import re
import smtplib
import sys
from email import policy as email_policy
from email.utils import formatdate, make_msgid
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend
from django.core.mail.message import RFC5322_EMAIL_LINE_LENGTH_LIMIT, forbid_multi_line_headers, sanitize_address
from django.core.mail.utils import DNS_NAME

if TYPE_CHECKING:
    from django.core.mail.backends.base import BaseEmailBackend

# What the ``email`` generator folds headers with (compat32, the policy of Django's MIME classes).
_POLICY = email_policy.compat32.clone(linesep="\r\n")
_MAX_HEADER_LINE = 78
# A header value the generator leaves exactly as it is when its line fits: printable ASCII, no
# leading, trailing or repeated whitespace (folding rewrites whitespace), no encoded-word markers.
_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*\Z")
# An address sanitize_address returns unchanged: a dot-atom local part and an ASCII domain.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z"
)
_ADDRESS_OVERRIDES = frozenset({"from", "to", "cc", "reply-to"})
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))


def _header(name: str, value: Any, encoding: str) -> str:
    name, text = forbid_multi_line_headers(name, value, encoding)  # Django's own check and encoding
    if _PLAIN_VALUE.match(text):
        if len(name) + 2 + len(text) <= _MAX_HEADER_LINE:
            return f"{name}: {text}\r\n"
        if " " not in text:
            # One word too long for the line (a Message-ID, a List-Unsubscribe link): the folder
            # cannot split it and moves it to a continuation line of its own.
            return f"{name}: \r\n {text}\r\n"
    return _POLICY.fold(name, text)


def _subject(value: Any, encoding: str) -> str:
    text = str(value)
    # Short plain ASCII comes out of Django's Header(...).encode() and the generator unchanged.
    if len(text) + 9 <= _MAX_HEADER_LINE and _PLAIN_VALUE.match(text):
        return f"Subject: {text}\r\n"
    return _header("Subject", text, encoding)


@lru_cache(maxsize=256)
def _sanitized(address: str, encoding: str) -> str:
    return sanitize_address(address, encoding)


def _envelope_address(address: Any, encoding: str) -> str:
    if isinstance(address, str):
        if _PLAIN_ADDRESS.match(address):
            return address
        return _sanitized(address, encoding)
    return sanitize_address(address, encoding)


def _text_part(text: str, subtype: str) -> tuple[str, str] | None:
    """The part's MIME headers and its body as the generator writes them, or None when Django
    would encode it quoted-printable (a line longer than 998 bytes) or it holds surrogates."""
    lines = _LINE_BREAK.split(text)
    ascii_only = text.isascii()
    for line in lines:
        if len(line) > RFC5322_EMAIL_LINE_LENGTH_LIMIT or (
            not ascii_only and len(line.encode("utf-8", "surrogatepass")) > RFC5322_EMAIL_LINE_LENGTH_LIMIT
        ):
            return None
    if not ascii_only:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
        f"Content-Transfer-Encoding: {'7bit' if ascii_only else '8bit'}\r\n"
    )
    return headers, "\r\n".join(lines)


def _boundary(texts: list[str]) -> str:
    # As the email generator makes one: random, and not a line of the parts.
    boundary = "=" * 15 + f"{random.randrange(sys.maxsize):0{_BOUNDARY_WIDTH}d}" + "=="
    base, counter = boundary, 0
    while any(f"--{boundary}" in text for text in texts):
        boundary = f"{base}.{counter}"
        counter += 1
    return boundary


def wire_message(message: EmailMessage) -> tuple[str, list[str], bytes] | None:
    """(envelope sender, envelope recipients, message bytes) as Django's SMTP backend sends
    ``message`` (apart from the random parts: Date when not given, the MIME boundary), or None
    when the message needs Django's MIME classes."""
    if type(message) not in (EmailMessage, EmailMultiAlternatives) or message.attachments:
        return None
    encoding = message.encoding or settings.DEFAULT_CHARSET
    if encoding.lower().replace("_", "-") != "utf-8" or message.content_subtype not in ("plain", "html"):
        return None
    extra = message.extra_headers
    lowered = [str(key).lower() for key in extra]
    if _ADDRESS_OVERRIDES.intersection(lowered):
        return None
    alternatives = list(getattr(message, "alternatives", []) or [])
    if len(alternatives) > 1 or any(
        not isinstance(content, str) or not str(mimetype).startswith("text/") for content, mimetype in alternatives
    ):
        return None
    body = _text_part(str(message.body or ""), message.content_subtype)
    if body is None:
        return None
    parts = [body]
    for content, mimetype in alternatives:
        part = _text_part(content, mimetype.split("/", 1)[1])
        if part is None:
            return None
        parts.append(part)

    recipients = message.recipients()
    envelope_from = _envelope_address(message.from_email, encoding)
    envelope_to = [_envelope_address(address, encoding) for address in recipients]

    if alternatives:
        # multipart/alternative: the body part (when there is one) and the alternative.
        if not message.body:
            parts = parts[1:]
        texts = [text for _, text in parts]
        boundary = _boundary(texts)
        subtype = getattr(message, "alternative_subtype", "alternative")
        head = _header("Content-Type", f'multipart/{subtype}; boundary="{boundary}"', "ascii")
        head += "MIME-Version: 1.0\r\n"
        payload = (
            f"--{boundary}\r\n"
            + f"\r\n--{boundary}\r\n".join(f"{headers}\r\n{text}" for headers, text in parts)
            + f"\r\n--{boundary}--\r\n"
        )
    else:
        head, payload = parts[0]

    out = [head, _subject(message.subject, encoding)]
    out.append(_header("From", extra.get("From", message.from_email), encoding))
    if message.to:
        out.append(_header("To", ", ".join(str(v) for v in message.to), encoding))
    if message.cc:
        out.append(_header("Cc", ", ".join(str(v) for v in message.cc), encoding))
    if message.reply_to:
        out.append(_header("Reply-To", ", ".join(str(v) for v in message.reply_to), encoding))
    if "date" not in lowered:
        out.append(_header("Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME), encoding))
    if "message-id" not in lowered:
        out.append(_header("Message-ID", make_msgid(domain=DNS_NAME), encoding))
    for name, value in extra.items():
        if str(name).lower() not in _ADDRESS_OVERRIDES:
            out.append(_header(name, value, encoding))
    out.append("\r\n")
    out.append(payload)
    return envelope_from, envelope_to, "".join(out).encode("utf-8")


def send_message(backend: BaseEmailBackend, message: EmailMessage) -> None:
    """Hand ``message`` over through ``backend``, which the caller has opened (and closes).

    Django's SMTP backend (or a subclass that does not change how it sends) gets the wire bytes on
    its connection; everything else gets ``send_messages``. Raises what the backend raises."""
    connection = getattr(backend, "connection", None)
    if (
        isinstance(backend, SmtpEmailBackend)
        and type(backend)._send is SmtpEmailBackend._send  # type: ignore[attr-defined]
        and isinstance(connection, smtplib.SMTP)
    ):
        wire = wire_message(message)
        if wire is not None:
            sender, recipients, data = wire
            if recipients:  # as Django: a message without recipients is not sent
                smtp_send(connection, sender, recipients, data)
            return
    backend.send_messages([message])


def smtp_send(connection: smtplib.SMTP, sender: str, recipients: list[str], data: bytes) -> None:
    """``connection.sendmail(sender, recipients, data)``, with MAIL, RCPT and DATA sent in one
    round trip when the server offers PIPELINING (RFC 2920). The same exceptions as ``sendmail``:
    ``SMTPSenderRefused``, ``SMTPRecipientsRefused`` (every recipient refused; some refused is not
    an error, as in ``sendmail``), ``SMTPDataError``; the conversation is reset after a refusal."""
    connection.ehlo_or_helo_if_needed()
    if not connection.has_extn("pipelining") or connection.does_esmtp is False:
        connection.sendmail(sender, recipients, data)
        return
    options = []
    if connection.has_extn("size"):
        options.append(f"size={len(data)}")
    if not sender.isascii() or any(not r.isascii() for r in recipients):
        # SMTPUTF8 and its checks: smtplib's own path.
        connection.sendmail(sender, recipients, data)
        return
    commands = [f"mail FROM:{_quoted(sender)}{''.join(' ' + o for o in options)}"]
    commands += [f"rcpt TO:{_quoted(r)}" for r in recipients]
    commands.append("data")
    connection.send("".join(f"{c}\r\n" for c in commands))
    mail_code, mail_reply = connection.getreply()
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in recipients:
        code, reply = connection.getreply()
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    data_code, data_reply = connection.getreply()
    if mail_code != 250:
        _reset(connection, data_code)
        if mail_code == 421:
            connection.close()
        raise smtplib.SMTPSenderRefused(mail_code, mail_reply, sender)
    if len(refused) == len(recipients):
        _reset(connection, data_code)
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_code != 354:
        _reset(connection, data_code)
        raise smtplib.SMTPDataError(data_code, data_reply)
    quoted = smtplib._quote_periods(data)  # type: ignore[attr-defined]  # as SMTP.data() does
    if quoted[-2:] != b"\r\n":
        quoted += b"\r\n"
    connection.send(quoted + b".\r\n")
    code, reply = connection.getreply()
    if code != 250:
        if code == 421:
            connection.close()
        else:
            _reset(connection, code)
        raise smtplib.SMTPDataError(code, reply)


def _quoted(address: str) -> str:
    """``smtplib.quoteaddr``: a plain address needs no parsing (most recipients); the sender, the
    same for a whole batch, is parsed once."""
    if _PLAIN_ADDRESS.match(address):
        return f"<{address}>"
    return _quoted_parsed(address)


@lru_cache(maxsize=256)
def _quoted_parsed(address: str) -> str:
    return smtplib.quoteaddr(address)


def _reset(connection: smtplib.SMTP, data_code: int) -> None:
    # A DATA the server accepted (354) after a refusal must be ended before RSET.
    if data_code == 354:
        connection.send(b".\r\n")
        connection.getreply()
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        connection.rset()
