"""The send benchmark's own parts: its minimal SMTP sink speaks enough SMTP for Django's mail
backend and counts each recipient. (The benchmark itself is run by hand: python -m bench.send.)"""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend

from bench.send import Sink, parse_args
from channels.transports.email_wire import send_message


def test_the_sink_counts_each_recipient_of_each_message() -> None:
    sink = Sink.start(pipelining=False)
    try:
        backend = get_connection("django.core.mail.backends.smtp.EmailBackend", host="127.0.0.1", port=sink.port)
        backend.open()
        sent = backend.send_messages(
            [
                EmailMessage("Hi", "body\n.\nstill body", "a@example.com", [to])
                for to in ("X@example.com", "y@example.com")
            ]
            + [EmailMessage("Again", "b", "a@example.com", ["x@example.com"])]
        )
        backend.close()
        assert sent == 3
        messages, recipients = sink.stats()
        assert messages == 3
        assert recipients == {"x@example.com": 2, "y@example.com": 1}
    finally:
        sink.stop()


@pytest.mark.parametrize("pipelining", [True, False])
def test_the_sink_takes_pipelined_and_one_by_one_conversations(pipelining: bool) -> None:
    sink = Sink.start(pipelining=pipelining)
    try:
        backend = SmtpBackend(host="127.0.0.1", port=sink.port)
        backend.open()
        assert backend.connection is not None
        backend.connection.ehlo_or_helo_if_needed()
        assert backend.connection.has_extn("pipelining") == pipelining
        for to in ("a@example.com", "b@example.com", "a@example.com"):
            send_message(backend, EmailMessage("Hi", "body\n.\nstill body", "s@example.com", [to]))
        backend.close()
        assert sink.stats() == (3, {"a@example.com": 2, "b@example.com": 1})
    finally:
        sink.stop()


def test_the_database_name_must_say_bench() -> None:
    assert parse_args(["--people", "10"]).db_name == "engage_bench_send"
