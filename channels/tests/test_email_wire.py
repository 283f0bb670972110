"""The fast email path: the same bytes as Django's MIME classes, and a pipelined SMTP conversation
that delivers what ``sendmail`` delivers and fails the way it fails."""

from __future__ import annotations

import random
import re
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import sanitize_address

from channels.testing import SmtpSink
from channels.transports.email_wire import send_message, smtp_send, wire_message

DATE = re.compile(rb"^Date: [^\r\n]*\r\n", re.MULTILINE)
GENERATED_ID = re.compile(rb"^Message-ID: [^\r\n]*\r\n(?: [^\r\n]*\r\n)*", re.MULTILINE)
BOUNDARY = re.compile(rb'boundary="([^"]+)"')


def normalised(data: bytes) -> bytes:
    """The bytes without what is random in each build: the date, a generated Message-ID, the boundary."""
    data = GENERATED_ID.sub(b"Message-ID: <generated>\r\n", DATE.sub(b"Date: <now>\r\n", data))
    match = BOUNDARY.search(data)
    if match:
        data = data.replace(match.group(1), b"BOUNDARY")
    return data


def django_bytes(message: EmailMessage) -> tuple[str, list[str], bytes]:
    """What Django's SMTP backend sends for ``message``: envelope and bytes."""
    encoding = message.encoding or "utf-8"
    return (
        sanitize_address(message.from_email, encoding),
        [sanitize_address(address, encoding) for address in message.recipients()],
        message.message().as_bytes(linesep="\r\n"),  # type: ignore[call-arg]  # Django's MIMEMixin takes it
    )


def assert_same_as_django(message: EmailMessage) -> None:
    wire = wire_message(message)
    assert wire is not None, "the fast path should take this message"
    sender, recipients, data = wire
    django_sender, django_recipients, django_data = django_bytes(message)
    assert (sender, recipients) == (django_sender, django_recipients)
    assert normalised(data) == normalised(django_data)


SUBJECTS = [
    "Hello",
    "Hi Ana, 20% off this week",
    "",
    "Ünïcödé sale: 50% off 🎉",
    "A subject that is long enough to be folded by the email generator when it writes the header line out",
    "Two  spaces and a trailing space ",
    " leading space",
    "=?utf-8?q?looks_encoded?=",
    "x" * 120,
    "Tab\tinside",
    'Commas, semicolons; and (parentheses) "quotes"',
]
FROMS = [
    "noreply@example.com",
    "Engage <noreply@example.com>",
    '"Shop, Inc." <shop@example.com>',
    "Boutique Ünïcödé <shop@example.com>",
    "shop@bücher.example",
]
TOS = [
    ["ana@example.com"],
    ["Ana Example <ana@example.com>"],
    ["first.last+tag@sub.example.co.uk"],
    ["josé@example.com"],
    ["a@example.com", "b@example.com"],
]
BODIES = [
    "Hello,\n\nEverything is 20% off.\n",
    "",
    "No newline at the end",
    "Ünïcödé body — with dashes and emoji 🎉\nSecond line\n",
    ".a line starting with a dot\n..two dots\n",
    "Windows\r\nline\r\nends\r\n",
    "From the start of a line\n",
]
LONG_LINK = "https://engage.example.com/unsubscribe/eyJwIjoxMjM0NSwidyI6MywiYyI6ImVtYWlsIn0:L0lQK098Mg06Mksr22VmDx"


def build(
    *, subject: str, from_email: str, to: list[str], body: str, html: str = "", reply_to: str = "", **extra: str
) -> EmailMultiAlternatives:
    headers = {
        "Message-ID": "<179535471407.13372.9985150372336802447.bf581876eb374056@example.com>",
        "X-Engage-Dispatch-Id": "bf581876-eb37-4056-a449-405cb441812b",
        "List-Unsubscribe": f"<{LONG_LINK}>, <mailto:unsubscribe@example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        **extra,
    }
    message = EmailMultiAlternatives(
        subject=subject, body=body, from_email=from_email, to=to, headers=headers,
        reply_to=[reply_to] if reply_to else None,
    )  # fmt: skip
    if html:
        message.attach_alternative(html, "text/html")
    return message


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects_come_out_as_django_writes_them(subject: str) -> None:
    assert_same_as_django(build(subject=subject, from_email=FROMS[1], to=TOS[0], body=BODIES[0]))


@pytest.mark.parametrize("from_email", FROMS)
@pytest.mark.parametrize("to", TOS)
def test_addresses_come_out_as_django_writes_them(from_email: str, to: list[str]) -> None:
    assert_same_as_django(build(subject="Hi", from_email=from_email, to=to, body="Hello\n", reply_to="Help <h@x.io>"))


@pytest.mark.parametrize("body", BODIES)
def test_bodies_come_out_as_django_writes_them(body: str) -> None:
    assert_same_as_django(build(subject="Hi", from_email=FROMS[0], to=TOS[0], body=body))


@pytest.mark.parametrize("body", ["Plain text\n", ""])
def test_an_html_alternative_comes_out_as_django_writes_it(body: str) -> None:
    html = '<html><body><div style="display:none">Preview — ünïcödé</div><p>Hello <b>Ana</b></p></body></html>'
    assert_same_as_django(build(subject="Hi", from_email=FROMS[1], to=TOS[0], body=body, html=html))


def test_without_a_message_id_or_with_a_date_the_headers_match_django() -> None:
    message = EmailMessage(subject="Hi", body="x", from_email="a@example.com", to=["b@example.com"])
    assert_same_as_django(message)
    dated = build(subject="Hi", from_email=FROMS[0], to=TOS[0], body="x", Date="Mon, 02 Nov 2026 10:00:00 -0000")
    assert_same_as_django(dated)


def test_random_messages_come_out_as_django_writes_them() -> None:
    rng = random.Random(5)
    alphabet = "abcXYZ019 ,;:.-_=?\"'()<>@[]\t/éü—🎉"
    word = "abcXYZ019,;:.-_=?\"'()<>@[]/"
    for _ in range(300):
        subject = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 110)))
        body = "\n".join("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 90))) for _ in range(4))
        html = rng.choice(["", "<p>" + body + "</p>"])
        token = "".join(rng.choice(word) for _ in range(rng.randrange(40, 140)))  # one long word, or not
        assert_same_as_django(
            build(
                subject=subject, from_email=rng.choice(FROMS), to=rng.choice(TOS), body=body, html=html,
                **{"X-Token": token, "X-Words": " ".join(token[i : i + 9] for i in range(0, len(token), 9))},
            )
        )  # fmt: skip


def test_messages_it_does_not_handle_are_left_to_django() -> None:
    with_file = EmailMessage(subject="Hi", body="x", from_email="a@example.com", to=["b@example.com"])
    with_file.attach("a.txt", "hello", "text/plain")
    long_line = EmailMessage(subject="Hi", body="x" * 1200, from_email="a@example.com", to=["b@example.com"])
    other_charset = EmailMessage(subject="Hi", body="x", from_email="a@example.com", to=["b@example.com"])
    other_charset.encoding = "iso-8859-1"
    to_override = EmailMessage(
        subject="Hi", body="x", from_email="a@example.com", to=["b@example.com"], headers={"To": "c@example.com"}
    )
    assert [wire_message(m) for m in (with_file, long_line, other_charset, to_override)] == [None] * 4


def test_a_header_injection_is_refused_as_django_refuses_it() -> None:
    from django.core.mail import BadHeaderError

    message = build(subject="Hi\nBcc: victim@example.com", from_email=FROMS[0], to=TOS[0], body="x")
    with pytest.raises(BadHeaderError):
        wire_message(message)


# --- the SMTP conversation -----------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def sink(request: Any) -> Iterator[SmtpSink]:
    with SmtpSink(pipelining=request.param) as server:
        yield server


@pytest.fixture
def smtp(sink: SmtpSink) -> Iterator[smtplib.SMTP]:
    connection = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
    try:
        yield connection
    finally:
        connection.quit()


def test_messages_arrive_whole_over_one_connection(sink: SmtpSink, smtp: smtplib.SMTP) -> None:
    for n in range(3):
        message = build(
            subject=f"Hi {n}", from_email=FROMS[3], to=[f"p{n}@example.com"], body=BODIES[4], html="<p>x</p>"
        )
        sender, recipients, data = wire_message(message) or ("", [], b"")
        smtp_send(smtp, sender, recipients, data)
    assert [m.recipients for m in sink.messages] == [["p0@example.com"], ["p1@example.com"], ["p2@example.com"]]
    assert [m.subject for m in sink.messages] == ["Hi 0", "Hi 1", "Hi 2"]
    assert sink.messages[0].body().replace("\r\n", "\n").startswith(".a line starting with a dot\n..two dots")
    assert sink.messages[0].body("html") == "<p>x</p>"
    assert sink.messages[0].header("From") == "Boutique Ünïcödé <shop@example.com>"


def test_a_refused_recipient_raises_as_sendmail_does_and_the_connection_goes_on(
    sink: SmtpSink, smtp: smtplib.SMTP
) -> None:
    sink.reject.add("gone@example.com")
    sink.defer.add("busy@example.com")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp_send(smtp, "a@example.com", ["gone@example.com"], b"Subject: x\r\n\r\nx\r\n")
    assert refused.value.recipients["gone@example.com"][0] == 550
    with pytest.raises(smtplib.SMTPRecipientsRefused) as deferred:
        smtp_send(smtp, "a@example.com", ["busy@example.com"], b"Subject: x\r\n\r\nx\r\n")
    assert deferred.value.recipients["busy@example.com"][0] == 450
    # Some refused, some not: sent to the others, as sendmail does.
    smtp_send(smtp, "a@example.com", ["gone@example.com", "ok@example.com"], b"Subject: y\r\n\r\ny\r\n")
    assert [(m.subject, m.recipients) for m in sink.messages] == [("y", ["ok@example.com"])]


def test_send_message_uses_the_open_smtp_backend(sink: SmtpSink) -> None:
    from django.core.mail import get_connection

    backend = get_connection(
        "django.core.mail.backends.smtp.EmailBackend", host="127.0.0.1", port=sink.port, fail_silently=False
    )
    backend.open()
    try:
        for n in range(2):
            send_message(backend, build(subject=f"S{n}", from_email=FROMS[1], to=[f"x{n}@example.com"], body="b"))
    finally:
        backend.close()
    assert [m.subject for m in sink.messages] == ["S0", "S1"]
    assert sink.messages[1].header("List-Unsubscribe").startswith(f"<{LONG_LINK}>")


def test_envelope_addresses_are_quoted_as_smtplib_quotes_them() -> None:
    from channels.transports.email_wire import _quoted

    for address in ["u1@example.com", "first.last+tag@sub.example.co.uk", "Engage <noreply@localhost>",
                    "=?utf-8?q?B=C3=BC?= <shop@example.com>", 'a"b@x.y', "<x@y.z>", ""]:  # fmt: skip
        assert _quoted(address) == smtplib.quoteaddr(address)
