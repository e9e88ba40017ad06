"""Typed, range-checked parameters in the units labs use.

A protocol declares its parameters once; the same declaration validates the
command line (``-p name=value``), generates the GUI form and documents the
protocol. Values stay in lab units (µm, cm², mV, Hz, mA/cm², mAh/cm², mV/s,
°C) in the run file, exactly as the user gave them; protocols convert to SI
once, with ``labctl.units``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal, TypeVar

from labctl.numbers import parse_number

ParamKind = Literal["float", "int", "bool", "choice", "floats", "str"]


class ParameterError(ValueError):
    """A bad parameter value, naming the parameter and what is allowed."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"parameter '{name}': {message}")


def _fmt(value: float) -> str:
    return f"{value:g}"


#: The most values a list parameter (kind "floats") takes: lists set up steps
#: (temperatures, rates), and a pasted column of 10⁶ numbers is a mistake, not a plan.
MAX_LIST_ITEMS = 1000


def _number(raw: Any, *, integer: bool = False) -> float | int:
    """A number from command-line text or a Python value (lab file, GUI, stored run).

    Text goes through the strict shared grammar (``labctl.numbers``); booleans
    are not numbers even though Python says they are.
    """
    if isinstance(raw, str):
        # nan/inf are read as words so the range check refuses them with the allowed range.
        return parse_number(raw, integer=integer, allow_non_finite=not integer)
    if isinstance(raw, bool) or not isinstance(raw, Real):
        raise TypeError(raw)
    value = float(raw)
    if integer:
        if not value.is_integer():
            raise ValueError(raw)
        return int(raw)
    return value


@dataclass(frozen=True)
class Param:
    """One parameter: name, lab unit, default, allowed range, help."""

    name: str
    default: Any
    unit: str = ""
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    kind: ParamKind = "float"
    choices: tuple[str, ...] = ()
    #: Shown instead of the default when the default is None, e.g.
    #: "from the simulated cell".
    default_text: str = ""
    #: Filled in by labctl, never typed (e.g. where r_leads came from): forms leave it out.
    internal: bool = False

    @property
    def allowed(self) -> str:
        """The allowed values, as said in error messages and help."""
        unit = f" {self.unit}" if self.unit else ""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "text"
        lo = "-inf" if self.minimum is None else _fmt(self.minimum)
        hi = "inf" if self.maximum is None else _fmt(self.maximum)
        what = f"a list of 1 to {MAX_LIST_ITEMS} numbers, each" if self.kind == "floats" else "a number"
        if self.kind == "int":
            what = "a whole number"
        return f"{what} from {lo} to {hi}{unit}"

    def describe_default(self) -> str:
        if self.default is None:
            return self.default_text or "none"
        if self.kind == "floats":
            return ",".join(_fmt(v) for v in self.default)
        return str(self.default)

    def parse(self, raw: Any) -> Any:
        """Convert a command-line string (or a Python value) and check it."""
        if raw is None:
            return None
        try:
            value = self._convert(raw)
        except ParameterError:
            raise
        except (TypeError, ValueError):
            raise ParameterError(self.name, f"cannot read {raw!r} (allowed: {self.allowed})") from None
        self._check(value)
        return value

    def _convert(self, raw: Any) -> Any:
        if self.kind == "float":
            return _number(raw)
        if self.kind == "int":
            return _number(raw, integer=True)
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if self.kind == "floats":
            if isinstance(raw, str):
                parts = [p for p in raw.replace(";", ",").split(",") if p.strip()]
            elif isinstance(raw, (list, tuple)):
                parts = list(raw)
            else:
                raise TypeError(raw)
            if len(parts) > MAX_LIST_ITEMS:
                raise ParameterError(
                    self.name, f"{len(parts)} values given, at most {MAX_LIST_ITEMS} (allowed: {self.allowed})"
                )
            return tuple(_number(p) for p in parts)
        return str(raw)

    def _check(self, value: Any) -> None:
        if self.kind == "choice":
            if value not in self.choices:
                raise ParameterError(self.name, f"{value!r} is not allowed (allowed: {self.allowed})")
            return
        if self.kind in ("bool", "str"):
            return
        values = value if self.kind == "floats" else (value,)
        if self.kind == "floats" and not values:
            raise ParameterError(self.name, f"needs at least one value (allowed: {self.allowed})")
        for v in values:
            out_of_range = (
                not (isinstance(v, int) or math.isfinite(v))
                or (self.minimum is not None and v < self.minimum)
                or (self.maximum is not None and v > self.maximum)
            )
            if out_of_range:
                unit = f" {self.unit}" if self.unit else ""
                raise ParameterError(self.name, f"{_fmt(v)}{unit} is out of range (allowed: {self.allowed})")


def parse_assignments(items: Iterable[str], option: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` -> ``{"a": "1", "b": "2"}`` with clear errors."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(item, f"expected {option} name=value")
        if name in out:
            raise ParameterError(name, f"given twice with {option}")
        out[name] = value.strip()
    return out


def validate(params: Iterable[Param], given: Mapping[str, Any], *, context: str = "") -> dict[str, Any]:
    """Every declared parameter with its value (given or default); an unknown
    name is an error that lists the known ones."""
    declared = {p.name: p for p in params}
    unknown = [name for name in given if name not in declared]
    if unknown:
        where = f" for {context}" if context else ""
        known = ", ".join(sorted(declared)) or "none"
        raise ParameterError(unknown[0], f"unknown parameter{where} (known: {known})")
    return {name: p.parse(given[name]) if name in given else p.default for name, p in declared.items()}


# --------------------------------------------------------------------------- typed values
#
# ``validate`` returns the lab-unit record stored in the run file (a plain dict,
# JSON as given). Protocol code reads a frozen dataclass built from it instead:
# ``p.q_t`` is a float, ``p.rates`` a tuple, a typo is an AttributeError at the
# first run rather than a KeyError half-way through a 60-hour test.

#: The Python type each parameter kind becomes in a typed parameter object.
KIND_TYPES: dict[str, type] = {
    "float": float,
    "int": int,
    "bool": bool,
    "choice": str,
    "str": str,
    "floats": tuple,
}

ValuesT = TypeVar("ValuesT")


def check_values_type(values_type: type, params: Iterable[Param]) -> None:
    """Refuse (at import) a parameter dataclass that does not match the declarations.

    Field names must equal the declared parameter names and each field's
    annotation must admit the kind's Python type, so the two cannot drift apart.
    """
    if not dataclasses.is_dataclass(values_type):
        raise TypeError(f"{values_type.__name__} is not a dataclass")
    declared = {p.name: p for p in params}
    fields = {f.name for f in dataclasses.fields(values_type)}
    missing, extra = sorted(set(declared) - fields), sorted(fields - set(declared))
    if missing or extra:
        raise TypeError(
            f"{values_type.__name__} does not match its parameters (missing fields: {missing or 'none'}, "
            f"fields without a parameter: {extra or 'none'})"
        )
    hints = typing.get_type_hints(values_type)
    for name, param in declared.items():
        wanted = KIND_TYPES[param.kind]
        hint = hints[name]
        options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        admitted = {typing.get_origin(option) or option for option in options}
        if wanted not in admitted:
            raise TypeError(
                f"{values_type.__name__}.{name}: the {param.kind!r} parameter must be annotated {wanted.__name__}"
            )


def typed_values(values_type: type[ValuesT], params: Iterable[Param], values: Mapping[str, Any]) -> ValuesT:
    """The frozen parameter object for ``values`` (validated lab-unit values).

    Missing names take their declared default; each value is cast to its kind's
    Python type (lists of numbers become tuples), None stays None.
    """
    converted: dict[str, Any] = {}
    for param in params:
        value = values.get(param.name, param.default)
        if value is None:
            converted[param.name] = None
        elif param.kind == "floats":
            converted[param.name] = tuple(float(v) for v in value)
        else:
            converted[param.name] = KIND_TYPES[param.kind](value)
    return values_type(**converted)
