"""A potentiostat channel in a temperature chamber, as one Channel.

SetTemperature steps go to the chamber (set point, then poll until the
reading has stayed within tolerance for the settle time); every other step
goes to the potentiostat, with the chamber's reading written into the T column
of its sample blocks. Both instruments reach their safe state on every exit
path: the potentiostat's output off, the chamber to standby.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drivers.kit.pacing import empty_block, wait_until
from labctl.channel import (
    Capabilities,
    Channel,
    InstrumentInfo,
    StepContext,
    StepOutcome,
    StepRun,
    TemperatureController,
)
from labctl.clock import Clock
from labctl.steps import SAMPLE_DTYPE, SPECTRUM_DTYPE, EndReason, SetTemperature, Step, empty_samples


def run_set_temperature(chamber: TemperatureController, step: SetTemperature, ctx: StepContext) -> StepRun:
    """Set the chamber and wait until stable (or time out), yielding T readings."""
    chamber.set_temperature(step.celsius)
    t_begin = ctx.run_time()
    stable_since: float | None = None
    while True:
        if not (yield from wait_until(ctx, ctx.run_time() + step.sample_period, empty_block())):
            return StepOutcome(EndReason.ABORTED, "interrupted")
        now = ctx.run_time()
        reading = chamber.read_temperature()
        block = empty_samples(1)
        block["t"] = now
        block["T"] = reading
        yield block
        if abs(reading - step.celsius) <= step.tolerance:
            stable_since = now if stable_since is None else stable_since
            if now - stable_since >= step.settle_time:
                return StepOutcome(EndReason.TEMPERATURE_STABLE, f"stable at {reading:.2f} °C")
        else:
            stable_since = None
        if now - t_begin >= step.timeout:
            return StepOutcome(EndReason.TIMEOUT, f"not stable after {step.timeout:g} s (at {reading:.2f} °C)")


class ChamberChannel(Channel):
    """``channel`` inside ``chamber``."""

    def __init__(self, channel: Channel, chamber: TemperatureController) -> None:
        self.channel = channel
        self.chamber = chamber
        self.name = f"{channel.name}+{chamber.name}"
        base = channel.capabilities
        self.capabilities = Capabilities(
            step_kinds=base.step_kinds | {"SetTemperature"},
            max_current=base.max_current,
            voltage_range=base.voltage_range,
            frequency_range=base.frequency_range,
            impedance_modes=base.impedance_modes,
        )

    @property
    def clock(self) -> Clock:
        return self.channel.clock

    def open(self) -> None:
        self.channel.open()
        self.chamber.open()

    def close(self) -> None:
        try:
            self.channel.close()
        finally:
            self.chamber.close()

    def identify(self) -> InstrumentInfo:
        main = self.channel.identify()
        return InstrumentInfo(
            driver=main.driver,
            model=main.model,
            serial=main.serial,
            firmware=main.firmware,
            resource=main.resource,
            extra={**main.extra, "chamber": self.chamber.identify().as_dict()},
        )

    def cell_info(self) -> dict[str, Any] | None:
        return self.channel.cell_info()

    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        if isinstance(step, SetTemperature):
            return (yield from run_set_temperature(self.chamber, step, ctx))
        run = self.channel.run_step(step, ctx)
        temperature = self.chamber.read_temperature()
        try:
            while True:
                try:
                    block = next(run)
                except StopIteration as stop:
                    return stop.value
                if len(block) and block.dtype in (SAMPLE_DTYPE, SPECTRUM_DTYPE):
                    temperature = self.chamber.read_temperature()
                    block = block.copy()
                    block["T"] = np.where(np.isfinite(block["T"]), block["T"], temperature)
                yield block
        finally:
            run.close()

    def hold(self) -> None:
        self.channel.hold()

    def safe_state(self) -> None:
        errors = []
        for action in (self.channel.safe_state, self.chamber.standby):
            try:
                action()
            except Exception as exc:  # both must be attempted
                errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))
