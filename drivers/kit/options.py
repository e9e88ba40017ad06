"""Driver options: declared once, parsed strictly, checked when the lab file loads.

A driver's options are a frozen dataclass whose fields are declared with
``option(...)``: type, unit, default, range or choices and help, like a
protocol's parameters (``labctl.params``). ``DriverOptions.parse`` refuses an
unknown key with the list of known ones (a ``tiemout`` in a lab file must not
be silently ignored) and a value outside its range with what is allowed. The
lab-file loader calls the same ``parse`` (through ``labctl.registry``), so the
error appears when the file is loaded, naming the file, the instrument and the
key, not when the instrument is first used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Literal, Self

OptionKind = Literal["float", "int", "bool", "choice", "str"]

_METADATA_KEY = "driver_option"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class OptionError(ValueError):
    """A bad driver option: ``key`` and ``reason`` (which says what is allowed).

    ``str()`` names the driver family, e.g. ``Keithley option nplc=20.0 is out of
    range (allowed: a number from 0.01 to 10)``; the lab-file loader puts ``reason``
    after the key's place in the file: ``instruments.smu.options.nplc: 20.0 is out
    of range (allowed: …)``."""

    def __init__(self, family: str, key: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.family = family
        self.key = key
        self.reason = reason

    @classmethod
    def unknown(cls, family: str, key: str, known: list[str]) -> OptionError:
        allowed = f"(allowed: {', '.join(known) or 'none'})"
        return cls(family, key, f"unknown option {allowed}", f"unknown {family} option {key} {allowed}")

    @classmethod
    def bad_value(cls, family: str, key: str, value: Any, problem: str) -> OptionError:
        return cls(family, key, f"{value!r} {problem}", f"{family} option {key}={value!r} {problem}")


@dataclass(frozen=True)
class Option:
    """One option's declaration (the field name is its key)."""

    kind: OptionKind
    unit: str = ""
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    #: The value must be above ``minimum`` (a timeout of 0 s is not a timeout).
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    #: None is a value: "not set, use what the instrument says" (an option whose default is None).
    optional: bool = False
    #: The word "none" also means None (lab files cannot write None: an option with a
    #: default that a lab may switch off, e.g. Eurotherm's standby set point).
    none_word: bool = False

    def allowed(self) -> str:
        """What may be given, as error messages and help say it."""
        unit = f" {self.unit}" if self.unit else ""
        none = " (or none)" if self.none_word else ""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices) + none
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "text" + none
        what = "a whole number" if self.kind == "int" else "a number"
        if self.minimum is None and self.maximum is None:
            return f"{what}{unit}{none}"
        if self.maximum is None:
            return f"{what} {'>' if self.exclusive_minimum else '>='} {self.minimum:g}{unit}{none}"
        if self.minimum is None:
            return f"{what} <= {self.maximum:g}{unit}{none}"
        if self.exclusive_minimum:
            return f"{what} > {self.minimum:g} and <= {self.maximum:g}{unit}{none}"
        return f"{what} from {self.minimum:g} to {self.maximum:g}{unit}{none}"

    def convert(self, raw: Any) -> Any:
        """The typed value of ``raw`` (lab files and the CLI give strings); ValueError if unreadable."""
        if (self.optional and raw is None) or (
            self.none_word and isinstance(raw, str) and raw.strip().lower() == "none"
        ):
            return None
        if raw is None:
            raise ValueError(raw)
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValueError(raw)
        if self.kind == "choice":
            wanted = str(raw).strip().lower()
            for choice in self.choices:
                if choice.lower() == wanted:
                    return choice
            raise ValueError(raw)
        if self.kind == "str":
            return str(raw)
        if isinstance(raw, bool):
            raise ValueError(raw)
        if self.kind == "int":
            if isinstance(raw, str):
                return int(raw.strip(), 0)  # "0x20" for a register mask
            number = float(raw)
            if not number.is_integer():
                raise ValueError(raw)
            return int(number)
        return float(raw)

    def in_range(self, value: Any) -> bool:
        if value is None or self.kind not in ("float", "int"):
            return True
        if not math.isfinite(value):
            return False
        if self.minimum is not None and (value < self.minimum or (self.exclusive_minimum and value == self.minimum)):
            return False
        return self.maximum is None or value <= self.maximum


def option(
    default: Any,
    kind: OptionKind,
    help: str,
    *,
    unit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] = (),
    optional: bool = False,
) -> Any:
    """A dataclass field declaring an option; ``above=x`` means "> x" (``minimum`` is ">=");
    ``optional``: the lab file may say "none" (an option whose default is None is
    always optional from Python, and left out of a lab file to mean None)."""
    declaration = Option(
        kind=kind,
        unit=unit,
        help=help,
        minimum=above if above is not None else minimum,
        maximum=maximum,
        exclusive_minimum=above is not None,
        choices=choices,
        optional=optional or default is None,
        none_word=optional,
    )
    return field(default=default, metadata={_METADATA_KEY: declaration})


class DriverOptions:
    """Base of a driver's frozen options dataclass: ``parse`` and the declarations.

    Subclasses set ``family`` (the name error messages use) and declare every
    field with ``option(...)``."""

    family: ClassVar[str] = "driver"

    @classmethod
    def declared(cls) -> dict[str, Option]:
        """Key -> declaration, in declaration order (the order errors list them)."""
        out: dict[str, Option] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            declaration = f.metadata.get(_METADATA_KEY)
            if declaration is None:
                raise TypeError(f"{cls.__name__}.{f.name} is not declared with option()")
            out[f.name] = declaration
        return out

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}  # type: ignore[arg-type]

    @classmethod
    def parse(cls, given: Mapping[str, Any] | None) -> Self:
        """The options from a lab file's ``options`` table; ``OptionError`` for the first bad key."""
        declared = cls.declared()
        values: dict[str, Any] = {}
        for key, raw in dict(given or {}).items():
            declaration = declared.get(key)
            if declaration is None:
                raise OptionError.unknown(cls.family, key, list(declared))
            try:
                value = declaration.convert(raw)
            except (TypeError, ValueError):
                what = "a number" if declaration.kind in ("float", "int") else "allowed"
                problem = f"is not {what} (allowed: {declaration.allowed()})"
                raise OptionError.bad_value(cls.family, key, raw, problem) from None
            if not declaration.in_range(value):
                problem = f"is out of range (allowed: {declaration.allowed()})"
                raise OptionError.bad_value(cls.family, key, value, problem)
            values[key] = value
        opts = cls(**values)
        opts.check()
        return opts

    def check(self) -> None:
        """Rules between options (override; raise ``OptionError``)."""

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(key, default, allowed, help) per option: for docs and ``--help`` listings."""
        defaults = cls.defaults()
        return [(key, repr(defaults.get(key)), d.allowed(), d.help) for key, d in cls.declared().items()]
