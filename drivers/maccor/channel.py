"""A Maccor channel as a labctl Channel: MacNet direct mode, labctl's own step logic.

The driver is a client of MacNet on the Maccor PC (JSON-RPC over TCP,
``drivers.maccor.macnet``). Rather than compiling a Maccor procedure, it runs
the channel in *direct mode*: message (6, 7) starts a direct-mode test with the
first step's set points, (6, 8) changes them at each following step, and the
driver polls (4, 7) "all status and readings of one channel" every sample
period, ending each step by the step's limits (``labctl.limits``) as a
host-timed loop does. Set points are mutually limiting on a Maccor, so a
constant-current step is sent with its voltage cutoff as the voltage set point:
the hardware clamps at the cutoff even if a poll is late, and the driver ends
the step at the first reading there. A rest is a 0 A current set point (the
MacNet notes say ``ChMode R`` in (6, 8) does not take effect).
Before the first step, (6, 10) sets the channel's own safety limits from the
lab's voltage window and current maximum (plus ``safety_margin``).

Times are the instrument's: each reading's ``TestTime`` (s since the
direct-mode test started, on the cycler's clock), placed on the run clock at the
moment (6, 7) was sent. Consecutive (6, 8) commands are at least 100 ms apart
(MacNet refuses faster ones); the driver waits that long in cell time.

A dropped link is reconnected (``reconnect_attempts`` × ``reconnect_wait``); the
channel keeps its set points meanwhile. MacNet's documented messages give the
present reading only, so readings during the gap are not in the run file (the
Maccor's own data file has them, at ``data_time``); each gap is logged, listed
in ``gaps`` and written into the end message of its step in the run file. Ends
of a run on this channel, each with its reason: the channel suspended (a safety
limit or alarm; output off) or its test ended by someone else ->
InstrumentError; no reply -> InstrumentTimeout; a reply that does not parse ->
GarbledReply; the link lost beyond the reconnections -> InstrumentError. Safe
state = (6, 5) reset channel (the test ends, output off), reconnecting once if
needed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np

from drivers.kit.pacing import empty_block, wait_until
from drivers.maccor.macnet import MacNetLink
from drivers.maccor.options import MaccorOptions
from labctl.channel import (
    Capabilities,
    Channel,
    ConnectionLost,
    GarbledReply,
    InstrumentError,
    InstrumentInfo,
    StepContext,
    StepOutcome,
    StepRun,
    with_one_reconnect,
)
from labctl.clock import Clock, ScaledClock
from labctl.limits import LimitWatcher
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Rest, Step, empty_samples

log = logging.getLogger(__name__)

KINDS = frozenset({"Rest", "ConstantCurrent", "ConstantVoltage"})
#: A set point MacNet ignores ("set outside range to ignore").
IGNORE = 65536.0
MIN_COMMAND_GAP = 0.1
STAT_RUNNING, STAT_SUSPENDED = 1, 2
#: A CC step is held at its voltage cutoff when |I| < CLAMP_CURRENT × the set current
#: and E is within CLAMP_TOLERANCE (V) of the cutoff.
CLAMP_CURRENT = 0.995
CLAMP_TOLERANCE = 5e-3


class MaccorChannel(Channel):
    """One Maccor channel driven in MacNet direct mode."""

    name = "maccor"

    def __init__(self, resource: str, options: MaccorOptions, clock: Clock) -> None:
        self.resource = resource
        self.options = options
        self._clock = ScaledClock(options.clock_speed) if options.clock_speed is not None else clock
        self.link = MacNetLink(resource, options.timeout)
        self.capabilities = Capabilities(
            step_kinds=KINDS,
            max_current=options.max_current,
            voltage_range=(options.voltage_min, options.voltage_max),
        )
        self._info: dict[str, Any] = {}
        self._direct = False
        self._t_test0 = 0.0
        self._last_command = -math.inf
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

    # --- connection ------------------------------------------------------------------------
    def open(self) -> None:
        self.link.connect()
        info = self.link.call(1, 2)
        channels = info.get("TestChannels")
        if not isinstance(channels, int):
            raise GarbledReply(f"Maccor: (1, 2) has no TestChannels: {info!r}")
        if self.chan >= channels:
            raise InstrumentError(
                f"Maccor: channel {self.options.channel} is not on this system (it has channels 1..{channels})"
            )
        self._info = info

    def close(self) -> None:
        self.link.close()

    def _reopen(self) -> None:
        self.link.close()
        self.open()

    def _ensure_open(self) -> None:
        if not self.link.connected:
            self.open()

    def identify(self) -> InstrumentInfo:
        self._ensure_open()
        versions = self.link.call(1, 1)
        firmware = ".".join(str(versions.get(f"MacTest32EXEversion{k}", "?")) for k in ("Major", "Minor", "Build"))
        return InstrumentInfo(
            driver="maccor",
            model=f"Maccor (system type {self._info.get('SystemType', '?')})",
            serial=str(self._info.get("SystemID", "")),
            firmware=f"MacTest32 {firmware}",
            resource=self.resource,
            extra={"channel": self.options.channel},
        )

    # --- messages ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        self._ensure_open()
        reading = self.link.call(4, 7, Chan=self.chan)
        for key in ("Stat", "TestTime", "Current", "Voltage", "Capacity"):
            if not isinstance(reading.get(key), int | float):
                raise GarbledReply(f"Maccor: (4, 7) reading without a numeric {key}: {reading!r}")
        return reading

    def _set_points(self, step: Step) -> dict[str, Any]:
        lim = step.effective_limits()
        if isinstance(step, Rest):
            return {"Current": 0.0, "Voltage": IGNORE, "ChMode": "C"}
        if isinstance(step, ConstantCurrent):
            charge = step.current >= 0
            cutoff = lim.voltage_above if charge else lim.voltage_below
            return {
                "Current": abs(step.current),
                "Voltage": IGNORE if cutoff is None else cutoff,
                "ChMode": "C" if charge else "D",
            }
        if isinstance(step, ConstantVoltage):
            if step.vs_ocv:
                raise InstrumentError("Maccor: ConstantVoltage vs OCV is not supported in direct mode")
            last = self._last_voltage
            charge = last is None or step.voltage >= last
            return {"Current": self.options.max_current, "Voltage": step.voltage, "ChMode": "C" if charge else "D"}
        raise InstrumentError(f"Maccor: {step.kind} steps are not supported (allowed: {', '.join(sorted(KINDS))})")

    def _check(self, result: dict[str, Any], what: str) -> None:
        if result.get("Result") != "OK":
            raise InstrumentError(
                f"Maccor channel {self.options.channel}: {what} refused (result {result.get('Result')!r})"
            )

    def _apply(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, None]:
        points = self._set_points(step)
        self._ensure_open()
        if not self._direct:
            o = self.options
            margin = o.safety_margin
            self.link.call(
                6,
                10,
                Chan=self.chan,
                VSafeMax=o.voltage_max + margin,
                VSafeMin=max(o.voltage_min - margin, 0.0),
                ISafeChg=o.max_current * 1.1,
                ISafeDis=o.max_current * 1.1,
                PBatSafeChg=0,
                PBatSafeDis=0,
            )
            self._t_test0 = ctx.run_time()
            self._check(
                self.link.call(
                    6,
                    7,
                    Chan=self.chan,
                    TestName="labctl",
                    Power=IGNORE,
                    Resistance=0,
                    CurrentRange=o.current_range,
                    DataTime=o.data_time,
                    DataV=0,
                    DataI=0,
                    **points,
                ),
                "(6, 7) start direct mode",
            )
            self._direct = True
        else:
            gap = self._last_command + MIN_COMMAND_GAP - ctx.run_time()
            if gap > 0 and not (yield from wait_until(ctx, ctx.run_time() + gap, empty_block())):
                return
            result = self.link.call(
                6, 8, Chan=self.chan, Power=IGNORE, Resistance=0, CurrentRange=self.options.current_range, **points
            )
            self._check(result, "(6, 8) set direct output")
        self._last_command = ctx.run_time()

    # --- steps ------------------------------------------------------------------------------------
    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        return self._run(step, ctx)

    def _run(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, StepOutcome]:
        yield from self._apply(step, ctx)
        t_start = ctx.run_time()
        lim = step.effective_limits()
        watcher = LimitWatcher(lim, t_start)
        sign = 1.0 if not isinstance(step, ConstantCurrent) or step.current >= 0 else -1.0
        period = step.sample_period
        next_t = t_start
        gaps_before = len(self.gaps)
        while True:
            next_t = next_t + period
            if lim.max_time is not None:
                next_t = min(next_t, t_start + lim.max_time)
            if not (yield from wait_until(ctx, next_t, empty_block())):
                return StepOutcome(EndReason.ABORTED, "interrupted")
            reading = yield from self._poll(ctx)
            stat = int(reading["Stat"])
            if stat == STAT_SUSPENDED:
                raise InstrumentError(
                    f"Maccor channel {self.options.channel}: suspended by the cycler (safety limit or alarm, "
                    f"status {stat}); output off"
                )
            if stat != STAT_RUNNING:
                raise InstrumentError(
                    f"Maccor channel {self.options.channel}: test ended at the cycler (status {stat}), not by labctl"
                )
            block = empty_samples(1)
            current = float(reading["Current"])
            q_sign = sign if isinstance(step, ConstantCurrent) else (1.0 if current >= 0 else -1.0)
            block["t"] = self._t_test0 + float(reading["TestTime"])
            block["E"] = float(reading["Voltage"])
            block["I"] = current
            block["Q"] = q_sign * abs(float(reading["Capacity"])) * 3600.0
            self._last_voltage = float(reading["Voltage"])
            hit = watcher.check(block) or self._clamped(step, block)
            yield block
            if hit is not None:
                reason = hit[1]
                if isinstance(step, Rest) and reason == EndReason.TIME:
                    reason = EndReason.COMPLETED
                message = f"{reason.value} (labctl's step logic on the cycler's readings)"
                return StepOutcome(reason, message + self._gap_notes(self.gaps[gaps_before:]))

    def _gap_notes(self, gaps: list[tuple[float, float]]) -> str:
        """The step's dropped-link gaps, for its end message (so the run file says where the
        curve has no points and why; the charge stays right: ``Capacity`` is the cycler's)."""
        return "".join(
            f"; no readings from {a:.1f} to {b:.1f} s (link down; the cycler's own data file has them)"
            for a, b in gaps
        )

    def _clamped(self, step: Step, block: np.ndarray) -> tuple[int, EndReason] | None:
        """A constant-current step whose voltage set point took over: the channel
        holds the cutoff (current below its set point, voltage at the cutoff
        within ``CLAMP_TOLERANCE``), i.e. the cell reached it between readings."""
        if not isinstance(step, ConstantCurrent) or step.current == 0:
            return None
        lim = step.effective_limits()
        charge = step.current > 0
        cutoff = lim.voltage_above if charge else lim.voltage_below
        e, i = float(block["E"][0]), float(block["I"][0])
        if cutoff is None or abs(i) >= CLAMP_CURRENT * abs(step.current) or abs(e - cutoff) > CLAMP_TOLERANCE:
            return None
        return 0, EndReason.VOLTAGE_ABOVE if charge else EndReason.VOLTAGE_BELOW

    def _poll(self, ctx: StepContext) -> Generator[np.ndarray, None, dict[str, Any]]:
        attempts = self.options.reconnect_attempts
        lost_at: float | None = None
        for attempt in range(attempts + 1):
            try:
                reading = self.status()
                if lost_at is not None:
                    self.gaps.append((lost_at, ctx.run_time()))
                    log.warning(
                        "Maccor %s: no readings from %.1f to %.1f s (link down; the cycler's data file has them)",
                        self.options.channel,
                        lost_at,
                        ctx.run_time(),
                    )
                return reading
            except ConnectionLost as exc:
                if attempt == attempts:
                    raise InstrumentError(
                        f"Maccor channel {self.options.channel}: link lost, {attempts} reconnections failed: {exc}"
                    ) from exc
                lost_at = ctx.run_time() if lost_at is None else lost_at
                log.warning("Maccor %s: %s; reconnecting", self.options.channel, exc)
                if not (yield from wait_until(ctx, ctx.run_time() + self.options.reconnect_wait, empty_block())):
                    raise InstrumentError("Maccor: interrupted while reconnecting") from exc
                try:
                    self._reopen()
                    self.reconnects += 1
                except ConnectionLost as again:
                    log.warning("Maccor %s: reconnection failed: %s", self.options.channel, again)
        raise AssertionError("unreachable")

    # --- safety ------------------------------------------------------------------------------------
    def hold(self) -> None:
        """Holding = a 0 A set point (the direct-mode test stays open to continue)."""
        if not self._direct:
            return

        def rest() -> None:
            self._ensure_open()
            result = self.link.call(
                6,
                8,
                Chan=self.chan,
                Current=0.0,
                Voltage=IGNORE,
                Power=IGNORE,
                Resistance=0,
                CurrentRange=self.options.current_range,
                ChMode="C",
            )
            if result.get("Result") == 3:  # too fast: the safe way is the reset
                self.safe_state()
                return
            self._check(result, "(6, 8) hold at 0 A")

        with_one_reconnect(rest, self._reopen, instrument=f"Maccor {self.options.channel}", goal="hold the channel")

    def safe_state(self) -> None:
        def reset() -> None:
            self._ensure_open()
            result = self.link.call(6, 5, Chan=self.chan)
            if result.get("Result") != "OK" and int(self.status()["Stat"]) in (STAT_RUNNING,):
                self._check(result, "(6, 5) reset channel")  # refused while running: not safe
            self._direct = False

        with_one_reconnect(reset, self._reopen, instrument=f"Maccor {self.options.channel}", goal="reset the channel")


def create(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> MaccorChannel:
    """The driver factory named in ``labctl.registry`` (connects on ``open``)."""
    from labctl.clock import RealClock

    return MaccorChannel(resource, MaccorOptions.parse(options), clock or RealClock())
