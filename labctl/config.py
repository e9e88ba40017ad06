"""The lab file (TOML): instruments, their channels, safety limits, cell defaults.

Example::

    [defaults]
    operator = "night shift"
    cell = { area = 2.0, thickness = 150 }        # cm², µm

    [instruments.pstat]
    driver = "emstat4"                            # see `labctl instruments drivers`
    resource = "/dev/ttyACM0"
    options = { baudrate = 230400 }

    [instruments.pstat.channels.1]
    max_current = 10.0                            # mA, magnitude
    voltage_min = -1.0                            # V
    voltage_max = 6.0                             # V
    max_temperature = 90.0                        # °C
    chamber = "oven"                              # an instrument of kind chamber
    cell = { area = 1.13, thickness = 80, id = "MOF-17" }

    [instruments.oven]
    driver = "espec"
    resource = "tcp://192.0.2.10:10001"

A channel is named ``INSTRUMENT`` (its first channel) or ``INSTRUMENT:CHANNEL``.
Every error names the file and the key, so a typo is found in seconds.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.registry import DRIVERS, KINDS, driver_options
from labctl.safety import SafetyLimits


class LabConfigError(ValueError):
    """A problem in the lab file, naming the file and the key."""


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    safety: SafetyLimits = field(default_factory=SafetyLimits)
    chamber: str | None = None
    cell: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InstrumentConfig:
    name: str
    driver: str
    resource: str
    options: dict[str, Any]
    channels: dict[str, ChannelConfig]

    @property
    def kind(self) -> str:
        return KINDS.get(self.driver, "unknown")


@dataclass(frozen=True)
class LabConfig:
    path: Path
    instruments: dict[str, InstrumentConfig]
    operator: str = ""
    cell: dict[str, Any] = field(default_factory=dict)

    def channel(self, spec: str) -> tuple[InstrumentConfig, ChannelConfig]:
        """``pstat`` or ``pstat:2`` -> the instrument and its channel."""
        name, _, channel = spec.partition(":")
        if name not in self.instruments:
            known = ", ".join(sorted(self.instruments)) or "none"
            raise LabConfigError(f"{self.path}: no instrument named {name!r} (configured: {known})")
        instrument = self.instruments[name]
        if not channel:
            channel = next(iter(instrument.channels))
        if channel not in instrument.channels:
            raise LabConfigError(
                f"{self.path}: instrument {name!r} has no channel {channel!r} "
                f"(configured: {', '.join(instrument.channels)})"
            )
        return instrument, instrument.channels[channel]


def _number(where: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LabConfigError(f"{where}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise LabConfigError(f"{where}: must be > 0, got {value!r}")
    return float(value)


def _cell(where: str, table: Any) -> dict[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise LabConfigError(f"{where}: expected a table like {{ area = 2.0, thickness = 100 }}")
    allowed = {"area", "thickness", "id", "type", "notes"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise LabConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    out = dict(table)
    for key in ("area", "thickness"):
        if key in out:
            out[key] = _number(f"{where}.{key}", out[key], positive=True)
    return out


_CHANNEL_KEYS = {"max_current", "voltage_min", "voltage_max", "max_temperature", "chamber", "cell"}


def _channel(where: str, name: str, table: dict[str, Any]) -> ChannelConfig:
    unknown = sorted(set(table) - _CHANNEL_KEYS)
    if unknown:
        raise LabConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(_CHANNEL_KEYS))})")

    def get(key: str, scale: float = 1.0, positive: bool = False) -> float | None:
        if key not in table:
            return None
        return _number(f"{where}.{key}", table[key], positive=positive) * scale

    safety = SafetyLimits(
        max_current=get("max_current", 1e-3, positive=True),
        voltage_min=get("voltage_min"),
        voltage_max=get("voltage_max"),
        max_temperature=get("max_temperature"),
        source=where,
    )
    if safety.voltage_min is not None and safety.voltage_max is not None and safety.voltage_min >= safety.voltage_max:
        raise LabConfigError(f"{where}: voltage_min must be below voltage_max")
    chamber = table.get("chamber")
    if chamber is not None and not isinstance(chamber, str):
        raise LabConfigError(f"{where}.chamber: expected an instrument name")
    return ChannelConfig(name=name, safety=safety, chamber=chamber, cell=_cell(f"{where}.cell", table.get("cell")))


def _validate_driver_options(
    path: Path, name: str, driver: str, options: dict[str, Any], channels: Iterable[str] = ()
) -> None:
    """The driver's own declarations check its options now, so a misspelled or
    out-of-range option is refused when the file loads, not ignored or found
    when the instrument is first used; each channel name too (the runner hands
    it to the driver as its ``channel`` option: a SourceMeter has only "1")."""
    where = f"{path}: instruments.{name}"
    try:
        options_class = driver_options(driver)
    except ImportError as exc:
        raise LabConfigError(f"{where}.driver: {driver} cannot be loaded ({exc})") from None
    for channel in (None, *channels):
        given = options if channel is None or "channel" in options else {**options, "channel": channel}
        try:
            options_class.parse(given)
        except ValueError as exc:
            key, reason = getattr(exc, "key", None), getattr(exc, "reason", None)
            if key is None or reason is None:
                raise LabConfigError(f"{where}.options: {exc}") from None
            if channel is not None and key == "channel":
                raise LabConfigError(f"{where}.channels.{channel}: {reason}") from None
            raise LabConfigError(f"{where}.options.{key}: {reason}") from None


def parse_lab(data: dict[str, Any], path: Path) -> LabConfig:
    """Validate the parsed TOML; every error names ``path`` and the key."""
    unknown = sorted(set(data) - {"defaults", "instruments"})
    if unknown:
        raise LabConfigError(f"{path}: unknown section [{unknown[0]}] (allowed: defaults, instruments)")
    defaults = data.get("defaults", {})
    instruments: dict[str, InstrumentConfig] = {}
    for name, table in (data.get("instruments") or {}).items():
        where = f"{path}: instruments.{name}"
        if name == "sim":
            raise LabConfigError(f"{where}: 'sim' is reserved for the built-in simulator")
        if not isinstance(table, dict):
            raise LabConfigError(f"{where}: expected a table")
        driver = table.get("driver")
        if driver not in DRIVERS:
            raise LabConfigError(f"{where}.driver: unknown driver {driver!r} (known: {', '.join(sorted(DRIVERS))})")
        resource = table.get("resource")
        if not isinstance(resource, str) or not resource:
            raise LabConfigError(f"{where}.resource: expected the address, e.g. '/dev/ttyACM0' or 'TCPIP::…'")
        options = table.get("options", {})
        if not isinstance(options, dict):
            raise LabConfigError(f"{where}.options: expected a table")
        extra = sorted(set(table) - {"driver", "resource", "options", "channels"})
        if extra:
            raise LabConfigError(f"{where}.{extra[0]}: unknown key (allowed: driver, resource, options, channels)")
        channel_tables = table.get("channels") or {"1": {}}
        channels = {
            str(ch): _channel(f"{where}.channels.{ch}", str(ch), ch_table or {})
            for ch, ch_table in channel_tables.items()
        }
        _validate_driver_options(path, name, driver, options, channels)
        instruments[name] = InstrumentConfig(name, driver, resource, dict(options), channels)
    for inst in instruments.values():
        for ch in inst.channels.values():
            if ch.chamber is not None:
                target = instruments.get(ch.chamber)
                if target is None or target.kind != "chamber":
                    raise LabConfigError(
                        f"{path}: instruments.{inst.name}.channels.{ch.name}.chamber: "
                        f"{ch.chamber!r} is not a configured chamber"
                    )
    return LabConfig(
        path=path,
        instruments=instruments,
        operator=str(defaults.get("operator", "")),
        cell=_cell(f"{path}: defaults.cell", defaults.get("cell")),
    )


def load_lab(path: Path) -> LabConfig:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise LabConfigError(f"lab file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise LabConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_lab(data, path)
