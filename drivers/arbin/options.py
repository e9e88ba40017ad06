"""Options of the Arbin CTI driver (a lab file's ``options`` table), checked by name.

A lab-file channel of an Arbin is named by its channel number as MITS Pro's Monitor and
Control window shows it (1, 2, …); CTI numbers channels from 0 on the wire (channel index
= number − 1). Each is an ordinary labctl channel. ``user``/``password`` are the CTI login
(MITS Pro's user list); a lab that keeps them out of its lab file leaves the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivers.kit.options import DriverOptions, OptionError, option


@dataclass(frozen=True)
class ArbinOptions(DriverOptions):
    """Driver options (the lab file's ``options`` table)."""

    family: ClassVar[str] = "arbin"

    channel: str = option("1", "str", "the channel number as MITS Pro shows it, from 1 (the lab file's channel name)")
    schedule: str = option(
        "labctl_direct.sdx", "str", "the lab's control schedule on MITS Pro (docs/arbin-control-schedule.md)"
    )
    user: str = option("admin", "str", "CTI login user")
    password: str = option("000000", "str", "CTI login password")
    timeout: float = option(10.0, "float", "feedback timeout (the CTI protocol recommends 10 s)", unit="s",
                            above=0, maximum=600)  # fmt: skip
    max_current: float = option(1.0, "float", "largest current a step may ask for; CV current limit", unit="A", above=0)
    voltage_min: float = option(0.0, "float", "lowest voltage a step may ask for", unit="V", minimum=-10, maximum=10)
    voltage_max: float = option(5.0, "float", "highest voltage a step may ask for", unit="V", minimum=-10, maximum=10)
    safety_margin: float = option(
        0.1,
        "float",
        "safety meta variables this far beyond voltage_min/max and 10 % above max_current",
        unit="V",
        minimum=0,
    )
    reconnect_attempts: int = option(5, "int", "reconnections tried after a dropped link", minimum=0, maximum=1000)
    reconnect_wait: float = option(2.0, "float", "wait between reconnections (cell time)", unit="s", minimum=0)
    clock_speed: float | None = option(None, "float", "run on a clock N× real time (wire emulators)", above=0)

    def check(self) -> None:
        if not self.channel.isdigit() or int(self.channel) < 1:
            raise OptionError.bad_value(
                self.family, "channel", self.channel, "is not a channel number (allowed: a whole number from 1)"
            )
        if not self.schedule.strip() or len(self.schedule) > 199:
            raise OptionError.bad_value(
                self.family, "schedule", self.schedule, "is not a schedule name (allowed: 1 to 199 characters)"
            )
        for key in ("user", "password"):
            if len(getattr(self, key).encode("latin-1", errors="replace")) > 32:
                raise OptionError.bad_value(self.family, key, "…", "is too long (allowed: up to 32 characters)")
        if self.voltage_min >= self.voltage_max:
            raise OptionError.bad_value(
                self.family, "voltage_min", self.voltage_min, f"is not below voltage_max {self.voltage_max!r}"
            )

    @property
    def chan(self) -> int:
        """The wire channel index (from 0)."""
        return int(self.channel) - 1
