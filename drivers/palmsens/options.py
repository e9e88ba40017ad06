"""Options of the MethodSCRIPT driver (EmStat4, Nexus, EmStat Pico): a lab file's ``options``.

Kept apart from the driver so the lab-file loader can check them without
opening a serial port library. Baud rates and current ranges from the
EmStat4 / EmStat Pico communication protocol documents (230400 baud for the
EmStat4, 230400 for the Pico; autorange limits are currents the model has).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivers.kit.options import DriverOptions, option


@dataclass(frozen=True)
class Options(DriverOptions):
    """The driver's options, parsed and checked once (lab files give strings)."""

    family: ClassVar[str] = "MethodSCRIPT driver"

    timeout: float = option(3.0, "float", "reply timeout; also the slack of the streaming watchdog", unit="s", above=0)
    baudrate: int | None = option(None, "int", "serial speed (default: the model's)", minimum=1200, maximum=4_000_000)
    clock_speed: float | None = option(None, "float", "run on a clock N× real time (wire emulators)", above=0)
    variant: str | None = option(None, "choice", "EmStat4 variant", choices=("hr", "lr"))
    max_current: float | None = option(None, "float", "lowers the channel's current limit", unit="A", above=0)
    autorange_min: float | None = option(None, "float", "smallest current range autoranging may use", unit="A", above=0)
    autorange_max: float | None = option(None, "float", "largest current range autoranging may use", unit="A", above=0)
    channel: str | None = option(None, "str", "the lab file's name for this channel (shown in the channel's name)")
    pgstat_channel: int = option(0, "int", "set_pgstat_chan: the potentiostat channel the scripts use", minimum=0)
    ocp_seconds: float = option(
        0.5, "float", "open-circuit measurement before a step that starts from OCV", unit="s", above=0
    )
    overload: str = option(
        "compliance", "choice", "an overload ends the step (compliance) or fails the run (error)",
        choices=("compliance", "error"),
    )
    exclusive: bool = option(True, "bool", "lock the serial port")
