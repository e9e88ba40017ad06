"""Name lookups: protocols, drivers and emulators (the application layer).

The core (steps, channel contract, engine, storage, analysis) knows no
protocol or driver by name; only this module and its callers (runner, config,
CLI, queue, GUI) do. Drivers and emulators are resolved lazily, so a missing
transport library for one instrument never breaks another.

Driver factories: ``create(resource: str, options: dict, clock: Clock) ->
Channel`` (potentiostats, SMUs, LCR meters) or ``-> TemperatureController``
(chambers). Emulator factories: ``serve(params: SimParams, *, port: int = 0,
speed: float = 1.0, cell_type: str = "auto", **options) -> EmulatorServer``
(an object with ``resource`` — the address a driver opens — ``faults``,
``stop()``, and context-manager use).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from labctl.params import ParameterError
from labctl.protocol import Protocol

DRIVERS: dict[str, str] = {
    "emstat4": "drivers.palmsens.methodscript:create_emstat4",
    "nexus": "drivers.palmsens.methodscript:create_nexus",
    "emstat_pico": "drivers.palmsens.methodscript:create_pico",
    "keithley2450": "drivers.keithley.smu:create_2450",
    "keithley2400": "drivers.keithley.smu:create_2400",
    "e4980a": "drivers.keysight.e4980a:create",
    "espec": "drivers.temperature.espec:create",
    "eurotherm": "drivers.temperature.eurotherm:create",
    "neware": "drivers.neware.channel:create",
    "maccor": "drivers.maccor.channel:create",
    "arbin": "drivers.arbin.channel:create",
}

#: Each driver's options class (``drivers.kit.options.DriverOptions``): light modules,
#: so the lab-file loader checks options without loading a transport library.
DRIVER_OPTIONS: dict[str, str] = {
    "emstat4": "drivers.palmsens.options:Options",
    "nexus": "drivers.palmsens.options:Options",
    "emstat_pico": "drivers.palmsens.options:Options",
    "keithley2450": "drivers.keithley.options:SmuOptions",
    "keithley2400": "drivers.keithley.options:SmuOptions",
    "e4980a": "drivers.keysight.options:E4980AOptions",
    "espec": "drivers.temperature.espec:EspecOptions",
    "eurotherm": "drivers.temperature.eurotherm:EurothermOptions",
    "neware": "drivers.neware.options:NewareOptions",
    "maccor": "drivers.maccor.options:MaccorOptions",
    "arbin": "drivers.arbin.options:ArbinOptions",
}

#: What kind of instrument each driver is.
KINDS: dict[str, str] = {
    "emstat4": "potentiostat",
    "nexus": "potentiostat",
    "emstat_pico": "potentiostat",
    "keithley2450": "smu",
    "keithley2400": "smu",
    "e4980a": "lcr",
    "espec": "chamber",
    "eurotherm": "chamber",
    "neware": "cycler",
    "maccor": "cycler",
    "arbin": "cycler",
}

EMULATORS: dict[str, str] = {
    "emstat4": "drivers.sim.wire.emstat:serve_emstat4",
    "nexus": "drivers.sim.wire.emstat:serve_nexus",
    "emstat_pico": "drivers.sim.wire.emstat:serve_pico",
    "keithley2450": "drivers.sim.wire.keithley:serve_2450",
    "keithley2400": "drivers.sim.wire.keithley:serve_2400",
    "e4980a": "drivers.sim.wire.e4980a:serve",
    "espec": "drivers.sim.wire.espec:serve",
    "eurotherm": "drivers.sim.wire.eurotherm:serve",
    "neware": "drivers.sim.wire.neware_bts:serve",
    "maccor": "drivers.sim.wire.maccor_macnet:serve",
    "arbin": "drivers.sim.wire.arbin_cti:serve",
}


def _resolve(table: dict[str, str], name: str, what: str) -> Callable[..., Any]:
    if name not in table:
        raise ValueError(f"unknown {what} {name!r} (known: {', '.join(sorted(table))})")
    module_name, _, attr = table[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def driver_factory(name: str) -> Callable[..., Any]:
    return _resolve(DRIVERS, name, "driver")


def driver_options(name: str) -> Any:
    """The options class of driver ``name``: ``.parse(mapping)`` raises an
    ``OptionError`` (with ``key`` and ``reason``) for an unknown or bad option."""
    return _resolve(DRIVER_OPTIONS, name, "driver")


def emulator_factory(name: str) -> Callable[..., Any]:
    return _resolve(EMULATORS, name, "emulator model")


def _protocol_modules() -> dict[str, str]:
    import protocols

    return {
        info.name: f"protocols.{info.name}"
        for info in pkgutil.iter_modules(protocols.__path__)
        if not info.name.startswith("_")
    }


def _load_protocol(name: str) -> Protocol | None:
    modules = _protocol_modules()
    if name not in modules:
        return None
    module = importlib.import_module(modules[name])
    protocol = getattr(module, "PROTOCOL", None)
    return protocol if isinstance(protocol, Protocol) else None


def available_protocols() -> list[str]:
    """Names of the protocols shipped in ``protocols/``."""
    return sorted(name for name in _protocol_modules() if _load_protocol(name) is not None)


def get_protocol(name: str) -> Protocol:
    protocol = _load_protocol(name)
    if protocol is None:
        known = ", ".join(available_protocols()) or "none"
        raise ParameterError("protocol", f"unknown protocol {name!r} (known: {known})")
    return protocol
