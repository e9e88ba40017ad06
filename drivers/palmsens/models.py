"""What each MethodSCRIPT instrument is and can do.

One table shared by the driver (capabilities, firmware check, range codes to
report) and the wire emulator (what it answers to ``t``, which measurement
loops it accepts, when it flags an overload). Figures come from the vendors'
published specifications and the MethodSCRIPT manual (v1.8): the firmware
prefixes of the ``t`` reply, the range codes of the ``2XX`` packet metadata
and the measurement loops each device supports. They are the headline figures
of the standard models; a lab with another variant sets the options
(``variant``, ``max_current``) rather than editing this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """One instrument model."""

    key: str  # registry name (driver and emulator)
    name: str  # what the run file says
    firmware_id: str  # first 6 characters of the firmware string (``t`` reply)
    firmware_version: str  # what the emulator reports after the id
    galvanostatic: bool  # meas_loop_cp / meas_loop_geis available
    potential_range: tuple[float, float]  # V, applied and measured
    max_current: float  # A, magnitude
    frequency_range: tuple[float, float]  # Hz, impedance
    #: (metadata range code, full-scale current in A), smallest range first.
    current_ranges: tuple[tuple[int, float], ...]
    baudrate: int
    xonxoff: bool = False
    #: set_pgstat_mode values: low speed (DC techniques), high speed (EIS), galvanostatic.
    pgstat_modes: dict[str, int] = field(default_factory=lambda: {"low_speed": 2, "high_speed": 3, "galvanostat": 6})

    def current_range_code(self, current: float) -> int:
        """The smallest range whose full scale holds |current| (the largest if none does)."""
        for code, full_scale in self.current_ranges:
            if abs(current) <= full_scale:
                return code
        return self.current_ranges[-1][0]

    def current_range_for(self, current: float) -> float:
        """Full scale of the range chosen by ``current_range_code``."""
        code = self.current_range_code(current)
        return dict(self.current_ranges)[code]


_ES4_HR_RANGES = ((9, 100e-9), (12, 1e-6), (15, 10e-6), (18, 100e-6), (21, 1e-3), (24, 10e-3), (27, 100e-3))
_ES4_LR_RANGES = ((3, 1e-9), (6, 10e-9), (9, 100e-9), (12, 1e-6), (15, 10e-6), (18, 100e-6), (21, 1e-3), (24, 10e-3))

EMSTAT4_HR = ModelSpec(
    key="emstat4",
    name="EmStat4 HR",
    firmware_id="es4_hr",
    firmware_version="1.4.00",
    galvanostatic=True,
    potential_range=(-6.0, 6.0),
    max_current=0.1,
    frequency_range=(1e-5, 2e5),
    current_ranges=_ES4_HR_RANGES,
    baudrate=921600,
)

EMSTAT4_LR = ModelSpec(
    key="emstat4",
    name="EmStat4 LR",
    firmware_id="es4_lr",
    firmware_version="1.4.00",
    galvanostatic=True,
    potential_range=(-3.0, 3.0),
    max_current=0.01,
    frequency_range=(1e-5, 2e5),
    current_ranges=_ES4_LR_RANGES,
    baudrate=921600,
)

NEXUS = ModelSpec(
    key="nexus",
    name="Nexus",
    firmware_id="nexus1",
    firmware_version="1.1.00",
    galvanostatic=True,
    potential_range=(-5.0, 5.0),
    max_current=1.0,
    frequency_range=(1e-5, 1e6),
    current_ranges=(
        (16, 100e-12),
        (0, 1e-9),
        (1, 10e-9),
        (2, 100e-9),
        (3, 1e-6),
        (4, 10e-6),
        (5, 100e-6),
        (8, 1e-3),
        (9, 10e-3),
        (10, 100e-3),
        (11, 1.0),
    ),
    baudrate=921600,
)

EMSTAT_PICO = ModelSpec(
    key="emstat_pico",
    name="EmStat Pico",
    firmware_id="espico",
    firmware_version="1.6.00",
    galvanostatic=False,
    potential_range=(-1.7, 2.0),
    max_current=3e-3,
    frequency_range=(0.016, 2e5),
    current_ranges=((0, 100e-9), (1, 2e-6), (3, 8e-6), (5, 32e-6), (7, 125e-6), (9, 500e-6), (10, 1e-3), (11, 5e-3)),
    baudrate=230400,
    xonxoff=True,
    pgstat_modes={"low_speed": 2, "high_speed": 3},
)

#: Registry name -> the models a configured instrument of that name may turn out to be.
FAMILIES: dict[str, tuple[ModelSpec, ...]] = {
    "emstat4": (EMSTAT4_HR, EMSTAT4_LR),
    "nexus": (NEXUS,),
    "emstat_pico": (EMSTAT_PICO,),
}

ALL_MODELS: tuple[ModelSpec, ...] = (EMSTAT4_HR, EMSTAT4_LR, NEXUS, EMSTAT_PICO)


def model_for_firmware(firmware: str) -> ModelSpec | None:
    """The model a firmware string (``t`` reply without the ``t``) belongs to."""
    for spec in ALL_MODELS:
        if firmware.startswith(spec.firmware_id):
            return spec
    return None


def model_for(key: str, variant: str | None = None) -> ModelSpec:
    """The model a registry name (and ``variant`` option: hr/lr for the EmStat4) means."""
    if key not in FAMILIES:
        raise ValueError(f"unknown MethodSCRIPT instrument {key!r} (known: {', '.join(FAMILIES)})")
    family = FAMILIES[key]
    if variant is None:
        return family[0]
    wanted = variant.strip().lower()
    for spec in family:
        if spec.firmware_id.endswith(wanted) or spec.name.lower().endswith(wanted):
            return spec
    allowed = ", ".join(s.firmware_id[-2:] if key == "emstat4" else s.name for s in family)
    raise ValueError(f"unknown variant {variant!r} of {key} (allowed: {allowed})")
