"""Waiting inside a step: until a run time, watching the interrupt, feeding the engine.

A channel's step is a generator the engine iterates: while it waits (the next
sample of a host-timed loop, a sweep the instrument is measuring) it must still
hand the engine a block at least every ``ctx.max_block_wall`` wall seconds, so
the engine can flush, update progress and act on pause/abort, and it must stop
waiting at once when ``ctx.interrupt`` is set. ``wait_until`` is that loop,
written once; a ``VirtualClock`` jumps straight to the target.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from labctl.channel import StepContext
from labctl.steps import SAMPLE_DTYPE

#: Fraction of ``max_block_wall`` waited before a block is handed over (leaves the
#: engine slack for the block's own handling).
BLOCK_SHARE = 0.8


def empty_block(dtype: np.dtype = SAMPLE_DTYPE) -> Callable[[], np.ndarray]:
    """A ``pending`` for ``wait_until`` when nothing was measured: an empty block."""
    return lambda: np.empty(0, dtype=dtype)


def wait_until(
    ctx: StepContext,
    until: float,
    pending: Callable[[], np.ndarray],
    wall_left: Callable[[], float] | None = None,
) -> Generator[np.ndarray, None, bool]:
    """Sleep until run time ``until``; False when the step was interrupted first.

    ``pending()`` gives the block to hand the engine while waiting (what was
    measured and not yet handed over, or an empty block); ``wall_left()`` the
    wall seconds before one is due (default: ``BLOCK_SHARE × max_block_wall``
    from each hand-over)."""
    clock = ctx.clock
    share = BLOCK_SHARE * ctx.max_block_wall
    while True:
        now = ctx.run_time()
        if now >= until:
            return True
        left = share if wall_left is None else wall_left()
        if clock.virtual or (until - now) / clock.speed <= left:
            return clock.sleep_until(ctx.t_origin + until, ctx.interrupt)
        if left > 0 and not clock.sleep(left * clock.speed, ctx.interrupt):
            return False
        yield pending()
