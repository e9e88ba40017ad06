"""A throwaway PostgreSQL cluster for the queue tests and benchmark (no server set up by hand).

Finds Debian's server binaries, ``initdb``s a temporary folder (as the ``postgres`` user when
running as root, because initdb and postgres refuse to run as root), starts ``postgres`` on a
free local port with its socket in that folder, waits until it accepts connections, and stops
it (and removes the folder) at the end. If the binaries are missing the caller fails loudly:
CI installs them (``.ci/run``), so a skip would only hide a broken setup.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

BINARY_GLOB = "/usr/lib/postgresql/*/bin/initdb"
START_TIMEOUT_S = 120.0  # hang guard only: the wait ends as soon as the server answers


class PostgresUnavailable(RuntimeError):
    """The cluster cannot be started; the message says what to install."""


def find_bindir() -> Path:
    def major(path: str) -> int:
        version = Path(path).parts[-3]
        return int(version) if version.isdigit() else 0

    candidates = sorted(glob.glob(BINARY_GLOB), key=major)
    on_path = shutil.which("initdb")
    if candidates:
        return Path(candidates[-1]).parent
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable(
        f"PostgreSQL server binaries not found ({BINARY_GLOB} or initdb on PATH): "
        "install them with `apt-get install -y postgresql` (.ci/run does this)"
    )


def _die_with_parent() -> None:
    """Runs in the server's child process: if the test process dies (even SIGKILLed), the
    kernel sends the server SIGQUIT (immediate shutdown), so no cluster is left behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGQUIT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One running throwaway cluster; ``url(db)`` gives a connection URL."""

    def __init__(self, *, durable: bool = False) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="labctl-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.durable = durable
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root but there is no 'postgres' user to run the server") from None
            self._user = "postgres"
            shutil.chown(self.root, "postgres", "postgres")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = self.root / "server.log"

    def _run_as(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, user=self._user, group=self._user, extra_groups=[] if self._user else None,
                                cwd=self.root, **kwargs)  # type: ignore[arg-type]

    def start(self) -> PgCluster:
        init = self._run_as(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-sync", "--locale=C"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        out, _ = init.communicate(timeout=START_TIMEOUT_S)
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {out.decode(errors='replace').strip()}")
        settings = ["-c", "max_connections=200", "-c", "listen_addresses=127.0.0.1"]
        if not self.durable:  # the tests check the store's logic, not PostgreSQL's crash safety
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self._log, "wb")  # noqa: SIM115 - kept open for the server's lifetime
        self.proc = self._run_as(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.root),
             "-p", str(self.port), *settings],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        pause = threading.Event()
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise PostgresUnavailable(f"postgres exited at start: {self._log.read_text(errors='replace')[-2000:]}")
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=5):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise PostgresUnavailable(
                        f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s"
                    ) from None
                pause.wait(0.05)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "labctl") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # A throwaway cluster needs no shutdown checkpoint: "immediate" (SIGQUIT) is instant;
            # a durable one (the benchmark's) shuts down "fast" (SIGINT), cleanly.
            self.proc.send_signal(signal.SIGINT if self.durable else signal.SIGQUIT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster_or_fail(fail: object) -> PgCluster:
    """Start a cluster, or call ``fail(message)`` (pytest.fail) with what to install."""
    try:
        return PgCluster().start()
    except PostgresUnavailable as exc:
        message = f"PostgreSQL tests cannot run: {exc}"
    fail(message)  # type: ignore[operator]
    raise PostgresUnavailable(message)
