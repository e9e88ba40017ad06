"""Time-scale factors (``--speed``, ``sim-server --speed``, ``options.clock_speed``).

One bounded grammar, shared by the CLI, the lab file and the instrument
builder: a speed outside SPEED_MIN..SPEED_MAX is refused before anything is
written, so a run never starts on a clock that cannot work.
"""

from __future__ import annotations

from labctl.numbers import parse_number
from labctl.params import ParameterError

SPEED_MIN = 1e-3
SPEED_MAX = 1e7
SPEED_FASTEST = ("max", "fastest", "inf")


_SPEED_RANGE = f"a number from {SPEED_MIN:g} to {SPEED_MAX:g}, × real time"


def parse_speed_factor(raw: object, name: str = "speed", *, allowed: str = _SPEED_RANGE) -> float:
    """A time-scale factor N × real time (text or a lab-file number), within
    SPEED_MIN..SPEED_MAX; ParameterError names ``name`` and ``allowed``."""
    if isinstance(raw, str):
        try:
            speed = float(parse_number(raw))
        except ValueError:
            raise ParameterError(name, f"cannot read {raw!r} (allowed: {allowed})") from None
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        speed = float(raw)
    else:
        raise ParameterError(name, f"cannot read {raw!r} (allowed: {allowed})")
    if not SPEED_MIN <= speed <= SPEED_MAX:
        raise ParameterError(name, f"{speed:g} is out of range (allowed: {allowed})")
    return speed


def parse_speed(text: str) -> float | None:
    """``max`` -> None (virtual time as fast as possible), ``N`` -> N x real time.

    Checked before anything is written, so a run never starts on a clock that
    cannot work."""
    if text.strip().lower() in SPEED_FASTEST:
        return None
    return parse_speed_factor(text, allowed=f"max, or {_SPEED_RANGE}")
