"""Which circuit: the candidates fitted for a spectrum and the one chosen by BIC
(:func:`fit_spectrum`, the public entry point)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import numpy as np

from labctl.analysis.impedance.circuits import CIRCUIT_FAMILIES, CIRCUITS, CircuitSpec
from labctl.analysis.impedance.constants import (
    _APEX_ABOVE_BAND_MAX,
    _ARC_REL_SE_MAX,
    _DIFFUSION_REL_SE,
    GEOMETRIC_CAPACITANCE_MAX_F,
)
from labctl.analysis.impedance.elements import arc_apex_frequency, effective_capacitance
from labctl.analysis.impedance.fitting import _apex, _fit_one, _Result, _stderr
from labctl.analysis.impedance.parameterisation import _Data, _from_theta, _prepare, _to_theta
from labctl.analysis.impedance.results import EisFit, _summarise
from labctl.analysis.impedance.seeding import _add_arc_seeds_blocking, _grid_seeds, _grid_seeds_li


def fit_spectrum(
    freq: np.ndarray,
    z: np.ndarray,
    *,
    circuit: str = "auto",
    n_arcs: int | Literal["auto"] = 1,
    inductance: bool | Literal["auto"] = "auto",
    freq_range: tuple[float, float] | None = None,
) -> EisFit:
    """Fit an equivalent circuit to one impedance spectrum.

    ``freq`` in Hz, ``z`` complex Ω with Z'' negative for capacitive behaviour.

    ``circuit``: "auto" chooses by BIC among the blocking circuit, its reduced form R0-CPEdl
    (bulk arc above the band) and, when the low-frequency end returns to the real axis, the
    spike-free R-RC circuit; or one of :data:`CIRCUITS` by name; or a family of
    :data:`CIRCUIT_FAMILIES` ("li_li": a symmetric cell with Li electrodes, the circuit with
    and without the bulk arc, chosen by BIC). ``n_arcs`` (auto only): 1, 2
    (bulk + grain boundary, pellets) or "auto" (1 or 2 by BIC). ``inductance``: True, False,
    or "auto" = kept when the highest-frequency points are inductive (Z'' > 0) or when it
    lowers the BIC. ``freq_range``: (f_min, f_max) to restrict the fitted points.
    """
    data = _prepare(freq, z, freq_range)
    inductive = bool(np.any(data.z.imag[:3] > 0))

    bases = _candidate_circuits(circuit, n_arcs, data)

    with_l = inductance is not False
    results: list[_Result] = []
    grid_seeds: dict[CircuitSpec, list[np.ndarray]] = {}
    for base in bases:
        spec = base.with_inductance(with_l)
        if spec.diffusion and len(spec.arc_labels) == 2:
            # the refined one-arc Li|Li fits are the best starting points for a second arc
            one = [r.theta for r in results if r.spec.diffusion and len(r.spec.arc_labels) == 1]
            one_seeds = grid_seeds.get(replace(spec, n_arcs=0, interface=True))
            seeds = _grid_seeds_li(spec, data, bases=tuple(one), one_arc_seeds=one_seeds)
        else:
            seeds = grid_seeds[spec] = _grid_seeds(spec, data)
            if spec.n_arcs == 2 and not spec.interface:
                # also from the refined one-arc fits with the same electrode end
                one = [
                    _from_theta(r.spec, r.theta, data)
                    for r in results
                    if r.spec.n_arcs == 1 and r.spec.spike == spec.spike and not r.spec.interface and not r.spec.leakage
                ]
                if not one and not spec.leakage:  # a named two-arc circuit: fit its one-arc form for seeds
                    base = replace(spec, n_arcs=1)
                    if (r1 := _fit_one(base, data, _grid_seeds(base, data))) is not None:
                        one = [_from_theta(base, r1.theta, data)]
                seeds = seeds + _add_arc_seeds_blocking(spec, data, one)
        if (r := _fit_one(spec, data, seeds)) is not None:
            results.append(r)
    if circuit in ("auto", "randles"):
        results += _randles_candidates(results, data, with_l, chosen=circuit == "randles")
    if circuit in CIRCUIT_FAMILIES and CIRCUITS[CIRCUIT_FAMILIES[circuit][0]].diffusion:
        results += _without_diffusion(results, data)
    if not results:
        raise RuntimeError("impedance fit failed for every candidate circuit")
    admissible = [r for r in results if _arcs_in_band(r, data)] or results
    # a candidate whose extra arc the data do not determine loses to the simpler circuit,
    # whatever its BIC (a 374 %-uncertain "bulk" arc at 6x f_max fitted to the inductive
    # tail of a dummy cell is noise-fitting, not a grain boundary)
    if any(r.spec.n_arcs == 1 for r in admissible):  # only when the simpler circuit was fitted
        admissible = [r for r in admissible if _extra_arcs_identifiable(r, data)] or admissible
    general = min(admissible, key=lambda r: r.bic)
    best = general
    if inductance == "auto" and not inductive:
        spec = general.spec.with_inductance(False)
        p = _from_theta(general.spec, general.theta, data)
        seed = _to_theta(spec, {k: v for k, v in p.items() if k != "L"}, data)
        no_l = _fit_one(spec, data, [seed])
        if no_l is not None:
            results.append(no_l)
            if no_l.bic < general.bic:
                best = no_l
    return _summarise(best, general, data, results)


def _candidate_circuits(circuit: str, n_arcs: int | Literal["auto"], data: _Data) -> list[CircuitSpec]:
    """The circuits (before the inductance choice) that :func:`fit_spectrum` compares."""
    if circuit == "auto":
        arcs = [1, 2] if n_arcs == "auto" else [int(n_arcs)]
        closes = _returns_to_real_axis(data)
        bases = [CircuitSpec(0, True)]
        for k in arcs:
            bases.append(CircuitSpec(k, True))
            if closes:
                bases.append(CircuitSpec(k, False))
        return bases
    if circuit == "randles":
        return [CircuitSpec(1, True)]  # seeds the Randles fit, which is then the only admissible one
    if circuit in CIRCUITS:
        return [CIRCUITS[circuit]]
    if circuit in CIRCUIT_FAMILIES:
        return [CIRCUITS[name] for name in CIRCUIT_FAMILIES[circuit]]
    known = sorted(CIRCUITS) + sorted(CIRCUIT_FAMILIES)
    raise ValueError(f"unknown circuit {circuit!r}; use 'auto' or one of {known}")


def _without_diffusion(results: list[_Result], data: _Data) -> list[_Result]:
    """The Li|Li candidates refitted without the Warburg, each seeded from its own fit.

    A single-ion conductor (t+ = 1) has no diffusion feature, and when RD is far below the
    noise the Warburg is free to wander to the bound τD = 10·τ_ref and take the tail of the
    interfacial arc instead, shifting R_int by a per cent or two; BIC then prefers the
    circuit without it (two parameters fewer, the same χ²)."""
    out = []
    for res in [r for r in results if r.spec.diffusion]:
        se = _stderr(res, data)[0]["RD"]
        if math.isfinite(se) and se < _DIFFUSION_REL_SE * _from_theta(res.spec, res.theta, data)["RD"]:
            continue  # the data need this Warburg: without it the fit can only be worse
        spec = replace(res.spec, diffusion=False)
        p = _from_theta(res.spec, res.theta, data)
        seed = _to_theta(spec, {k: v for k, v in p.items() if k not in ("RD", "tauD")}, data)
        if (r := _fit_one(spec, data, [seed])) is not None:
            out.append(r)
    return out


def _returns_to_real_axis(data: _Data) -> bool:
    """True when the low-frequency end closes toward the real axis (R-RC cell, no spike).

    The lowest-frequency points then have a small phase angle and a -Z'' that keeps falling
    toward low frequency; a blocking spike has a large phase angle and a rising -Z''.
    """
    tail = data.z[-3:]
    phase = math.degrees(math.atan2(-tail[-1].imag, tail[-1].real))
    falling = bool(np.all(np.diff(-tail.imag) <= 0.05 * np.abs(tail[:-1])))
    return phase < 10.0 and falling


def _arcs_in_band(res: _Result, data: _Data) -> bool:
    """An arc whose apex lies below the lowest measured frequency is not an electrolyte arc
    but a second CPE imitating the spike; its R is an extrapolation and R_total meaningless.
    (In Li|Li circuits the same holds against the Warburg; that a Warburg is slower than
    every arc is built into its parameterisation, see _TAU_D_MIN_RATIO.)"""
    p = _from_theta(res.spec, res.theta, data)
    return all(_apex(p, a) >= data.freq[-1] for a in res.spec.arc_labels)


def _extra_arcs_identifiable(res: _Result, data: _Data) -> bool:
    """A two-arc electrolyte circuit is admissible only when both arcs are identifiable: each
    arc's R known to ``_ARC_REL_SE_MAX`` (1 sigma, from the fit covariance) and each apex
    inside the band (a second arc above f_max or below f_min is an extrapolation). One-arc
    circuits are always admissible: their arc above the band still gives R_total = R0 + R1."""
    if res.spec.n_arcs < 2 and not res.spec.leakage:
        return True
    p = _from_theta(res.spec, res.theta, data)
    # L, and R0 when every arc peaks inside the band, sitting on their bound 0 are fixed
    # there, not free: their columns would only add a direction the bound forbids and inflate
    # the arcs' errors. An arc above the band keeps R0 free: there the bound R0 >= 0 is what
    # would make it look determined (the arc then plays the series resistance)
    jac = res.jac.copy()
    in_band = all(_apex(p, a) <= data.freq[0] for a in res.spec.arc_labels)
    for i, k in enumerate(res.spec.param_names):
        if (k == "L" or (k == "R0" and in_band)) and res.theta[i] <= 1e-6:
            jac[:, i] = 0.0
    se = _stderr(replace(res, jac=jac), data)[0]
    if res.spec.leakage and not (math.isfinite(se["Re"]) and se["Re"] < _ARC_REL_SE_MAX * p["Re"]):
        return False
    if res.spec.n_arcs < 2:
        return True
    for i in range(1, res.spec.n_arcs + 1):
        r, s = p[f"R{i}"], se[f"R{i}"]
        if not (math.isfinite(s) and s < _ARC_REL_SE_MAX * r):
            return False
        if not data.freq[-1] <= _apex(p, i) <= _APEX_ABOVE_BAND_MAX * data.freq[0]:
            return False
    return True


def _randles_candidates(results: list[_Result], data: _Data, with_l: bool, chosen: bool = False) -> list[_Result]:
    """The Randles electrode R0-p(CPEct,Rct-CPEw), seeded from each one-arc blocking fit
    (its arc → Rct‖CPEct, its spike → the diffusion CPE inside the branch).

    A faradaic electrode (liquid electrolytes with a redox species, reactive electrodes)
    puts the diffusion impedance in series with Rct, both shunted by the double layer; the
    blocking chain R0-p(R,CPE)-CPE with the diffusion outside the arc then misplaces R0 by
    several per cent. Kept only when its arc is interfacial (C_eff above the geometric
    range): with a pF arc the two circuits are the same spectrum and the simpler reading wins;
    and, unless the user ``chosen`` this circuit by name, only when the arc is measured, not
    extrapolated (``_faradaic_arc_identifiable``).
    """
    spec = CircuitSpec(0, False, inductance=with_l, randles=True)
    out = []
    for res in [r for r in results if r.spec.n_arcs == 1 and r.spec.spike and not r.spec.leakage]:
        p = _from_theta(res.spec, res.theta, data)
        if effective_capacitance(p["R1"], p["Q1"], p["n1"]) <= GEOMETRIC_CAPACITANCE_MAX_F:
            continue  # a geometric arc: the Randles reading would be the same spectrum, relabelled
        seed = {"R0": p["R0"], "Rct": p["R1"], "Qct": p["Q1"], "nct": p["n1"], "Qw": p["Qdl"], "nw": p["ndl"]}
        if with_l:
            seed["L"] = p.get("L", 1e-6 * data.lscale)
        fit = _fit_one(spec, data, [_to_theta(spec, seed, data)])
        if fit is not None:
            q = _from_theta(spec, fit.theta, data)
            interfacial = effective_capacitance(q["Rct"], q["Qct"], q["nct"]) > GEOMETRIC_CAPACITANCE_MAX_F
            if interfacial and (chosen or _faradaic_arc_identifiable(fit, data)):
                out.append(fit)
    return out


def _faradaic_arc_identifiable(res: _Result, data: _Data) -> bool:
    """The charge-transfer arc of a Randles fit counts only when the data determine it: its
    apex inside the measured band and Rct known to ``_ARC_REL_SE_MAX`` (1 sigma).

    A blocking cell whose bulk arc peaks just above f_max shows the arc's low-frequency tail
    as a slight curvature at the top of the band; a Randles fit reads it as a few-ohm "Rct"
    peaking above f_max and counts only R0 as electrolyte, which misses the rest of the
    bulk arc (seen on the simulator: sigma 4 % high, with a 47 %-uncertain Rct peaking at
    4.6 f_max). A faradaic electrode's arc is in the band. Otherwise the one-arc blocking
    reading is kept, whose R_total = R0 + R1 holds whatever the split."""
    p = _from_theta(res.spec, res.theta, data)
    se = _stderr(res, data)[0]["Rct"]
    apex = arc_apex_frequency(p["Rct"], p["Qct"], p["nct"])
    return bool(data.freq[-1] <= apex <= data.freq[0] and math.isfinite(se) and se < _ARC_REL_SE_MAX * p["Rct"])
