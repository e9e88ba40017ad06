"""The channel interface every instrument driver implements, and its errors.

A Channel executes one Step at a time: natively where the instrument can
(on-device loops and cutoffs), or as a host-timed loop that checks the step's
limits with ``labctl.limits.LimitWatcher``. It streams sample blocks by
yielding them and returns a ``StepOutcome``. The engine may stop iterating at
any yield (abort, pause): the channel must then be brought to rest with
``hold()`` or ``safe_state()``, which never depend on the protocol.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.clock import Clock
from labctl.steps import ConstantVoltage, EndReason, Impedance, Step, VoltageSweep

log = logging.getLogger(__name__)


class InstrumentError(Exception):
    """The instrument failed: the run ends as failed, with this as the reason."""


class InstrumentTimeout(InstrumentError):
    """No reply within the transport's timeout."""


class GarbledReply(InstrumentError):
    """A reply that does not parse as the command set says it must."""


class InstrumentErrorCode(InstrumentError):
    """The instrument reported an error code of its own."""

    def __init__(self, code: int | str, message: str = "") -> None:
        self.code = code
        super().__init__(f"instrument error {code}: {message}" if message else f"instrument error {code}")


class ConnectionLost(InstrumentError):
    """The transport closed under us."""


def with_one_reconnect(
    action: Callable[[], None],
    reconnect: Callable[[], None],
    *,
    instrument: str,
    goal: str,
    retry_on: tuple[type[Exception], ...] = (InstrumentError,),
) -> None:
    """Do ``action``; if the transport failed, reconnect once and do it again.

    Safe states use this: a dropped link must not leave an instrument heating
    or biasing the cell just because the first attempt met a dead socket.
    """
    try:
        action()
        return
    except retry_on as first:
        log.warning("%s: %s failed (%s); reconnecting", instrument, goal, first)
    try:
        reconnect()
        action()
    except InstrumentError as exc:
        raise InstrumentError(f"{instrument}: could not {goal}: {exc}") from exc


class UnsupportedStep(Exception):
    """The channel cannot execute this step (raised before a run starts)."""


@dataclass(frozen=True)
class InstrumentInfo:
    """Identification written into every run file."""

    driver: str
    model: str
    serial: str = ""
    firmware: str = ""
    resource: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "model": self.model,
            "serial": self.serial,
            "firmware": self.firmware,
            "resource": self.resource,
            **self.extra,
        }


@dataclass(frozen=True)
class Capabilities:
    """What a channel can do; the engine refuses other steps before a run."""

    step_kinds: frozenset[str]
    max_current: float = float("inf")  # A, magnitude
    voltage_range: tuple[float, float] = (-10.0, 10.0)  # V
    frequency_range: tuple[float, float] = (1e-5, 1e7)  # Hz
    impedance_modes: frozenset[str] = frozenset({"potentiostatic", "galvanostatic"})

    def refusal(self, step: Step) -> str | None:
        """Why this channel cannot run ``step``, or None when it can."""
        if step.kind not in self.step_kinds:
            return f"{step.kind} steps are not supported by this channel"
        current = getattr(step, "current", None)
        if current is not None and abs(current) > self.max_current:
            return f"current {current:g} A exceeds the channel's {self.max_current:g} A"
        # Potentials known before the run (vs-OCV set points are checked by the
        # driver when it writes the step for the instrument).
        lo_v, hi_v = self.voltage_range
        potentials: list[tuple[str, float]] = []
        if isinstance(step, VoltageSweep):
            potentials.append(("sweep stop", step.stop))
            if step.start != "ocv":
                potentials.append(("sweep start", float(step.start)))
        elif isinstance(step, ConstantVoltage) and not step.vs_ocv:
            potentials.append(("potential", step.voltage))
        elif isinstance(step, Impedance) and step.mode == "potentiostatic" and not step.bias_vs_ocv:
            potentials.append(("DC potential", step.bias))
        for what, value in potentials:
            if not lo_v <= value <= hi_v:
                return f"{what} {value:g} V is outside the channel's {lo_v:g}..{hi_v:g} V"
        if isinstance(step, Impedance):
            lo, hi = self.frequency_range
            for f in (step.f_start, step.f_stop):
                if not lo <= f <= hi:
                    return f"frequency {f:g} Hz outside the channel's {lo:g}..{hi:g} Hz"
            if step.mode not in self.impedance_modes:
                return f"{step.mode} impedance is not supported by this channel"
        return None


@dataclass(frozen=True)
class StepOutcome:
    """How a channel's execution of a step ended."""

    end_reason: EndReason
    message: str = ""
    spectrum: np.ndarray | None = None


@dataclass
class StepContext:
    """What the engine hands a channel for one step.

    ``t_origin`` is the clock time of the run start: samples carry
    ``clock.now() - t_origin``. ``interrupt`` is set when the engine wants the
    step to stop early (abort or pause): long waits must watch it, and
    channels must yield at least every ``max_block_wall`` seconds of wall time
    so the engine can act and flush.
    """

    clock: Clock
    t_origin: float
    interrupt: threading.Event
    max_block_wall: float = 0.25

    def run_time(self) -> float:
        return self.clock.now() - self.t_origin


StepRun = Generator[np.ndarray, None, StepOutcome]


class Channel(ABC):
    """One potentiostat channel, one SMU, one battery-tester channel."""

    name: str = "channel"
    capabilities: Capabilities

    @property
    @abstractmethod
    def clock(self) -> Clock:
        """The clock this channel's time comes from."""

    def open(self) -> None:  # noqa: B027 - optional hook, most channels need nothing
        """Connect; called once before the first step."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect; called once after the run (after safe_state)."""

    @abstractmethod
    def identify(self) -> InstrumentInfo: ...

    def cell_info(self) -> dict[str, Any] | None:
        """Geometry/type of the cell when the channel knows it (a simulator
        does; real hardware does not). Keys: area_cm2, thickness_um, type."""
        return None

    @abstractmethod
    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        """Execute ``step``: yield SAMPLE_DTYPE blocks (impedance steps yield
        SPECTRUM_DTYPE blocks, one or more points each) and return how it ended."""

    @abstractmethod
    def hold(self) -> None:
        """Pause: keep the cell safe but ready to go on (open circuit, or the
        present potential during a potentiostatic step)."""

    @abstractmethod
    def safe_state(self) -> None:
        """Output off / cell disconnected. Must be idempotent and must not
        raise for a working transport; called on every exit path."""


class TemperatureController(ABC):
    """A temperature chamber or controller: set point, reading, standby.

    Combined with a potentiostat channel by ``drivers.composite.ChamberChannel``,
    which runs SetTemperature steps on it and fills the cell temperature (T)
    of every sample block from its reading.
    """

    name: str = "chamber"

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect (after standby)."""

    @abstractmethod
    def identify(self) -> InstrumentInfo: ...

    @abstractmethod
    def read_temperature(self) -> float:
        """The present chamber (or sample) temperature in °C."""

    @abstractmethod
    def set_temperature(self, celsius: float) -> None:
        """Run at a constant set point."""

    @abstractmethod
    def standby(self) -> None:
        """Safe state: stop heating/cooling actively (chamber standby / controller off)."""
