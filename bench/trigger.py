"""Trigger latency benchmark: how long from the intake receiving an event to the push leaving for the
provider, for an undelayed action-based campaign, while background traffic flows.

It starts, against a fresh PostgreSQL database and the project's Redis: gunicorn serving
``config.wsgi``, a Celery worker and beat (``./run``'s commands), and a fake FCM on loopback. It
creates a workspace with people who have push tokens (through the intake) and a running campaign
triggered by ``Bench Trigger`` with no delay. Then, for ``--duration`` seconds, it posts background
events (``Product Viewed``, batches of 100) at ``--background-rate`` events/s and single trigger
events at ``--trigger-rate``/s (default 5), each for a different person, and reads back, per trigger:

    event received_at (the intake) -> delivery created (trigger matching) -> claimed (the sender)
    -> dispatch sent_at (handed to the transport, the provider answered)

and prints p50/p95/p99/max of ``dispatch sent_at - event received_at``. Target: p99 < 2 s.

    .venv/bin/python -m bench.trigger                       # embedded PostgreSQL and Redis, as ./run
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.trigger --duration 60

See docs/campaigns-triggers.md ("Benchmark").
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    OUT_DIR,
    PYTHON,
    BenchError,
    Gunicorn,
    ServerProcess,
    backing_services,
    check_loopback,
    database_name,
    django_env,
    drop_database,
    fmt_int,
    log,
    migrate,
    percentile,
    print_table,
    recreate_database,
    setup_django,
)

BATCH_PATH = "/v1/batch"
TRIGGER_EVENT = "Bench Trigger"
BACKGROUND_EVENT = "Product Viewed"
TARGET_P99_SECONDS = 2.0
DATABASE = "engage_bench_trigger"


# --- processes ------------------------------------------------------------------------------------


@dataclass
class Celery(ServerProcess):
    """A ``celery -A config <role>`` process (worker or beat) in its own process group."""

    role: str
    env: dict[str, str]
    args: Sequence[str] = ()
    ready_text: str = ""
    process: subprocess.Popen[bytes] | None = None
    stop_timeout: float = 20

    @property
    def log_path(self) -> Path:  # type: ignore[override]
        return OUT_DIR / f"trigger-{self.role}.log"

    def start(self, timeout: float = 60) -> None:
        process = self.spawn([str(PYTHON), "-m", "celery", "-A", "config", self.role, *self.args], self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"celery {self.role} exited with {process.returncode}:\n{self.log_tail(30)}")
            if not self.ready_text or self.ready_text in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise BenchError(f"celery {self.role} was not ready within {timeout:.0f}s:\n{self.log_tail(30)}")


# --- the client -----------------------------------------------------------------------------------


class Poster:
    """One keep-alive connection posting batches with a write key."""

    def __init__(self, address: tuple[str, int], write_key: str) -> None:
        self.address = address
        self.auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self.conn: http.client.HTTPConnection | None = None

    def post(self, messages: list[dict[str, Any]]) -> int:
        body = json.dumps({"batch": messages}).encode()
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.address, timeout=30)
            try:
                self.conn.request(
                    "POST", BATCH_PATH, body, {"Content-Type": "application/json", "Authorization": self.auth}
                )
                response = self.conn.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        return 0


@dataclass
class Load:
    posted_triggers: list[str] = field(default_factory=list)
    background_events: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1


def _paced(rate: float, duration: float, stop: threading.Event) -> Iterator[int]:
    """Yield tick numbers at ``rate`` per second for ``duration`` seconds (catching up if late)."""
    start = time.monotonic()
    tick = 0
    while not stop.is_set():
        due = start + tick / rate
        if due - start >= duration:
            return
        wait = due - time.monotonic()
        if wait > 0 and stop.wait(wait):
            return
        yield tick
        tick += 1


def background(address: tuple[str, int], write_key: str, people: int, rate: float, duration: float,
               load: Load, stop: threading.Event, offset: int) -> None:  # fmt: skip
    poster = Poster(address, write_key)
    batch_size = 100
    for tick in _paced(rate / batch_size, duration, stop):
        batch = [
            {
                "type": "track",
                "userId": f"bench-{(offset + tick * batch_size + i) % people}",
                "event": BACKGROUND_EVENT,
                "messageId": str(uuid.uuid4()),
                "properties": {"product_id": f"sku-{i % 50}", "price": 19.9 + i},
            }
            for i in range(batch_size)
        ]
        try:
            status = poster.post(batch)
        except OSError as error:
            load.error(f"background: {type(error).__name__}")
            continue
        if status != 200:
            load.error(f"background: HTTP {status}")
            continue
        with load.lock:
            load.background_events += batch_size


def triggers(address: tuple[str, int], write_key: str, people: int, rate: float, duration: float,
             load: Load, stop: threading.Event) -> None:  # fmt: skip
    poster = Poster(address, write_key)
    for tick in _paced(rate, duration, stop):
        message_id = f"bench-trigger-{uuid.uuid4()}"
        message = {
            "type": "track",
            "userId": f"bench-{tick % people}",
            "event": TRIGGER_EVENT,
            "messageId": message_id,
            "properties": {"n": tick},
        }
        try:
            status = poster.post([message])
        except OSError as error:
            load.error(f"trigger: {type(error).__name__}")
            continue
        if status != 200:
            load.error(f"trigger: HTTP {status}")
            continue
        with load.lock:
            load.posted_triggers.append(message_id)


# --- set-up and results ---------------------------------------------------------------------------


def set_up(fcm_url: str, service_account: dict[str, str]) -> tuple[int, str, str, int]:
    """The workspace, its apps, the FCM provider and the running campaign (in this process's ORM)."""
    from campaigns.models import Campaign, ChannelMessage, DeliveryType, Variant
    from campaigns.services.launch import campaign_launch
    from channels.models import ProviderConfig
    from channels.secrets import provider_config_set_secrets
    from profiles.models import App, Platform, Workspace

    workspace = Workspace.objects.create(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    android = App.objects.create(workspace=workspace, name="Bench Android", platform=Platform.ANDROID)
    server = App.objects.create(workspace=workspace, name="Bench Server", platform=Platform.SERVER)
    config = ProviderConfig.objects.create(
        workspace=workspace, kind="fcm", name="Fake FCM", settings={"base_url": fcm_url}
    )
    provider_config_set_secrets(config, service_account_json=json.dumps(service_account))
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Bench trigger",
        delivery_type=DeliveryType.ACTION,
        triggers=[{"type": "custom_event", "event": TRIGGER_EVENT}],
        reeligible=True,
        reeligibility_seconds=0,
    )
    variant = Variant.objects.create(campaign=campaign, key="A", percent=100)
    ChannelMessage.objects.create(
        variant=variant,
        channel="push",
        template={"title": "Hi {{ first_name | default: 'there' }}", "body": "Trigger {{ event_properties.n }}"},
    )
    campaign_launch(campaign=campaign)
    return workspace.pk, android.write_key, server.write_key, campaign.pk


def seed_people(address: tuple[str, int], write_key: str, people: int) -> None:
    poster = Poster(address, write_key)
    for start in range(0, people, 100):
        batch = [
            {
                "type": "identify",
                "userId": f"bench-{n}",
                "messageId": f"bench-identify-{n}",
                "traits": {"first_name": f"Person {n}"},
                "context": {"device": {"id": f"bench-device-{n}", "token": f"bench-token-{n}"}},
            }
            for n in range(start, min(people, start + 100))
        ]
        status = poster.post(batch)
        if status != 200:
            raise BenchError(f"seeding people failed with HTTP {status}")


@dataclass
class Row:
    received_at: datetime
    created_at: datetime | None
    claimed_at: datetime | None
    sent_at: datetime | None
    status: str | None


def read_results(workspace_id: int, campaign_id: int) -> list[Row]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.received_at, d.created_at, d.claimed_at, min(x.sent_at), d.status"
            " FROM profiles_event e"
            " LEFT JOIN campaigns_delivery d"
            "  ON d.trigger_event_id = e.id AND d.campaign_id = %s AND d.step_key = 'main'"
            " LEFT JOIN channels_dispatch x ON x.id = ANY(d.dispatch_ids) AND x.sent_at IS NOT NULL"
            " WHERE e.workspace_id = %s AND e.name = %s"
            " GROUP BY e.id, e.received_at, d.created_at, d.claimed_at, d.status",
            [campaign_id, workspace_id, TRIGGER_EVENT],
        )
        return [Row(*row) for row in cursor.fetchall()]


def wait_for_sends(workspace_id: int, campaign_id: int, expected: int, timeout: float) -> list[Row]:
    deadline = time.monotonic() + timeout
    while True:
        rows = read_results(workspace_id, campaign_id)
        done = sum(1 for row in rows if row.sent_at is not None or row.status in ("failed", "skipped"))
        if done >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def report(
    rows: list[Row], load: Load, args: argparse.Namespace, stored_background: int, machine: tuple[float, float]
) -> bool:
    sent = [row for row in rows if row.sent_at is not None]
    latencies = sorted((row.sent_at - row.received_at).total_seconds() for row in sent if row.sent_at)
    stages = {
        "intake -> enrolled": sorted(
            (row.created_at - row.received_at).total_seconds() for row in sent if row.created_at
        ),
        "enrolled -> claimed": sorted(
            (row.claimed_at - row.created_at).total_seconds() for row in sent if row.claimed_at and row.created_at
        ),
        "claimed -> handed to FCM": sorted(
            (row.sent_at - row.claimed_at).total_seconds() for row in sent if row.claimed_at and row.sent_at
        ),
    }
    print_table(
        "Load",
        [
            ("duration", f"{args.duration:.0f} s"),
            # Other work on the machine slows everything here: say how busy it was.
            ("machine", f"{os.cpu_count()} CPUs, load average {machine[0]:.1f} before, {machine[1]:.1f} after"),
            ("background events stored", f"{fmt_int(stored_background)} ({stored_background / args.duration:,.0f}/s)"),
            ("trigger events posted", fmt_int(len(load.posted_triggers))),
            ("trigger events stored", fmt_int(len(rows))),
            ("pushes handed to FCM", fmt_int(len(sent))),
            ("not sent", fmt_int(len(rows) - len(sent))),
            *((f"errors: {what}", fmt_int(count)) for what, count in sorted(load.errors.items())),
        ],
    )
    table = [
        ("intake -> handed to FCM", *(_ms(percentile(latencies, f)) for f in (0.5, 0.95, 0.99, 1.0))),
        *((name, *(_ms(percentile(values, f)) for f in (0.5, 0.95, 0.99, 1.0))) for name, values in stages.items()),
    ]
    print_table("Trigger latency", table, headers=("stage", "p50", "p95", "p99", "max"))
    p99 = percentile(latencies, 0.99)
    ok = bool(latencies) and len(sent) == len(rows) and p99 < TARGET_P99_SECONDS
    verdict = "meets" if ok else "MISSES"
    print(f"\np99 intake -> transport: {_ms(p99)} ({verdict} the target of {TARGET_P99_SECONDS:.0f} s)")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds of load (default 30).")
    parser.add_argument("--trigger-rate", type=float, default=5.0, help="Trigger events per second (default 5).")
    parser.add_argument("--background-rate", type=float, default=1000.0, help="Background events/s (default 1000).")
    parser.add_argument("--people", type=int, default=2000, help="People with push tokens (default 2000).")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (default 2).")
    parser.add_argument("--concurrency", type=int, default=4, help="Celery worker processes (default 4).")
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: $DATABASE_URL, else embedded).")
    parser.add_argument("--keep-database", action="store_true", help=f"Leave the {DATABASE} database afterwards.")
    args = parser.parse_args(argv)
    if args.people < args.trigger_rate * 2:
        raise BenchError("--people must be at least twice --trigger-rate (one trigger per person per second)")

    with backing_services(args.database_url) as services:
        check_loopback(services.database_url)
        url = recreate_database(services.database_url, DATABASE)
        log(f"database {database_name(url)}: migrating")
        migrate(url)
        setup_django(url)
        from channels.testing import FakeFcm

        try:
            with FakeFcm() as fcm:
                workspace_id, android_key, server_key, campaign_id = set_up(fcm.url, fcm.service_account("bench"))
                env = django_env(url, **services.server_env())
                worker_args = ["worker", "--loglevel", "INFO", "--concurrency", str(args.concurrency)]
                beat_args = ["--loglevel", "INFO", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
                web = Gunicorn(env=env, workers=args.web_workers, log_path=OUT_DIR / "trigger-gunicorn.log")
                with (
                    web,
                    Celery("worker", env, worker_args[1:], ready_text=" ready."),
                    Celery("beat", env, beat_args),
                ):
                    log(f"seeding {args.people} people with push tokens through the intake")
                    seed_people(web.address, android_key, args.people)
                    load = Load()
                    stop = threading.Event()
                    threads = [
                        threading.Thread(
                            target=background,
                            args=(web.address, server_key, args.people, args.background_rate / 2, args.duration,
                                  load, stop, n),
                        )
                        for n in range(2)
                    ]  # fmt: skip
                    threads.append(
                        threading.Thread(
                            target=triggers,
                            args=(web.address, android_key, args.people, args.trigger_rate, args.duration, load, stop),
                        )
                    )
                    log(
                        f"load for {args.duration:.0f}s: {args.background_rate:,.0f} background events/s, "
                        f"{args.trigger_rate:g} triggers/s"
                    )
                    load_before = os.getloadavg()[0]
                    for thread in threads:
                        thread.start()
                    try:
                        for thread in threads:
                            thread.join()
                    except KeyboardInterrupt:
                        stop.set()
                        raise
                    log("waiting for the last sends")
                    rows = wait_for_sends(workspace_id, campaign_id, len(load.posted_triggers), timeout=60)
                    from profiles.models import Event

                    stored = Event.objects.filter(workspace_id=workspace_id, name=BACKGROUND_EVENT).count()
                    load_after = os.getloadavg()[0]
                ok = report(rows, load, args, stored, (load_before, load_after))
        finally:
            from django.db import connections

            connections.close_all()
            if not args.keep_database:
                drop_database(services.database_url, DATABASE)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
