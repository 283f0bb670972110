"""``./run`` end to end: from an empty data directory to a platform that serves the admin and the
intake, then a clean stop; a restart keeps the data and the login; a child that dies takes the
rest down with it. Each launch starts its own embedded PostgreSQL and Redis in a temp directory."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from scripts.embedded import UNIX_SOCKET_PATH_MAX, Layout

BASE_DIR = Path(__file__).resolve().parent.parent
# First start: initdb, every migration and the whole demo, on a 2-core CI machine.
STARTUP_SECONDS = 420
STOP_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Launch:
    """A running ``./run`` with its output read line by line on a thread (so waits are bounded)."""

    process: subprocess.Popen[str]
    port: int
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, *, timeout: float) -> re.Match[str]:
        """The first line from now on matching ``pattern``; fail if ./run exits or is too slow."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {timeout}s; output:\n{self.transcript()}")
            if line is None:
                pytest.fail(f"./run exited ({self.process.wait()}) before {pattern!r}; output:\n{self.transcript()}")
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def transcript(self) -> str:
        return "".join(self.output[-80:])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


@pytest.fixture
def launch_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "ENGAGE_DATA_DIR", "PORT"}
    }
    env.update(ENGAGE_DATA_DIR=str(tmp_path / "data"), ENGAGE_SKIP_INSTALL="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def start(launch_env: dict[str, str]) -> Iterator[Callable[[], Launch]]:
    """Start ``./run`` on a free port, on the test's own data directory."""
    started: list[Launch] = []

    def launch() -> Launch:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "run")],
            env={**launch_env, "PORT": str(port)},
            cwd=BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(Launch(process=process, port=port))
        return started[-1]

    yield launch
    # A failed test must not leave a platform running.
    for running in started:
        if running.process.poll() is None:
            children = running.descendants()
            running.process.send_signal(signal.SIGINT)
            try:
                running.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                running.process.kill()
            for child in children:
                if child.is_running():
                    child.kill()


def _started(launch: Launch) -> tuple[str, str, dict[str, str]]:
    """Wait for the banner; return the admin login and the write keys it prints."""
    launch.wait_for(r"Engage is running at", timeout=STARTUP_SECONDS)
    login = launch.wait_for(r"Login:\s+(\S+) / (\S+)", timeout=30)
    keys: dict[str, str] = {}
    while len(keys) < 4:
        key = launch.wait_for(r"(wk_[\w-]+)\s+(.+?) \(Demo\)", timeout=30)
        keys[key.group(2)] = key.group(1)
    return login.group(1), login.group(2), keys


def _admin_login_works(launch: Launch, username: str, password: str) -> bool:
    session = requests.Session()
    page = session.get(launch.url("/admin/login/"), timeout=30)
    assert page.status_code == 200
    response = session.post(
        launch.url("/admin/login/?next=/admin/"),
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": launch.url("/admin/login/")},
        timeout=30,
    )
    return response.status_code == 200 and response.url == launch.url("/admin/")


def _assert_all_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert alive == [], f"still running after ./run stopped: {[(p.pid, p.name()) for p in alive]}"


def test_run_serves_the_demo_stops_cleanly_and_restarts_with_its_data(start: Callable[[], Launch]) -> None:
    """First start from nothing; SIGINT stops every process. The restart finds the demo and the
    login as they were; when one of its children dies, it says which and stops the rest."""
    first = start()
    username, password, keys = _started(first)
    assert set(keys) == {"Demo iOS", "Demo Android", "Demo Web", "Demo Server"}
    children = first.descendants()
    commands = " ".join(" ".join(child.cmdline()) for child in children)
    for expected in ("postgres", "redis-server", "gunicorn", "celery -A config worker", "celery -A config beat"):
        assert expected in commands

    assert _admin_login_works(first, username, password)
    tracked = requests.post(
        first.url("/v1/track"),
        json={"userId": "launcher-test", "event": "Launcher Tested", "properties": {"ok": True}},
        auth=(keys["Demo iOS"], ""),
        timeout=30,
    )
    assert tracked.status_code == 200, tracked.text
    assert tracked.json() == {"success": True}

    first.process.send_signal(signal.SIGINT)
    assert first.process.wait(timeout=STOP_SECONDS) == 0, first.transcript()
    _assert_all_gone(children)

    second = start()
    second.wait_for(r"Demo data already loaded", timeout=STARTUP_SECONDS)
    assert _started(second) == (username, password, keys)
    assert _admin_login_works(second, username, password)
    children = second.descendants()
    beat = next(child for child in children if "beat" in child.cmdline())

    beat.kill()

    second.wait_for(rf"beat \(pid {beat.pid}\) exited unexpectedly", timeout=60)
    assert second.process.wait(timeout=STOP_SECONDS) == 1, second.transcript()
    _assert_all_gone(children)


def test_socket_directory_moves_somewhere_short_when_the_data_path_is_too_long(tmp_path: Path) -> None:
    short = Layout.for_data_dir(tmp_path / "data")
    deep = Layout.for_data_dir(tmp_path / ("d" * 120))

    assert short.socket_dir == tmp_path / "data" / "run"
    assert len(os.fsencode(deep.pg_socket)) <= UNIX_SOCKET_PATH_MAX
    assert deep.socket_dir != Layout.for_data_dir(tmp_path / ("e" * 120)).socket_dir
    assert f"host={deep.socket_dir}" in deep.database_url
