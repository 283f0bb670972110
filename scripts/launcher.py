"""The commands of ``./run`` (already inside the project's virtualenv; see the ``run`` script).

./run                    the whole platform: servers, migrations, demo data, web, worker, beat
./run test [ARGS]        ruff, ruff format --check, mypy and pytest [ARGS] against test servers
./run pytest [ARGS]      pytest alone, against the same test servers
./run manage ARGS        manage.py with the platform's environment (starts the servers if needed)
./run stop               stop a ./run running for this data directory
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .embedded import Layout, postgres_ready, redis_answers, start_postgres, start_redis
from .processes import StartupError, Stop, Supervisor, say

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_SCRIPT = BASE_DIR / "run"
MANAGE = BASE_DIR / "manage.py"
PYTHON = sys.executable
EXIT_INTERRUPTED = 130
CELERY = [PYTHON, "-m", "celery", "-A", "config"]
# Warm shutdown waits for running tasks; those still running at stop_timeout are redelivered
# later (late acks), so the wait is bounded.
WORKER_ARGV = [*CELERY, "worker", "--loglevel", "INFO"]
BEAT_ARGV = [*CELERY, "beat", "--loglevel", "INFO", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
# The fake providers (SMTP, FCM, APNs, web push, Twilio, webhook) on loopback, with the demo
# workspace's providers pointed at them: test messages and campaigns of the demo arrive there.
SANDBOX_ARGV = [PYTHON, str(MANAGE), "provider_sandbox", "--configure", "demo"]
SANDBOX_PORTS = (1025, 9101, 9102, 9103, 9104, 9105)


def main(argv: Sequence[str]) -> int:
    command, args = (argv[0], list(argv[1:])) if argv else ("run", [])
    try:
        if command == "run":
            return command_run()
        if command == "test":
            return command_test(args, lint=True)
        if command == "pytest":
            return command_test(args, lint=False)
        if command == "manage":
            return command_manage(args)
        if command == "stop":
            return command_stop()
    except StartupError as error:
        say(f"error: {error}")
        return 1
    if command in {"help", "-h", "--help"}:
        print(__doc__)
        return 0
    say(f"unknown command {command!r}")
    print(__doc__)
    return 2


def data_dir() -> Path:
    return Path(os.environ.get("ENGAGE_DATA_DIR") or BASE_DIR / ".data").resolve()


def base_env(layout: Layout) -> dict[str, str]:
    env = dict(os.environ)
    # Settings read the same directory (media files, the embedded defaults).
    env["ENGAGE_DATA_DIR"] = str(layout.data_dir)
    env["DJANGO_SETTINGS_MODULE"] = env.get("DJANGO_SETTINGS_MODULE") or "config.settings"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def start_backing_services(
    sup: Supervisor, layout: Layout, env: dict[str, str], *, for_tests: bool = False, reuse: bool = False
) -> None:
    """Point ``env`` at PostgreSQL and Redis: the ones DATABASE_URL / CELERY_BROKER_URL name, or
    embedded ones started (or, with ``reuse``, found already running) on ``layout``."""
    if env.get("DATABASE_URL"):
        say(f"PostgreSQL: {_masked(env['DATABASE_URL'])} (from DATABASE_URL)")
    else:
        if reuse and postgres_ready(layout):
            say(f"PostgreSQL: embedded, already running on {layout.socket_dir}")
        else:
            say(f"PostgreSQL: embedded, data in {layout.pgdata}, socket in {layout.socket_dir}")
            start_postgres(sup, layout, for_tests=for_tests)
        env["DATABASE_URL"] = layout.database_url
    if env.get("CELERY_BROKER_URL"):
        say(f"Redis/broker: {_masked(env['CELERY_BROKER_URL'])} (from CELERY_BROKER_URL)")
    else:
        if reuse and redis_answers(layout):
            say(f"Redis: embedded, already running on {layout.redis_socket}")
        else:
            say(f"Redis: embedded, data in {layout.redis_dir}, socket {layout.redis_socket}")
            start_redis(sup, layout)
        env["CELERY_BROKER_URL"] = layout.broker_url
        # Tests keep the per-process cache, so no test depends on another's cache entries.
        if not for_tests and not env.get("CACHE_URL"):
            env["CACHE_URL"] = layout.cache_url


# --- ./run -----------------------------------------------------------------------------------


def command_run() -> int:
    layout = Layout.for_data_dir(data_dir())
    port = _port()
    other = running_launcher(layout.data_dir)
    if other is not None:
        say(f"./run is already running for {layout.data_dir} (pid {other}); stop it with ./run stop")
        return 1
    if not _port_is_free(port):
        say(f"port {port} on 127.0.0.1 is taken; set PORT to use another")
        return 1
    env = base_env(layout)
    summary_path = layout.data_dir / "demo.json"
    with _pidfile(layout.data_dir), Supervisor() as sup:
        try:
            start_backing_services(sup, layout, env)
            for step in (
                ["migrate", "--noinput"],
                ["collectstatic", "--noinput", "--verbosity", "0"],
                ["seed_demo", "--summary-file", str(summary_path)],
            ):
                say("manage.py " + " ".join(step))
                code = sup.run_step([PYTHON, MANAGE, *step], env=env, cwd=BASE_DIR)
                sup.check()
                if code != 0:
                    say(f"manage.py {step[0]} failed (exit {code}); stopping")
                    return 1
            sup.start("web", _gunicorn_argv(port, env), env=env, cwd=BASE_DIR)
            sup.start("worker", WORKER_ARGV, env=env, cwd=BASE_DIR, stop_timeout=60)
            sup.start("beat", BEAT_ARGV, env=env, cwd=BASE_DIR)
            sandbox = _sandbox_wanted()
            if sandbox:
                sup.start("sandbox", SANDBOX_ARGV, env=env, cwd=BASE_DIR)
            base_url = f"http://127.0.0.1:{port}"
            sup.wait_until(lambda: _answers(f"{base_url}/admin/login/"), what="the web server", timeout=120)
            _print_banner(base_url, summary_path, sandbox=sandbox)
            return sup.supervise()
        except Stop:
            return 0
        except StartupError as error:
            say(f"error: {error}")
            return 1


def _port() -> int:
    raw = os.environ.get("PORT") or "8000"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StartupError(f"PORT must be a TCP port number (1-65535); got {raw!r}")
    return int(raw)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _gunicorn_argv(port: int, env: dict[str, str]) -> list[str | Path]:
    workers = env.get("WEB_CONCURRENCY") or "2"
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        workers,
        "--access-logfile",
        "-",
        # The default format logs the Basic-auth user, which on the intake is the write key.
        "--access-logformat",
        '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
        # Gunicorn's control socket defaults to one path per user: two launchers would collide.
        "--no-control-socket",
        "--graceful-timeout",
        "20",
    ]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own loopback URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _sandbox_wanted() -> bool:
    """Run the provider sandbox unless ENGAGE_SANDBOX=0, or its ports are taken (a second platform,
    or real local services): then the platform runs without it and says so."""
    if os.environ.get("ENGAGE_SANDBOX", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    taken = [port for port in SANDBOX_PORTS if not _port_is_free(port)]
    if taken:
        say(f"provider sandbox not started: port(s) {', '.join(map(str, taken))} taken on 127.0.0.1")
        return False
    return True


def _print_banner(base_url: str, summary_path: Path, *, sandbox: bool = False) -> None:
    summary = json.loads(summary_path.read_text())
    lines = [f"Engage is running at {base_url}/", f"  Admin:       {base_url}/admin/"]
    if summary.get("password"):
        lines.append(f"  Login:       {summary['username']} / {summary['password']}")
    else:
        lines.append(f"  Login:       {summary['username']} (an existing superuser; its password is yours)")
    lines.append(f"  Intake:      POST {base_url}/v1/track, HTTP Basic auth with a write key as the username")
    for index, app in enumerate(summary["write_keys"]):
        label = "Write keys:" if index == 0 else ""
        lines.append(f"  {label:<12} {app['write_key']}  {app['app']} ({app['workspace']})")
    lines.append(f"  API docs:    {base_url}/api/docs/")
    if sandbox:
        lines.append(
            "  Providers:   a local sandbox (SMTP :1025, FCM :9101, APNs :9102, web push :9103, Twilio :9104,"
            " webhook :9105); what it receives is printed here, prefixed 'sandbox'"
        )
    lines.append("  Stop with Ctrl-C (or ./run stop from another terminal).")
    say("\n    ".join(lines))


# --- ./run stop and the launcher's pid file ---------------------------------------------------------


@contextmanager
def _pidfile(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "launcher.pid"
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        # Another ./run may have taken the file over meanwhile (after this one was reported stale).
        with suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def running_launcher(directory: Path) -> int | None:
    """The pid of a live ``./run`` for this data directory, if any (a stale pid file is ignored)."""
    import psutil

    try:
        pid = int((directory / "launcher.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    return pid if str(RUN_SCRIPT) in cmdline and pid != os.getpid() else None


def command_stop() -> int:
    import psutil

    pid = running_launcher(data_dir())
    if pid is None:
        say(f"no ./run is running for {data_dir()}")
        return 0
    say(f"stopping ./run (pid {pid})")
    process = psutil.Process(pid)
    process.terminate()
    try:
        process.wait(timeout=180)
    except psutil.TimeoutExpired:
        say(f"./run (pid {pid}) is still stopping after 180s")
        return 1
    return 0


# --- ./run test, ./run pytest, ./run manage -----------------------------------------------------------


def command_test(pytest_args: list[str], *, lint: bool) -> int:
    """Run the checks against servers of their own (``<data>/test``), so tests never touch the
    data of ``./run``; stop them at the end. Every check runs; the exit code is pytest's if it
    failed, else 1 if any other check failed."""
    layout = Layout.for_data_dir(data_dir() / "test")
    env = base_env(layout)
    checks: list[tuple[str, list[str | Path]]] = []
    if lint:
        checks += [
            ("ruff check", [PYTHON, "-m", "ruff", "check", "."]),
            ("ruff format", [PYTHON, "-m", "ruff", "format", "--check", "."]),
            ("mypy", [PYTHON, "-m", "mypy", "."]),
        ]
    checks.append(("pytest", [PYTHON, "-m", "pytest", *pytest_args]))
    results: list[tuple[str, int]] = []
    started = time.monotonic()
    with Supervisor() as sup:
        try:
            start_backing_services(sup, layout, env, for_tests=True)
            for name, argv in checks:
                say(name)
                results.append((name, sup.run_step(argv, env=env, cwd=BASE_DIR)))
                sup.check()
        except Stop:
            say("interrupted")
            return EXIT_INTERRUPTED
    for name, code in results:
        say(f"{name:<12} {'ok' if code == 0 else f'FAILED (exit {code})'}")
    say(f"done in {time.monotonic() - started:.0f}s")
    codes = dict(results)
    if codes.get("pytest", 0) != 0:
        return codes["pytest"]
    return 1 if any(codes.values()) else 0


def command_manage(args: list[str]) -> int:
    layout = Layout.for_data_dir(data_dir())
    env = base_env(layout)
    with Supervisor() as sup:
        try:
            start_backing_services(sup, layout, env, reuse=True)
            return sup.run_step([PYTHON, MANAGE, *args], env=env, cwd=BASE_DIR)
        except Stop:
            return EXIT_INTERRUPTED
