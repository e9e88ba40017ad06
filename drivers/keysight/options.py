"""Options of the Keysight E4980A LCR meter driver (a lab file's ``options`` table).

Kept apart from the driver so the lab-file loader checks them without loading
pyvisa. Ranges from the E4980A User's Guide (E4980-90230): measurement time
SHORt/MEDium/LONG, averaging 1..256, test signal ≤ 2 V rms (20 V with
option 001), DC bias ±2 V (±40 V with option 001).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivers.kit.options import DriverOptions, option


@dataclass(frozen=True)
class E4980AOptions(DriverOptions):
    """Lab-file options of an E4980A (all optional)."""

    family: ClassVar[str] = "e4980a"

    timeout: float = option(5.0, "float", "no reply within this is a fault", unit="s", above=0)
    aperture: str = option("MED", "choice", "measurement time per point", choices=("SHOR", "MED", "LONG"))
    averages: int = option(1, "int", "averaging rate per point", minimum=1, maximum=256)
    chunk_seconds: float = option(2.0, "float", "measuring time per triggered list (cell s)", unit="s", above=0)
    poll_interval: float = option(0.01, "float", "wall time between status polls", unit="s", above=0, maximum=10)
    visa_library: str = option("@py", "str", 'pyvisa backend: "@py" (pyvisa-py), "" (NI/Keysight VISA), a path')
    max_level: float | None = option(
        None, "float", "largest test signal (default from *OPT?: 2, or 20 with option 001)", unit="V rms",
        above=0, maximum=20,
    )
    max_bias: float | None = option(
        None, "float", "largest DC bias (default from *OPT?: 2, or 40 with option 001)", unit="V", above=0, maximum=40
    )
    clock_speed: float = option(1.0, "float", "run the driver's clock N× real time (wire emulators)", above=0)
    channel: str | None = option(None, "str", "the lab file's channel name (an E4980A has one)")
