"""Options of the Keithley SMU driver (a lab file's ``options`` table), checked by name.

Every option has a default a lab can run with; a typo or an out-of-range value is
refused when the lab file is loaded, naming the option and what it may be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

#: Smallest voltage limit both models accept (2400: 0.2 V; 2450: 0.02 V).
MIN_VOLTAGE_LIMIT = 0.2


@dataclass(frozen=True)
class SmuOptions:
    """Driver options (the lab file's ``options`` table)."""

    visa_library: str = "@py"  # pyvisa backend: "@py" (pyvisa-py), "" (NI/Keysight VISA), a path
    timeout_ms: float = 5000.0  # VISA timeout of every query
    safe_timeout_ms: float = 1000.0  # timeout while making the output safe
    nplc: float = 1.0  # integration time in power-line cycles (0.01..10)
    compliance_voltage: float = 10.0  # V: the largest |V| the SMU may ever put on the cell
    compliance_current: float = 0.1  # A: current limit of voltage-sourced steps
    voltage_margin: float = 0.5  # V between a step's voltage cutoff and the hardware clamp
    current_margin: float = 1.5  # hardware current limit / the step's current_above
    max_current: float = 1.0  # A: largest current a step may ask for
    clock_speed: float | None = None  # run on ScaledClock(clock_speed) (emulators at N× real time)
    reset: bool = True  # *RST before the first step of a run
    channel: str = "1"  # the lab file's channel name: these SMUs have one

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> SmuOptions:
        """From a lab file's options; ValueError names the option and what it may be."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown Keithley option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        for name, raw in options.items():
            if name in ("visa_library", "channel"):
                values[name] = str(raw)
            elif name == "reset":
                values[name] = _as_bool(name, raw)
            elif name == "clock_speed" and raw is None:
                values[name] = None
            else:
                try:
                    values[name] = float(raw)
                except (TypeError, ValueError):
                    raise ValueError(f"Keithley option {name}={raw!r} is not a number") from None
        opts = cls(**values)
        opts._check()
        return opts

    def _check(self) -> None:
        rules = (
            ("timeout_ms", self.timeout_ms > 0, "> 0 ms"),
            ("safe_timeout_ms", self.safe_timeout_ms > 0, "> 0 ms"),
            ("nplc", 0.01 <= self.nplc <= 10, "0.01..10"),
            ("compliance_voltage", MIN_VOLTAGE_LIMIT <= self.compliance_voltage <= 210, "0.2..210 V"),
            ("compliance_current", 1e-9 <= self.compliance_current <= 1.05, "1e-9..1.05 A"),
            ("voltage_margin", self.voltage_margin >= 0, ">= 0 V"),
            ("current_margin", self.current_margin >= 1, ">= 1"),
            ("max_current", 0 < self.max_current <= 1.05, "0..1.05 A"),
            ("clock_speed", self.clock_speed is None or self.clock_speed > 0, "> 0"),
            ("channel", self.channel == "1", "1: a single-channel SourceMeter"),
        )
        for name, ok, allowed in rules:
            if not ok:
                raise ValueError(f"Keithley option {name}={getattr(self, name)!r} is out of range (allowed: {allowed})")


def _as_bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"Keithley option {name}={raw!r} is not true/false")
