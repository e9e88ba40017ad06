"""The lab file (TOML): instruments, their channels, safety limits, cell defaults.

Example::

    [defaults]
    operator = "night shift"
    cell = { area = 2.0, thickness = 150 }        # cm², µm

    [instruments.pstat]
    driver = "emstat4"                            # one of labctl.registry.DRIVERS
    resource = "/dev/ttyACM0"
    options = { baudrate = 230400 }

    [instruments.pstat.channels.1]
    max_current = 10.0                            # mA, magnitude
    voltage_min = -1.0                            # V
    voltage_max = 6.0                             # V
    max_temperature = 90.0                        # °C
    chamber = "oven"                              # an instrument of kind chamber
    cell = { area = 1.13, thickness = 80, id = "MOF-17" }
    # a full cell adds its cathode: cathode = "nmc", loading = 10.5 (mg/cm²),
    # specific_capacity = 175 (mAh/g: defines 1 C), v_min = 3.0, v_max = 4.3

    [instruments.oven]
    driver = "espec"
    resource = "tcp://192.0.2.10:10001"

A channel is named ``INSTRUMENT`` (its first channel) or ``INSTRUMENT:CHANNEL``.

The file is validated completely when it is loaded, because it sets what a
cell may be driven to: every key at every level must be known (a typo in
``max_curent`` must not silently drop a safety limit), every value must have
the expected TOML type, and numbers go through the same declared ranges as
``-p`` values (``labctl.params``). Every error is one line naming the file, the
key path and what is allowed, so a typo is found in seconds.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from labctl.alerts_config import AlertsConfig, parse_alerts
from labctl.cathode import CATHODE_PARAMS
from labctl.numbers import parse_number
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS
from labctl.registry import DRIVERS, KINDS, driver_options
from labctl.safety import SafetyLimits

#: A lab file is a page of TOML; anything larger is the wrong file (a run file, a log).
MAX_LAB_FILE_BYTES = 1 << 20

#: Instrument and channel names are typed on the command line as NAME or NAME:CHANNEL.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_NAME_RULE = "letters, digits, '_' and '-', starting with a letter or digit"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

_TOP_KEYS = ("alerts", "defaults", "instruments")
_DEFAULTS_KEYS = ("cell", "operator")
_INSTRUMENT_KEYS = ("channels", "driver", "options", "resource")
_CELL_TEXT_KEYS = ("id", "notes", "type")

#: The per-channel safety limits, declared like protocol parameters so they get
#: the same range checks and messages. Ranges bound what any supported
#: instrument can do (a 2400 SMU sources ±210 V; boosted potentiostats tens of A;
#: ovens for ceramic electrolytes a few hundred °C): a value beyond them is a typo.
SAFETY_PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("max_current", None, "mA", "largest |I| the channel may drive", minimum=1e-9, maximum=1e5),
        Param("voltage_min", None, "V", "lowest cell voltage", minimum=-250.0, maximum=250.0),
        Param("voltage_max", None, "V", "highest cell voltage", minimum=-250.0, maximum=250.0),
        Param("max_temperature", None, "°C", "highest cell temperature", minimum=-100.0, maximum=500.0),
    )
}
_CHANNEL_KEYS = (*SAFETY_PARAMS, "cell", "chamber", "leads")

#: A channel's lead calibration (the ``leads`` protocol on a short), as written in the lab
#: file (``leads = { r_ohm = 0.21, l_h = 1.1e-7, measured = 2026-12-04, run = "…h5" }``) or
#: in the calibration file next to it (``labctl.calibration``).
LEADS_PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("r_ohm", None, "Ω", "lead + contact resistance", minimum=0.0, maximum=1000.0),
        Param("r_stderr_ohm", None, "Ω", "its standard error", minimum=0.0, maximum=1000.0),
        Param("l_h", None, "H", "lead inductance", minimum=-1e-3, maximum=1e-3),
        Param("l_stderr_h", None, "H", "its standard error", minimum=0.0, maximum=1e-3),
    )
}
_LEADS_TEXT_KEYS = ("measured", "run")
_GEOMETRY = {p.name: p for p in GEOMETRY_PARAMS}
_CATHODE = {p.name: p for p in CATHODE_PARAMS}  # a full cell's cathode: what 1 C means
_CELL_KEYS = (*_GEOMETRY, *_CATHODE, *_CELL_TEXT_KEYS)


class LabConfigError(ValueError):
    """A problem in the lab file, naming the file and the key."""


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    safety: SafetyLimits = field(default_factory=SafetyLimits)
    chamber: str | None = None
    cell: dict[str, Any] = field(default_factory=dict)
    #: The lead calibration written in the lab file (see ``parse_leads``), or None.
    leads: dict[str, Any] | None = None


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
    alerts: AlertsConfig = field(default_factory=AlertsConfig)  # [alerts], see labctl.alerts_config

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


# --- where in the file -------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """A key path in the lab file, for messages: ``lab.toml: instruments.pstat.channels.1``."""

    path: Path
    keys: tuple[str, ...] = ()

    def __truediv__(self, key: str) -> _Where:
        return _Where(self.path, (*self.keys, key))

    @property
    def parent(self) -> _Where:
        return _Where(self.path, self.keys[:-1])

    def __str__(self) -> str:
        if not self.keys:
            return str(self.path)
        shown = (k if _BARE_KEY.fullmatch(k) else json.dumps(k) for k in self.keys)
        return f"{self.path}: {'.'.join(shown)}"

    def error(self, problem: str) -> LabConfigError:
        return LabConfigError(f"{self}: {problem}")


def _toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type, for 'expected …, got …'."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime, date, time)):
        return "a date/time"
    return type(value).__name__


def _table(where: _Where, value: Any, expected: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"expected {expected}, got {_toml_type(value)}")
    return value


def _refuse_unknown(where: _Where, table: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise (where / unknown[0]).error(f"unknown key (allowed: {', '.join(sorted(known))})")


def _text(where: _Where, value: Any, expected: str = "a string") -> str:
    if not isinstance(value, str):
        raise where.error(f"expected {expected}, got {_toml_type(value)}")
    return value


def _name(where: _Where, name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise where.error(f"{what} name {name!r} is not allowed (allowed: {_NAME_RULE})")
    return name


# --- values ------------------------------------------------------------------------


def _lab_number(where: _Where, value: Any, param: Param, *, positive: bool = False) -> float:
    """A lab-file number checked like the ``-p`` value ``param``: a TOML number
    (or a string in the strict grammar), finite, > 0 when ``positive``, within
    the declared range."""
    if isinstance(value, str):
        try:
            number = float(parse_number(value))
        except ValueError:
            raise where.error(f"expected a number, got {value!r} (allowed: {param.allowed})") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    else:
        raise where.error(f"expected a number, got {_toml_type(value)} (allowed: {param.allowed})")
    if not math.isfinite(number):
        raise where.error(f"expected a finite number, got {value!r} (allowed: {param.allowed})")
    if positive and number <= 0:
        raise where.error(f"must be > 0, got {value!r} (allowed: {param.allowed})")
    try:
        return float(param.parse(number))
    except ParameterError as exc:
        raise where.error(str(exc).removeprefix(f"parameter '{param.name}': ")) from None


def _cell(where: _Where, value: Any) -> dict[str, Any]:
    """Cell defaults: geometry checked by the protocols' own ``thickness``/``area`` parameters."""
    if value is None:
        return {}
    table = _table(where, value, "a table like { area = 2.0, thickness = 100 }")
    _refuse_unknown(where, table, _CELL_KEYS)
    out: dict[str, Any] = {}
    for key, raw in table.items():
        if key in _GEOMETRY:
            out[key] = _lab_number(where / key, raw, _GEOMETRY[key], positive=True)
        elif key == "cathode":
            try:
                out[key] = _CATHODE[key].parse(_text(where / key, raw))
            except ParameterError as exc:
                raise (where / key).error(str(exc).removeprefix("parameter 'cathode': ")) from None
        elif key in _CATHODE:
            out[key] = _lab_number(where / key, raw, _CATHODE[key], positive=True)
        else:
            out[key] = _text(where / key, raw)
    return out


def _channel(where: _Where, name: str, value: Any) -> ChannelConfig:
    table = _table(where, value, "a table of the channel's limits and cell")
    _refuse_unknown(where, table, _CHANNEL_KEYS)
    limits = {
        key: _lab_number(where / key, table[key], param, positive=key == "max_current")
        for key, param in SAFETY_PARAMS.items()
        if key in table
    }
    low, high = limits.get("voltage_min"), limits.get("voltage_max")
    if low is not None and high is not None and low >= high:
        raise where.error(f"voltage_min must be below voltage_max (got {low:g} V and {high:g} V)")
    max_current = limits.get("max_current")
    safety = SafetyLimits(
        max_current=None if max_current is None else max_current * 1e-3,  # mA -> A
        voltage_min=low,
        voltage_max=high,
        max_temperature=limits.get("max_temperature"),
        source=str(where),
    )
    chamber = table.get("chamber")
    if chamber is not None:
        chamber = _text(where / "chamber", chamber, "the name of a chamber instrument")
    leads = parse_leads(where / "leads", table["leads"]) if "leads" in table else None
    return ChannelConfig(
        name=name, safety=safety, chamber=chamber, cell=_cell(where / "cell", table.get("cell")), leads=leads
    )


def parse_leads(where: _Where, value: Any) -> dict[str, Any]:
    """A lead-calibration table: ``r_ohm`` required, ``l_h`` and the standard errors
    optional, ``measured`` (a TOML date/date-time or ISO text) and ``run`` (text)."""
    allowed = "a table like { r_ohm = 0.21, l_h = 1.1e-7, measured = 2026-12-04, run = 'runs/….h5' }"
    table = _table(where, value, allowed)
    _refuse_unknown(where, table, (*LEADS_PARAMS, *_LEADS_TEXT_KEYS))
    if "r_ohm" not in table:
        raise (where / "r_ohm").error(f"missing (allowed: {LEADS_PARAMS['r_ohm'].allowed})")
    out: dict[str, Any] = {
        key: _lab_number(where / key, table[key], param) for key, param in LEADS_PARAMS.items() if key in table
    }
    measured = table.get("measured")
    if isinstance(measured, (datetime, date)):
        out["measured"] = measured.isoformat()
    elif measured is not None:
        text = _text(where / "measured", measured, "a date like 2026-12-04 or 2026-12-04T13:05:00Z")
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise (where / "measured").error(
                f"{text!r} is not a date (allowed: a date like 2026-12-04 or 2026-12-04T13:05:00Z)"
            ) from None
        out["measured"] = text
    if "run" in table:
        out["run"] = _text(where / "run", table["run"], "the run file's path")
    return out


def _options(where: _Where, name: str, driver: str, value: Any, channels: Iterable[str]) -> dict[str, Any]:
    options = dict(_table(where, value, "a table like { baudrate = 230400 }"))
    if "clock_speed" in options:
        from labctl.speed import parse_speed_factor

        try:
            options["clock_speed"] = parse_speed_factor(options["clock_speed"], "clock_speed")
        except ParameterError as exc:
            raise (where / "clock_speed").error(str(exc).removeprefix("parameter 'clock_speed': ")) from None
    return _validate_driver_options(where, name, driver, options, channels)


def _validate_driver_options(
    where: _Where, name: str, driver: str, options: dict[str, Any], channels: Iterable[str] = ()
) -> dict[str, Any]:
    """The driver's own declarations check its options at load, so a misspelled
    or out-of-range option is refused when the file loads, not ignored or found
    when the instrument is first used; each channel name too (the runner hands
    it to the driver as its ``channel`` option: a SourceMeter has only "1")."""
    try:
        options_class = driver_options(driver)
    except ImportError as exc:
        raise (where.parent / "driver").error(f"{driver} cannot be loaded ({exc})") from None
    for channel in (None, *channels):
        given = options if channel is None or "channel" in options else {**options, "channel": channel}
        try:
            options_class.parse(given)
        except ValueError as exc:
            key, reason = getattr(exc, "key", None), getattr(exc, "reason", None)
            if key is None or reason is None:
                raise where.error(str(exc)) from None
            if channel is not None and key == "channel":
                raise (where.parent / "channels" / channel).error(reason) from None
            raise (where / key).error(reason) from None
    return options


def _instrument(where: _Where, name: str, value: Any) -> InstrumentConfig:
    _name(where, name, "instrument")
    if name == "sim":
        raise where.error("'sim' is reserved for the built-in simulator")
    table = _table(where, value, "a table with driver and resource")
    _refuse_unknown(where, table, _INSTRUMENT_KEYS)
    driver = table.get("driver")
    known_drivers = ", ".join(sorted(DRIVERS))
    if driver is None:
        raise (where / "driver").error(f"missing (known: {known_drivers})")
    if driver not in DRIVERS:
        raise (where / "driver").error(f"unknown driver {driver!r} (known: {known_drivers})")
    resource = table.get("resource")
    if not isinstance(resource, str) or not resource.strip():
        got = "missing" if resource is None else f"got {_toml_type(resource)}"
        raise (where / "resource").error(f"expected the address, e.g. '/dev/ttyACM0' or 'TCPIP::…' ({got})")
    channels_where = where / "channels"
    channel_tables = _table(channels_where, table.get("channels", {}), "a table of channels")
    channels = {
        ch: _channel(channels_where / ch, _name(channels_where / ch, ch, "channel"), ch_table)
        for ch, ch_table in (channel_tables or {"1": {}}).items()
    }
    options = _options(where / "options", name, driver, table.get("options", {}), channels)
    return InstrumentConfig(name, driver, resource, options, channels)


def parse_lab(data: dict[str, Any], path: Path) -> LabConfig:
    """Validate the parsed TOML; every error names ``path`` and the key."""
    root = _Where(path)
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise root.error(f"unknown section [{unknown[0]}] (allowed: {', '.join(_TOP_KEYS)})")
    defaults = _table(root / "defaults", data.get("defaults", {}), "a table like [defaults]")
    _refuse_unknown(root / "defaults", defaults, _DEFAULTS_KEYS)
    operator = _text(root / "defaults" / "operator", defaults.get("operator", ""))
    tables = _table(
        root / "instruments", data.get("instruments", {}), "a table of instruments like [instruments.pstat]"
    )
    instruments = {name: _instrument(root / "instruments" / name, name, table) for name, table in tables.items()}
    for inst in instruments.values():
        for ch in inst.channels.values():
            if ch.chamber is not None:
                target = instruments.get(ch.chamber)
                if target is None or target.kind != "chamber":
                    chambers = ", ".join(sorted(n for n, i in instruments.items() if i.kind == "chamber")) or "none"
                    raise (root / "instruments" / inst.name / "channels" / ch.name / "chamber").error(
                        f"{ch.chamber!r} is not a configured chamber (configured chambers: {chambers})"
                    )
    return LabConfig(
        path=path,
        instruments=instruments,
        operator=operator,
        cell=_cell(root / "defaults" / "cell", defaults.get("cell")),
        alerts=parse_alerts(root / "alerts", data.get("alerts")),
    )


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, or one line saying why not."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_LAB_FILE_BYTES + 1)
    except FileNotFoundError:
        raise LabConfigError(f"lab file {path} not found") from None
    except IsADirectoryError:
        raise LabConfigError(f"{path}: is a folder, not a lab file") from None
    except OSError as exc:
        raise LabConfigError(f"{path}: cannot read the lab file: {exc.strerror or exc}") from None
    if len(raw) > MAX_LAB_FILE_BYTES:
        raise LabConfigError(f"{path}: larger than {MAX_LAB_FILE_BYTES // 1024} KiB; not a lab file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise LabConfigError(
            f"{path}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, column {column} "
            "(save the lab file as UTF-8)"
        ) from None


def load_lab(path: Path) -> LabConfig:
    """Read and validate a lab file; LabConfigError (a ValueError) says what is wrong, in one line."""
    text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise LabConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    return parse_lab(data, path)
