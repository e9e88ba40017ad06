"""Plain data of the overnight queue: jobs, their states, failure policies and holds.

A job is what a technician loaded for the night: a protocol with its parameters exactly as
typed (lab units, validated again when the job starts, because the protocol code may change
between loading and running), the cell it runs on, and the channel. These records are what
every store backend returns, so the runner, the CLI and the GUI never see SQL rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from labctl.queue.errors import InvalidJobSpec


class JobState(StrEnum):
    """Where a job is in its life. Only ``queued`` jobs are ever claimed."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSING = "pausing"  # pause requested; the worker has not yet put the cell on hold
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its worker died while the cell was under control: never re-run


#: States in which a job owns its channel (the cell is under a worker's control).
ACTIVE_STATES: frozenset[JobState] = frozenset({JobState.RUNNING, JobState.PAUSING, JobState.PAUSED})
#: States a job never leaves.
FINISHED_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.ABORTED, JobState.CANCELLED, JobState.INTERRUPTED}
)
#: States a worker may report through ``finish``.
FINISH_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.ABORTED, JobState.CANCELLED}
)


class OnFailure(StrEnum):
    """What a channel's queue does when one of its jobs fails."""

    STOP = "stop"  # hold the channel: its remaining jobs wait for a technician
    CONTINUE = "continue"  # go on with the channel's next job
    RETRY = "retry"  # run the job once more, first in the channel's queue


class Request(StrEnum):
    """A command from the CLI or a GUI waiting for the job's worker to act on it."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


def choice(enum: type[StrEnum], value: object, field_name: str) -> Any:
    """``enum(value)`` with an error that names the field and the allowed values."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidJobSpec(f"{field_name}: {value!r} is not one of {allowed}") from None


@dataclass(frozen=True)
class CellInfo:
    """The cell a job runs on, as the technician described it."""

    id: str
    electrolyte: str = ""
    notes: str = ""


#: A dependency: the id of a job already in the store, or the ``key`` of another job in the same batch.
JobRef = int | str


@dataclass(frozen=True)
class JobSpec:
    """What is asked for when a job is added (everything else is the store's bookkeeping).

    ``channel`` None means "any free channel that can run it" (the claiming worker decides
    with its capability predicate). ``after`` lists jobs that must have *completed* first.
    ``not_before`` is wall time in seconds since the epoch.
    """

    protocol: str
    cell: CellInfo
    params: Mapping[str, Any] = field(default_factory=dict)
    channel: str | None = None
    on_failure: OnFailure = OnFailure.CONTINUE
    after: tuple[JobRef, ...] = ()
    not_before: float | None = None
    key: str | None = None

    def validated(self) -> JobSpec:
        """Return the spec with enums normalised, or raise InvalidJobSpec naming the bad field."""
        if not isinstance(self.protocol, str) or not self.protocol.strip():
            raise InvalidJobSpec(f"protocol: must be a non-empty name, got {self.protocol!r}")
        if not isinstance(self.cell, CellInfo):
            raise InvalidJobSpec(f"cell: must be a CellInfo, got {type(self.cell).__name__}")
        if not isinstance(self.cell.id, str) or not self.cell.id.strip():
            raise InvalidJobSpec(f"cell.id: must be a non-empty name, got {self.cell.id!r}")
        if self.channel is not None and (not isinstance(self.channel, str) or not self.channel.strip()):
            raise InvalidJobSpec(f"channel: must be a channel name or None (any channel), got {self.channel!r}")
        if not isinstance(self.params, Mapping) or not all(isinstance(k, str) for k in self.params):
            raise InvalidJobSpec("params: must map parameter names to values")
        try:
            json.dumps(dict(self.params), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidJobSpec(f"params: values must be strings, numbers or booleans ({exc})") from None
        if self.not_before is not None and (
            isinstance(self.not_before, bool)
            or not isinstance(self.not_before, int | float)
            or not math.isfinite(self.not_before)
        ):
            raise InvalidJobSpec(f"not_before: must be seconds since the epoch, got {self.not_before!r}")
        for ref in self.after:
            if isinstance(ref, bool) or not isinstance(ref, int | str):
                raise InvalidJobSpec(f"after: {ref!r} is neither a job id nor a batch key")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise InvalidJobSpec(f"key: must be a non-empty string, got {self.key!r}")
        return JobSpec(
            protocol=self.protocol.strip(),
            cell=self.cell,
            params=dict(self.params),
            channel=None if self.channel is None else self.channel.strip(),
            on_failure=choice(OnFailure, self.on_failure, "on_failure"),
            after=tuple(self.after),
            not_before=None if self.not_before is None else float(self.not_before),
            key=self.key,
        )


@dataclass(frozen=True)
class Job:
    """One job as stored: the spec, where it runs, and what happened to it.

    ``requested_channel`` is what was asked (None = any); ``channel`` is where it runs or ran
    (None until claimed). Times are wall-clock seconds since the epoch.
    """

    id: int
    protocol: str
    params: Mapping[str, Any]
    cell: CellInfo
    requested_channel: str | None
    channel: str | None
    on_failure: OnFailure
    not_before: float | None
    depends_on: tuple[int, ...]
    state: JobState
    position: int
    request: Request | None
    worker: str | None
    heartbeat: float | None
    created: float
    started: float | None
    finished: float | None
    file: str | None
    results: Mapping[str, Any] | None
    error: str | None
    fraction: float | None
    step: str | None
    eta: float | None
    attempt: int
    retry_of: int | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def done(self) -> bool:
        return self.state in FINISHED_STATES


@dataclass(frozen=True)
class ChannelHold:
    """A channel that takes no jobs until a technician acknowledges it (``ack``)."""

    channel: str
    reason: str
    job_id: int | None
    since: float


@dataclass(frozen=True)
class Change:
    """Something in the store changed; ``version`` grows with every committed mutation."""

    version: int
