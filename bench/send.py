"""Send benchmark: how many campaign emails per second leave through the real pipeline, end to end.

It creates a fresh database with ``--people`` profiles (100,000 by default, each with an email
address), a segment of everyone and a scheduled campaign with one personalised email, starts real
``celery worker`` processes (prefork) and a local SMTP sink, then launches the campaign and plays
beat itself (the tick that materialises the recipients, the claim of due deliveries every
``--beat-interval`` seconds, exactly the services beat calls). It prints messages/s from the launch
to the last hand-off to the SMTP server, and where the time went (CPU by process group, per message).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.send
    .venv/bin/python -m bench.send --people 20000 --concurrency 3       # a smaller, quicker run
    .venv/bin/python -m bench.send --py-spy                             # profile the worker processes

The SMTP sink is a minimal SMTP server in its own process (it accepts every message and counts the
recipients, never parsing the message), so its CPU is measured apart and it costs the machine as
little as a real MTA's acceptance would. Like production MTAs it offers PIPELINING (RFC 2920);
``--no-pipelining`` leaves it out. See docs/campaigns-builder.md, "Benchmark".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import psutil
import psycopg

from bench.common import (
    BASE_DIR,
    OUT_DIR,
    PYTHON,
    BenchError,
    CpuMeter,
    Services,
    backing_services,
    check_loopback,
    database_name,
    django_env,
    drop_database,
    exit_cleanly_on_sigterm,
    fmt_int,
    free_port,
    log,
    migrate,
    own_cpu_seconds,
    postgres_pids,
    print_table,
    recreate_database,
    setup_django,
)

TARGET_PER_SECOND = 1000
SUBJECT = "Hi {{ first_name | default: 'there' }}, 20% off this week"
TEXT = "Hello {{ first_name | default: 'friend' }},\n\nEverything is 20% off until Sunday.\n\n{{ unsubscribe_url }}\n"


# --- the SMTP sink -------------------------------------------------------------------------------------


def run_sink(port: int, conn: Connection, pipelining: bool = True) -> None:
    """A minimal SMTP server: greets, accepts EHLO/MAIL/RCPT/DATA/RSET/NOOP/QUIT, counts each
    message's recipients. Answers ``conn`` with (messages, recipients Counter) when asked. With
    ``pipelining`` it advertises PIPELINING (RFC 2920), as production MTAs and ESP relays do.

    Commands are answered in order, and the answers to what arrived together (a pipelined group)
    leave together once no complete command is left unread, as RFC 2920 asks of a server (and as
    Postfix's smtpd does): a client that pipelines MAIL, RCPT and DATA gets their three replies in
    one segment, not three."""
    ehlo = (
        b"250-bench-sink\r\n"
        + (b"250-PIPELINING\r\n" if pipelining else b"")
        + b"250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n"
    )
    counts = {"messages": 0}
    recipients: Counter[str] = Counter()

    class Session(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.buffer = bytearray()
            self.scanned = 0  # how far the buffer was searched for the end of a message's data
            self.in_data = False
            self.envelope: list[str] = []
            transport.write(b"220 bench-sink ESMTP\r\n")

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            out: list[bytes] = []
            closing = False
            while not closing:
                if self.in_data:
                    end = self.buffer.find(b"\r\n.\r\n", max(0, self.scanned - 4))
                    if end < 0:
                        self.scanned = len(self.buffer)
                        break
                    del self.buffer[: end + 5]
                    self.in_data, self.scanned = False, 0
                    counts["messages"] += 1
                    recipients.update(self.envelope)
                    out.append(b"250 OK queued\r\n")
                    continue
                newline = self.buffer.find(b"\n")
                if newline < 0:
                    break
                line = bytes(self.buffer[: newline + 1])
                del self.buffer[: newline + 1]
                verb = line[:4].upper()
                if verb == b"EHLO":
                    out.append(ehlo)
                elif verb == b"HELO":
                    out.append(b"250 bench-sink\r\n")
                elif verb == b"MAIL":
                    self.envelope = []
                    out.append(b"250 OK\r\n")
                elif verb == b"RCPT":
                    text = line.decode(errors="replace")
                    self.envelope.append(text[text.find("<") + 1 : text.rfind(">")].lower())
                    out.append(b"250 OK\r\n")
                elif verb == b"DATA":
                    self.in_data = True
                    out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                elif verb in (b"RSET", b"NOOP"):
                    out.append(b"250 OK\r\n")
                elif verb == b"QUIT":
                    out.append(b"221 Bye\r\n")
                    closing = True
                else:
                    out.append(b"502 Command not implemented\r\n")
            if out:
                self.transport.write(b"".join(out))
            if closing:
                self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Session, "127.0.0.1", port, backlog=1024)
        done = asyncio.Event()

        def on_request() -> None:
            if conn.poll():
                request = conn.recv()
                if request == "stop":
                    done.set()
                    return
                conn.send((counts["messages"], dict(recipients)))

        loop.add_reader(conn.fileno(), on_request)
        async with server:
            await done.wait()

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(main())


@dataclass
class Sink:
    port: int
    process: multiprocessing.process.BaseProcess
    conn: Connection

    @classmethod
    def start(cls, *, pipelining: bool = True) -> Sink:
        port = free_port()
        ours, theirs = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=run_sink, args=(port, theirs, pipelining), daemon=True
        )
        process.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return cls(port, process, ours)
            time.sleep(0.1)
        raise BenchError("the SMTP sink did not start")

    def stats(self) -> tuple[int, dict[str, int]]:
        self.conn.send("stats")
        result: tuple[int, dict[str, int]] = self.conn.recv()
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send("stop")
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()


# --- workers ---------------------------------------------------------------------------------------------


class Workers:
    """``celery worker`` processes (prefork), each in its own process group."""

    def __init__(self, env: dict[str, str], *, processes: int, concurrency: int, log_path: Path) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as out:
            for n in range(processes):
                self.processes.append(
                    subprocess.Popen(
                        [str(PYTHON), "-m", "celery", "-A", "config", "worker", "--pool", "prefork",
                         "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-mingle",
                         "--without-gossip", "-n", f"bench-send-{n}@%h"],
                        cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )  # fmt: skip
        self.log_path = log_path
        self.env = env

    def pids(self) -> list[int]:
        found = []
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(process.pid)
                found += [root.pid, *(child.pid for child in root.children(recursive=True))]
        return found

    def children(self) -> list[int]:
        found = []
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                found += [child.pid for child in psutil.Process(process.pid).children()]
        return found

    def wait_ready(self, concurrency: int, timeout: float = 90) -> None:
        """Until every worker has its children and answers a ping: a worker consumes only once its
        pool is up, and each child has imported the project before it takes a task."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise BenchError(f"a worker exited with {process.returncode}; see {self.log_path}")
            if len(self.children()) >= concurrency * len(self.processes) and self._pongs() >= len(self.processes):
                return
            time.sleep(0.2)
        raise BenchError(f"the workers did not start; see {self.log_path}")

    def _pongs(self) -> int:
        answer = subprocess.run(
            [str(PYTHON), "-m", "celery", "-A", "config", "inspect", "ping", "--timeout", "1"],
            cwd=BASE_DIR, env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        return answer.stdout.count("pong")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


# --- the run ---------------------------------------------------------------------------------------------


@dataclass
class Report:
    people: int
    materialise_seconds: float = 0.0
    seconds_to_last_handoff: float = 0.0
    sent: int = 0
    failed: int = 0
    other: int = 0
    sink_messages: int = 0
    sink_people: int = 0
    sink_duplicates: int = 0
    cpu: dict[str, float] | None = None
    wall: float = 0.0
    machine_busy: float = 0.0
    machine_cpus: int = 1

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds_to_last_handoff if self.seconds_to_last_handoff else 0.0


def create_people(workspace_id: int, count: int) -> None:
    from profiles.models import Profile

    batch = 10_000
    for start in range(0, count, batch):
        Profile.objects.bulk_create(
            Profile(
                workspace_id=workspace_id,
                external_id=f"user-{n}",
                email=f"user-{n}@example.com",
                first_name="" if n % 3 == 0 else f"Name{n}",
                email_subscription="subscribed",
            )
            for n in range(start, min(count, start + batch))
        )


def run_once(args: argparse.Namespace, services: Services) -> Report:
    db_url = recreate_database(services.database_url, args.db_name)
    log(f"database {args.db_name}: migrating")
    migrate(db_url)
    os.environ.update(CELERY_BROKER_URL=services.broker_url, CAMPAIGNS_SEND_BATCH=str(args.batch))
    setup_django(db_url)
    from django.db import connection

    from campaigns.models import Campaign, ChannelMessage, Delivery, DeliveryStatus, Variant
    from campaigns.services.launch import campaign_launch, campaigns_tick
    from campaigns.services.sending import deliveries_enqueue_due
    from profiles.models import Workspace
    from segments.models import Segment

    workspace = Workspace.objects.create(name="Bench", slug="bench-send")
    log(f"creating {fmt_int(args.people)} people")
    create_people(workspace.pk, args.people)
    everyone = Segment.objects.create(workspace=workspace, name="Everyone", definition={"all": []})
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    sink = Sink.start(pipelining=args.pipelining)
    log(f"SMTP sink on 127.0.0.1:{sink.port}{'' if args.pipelining else ' (no PIPELINING)'}")
    env = django_env(
        db_url,
        **services.server_env(),
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(sink.port),
        CAMPAIGNS_SEND_BATCH=str(args.batch),
        **dict(args.env),
    )
    workers = Workers(env, processes=args.workers, concurrency=args.concurrency, log_path=OUT_DIR / "send-workers.log")
    report = Report(people=args.people)
    try:
        workers.wait_ready(args.concurrency)
        log(f"{args.workers} worker(s) x {args.concurrency} processes ready")
        campaign = Campaign.objects.create(
            workspace=workspace, name="Bench sale", send_at=None, tags=["bench"], frequency_cap_exempt=True
        )
        campaign.include_segments.set([everyone])
        variant = Variant.objects.create(campaign=campaign, key="A", percent=100)
        ChannelMessage.objects.create(variant=variant, channel="email", template={"subject": SUBJECT, "text": TEXT})

        with psycopg.connect(db_url, autocommit=True) as watch:

            def groups() -> dict[str, list[int]]:
                found = {"celery workers": workers.pids(), "smtp sink": [sink.process.pid or 0]}
                found.update(postgres_pids(watch, database_name(db_url)))
                found["bench (beat)"] = [os.getpid()]
                if services.redis_pid:
                    found["redis"] = [services.redis_pid]
                return found

            meter = CpuMeter(groups)
            meter.start()
            spies = _start_spies(args, workers)
            started = time.time()
            from django.utils import timezone

            campaign.send_at = timezone.now()
            campaign.save(update_fields=["send_at"])
            campaign_launch(campaign=campaign, actor="bench")
            campaigns_tick()
            report.materialise_seconds = time.time() - started
            log(f"launched: {fmt_int(Delivery.objects.filter(campaign=campaign).count())} deliveries in "
                f"{report.materialise_seconds:.1f}s")  # fmt: skip
            deadline = started + args.timeout
            last_log = 0.0
            while time.time() < deadline:
                deliveries_enqueue_due()
                pending = Delivery.objects.filter(
                    campaign=campaign, status__in=[DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING]
                ).count()
                if time.time() - last_log > 5:
                    sent_so_far = sink.stats()[0]
                    log(f"{fmt_int(sent_so_far)} at the sink, {fmt_int(pending)} pending")
                    last_log = time.time()
                if pending == 0:
                    break
                time.sleep(args.beat_interval)
            else:
                log("timed out before every delivery was done")
            cpu = meter.stop()
            for process, _path in spies:
                process.wait(timeout=60)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT max(sent_at), count(*) FROM channels_dispatch WHERE workspace_id = %s AND sent_at IS NOT NULL",
                [workspace.pk],
            )
            last, _ = cursor.fetchone() or (None, 0)
        statuses = Counter(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
        report.sent = statuses.get(DeliveryStatus.SENT, 0)
        report.failed = statuses.get(DeliveryStatus.FAILED, 0)
        report.other = sum(statuses.values()) - report.sent - report.failed
        report.seconds_to_last_handoff = (last.timestamp() - started) if last else 0.0
        messages, recipients = sink.stats()
        report.sink_messages = messages
        report.sink_people = len(recipients)
        report.sink_duplicates = sum(n - 1 for n in recipients.values() if n > 1)
        report.cpu = cpu
        report.wall = meter.wall
        report.machine_busy = meter.machine_busy
        report.machine_cpus = meter.machine_cpus
        if spies:
            from bench.ingest import summarize_py_spy

            profile = summarize_py_spy([path for _, path in spies], args.py_spy_top)
            print_table(
                f"Worker CPU by function ({profile.samples} samples)",
                [(name[:100], f"{own:.1f}%", f"{total:.1f}%") for name, own, total in profile.hottest],
                headers=("function", "self", "total"),
            )
            print_table(
                "The project's own functions (total)",
                [(name[:100], f"{total:.1f}%") for name, total in profile.project],
                headers=("function", "total"),
            )
    finally:
        workers.stop()
        sink.stop()
        if not args.keep_db:
            connection.close()
            drop_database(services.database_url, args.db_name)
    return report


def _start_spies(args: argparse.Namespace, workers: Workers) -> list[tuple[subprocess.Popen[bytes], Path]]:
    if not args.py_spy:
        return []
    from bench.ingest import start_py_spy

    return start_py_spy(workers.children(), args.py_spy_seconds, OUT_DIR / "send-py-spy", idle=False)


def print_report(report: Report, own_cpu: float) -> None:
    print_table(
        f"Campaign send: {fmt_int(report.people)} people, email through SMTP",
        [
            ("materialised (launch + tick)", f"{report.materialise_seconds:.1f} s"),
            ("launch to last hand-off", f"{report.seconds_to_last_handoff:.1f} s"),
            ("deliveries sent", fmt_int(report.sent)),
            ("deliveries failed", fmt_int(report.failed)),
            ("deliveries in other states", fmt_int(report.other)),
            ("messages at the SMTP sink", fmt_int(report.sink_messages)),
            ("people at the sink / twice or more", f"{fmt_int(report.sink_people)} / {report.sink_duplicates}"),
            ("messages/s (launch to last hand-off)", f"{report.per_second:,.0f}"),
            (f"target ≥ {TARGET_PER_SECOND:,}/s", "met" if report.per_second >= TARGET_PER_SECOND else "NOT met"),
        ],
    )
    if report.cpu:
        sent = max(report.sent, 1)
        rows = [
            (group, f"{seconds:.1f}", f"{1000 * seconds / sent:.2f}", f"{100 * seconds / max(report.wall, 1e-9):.0f}%")
            for group, seconds in sorted(report.cpu.items(), key=lambda item: -item[1])
        ]
        rows.append(("(this process, incl. set-up)", f"{own_cpu:.1f}", "", ""))
        print_table(
            f"Where the CPU went over {report.wall:.1f} s of wall time "
            f"({report.machine_cpus} CPUs, machine {100 * report.machine_busy / max(report.wall * report.machine_cpus, 1e-9):.0f}% busy)",  # noqa: E501
            rows,
            headers=("process group", "CPU s", "ms/message", "of one core"),
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100_000, help="audience size")
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes (each prefork)")
    # Six prefork children per core: a send spends most of its time waiting on PostgreSQL (the
    # claim's commit, whose WAL flush takes ~0.15 ms on this machine's disk) and on the SMTP server,
    # so with fewer the cores sit idle (2 cores, quiet: 862/s with 8 children, 919/s with 12).
    parser.add_argument("--concurrency", type=int, default=6 * (os.cpu_count() or 2), help="children per worker")
    parser.add_argument("--batch", type=int, default=300, help="deliveries per send task (CAMPAIGNS_SEND_BATCH)")
    parser.add_argument("--beat-interval", type=float, default=2.0, help="seconds between claims, as beat runs it")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--database-url", help="PostgreSQL server (default $DATABASE_URL, else the embedded one)")
    parser.add_argument("--db-name", default="engage_bench_send", help="database created for the run")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    parser.add_argument("--env", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                        help="extra NAME=VALUE for the workers (repeatable)")  # fmt: skip
    parser.add_argument("--no-pipelining", dest="pipelining", action="store_false",
                        help="the sink does not offer SMTP PIPELINING: one round trip per command")  # fmt: skip
    parser.add_argument("--py-spy", action="store_true", help="profile the worker children with py-spy")
    parser.add_argument("--py-spy-seconds", type=float, default=30)
    parser.add_argument("--py-spy-top", type=int, default=25)
    args = parser.parse_args(argv)
    if "bench" not in args.db_name:
        parser.error("--db-name must contain 'bench' (the database is dropped and recreated)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    try:
        with backing_services(args.database_url) as services:
            check_loopback(services.database_url)
            report = run_once(args, services)
            print_report(report, own_cpu_seconds())
            return 0 if report.sink_duplicates == 0 and report.sink_people == report.sent else 1
    except BenchError as exc:
        print(f"bench.send: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.send: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
