"""Options of the Maccor MacNet driver (a lab file's ``options`` table), checked by name.

A lab-file channel of a Maccor instrument is named by its channel number as
MacTest shows it (1, 2, …); MacNet numbers channels from 0 on the wire
(``Chan`` = number − 1). Each is an ordinary labctl channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivers.kit.options import DriverOptions, OptionError, option


@dataclass(frozen=True)
class MaccorOptions(DriverOptions):
    """Driver options (the lab file's ``options`` table)."""

    family: ClassVar[str] = "maccor"

    channel: str = option("1", "str", "the channel number as MacTest shows it, from 1 (the lab file's channel name)")
    timeout: float = option(5.0, "float", "reply timeout", unit="s", above=0, maximum=600)
    max_current: float = option(1.0, "float", "largest current a step may ask for; CV current limit", unit="A", above=0)
    voltage_min: float = option(0.0, "float", "lowest voltage a step may ask for", unit="V", minimum=-10, maximum=10)
    voltage_max: float = option(5.0, "float", "highest voltage a step may ask for", unit="V", minimum=-10, maximum=10)
    current_range: int = option(1, "int", "MacNet current range (1 = the highest)", minimum=1, maximum=4)
    safety_margin: float = option(
        0.1,
        "float",
        "channel safety limits (6, 10) this far beyond voltage_min/max and 10 % above max_current",
        unit="V",
        minimum=0,
    )
    data_time: float = option(1.0, "float", "record interval of the Maccor data file", unit="s", above=0)
    reconnect_attempts: int = option(5, "int", "reconnections tried after a dropped link", minimum=0, maximum=1000)
    reconnect_wait: float = option(2.0, "float", "wait between reconnections (cell time)", unit="s", minimum=0)
    clock_speed: float | None = option(None, "float", "run on a clock N× real time (wire emulators)", above=0)

    def check(self) -> None:
        if not self.channel.isdigit() or int(self.channel) < 1:
            raise OptionError.bad_value(
                self.family, "channel", self.channel, "is not a channel number (allowed: a whole number from 1)"
            )
        if self.voltage_min >= self.voltage_max:
            raise OptionError.bad_value(
                self.family, "voltage_min", self.voltage_min, f"is not below voltage_max {self.voltage_max!r}"
            )

    @property
    def chan(self) -> int:
        """The wire channel number (from 0)."""
        return int(self.channel) - 1
