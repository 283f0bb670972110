"""The intake benchmark's own parts: the data it sends is valid, unique and reproducible, and its
figures are computed right. (The benchmark itself is run by hand: .venv/bin/python -m bench.ingest.)"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.common import BenchError, check_loopback, percentile, recreate_database
from bench.ingest import Workload, _copy_escape, make_workload, parse_args, summarize_py_spy
from profiles.models import App, Event
from profiles.services.ingest import ingest_batch

UUID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SENT_AT = b"2026-11-22T10:00:00.000Z"


@pytest.fixture(scope="module")
def workload() -> Workload:
    return make_workload(seed=7, users=300, anonymous=60, batches=12, batch_size=100)


def batch(workload: Workload, number: int) -> list[dict[str, object]]:
    body = json.loads(workload.body(number, SENT_AT))
    assert body["sentAt"] == SENT_AT.decode()
    messages: list[dict[str, object]] = body["batch"]
    return messages


def test_every_message_of_every_request_has_its_own_uuid_shaped_message_id(workload: Workload) -> None:
    # 30 requests cycle through the 12 distinct bodies more than twice.
    ids = [str(m["messageId"]) for number in range(30) for m in batch(workload, number)]
    assert len(ids) == 3000
    assert len(set(ids)) == 3000
    assert all(UUID_SHAPE.match(message_id) for message_id in ids)


def test_the_same_seed_gives_the_same_stream_and_another_seed_another() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    first = make_workload(seed=3, users=50, anonymous=10, batches=2, batch_size=20, now=now)
    again = make_workload(seed=3, users=50, anonymous=10, batches=2, batch_size=20, now=now)
    other = make_workload(seed=4, users=50, anonymous=10, batches=2, batch_size=20, now=now)
    body = first.body(1, SENT_AT)
    assert again.body(1, SENT_AT) == body
    assert other.body(1, SENT_AT) != body


def test_messages_look_like_what_sdks_send(workload: Workload) -> None:
    messages = [m for number in range(12) for m in batch(workload, number)]
    assert 700 < workload.mean_message_bytes < 1600
    kinds = {str(m["type"]) for m in messages}
    assert {"track", "identify", "screen", "page"} <= kinds
    events = {str(m.get("event")) for m in messages if m["type"] == "track"}
    assert {"Product Viewed", "Product Added", "Application Opened"} <= events
    assert all(m.get("userId") or m.get("anonymousId") for m in messages)
    assert any(m.get("userId") is None for m in messages), "some visitors are anonymous"
    identify = next(m for m in messages if m["type"] == "identify")
    assert isinstance(identify["traits"], dict) and "email" in identify["traits"]


@pytest.mark.django_db
def test_the_intake_accepts_and_stores_every_generated_message(workload: Workload, app: App) -> None:
    messages = [m for number in range(3) for m in batch(workload, number)]

    result = ingest_batch(app=app, messages=messages)

    assert result.rejected == []
    message_ids = [str(m["messageId"]) for m in messages]
    assert Event.objects.filter(workspace=app.workspace, message_id__in=message_ids).count() == 300


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0


def test_py_spy_stacks_are_summed_per_function(tmp_path: Path) -> None:
    raw = tmp_path / "worker-1.txt"
    raw.write_text(
        "<module> (gunicorn:8);IntakeView.post (profiles/api/intake.py:10);dumps (json/__init__.py:231) 30\n"
        "<module> (gunicorn:8);IntakeView.post (profiles/api/intake.py:12) 10\n"
        "<module> (gunicorn:8);WSGIHandler.__call__ (django/core/handlers/wsgi.py:124) 60\n"
    )

    profile = summarize_py_spy([raw], top=10)

    assert profile.samples == 100
    hottest = {name: (own, total) for name, own, total in profile.hottest}
    assert hottest["dumps (json/__init__.py)"] == (30.0, 30.0)
    assert hottest["IntakeView.post (profiles/api/intake.py)"] == (10.0, 40.0)
    assert profile.project == [("IntakeView.post (profiles/api/intake.py)", 40.0)]


def test_copy_text_escapes_what_copy_would_misread() -> None:
    assert _copy_escape('{"a": "x\\ny"}\tz\r') == '{"a": "x\\\\ny"}\\tz\\r'


def test_the_benchmark_refuses_remote_servers_and_non_benchmark_databases() -> None:
    check_loopback("postgresql://postgres@127.0.0.1:5432/postgres")
    check_loopback("postgresql://postgres@/postgres?host=/tmp/engage-run")
    with pytest.raises(BenchError, match="local PostgreSQL"):
        check_loopback("postgresql://postgres@db.example.com:5432/postgres")
    with pytest.raises(BenchError, match="must contain 'bench'"):
        recreate_database("postgresql://postgres@127.0.0.1:5432/postgres", "engage")


def test_command_line_defaults_scale_clients_with_workers() -> None:
    args = parse_args(["--workers", "4"])
    assert args.concurrency == 8
    assert parse_args([]).workers == 2 * (os.cpu_count() or 1) + 1
    assert args.worker_classes == ["sync"]
    assert parse_args(["-k", "sync,gthread"]).worker_classes == ["sync", "gthread"]
    with pytest.raises(SystemExit):
        parse_args(["-k", "eventlet"])
