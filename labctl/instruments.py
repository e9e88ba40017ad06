"""Turning an instrument name from the command line into a Channel.

``sim`` needs no configuration: it is the physics simulator, with its truth
set by ``--sim name=value``. Other names come from the lab file
(``labctl.config``): the driver is built from the registry, wrapped with its
chamber when the channel has one, and comes with the channel's safety limits.
The CLI, the queue and the GUI share this one path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from labctl.channel import Channel
from labctl.clock import Clock, RealClock, ScaledClock, make_sim_clock
from labctl.config import InstrumentConfig, LabConfig
from labctl.params import ParameterError
from labctl.safety import SafetyLimits
from labctl.speed import parse_speed_factor


@dataclass(frozen=True)
class ChannelSpec:
    """How to build the channel for a run (kept for the run file)."""

    instrument: str
    sim: Mapping[str, str]
    speed: float | None  # None = as fast as possible (simulators only)


#: Bounds of a time-scale factor (× real time): below 1e-3 a one-second step
#: takes 17 minutes of wall time (and sleeps overflow long before 1e-300); above
#: 1e7 a millisecond of host scheduling jitter is hours of cell time.
#: ``max`` (or ``fastest``/``inf``) is virtual time, for simulators only.
@dataclass(frozen=True)
class Target:
    """Where a run will go, known before any driver is built: the channel's
    safety limits and default cell, and how to build it."""

    simulated: bool
    safety: SafetyLimits
    cell_defaults: dict[str, Any]
    _build: Callable[[str], tuple[Channel, dict[str, Any] | None]]

    def build(self, cell_type: str) -> tuple[Channel, dict[str, Any] | None]:
        """The channel and the simulation truth to record (None on hardware)."""
        return self._build(cell_type)


def resolve_target(spec: ChannelSpec, lab: LabConfig | None = None) -> Target:
    """Validate the instrument name (and --sim settings) without building anything
    that talks to hardware."""
    if spec.instrument == "sim":
        from drivers.sim import SimChannel, SimParams

        params = SimParams.from_strings(dict(spec.sim))

        def build_sim(cell_type: str) -> tuple[Channel, dict[str, Any] | None]:
            chosen_type = cell_type if params.cell == "auto" else params.cell
            channel = SimChannel(params, chosen_type, make_sim_clock(spec.speed))
            truth = {**params.as_dict(), "cell": chosen_type, "speed": "max" if spec.speed is None else spec.speed}
            return channel, truth

        return Target(True, SafetyLimits(), {}, build_sim)
    if spec.sim:
        raise ParameterError("sim", "--sim settings apply only to --instrument sim")
    if lab is None:
        raise ParameterError(
            "instrument",
            f"unknown instrument {spec.instrument!r}: without a lab file only 'sim' exists (give --lab lab.toml)",
        )
    instrument, channel_config = lab.channel(spec.instrument)
    if instrument.kind == "chamber":
        raise ParameterError("instrument", f"{instrument.name!r} is a temperature chamber, not a measuring channel")

    def build_configured(cell_type: str) -> tuple[Channel, dict[str, Any] | None]:
        channel = build_channel(instrument, channel_config.name)
        if channel_config.chamber is not None:
            from drivers.composite import ChamberChannel

            channel = ChamberChannel(channel, build_instrument(lab.instruments[channel_config.chamber]))
        return channel, None

    return Target(False, channel_config.safety, {**lab.cell, **channel_config.cell}, build_configured)


def instrument_clock(options: dict[str, Any]) -> Clock:
    """Real time, unless the instrument is a wire emulator running faster
    (``clock_speed`` in its options: the driver must time its loops alike)."""
    speed = parse_speed_factor(options.get("clock_speed", 1.0), "clock_speed")
    return RealClock() if speed == 1.0 else ScaledClock(speed)


def build_instrument(config: InstrumentConfig, channel: str | None = None) -> Any:
    """Construct the driver named in the lab file (not yet connected)."""
    from labctl.registry import driver_factory

    options = {k: v for k, v in config.options.items()}
    if channel is not None:
        options.setdefault("channel", channel)
    factory = driver_factory(config.driver)
    clock = instrument_clock(config.options)
    try:
        return factory(config.resource, options, clock)
    except (TypeError, ValueError, ArithmeticError) as exc:
        # Until every driver's options are checked at lab-file load
        # (config._validate_driver_options), a driver refusing its options
        # here is still bad input: one line naming the instrument, not a traceback.
        message = " ".join(str(exc).split())
        raise ParameterError(
            "instrument", f"{config.name!r} ({config.driver}): bad options or resource: {message}"
        ) from None


def build_channel(config: InstrumentConfig, channel: str) -> Channel:
    built = build_instrument(config, channel)
    if not isinstance(built, Channel):
        raise ParameterError("instrument", f"{config.name!r} ({config.driver}) is not a measuring channel")
    return built
