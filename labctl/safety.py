"""A channel's safety limits: checked against a protocol's parameters before
the run, and against every sample block during it.

Limits come from the lab file (per channel). A protocol declares what its
parameters will demand of the channel (``Demand``: the largest current, the
potentials it may drive to, the highest chamber temperature, and which
parameter sets each), so a run that would exceed a limit is refused before it
starts with an error naming that parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from labctl.params import ParameterError
from labctl.steps import SAMPLE_DTYPE


@dataclass(frozen=True)
class Demand:
    """What a protocol parameter will ask of the channel (SI units, °C)."""

    quantity: Literal["current", "voltage", "temperature"]
    value: float
    param: str
    text: str = ""  # how the value follows from the parameter, for the message


@dataclass(frozen=True)
class SafetyLimits:
    """The cell's own limits, above any protocol: breaching one stops the run."""

    max_current: float | None = None  # A, magnitude
    voltage_min: float | None = None  # V
    voltage_max: float | None = None  # V
    max_temperature: float | None = None  # °C
    source: str = ""  # where they were configured, for messages

    def breach(self, block: np.ndarray) -> str | None:
        """A description of the first breach in a sample block, or None."""
        if block.dtype != SAMPLE_DTYPE or len(block) == 0:
            return None
        checks = (
            (self.max_current, lambda: np.abs(block["I"]) > self.max_current, "|I| above {:g} A"),
            (self.voltage_max, lambda: block["E"] > self.voltage_max, "E above {:g} V"),
            (self.voltage_min, lambda: block["E"] < self.voltage_min, "E below {:g} V"),
            (self.max_temperature, lambda: block["T"] > self.max_temperature, "T above {:g} °C"),
        )
        for limit, mask, text in checks:
            if limit is not None and np.any(mask()):
                return "safety limit: " + text.format(limit)
        return None

    def check_demands(self, demands: Iterable[Demand]) -> None:
        """Raise ParameterError for the first demand beyond a limit."""
        where = f" ({self.source})" if self.source else ""
        for d in demands:
            how = f" ({d.text})" if d.text else ""
            if d.quantity == "current" and self.max_current is not None and abs(d.value) > self.max_current:
                raise ParameterError(
                    d.param,
                    f"needs {abs(d.value) * 1e3:.4g} mA{how}, above the channel's safety limit "
                    f"{self.max_current * 1e3:.4g} mA{where}",
                )
            if d.quantity == "voltage":
                if self.voltage_max is not None and d.value > self.voltage_max:
                    raise ParameterError(
                        d.param,
                        f"drives the cell to {d.value:.4g} V{how}, above the channel's safety limit "
                        f"{self.voltage_max:.4g} V{where}",
                    )
                if self.voltage_min is not None and d.value < self.voltage_min:
                    raise ParameterError(
                        d.param,
                        f"drives the cell to {d.value:.4g} V{how}, below the channel's safety limit "
                        f"{self.voltage_min:.4g} V{where}",
                    )
            if d.quantity == "temperature" and self.max_temperature is not None and d.value > self.max_temperature:
                raise ParameterError(
                    d.param,
                    f"sets {d.value:.4g} °C{how}, above the channel's safety limit "
                    f"{self.max_temperature:.4g} °C{where}",
                )
