"""A Maccor channel as a labctl Channel: MacNet direct mode, labctl's own step logic.

The driver is a client of MacNet on the Maccor PC (JSON-RPC over TCP,
``drivers.maccor.macnet``). Rather than compiling a Maccor procedure, it runs
the channel in *direct mode*: message (6, 7) starts a direct-mode test with the
first step's set points, (6, 8) changes them at each following step, and the
driver polls (4, 7) "all status and readings of one channel" every sample
period, ending each step by the step's limits (``labctl.limits``) as a
host-timed loop does (the loop is shared with the Arbin driver:
``drivers.kit.polled_cycler``). Set points are mutually limiting on a Maccor, so a
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
from drivers.kit.polled_cycler import KINDS, PolledCyclerChannel
from drivers.maccor.macnet import MacNetLink
from drivers.maccor.options import MaccorOptions
from labctl.channel import GarbledReply, InstrumentError, InstrumentInfo, StepContext, with_one_reconnect
from labctl.clock import Clock
from labctl.steps import ConstantCurrent, ConstantVoltage, Rest, Step, empty_samples

log = logging.getLogger(__name__)

#: A set point MacNet ignores ("set outside range to ignore").
IGNORE = 65536.0
MIN_COMMAND_GAP = 0.1
STAT_RUNNING, STAT_SUSPENDED = 1, 2


class MaccorChannel(PolledCyclerChannel):
    """One Maccor channel driven in MacNet direct mode."""

    name = "maccor"
    vendor = "Maccor"
    options: MaccorOptions

    def __init__(self, resource: str, options: MaccorOptions, clock: Clock) -> None:
        super().__init__(resource, options, clock)
        self.link = MacNetLink(resource, options.timeout)
        self._info: dict[str, Any] = {}
        self._direct = False
        self._last_command = -math.inf

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
            raise InstrumentError(f"{self.label}: {what} refused (result {result.get('Result')!r})")

    def _apply(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, bool]:
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
                return False
            result = self.link.call(
                6, 8, Chan=self.chan, Power=IGNORE, Resistance=0, CurrentRange=self.options.current_range, **points
            )
            self._check(result, "(6, 8) set direct output")
        self._last_command = ctx.run_time()
        return True

    # --- the host loop's vendor part -------------------------------------------------------------
    def _check_status(self, reading: dict[str, Any]) -> None:
        stat = int(reading["Stat"])
        if stat == STAT_SUSPENDED:
            raise InstrumentError(
                f"{self.label}: suspended by the cycler (safety limit or alarm, status {stat}); output off"
            )
        if stat != STAT_RUNNING:
            raise InstrumentError(f"{self.label}: test ended at the cycler (status {stat}), not by labctl")

    def _sample(self, step: Step, reading: dict[str, Any]) -> np.ndarray:
        """``Capacity`` is unsigned per step on a Maccor: its sign is the step's direction
        (a CC step's set current, otherwise the measured current)."""
        block = empty_samples(1)
        current = float(reading["Current"])
        if isinstance(step, ConstantCurrent):
            sign = 1.0 if step.current >= 0 else -1.0
        else:
            sign = 1.0 if current >= 0 else -1.0
        block["t"] = self._t_test0 + float(reading["TestTime"])
        block["E"] = float(reading["Voltage"])
        block["I"] = current
        block["Q"] = sign * abs(float(reading["Capacity"])) * 3600.0
        return block

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

        with_one_reconnect(rest, self._reopen, instrument=self.label, goal="hold the channel")

    def safe_state(self) -> None:
        def reset() -> None:
            self._ensure_open()
            result = self.link.call(6, 5, Chan=self.chan)
            if result.get("Result") != "OK" and int(self.status()["Stat"]) in (STAT_RUNNING,):
                self._check(result, "(6, 5) reset channel")  # refused while running: not safe
            self._direct = False

        with_one_reconnect(reset, self._reopen, instrument=self.label, goal="reset the channel")


def create(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> MaccorChannel:
    """The driver factory named in ``labctl.registry`` (connects on ``open``)."""
    from labctl.clock import RealClock

    return MaccorChannel(resource, MaccorOptions.parse(options), clock or RealClock())
