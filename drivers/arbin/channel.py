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

import math
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np

from drivers.arbin.cti import LOGIN_OK, MV_UD, STATUS, CtiLink, check_result
from drivers.arbin.options import ArbinOptions
from drivers.kit.pacing import empty_block, wait_until
from drivers.kit.polled_cycler import KINDS, PolledCyclerChannel
from labctl.channel import InstrumentError, InstrumentInfo, StepContext, with_one_reconnect
from labctl.clock import Clock
from labctl.steps import ConstantCurrent, ConstantVoltage, Rest, Step, empty_samples

#: The control schedule's meta variables (see the module docstring).
MODE, CURRENT, VOLTAGE, COMMAND, SAFE_V_MAX, SAFE_V_MIN, SAFE_I_MAX = 1, 2, 3, 4, 5, 6, 7
MODE_REST, MODE_CC, MODE_CV = 0, 1, 2
#: MITS Pro refuses MV updates more often than this (set-MV feedback 0x14).
MIN_MV_GAP = 0.2
#: Status codes of a channel whose schedule runs (THIRD_PARTY_STATUS_INFORMATION table).
RUNNING = frozenset({1, 2, 3, 4, 5, 9, 21, 22, 23, 24, 27})
#: … and of one the cycler stopped for safety.
UNSAFE = frozenset({8, 14, 29})


def _net_capacity(reading: dict[str, Any]) -> float:
    """Charge minus discharge capacity (Ah): cumulative over the schedule on MITS Pro."""
    return float(reading["charge_capacity"]) - float(reading["discharge_capacity"])


def status_name(code: int) -> str:
    return STATUS[code] if 0 <= code < len(STATUS) else f"status {code}"


class ArbinChannel(PolledCyclerChannel):
    """One Arbin channel driven through the lab's control schedule."""

    name = "arbin"
    vendor = "Arbin"
    gap_keeper = "MITS Pro's own data file"
    #: A set MV that reached the cycler before the link dropped must not make its repetition
    #: too early (MITS Pro would refuse it).
    min_reconnect_wait = MIN_MV_GAP
    options: ArbinOptions

    def __init__(self, resource: str, options: ArbinOptions, clock: Clock) -> None:
        super().__init__(resource, options, clock)
        self.link = CtiLink(resource, options.timeout)
        self._login: dict[str, Any] = {}
        self._running = False
        self._last_mv = -math.inf
        self._mv: dict[int, float] = {}
        self._command = 0
        self._q0 = 0.0  # the cycler's net capacity (Ah) when the step started

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
            raise InstrumentError(f"{self.label}: channel info about channel index {info['channel']}")
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
        check_result("set_mv", reply, f"{self.label}: set MV_UD{number} = {value:g}")
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
            f"{self.label}: assign schedule {o.schedule!r}",
        )
        self._t_test0 = ctx.run_time()
        check_result(
            "start_schedule",
            self.link.request("start_schedule", test_name="labctl", count=1, channel=self.chan),
            f"{self.label}: start schedule {o.schedule!r}",
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
        """The step's set points, then the command number, then a reading: the step's charge
        baseline (the capacity counters run over the whole schedule); False if interrupted."""
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
        if not (yield from self._set_mv(ctx, COMMAND, float(self._command))):
            return False
        self._q0 = _net_capacity((yield from self._poll(ctx)))
        return True

    # --- the host loop's vendor part -------------------------------------------------------------
    def _sample(self, step: Step, reading: dict[str, Any]) -> np.ndarray:
        """Q from the cycler's cumulative capacity counters, from the step's baseline."""
        block = empty_samples(1)
        block["t"] = self._t_test0 + float(reading["test_time"])
        block["E"] = float(reading["voltage"])
        block["I"] = float(reading["current"])
        block["Q"] = (_net_capacity(reading) - self._q0) * 3600.0
        return block

    def _check_status(self, reading: dict[str, Any]) -> None:
        code = int(reading["status"])
        if code in UNSAFE:
            raise InstrumentError(
                f"{self.label}: stopped by the cycler as {status_name(code)} (safety limit or alarm); output off"
            )
        if code not in RUNNING:
            raise InstrumentError(f"{self.label}: schedule ended at the cycler ({status_name(code)}), not by labctl")

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

        with_one_reconnect(rest, self._reopen, instrument=self.label, goal="hold the channel")

    def safe_state(self) -> None:
        def stop() -> None:
            self._ensure_open()
            reply = self.link.request("stop_schedule", channel=self.chan, stop_all=0)
            if int(reply["result"]) != 0 and int(self.status()["status"]) in RUNNING:
                check_result("stop_schedule", reply, f"{self.label}: stop schedule")  # still running: not safe
            self._running = False

        with_one_reconnect(stop, self._reopen, instrument=self.label, goal="stop the schedule")


def create(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> ArbinChannel:
    """The driver factory named in ``labctl.registry`` (connects on ``open``)."""
    from labctl.clock import RealClock

    return ArbinChannel(resource, ArbinOptions.parse(options), clock or RealClock())
