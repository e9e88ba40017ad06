"""An Arbin channel as a labctl Channel: labctl's own step logic through CTI meta variables.

The driver is a CTI client of MITS Pro (binary over TCP, ``drivers.arbin.cti``). CTI can
assign, start, stop and jump a *schedule* and set a running schedule's user meta variables
(MV_UD1…16); it has no command that sets a channel's output. So, like the Maccor driver's
direct mode, labctl runs its own step logic and the channel runs a small **control
schedule** that the lab installs on MITS Pro (option ``schedule``, default
``labctl_direct.sdx``). This is a lab-side convention of labctl, not an Arbin feature
(``docs/arbin-control-schedule.md`` says how to build it); its meta variables mean:

========  =====================================================================
MV_UD1    mode: 0 rest (output off), 1 constant current, 2 constant voltage
MV_UD2    current set point (A, signed: + charges). In mode 2: the current limit |I|
MV_UD3    voltage (V). Mode 1: the clamp (a CCCV step: the channel holds this
          voltage once reached); mode 2: the voltage set point
MV_UD4    command number: the schedule applies UD1–UD3 only when UD4 changes, so
          a new set of set points takes effect at once (UD4 is written last)
MV_UD5-7  safety: V above UD5, V below UD6 or |I| above UD7 stops the channel as
          unsafe (output off)
========  =====================================================================

The schedule's steps: 0 "Wait" (rest until UD4 > 0), 1 "Rest", 2 "CCCV" (current UD2,
voltage UD3), 3 "CV" (voltage UD3, current limit UD2); every step ends when UD4 changes
and goes to the step that UD1 names; the safety limits act in every step.

Sequence: at ``open`` the driver logs in (THIRD_PARTY_USER_LOGIN) and checks the channel
exists; at the first step it assigns the control schedule (THIRD_PARTY_ASSIGN_SCHEDULE),
starts it (THIRD_PARTY_START_SCHEDULE; test time 0 = now on the run clock), sets the
safety MVs from the lab's voltage window and current maximum (+ ``safety_margin``), then
each step writes its set points (THIRD_PARTY_SET_MV_VALUE, only those that changed, then
UD4). MITS Pro refuses MV updates of a channel faster than every 200 ms (feedback 0x14):
the driver waits that long (cell time) between writes. A channel-info poll
(THIRD_PARTY_GET_CHANNELS_INFO) right after the commit is the step's charge baseline; then
one poll per sample period gives a sample: t = the instrument's ``TestTime`` on the run
clock, E, I, and Q = (ChargeCapacity − DischargeCapacity − baseline) × 3600 C. Steps end
by the step's limits (``labctl.limits``); a CC step also ends when the channel is found
holding its clamp voltage (the cell reached the cutoff between two polls).

A link dropped during a poll or an MV write is reconnected (``reconnect_attempts`` ×
``reconnect_wait``, logging in again) and the exchange repeated (a repeated MV write changes
nothing, UD4 included); the channel keeps its set points meanwhile. CTI gives the present reading only, so
readings during the gap are not in the run file (MITS Pro's own data file has them); each
gap is logged, listed in ``gaps`` and written into its step's end message. Ends of a run on
this channel, each with its reason: the channel unsafe (a safety limit or an alarm; output
off) or its schedule ended by someone else -> InstrumentError; no feedback ->
InstrumentTimeout; a feedback that does not parse -> GarbledReply; the link lost beyond the
reconnections -> InstrumentError. Safe state = THIRD_PARTY_STOP_SCHEDULE (the schedule ends,
output off), reconnecting once if needed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Mapping
from typing import Any, TypeVar

import numpy as np

from drivers.arbin.cti import LOGIN_OK, MV_UD, STATUS, CtiLink, check_result
from drivers.arbin.options import ArbinOptions
from drivers.kit.pacing import empty_block, wait_until
from labctl.channel import (
    Capabilities,
    Channel,
    ConnectionLost,
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
T = TypeVar("T")

KINDS = frozenset({"Rest", "ConstantCurrent", "ConstantVoltage"})
#: The control schedule's meta variables (see the module docstring).
MODE, CURRENT, VOLTAGE, COMMAND, SAFE_V_MAX, SAFE_V_MIN, SAFE_I_MAX = 1, 2, 3, 4, 5, 6, 7
MODE_REST, MODE_CC, MODE_CV = 0, 1, 2
#: MITS Pro refuses MV updates more often than this (set-MV feedback 0x14).
MIN_MV_GAP = 0.2
#: Status codes of a channel whose schedule runs (THIRD_PARTY_STATUS_INFORMATION table).
RUNNING = frozenset({1, 2, 3, 4, 5, 9, 21, 22, 23, 24, 27})
#: … and of one the cycler stopped for safety.
UNSAFE = frozenset({8, 14, 29})
#: A CC step is held at its clamp when |I| < CLAMP_CURRENT × the set current and E is
#: within CLAMP_TOLERANCE (V) of the clamp.
CLAMP_CURRENT = 0.995
CLAMP_TOLERANCE = 5e-3


def status_name(code: int) -> str:
    return STATUS[code] if 0 <= code < len(STATUS) else f"status {code}"


class ArbinChannel(Channel):
    """One Arbin channel driven through the lab's control schedule."""

    name = "arbin"

    def __init__(self, resource: str, options: ArbinOptions, clock: Clock) -> None:
        self.resource = resource
        self.options = options
        self._clock = ScaledClock(options.clock_speed) if options.clock_speed is not None else clock
        self.link = CtiLink(resource, options.timeout)
        self.capabilities = Capabilities(
            step_kinds=KINDS,
            max_current=options.max_current,
            voltage_range=(options.voltage_min, options.voltage_max),
        )
        self._login: dict[str, Any] = {}
        self._running = False
        self._t_test0 = 0.0
        self._last_mv = -math.inf
        self._mv: dict[int, float] = {}
        self._command = 0
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
    def _label(self) -> str:
        return f"Arbin channel {self.options.channel}"

    # --- connection ------------------------------------------------------------------------
    def open(self) -> None:
        self.link.connect()
        login = self.link.request("login", user=self.options.user, password=self.options.password)
        if login["result"] not in LOGIN_OK:
            self.link.close()
            raise InstrumentError(f"Arbin: login as {self.options.user!r} refused (result {login['result']})")
        if self.chan >= login["channels"]:
            self.link.close()
            raise InstrumentError(
                f"Arbin: channel {self.options.channel} is not on this cycler (it has channels 1..{login['channels']})"
            )
        self._login = login

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
        return InstrumentInfo(
            driver="arbin",
            model=f"Arbin ({self._login.get('channels', '?')} channels)",
            serial=str(self._login.get("sn", "")),
            firmware=f"CTI version {self._login.get('version', '?')}",
            resource=self.resource,
            extra={"channel": self.options.channel, "schedule": self.options.schedule},
        )

    # --- messages ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The channel's present reading (THIRD_PARTY_GET_CHANNELS_INFO, this channel only)."""
        self._ensure_open()
        info = self.link.request("channel_info", channel=self.chan, info_type=1, need_type=0)
        if info["count"] < 1 or info["channel"] != self.chan:
            self.link.close()
            raise InstrumentError(f"{self._label}: channel info about channel index {info['channel']}")
        return info

    def _set_mv(self, ctx: StepContext, number: int, value: float) -> Generator[np.ndarray, None, bool]:
        """Write MV_UD<number>, at least ``MIN_MV_GAP`` (cell time) after the previous write;
        False if interrupted while waiting."""
        gap = self._last_mv + MIN_MV_GAP - self.clock.now()
        if gap > 0 and not (yield from wait_until(ctx, ctx.run_time() + gap, empty_block())):
            return False
        yield from self._reconnecting(ctx, lambda: self._write_mv(number, value))
        return True

    def _write_mv(self, number: int, value: float) -> None:
        reply = self.link.request(
            "set_mv", channel=self.chan, mv_type=1, meta_code=MV_UD[number], value_type=1, value=value
        )
        self._last_mv = self.clock.now()
        check_result("set_mv", reply, f"{self._label}: set MV_UD{number} = {value:g}")
        self._mv[number] = float(np.float32(value))

    def _set_points(self, step: Step) -> dict[int, float]:
        lim = step.effective_limits()
        o = self.options
        if isinstance(step, Rest):
            return {MODE: MODE_REST}
        if isinstance(step, ConstantCurrent):
            charge = step.current >= 0
            cutoff = lim.voltage_above if charge else lim.voltage_below
            clamp = cutoff if cutoff is not None else (o.voltage_max if charge else o.voltage_min)
            return {MODE: MODE_CC, CURRENT: step.current, VOLTAGE: clamp}
        if isinstance(step, ConstantVoltage):
            if step.vs_ocv:
                raise InstrumentError("Arbin: ConstantVoltage vs OCV is not supported by the control schedule")
            return {MODE: MODE_CV, CURRENT: o.max_current, VOLTAGE: step.voltage}
        raise InstrumentError(f"Arbin: {step.kind} steps are not supported (allowed: {', '.join(sorted(KINDS))})")

    def _start(self, ctx: StepContext) -> Generator[np.ndarray, None, bool]:
        o = self.options
        check_result(
            "assign_schedule",
            self.link.request("assign_schedule", channel=self.chan, schedule=o.schedule),
            f"{self._label}: assign schedule {o.schedule!r}",
        )
        self._t_test0 = ctx.run_time()
        check_result(
            "start_schedule",
            self.link.request("start_schedule", test_name="labctl", count=1, channel=self.chan),
            f"{self._label}: start schedule {o.schedule!r}",
        )
        self._running = True
        self._mv, self._command, self._last_mv = {}, 0, -math.inf
        margin = o.safety_margin
        for number, value in (
            (SAFE_V_MAX, o.voltage_max + margin),
            (SAFE_V_MIN, o.voltage_min - margin),
            (SAFE_I_MAX, o.max_current * 1.1),
        ):
            if not (yield from self._set_mv(ctx, number, value)):
                return False
        return True

    def _apply(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, bool]:
        """The step's set points, then the command number; False if interrupted."""
        points = self._set_points(step)
        self._ensure_open()
        if not self._running and not (yield from self._start(ctx)):
            return False
        for number in (CURRENT, VOLTAGE, MODE):
            value = points.get(number)
            if value is None or self._mv.get(number) == float(np.float32(value)):
                continue
            if not (yield from self._set_mv(ctx, number, value)):
                return False
        self._command += 1
        return (yield from self._set_mv(ctx, COMMAND, float(self._command)))

    # --- steps ------------------------------------------------------------------------------------
    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        return self._run(step, ctx)

    def _run(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, StepOutcome]:
        gaps_before = len(self.gaps)
        if not (yield from self._apply(step, ctx)):
            return StepOutcome(EndReason.ABORTED, "interrupted")
        base = yield from self._poll(ctx)
        q0 = float(base["charge_capacity"]) - float(base["discharge_capacity"])
        t_start = ctx.run_time()
        lim = step.effective_limits()
        watcher = LimitWatcher(lim, t_start)
        period = step.sample_period
        next_t = t_start
        while True:
            next_t = next_t + period
            if lim.max_time is not None:
                next_t = min(next_t, t_start + lim.max_time)
            if not (yield from wait_until(ctx, next_t, empty_block())):
                return StepOutcome(EndReason.ABORTED, "interrupted")
            reading = yield from self._poll(ctx)
            block = empty_samples(1)
            block["t"] = self._t_test0 + float(reading["test_time"])
            block["E"] = float(reading["voltage"])
            block["I"] = float(reading["current"])
            block["Q"] = (float(reading["charge_capacity"]) - float(reading["discharge_capacity"]) - q0) * 3600.0
            self._last_voltage = float(reading["voltage"])
            hit = watcher.check(block) or self._clamped(step, block)
            yield block
            if hit is not None:
                reason = hit[1]
                if isinstance(step, Rest) and reason == EndReason.TIME:
                    reason = EndReason.COMPLETED
                message = f"{reason.value} (labctl's step logic on the cycler's readings)"
                return StepOutcome(reason, message + self._gap_notes(self.gaps[gaps_before:]))

    def _gap_notes(self, gaps: list[tuple[float, float]]) -> str:
        """The step's dropped-link gaps, for its end message (the run file says where the
        curve has no points and why; the charge stays right: the capacities are the cycler's)."""
        return "".join(
            f"; no readings from {a:.1f} to {b:.1f} s (link down; MITS Pro's own data file has them)" for a, b in gaps
        )

    def _clamped(self, step: Step, block: np.ndarray) -> tuple[int, EndReason] | None:
        """A CC step whose clamp took over: the channel holds the cutoff (current below its
        set point, voltage at the cutoff within ``CLAMP_TOLERANCE``)."""
        if not isinstance(step, ConstantCurrent) or step.current == 0:
            return None
        lim = step.effective_limits()
        charge = step.current > 0
        cutoff = lim.voltage_above if charge else lim.voltage_below
        e, i = float(block["E"][0]), float(block["I"][0])
        if cutoff is None or abs(i) >= CLAMP_CURRENT * abs(step.current) or abs(e - cutoff) > CLAMP_TOLERANCE:
            return None
        return 0, EndReason.VOLTAGE_ABOVE if charge else EndReason.VOLTAGE_BELOW

    def _check_status(self, reading: dict[str, Any]) -> None:
        code = int(reading["status"])
        if code in UNSAFE:
            raise InstrumentError(
                f"{self._label}: stopped by the cycler as {status_name(code)} (safety limit or alarm); output off"
            )
        if code not in RUNNING:
            raise InstrumentError(f"{self._label}: schedule ended at the cycler ({status_name(code)}), not by labctl")

    def _poll(self, ctx: StepContext) -> Generator[np.ndarray, None, dict[str, Any]]:
        reading = yield from self._reconnecting(ctx, self.status)
        self._check_status(reading)
        return reading

    def _reconnecting(self, ctx: StepContext, action: Callable[[], T]) -> Generator[np.ndarray, None, T]:
        """``action()``, reconnecting after a dropped link (``reconnect_attempts`` ×
        ``reconnect_wait``, at least ``MIN_MV_GAP``: a set MV that reached the cycler before
        the link dropped must not make its repetition too early). A retried MV write is
        harmless: the same value again changes nothing, UD4 included. The time without
        readings is a gap."""
        attempts = self.options.reconnect_attempts
        lost_at: float | None = None
        for attempt in range(attempts + 1):
            try:
                result = action()
                if lost_at is not None:
                    self.gaps.append((lost_at, ctx.run_time()))
                    log.warning(
                        "%s: no readings from %.1f to %.1f s (link down; MITS Pro's data file has them)",
                        self._label,
                        lost_at,
                        ctx.run_time(),
                    )
                return result
            except ConnectionLost as exc:
                if attempt == attempts:
                    raise InstrumentError(f"{self._label}: link lost, {attempts} reconnections failed: {exc}") from exc
                lost_at = ctx.run_time() if lost_at is None else lost_at
                log.warning("%s: %s; reconnecting", self._label, exc)
                wait = max(self.options.reconnect_wait, MIN_MV_GAP)
                if not (yield from wait_until(ctx, ctx.run_time() + wait, empty_block())):
                    raise InstrumentError("Arbin: interrupted while reconnecting") from exc
                try:
                    self._reopen()
                    self.reconnects += 1
                except ConnectionLost as again:
                    log.warning("%s: reconnection failed: %s", self._label, again)
        raise AssertionError("unreachable")

    # --- safety ------------------------------------------------------------------------------------
    def hold(self) -> None:
        """Holding = the control schedule's rest (mode 0, output off; the schedule stays
        running so the run can go on)."""
        if not self._running:
            return

        def rest() -> None:
            self._ensure_open()
            for number, value in ((MODE, MODE_REST), (COMMAND, float(self._command + 1))):
                self.clock.sleep(max(self._last_mv + MIN_MV_GAP - self.clock.now(), 0.0))
                self._write_mv(number, value)
            self._command += 1

        with_one_reconnect(rest, self._reopen, instrument=self._label, goal="hold the channel")

    def safe_state(self) -> None:
        def stop() -> None:
            self._ensure_open()
            reply = self.link.request("stop_schedule", channel=self.chan, stop_all=0)
            if int(reply["result"]) != 0 and int(self.status()["status"]) in RUNNING:
                check_result("stop_schedule", reply, f"{self._label}: stop schedule")  # still running: not safe
            self._running = False

        with_one_reconnect(stop, self._reopen, instrument=self._label, goal="stop the schedule")


def create(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> ArbinChannel:
    """The driver factory named in ``labctl.registry`` (connects on ``open``)."""
    from labctl.clock import RealClock

    return ArbinChannel(resource, ArbinOptions.parse(options), clock or RealClock())
