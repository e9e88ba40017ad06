"""Headline results as rows for the results table (no Qt here: easy to test and reuse).

Each protocol returns a dict; the GUI shows first the headline a paper quotes (σ, Ea, t+,
onset, CCD, CE) with its uncertainty when the analysis gave one, then the warnings (an invalid
CE, an implausible t+, an unresolved arc), then every other scalar as stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ResultRow:
    name: str
    value: str
    note: str = ""
    warning: bool = False


#: (result key, label, unit, keys that may hold its standard error)
HEADLINES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("sigma_S_cm", "σ", "S/cm", ("sigma_stderr_S_cm", "sigma_err_S_cm")),
    ("ea_eV", "Ea", "eV", ("ea_stderr_eV",)),
    ("t_plus", "t+", "", ("t_plus_stderr", "t_plus_err")),
    ("onset_V", "onset", "V", ("onset_stderr_V",)),
    ("ccd_mA_cm2", "CCD", "mA/cm²", ()),
    ("ce_avg", "CE_avg", "", ("ce_avg_stderr", "ce_stderr")),
    ("R_bulk_ohm", "R_bulk", "Ω", ("R_bulk_stderr_ohm",)),
)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def with_uncertainty(value: float, err: float) -> str:
    """``0.5142 ± 0.0015``: the uncertainty to two significant digits, the value to match."""
    if not (math.isfinite(value) and math.isfinite(err)) or err <= 0:
        return f"{fmt(value)} ± {fmt(err)}"
    decimals = max(1 - math.floor(math.log10(err)), 0)
    if decimals > 8 or abs(value) >= 1e6:
        return f"{value:.4g} ± {err:.2g}"
    return f"{value:.{decimals}f} ± {err:.{decimals}f}"


def headline_rows(results: Mapping[str, Any]) -> list[ResultRow]:
    rows: list[ResultRow] = []
    shown: set[str] = set()
    for key, label, unit, err_keys in HEADLINES:
        value = results.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        err = next((results[k] for k in err_keys if isinstance(results.get(k), (int, float))), None)
        text = fmt(value) if err is None else with_uncertainty(value, err)
        rows.append(ResultRow(label, f"{text} {unit}".strip(), key))
        shown.update((key, *err_keys))
    table = results.get("table")
    if isinstance(table, list):  # an Arrhenius run: σ at each temperature
        for row in table:
            if isinstance(row, Mapping) and isinstance(row.get("sigma_S_cm"), (int, float)):
                t_c = row.get("T_C")
                where = f"{round(t_c, 1) + 0.0:.1f} °C" if isinstance(t_c, (int, float)) else "?"  # no "-0.0"
                shown_value = f"{fmt(row['sigma_S_cm'])} S/cm"
                if row.get("valid") is False:  # never a bare number for a point the analysis refused
                    shown_value = f"invalid: {row.get('reason') or 'not determined'}"
                rows.append(ResultRow(f"σ ({where})", shown_value, "table"))
        shown.add("sigma_S_cm")
    rows += warning_rows(results)
    for key, value in results.items():
        if key in shown or isinstance(value, (dict, list)):
            continue
        rows.append(ResultRow(key, fmt(value)))
    return rows


def warning_rows(results: Mapping[str, Any]) -> list[ResultRow]:
    rows = []
    for key in ("warnings", "invalid_reasons"):
        for item in results.get(key) or []:
            rows.append(ResultRow("warning", str(item), key, warning=True))
    for key in ("valid", "plausible", "steady"):
        if results.get(key) is False:
            rows.append(ResultRow("warning", f"{key} = false", key, warning=True))
    if results.get("arc_resolved") is False:
        rows.append(
            ResultRow("note", "bulk arc not resolved: R_bulk from the high-frequency intercept", "arc_resolved")
        )
    return rows


def arrhenius_points(results: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(1000/T in K⁻¹, ln σ) from an Arrhenius result's table, or None."""
    table = results.get("table")
    if not isinstance(table, list):
        return None
    x, y = [], []
    for row in table:
        if not isinstance(row, Mapping):
            continue
        t_c, sigma = row.get("T_C"), row.get("sigma_S_cm")
        if isinstance(t_c, (int, float)) and isinstance(sigma, (int, float)) and sigma > 0:
            x.append(1000.0 / (t_c + 273.15))
            y.append(math.log(sigma))
    return (np.array(x), np.array(y)) if x else None


def arrhenius_fit_line(results: Mapping[str, Any], x: np.ndarray) -> np.ndarray | None:
    """The fitted line ln σ = ln σ0 − Ea/(k·T) on ``x`` = 1000/T (the 'sigma' form only)."""
    ea, pre = results.get("ea_eV"), results.get("prefactor")
    if results.get("form") != "sigma" or not isinstance(ea, (int, float)) or not isinstance(pre, (int, float)):
        return None
    if pre <= 0:
        return None
    k_b = 8.617333262145179e-05
    return math.log(pre) - ea / k_b * x / 1000.0
