"""The trigger benchmark's own parts: its campaign is one the platform triggers, its pacing and its
figures are right. (The benchmark itself is run by hand: .venv/bin/python -m bench.trigger.)"""

from __future__ import annotations

import argparse
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.trigger import TRIGGER_EVENT, Load, Row, _paced, report, set_up
from campaigns.models import Delivery, DeliveryStatus
from campaigns.services.triggers import campaign_events_process
from profiles.models import App
from profiles.services.ingest import ingest_batch


@pytest.mark.django_db
def test_the_benchmark_campaign_is_triggered_by_its_event(settings: Any) -> None:
    settings.CAMPAIGN_RULES_CACHE_SECONDS = 0
    workspace_id, android_key, _server_key, campaign_id = set_up("http://127.0.0.1:9", {"client_email": "x"})
    app = App.objects.get(write_key=android_key)
    identify = {"type": "identify", "userId": "bench-1", "messageId": "i-1",
                "context": {"device": {"id": "d-1", "token": "t-1"}}}  # fmt: skip
    ingest_batch(app=app, messages=[identify])
    stored = ingest_batch(app=app, messages=[{"type": "track", "userId": "bench-1", "event": TRIGGER_EVENT,
                                              "messageId": "t-1", "properties": {"n": 1}}])  # fmt: skip
    campaign_events_process(workspace_id=workspace_id, event_ids=stored.event_ids, enqueue_due=False)
    [delivery] = Delivery.objects.filter(campaign_id=campaign_id)
    assert delivery.status == DeliveryStatus.SCHEDULED
    assert delivery.trigger_properties == {"n": 1}


def test_pacing_yields_rate_times_duration_ticks() -> None:
    assert len(list(_paced(2000, 0.01, threading.Event()))) == 20
    stop = threading.Event()
    stop.set()
    assert list(_paced(10, 5, stop)) == []


def test_the_report_computes_latencies_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        Row(
            t0,
            t0 + timedelta(milliseconds=50),
            t0 + timedelta(milliseconds=60),
            t0 + timedelta(milliseconds=ms),
            "sent",
        )
        for ms in range(100, 1100, 10)
    ]
    args = argparse.Namespace(duration=10.0)
    load = Load(posted_triggers=[f"m{n}" for n in range(100)], background_events=10_000)
    assert report(rows, load, args, 10_000, (0.5, 0.7)) is True
    out = capsys.readouterr().out
    [line] = [text for text in out.splitlines() if text.startswith("intake -> handed to FCM")]
    assert line.split()[5:] == ["590", "ms", "1,040", "ms", "1,080", "ms", "1,090", "ms"]  # nearest rank
    assert "p99 intake -> transport: 1,080 ms (meets the target of 2 s)" in out

    slow = [Row(t0, t0, t0, t0 + timedelta(seconds=3), "sent")]
    assert report(slow, Load(posted_triggers=["m"]), args, 0, (0.0, 0.0)) is False
    missing = [Row(t0, None, None, None, None)]
    assert report(missing, Load(posted_triggers=["m"]), args, 0, (0.0, 0.0)) is False
