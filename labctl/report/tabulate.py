"""Results as a table: each value with its uncertainty, plus the warnings,
the reasons a result is invalid, and the conventions, found generically.

Protocols and analyses grow new result keys; the report must show them
without being taught each one. The rules:

- An uncertainty is a key containing ``_stderr``, ``_err``, ``_rel_err``,
  ``_se`` or ``_ci`` (``ea_stderr_eV``, ``sigma_stderr``, ``R_bulk_arc_rel_err``,
  ``t_plus_ci``); it is paired with the value whose key is the same without that
  part (``ea_eV``), or else the one key that starts with that prefix
  (``sigma_stderr`` -> ``sigma_S_cm``). A dict with ``value`` and ``stderr`` (or
  ``err``/``ci``) is one value with its uncertainty.
- Warnings: any list under a key named ``warnings`` (at any depth).
- Invalid: ``valid`` false, with ``reason`` / ``invalid_reason(s)`` beside it.
- Conventions: any dict under a key named ``conventions`` (at any depth).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_UNCERTAINTY = re.compile(r"_(stderr|rel_err|err|se|ci|ci95)(?=_|$)")
_VALUE_DICT_UNC = ("stderr", "err", "se", "ci", "ci95", "uncertainty")
_SKIP = ("conventions", "warnings")
#: Lists longer than this are shown shortened in the table (full in results.json).
MAX_LIST_SHOWN = 12


@dataclass(frozen=True)
class ResultRow:
    name: str
    value: str
    uncertainty: str  # "" when none was recorded
    raw: Any  # the value as stored (for CSV/JSON)
    raw_uncertainty: Any


@dataclass(frozen=True)
class Problems:
    warnings: tuple[str, ...]  # "where: text"
    invalid: tuple[str, ...]  # "where: reason"


def result_rows(results: Mapping[str, Any], prefix: str = "") -> list[ResultRow]:
    """Flatten ``results`` into rows (nested dicts as ``outer.inner``)."""
    rows: list[ResultRow] = []
    keys = [str(k) for k in results]
    pairs = _pair_uncertainties(keys)
    used = set(pairs.values())
    for key in keys:
        value = results[key]
        if key in used or key in _SKIP:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            unc_key = next((k for k in _VALUE_DICT_UNC if k in value), None)
            if "value" in value and unc_key:
                rows.append(_row(name, value["value"], value[unc_key]))
                continue
            rows.extend(result_rows(value, prefix=f"{name}."))
            continue
        unc_name = pairs.get(key)
        rows.append(_row(name, value, results[unc_name] if unc_name else None, unc_name))
    return rows


def _pair_uncertainties(keys: list[str]) -> dict[str, str]:
    """value key -> uncertainty key."""
    out: dict[str, str] = {}
    key_set = set(keys)
    for key in keys:
        m = _UNCERTAINTY.search(key)
        if not m:
            continue
        prefix, suffix = key[: m.start()], key[m.end() :]
        candidates = [prefix + suffix] if prefix + suffix in key_set else []
        if not candidates:
            candidates = [
                k
                for k in keys
                if k != key and not _UNCERTAINTY.search(k) and (k == prefix or k.startswith(prefix + "_"))
            ]
        if len(candidates) == 1 and candidates[0] not in out:
            out[candidates[0]] = key
    return out


def _row(name: str, value: Any, unc: Any, unc_name: str | None = None) -> ResultRow:
    relative = bool(unc_name and "rel" in unc_name)
    pair = None if relative else rounded_pair(value, unc)
    if pair is not None:
        return ResultRow(name, pair[0], "± " + pair[1], value, unc)
    shown_unc = ""
    if unc is not None:
        shown_unc = "± " + format_value(unc) + (" (relative)" if relative else "")
    return ResultRow(name, format_value(value), shown_unc, value, unc)


def rounded_pair(value: Any, unc: Any) -> tuple[str, str] | None:
    """``0.3877 ± 0.0030`` for 0.387736 ± 0.00298381: the uncertainty to two significant
    digits and the value to the same decimal place (GUM §7.2.6), so no digit is shown that
    the uncertainty says is noise. None when the pair is not two finite numbers."""
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (value, unc))
    if not numbers or not (math.isfinite(value) and math.isfinite(unc)) or unc <= 0:
        return None
    decimals = 1 - math.floor(math.log10(unc))
    if decimals < 0 or decimals > 8 or abs(value) >= 1e6:
        digits = max(2, 2 + math.floor(math.log10(abs(value))) - math.floor(math.log10(unc))) if value else 2
        return f"{value:.{digits}g}", f"{unc:.2g}"
    return f"{value:.{decimals}f}", f"{unc:.{decimals}f}"


def format_value(value: Any) -> str:
    """A value as a short readable text (6 significant digits)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        shown = [format_value(v) for v in value[:MAX_LIST_SHOWN]]
        more = f", … ({len(value)} values)" if len(value) > MAX_LIST_SHOWN else ""
        return "[" + ", ".join(shown) + more + "]"
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)[:300]
    return str(value)


def problems(results: Mapping[str, Any]) -> Problems:
    """Warnings and invalid reasons anywhere in ``results``."""
    warnings: list[str] = []
    invalid: list[str] = []
    for where, node in _dicts(results, ""):
        label = where or "result"
        w = node.get("warnings")
        if isinstance(w, list | tuple):
            warnings.extend(f"{label}: {_text(x)}" for x in w)
        elif isinstance(w, str) and w:
            warnings.append(f"{label}: {w}")
        if node.get("valid") is False or node.get("plausible") is False:
            reasons = [
                _text(r)
                for key in ("reason", "invalid_reason", "invalid_reasons", "reasons")
                for r in _as_list(node.get(key))
            ]
            flag = "invalid" if node.get("valid") is False else "implausible"
            invalid.append(f"{label}: {flag}" + (f": {'; '.join(reasons)}" if reasons else " (no reason recorded)"))
    return Problems(tuple(warnings), tuple(invalid))


def conventions(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, text) of every convention recorded, flattened."""
    out: list[tuple[str, str]] = []
    for where, node in _dicts(results, ""):
        conv = node.get("conventions")
        if isinstance(conv, Mapping):
            base = f"{where}." if where else ""
            out.extend(_flatten(conv, base))
    return out


def _flatten(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for key, value in node.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", format_value(value)


def _dicts(node: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every dict in ``node`` with its dotted location (lists indexed)."""
    if isinstance(node, Mapping):
        yield where, node
        for key, value in node.items():
            if key != "conventions":
                yield from _dicts(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _dicts(value, f"{where}[{i}]")


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
