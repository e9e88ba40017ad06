"""Scheduled faults for the wire emulators: the ``KIND[@WHEN]`` grammar of
``labctl sim-server --fault``.

A client's error handling is only tested when its instrument misbehaves at a
moment the tester chooses, so every emulator takes faults from the command
line as well as from Python (``server.faults``):

``KIND``
    ``no-reply`` (a reply is swallowed: the client must time out), ``garbled``
    (a reply arrives corrupted), ``drop-link`` (the connection closes),
    ``instrument-error`` (the instrument reports an error of its own: an error
    queue entry, a MethodSCRIPT runtime error, a controller alarm),
    ``compliance`` (the source is driven into its limit / a reading overloads).
    The first three are the transport's and every emulator has them; the last
    two exist where the instrument has such a thing (``instrument_faults()``
    of each server says which).

``WHEN`` (default ``once``)
    ``once``: the next reply (an instrument fault: as soon as it can take
    effect); ``always``: every reply; ``N`` (a positive integer): the N-th reply
    the emulator sends, counted from its start (a MethodSCRIPT data line is a
    reply); ``t=DURATION``: the first reply at or after that much emulated cell
    time since the emulator started, DURATION a number with an optional unit
    ``ms``, ``s`` (default), ``min`` or ``h`` (``t=30s``, ``t=2.5min``).

Replies are what the emulator writes, line by line; "the N-th reply" is
therefore exact and reproducible for a given client, unlike a wall-clock time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Every fault kind the grammar knows.
FAULT_KINDS: tuple[str, ...] = ("no-reply", "garbled", "drop-link", "instrument-error", "compliance")
#: Kinds every emulator has (they act on the transport).
TRANSPORT_KINDS: frozenset[str] = frozenset({"no-reply", "garbled", "drop-link"})
WHEN_FORMS = "once, always, N (the N-th reply), t=DURATION (e.g. t=30s, t=2min)"

_UNITS = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|min|h)?$")


@dataclass(frozen=True)
class FaultPlan:
    """One parsed ``--fault``: what goes wrong, and when."""

    kind: str
    when: str = "once"  # once | always | reply | time
    at: float = 0.0  # the reply number (when == "reply") or cell seconds (when == "time")

    @property
    def transport(self) -> bool:
        return self.kind in TRANSPORT_KINDS

    def describe(self) -> str:
        if self.when == "reply":
            return f"{self.kind} at reply {int(self.at)}"
        if self.when == "time":
            return f"{self.kind} at cell time {self.at:g} s"
        return f"{self.kind} {self.when}"

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """``KIND[@WHEN]``; ValueError with one line naming the allowed forms."""
        kind, _, when = text.strip().partition("@")
        kind = kind.strip().lower()
        if kind not in FAULT_KINDS:
            raise ValueError(f"--fault {text!r}: unknown kind {kind!r} (allowed: {', '.join(FAULT_KINDS)})")
        when = when.strip().lower()
        if not _ or when == "once":
            return cls(kind)
        if when == "always":
            return cls(kind, "always")
        if when.isdigit():
            n = int(when)
            if n < 1:
                raise ValueError(f"--fault {text!r}: the reply number must be 1 or more (allowed: {WHEN_FORMS})")
            return cls(kind, "reply", float(n))
        if when.startswith("t="):
            match = _DURATION.match(when[2:].strip())
            if match is None:
                raise ValueError(
                    f"--fault {text!r}: bad cell time {when[2:]!r} (allowed: a number with unit ms, s, min or h)"
                )
            seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
            if not math.isfinite(seconds):
                raise ValueError(f"--fault {text!r}: the cell time must be finite")
            return cls(kind, "time", seconds)
        raise ValueError(f"--fault {text!r}: bad WHEN {when!r} (allowed: {WHEN_FORMS})")


def check_supported(plans: list[FaultPlan], model: str, instrument_kinds: set[str] | frozenset[str]) -> None:
    """Refuse a kind this emulator cannot produce, in one line naming those it can."""
    allowed = [k for k in FAULT_KINDS if k in TRANSPORT_KINDS or k in instrument_kinds]
    for plan in plans:
        if plan.kind not in allowed:
            raise ValueError(
                f"--fault {plan.kind}: the {model} emulator cannot inject it (allowed: {', '.join(allowed)})"
            )


def install(server: Any, plans: list[FaultPlan], model: str) -> None:
    """Arm ``plans`` on a running emulator (``server.faults`` and its
    ``instrument_faults()`` hooks); ValueError, before arming any, for a kind the
    emulator cannot produce or a cell time it cannot tell."""
    hooks: dict[str, Callable[[], bool]] = dict(getattr(server, "instrument_faults", dict)())
    check_supported(plans, model, frozenset(hooks))
    faults = server.faults
    if any(p.when == "time" for p in plans) and faults.cell_time is None:
        raise ValueError(f"--fault …@t=: the {model} emulator has no cell clock (allowed: once, always, N)")
    for plan in plans:
        faults.arm(plan, None if plan.transport else hooks[plan.kind])
