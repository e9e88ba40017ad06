"""Drive a channel step by step without the engine (tests, quick dry runs, notebooks).

The engine does much more (sinks, safety limits, pause); this is the minimum
loop the Channel contract asks for: iterate ``run_step``, collect the blocks,
take the StepOutcome from StopIteration.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from labctl.channel import Channel, StepContext, StepOutcome
from labctl.steps import SAMPLE_DTYPE, SPECTRUM_DTYPE, Impedance, Step


@dataclass
class Ran:
    """What one step produced."""

    outcome: StepOutcome
    data: np.ndarray  # SAMPLE_DTYPE rows (SPECTRUM_DTYPE for impedance steps)
    blocks: int  # how many blocks the channel yielded (empty ones included)


def context(channel: Channel, t_origin: float | None = None) -> StepContext:
    """A StepContext on the channel's clock, run time starting now."""
    clock = channel.clock
    return StepContext(clock=clock, t_origin=clock.now() if t_origin is None else t_origin, interrupt=threading.Event())


def drive(channel: Channel, step: Step, ctx: StepContext) -> Ran:
    """Run one step to its end and return its outcome and samples."""
    dtype = SPECTRUM_DTYPE if isinstance(step, Impedance) else SAMPLE_DTYPE
    gen = channel.run_step(step, ctx)
    blocks: list[np.ndarray] = []
    count = 0
    while True:
        try:
            block = next(gen)
        except StopIteration as stop:
            outcome = stop.value
            break
        count += 1
        if len(block):
            blocks.append(block)
    data = np.concatenate(blocks) if blocks else np.empty(0, dtype=dtype)
    return Ran(outcome, data, count)
