"""The samples of one host-timed step: charge, limit checks, blocks for the engine.

A host-timed SMU step reads one point at a time, but the engine and the run
file want blocks (per-point sinks are the classic slowness trap), and the
engine wants a block at least every ``max_block_wall`` seconds of wall time so
it can act on pause/abort and flush. ``Acquisition`` keeps the points until a
block is due, integrates the charge (trapezoids on the measured current, from
the instant the source was applied) and checks the step's limits with the
shared ``LimitWatcher`` on every point, so "voltage above 1.0 V" means what it
means for the simulator and the engine: the step ends at the first point that
meets it, and that point is kept.

The steadiness criterion fits the current over a whole window; evaluating it
on every point would cost a polynomial fit per reading, so it is judged every
1/20 of its window (as the simulator judges it at the end of each chunk).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from labctl.limits import LimitWatcher
from labctl.steps import SAMPLE_DTYPE, EndReason, Limits


class Acquisition:
    """Points of one step, from run time ``t_start`` (when the source was applied)."""

    def __init__(self, limits: Limits, t_start: float, max_block_wall: float) -> None:
        self.limits = limits
        self.t_start = t_start
        self.max_block_wall = max_block_wall
        self._fast = LimitWatcher(dataclasses.replace(limits, steady_slope=None), t_start)
        self._steady: LimitWatcher | None = None
        self._steady_every = math.inf
        if limits.steady_slope is not None:
            self._steady = LimitWatcher(
                Limits(steady_slope=limits.steady_slope, steady_window=limits.steady_window), t_start
            )
            self._steady_every = limits.steady_window / 20.0
        self._steady_rows: list[tuple[float, float, float, float, float]] = []
        self._steady_t = t_start
        self.charge = 0.0
        self._stamp = t_start
        self.count = 0
        self.last: tuple[float, float, float, float, float] | None = None
        self._pending: list[tuple[float, float, float, float, float]] = []
        self._wall = time.monotonic()

    def add(self, t: float, e: float, i: float, tau: float | None = None) -> EndReason | None:
        """Record a point at run time ``t``; the limit it meets, if any. ``tau``, the
        instrument's own time stamp, times the charge integral when given (exact
        intervals, whatever the host's latency; see ``timebase``)."""
        stamp = t if tau is None else tau
        if self.last is None:
            dt, i_prev = (t - self.t_start) if tau is None else 0.0, i
        else:
            dt, i_prev = stamp - self._stamp, self.last[2]
            if dt < 0:  # the instrument's clock rolled over or was reset: the host's interval
                dt = t - self.last[0]
        self._stamp = stamp
        self.charge += 0.5 * (i + i_prev) * max(dt, 0.0)
        row = (t, e, i, self.charge, math.nan)
        self.last = row
        self.count += 1
        self._pending.append(row)
        hit = self._fast.check(np.array([row], dtype=SAMPLE_DTYPE))
        if hit is not None:
            return hit[1]
        if self._steady is not None:
            self._steady_rows.append(row)
            if t - self._steady_t >= self._steady_every:
                block = np.array(self._steady_rows, dtype=SAMPLE_DTYPE)
                self._steady_rows, self._steady_t = [], t
                if self._steady.check(block) is not None:
                    return EndReason.STEADY
        return None

    def charge_eta(self) -> float:
        """Run time at which the charge limit will be met at the present current (inf if none)."""
        if self.limits.max_charge is None or self.last is None or self.last[2] == 0.0:
            return math.inf
        left = self.limits.max_charge - abs(self.charge)
        return self.last[0] + max(left, 0.0) / abs(self.last[2])

    def wall_left(self) -> float:
        """Wall seconds before a block is due for the engine."""
        return max(0.0, 0.8 * self.max_block_wall - (time.monotonic() - self._wall))

    def due(self) -> bool:
        return self.wall_left() <= 0.0

    def block(self) -> np.ndarray:
        """The points not yet handed over (possibly none), as one SAMPLE_DTYPE block."""
        block = np.array(self._pending, dtype=SAMPLE_DTYPE)
        self._pending = []
        self._wall = time.monotonic()
        return block
