"""Options of the Keithley SMU driver (a lab file's ``options`` table), checked by name.

Every option has a default a lab can run with; a typo or an out-of-range value is
refused when the lab file is loaded, naming the option and what it may be.
Limits from the 2450 Reference Manual 2450-901-01 and the 2400 User's Manual
2400S-900-01 (NPLC 0.01..10, voltage limit ≥ 0.2 V on the 2400, current limit
≤ 1.05 A).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivers.kit.options import DriverOptions, option

#: Smallest voltage limit both models accept (2400: 0.2 V; 2450: 0.02 V).
MIN_VOLTAGE_LIMIT = 0.2


@dataclass(frozen=True)
class SmuOptions(DriverOptions):
    """Driver options (the lab file's ``options`` table)."""

    family: ClassVar[str] = "Keithley"

    timeout_ms: float = option(5000.0, "float", "VISA timeout of every query", unit="ms", above=0)
    safe_timeout_ms: float = option(1000.0, "float", "timeout while making the output safe", unit="ms", above=0)
    visa_library: str = option("@py", "str", 'pyvisa backend: "@py" (pyvisa-py), "" (NI/Keysight VISA), a path')
    nplc: float = option(1.0, "float", "integration time in power-line cycles", minimum=0.01, maximum=10)
    compliance_voltage: float = option(
        10.0, "float", "the largest |V| the SMU may ever put on the cell", unit="V",
        minimum=MIN_VOLTAGE_LIMIT, maximum=210,
    )
    compliance_current: float = option(
        0.1, "float", "current limit of voltage-sourced steps", unit="A", minimum=1e-9, maximum=1.05
    )
    voltage_margin: float = option(
        0.5, "float", "between a step's voltage cutoff and the hardware clamp", unit="V", minimum=0
    )
    current_margin: float = option(1.5, "float", "hardware current limit / the step's current_above", minimum=1)
    max_current: float = option(1.0, "float", "largest current a step may ask for", unit="A", above=0, maximum=1.05)
    clock_speed: float | None = option(
        None, "float", "run on ScaledClock(clock_speed) (emulators at N× real time)", above=0
    )
    reset: bool = option(True, "bool", "*RST before the first step of a run")
    channel: str = option("1", "choice", "the lab file's channel name: these SMUs have one", choices=("1",))

