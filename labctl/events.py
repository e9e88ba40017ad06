"""The live event stream of a run, and the bus that fans it out.

The engine emits one event per thing that happened; every sink (the HDF5 run
file, the CLI progress bar, later the GUI and the queue) receives the same
events. Sinks that write (the run file) are called synchronously in the engine
thread; watchers subscribe to the ``EventBus``, which never blocks the engine:
a slow subscriber loses old sample blocks, never the step/run events.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import numpy as np

from labctl.steps import Step, StepResult


@dataclass(frozen=True)
class RunInfo:
    """Everything known about a run before it starts (goes to the file's root)."""

    run_id: str
    protocol: str
    protocol_version: str
    parameters: dict[str, Any]
    cell: dict[str, Any]
    instrument: dict[str, Any]
    software: dict[str, Any]
    operator: str = ""
    started_at: str = ""
    simulation: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunStarted:
    info: RunInfo


@dataclass(frozen=True)
class StepStarted:
    index: int
    step: Step
    t_start: float


@dataclass(frozen=True)
class Samples:
    index: int
    block: np.ndarray


@dataclass(frozen=True)
class SpectrumPoints:
    index: int
    block: np.ndarray


@dataclass(frozen=True)
class StepEnded:
    result: StepResult


@dataclass(frozen=True)
class StatusChanged:
    """Something about the cell worth a record, with the cell time it happened
    at: ``safe`` (output off at the end of a run) or ``unsafe``. The run's own
    state changes are ``StateChanged``."""

    state: str
    t_cell: float
    message: str = ""


@dataclass(frozen=True)
class StateChanged:
    """The run's state moved (pending, running, pausing, paused, aborting,
    completed, aborted, failed): published for every transition, so a queue or
    a GUI can show "pausing…" or "aborting…" while the engine gets there."""

    old: str
    new: str
    reason: str
    t_cell: float


@dataclass(frozen=True)
class Tick:
    """Emitted at least every half second of wall time, so sinks can flush
    and write heartbeats even when no data arrives (a slow EIS point)."""

    t_cell: float


@dataclass(frozen=True)
class RunEnded:
    status: str  # completed / aborted / failed
    results: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    ended_at: str = ""
    #: The traceback behind ``error`` when it was unexpected: kept in the run
    #: file, shown on a terminal only on request (``labctl --debug``).
    error_detail: str = ""


Event = Union[RunStarted, StepStarted, Samples, SpectrumPoints, StepEnded, StatusChanged, StateChanged, Tick, RunEnded]


class SinkFailure(OSError):
    """A sink that records the run (the run file) can no longer do so: the
    run must end failed with this one-line reason, e.g. the disk is full."""


class Sink(Protocol):
    """Anything that consumes the event stream."""

    def handle(self, event: Event) -> None: ...


#: Sample/spectrum rows a subscription holds at most (~4 MB of samples):
#: bounding the event count alone would let a watcher that stopped reading
#: hold 10⁴ blocks of thousands of rows each, i.e. a whole run's samples.
MAX_QUEUED_ROWS = 100_000


class Subscription:
    """A bounded queue of events for one consumer thread.

    Bounded twice: ``maxsize`` events, and ``max_rows`` sample/spectrum rows
    in the queued data blocks. Data blocks beyond either bound are dropped
    (``dropped`` counts them; the run file has them).
    """

    def __init__(self, bus: EventBus, maxsize: int, max_rows: int = MAX_QUEUED_ROWS) -> None:
        self._bus = bus
        self._queue: queue.Queue[Event] = queue.Queue(maxsize)
        self.max_rows = max_rows
        self._rows = 0  # rows in the queued data blocks
        self._rows_lock = threading.Lock()
        self.dropped = 0

    @property
    def queued_rows(self) -> int:
        return self._rows

    def offer(self, event: Event) -> None:
        rows = _rows_in(event)
        if rows:
            with self._rows_lock:
                if self._rows + rows > self.max_rows:
                    self.dropped += 1
                    return
                self._rows += rows
        try:
            self._queue.put_nowait(event)
            return
        except queue.Full:
            self._taken(event)
        if isinstance(event, (Samples, SpectrumPoints, Tick)):
            self.dropped += 1  # data blocks are expendable for watchers; the file has them
            return
        # A control event must get through: make room by dropping the oldest.
        try:
            self._taken(self._queue.get_nowait())
            self.dropped += 1
        except queue.Empty:
            pass
        self._queue.put_nowait(event)

    def _taken(self, event: Event) -> None:
        """``event`` left the queue (or never entered it): release its rows."""
        rows = _rows_in(event)
        if rows:
            with self._rows_lock:
                self._rows -= rows

    def get(self, timeout: float | None = None) -> Event | None:
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        self._taken(event)
        return event

    def drain(self) -> list[Event]:
        events = []
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return events
            self._taken(event)
            events.append(event)

    def close(self) -> None:
        self._bus.unsubscribe(self)


def _rows_in(event: Event) -> int:
    return len(event.block) if isinstance(event, (Samples, SpectrumPoints)) else 0


class EventBus:
    """Fans events out to subscribers without ever blocking the publisher."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, maxsize: int = 10_000, max_rows: int = MAX_QUEUED_ROWS) -> Subscription:
        sub = Subscription(self, maxsize, max_rows)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def handle(self, event: Event) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(event)
