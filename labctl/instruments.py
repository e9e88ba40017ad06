"""Turning an instrument name from the command line into a Channel.

``sim`` needs no configuration: it is the physics simulator, with its truth
set by ``--sim name=value``. Configured instruments (a lab file) come later
through the same function, so the CLI, the queue and the GUI share one path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers.base import Channel
from labctl.clock import make_sim_clock
from labctl.params import ParameterError


@dataclass(frozen=True)
class ChannelSpec:
    """How to build the channel for a run (kept for the run file)."""

    instrument: str
    sim: Mapping[str, str]
    speed: float | None  # None = as fast as possible (simulators only)


def parse_speed(text: str) -> float | None:
    """``max`` -> None (virtual time as fast as possible), ``N`` -> N x real time."""
    if text.strip().lower() in ("max", "inf", "fastest"):
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ParameterError("speed", f"cannot read {text!r} (allowed: max, or a number > 0)") from None
    if not speed > 0:
        raise ParameterError("speed", f"{text} is out of range (allowed: max, or a number > 0)")
    return speed


def open_channel(spec: ChannelSpec, cell_type: str) -> tuple[Channel, dict[str, Any] | None]:
    """The channel, and the simulation truth to record (None on hardware)."""
    if spec.instrument == "sim":
        from drivers.sim import SimChannel, SimParams

        params = SimParams.from_strings(dict(spec.sim))
        clock = make_sim_clock(spec.speed)
        chosen_type = cell_type if params.cell == "auto" else params.cell
        channel = SimChannel(params, chosen_type, clock)
        truth = {**params.as_dict(), "cell": chosen_type, "speed": "max" if spec.speed is None else spec.speed}
        return channel, truth
    if spec.sim:
        raise ParameterError("sim", "--sim settings apply only to --instrument sim")
    raise ParameterError(
        "instrument",
        f"unknown instrument {spec.instrument!r} (allowed: sim; configured instruments need --lab)",
    )
