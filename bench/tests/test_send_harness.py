"""The send benchmark's own parts: its minimal SMTP sink speaks enough SMTP for Django's mail
backend and counts each recipient. (The benchmark itself is run by hand: python -m bench.send.)"""

from __future__ import annotations

from django.core.mail import EmailMessage, get_connection

from bench.send import Sink, parse_args


def test_the_sink_counts_each_recipient_of_each_message() -> None:
    sink = Sink.start()
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


def test_the_database_name_must_say_bench() -> None:
    assert parse_args(["--people", "10"]).db_name == "engage_bench_send"
