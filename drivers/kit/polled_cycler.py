"""A battery-cycler channel on which labctl runs its own step logic by polling readings.

Maccor MacNet (direct mode) and Arbin CTI (a control schedule's meta variables) give a
client set points and the present reading, but nothing that runs labctl's steps on the
cycler. Both drivers therefore share one host loop, written here once:

- apply the step's set points (the driver's ``_apply``);
- poll one reading per sample period, time-stamped by the instrument's own test time;
- end the step by labctl's limits (``labctl.limits``), or when a constant-current step is
  found holding its voltage clamp (the cell reached the cutoff between two polls: the
  hardware clamped it, so a late poll never overshoots);
- reconnect a dropped link (``reconnect_attempts`` × ``reconnect_wait``) and write the time
  without readings into the step's end message (``gaps``): neither protocol can fetch past
  readings, so the run file says where its curve has no points and why. The charge stays
  right across a gap because it comes from the cycler's own capacity counter.

A driver supplies the messages: ``open``, ``status`` (one reading), ``_check_status`` (the
channel still runs labctl's test), ``_apply`` and ``_sample`` (a reading as a sample row).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from drivers.kit.options import DriverOptions, OptionError, option
from drivers.kit.pacing import empty_block, wait_until
from labctl.channel import Capabilities, Channel, ConnectionLost, InstrumentError, StepContext, StepOutcome, StepRun
from labctl.clock import Clock, ScaledClock
from labctl.limits import LimitWatcher
from labctl.steps import ConstantCurrent, EndReason, Rest, Step

log = logging.getLogger(__name__)
T = TypeVar("T")

KINDS = frozenset({"Rest", "ConstantCurrent", "ConstantVoltage"})
#: A CC step is held at its voltage clamp when |I| < CLAMP_CURRENT × the set current and E
#: is within CLAMP_TOLERANCE (V) of the cutoff.
CLAMP_CURRENT = 0.995
CLAMP_TOLERANCE = 5e-3


@dataclass(frozen=True)
class PolledCyclerOptions(DriverOptions):
    """The options every polled cycler has (a driver adds its own and may re-declare a default)."""

    channel: str = option("1", "str", "the channel number as the cycler's software shows it, from 1")
    timeout: float = option(5.0, "float", "reply timeout", unit="s", above=0, maximum=600)
    max_current: float = option(1.0, "float", "largest current a step may ask for; CV current limit", unit="A", above=0)
    voltage_min: float = option(0.0, "float", "lowest voltage a step may ask for", unit="V", minimum=-10, maximum=10)
    voltage_max: float = option(5.0, "float", "highest voltage a step may ask for", unit="V", minimum=-10, maximum=10)
    safety_margin: float = option(
        0.1,
        "float",
        "the channel's own safety limits this far beyond voltage_min/max (and 10 % above max_current)",
        unit="V",
        minimum=0,
    )
    reconnect_attempts: int = option(5, "int", "reconnections tried after a dropped link", minimum=0, maximum=1000)
    reconnect_wait: float = option(2.0, "float", "wait between reconnections (cell time)", unit="s", minimum=0)
    clock_speed: float | None = option(None, "float", "run on a clock N× real time (wire emulators)", above=0)

    def check(self) -> None:
        if not self.channel.isdigit() or int(self.channel) < 1:
            raise OptionError.bad_value(
                self.family, "channel", self.channel, "is not a channel number (allowed: a whole number from 1)"
            )
        if self.voltage_min >= self.voltage_max:
            raise OptionError.bad_value(
                self.family, "voltage_min", self.voltage_min, f"is not below voltage_max {self.voltage_max!r}"
            )

    @property
    def chan(self) -> int:
        """The wire channel number (from 0; the lab file counts from 1 as the vendors' software does)."""
        return int(self.channel) - 1


class PolledCyclerChannel(Channel):
    """labctl's host loop on a cycler channel; subclasses speak the vendor's messages."""

    vendor: ClassVar[str] = "cycler"
    #: Who still has the readings a dropped link missed (said in the gap message).
    gap_keeper: ClassVar[str] = "the cycler's own data file"
    #: Shortest wait before a reconnection (cell time).
    min_reconnect_wait: ClassVar[float] = 0.0

    def __init__(self, resource: str, options: PolledCyclerOptions, clock: Clock) -> None:
        self.resource = resource
        self.options = options
        self._clock = ScaledClock(options.clock_speed) if options.clock_speed is not None else clock
        self.capabilities = Capabilities(
            step_kinds=KINDS,
            max_current=options.max_current,
            voltage_range=(options.voltage_min, options.voltage_max),
        )
        self._t_test0 = 0.0  # the run time at which the instrument's test time was 0
        self._last_voltage: float | None = None
        self.reconnects = 0
        #: (from, to) run times without readings, after dropped links.
        self.gaps: list[tuple[float, float]] = []

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def chan(self) -> int:
        return self.options.chan

    @property
    def label(self) -> str:
        return f"{self.vendor} channel {self.options.channel}"

    # --- the vendor's part -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The channel's present reading."""
        raise NotImplementedError

    def _check_status(self, reading: dict[str, Any]) -> None:
        """Raise InstrumentError when the channel no longer runs labctl's test (safety stop,
        alarm, ended by someone else)."""
        raise NotImplementedError

    def _apply(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, bool]:
        """Send the step's set points; False if interrupted while doing so."""
        raise NotImplementedError

    def _sample(self, step: Step, reading: dict[str, Any]) -> np.ndarray:
        """One reading as a one-row sample block (t on the run clock, E, I, Q)."""
        raise NotImplementedError

    # --- connection ----------------------------------------------------------------------------
    link: Any

    def close(self) -> None:
        self.link.close()

    def _reopen(self) -> None:
        self.link.close()
        self.open()

    def _ensure_open(self) -> None:
        if not self.link.connected:
            self.open()

    # --- the host loop -------------------------------------------------------------------------
    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        return self._run(step, ctx)

    def _run(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, StepOutcome]:
        gaps_before = len(self.gaps)
        if not (yield from self._apply(step, ctx)):
            return StepOutcome(EndReason.ABORTED, "interrupted")
        t_start = ctx.run_time()
        lim = step.effective_limits()
        watcher = LimitWatcher(lim, t_start)
        next_t = t_start
        while True:
            next_t = next_t + step.sample_period
            if lim.max_time is not None:
                next_t = min(next_t, t_start + lim.max_time)
            if not (yield from wait_until(ctx, next_t, empty_block())):
                return StepOutcome(EndReason.ABORTED, "interrupted")
            reading = yield from self._poll(ctx)
            block = self._sample(step, reading)
            self._last_voltage = float(block["E"][0])
            hit = watcher.check(block) or self._clamped(step, block)
            yield block
            if hit is not None:
                reason = hit[1]
                if isinstance(step, Rest) and reason == EndReason.TIME:
                    reason = EndReason.COMPLETED
                message = f"{reason.value} (labctl's step logic on the cycler's readings)"
                return StepOutcome(reason, message + self._gap_notes(self.gaps[gaps_before:]))

    def _poll(self, ctx: StepContext) -> Generator[np.ndarray, None, dict[str, Any]]:
        reading = yield from self._reconnecting(ctx, self.status)
        self._check_status(reading)
        return reading

    def _gap_notes(self, gaps: list[tuple[float, float]]) -> str:
        keeper = self.gap_keeper
        return "".join(f"; no readings from {a:.1f} to {b:.1f} s (link down; {keeper} has them)" for a, b in gaps)

    def _clamped(self, step: Step, block: np.ndarray) -> tuple[int, EndReason] | None:
        """A constant-current step whose voltage clamp took over: the channel holds the cutoff
        (current below its set point, voltage at the cutoff within ``CLAMP_TOLERANCE``)."""
        if not isinstance(step, ConstantCurrent) or step.current == 0:
            return None
        lim = step.effective_limits()
        charge = step.current > 0
        cutoff = lim.voltage_above if charge else lim.voltage_below
        e, i = float(block["E"][0]), float(block["I"][0])
        if cutoff is None or abs(i) >= CLAMP_CURRENT * abs(step.current) or abs(e - cutoff) > CLAMP_TOLERANCE:
            return None
        return 0, EndReason.VOLTAGE_ABOVE if charge else EndReason.VOLTAGE_BELOW

    def _reconnecting(self, ctx: StepContext, action: Callable[[], T]) -> Generator[np.ndarray, None, T]:
        """``action()``, reconnecting after a dropped link; the time without readings is a gap.
        The wait before each reconnection runs on the cell's clock, feeding the engine."""
        attempts = self.options.reconnect_attempts
        lost_at: float | None = None
        for attempt in range(attempts + 1):
            try:
                result = action()
                if lost_at is not None:
                    self.gaps.append((lost_at, ctx.run_time()))
                    log.warning("%s: no readings from %.1f to %.1f s", self.label, lost_at, ctx.run_time())
                return result
            except ConnectionLost as exc:
                if attempt == attempts:
                    raise InstrumentError(f"{self.label}: link lost, {attempts} reconnections failed: {exc}") from exc
                lost_at = ctx.run_time() if lost_at is None else lost_at
                log.warning("%s: %s; reconnecting", self.label, exc)
                wait = max(self.options.reconnect_wait, self.min_reconnect_wait)
                if not (yield from wait_until(ctx, ctx.run_time() + wait, empty_block())):
                    raise InstrumentError(f"{self.label}: interrupted while reconnecting") from exc
                try:
                    self._reopen()
                    self.reconnects += 1
                except ConnectionLost as again:
                    log.warning("%s: reconnection failed: %s", self.label, again)
        raise AssertionError("unreachable")
