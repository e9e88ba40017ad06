"""The overnight queue's job store (issue 10): jobs, states, and where they are kept.

``open_store(None)`` opens the embedded SQLite store in the user's data folder; a path opens
another SQLite file; a ``postgresql://`` URL opens the shared store of a multi-PC lab.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_path

from labctl.queue.errors import InvalidJobSpec, InvalidTransition, JobNotFound, QueueError, StoreUnavailable
from labctl.queue.jobs import (
    ACTIVE_STATES,
    FINISHED_STATES,
    CellInfo,
    Change,
    ChannelHold,
    Job,
    JobSpec,
    JobState,
    OnFailure,
    Request,
)
from labctl.queue.store import ChannelFit, JobStore, Watcher, fits_protocols

__all__ = [
    "ACTIVE_STATES",
    "FINISHED_STATES",
    "CellInfo",
    "Change",
    "ChannelFit",
    "ChannelHold",
    "InvalidJobSpec",
    "InvalidTransition",
    "Job",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "JobStore",
    "OnFailure",
    "QueueError",
    "Request",
    "StoreUnavailable",
    "Watcher",
    "default_store_path",
    "fits_protocols",
    "open_store",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def default_store_path() -> Path:
    """Where the embedded store lives when no location is given (per user, per OS convention)."""
    return user_data_path("labctl", appauthor=False) / "queue.sqlite3"


def open_store(location: str | Path | None = None) -> JobStore:
    """The job store at ``location``: None (default SQLite file), a path, or a PostgreSQL URL."""
    if location is None:
        from labctl.queue.sqlite_store import SqliteJobStore

        return SqliteJobStore(default_store_path())
    text = str(location)
    if text.startswith(POSTGRES_SCHEMES):
        from labctl.queue.postgres_store import PostgresJobStore

        return PostgresJobStore(text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreUnavailable(
            f"queue store: unknown scheme {scheme!r}; use a file path or a postgresql:// URL"
        )
    from labctl.queue.sqlite_store import SqliteJobStore

    return SqliteJobStore(Path(text).expanduser())
