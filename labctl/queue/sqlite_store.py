"""The embedded job store: one SQLite file, no server.

WAL lets readers (``queue list``, GUIs) run while a worker writes; ``synchronous=FULL`` makes a
committed claim or finish survive a power cut; every mutation starts with ``BEGIN IMMEDIATE``
so two processes claiming at once queue up for the write lock instead of failing half-way.
SQLite has no LISTEN/NOTIFY: every mutation bumps a counter row and watchers poll
``PRAGMA data_version`` (a cheap in-memory check) before reading it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from labctl.queue.errors import StoreUnavailable
from labctl.queue.jobs import Change
from labctl.queue.schema import SCHEMA_VERSION, schema_statements
from labctl.queue.sql_store import SqlJobStore
from labctl.queue.store import Watcher

#: How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 60.0
#: How often a watcher looks at ``data_version``.
WATCH_POLL_S = 0.05


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self._conn.execute(sql, tuple(params)).fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"queue store {str(path)!r}: cannot open ({exc})") from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreUnavailable(f"queue store {str(path)!r}: not a job store ({exc})") from None
    return conn


class SqliteJobStore(SqlJobStore):
    """JobStore in one SQLite file (created with its schema on first use)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreUnavailable(f"queue store {str(self.path)!r}: is a directory, expected a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"queue store {str(self.path)!r}: cannot create its folder ({exc})") from None
        self._conn = _connect(self.path)
        try:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreUnavailable(f"queue store {str(self.path)!r}: cannot use WAL (journal mode {mode})")
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreUnavailable(f"queue store {str(self.path)!r}: not a job store ({exc})") from None
        except StoreUnavailable:
            self._conn.close()
            raise

    def _create_schema(self) -> None:
        with self._transaction() as tx:
            for statement in schema_statements("INTEGER PRIMARY KEY AUTOINCREMENT"):
                tx.run(statement)
            tx.run("CREATE TABLE IF NOT EXISTS store_version (version INTEGER NOT NULL)")
            rows = tx.rows("SELECT version FROM schema_version")
            if not rows:
                tx.run("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                tx.run("INSERT INTO store_version (version) VALUES (0)")
            elif int(rows[0]["version"]) > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"queue store {str(self.path)!r}: schema version {rows[0]['version']} is newer than this "
                    f"labctl understands ({SCHEMA_VERSION}); upgrade labctl"
                )

    def _transaction(self) -> contextlib.AbstractContextManager[_SqliteTx]:
        return self._begin("BEGIN IMMEDIATE")

    def _reading(self) -> contextlib.AbstractContextManager[_SqliteTx]:
        return self._begin("BEGIN")  # deferred: readers do not queue for the write lock

    @contextlib.contextmanager
    def _begin(self, begin: str) -> Iterator[_SqliteTx]:
        with self._lock:
            self._conn.execute(begin)
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _notify(self, tx: _SqliteTx) -> None:
        tx.run("UPDATE store_version SET version = version + 1")

    def _is_conflict(self, exc: BaseException) -> bool:
        # Claims are serialised by the write lock, so a conflict means a real bug: let it surface.
        return False

    def watch(self) -> Watcher:
        return _SqliteWatcher(self.path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _SqliteWatcher(Watcher):
    def __init__(self, path: Path) -> None:
        self._conn = _connect(path)
        self._data_version = self._read_data_version()
        self._seen = self._read_version()

    def _read_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _read_version(self) -> int:
        return int(self._conn.execute("SELECT version FROM store_version").fetchone()[0])

    def wait(self, timeout: float) -> Change | None:
        deadline = time.monotonic() + timeout
        stop = threading.Event()
        while True:
            data_version = self._read_data_version()
            if data_version != self._data_version:
                self._data_version = data_version
                version = self._read_version()
                if version != self._seen:
                    self._seen = version
                    return Change(version)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            stop.wait(min(WATCH_POLL_S, remaining))

    def close(self) -> None:
        self._conn.close()
