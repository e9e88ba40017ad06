"""Options of the Neware BTS driver (a lab file's ``options`` table), checked by name.

A lab-file channel of a Neware instrument is named by its BTS address
``DEVID-SUBDEVID-CHLID`` (e.g. ``27-1-3``: device 27, unit 1, channel 3), the
"pipeline" form public BTS clients use; every channel of the cycler is then an
ordinary labctl channel, and the queue can run a different job on each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from drivers.kit.options import DriverOptions, OptionError, option

ADDRESS = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass(frozen=True)
class NewareOptions(DriverOptions):
    """Driver options (the lab file's ``options`` table)."""

    family: ClassVar[str] = "neware"

    channel: str = option("27-1-1", "str", "the BTS address DEVID-SUBDEVID-CHLID (the lab file's channel name)")
    timeout: float = option(5.0, "float", "reply timeout", unit="s", above=0, maximum=600)
    poll_period: float | None = option(
        None, "float", "status/download interval (default: the step's sample period, at least 1 s)", unit="s", above=0
    )
    record_period: float | None = option(
        None,
        "float",
        "record interval written in the step file (default: the step's sample period)",
        unit="s",
        minimum=0.1,
    )
    max_current: float = option(1.0, "float", "largest current a step may ask for; CV current limit", unit="A", above=0)
    voltage_min: float = option(0.0, "float", "lowest voltage a step may ask for", unit="V", minimum=-10, maximum=10)
    voltage_max: float = option(5.0, "float", "highest voltage a step may ask for", unit="V", minimum=-10, maximum=10)
    step_dir: str | None = option(
        None, "str", "folder where the driver writes step files (default: a temporary folder)"
    )
    remote_step_dir: str | None = option(
        None, "str", "the same folder as the BTS PC names it, e.g. a share (default: step_dir)"
    )
    username: str = option("admin", "str", "BTS server user")
    password: str = option("neware", "str", "BTS server password")
    reconnect_attempts: int = option(5, "int", "reconnections tried after a dropped link", minimum=0, maximum=1000)
    reconnect_wait: float = option(2.0, "float", "wait between reconnections (cell time)", unit="s", minimum=0)
    clock_speed: float | None = option(None, "float", "run on a clock N× real time (wire emulators)", above=0)

    def check(self) -> None:
        if ADDRESS.match(self.channel) is None:
            raise OptionError.bad_value(
                self.family,
                "channel",
                self.channel,
                "is not a BTS address (allowed: DEVID-SUBDEVID-CHLID, e.g. 27-1-3)",
            )
        if self.voltage_min >= self.voltage_max:
            raise OptionError.bad_value(
                self.family, "voltage_min", self.voltage_min, f"is not below voltage_max {self.voltage_max!r}"
            )

    @property
    def address(self) -> tuple[int, int, int]:
        match = ADDRESS.match(self.channel)
        assert match is not None
        return int(match.group(1)), int(match.group(2)), int(match.group(3))
