"""A deliberately tiny channel for engine tests: an ideal resistor in virtual time.

It implements the Channel interface honestly (chunks, limits, interrupt), so
the engine's behaviour can be tested without the full physics simulator.
"""

from __future__ import annotations

import numpy as np

from labctl.channel import Capabilities, Channel, InstrumentError, InstrumentInfo, StepContext, StepOutcome
from labctl.clock import Clock, VirtualClock
from labctl.limits import LimitWatcher
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Rest, Step, empty_samples


class ResistorChannel(Channel):
    name = "resistor"

    def __init__(
        self,
        resistance: float = 100.0,
        ocv: float = 0.0,
        clock: Clock | None = None,
        chunk: int = 50,
        fail_at_step: int | None = None,
    ) -> None:
        self.resistance = resistance
        self.ocv = ocv
        self._clock = clock or VirtualClock()
        self.chunk = chunk
        self.capabilities = Capabilities(step_kinds=frozenset({"Rest", "ConstantCurrent", "ConstantVoltage"}))
        self.output_on = False
        self.events: list[str] = []
        self.steps_run = 0
        self.fail_at_step = fail_at_step

    @property
    def clock(self) -> Clock:
        return self._clock

    def identify(self) -> InstrumentInfo:
        return InstrumentInfo(driver="test", model="ideal resistor", serial="R1")

    def cell_info(self):
        return {"type": "test", "area_cm2": 1.0, "thickness_um": 100.0}

    def run_step(self, step: Step, ctx: StepContext):
        self.steps_run += 1
        if self.fail_at_step is not None and self.steps_run > self.fail_at_step:
            raise InstrumentError("simulated instrument fault")
        self.output_on = step.powered
        self.events.append(f"run {step.kind}")
        watcher = LimitWatcher(step.effective_limits(), ctx.run_time())
        dt = step.sample_period
        q = 0.0
        while True:
            if ctx.interrupt.is_set():
                return StepOutcome(EndReason.ABORTED)
            t0 = ctx.run_time()
            t = t0 + dt * np.arange(1, self.chunk + 1)
            block = empty_samples(len(t))
            block["t"] = t
            if isinstance(step, ConstantCurrent):
                block["I"] = step.current
                block["E"] = self.ocv + step.current * self.resistance
            elif isinstance(step, ConstantVoltage):
                block["E"] = step.voltage
                block["I"] = (step.voltage - self.ocv) / self.resistance
            elif isinstance(step, Rest):
                block["E"] = self.ocv
                block["I"] = 0.0
            block["Q"] = q + np.cumsum(block["I"] * dt)
            hit = watcher.check(block)
            if hit is not None:
                block = block[: hit[0] + 1]
            ctx.clock.sleep_until(ctx.t_origin + float(block["t"][-1]))
            q = float(block["Q"][-1])
            yield block
            if hit is not None:
                return StepOutcome(hit[1])

    def hold(self) -> None:
        self.output_on = False
        self.events.append("hold")

    def safe_state(self) -> None:
        self.output_on = False
        self.events.append("safe")
