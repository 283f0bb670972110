"""The launcher's child processes: start them, relay their output, notice when one dies, stop them all.

Long-running children (servers, web, worker, beat) get a session of their own, so a Ctrl-C in the
terminal reaches only the launcher, which then stops them in order: the app processes first, while
the database and broker they talk to are still up, then Redis, then PostgreSQL. One-shot steps
(migrate, pytest, ``manage.py shell``) stay in the terminal's process group so they can be
interactive; a Ctrl-C reaches them directly, as it would from a shell.

Signal handlers only set flags; the loops here poll them. Raising from a handler could strike
between starting a process and recording it, and leak the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

POLL_SECONDS = 0.2
_output_lock = threading.Lock()


def say(message: str) -> None:
    """A line from the launcher itself, set apart from its children's output."""
    with _output_lock:
        sys.stdout.write(f"==> {message}\n")
        sys.stdout.flush()


def _relay(name: str, stream: IO[bytes]) -> None:
    prefix = f"{name:<8}| ".encode()
    for line in iter(stream.readline, b""):
        with _output_lock:
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()
    stream.close()


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once here: the function that runs between fork and exec must not import or load anything.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_launcher(stop_signal: int) -> Callable[[], None] | None:
    """A pre-exec hook that has the kernel send ``stop_signal`` to the child if the launcher dies
    without stopping it (kill -9, a crash), so no server outlives it holding the data directory."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, stop_signal)

    return preexec


class Stop(Exception):
    """Raised by the launcher's own loops once SIGINT or SIGTERM asked it to stop."""


class StartupError(Exception):
    """A server or step could not start; the message says which and why."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    stop_signal: int
    stop_timeout: float
    # Children stop in ascending rank, those of one rank together: apps 0, broker 1, database 2.
    rank: int

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class RunAs:
    """The account a server runs as when the launcher is root (PostgreSQL refuses to run as root)."""

    uid: int
    gid: int


class Supervisor:
    """Owns every process the launcher starts, and stops them all when leaving its ``with`` block."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stop_requested = False
        self.stopping = False
        self._foreground: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Supervisor:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return  # already on the way out; stop_all's timeouts bound the wait
        self.stop_requested = True
        foreground = self._foreground
        # A terminal's Ctrl-C reaches the foreground step itself (same process group), which
        # decides what it means: pytest reports and exits, a shell carries on. SIGTERM and a
        # SIGINT sent to the launcher alone would not reach it: let it finish, then stop (the
        # launcher checks stop_requested after every step); only SIGTERM is passed on at once.
        if signum == signal.SIGTERM and foreground is not None and foreground.poll() is None:
            foreground.terminate()

    def check(self) -> None:
        if self.stop_requested:
            raise Stop

    def start(
        self,
        name: str,
        argv: Sequence[str | Path],
        *,
        env: Mapping[str, str],
        cwd: Path,
        rank: int = 0,
        log_path: Path | None = None,
        run_as: RunAs | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 30.0,
    ) -> Child:
        """Start a long-running child. Its output goes to ``log_path`` if given, else to the
        launcher's stdout, each line prefixed with ``name``."""
        self.check()
        log_file = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 - the child keeps its own copy
        try:
            process = subprocess.Popen(  # noqa: S603 - argv is built by the launcher, never from input
                [str(arg) for arg in argv],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file if log_file is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_launcher(stop_signal),
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
        finally:
            if log_file is not None:
                log_file.close()
        child = Child(name=name, process=process, stop_signal=stop_signal, stop_timeout=stop_timeout, rank=rank)
        self.children.append(child)
        if process.stdout is not None:
            threading.Thread(target=_relay, args=(name, process.stdout), daemon=True).start()
        return child

    def run_step(self, argv: Sequence[str | Path], *, env: Mapping[str, str], cwd: Path) -> int:
        """Run a one-shot command in the foreground (the terminal's process group, stdio inherited)
        and return its exit code."""
        self.check()
        process = subprocess.Popen([str(arg) for arg in argv], env=dict(env), cwd=cwd)  # noqa: S603
        self._foreground = process
        try:
            return process.wait()
        finally:
            self._foreground = None

    def first_dead(self) -> Child | None:
        return next((child for child in self.children if child.process.poll() is not None), None)

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout: float) -> None:
        """Poll ``ready`` until it answers True; fail if it takes longer than ``timeout`` seconds
        or if any child exits first; stop if asked to."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            dead = self.first_dead()
            if dead is not None:
                raise StartupError(f"{dead.name} exited with code {dead.process.returncode} before {what}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(POLL_SECONDS)

    def supervise(self) -> int:
        """Block until asked to stop (0) or until a child exits by itself (1, naming it)."""
        while True:
            if self.stop_requested:
                return 0
            dead = self.first_dead()
            if dead is not None:
                say(f"{dead.name} (pid {dead.pid}) exited unexpectedly with code {dead.process.returncode}")
                return 1
            time.sleep(POLL_SECONDS)

    def stop_all(self) -> None:
        """Stop every child, rank by rank; a child that outlives its timeout is killed with its
        whole process group (a gunicorn or Celery master's workers too)."""
        self.stopping = True
        running = [child for child in self.children if child.process.poll() is None]
        if running:
            say("stopping " + ", ".join(child.name for child in reversed(running)))
        for rank in sorted({child.rank for child in running}):
            group = [child for child in running if child.rank == rank]
            for child in group:
                _signal_group_leader(child, child.stop_signal)
            for child in group:
                try:
                    child.process.wait(timeout=child.stop_timeout)
                except subprocess.TimeoutExpired:
                    say(f"{child.name} did not stop within {child.stop_timeout:.0f}s; killing it")
                    _kill_group(child)
                    child.process.wait()
        # Workers a master left behind when it exited share its process group; none may survive.
        for child in self.children:
            _kill_group(child)
        self.children.clear()


def _signal_group_leader(child: Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signum)


def _kill_group(child: Child) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
