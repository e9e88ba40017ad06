"""Options of the Arbin CTI driver (a lab file's ``options`` table), checked by name.

A lab-file channel of an Arbin is named by its channel number as MITS Pro's Monitor and
Control window shows it (1, 2, …); CTI numbers channels from 0 on the wire (channel index
= number − 1). Each is an ordinary labctl channel. ``user``/``password`` are the CTI login
(MITS Pro's user list); a lab that keeps them out of its lab file leaves the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivers.kit.options import OptionError, option
from drivers.kit.polled_cycler import PolledCyclerOptions


@dataclass(frozen=True)
class ArbinOptions(PolledCyclerOptions):
    """Driver options (the lab file's ``options`` table): the polled cyclers' own, and these."""

    family: ClassVar[str] = "arbin"

    timeout: float = option(10.0, "float", "feedback timeout (the CTI protocol recommends 10 s)", unit="s",
                            above=0, maximum=600)  # fmt: skip
    schedule: str = option(
        "labctl_direct.sdx", "str", "the lab's control schedule on MITS Pro (docs/arbin-control-schedule.md)"
    )
    user: str = option("admin", "str", "CTI login user")
    password: str = option("000000", "str", "CTI login password")

    def check(self) -> None:
        super().check()
        if not self.schedule.strip() or len(self.schedule) > 199:
            raise OptionError.bad_value(
                self.family, "schedule", self.schedule, "is not a schedule name (allowed: 1 to 199 characters)"
            )
        for key in ("user", "password"):
            if len(getattr(self, key).encode("latin-1", errors="replace")) > 32:
                raise OptionError.bad_value(self.family, key, "…", "is too long (allowed: up to 32 characters)")
