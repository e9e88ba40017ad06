"""Finding where a step's limits are met inside a block of samples.

Channels that loop on the host (SMUs, the simulator) and the engine's safety
check share this code, so "voltage above 1.0 V" means the same everywhere: the
step ends at the first sample that meets a limit, and that sample is kept.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from labctl.steps import EndReason, Limits


class LimitWatcher:
    """Checks successive sample blocks of one step against its limits.

    ``t_start`` is the run time at which the step began (samples carry run
    time). Stateful only for the steadiness criterion, which needs the last
    ``steady_window`` seconds of current.
    """

    def __init__(self, limits: Limits, t_start: float) -> None:
        self.limits = limits
        self.t_start = t_start
        self._recent: deque[np.ndarray] = deque()

    def check(self, block: np.ndarray) -> tuple[int, EndReason] | None:
        """Index of the first row meeting a limit and why, or None."""
        if len(block) == 0:
            return None
        lim = self.limits
        candidates: list[tuple[int, EndReason]] = []

        def first(mask: np.ndarray, reason: EndReason) -> None:
            hits = np.flatnonzero(mask)
            if hits.size:
                candidates.append((int(hits[0]), reason))

        if lim.max_time is not None:
            first(block["t"] - self.t_start >= lim.max_time * (1 - 1e-12), EndReason.TIME)
        if lim.voltage_above is not None:
            first(block["E"] >= lim.voltage_above, EndReason.VOLTAGE_ABOVE)
        if lim.voltage_below is not None:
            first(block["E"] <= lim.voltage_below, EndReason.VOLTAGE_BELOW)
        if lim.current_below is not None:
            first(np.abs(block["I"]) <= lim.current_below, EndReason.CURRENT_BELOW)
        if lim.current_above is not None:
            first(np.abs(block["I"]) >= lim.current_above, EndReason.CURRENT_ABOVE)
        if lim.max_charge is not None:
            first(np.abs(block["Q"]) >= lim.max_charge * (1 - 1e-9), EndReason.CHARGE)
        if lim.steady_slope is not None:
            steady = self._steady_index(block)
            if steady is not None:
                candidates.append((steady, EndReason.STEADY))
        if not candidates:
            return None
        return min(candidates, key=lambda c: c[0])

    def _steady_index(self, block: np.ndarray) -> int | None:
        """Slope of I over the trailing window, judged at the end of the block."""
        lim = self.limits
        self._recent.append(block[["t", "I"]])
        t_end = float(block["t"][-1])
        while self._recent and float(self._recent[0]["t"][-1]) < t_end - lim.steady_window:
            self._recent.popleft()
        if t_end - self.t_start < lim.steady_window:
            return None
        window = np.concatenate(list(self._recent))
        window = window[window["t"] >= t_end - lim.steady_window]
        if len(window) < 3:
            return None
        slope = np.polyfit(window["t"] - t_end, window["I"], 1)[0]
        if abs(slope) <= lim.steady_slope:
            return len(block) - 1
        return None
