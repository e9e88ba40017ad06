"""A MethodSCRIPT instrument (EmStat4, Nexus, EmStat Pico) on a pseudo-terminal.

The emulator speaks the instrument's serial protocol (EmStat4 communication
protocol v1.3 / EmStat Pico v1.6: ``t``, ``i``, ``v``, ``l``/``r``/``e`` +
script + empty line, ``Z``; errors ``<letter>!XXXX``) and really interprets
the scripts it is sent (MethodSCRIPT manual v1.8). Everything it knows of the
language and the wire -- the script reader, literals, data packages, error
codes, the device table -- is its own (``mscript_lang``), written from the
manual independently of the driver, so a mistake in ``drivers/palmsens`` is
not mirrored here. A script it cannot load is answered
``<letter>!XXXX: Line L, Col C``; statements: variables and arrays
(``array``, ``array_set``/``array_get``, ``name[i]``), arithmetic,
``float_to_int``, ``if``/``elseif``/``else``, ``loop``/``breakloop``, timers,
``pck_*`` packets, ``send_string``, cell on/off, and the measurement loops
``meas_loop_ocp``/``ca``/``cp``/``lsv``/``eis``/``geis`` (below) and
``cv`` (with ``nscans(n)``), ``swv``, ``dpv``, ``npv``, ``acv``, ``lsp``,
``pad`` (``mscript_techniques``: several simulator steps per loop). A model
refuses the loops it does not have (the Pico: CP, LSP, GEIS, ACV) with
``!001B`` when the script loads.

Each measurement loop becomes one step on an embedded ``SimChannel`` (the same
physics as ``--instrument sim``), run on a clock ``speed`` times real time:
``meas_loop_ocp`` a Rest, ``meas_loop_ca`` a ConstantVoltage, ``meas_loop_cp``
a ConstantCurrent, ``meas_loop_lsv`` a VoltageSweep, ``meas_loop_eis``/``_geis``
an Impedance sweep over the same log-spaced frequencies. The loop body
(packets, ``if … breakloop`` cutoffs) runs on every sample.

The physics computes samples in chunks (vectorised; one sample at a time is
too slow for the implicit sweep models), so a ``breakloop`` in the middle of a
chunk would leave the cell further on than the last reported sample. The
cutoffs a body expresses in the usual forms -- ``if <potential> >= x``,
``if <potential> <= x``, ``if <current> >= x`` together with ``<= -x``
(|I| above), ``if <current> <= x`` nesting ``if <current> >= -x`` (|I|
below), ``if <timer> >= T`` -- are therefore also handed to the physics as
the step's limits (``_Cutoffs``): it stops the cell at the first sample whose
reading meets them, or at the exact model crossing between two samples, as
the comparator of an instrument sampling much faster than it reports would.
The body, evaluated on that sample, breaks the loop as it must. Any other
condition is still evaluated on every sample, with the cell up to one chunk
(at most ~50 ms of wall time) ahead when it breaks.

Between loops the cell follows the last control law (a potentiostatic hold
continues while the cell is on; ``cell_off`` opens the circuit). ``Z`` aborts
a running script: the loop is wound up (``*``), ``on_finished:`` runs, the
output ends with an empty line. A runtime error ends the script with
``!XXXX: Line L`` and skips ``on_finished:`` (as the manual says), leaving the
cell as it was. When the host goes away (a dropped link, the server
stopping) the instrument loses its USB host and switches the cell off.

Instrument faults to inject: ``device.inject_error(code, after_packets)`` (a
runtime error code), ``device.inject_overload(after_packets, quantity)`` (the
overload status flag on the current or the potential). Transport faults
(no reply, garbled reply, dropped link) come from ``server.faults``
(``drivers.sim.wire.transport.Faults``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.sim import SimChannel, SimParams
from drivers.sim.wire import mscript_lang as L
from drivers.sim.wire import mscript_techniques as T
from drivers.sim.wire.mscript_lang import Block, Device, LoadError, Node, Script, Statement
from drivers.sim.wire.transport import LineHandler, PtyServer, Session
from labctl.channel import StepContext
from labctl.clock import Clock, ScaledClock
from labctl.steps import ConstantCurrent, ConstantVoltage, Impedance, Limits, Rest, Step, VoltageSweep

log = logging.getLogger(__name__)

#: Technique numbers in the ``MXXXX`` loop-start line (manual v1.8 §"Measurement loop output";
#: LSV 0, CA 7, OCP 11, EIS 13 as documented; CP and GEIS as this emulator numbers them).
TECHNIQUES = {"lsv": 0x0000, "ca": 0x0007, "cp": 0x000A, "ocp": 0x000B, "eis": 0x000D, "geis": 0x000E}
#: How much of the conversation a device keeps for inspection (tests, debugging).
_KEEP_LINES = 20000
_KEEP_SCRIPTS = 200
#: Cell state each loop needs (the instrument answers 0x0014 otherwise).
NEEDS_CELL_ON = {"ocp": False, "ca": True, "cp": True, "lsv": True, "eis": True, "geis": True}
#: Variable types of the loops' outputs (appendix C of the manual).
OUTPUT_TYPES = {
    "ocp": ("ab",),
    "ca": ("ab", "ba"),
    "cp": ("ab", "ba"),
    "lsv": ("da", "ba"),
    "eis": ("dc", "cc", "cd"),
    "geis": ("dc", "cc", "cd"),
}


class _Abort(Exception):
    """Z, the abort command, or the host going away: wind up, run on_finished."""


class _Break(Exception):
    """breakloop."""


class RuntimeFault(Exception):
    """A runtime error: ``!XXXX: Line L``, on_finished is skipped."""

    def __init__(self, code: int, line: int) -> None:
        self.code = code
        self.line = line
        super().__init__(f"!{code:04X} at line {line}")


@dataclass
class Value:
    """A MethodSCRIPT variable: number, integer flag, type and packet metadata."""

    value: float = math.nan
    integer: bool = False
    type: str = "aa"
    status: int | None = None
    range: int | None = None


@dataclass(frozen=True)
class _FrequencyList(Impedance):
    """An impedance step over an explicit list of frequencies (the instrument's
    ``n`` log-spaced points between start and end, whatever the decade count)."""

    points: tuple[float, ...] = ()

    @property
    def kind(self) -> str:
        return "Impedance"

    def frequencies(self) -> np.ndarray:
        return np.asarray(self.points[self.skip_points :], dtype=float)


@dataclass
class InstrumentFaults:
    """Instrument-level faults armed by a test (transport faults live in ``server.faults``)."""

    error_code: int | None = None
    error_after: int = 0  # packets (since arming) before the runtime error
    overload: str | None = None  # "current" or "potential"
    overload_after: int = 0
    armed_at: int = 0


class EmStatDevice:
    """The emulated instrument: its state, its cell and its script engine."""

    def __init__(
        self,
        model: Device,
        params: SimParams,
        cell_type: str = "auto",
        speed: float = 1.0,
        serial: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.model = model
        kind = cell_type if cell_type != "auto" else (params.cell if params.cell != "auto" else "li_li")
        self.speed = float(speed)
        #: The instrument's time: N× real time, or a clock the caller controls (a
        #: ``VirtualClock`` shared with the driver runs the two in lockstep, so a test
        #: never depends on how fast the host is).
        self.clock: Clock = clock if clock is not None else ScaledClock(self.speed)
        self.sim = SimChannel(params, kind, self.clock)
        self.serial = serial or f"SIM{model.firmware[:6].upper().replace('_', '')}{params.seed:05d}"
        self.cell_on = False
        self.faults = InstrumentFaults()
        self.received: list[str] = []
        self.scripts: list[list[str]] = []
        self.packets_sent = 0
        self.e_set = 0.0
        self.i_set = 0.0
        self.ranges: dict[str, tuple[float, float]] = {}
        self.pgstat_mode = 0
        self._loading: list[str] | None = None
        self._loading_cmd = ""
        self._loaded: Script | None = None
        self._runner: threading.Thread | None = None
        self._busy = False  # a script is running (cleared before its last line is sent)
        self._abort = threading.Event()
        self._session: Session | None = None
        self._host_gone = False
        self._sample_time: float | None = None

    # --- state a test can look at ------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._busy

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no script runs (True) or the timeout passes (False)."""
        runner = self._runner
        if runner is not None:
            runner.join(timeout)
        return runner is None or not runner.is_alive()

    def inject_error(self, code: int = L.OVERLOAD, after_packets: int = 0) -> None:
        """The next measurement loop fails with ``!code: Line L`` after that many more packets."""
        self.faults = dataclasses.replace(
            self.faults, error_code=code, error_after=after_packets, armed_at=self.packets_sent
        )

    def inject_overload(self, after_packets: int = 0, quantity: str = "current") -> None:
        """Flag OVERLOAD on the current (or potential) of every packet after that many more."""
        if quantity not in ("current", "potential"):
            raise ValueError("quantity must be 'current' or 'potential'")
        self.faults = dataclasses.replace(
            self.faults, overload=quantity, overload_after=after_packets, armed_at=self.packets_sent
        )

    def clear_faults(self) -> None:
        self.faults = InstrumentFaults()

    def now(self) -> float:
        """Instrument time: the sample's time inside a measurement loop, the clock otherwise."""
        return self._sample_time if self._sample_time is not None else self.clock.now()

    # --- the wire --------------------------------------------------------------------------------
    def handler(self, session: Session) -> LineHandler:
        self._session = session
        return _Handler(self, session)

    def _send(self, session: Session, text: str) -> None:
        session.send((text + "\n").encode("ascii"))

    def on_line(self, session: Session, raw: bytes) -> None:
        text = raw.decode("ascii", errors="replace")
        self.received.append(text)
        if len(self.received) > _KEEP_LINES:  # a long-running server keeps the recent past only
            del self.received[: len(self.received) - _KEEP_LINES]
        if self._loading is not None:
            if text == "":
                self._loaded_script(session)
            else:
                self._loading.append(text)
            return
        if self.running:
            if text == "Z":
                self._send(session, "Z")
                self._abort.set()
            elif text:
                self._send(session, f"{text[0]}!{L.WRONG_STATE:04X}")
            return
        if not text:
            return
        letter, rest = text[0], text[1:]
        if rest:
            self._send(session, f"{letter}!{L.UNKNOWN_COMMAND:04X}")
        elif letter == "t":
            self._send(session, f"t{self.model.firmware}#Mar 12 2024 10:00:00")
            self._send(session, "R*")
        elif letter == "i":
            self._send(session, f"i{self.serial}")
        elif letter == "v":
            self._send(session, "v0108")
        elif letter in ("e", "l"):
            self._loading, self._loading_cmd = [], letter
        elif letter == "r":
            if self._loaded is None:
                self._send(session, f"r!{L.WRONG_STATE:04X}")
            else:
                self._busy = True
                self._send(session, "r")
                self._start(session, self._loaded)
        elif letter == "Z":
            self._send(session, f"Z!{L.WRONG_STATE:04X}")
        else:
            self._send(session, f"{letter}!{L.UNKNOWN_COMMAND:04X}")

    def _loaded_script(self, session: Session) -> None:
        lines, letter = self._loading or [], self._loading_cmd
        self._loading = None
        self.scripts.append(lines)
        if len(self.scripts) > _KEEP_SCRIPTS:
            del self.scripts[0]
        try:
            program = L.read_script(lines)
            self._check_device(program)
        except LoadError as exc:
            log.info("emulator rejected a script: %s", exc)
            self._send(session, f"{letter}!{exc.code:04X}: Line {exc.line}, Col {exc.column}")
            return
        if letter == "l":
            self._loaded = program
            self._send(session, letter)
        else:
            self._busy = True  # before the acknowledgement: a Z right after it must find the script
            self._send(session, letter)
            self._start(session, program)

    def _check_device(self, program: Script) -> None:
        """What this model's firmware refuses while loading: the loops it does not have."""
        for node in _walk(program.main + program.on_finished):
            head = node.head if isinstance(node, Block) else node
            if head.name in L.LOOPS and head.name.removeprefix("meas_loop_") not in self.model.loops:
                raise LoadError(f"{head.name} is not available", head.line, head.column, L.NOT_SUPPORTED)

    def _start(self, session: Session, program: Script) -> None:
        self._busy = True
        self._abort.clear()
        self._runner = threading.Thread(target=self._run, args=(session, program), name="emstat-script", daemon=True)
        self._runner.start()

    def _run(self, session: Session, program: Script) -> None:
        interp = _Interpreter(self, session)
        last = ""
        try:
            with contextlib.suppress(_Abort):
                interp.execute(program.main)
            if self._gone(session):
                return
            self._abort.clear()  # on_finished runs after an abort too (that is what it is for)
            with contextlib.suppress(_Abort):
                interp.execute(program.on_finished)
        except RuntimeFault as fault:
            last = f"!{fault.code:04X}: Line {fault.line}"
        except Exception:  # an emulator bug: say so on the wire rather than hang the driver
            log.exception("emulator script engine failed")
            last = f"!{L.SCRIPT_SYNTAX:04X}: Line 1"
        finally:
            self._sample_time = None
            self._busy = False
        if not self._gone(session):
            self._send(session, last)

    def _gone(self, session: Session) -> bool:
        """The host went away: the instrument loses power and the cell relay opens."""
        if session.closed.is_set() or self._host_gone:
            self.power_off()
            return True
        return False

    def power_off(self) -> None:
        self.cell_on = False
        self.sim.safe_state()

    def host_gone(self) -> None:
        """The server stops (or the pty closes): abort any script, cell off."""
        self._host_gone = True
        self._abort.set()
        self.wait_idle(5.0)
        self.power_off()

    def link_restored(self) -> None:
        self._host_gone = False


class _Handler(LineHandler):
    def __init__(self, device: EmStatDevice, session: Session) -> None:
        self.device = device
        self.session = session

    def on_line(self, line: bytes) -> None:
        self.device.on_line(self.session, line)

    def on_close(self) -> None:
        self.device.host_gone()


def _walk(nodes: list[Node]):
    for node in nodes:
        yield node
        if isinstance(node, Block):
            yield from _walk(node.body)
            for _, body in node.branches:
                yield from _walk(body)


@dataclass
class _Cutoffs:
    """Limits recognised in a loop body (see the module docstring)."""

    voltage_above: float | None = None
    voltage_below: float | None = None
    current_below: float | None = None
    current_above: float | None = None
    max_time: float | None = None  # on the timer (s since timer_start)

    def limits(self, run_time: float | None, timer_offset: float) -> Limits:
        """As step limits; ``timer_offset`` = timer value at the loop start."""
        times = [t for t in (run_time,) if t is not None]
        if self.max_time is not None and self.max_time - timer_offset > 0:
            times.append(self.max_time - timer_offset)
        above, below = self.voltage_above, self.voltage_below
        if above is not None and below is not None and below >= above:
            above = below = None  # contradictory: leave them to the body
        return Limits(
            max_time=min(times) if times else None,
            voltage_above=above,
            voltage_below=below,
            current_below=self.current_below,
            current_above=self.current_above,
        )


def _if_chain(node: Node) -> list[Statement] | None:
    """The conditions of nested ifs (no else) whose innermost body breaks the loop."""
    if not isinstance(node, Block) or node.head.name != "if" or node.branches:
        return None
    blocks = [n for n in node.body if isinstance(n, Block)]
    breaks = any(isinstance(n, Statement) and n.name == "breakloop" for n in node.body)
    if breaks and not blocks:
        return [node.head]
    if not breaks and len(blocks) == 1:
        inner = _if_chain(blocks[0])
        return None if inner is None else [node.head, *inner]
    return None


_ASSIGNING = ("store_var", "copy_var", "add_var", "sub_var", "mul_var", "div_var", "timer_get")
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class _Interpreter:
    """Executes one script on the device."""

    def __init__(self, device: EmStatDevice, session: Session) -> None:
        self.device = device
        self.session = session
        self.vars: dict[str, Value] = {}
        self.arrays: dict[str, list[Value]] = {}
        self.timer0 = device.now()
        self.packet: list[Value] | None = None

    # -- helpers -----------------------------------------------------------------------------
    def value(self, text: str, cmd: Statement) -> Value:
        if text in self.vars:
            return self.vars[text]
        if L.is_number(text):
            number, integer = L.literal(text)
            return Value(number, integer)
        name, index = self._element(text, cmd)
        return self.arrays[name][index]

    def _element(self, text: str, cmd: Statement) -> tuple[str, int]:
        """``name[i]`` -> (array, index), bounds checked (a runtime error otherwise)."""
        name, _, rest = text.partition("[")
        if name not in self.arrays or not rest.endswith("]"):
            raise RuntimeFault(L.SCRIPT_SYNTAX, cmd.line)
        return name, self._index(name, rest[:-1], cmd)

    def _index(self, name: str, text: str, cmd: Statement) -> int:
        index = int(self.number(text, cmd))
        if not 0 <= index < len(self.arrays[name]):
            raise RuntimeFault(L.ARRAY_BOUNDS, cmd.line)
        return index

    def assign(self, target: str, value: Value, cmd: Statement) -> None:
        if "[" in target:
            name, index = self._element(target, cmd)
            self.arrays[name][index] = value
        else:
            self.vars[target] = value

    def number(self, text: str, cmd: Statement) -> float:
        return self.value(text, cmd).value

    def check_abort(self) -> None:
        if self.device._abort.is_set() or self.session.closed.is_set():
            raise _Abort

    def condition(self, cmd: Statement) -> bool:
        a = self.number(cmd.args[0], cmd)
        b = self.number(cmd.args[2], cmd)
        op = cmd.args[1]
        return {
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
            "==": a == b,
            "!=": a != b,
        }[op]

    def send(self, text: str) -> None:
        self.device._send(self.session, text)

    # -- execution ---------------------------------------------------------------------------
    def execute(self, nodes: list[Node]) -> None:
        for node in nodes:
            self.check_abort()
            if isinstance(node, Block):
                self.block(node)
            else:
                self.command(node)

    def block(self, block: Block) -> None:
        name = block.head.name
        if name == "if":
            for head, body in [(block.head, block.body), *block.branches]:
                if head.name == "else" or self.condition(head):
                    self.execute(body)
                    return
            return
        if name == "loop":
            self.send("L")
            try:
                while self.condition(block.head):
                    self.check_abort()
                    self.execute(block.body)
            except _Break:
                pass
            self.send("+")
            return
        self.measurement(block)

    def command(self, cmd: Statement) -> None:
        dev, args, name = self.device, cmd.args, cmd.name
        if name == "var":
            self.vars[args[0]] = Value()
        elif name == "array":
            self.arrays[args[0]] = [Value() for _ in range(max(0, int(self.number(args[1], cmd))))]
        elif name == "array_set":
            self.arrays[args[0]][self._index(args[0], args[1], cmd)] = dataclasses.replace(self.value(args[2], cmd))
        elif name == "array_get":
            element = self.arrays[args[0]][self._index(args[0], args[1], cmd)]
            self.assign(args[2], dataclasses.replace(element), cmd)
        elif name == "store_var":
            number, integer = L.literal(args[1]) if L.is_number(args[1]) else (self.number(args[1], cmd), False)
            self.assign(args[0], Value(number, integer, args[2] if len(args) > 2 else "aa"), cmd)
        elif name == "copy_var":
            self.assign(args[1], dataclasses.replace(self.value(args[0], cmd)), cmd)
        elif name in ("float_to_int", "int_to_float"):
            target = self.value(args[0], cmd)
            target.integer = name == "float_to_int"
            target.value = float(math.floor(target.value)) if target.integer else target.value
        elif name == "send_string":
            self.send("T" + args[0].removeprefix("f")[1:-1])
        elif name in ("set_gpio_cfg", "set_gpio"):
            for arg in args:
                self.number(arg, cmd)
        elif name in ("add_var", "sub_var", "mul_var", "div_var"):
            target = self.value(args[0], cmd)
            operand = self.number(args[1], cmd)
            if name == "div_var" and operand == 0:
                raise RuntimeFault(L.DIVISION_BY_ZERO, cmd.line)
            target.value = {
                "add_var": target.value + operand,
                "sub_var": target.value - operand,
                "mul_var": target.value * operand,
                "div_var": target.value / (operand or 1.0),
            }[name]
        elif name == "set_pgstat_mode":
            mode = int(self.number(args[0], cmd))
            if mode not in dev.model.pgstat_modes and mode != 0:
                raise RuntimeFault(L.NOT_SUPPORTED, cmd.line)
            dev.pgstat_mode = mode
        elif name in ("set_pgstat_chan", "set_max_bandwidth"):
            self.number(args[0], cmd)
        elif name == "set_range":
            full = abs(self.number(args[1], cmd))
            dev.ranges[args[0]] = (full, full)
        elif name in ("set_autoranging", "set_range_minmax"):
            lo, hi = self.number(args[1], cmd), self.number(args[2], cmd)
            if name == "set_autoranging":
                dev.ranges[args[0]] = (abs(lo), abs(hi))
        elif name == "set_e":
            dev.e_set = self.number(args[0], cmd)
        elif name == "set_i":
            dev.i_set = self.number(args[0], cmd)
        elif name == "cell_on":
            dev.cell_on = True
        elif name == "cell_off":
            dev.cell_on = False
            dev.sim.safe_state()
        elif name == "timer_start":
            self.timer0 = dev.now()
        elif name == "timer_get":
            self.assign(args[0], Value(dev.now() - self.timer0, False, "eb"), cmd)
        elif name == "wait":
            if not dev.clock.sleep(max(self.number(args[0], cmd), 0.0), dev._abort):
                raise _Abort
        elif name == "pck_start":
            self.packet = []
        elif name == "pck_add":
            if self.packet is None:
                raise RuntimeFault(L.SCRIPT_SYNTAX, cmd.line)
            self.packet.append(dataclasses.replace(self.value(args[0], cmd)))
        elif name == "pck_end":
            if self.packet is None:
                raise RuntimeFault(L.SCRIPT_SYNTAX, cmd.line)
            items = [L.packet_item(v.type, v.value, v.integer, v.status, v.range) for v in self.packet]
            self.packet = None
            self.send("P" + ";".join(items))
            dev.packets_sent += 1
        elif name == "breakloop":
            raise _Break
        elif name == "abort":
            raise _Abort
        else:  # the parser only lets known commands through
            raise RuntimeFault(L.UNKNOWN_COMMAND, cmd.line)

    # -- measurement loops -------------------------------------------------------------------
    def _cutoffs(self, block: Block, technique: str) -> _Cutoffs:
        """Cutoffs of the loop body the physics can enforce itself."""
        outputs = block.head.args[: len(OUTPUT_TYPES[technique])]
        potential = outputs[0] if technique not in ("eis", "geis") else None
        current = outputs[1] if technique in ("ca", "cp", "lsv") else None
        timers = {n.args[0] for n in block.body if isinstance(n, Statement) and n.name == "timer_get"}
        assigned = {
            n.args[1] if n.name == "copy_var" else n.args[0]
            for n in _walk(block.body)
            if isinstance(n, Statement) and n.name in _ASSIGNING
        }

        def normal(cond: Statement) -> tuple[str, str, float] | None:
            a, op, b = cond.args
            if b in (potential, current, *timers) and a not in (potential, current, *timers):
                a, op, b = b, _FLIP[op], a
            if a not in (potential, current, *timers) or b in assigned:
                return None
            try:
                return a, op, self.number(b, cond)
            except RuntimeFault:
                return None

        out = _Cutoffs()
        upper: set[float] = set()
        lower: set[float] = set()
        for node in block.body:
            chain = _if_chain(node)
            conds = [normal(c) for c in chain] if chain else []
            if not conds or any(c is None for c in conds):
                continue
            if len(conds) == 1:
                var, op, x = conds[0]
                if var == potential and op in (">=", ">"):
                    out.voltage_above = x if out.voltage_above is None else min(out.voltage_above, x)
                elif var == potential and op in ("<=", "<"):
                    out.voltage_below = x if out.voltage_below is None else max(out.voltage_below, x)
                elif var in timers and op in (">=", ">"):
                    out.max_time = x if out.max_time is None else min(out.max_time, x)
                elif var == current and op in (">=", ">") and x > 0:
                    upper.add(x)
                elif var == current and op in ("<=", "<") and x < 0:
                    lower.add(-x)
            elif len(conds) == 2 and all(c[0] == current for c in conds):
                bounds = {op[0]: x for _, op, x in conds}
                if set(bounds) == {"<", ">"} and bounds["<"] > 0 and math.isclose(bounds[">"], -bounds["<"]):
                    x = bounds["<"]
                    out.current_below = x if out.current_below is None else max(out.current_below, x)
        both = upper & lower
        if both:
            out.current_above = min(both)
        return out

    def _step(self, technique: str, head: Statement, cut: _Cutoffs, timer_offset: float) -> Step:
        """The SimChannel step a loop runs."""
        n = [self.number(a, head) for a in head.args[len(OUTPUT_TYPES[technique]) :]]
        if technique == "ocp":
            interval, run_time = n
            limits = cut.limits(run_time, timer_offset)
            return Rest(duration=run_time, sample_period=interval, limits=limits)
        if technique == "ca":
            e, interval, run_time = n
            limits = cut.limits(run_time, timer_offset)
            return ConstantVoltage(voltage=e, limits=limits, sample_period=interval)
        if technique == "cp":
            i, interval, run_time = n
            limits = cut.limits(run_time, timer_offset)
            return ConstantCurrent(current=i, limits=limits, sample_period=interval)
        if technique == "lsv":
            begin, end, e_step, rate = n
            limits = cut.limits(None, timer_offset)
            return VoltageSweep(start=begin, stop=end, rate=rate, sample_period=abs(e_step) / rate, limits=limits)
        amplitude, f_start, f_end, count, dc = n
        count = round(count)
        freqs = tuple(float(f) for f in np.logspace(math.log10(f_start), math.log10(f_end), count))
        return _FrequencyList(
            f_start=f_start,
            f_stop=f_end if f_end != f_start else f_start * 10.0,
            amplitude=amplitude,
            bias=dc,
            bias_vs_ocv=False,
            mode="galvanostatic" if technique == "geis" else "potentiostatic",
            points=freqs,
            limits=Limits(max_time=cut.limits(None, timer_offset).max_time),
        )

    def measurement(self, block: Block) -> None:
        dev, head = self.device, block.head
        technique = head.name[len("meas_loop_") :]
        if technique in T.TECHNIQUES:
            self.composite(block, technique)
            return
        if NEEDS_CELL_ON[technique] != dev.cell_on:
            raise RuntimeFault(L.CELL_STATE, head.line)
        try:
            step = self._step(technique, head, self._cutoffs(block, technique), dev.now() - self.timer0)
        except (ValueError, ZeroDivisionError) as exc:
            log.info("emulator: invalid %s arguments: %s", head.name, exc)
            raise RuntimeFault(L.SCRIPT_SYNTAX, head.line) from None
        outputs = head.args[: len(OUTPUT_TYPES[technique])]
        for name in outputs:
            self.assign(name, Value(type="aa"), head)
        self.send(f"M{TECHNIQUES[technique]:04X}")
        # Chunks of at most ~40 ms of wall time: Z and a dropped link act within that.
        ctx = StepContext(clock=dev.clock, t_origin=dev.clock.now(), interrupt=dev._abort, max_block_wall=0.05)
        run = dev.sim.run_step(step, ctx)
        aborted = failed = False
        try:
            while True:
                try:
                    rows = next(run)
                except StopIteration:
                    break
                for row in rows:
                    if dev._abort.is_set() or self.session.closed.is_set():
                        aborted = True
                        break
                    dev._sample_time = ctx.t_origin + float(row["t"])
                    self._assign(technique, outputs, row, head)
                    try:
                        self._maybe_fail(head)
                        self.execute(block.body)
                    except _Break:
                        return
                    except RuntimeFault:
                        failed = True  # a runtime error stops the script where it is: no '*'
                        raise
                    finally:
                        dev._sample_time = None
                if aborted:
                    break
                if dev._abort.is_set() or self.session.closed.is_set():
                    aborted = True
                    break
        finally:
            run.close()
            if not failed:
                self.send("*")
        if aborted or dev._abort.is_set():
            raise _Abort

    def composite(self, block: Block, technique: str) -> None:
        """A loop made of several simulator steps (``mscript_techniques``): CV, SWV, DPV,
        NPV, ACV, LSP, PAD; the body runs once per data point."""
        dev, head = self.device, block.head
        if not dev.cell_on:
            raise RuntimeFault(L.CELL_STATE, head.line)
        n_out = T.OUTPUTS[technique]
        outputs = head.args[:n_out]
        numbers = [self.number(a, head) for a in head.args[n_out:]]
        options = {k: self.number(v, head) for k, v in head.options.items()}
        cell = T.Cell(dev.sim, dev.clock, dev._abort, lambda t: setattr(dev, "_sample_time", t))
        points = T.TECHNIQUES[technique](cell, numbers, options)
        self.send(f"M{T.TECHNIQUE_CODES[technique]:04X}")
        failed = False
        try:
            for point in points:
                if dev._abort.is_set() or self.session.closed.is_set():
                    break
                for name, (number, kind, is_current) in zip(outputs, point, strict=True):
                    self.assign(name, self._reading(number, kind, is_current), head)
                self._maybe_fail(head)
                try:
                    self.execute(block.body)
                except _Break:
                    return
                finally:
                    dev._sample_time = None
        except RuntimeFault:
            failed = True
            raise
        except (ValueError, ZeroDivisionError) as exc:
            failed = True
            log.info("emulator: invalid %s arguments: %s", head.name, exc)
            raise RuntimeFault(L.SCRIPT_SYNTAX, head.line) from None
        finally:
            dev._sample_time = None
            if not failed:
                self.send("*")
        if dev._abort.is_set() or self.session.closed.is_set():
            raise _Abort

    def _reading(self, number: float, kind: str, is_current: bool) -> Value:
        """A measured value with its status and range metadata (overload beyond the range)."""
        dev, faults = self.device, self.device.faults
        overload = faults.overload if dev.packets_sent - faults.armed_at >= faults.overload_after else None
        if is_current:
            lo, hi = dev.ranges.get("ba", (0.0, dev.model.max_current))
            status = L.STATUS_OVERLOAD if abs(number) > hi * 1.05 or overload == "current" else 0
            return Value(number, False, kind, status, dev.model.range_code(min(max(abs(number), lo), hi)))
        if kind in ("ab", "da"):
            e_hi = dev.ranges.get("ab", (0.0, dev.model.potential_limit))[1]
            status = L.STATUS_OVERLOAD if abs(number) > e_hi or overload == "potential" else 0
            return Value(number, False, kind, status if kind == "ab" else None)
        return Value(number, False, kind)

    def _assign(self, technique: str, outputs: tuple[str, ...], row: np.void, head: Statement) -> None:
        dev, types = self.device, OUTPUT_TYPES[technique]
        faults = dev.faults
        overload = faults.overload if dev.packets_sent - faults.armed_at >= faults.overload_after else None
        if technique in ("eis", "geis"):
            i_range = dev.model.range_code(dev.ranges.get("ba", (0.0, dev.model.max_current))[1])
            values = (
                Value(float(row["freq"]), False, "dc"),
                Value(float(row["z_re"]), False, "cc", 0, i_range),
                Value(float(row["z_im"]), False, "cd", 0),
            )
        else:
            e, i = float(row["E"]), float(row["I"])
            e_hi = dev.ranges.get("ab", (0.0, dev.model.potential_limit))[1]
            e_status = L.STATUS_OVERLOAD if abs(e) > e_hi or overload == "potential" else 0
            values_list = [Value(e, False, types[0], e_status)]
            if technique != "ocp":
                lo, hi = dev.ranges.get("ba", (0.0, dev.model.max_current))
                status = L.STATUS_OVERLOAD if abs(i) > hi * 1.05 or overload == "current" else 0
                code = dev.model.range_code(min(max(abs(i), lo), hi))
                values_list.append(Value(i, False, types[1], status, code))
            values = tuple(values_list)
        for name, value in zip(outputs, values, strict=True):
            self.assign(name, value, head)

    def _maybe_fail(self, head: Statement) -> None:
        faults = self.device.faults
        if faults.error_code is not None and self.device.packets_sent - faults.armed_at >= faults.error_after:
            code = faults.error_code
            self.device.faults = dataclasses.replace(faults, error_code=None)
            raise RuntimeFault(code, head.line)


class EmStatServer:
    """An emulated instrument served on a pseudo-terminal (``resource`` is its path)."""

    def __init__(self, device: EmStatDevice) -> None:
        self.device = device
        self._pty = PtyServer(device.handler)
        self.resource = self._pty.path
        self.faults = self._pty.faults
        self.faults.cell_time = device.now
        self._stopped = threading.Event()
        self._monitor = threading.Thread(target=self._watch_link, name="emstat-link", daemon=True)

    @property
    def path(self) -> str:
        return self._pty.path

    def start(self) -> EmStatServer:
        if not self._monitor.is_alive():
            self._pty.start()
            self._monitor.start()
        return self

    def _watch_link(self) -> None:
        """A dropped link while no script runs still unpowers the instrument."""
        while not self._stopped.wait(0.05):
            session = self.device._session
            if session is not None and session.closed.is_set() and not self.device._host_gone:
                self.device._host_gone = True
                self.device._abort.set()
                self.device.power_off()

    def instrument_faults(self) -> dict[str, Callable[[], bool]]:
        """``--fault`` kinds of the instrument: a runtime error stops the next
        measurement loop (``!4004``, overload), ``compliance`` flags OVERLOAD on the
        current of every packet from then on."""

        def error() -> bool:
            self.device.inject_error(L.OVERLOAD)
            return True

        def overload() -> bool:
            self.device.inject_overload()
            return True

        return {"instrument-error": error, "compliance": overload}

    def reconnect(self) -> None:
        """Undo a dropped link (see ``PtyServer.reconnect``)."""
        self._pty.reconnect()
        self.device.link_restored()

    def stop(self) -> None:
        self._stopped.set()
        self._pty.stop()
        self.device.host_gone()

    def __enter__(self) -> EmStatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(model: Device, params: SimParams, speed: float, cell_type: str, options: dict[str, Any]) -> EmStatServer:
    serial = options.pop("serial", None)
    clock = options.pop("clock", None)
    if options:
        raise ValueError(f"unknown emulator option(s): {', '.join(sorted(options))} (known: serial, variant)")
    device = EmStatDevice(model, params, cell_type=cell_type, speed=speed, serial=serial, clock=clock)
    return EmStatServer(device).start()


def serve_emstat4(
    params: SimParams, *, port: int = 0, speed: float = 1.0, cell_type: str = "auto", **options: Any
) -> EmStatServer:
    """An EmStat4 (``variant="lr"`` for the LR) on a pseudo-terminal; ``port`` is unused (serial)."""
    variant = str(options.pop("variant", "hr")).lower()
    if variant not in ("hr", "lr"):
        raise ValueError(f"EmStat4 variant must be hr or lr, got {variant!r}")
    return _serve(L.DEVICES["es4_hr" if variant == "hr" else "es4_lr"], params, speed, cell_type, options)


def serve_nexus(
    params: SimParams, *, port: int = 0, speed: float = 1.0, cell_type: str = "auto", **options: Any
) -> EmStatServer:
    """A Nexus on a pseudo-terminal."""
    return _serve(L.DEVICES["nexus1"], params, speed, cell_type, options)


def serve_pico(
    params: SimParams, *, port: int = 0, speed: float = 1.0, cell_type: str = "auto", **options: Any
) -> EmStatServer:
    """An EmStat Pico (no galvanostat) on a pseudo-terminal."""
    return _serve(L.DEVICES["espico"], params, speed, cell_type, options)
