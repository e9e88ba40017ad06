"""How a job's parameters are kept in the store, and where a job's channel is.

``Job.params`` holds the protocol parameters exactly as typed (text, lab units: validated
again when the job starts) and, under the reserved key ``@sim``, the simulated cell's truth
(``--sim``) as a table of text. ``@`` cannot start a protocol parameter name, so the two never
mix. The estimator and the GUI read them back with ``split_params``.

Simulated channels are named ``sim1``, ``sim2``, … (``queue run --sim-channels N``): each is
an independent physics simulator. Any other channel name is a lab-file channel (``NAME`` or
``NAME:CHANNEL``), exactly as ``labctl run --instrument`` takes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

SIM_KEY = "@sim"
_SIM_CHANNEL = re.compile(r"sim[1-9][0-9]{0,3}")


def is_sim_channel(channel: str) -> bool:
    """True for the simulated channels ``sim1`` … ``sim9999``."""
    return bool(_SIM_CHANNEL.fullmatch(channel))


def instrument_for(channel: str | None) -> str:
    """The ``--instrument`` a job on ``channel`` runs with (``sim`` for simulated channels)."""
    if channel is None or is_sim_channel(channel):
        return "sim"
    return channel


def wall_pace(speed: str) -> Callable[[str | None], float | None]:
    """Wall seconds per cell second on a channel: 1 on hardware, 1/N on a simulated channel run
    at ``--speed N``, None at ``--speed max`` (as fast as the host goes: no wall time to give).

    Estimates are in cell seconds; a clock time shown to a technician must be wall time."""
    from labctl.speed import parse_speed

    factor = parse_speed(speed)

    def pace(channel: str | None) -> float | None:
        if channel is None or not is_sim_channel(channel):
            return 1.0
        return None if factor is None else 1.0 / factor

    return pace


def as_text(value: Any) -> str:
    """A parameter value as the command line would have typed it (lists comma-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(as_text(v) for v in value)
    return str(value)


def job_params(params: Mapping[str, Any], sim: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``params`` stored for a job: protocol parameters as text, the sim truth under ``@sim``."""
    stored: dict[str, Any] = {name: as_text(value) for name, value in params.items()}
    if sim:
        stored[SIM_KEY] = {name: as_text(value) for name, value in sim.items()}
    return stored


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(protocol parameters, simulated-cell truth) of a stored job."""
    protocol = {name: as_text(value) for name, value in params.items() if name != SIM_KEY}
    sim_raw = params.get(SIM_KEY) or {}
    sim = {name: as_text(value) for name, value in dict(sim_raw).items()}
    return protocol, sim


def fits_channel(channel: str, job: Any) -> bool:
    """Whether an "any channel" job may go to ``channel``: one that sets a simulated cell's
    truth only to a simulated channel (on an instrument its ``--sim`` would be refused)."""
    return is_sim_channel(channel) or not job.params.get(SIM_KEY)
