"""The instrument's time stamps on the host's clock.

A host-timed loop that stamps each reading with the host's clock is off by up
to half a round trip, and round trips wobble (a busy host, a loaded network).
The SMUs stamp every reading themselves (2450 buffer elements SEConds and
FRACtional, 2400 element TIME), so the driver uses their stamps: within a step, times and
hence the integrated charge are then exact whatever the latency, and only the
step's placement on the run clock carries the host's uncertainty.

The offset between the clocks is estimated as NTP does: a reading stamped τ
that was requested at host time a and answered at b happened in [a, b], so
the offset lies in [a − τ, b − τ]; intersecting these intervals over all
readings narrows it to the fastest round trip seen. An empty intersection
means the instrument's time origin moved (a reset, a cleared buffer) or the
clocks drifted apart: the estimate restarts from that reading.
"""

from __future__ import annotations

import math


class Timebase:
    """Maps instrument time stamps to host clock time."""

    def __init__(self) -> None:
        self.lo = -math.inf
        self.hi = math.inf
        self._last_tau: float | None = None

    def observe(self, a: float, b: float, tau: float) -> bool:
        """Add a reading stamped ``tau`` requested at ``a`` and answered at ``b`` (host
        clock); True when the estimate had to restart (the instrument's origin moved)."""
        lo, hi = a - tau, b - tau
        backwards = self._last_tau is not None and tau < self._last_tau
        self._last_tau = tau
        if not backwards and max(self.lo, lo) <= min(self.hi, hi):
            self.lo, self.hi = max(self.lo, lo), min(self.hi, hi)
            return False
        restarted = math.isfinite(self.lo)
        self.lo, self.hi = lo, hi
        return restarted

    @property
    def offset(self) -> float:
        """Host clock time minus instrument time (the middle of the interval)."""
        return 0.5 * (self.lo + self.hi)

    @property
    def uncertainty(self) -> float:
        """Half the width of the interval: how far the offset may be off."""
        return 0.5 * (self.hi - self.lo)
