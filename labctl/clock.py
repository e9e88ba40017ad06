"""Clocks: where cell time comes from.

The engine and the channels never call ``time`` directly; they ask a Clock.
Hardware runs on ``RealClock``; simulators run on ``VirtualClock`` (as fast as
the physics can be computed) or ``ScaledClock`` (N x real time, for watching
live plots), so a 60-hour protocol dry-runs through the same code paths.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime


class Clock(ABC):
    """Cell time in seconds (monotonic, arbitrary origin)."""

    #: True when time does not pass by itself (advances only by sleep_until).
    virtual: bool = False

    @property
    def speed(self) -> float:
        """Cell seconds per wall second: how a wall-time budget (a reply timeout, the
        engine's block period) converts to this clock. 1 for real time; a virtual
        clock says 1 too, since its time does not pass by itself (callers that wait
        check ``virtual`` first)."""
        return 1.0

    @abstractmethod
    def now(self) -> float: ...

    @abstractmethod
    def sleep_until(self, t: float, cancel: threading.Event | None = None) -> bool:
        """Wait until cell time ``t``. Returns False when ``cancel`` was set
        before then (the caller must then re-read ``now()``)."""

    def sleep(self, dt: float, cancel: threading.Event | None = None) -> bool:
        return self.sleep_until(self.now() + dt, cancel)

    @staticmethod
    def wall_time() -> datetime:
        """Wall-clock time for metadata (ISO timestamps in the run file)."""
        return datetime.now(UTC).astimezone()


class ScaledClock(Clock):
    """Real time multiplied by ``speed`` (speed 1 is the real clock)."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed!r}")
        self._speed = float(speed)
        self._origin = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self._speed

    def sleep_until(self, t: float, cancel: threading.Event | None = None) -> bool:
        while True:
            remaining = (t - self.now()) / self._speed
            if remaining <= 0:
                return True
            if cancel is None:
                time.sleep(remaining)
            elif cancel.wait(remaining):
                return False


class RealClock(ScaledClock):
    """Wall time: what hardware runs on."""

    def __init__(self) -> None:
        super().__init__(1.0)


class VirtualClock(Clock):
    """Time that moves only when someone sleeps: simulation as fast as possible."""

    virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._t

    def sleep_until(self, t: float, cancel: threading.Event | None = None) -> bool:
        if cancel is not None and cancel.is_set():
            return False
        with self._lock:
            if t > self._t:
                self._t = float(t)
        return True


def make_sim_clock(speed: float | None) -> Clock:
    """``None`` (or inf) = as fast as possible; otherwise N x real time."""
    if speed is None or speed == float("inf"):
        return VirtualClock()
    return ScaledClock(speed)
