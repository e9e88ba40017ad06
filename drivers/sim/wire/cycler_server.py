"""What every cycler emulator's server shares: its channels' cells and their faults.

The Neware, Maccor and Arbin emulators differ in their messages (``*Handler``) and in how
a channel is addressed, not in what a test or ``labctl sim-server`` does with a running
server: reach a channel's cell, schedule a fault on the replies about one channel, raise a
channel alarm (``--fault instrument-error``), drop every link, stop. That is written once
here; a server names its key type (``key``) and its alarm text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from drivers.sim import SimParams
from drivers.sim.wire.cycler_cell import CyclerCell
from drivers.sim.wire.transport import EmulatorServer, TcpServer
from labctl.clock import Clock

K = TypeVar("K")
FAULT_KINDS = ("no-reply", "garbled", "drop-link", "alarm")


class CyclerModel(Protocol):
    """The state a cycler emulator's handlers share (under ``lock``)."""

    clock: Clock
    lock: Any
    #: Scheduled (``--fault``) faults act only on replies about this channel (None: any reply).
    fault_channel: Any
    #: Per-channel faults pending: key -> kinds, "" = a reply that passes unharmed.
    pending: dict[Any, list[str]]
    cells: Any  # list[CyclerCell] by wire index, or dict[key, CyclerCell]


def channel_cells(
    params: SimParams,
    cell_type: str,
    clock: Clock,
    count: int,
    record_period: float,
    channel_clocks: Mapping[int, Clock] | None = None,
) -> list[CyclerCell]:
    """One cell per channel (wire index from 0), each its own seed; ``channel_clocks`` gives a
    channel its own clock (a driver per channel in lockstep), else they share ``clock``."""
    return [
        CyclerCell(
            SimParams(**{**params.as_dict(), "seed": params.seed + chan}),
            cell_type,
            (channel_clocks or {}).get(chan, clock),
            record_period,
        )
        for chan in range(count)
    ]


class CyclerServer(EmulatorServer, Generic[K]):
    """A running cycler emulator: ``resource`` is ``tcp://127.0.0.1:<port>``."""

    #: What an injected alarm says (the channel stops in its protect/suspended/unsafe state).
    alarm_text: ClassVar[str] = "alarm"

    def __init__(self, model: CyclerModel, tcp: TcpServer) -> None:
        self.model = model
        self.server = tcp
        self.faults = tcp.faults
        self.faults.cell_time = model.clock.now
        self.port = tcp.port
        self.resource = f"tcp://127.0.0.1:{tcp.port}"

    def key(self, channel: Any) -> K:
        """A channel as the model keys it (default: the wire index itself)."""
        return channel  # type: ignore[no-any-return]

    def cell(self, channel: Any) -> CyclerCell:
        """The emulated channel (see ``key`` for how it is named)."""
        return self.model.cells[self.key(channel)]  # type: ignore[no-any-return]

    def _cells(self) -> list[CyclerCell]:
        cells = self.model.cells
        return list(cells.values()) if isinstance(cells, dict) else list(cells)

    def inject(self, channel: Any, kind: str, after: int = 0) -> None:
        """A fault on one channel, on the reply about it after ``after`` more such replies:
        ``no-reply``/``garbled``/``drop-link`` act on that reply; ``alarm`` (or
        ``instrument-error``) stops the channel, output off (at once when ``after`` is 0)."""
        key = self.key(channel)
        kind = "alarm" if kind == "instrument-error" else kind
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} (allowed: {', '.join(FAULT_KINDS)})")
        with self.model.lock:
            if kind == "alarm" and after == 0:
                self.model.cells[key].raise_alarm(self.alarm_text)
                return
            self.model.pending.setdefault(key, []).extend([""] * after + [kind])

    def instrument_faults(self) -> dict[str, Callable[[], bool]]:
        """``--fault instrument-error``: an alarm on the fault channel (option
        ``fault_channel``), or else on the first channel running a test."""

        def alarm() -> bool:
            with self.model.lock:
                target = self.model.fault_channel
                if target is not None:
                    return bool(self.model.cells[target].raise_alarm(self.alarm_text))
                return any(cell.raise_alarm(self.alarm_text) for cell in self._cells())

        return {"instrument-error": alarm}

    def drop(self) -> None:
        self.server.drop_all()

    def stop(self) -> None:
        self.server.stop()
