"""The fitted circuit's impedance, rebuilt from a stored result.

A result records the circuit by name (``L-R0-p(R1,CPE1)-CPEdl`` ...) and its
parameters in SI (``fit_params``); the name fixes the element chain, so the
fit curve drawn on a Nyquist plot is the stored fit, not a refit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from labctl.analysis.impedance.circuits import CircuitSpec, circuit_impedance

_ARC = re.compile(r"^p\(R(\d),CPE\1\)$")


def spec_from_name(name: str) -> CircuitSpec | None:
    """The CircuitSpec whose ``name`` is ``name``; None if it is no such chain."""
    parts = name.split("-")
    arcs = [p for p in parts if _ARC.match(p)]
    try:
        spec = CircuitSpec(
            n_arcs=len(arcs),
            spike="CPEdl" in parts,
            inductance="L" in parts,
            interface="p(Rint,CPEint)" in parts,
            diffusion="Ws" in parts,
        )
    except ValueError:
        return None
    return spec if spec.name == name else None


def fit_curve(result: Mapping[str, Any], freq: np.ndarray) -> np.ndarray | None:
    """Z of the stored fit at ``freq``, or None when the result holds no usable fit."""
    name, params = result.get("circuit"), result.get("fit_params")
    if not isinstance(name, str) or not isinstance(params, Mapping):
        return None
    spec = spec_from_name(name)
    if spec is None:
        return None
    values: dict[str, float] = {}
    for p in spec.param_names:
        v = params.get(p)
        if not isinstance(v, int | float) or not math.isfinite(v):
            return None
        values[p] = float(v)
    with np.errstate(all="ignore"):
        z = circuit_impedance(spec, values, np.asarray(freq, dtype=float))
    return z if np.all(np.isfinite(z)) else None


def find_fits(node: Any, where: str = "") -> list[tuple[str, Mapping[str, Any]]]:
    """Every dict in a result holding ``circuit`` and ``fit_params`` (with its location)."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(node, Mapping):
        if isinstance(node.get("circuit"), str) and isinstance(node.get("fit_params"), Mapping):
            out.append((where, node))
        for key, value in node.items():
            if key != "conventions":
                out.extend(find_fits(value, f"{where}.{key}" if where else str(key)))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            out.extend(find_fits(value, f"{where}[{i}]"))
    return out


def circuit_text(result: Mapping[str, Any]) -> str:
    """The circuit (with each element's physical label when the fit recorded them) and the
    arcs' labels, for a figure's text box."""
    labelled = result.get("circuit_labelled")
    lines = [f"circuit {labelled if isinstance(labelled, str) and labelled else result.get('circuit')}"]
    for key, value in result.items():
        if key == "circuit_labelled" or "label" not in str(key).lower() or value in (None, "", [], {}):
            continue
        if isinstance(value, Mapping):
            lines += [_arc_line(k, v) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            lines += [str(v) for v in value]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines[:10])


def _arc_line(arc: Any, info: Any) -> str:
    """``arc 1: bulk, C_eff 1.73e-10 F, ε_r 19.5`` from a label record (or its text)."""
    if not isinstance(info, Mapping):
        return f"{arc}: {info}"
    parts = [str(info.get("label", "?"))]
    if isinstance(info.get("C_eff_F"), int | float):
        parts.append(f"C_eff {info['C_eff_F']:.3g} F")
    if isinstance(info.get("eps_r"), int | float):
        parts.append(f"ε_r {info['eps_r']:.3g}")
    return f"arc {arc}: " + ", ".join(parts)
