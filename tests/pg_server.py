"""A throwaway PostgreSQL server for tests that need a real shared tracking store.

:func:`running_postgres` starts the machine's own PostgreSQL binaries (``initdb``, ``pg_ctl``) on a
free port, bound to 127.0.0.1 with its own unix socket directory, trust authentication for one
superuser, and ``fsync`` off (the data is thrown away); it yields a :class:`PostgresServer` and stops
that server (and only it) when the block ends, also after a failure. ``tests/conftest.py`` exposes it
as the session fixture ``postgres_server``; a test takes its own database with
:meth:`PostgresServer.create_database`, so tests sharing the server never see each other's runs.

As root, ``initdb`` refuses to run: the binaries then run as the ``postgres`` user (``runuser``, or
``su``) in a folder of its own under the system temporary folder, since pytest's base temporary
folder is private to root (mode 0700) and the server could not enter it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "hybrid_trader"
DEFAULT_DATABASE = "mlflow"
HOST = "127.0.0.1"
# Generous totals for a loaded 2-core machine; readiness is polled, never waited out.
START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 120
POLL_INTERVAL_S = 0.1
PORT_ATTEMPTS = 5  # a free port can be taken between the probe and the server's bind


@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``uri`` is the SQLAlchemy URI MLflow takes for ``dbname``."""

    host: str
    port: int
    user: str
    dbname: str
    data_dir: Path
    socket_dir: Path

    @property
    def uri(self) -> str:
        return self.uri_for(self.dbname)

    @property
    def dsn(self) -> str:
        """The libpq connection string (for psycopg) of ``dbname``."""
        return self.dsn_for(self.dbname)

    def uri_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its MLflow URI."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits and '_' only")
        import psycopg

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.uri_for(name)


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: from PATH, ``pg_config --bindir``, or Debian's
    ``/usr/lib/postgresql/<version>/bin`` (the newest); ``None`` when there is none."""
    candidates = []
    if (on_path := shutil.which("pg_ctl")) is not None:
        candidates.append(Path(on_path).resolve().parent)
    if (pg_config := shutil.which("pg_config")) is not None:
        proc = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            candidates.append(Path(proc.stdout.strip()))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in debian), key=lambda p: _version_key(p.parent.name), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class _Runner:
    """Runs the server binaries as the current user, or as ``postgres`` when the current user is root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.account = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, and there is no 'postgres' user to run PostgreSQL as "
                                   "(initdb refuses root); install the server package, which creates it") from None

    def own(self, path: Path) -> None:
        if self.as_root:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def run(self, tool: str, *args: str, timeout: float, cwd: Path) -> subprocess.CompletedProcess:
        command = [str(self.bindir / tool), *args]
        if self.as_root:
            if shutil.which("runuser"):
                command = ["runuser", "-u", "postgres", "--", *command]
            else:
                command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        # A fixed locale: initdb and the server must not depend on the caller's.
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)


@contextlib.contextmanager
def running_postgres(parent: Path, *, bindir: Path | None = None) -> Iterator[PostgresServer]:
    """Initialise and start a server under ``parent`` (as root: under the system temporary folder),
    create the database :data:`DEFAULT_DATABASE`, yield the server, then stop it.

    Raises:
        FileNotFoundError: No PostgreSQL server binaries were found (:func:`find_bindir`).
        RuntimeError: The server did not initialise, start or accept connections; the message holds
            the tool's output and the server log.
    """
    bindir = bindir or find_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, by pg_config "
                                "or under /usr/lib/postgresql/*/bin; `make postgres` installs them")
    runner = _Runner(bindir)
    root = Path(tempfile.mkdtemp(prefix="pg-")) if runner.as_root else Path(tempfile.mkdtemp(dir=parent))
    data_dir, socket_dir, log = root / "data", root / "socket", root / "server.log"
    socket_dir.mkdir()
    for path in (root, socket_dir):
        runner.own(path)
    started = False
    try:
        init = runner.run("initdb", "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                          "--locale=C", "--no-sync", timeout=START_TIMEOUT_S, cwd=root)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        for _ in range(PORT_ATTEMPTS):
            port = _free_port()
            options = (f"-p {port} -c listen_addresses={HOST} -k {socket_dir} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            # -w: pg_ctl polls the server until it accepts connections (or -t runs out).
            start = runner.run("pg_ctl", "start", "-D", str(data_dir), "-l", str(log), "-w",
                               "-t", str(START_TIMEOUT_S), "-o", options, timeout=START_TIMEOUT_S + 30, cwd=root)
            started = start.returncode == 0
            if started:
                break
            server_log = log.read_text() if log.exists() else ""
            if "could not bind" not in server_log and "already in use" not in server_log:
                raise RuntimeError(f"pg_ctl start failed ({start.returncode}):\n{start.stdout}\n{start.stderr}\n"
                                   f"server log:\n{server_log}")
        else:
            raise RuntimeError(f"no free port after {PORT_ATTEMPTS} attempts:\n{log.read_text()}")
        server = PostgresServer(HOST, port, SUPERUSER, DEFAULT_DATABASE, data_dir, socket_dir)
        _wait_until_accepting(server, log)
        server.create_database(DEFAULT_DATABASE)
        yield server
    finally:
        try:
            # A start that timed out may still have left a server running.
            if started or (data_dir / "postmaster.pid").exists():
                _stop(runner, data_dir, root, strict=started)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _wait_until_accepting(server: PostgresServer, log: Path) -> None:
    """Poll a TCP connection as the tests will make it, until it succeeds or the timeout runs out."""
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(server.dsn_for("postgres"), connect_timeout=10):
                return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {server.port} did not accept connections within "
                                   f"{START_TIMEOUT_S} s: {error}\nserver log:\n{log.read_text()}") from error
            time.sleep(POLL_INTERVAL_S)


def _stop(runner: _Runner, data_dir: Path, cwd: Path, *, strict: bool) -> None:
    """Stop the server of ``data_dir``: fast (clients disconnected, clean shutdown), else immediate;
    ``strict``: raise when neither worked."""
    for mode in ("fast", "immediate"):
        stop = runner.run("pg_ctl", "stop", "-D", str(data_dir), "-m", mode, "-w", "-t", str(STOP_TIMEOUT_S),
                          timeout=STOP_TIMEOUT_S + 30, cwd=cwd)
        if stop.returncode == 0:
            return
    if strict:
        raise RuntimeError(f"pg_ctl stop failed ({stop.returncode}):\n{stop.stdout}\n{stop.stderr}")
