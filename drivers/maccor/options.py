"""Options of the Maccor MacNet driver (a lab file's ``options`` table), checked by name.

A lab-file channel of a Maccor instrument is named by its channel number as
MacTest shows it (1, 2, …); MacNet numbers channels from 0 on the wire
(``Chan`` = number − 1). Each is an ordinary labctl channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivers.kit.options import option
from drivers.kit.polled_cycler import PolledCyclerOptions


@dataclass(frozen=True)
class MaccorOptions(PolledCyclerOptions):
    """Driver options (the lab file's ``options`` table): the polled cyclers' own, and these."""

    family: ClassVar[str] = "maccor"

    current_range: int = option(1, "int", "MacNet current range (1 = the highest)", minimum=1, maximum=4)
    data_time: float = option(1.0, "float", "record interval of the Maccor data file", unit="s", above=0)
