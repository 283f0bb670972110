"""Shared helpers for the benchmarks: a throwaway database, a production-style gunicorn, CPU accounting
per process group, percentiles and plain-text tables.

Everything here stays on loopback and cleans up what it started: the server is stopped (its whole
process group) when the ``with`` block ends, whatever happened inside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlparse, urlunparse

import psutil
import psycopg
from psycopg import sql

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = BASE_DIR / ".venv" / "bin" / "python"
GUNICORN = BASE_DIR / ".venv" / "bin" / "gunicorn"
OUT_DIR = BASE_DIR / "bench" / "out"


class BenchError(Exception):
    """A precondition the person running the benchmark can fix (printed without a traceback)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks and ``with`` exits stop the servers we started."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# --- database -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    """Where the project's backing services are, as the server's environment names them."""

    database_url: str  # the PostgreSQL server (any database on it; benchmarks make their own)
    broker_url: str  # CELERY_BROKER_URL: work enqueued on the request path really is enqueued
    cache_url: str  # CACHE_URL: the shared cache (the intake's rate limit counts there)
    redis_pid: int | None = None  # the Redis started here, if one was (its CPU is the run's too)

    def server_env(self) -> dict[str, str]:
        return {"CELERY_BROKER_URL": self.broker_url, "CACHE_URL": self.cache_url}


@contextlib.contextmanager
def backing_services(database_url: str | None) -> Iterator[Services]:
    """PostgreSQL and Redis as a deployment has them. PostgreSQL: ``database_url`` (--database-url),
    else $DATABASE_URL, else the embedded server as ``./run`` runs it (reused if a ``./run`` has it
    up, else started here with the same settings). Redis: $CELERY_BROKER_URL / $CACHE_URL if set,
    else an embedded Redis of this run's own (under ``.data/bench``), as ``./run`` would start it.
    Whatever is started here is stopped on the way out."""
    sys.path.insert(0, str(BASE_DIR))
    from scripts.embedded import Layout, postgres_ready, start_postgres, start_redis
    from scripts.processes import StartupError, Supervisor

    data_dir = Path(os.environ.get("ENGAGE_DATA_DIR") or BASE_DIR / ".data")
    # Exits run in reverse: the supervisor stops the servers, then their directories go.
    with contextlib.ExitStack() as stack, Supervisor() as supervisor:
        # The supervisor's handlers only set a flag its own loops poll; the benchmark's loops do not,
        # so interrupts go back to raising (and leaving the ``with`` still stops the servers).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        exit_cleanly_on_sigterm()
        try:
            url = database_url or os.environ.get("DATABASE_URL")
            if url:
                log("PostgreSQL: " + re.sub(r":[^:@/]*@", ":***@", url))
            else:
                layout = Layout.for_data_dir(data_dir)
                url = with_database(layout.database_url, "postgres")
                if postgres_ready(layout):
                    log(f"PostgreSQL: the embedded server of the running ./run ({layout.socket_dir})")
                else:
                    log(f"PostgreSQL: starting the embedded server as ./run does (data in {layout.pgdata})")
                    start_postgres(supervisor, layout)
            broker = os.environ.get("CELERY_BROKER_URL")
            cache = os.environ.get("CACHE_URL")
            redis_pid = None
            if not broker or not cache:
                # A Redis of the benchmark's own: never the queues of a running ./run.
                # One per run, in a directory of its own that goes afterwards: two benchmarks running
                # at once never share a socket, and nothing enqueued (never consumed) outlives the run.
                redis_dir = data_dir / "bench" / f"redis-{os.getpid()}"
                redis_layout = Layout.for_data_dir(redis_dir)
                stack.callback(shutil.rmtree, redis_dir, ignore_errors=True)
                log(f"Redis: starting an embedded server for the benchmark ({redis_layout.redis_socket})")
                redis_pid = start_redis(supervisor, redis_layout).pid
                broker = broker or redis_layout.broker_url
                cache = cache or redis_layout.cache_url
        except StartupError as error:
            raise BenchError(f"could not start a backing service: {error}") from None
        yield Services(database_url=url, broker_url=broker, cache_url=cache, redis_pid=redis_pid)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (a socket ``?host=`` query is kept)."""
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path="/" + name))


def database_name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def check_loopback(url: str) -> None:
    """Benchmarks never leave the machine: refuse a server that is not on loopback or a Unix socket."""
    parsed = urlparse(url)
    query_host = re.search(r"(?:^|&)host=([^&]+)", parsed.query)
    host = query_host.group(1) if query_host else (parsed.hostname or "")
    if host.startswith("/") or host in {"", "localhost", "127.0.0.1", "::1"}:
        return
    raise BenchError(f"the benchmark only runs against a local PostgreSQL (loopback or Unix socket), not {host!r}")


def recreate_database(server_url: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``server_url``; return its URL.

    Runs are only comparable on a fresh database, and dropping is destructive, so the name must say
    it is a benchmark's."""
    if "bench" not in name:
        raise BenchError(f"refusing to drop database {name!r}: a benchmark database name must contain 'bench'")
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    if "bench" not in name:
        raise BenchError(f"refusing to drop database {name!r}: a benchmark database name must contain 'bench'")
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def django_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment for the project's processes: production settings against ``database_url``."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        DJANGO_DEBUG="false",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def migrate(database_url: str) -> None:
    result = subprocess.run(
        [str(PYTHON), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env=django_env(database_url),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"manage.py migrate failed:\n{result.stdout}{result.stderr}")


def setup_django(database_url: str) -> None:
    """Configure Django in this process (for ORM set-up work) against ``database_url``."""
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=database_url, LOG_LEVEL="WARNING")
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()


# --- server ---------------------------------------------------------------------------------------


def _die_with_us() -> Callable[[], None] | None:
    """A pre-exec hook asking the kernel to SIGTERM the child if this process dies without stopping it
    (kill -9), so no server outlives the benchmark. Linux only; elsewhere the ``with`` blocks must do."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess(ABC):
    """A server the benchmark runs in its own process group (so that stopping it stops its
    children too), its output in ``log_path``; a context manager that stops it on the way out."""

    process: subprocess.Popen[bytes] | None
    log_path: Path
    stop_timeout: float = 15

    @abstractmethod
    def start(self) -> None:
        """Spawn the server (``spawn``) and return once it is ready."""

    def spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                list(argv),
                cwd=BASE_DIR,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our own process group: stop() signals the server and its children
                preexec_fn=_die_with_us(),
            )
        return self.process

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class Gunicorn(ServerProcess):
    """gunicorn serving ``config.wsgi`` as in production, on a loopback port, in its own process group."""

    env: dict[str, str]
    workers: int
    worker_class: str = "sync"
    threads: int = 1
    port: int = field(default_factory=free_port)
    log_path: Path = OUT_DIR / "gunicorn.log"
    extra_args: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def command(self) -> list[str]:
        cmd = [
            str(GUNICORN),
            "config.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--worker-class", self.worker_class,
            "--timeout", "60",
            "--graceful-timeout", "5",
            "--error-logfile", "-",
            "--log-level", "warning",
            # The control socket defaults to one path per user: two servers would fight over it.
            "--no-control-socket",
        ]  # fmt: skip
        if self.worker_class == "gthread":
            cmd += ["--threads", str(self.threads), "--keep-alive", "5"]
        if Path("/dev/shm").is_dir():  # noqa: S108 - gunicorn's documented heartbeat directory
            cmd += ["--worker-tmp-dir", "/dev/shm"]  # noqa: S108 - off the disk, as deployments do
        return [*cmd, *self.extra_args]

    def start(self, *, ready_timeout: float = 60.0) -> None:
        process = self.spawn(self.command(), self.env)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"gunicorn exited with {process.returncode}:\n{self.log_tail()}")
            if len(self.worker_pids()) >= self.workers and self._answers():
                return
            time.sleep(0.2)
        raise BenchError(f"gunicorn did not answer within {ready_timeout:.0f}s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(*self.address, timeout=5)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def master_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        try:
            return [child.pid for child in psutil.Process(self.process.pid).children()]
        except psutil.NoSuchProcess:
            return []


# --- loading data ---------------------------------------------------------------------------------


@contextlib.contextmanager
def phase(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Log a loading step and keep how long it took in ``seconds[name]``."""
    log(f"{name}...")
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started
    log(f"{name} took {seconds[name]:.1f}s")


def copy_streams(stack: contextlib.ExitStack, url: str, columns: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """A ``COPY <table> (<columns>) FROM STDIN`` per table, each on its own connection (they are
    written in step), with ``session_replication_role = replica``: no per-row foreign-key checks or
    triggers (the loaders build what the triggers would after the copy)."""
    copies: dict[str, Any] = {}
    for table, names in columns.items():
        conn = stack.enter_context(psycopg.connect(url))
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        cursor = stack.enter_context(conn.cursor())
        copies[table] = stack.enter_context(cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN"))
    return copies


def sequences_past_ids(conn: psycopg.Connection[Any], tables: Iterable[str]) -> None:
    """The generators assign ids themselves: move each table's sequence past them."""
    for table in tables:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM {table}),"
            " false)"
        )


# The segments' daily event rollup, as its insert trigger would have kept it during the copy.
EVENT_DAILY_ROLLUP_SQL = """
    INSERT INTO segments_eventdailycount (workspace_id, profile_id, name, day, count, first_at, last_at)
    SELECT workspace_id, profile_id, name, ("timestamp" AT TIME ZONE 'UTC')::date,
           count(*), min("timestamp"), max("timestamp")
      FROM profiles_event
     GROUP BY 1, 2, 3, 4
     ORDER BY 2, 3, 4
"""


def vacuum_analyze(conn: psycopg.Connection[Any], tables: Iterable[str]) -> None:
    """Statistics, and the visibility map that index-only scans need."""
    for table in tables:
        conn.execute(f"VACUUM ANALYZE {table}")


# --- CPU accounting ---------------------------------------------------------------------------------


def postgres_pids(conn: psycopg.Connection[tuple[object, ...]], datname: str) -> dict[str, list[int]]:
    """Backends connected to ``datname`` (but not ``conn``'s own) and the server's background processes
    (WAL writer, checkpointer, autovacuum...). Other databases' backends are someone else's load."""
    rows = conn.execute(
        "SELECT pid, backend_type, datname FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
    ).fetchall()
    backends = [int(str(pid)) for pid, kind, db in rows if kind == "client backend" and db == datname]
    background = [int(str(pid)) for pid, kind, db in rows if kind != "client backend" and db in (None, datname)]
    return {"postgres backends": backends, "postgres background": background}


class CpuMeter:
    """CPU seconds spent by groups of processes over an interval, sampled from a background thread.

    ``groups`` returns the current pids of each group; pids come and go (gunicorn workers restart,
    backends connect), so every pid's CPU time is sampled periodically and counted from the start of
    the interval or from its birth. A process that exits between samples loses its last fraction of a
    second: good enough to say where the time goes."""

    def __init__(self, groups: Callable[[], Mapping[str, Iterable[int]]], *, interval: float = 0.5) -> None:
        self._groups = groups
        self._interval = interval
        self._procs: dict[int, psutil.Process] = {}
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._started_at = 0.0
        self._machine_start: psutil._common.scputimes | None = None
        self.wall = 0.0
        self.machine_busy = 0.0
        self.machine_cpus = psutil.cpu_count() or 1

    def _cpu(self, pid: int) -> float | None:
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            times = proc.cpu_times()
            return float(times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def _sample(self, *, initial: bool = False) -> None:
        for group, pids in self._groups().items():
            for pid in pids:
                used = self._cpu(pid)
                if used is None:
                    continue
                key = (group, pid)
                if key not in self._first:
                    born_during = not initial and self._procs[pid].create_time() >= self._started_at
                    self._first[key] = 0.0 if born_during else used
                self._last[key] = used

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # a failed sample only loses precision
                self._sample()

    def start(self) -> None:
        self._started_at = time.time()
        self._machine_start = psutil.cpu_times()
        self._sample(initial=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.time() - self._started_at
        end = psutil.cpu_times()
        assert self._machine_start is not None
        idle = ("idle", "iowait")
        self.machine_busy = sum(
            getattr(end, name) - getattr(self._machine_start, name) for name in end._fields if name not in idle
        )
        totals: dict[str, float] = {}
        for (group, pid), last in self._last.items():
            totals[group] = totals.get(group, 0.0) + max(0.0, last - self._first[(group, pid)])
        return totals


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# --- numbers and tables ----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


def print_table(title: str, rows: Sequence[Sequence[object]], headers: Sequence[str] | None = None) -> None:
    """A plain aligned table on stdout: first column left-aligned, the others right-aligned."""
    table = [list(map(str, headers))] if headers else []
    table += [[str(cell) for cell in row] for row in rows]
    if not table:
        return
    widths = [max(len(row[i]) for row in table if i < len(row)) for i in range(max(map(len, table)))]
    print(f"\n{title}")
    print("-" * len(title))
    for index, row in enumerate(table):
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        print("  ".join(cells).rstrip())
        if headers and index == 0:
            print("  ".join("-" * width for width in widths))
    sys.stdout.flush()


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log(f"{label} took {time.perf_counter() - started:.1f}s")
