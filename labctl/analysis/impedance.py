"""Equivalent-circuit fitting of impedance spectra of solid-electrolyte cells.

The circuits are series chains built from a few elements::

    [L] - R0 - p(R1,CPE1) [- p(R2,CPE2)] [- CPEdl]                  blocking electrodes
    [L] - R0 [- p(R1,CPE1)] - p(Rint,CPEint) - Ws(RD,tauD)           Li|SE|Li ("li_li")

``R0`` is the series (lead/contact) resistance, ``p(R1,CPE1)`` the bulk arc, the optional
``p(R2,CPE2)`` a grain-boundary arc (pellets), ``CPEdl`` the blocking double layer of a
SS|electrolyte|SS cell (DESIGN §4 calls it CPE2 in the one-arc circuit) and ``L`` a series
inductance of leads and instrument. A CPE has Z = 1/(Q (jω)^n).

For symmetric cells with non-blocking (Li) electrodes, ``p(Rint,CPEint)`` is the interfacial
(charge-transfer/SEI) arc of both electrodes in series and ``Ws`` the finite-length Warburg
with a transmissive ("short") boundary, Z = RD·tanh(√(jωτD))/√(jωτD) (Barsoukov & Macdonald,
Impedance Spectroscopy, 2nd ed., Wiley 2005, finite-length diffusion; Franceschetti, Macdonald
& Buck, J. Electrochem. Soc. 138 (1991) 1368 for its origin in unsupported cells with
reversible electrodes). Its DC limit RD is the concentration-polarisation resistance,
RD = R_b(1 − t+)/t+ for a binary electrolyte, which is why it has to be split from the
interfacial arc before t+ can be computed. The bulk arc is often above the band (then only
R0 + R_b is seen), so "li_li" chooses by BIC between the circuit with and without it.

Why the fit is built the way it is:

- **Modulus weighting** (residual = (Z_model − Z_data)/|Z_data|, real and imaginary parts
  stacked): blocking-cell spectra span 3–8 decades of |Z|; an unweighted fit only sees the
  low-frequency spike and gets the electrolyte resistance wrong by several per cent.
- **Log parameters** for the arc resistances and the CPE Q (their values span 20 decades
  between cells and relative steps are what the optimiser should take), the exponents n
  linear and bounded to 0.4..1. R0 and L are fitted *linearly* (>= 0): both are often ~0, where
  a log parameter has a vanishing gradient, never leaves its bound, and hides from the
  covariance how it trades off against the R0/R1 split.
- **Global seeding by variable projection**: for fixed time constants and exponents, Z is
  *linear* in R0, L, the arc resistances and 1/Q_dl. A grid over the non-linear parameters
  with one batched weighted linear solve finds the basins for cells from 0.05 Ω to 2e7 Ω,
  whether the bulk arc lies inside or far above the measured band. One seed per basin of
  the bulk time constant is refined with ``scipy.optimize.least_squares`` (TRF, analytic
  Jacobian), because the single best grid point is sometimes a low-frequency arc imitating
  the spike. Typical cost: 20–50 ms per spectrum.
- **Li|Li seeding**: the same variable projection, with an arc's (τ, n) and the Warburg's τD
  as grid dimensions and RD one more linear coefficient (Z_D/RD depends on τD only); seeds
  from the basins of the profiles over both τ and τD. The two-arc circuit is seeded by
  adding a second arc (grid over its τ, n and τD again) to the one-arc solutions, refined
  and grid ones: a joint two-arc grid coarse enough to be cheap lets both arcs share the
  dominant one and leaves the small one to the Warburg.
- **Li|Li Warburg kept physical**: τD is fitted relative to a smooth maximum of the arcs'
  time constants, τD >= 10·τ_arcs and >= 1 s: otherwise a Warburg with a short τD imitates
  part of an arc (the top of a bulk arc cut off by f_max, the low-frequency side of a
  depressed interfacial arc) and books its resistance as diffusion. When RD is not
  determined the circuits are also refitted without the Warburg (single-ion conductors,
  t+ = 1, have none). Arcs are ordered by effective capacitance (Brug), not apex frequency:
  a geometric (bulk) capacitance is pF–nF, an interfacial one µF (Irvine, Sinclair & West,
  Adv. Mater. 2 (1990) 132); a single arc below 1e-8 F is the bulk arc (R1), otherwise the
  interface (Rint). Typical cost: 40–70 ms per spectrum (five to six candidate fits).
- **Model selection** by the Bayesian information criterion among the candidate circuits
  (full blocking circuit; the reduced R0-CPEdl one when the arc is above the band; the
  spike-free R-RC circuit of dummy cells when the low-frequency end returns to the real axis;
  with/without L). An arc peaking below the band is rejected: it imitates the spike and its
  R would be an extrapolation. When the arc is not resolved, only R_total = R0 + R1 is
  determined (in band the arc is a plain resistor in series with R0): that is the robust
  headline, and ``arc_resolved`` says whether the split is known (to 5 % at 2σ, judged with L
  free, because an unknown series inductance trades off against the split of an arc near the
  top of the band).

Pure numpy/scipy: no file or instrument access here (DESIGN §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import combinations
from typing import Any, Literal

import numpy as np
from scipy.optimize import least_squares

__all__ = [
    "CIRCUITS",
    "CIRCUIT_FAMILIES",
    "GEOMETRIC_CAPACITANCE_MAX_F",
    "CircuitSpec",
    "EisFit",
    "arc_apex_frequency",
    "circuit_impedance",
    "cpe_impedance",
    "effective_capacitance",
    "finite_warburg_impedance",
    "fit_spectrum",
    "model_impedance",
    "rq_impedance",
]

_N_BOUNDS_ARC = (0.4, 1.0)
_N_BOUNDS_DL = (0.4, 1.0)
#: The interfacial arc of Li electrodes: n >= 0.6, because p(R,CPE) with n near 0.5 is a
#: finite-length Warburg in disguise and would take the diffusion resistance into R_int.
_N_BOUNDS_INT = (0.6, 1.0)
_L_MAX = 1e-2  # H
#: The R0/R1 split counts as resolved when both are known to 5 % at 2 sigma.
_RESOLVED_REL_SE = 0.025
_LN_Q_BOUNDS = (math.log(1e-25), math.log(1e6))
#: The Warburg is fitted as u = ln(τD/τ_ref) >= ln(_TAU_D_MIN_RATIO), τ_ref a smooth maximum
#: (log-sum-exp) of the arcs' (RQ)^(1/n): the salt diffusion across the electrolyte (τD =
#: L²/4D, seconds to hours) is the slowest process of a Li|SE|Li cell, interfacial arcs relax
#: in well under a second. Without it a Warburg with a short τD imitates part of an arc (the
#: top of a bulk arc cut off by f_max, or the low-frequency side of a depressed interfacial
#: arc) and takes resistance from it into "RD". A factor 10 leaves a margin of 6 below the
#: smallest ratio of the cells labctl is specified for (τD >= 10 s, interfacial apex >= 1 Hz).
_TAU_D_MIN_RATIO = 10.0
#: And τD >= 1 s whatever the arcs (10 times below the shortest diffusion times labctl is
#: specified for; L²/4D is ~1 s only for a 20 µm gel with D = 1e-6 cm²/s): when the
#: interfacial arc is near the noise, a circuit without it otherwise lets a short Warburg
#: play the interface and books R_int as diffusion resistance.
_TAU_D_MIN_S = 1.0
#: Upper end of τD: a turnover 1e6 times below f_min (then only RD/√τD is determined; the RD
#: bound, 1e3·max|Z|, is reached at the same point).
_TAU_D_MAX_OMEGA = 1e6
#: RD counts as determined (the Warburg's low-frequency turnover seen) at 5 % at 1 sigma.
_DIFFUSION_REL_SE = 0.05
#: Arcs of a Li|Li fit with a smaller effective capacitance are geometric (electrolyte bulk):
#: C = ε0·εr·A/L is 1e-12–1e-9 F for pellets and films of 0.1–2 cm², 10 µm–2 mm and εr ≤ 100,
#: an electrode interface 1e-7–1e-5 F/cm² (Irvine, Sinclair & West, Adv. Mater. 2 (1990) 132).
GEOMETRIC_CAPACITANCE_MAX_F = 1e-8


# --------------------------------------------------------------------------- elements


def cpe_impedance(freq: np.ndarray, q: float, n: float) -> np.ndarray:
    """Constant-phase element, Z = 1/(Q (jω)^n); n = 1 is an ideal capacitor Q."""
    jw = 2j * np.pi * np.asarray(freq, dtype=float)
    return 1.0 / (q * jw**n)


def rq_impedance(freq: np.ndarray, r: float, q: float, n: float) -> np.ndarray:
    """Resistor in parallel with a CPE (a depressed semicircle of diameter r)."""
    jw = 2j * np.pi * np.asarray(freq, dtype=float)
    return r / (1.0 + r * q * jw**n)


def arc_apex_frequency(r: float, q: float, n: float) -> float:
    """Frequency of the top of a p(R,CPE) arc: ω·(RQ)^(1/n) = 1."""
    return 1.0 / (2.0 * math.pi * (r * q) ** (1.0 / n))


def effective_capacitance(r: float, q: float, n: float) -> float:
    """Capacitance of the ideal RC arc with the same R and apex as p(R,CPE):
    C = Q^(1/n)·R^(1/n − 1) (Brug et al., J. Electroanal. Chem. 176 (1984) 275). It tells a
    geometric (bulk, pF–nF) arc from an interfacial (µF) one whatever the apex frequencies."""
    return q ** (1.0 / n) * r ** (1.0 / n - 1.0)


def _tanh_ratio(s: np.ndarray) -> np.ndarray:
    """tanh(s)/s, with its series below |s| = 1e-2 where the quotient loses digits."""
    out = np.empty_like(s)
    small = np.abs(s) < 1e-2
    s2 = s[small] ** 2
    out[small] = 1.0 - s2 / 3.0 + 2.0 * s2 * s2 / 15.0
    big = ~small
    out[big] = np.tanh(s[big]) / s[big]
    return out


def finite_warburg_impedance(freq: np.ndarray, r_d: float, tau_d: float) -> np.ndarray:
    """Finite-length Warburg with a transmissive boundary, RD·tanh(√(jωτD))/√(jωτD).

    Semi-infinite (Z ∝ (jω)^−½, a 45° line) for ωτD ≫ 3, a resistor RD for ωτD ≪ 1
    (Barsoukov & Macdonald, Impedance Spectroscopy, 2nd ed., 2005). In a Li|SE|Li cell it is
    the salt concentration profile between the electrodes; RD = R_b(1 − t+)/t+.
    """
    s = np.sqrt(2j * np.pi * np.asarray(freq, dtype=float) * tau_d)
    return r_d * _tanh_ratio(np.atleast_1d(s)).reshape(s.shape)


# --------------------------------------------------------------------------- circuits


@dataclass(frozen=True)
class CircuitSpec:
    """Which elements a series circuit has. The order of ``param_names`` is the fit vector.

    ``n_arcs`` counts the electrolyte arcs (R1 bulk, R2 grain boundary); ``interface`` adds
    the electrode-interface arc p(Rint,CPEint) of non-blocking electrodes and ``diffusion``
    the finite-length Warburg Ws(RD,tauD). They have names of their own, not R2/R3, so that
    R1 means the bulk arc in every circuit and a Li|Li fit without a resolved bulk arc does
    not call its interfacial arc "R1".
    """

    n_arcs: int = 1
    spike: bool = True
    inductance: bool = False
    interface: bool = False
    diffusion: bool = False

    def __post_init__(self) -> None:
        if self.n_arcs not in (0, 1, 2):
            raise ValueError(f"n_arcs must be 0, 1 or 2, not {self.n_arcs}")
        if self.diffusion and self.spike:
            raise ValueError("a circuit has either a blocking spike (CPEdl) or a diffusion element, not both")

    @property
    def name(self) -> str:
        parts = ["L"] if self.inductance else []
        parts.append("R0")
        parts += [f"p(R{i},CPE{i})" for i in range(1, self.n_arcs + 1)]
        if self.interface:
            parts.append("p(Rint,CPEint)")
        if self.spike:
            parts.append("CPEdl")
        if self.diffusion:
            parts.append("Ws")
        return "-".join(parts)

    @cached_property
    def param_names(self) -> list[str]:
        names = ["R0"] + (["L"] if self.inductance else [])
        for i in range(1, self.n_arcs + 1):
            names += [f"R{i}", f"Q{i}", f"n{i}"]
        if self.interface:
            names += ["Rint", "Qint", "nint"]
        if self.spike:
            names += ["Qdl", "ndl"]
        if self.diffusion:
            names += ["RD", "tauD"]
        return names

    @cached_property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def arc_labels(self) -> list[str]:
        """Suffixes of the p(R,CPE) elements in fit-vector order: "1", "2", "int"."""
        return [str(i) for i in range(1, self.n_arcs + 1)] + (["int"] if self.interface else [])

    def with_inductance(self, inductance: bool) -> CircuitSpec:
        return replace(self, inductance=inductance)


#: Named circuits accepted by :func:`fit_spectrum` (``circuit=``), besides "auto".
CIRCUITS: dict[str, CircuitSpec] = {
    "blocking": CircuitSpec(n_arcs=1, spike=True),  # R0-p(R1,CPE1)-CPEdl
    "blocking-reduced": CircuitSpec(n_arcs=0, spike=True),  # R0-CPEdl (arc above band)
    "rc": CircuitSpec(n_arcs=1, spike=False),  # R0-p(R1,CPE1), dummy cells, no spike
    "pellet": CircuitSpec(n_arcs=2, spike=True),  # bulk + grain boundary + electrode spike
    "pellet-rc": CircuitSpec(n_arcs=2, spike=False),
    # Li|SE|Li: bulk arc + interfacial arc + finite-length Warburg, and the same without the
    # bulk arc (R0 = R_s + R_b when the bulk arc lies above the band)
    "li_li-full": CircuitSpec(n_arcs=1, spike=False, interface=True, diffusion=True),
    "li_li-reduced": CircuitSpec(n_arcs=0, spike=False, interface=True, diffusion=True),
}

#: Names accepted by :func:`fit_spectrum` that fit several circuits and keep the best by BIC.
CIRCUIT_FAMILIES: dict[str, tuple[str, ...]] = {
    "li_li": ("li_li-reduced", "li_li-full"),  # this order: the one-arc fits seed the two-arc one
}

_UNITS = {"R": "ohm", "L": "H", "Q": "F*s^(n-1)", "n": "1", "t": "s"}


def _unit(name: str) -> str:
    return _UNITS[name[0]] if not name.startswith("n") else "1"


def circuit_impedance(spec: CircuitSpec, params: dict[str, float], freq: np.ndarray) -> np.ndarray:
    """Impedance of ``spec`` with SI ``params`` (names as in ``spec.param_names``)."""
    freq = np.asarray(freq, dtype=float)
    z = np.full(freq.shape, params["R0"], dtype=complex)
    if spec.inductance:
        z = z + 2j * np.pi * freq * params["L"]
    for a in spec.arc_labels:
        z = z + rq_impedance(freq, params[f"R{a}"], params[f"Q{a}"], params[f"n{a}"])
    if spec.spike:
        z = z + cpe_impedance(freq, params["Qdl"], params["ndl"])
    if spec.diffusion:
        z = z + finite_warburg_impedance(freq, params["RD"], params["tauD"])
    return z


# --------------------------------------------------------------------------- data and parameter vector


@dataclass
class _Data:
    """The points being fitted, sorted by falling frequency, with derived arrays."""

    freq: np.ndarray
    z: np.ndarray
    omega: np.ndarray
    ln_jw: np.ndarray  # ln(jω) = ln ω + jπ/2
    w: np.ndarray  # modulus weights 1/|Z|
    rscale: float  # Ω; min |Z|, the unit of the linear R0 parameter
    lscale: float  # H; the inductance whose reactance at f_max equals min |Z|

    @property
    def n(self) -> int:
        return self.freq.size


def _prepare(freq: np.ndarray, z: np.ndarray, freq_range: tuple[float, float] | None) -> _Data:
    freq = np.asarray(freq, dtype=float).ravel()
    z = np.asarray(z, dtype=complex).ravel()
    if freq.shape != z.shape:
        raise ValueError(f"freq and z differ in length ({freq.size} vs {z.size})")
    keep = np.isfinite(freq) & np.isfinite(z.real) & np.isfinite(z.imag) & (freq > 0) & (np.abs(z) > 0)
    if freq_range is not None:
        keep &= (freq >= min(freq_range)) & (freq <= max(freq_range))
    freq, z = freq[keep], z[keep]
    if freq.size < 6:
        raise ValueError(f"need at least 6 valid points to fit a spectrum, got {freq.size}")
    order = np.argsort(-freq)
    freq, z = freq[order], z[order]
    omega = 2 * np.pi * freq
    zmin = float(np.min(np.abs(z)))
    return _Data(freq, z, omega, np.log(omega) + 0.5j * np.pi, 1.0 / np.abs(z), zmin, zmin / omega[0])


# Arc resistances and Q are fitted as ln(value) and the exponents n as they are. R0 and L
# are fitted linearly (>= 0, in units of data.rscale / data.lscale): both are often ~0, where
# a log parameter has a vanishing gradient, never leaves its bound and hides its trade-off
# with the R0/R1 split from the covariance.


def _linear_scale(name: str, data: _Data) -> float | None:
    """Unit of a linearly fitted parameter; None for log parameters."""
    if name.startswith("n"):
        return 1.0
    if name == "R0":
        return data.rscale
    if name == "L":
        return data.lscale
    return None


def _to_theta(spec: CircuitSpec, params: dict[str, float], data: _Data) -> np.ndarray:
    out = []
    for k in spec.param_names:
        s = _linear_scale(k, data)
        out.append(math.log(params[k]) if s is None else params[k] / s)
    theta = np.array(out)
    if spec.diffusion:  # u = ln τD − ln τ_ref
        theta[spec.param_names.index("tauD")] -= _ln_tau_ref(spec, theta)[0]
    return theta


def _from_theta(spec: CircuitSpec, theta: np.ndarray, data: _Data) -> dict[str, float]:
    out = {}
    for k, v in zip(spec.param_names, theta, strict=True):
        s = _linear_scale(k, data)
        out[k] = math.exp(float(v)) if s is None else float(v) * s
    if spec.diffusion:
        out["tauD"] = math.exp(float(theta[spec.param_names.index("tauD")]) + _ln_tau_ref(spec, theta)[0])
    return out


def _ln_tau_ref(spec: CircuitSpec, theta: np.ndarray) -> tuple[float, dict[int, float]]:
    """ln τ_ref = log-sum-exp of the arcs' ln τ = (ln R + ln Q)/n and of the constant
    ln(_TAU_D_MIN_S/_TAU_D_MIN_RATIO), and its derivatives with respect to the θ entries it
    depends on: a smooth maximum, so τD = τ_ref·e^u >= max(10·τ_arcs, 1 s) for u >= ln 10."""
    names = spec.param_names
    ln_taus = [math.log(_TAU_D_MIN_S / _TAU_D_MIN_RATIO)]
    grads: list[dict[int, float]] = [{}]
    for a in spec.arc_labels:
        i_r, i_q, i_n = names.index(f"R{a}"), names.index(f"Q{a}"), names.index(f"n{a}")
        n = float(theta[i_n])
        lt = (float(theta[i_r]) + float(theta[i_q])) / n
        ln_taus.append(lt)
        grads.append({i_r: 1.0 / n, i_q: 1.0 / n, i_n: -lt / n})
    top = max(ln_taus)
    weights = [math.exp(t - top) for t in ln_taus]
    total = sum(weights)
    ref = top + math.log(total)
    d: dict[int, float] = {}
    for wgt, g in zip(weights, grads, strict=True):
        for i, v in g.items():
            d[i] = d.get(i, 0.0) + wgt / total * v
    return ref, d


def _dp_dtheta(spec: CircuitSpec, theta: np.ndarray, data: _Data) -> np.ndarray:
    """Jacobian of the SI parameters with respect to θ: diagonal (p for log parameters, the
    unit for linear ones) but for τD = τ_ref·e^u, which also depends on the arcs."""
    p = _from_theta(spec, theta, data)
    names = spec.param_names
    jac = np.diag([p[k] if (lin := _linear_scale(k, data)) is None else lin for k in names])
    if spec.diffusion:
        row = names.index("tauD")
        for i, v in _ln_tau_ref(spec, theta)[1].items():
            jac[row, i] = p["tauD"] * v
    return jac


def _bounds(spec: CircuitSpec, data: _Data) -> tuple[np.ndarray, np.ndarray]:
    """Bounds in theta space. R spans from far below to far above the data's |Z| range."""
    absz = np.abs(data.z)
    ln_r = (math.log(absz.min() * 1e-9), math.log(absz.max() * 1e3))
    lo, hi = [], []
    for k in spec.param_names:
        if k == "R0":
            b = (0.0, absz.max() * 1e3 / data.rscale)
        elif k.startswith("R"):
            b = ln_r
        elif k == "L":
            b = (0.0, _L_MAX / data.lscale)
        elif k.startswith("Q"):
            b = _LN_Q_BOUNDS
        elif k == "tauD":
            # u = ln(τD/τ_ref); τ_ref >= _TAU_D_MIN_S/_TAU_D_MIN_RATIO, so this upper end
            # allows τD up to _TAU_D_MAX_OMEGA/ω_min whatever the arcs
            u_max = math.log(_TAU_D_MAX_OMEGA * _TAU_D_MIN_RATIO / (_TAU_D_MIN_S * data.omega[-1]))
            b = (math.log(_TAU_D_MIN_RATIO), max(u_max, math.log(_TAU_D_MIN_RATIO) + 1.0))
        else:
            b = _N_BOUNDS_DL if k == "ndl" else _N_BOUNDS_INT if k == "nint" else _N_BOUNDS_ARC
        lo.append(b[0])
        hi.append(b[1])
    return np.array(lo), np.array(hi)


def _model_and_jacobian(spec: CircuitSpec, theta: np.ndarray, data: _Data) -> tuple[np.ndarray, np.ndarray]:
    """Model impedance and its complex derivatives dZ/dθ_k, shape (N, p)."""
    p = _from_theta(spec, theta, data)
    omega, ln_jw = data.omega, data.ln_jw
    jac = np.empty((omega.size, spec.n_params), dtype=complex)
    z = np.full(omega.shape, p["R0"], dtype=complex)
    jac[:, 0] = data.rscale
    col = 1
    if spec.inductance:
        z += 1j * omega * p["L"]
        jac[:, col] = 1j * omega * data.lscale
        col += 1
    for a in spec.arc_labels:
        r, q, n = p[f"R{a}"], p[f"Q{a}"], p[f"n{a}"]
        rqs = r * q * np.exp(n * ln_jw)
        d = 1.0 + rqs
        z += r / d
        d2 = d * d
        jac[:, col] = r / d2  # d/d ln R
        jac[:, col + 1] = -r * rqs / d2  # d/d ln Q
        jac[:, col + 2] = -r * rqs * ln_jw / d2  # d/d n
        col += 3
    if spec.spike:
        zdl = np.exp(-p["ndl"] * ln_jw) / p["Qdl"]
        z += zdl
        jac[:, col] = -zdl
        jac[:, col + 1] = -zdl * ln_jw
        col += 2
    if spec.diffusion:
        # s = √(jωτ): dZ/d ln RD = Z_D; dZ/d ln τ = (RD/2)·(sech² s − tanh(s)/s), whose two
        # terms cancel for small s, so that limit uses the series −RD·(s²/3 − 4s⁴/15)
        rd = p["RD"]
        s = np.sqrt(1j * omega * p["tauD"])
        ratio = _tanh_ratio(s)
        zd = rd * ratio
        z += zd
        th = ratio * s
        dtau = 0.5 * rd * (1.0 - th * th - ratio)
        small = np.abs(s) < 1e-2
        s2 = s[small] ** 2
        dtau[small] = -rd * (s2 / 3.0 - 4.0 * s2 * s2 / 15.0)
        jac[:, col] = zd
        jac[:, col + 1] = dtau  # d/du
        for i, v in _ln_tau_ref(spec, theta)[1].items():  # τ_ref moves with the arcs
            jac[:, i] += dtau * v
    return z, jac


# --------------------------------------------------------------------------- seeding


def _weighted_rows(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Complex (..., N) -> real (..., 2N): real parts then imaginary parts, times 1/|Z|."""
    return np.concatenate([v.real * w, v.imag * w], axis=-1)


def _profile_minima(profile: np.ndarray, n_best: int) -> list[int]:
    """Indices of the lowest local minima of a 1-D cost profile (distinct basins)."""
    idx = []
    for i in range(profile.size):
        left = profile[i - 1] if i > 0 else np.inf
        right = profile[i + 1] if i + 1 < profile.size else np.inf
        if np.isfinite(profile[i]) and profile[i] <= left and profile[i] <= right:
            idx.append(i)
    idx.sort(key=lambda i: profile[i])
    return idx[:n_best]


def _banked_lstsq(banks: list[np.ndarray], index: list[np.ndarray], b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched weighted least squares where column c of grid point g is row index[c][g] of
    banks[c] (shape (K_c, M)). The normal equations are assembled from the small bank-by-bank
    Gram products, so the (G, M, C) design matrix is never built. Returns coefficients (G, C)
    and residual costs (G,)."""
    n_cols = len(banks)
    grams = {(i, j): banks[i] @ banks[j].T for i in range(n_cols) for j in range(i, n_cols)}
    return _gram_lstsq(grams, [bank @ b for bank in banks], index, float(b @ b))


def _gram_lstsq(
    grams: dict[tuple[int, int], np.ndarray], gbs: list[np.ndarray], index: list[np.ndarray], bb: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_banked_lstsq` from precomputed bank products: ``grams[i, j]`` = banks[i] @
    banks[j].T (i <= j), ``gbs[i]`` = banks[i] @ b, ``bb`` = b @ b (so that solves over
    subsets of the columns reuse them)."""
    n_cols = len(index)
    g = index[0].size
    ata = np.empty((g, n_cols, n_cols))
    atb = np.empty((g, n_cols))
    for i in range(n_cols):
        atb[:, i] = gbs[i][index[i]]
        for j in range(i, n_cols):
            ata[:, i, j] = ata[:, j, i] = grams[i, j][index[i], index[j]]
    scale = np.sqrt(np.einsum("gii->gi", ata)) + 1e-300  # unit-normalised columns
    ata /= scale[:, :, None] * scale[:, None, :]
    atb /= scale
    ata += 1e-10 * np.eye(n_cols)[None]
    coef = np.linalg.solve(ata, atb[..., None])[..., 0]
    cost = bb - np.einsum("gj,gj->g", coef, atb)
    return coef / scale, cost


def _grid_seeds(spec: CircuitSpec, data: _Data, n_best: int = 3) -> list[np.ndarray]:
    """Global starting points by variable projection over (τ_i, n_i, n_dl).

    For fixed time constants and exponents the circuit is linear in (R0, L, R_i, 1/Q_dl), so
    every grid point costs one small weighted linear least-squares solve; all of them are done
    as one batched solve of the normal equations. The seeds are the best points of distinct
    basins along the bulk time constant (local minima of the cost profile over ln τ1): the
    single best grid point is often a low-frequency arc imitating the spike while the true
    high-frequency arc sits in a neighbouring basin.
    """
    if spec.interface or spec.diffusion:
        return _grid_seeds_li(spec, data, n_best)
    ln_jw, w, z = data.ln_jw, data.w, data.z
    n_pts = data.n
    f_lo, f_hi = float(data.freq[-1]), float(data.freq[0])
    ln_tau = np.linspace(
        math.log(1e-3 / (2 * np.pi * f_hi)),
        math.log(3.0 / (2 * np.pi * f_lo)),
        max(8, int(4 * math.log10(3e3 * f_hi / f_lo))),
    )
    n_dl = np.arange(0.40, 1.0001, 0.05) if spec.spike else np.zeros(1)
    n_arc = np.array([0.7, 0.8, 0.9, 1.0])

    def arc_rows(t: np.ndarray, n: np.ndarray) -> np.ndarray:
        return _weighted_rows(1.0 / (1.0 + np.exp(n[:, None] * (ln_jw[None, :] + t[:, None]))), w)

    # grid = outer (arc time constants/exponents) x inner (spike exponent)
    labels: dict[str, np.ndarray] = {}
    arc_banks: list[tuple[np.ndarray, np.ndarray]] = []  # (bank, outer -> bank row)
    if spec.n_arcs == 1:
        t, n = (x.ravel() for x in np.meshgrid(ln_tau, n_arc, indexing="ij"))
        outer = t.size
        arc_banks.append((arc_rows(t, n), np.arange(outer)))
        labels.update(t1=t, n1=n)
    elif spec.n_arcs == 2:
        coarse = ln_tau[::2]
        bank = arc_rows(coarse, np.full(coarse.size, 0.9))
        i1, i2 = np.triu_indices(coarse.size, k=1)
        outer = i1.size
        arc_banks += [(bank, i1), (bank, i2)]
        labels.update(t1=coarse[i1], n1=np.full(outer, 0.9), t2=coarse[i2], n2=np.full(outer, 0.9))
    else:
        outer = 1
    inner = n_dl.size if spec.spike else 1
    o_idx, i_idx = (x.ravel() for x in np.meshgrid(np.arange(outer), np.arange(inner), indexing="ij"))
    zero = np.zeros(o_idx.size, dtype=int)

    banks = [_weighted_rows(np.ones(n_pts, dtype=complex), w)[None, :]]
    index = [zero]
    if spec.inductance:
        banks.append(_weighted_rows(1j * data.omega, w)[None, :])
        index.append(zero)
    for bank, rows in arc_banks:
        banks.append(bank)
        index.append(rows[o_idx])
    if spec.spike:
        banks.append(_weighted_rows(np.exp(-n_dl[:, None] * ln_jw[None, :]), w))
        index.append(i_idx)
    b = _weighted_rows(z, w)
    coef, cost = _banked_lstsq(banks, index, b)
    if spec.inductance:
        # L >= 0: where the free solve wants a negative L (imitating a capacitive tail),
        # use the solve without the L column, i.e. L = 0
        coef0, cost0 = _banked_lstsq(banks[:1] + banks[2:], index[:1] + index[2:], b)
        neg = coef[:, 1] < 0
        coef[neg] = np.insert(coef0[neg], 1, 0.0, axis=1)
        cost[neg] = cost0[neg]

    first_arc = 1 + int(spec.inductance)
    valid = np.all(coef[:, first_arc : first_arc + spec.n_arcs] > 0, axis=1)
    if spec.spike:
        valid &= coef[:, -1] > 0
    cost = np.where(valid, cost, np.inf).reshape(outer, inner)
    best_inner = np.argmin(cost, axis=1)
    best_cost = cost[np.arange(outer), best_inner]
    if spec.n_arcs == 0:
        picks = [0] if np.isfinite(best_cost[0]) else []
    else:
        t1_values = np.unique(labels["t1"])
        pos = np.searchsorted(t1_values, labels["t1"])
        profile = np.full(t1_values.size, np.inf)
        arg = np.zeros(t1_values.size, dtype=int)
        for o in np.argsort(best_cost)[::-1]:  # the lowest cost per tau1 is written last
            profile[pos[o]] = best_cost[o]
            arg[pos[o]] = o
        picks = [int(arg[i]) for i in _profile_minima(profile, n_best)]

    seeds = []
    for o in picks:
        cf = coef[o * inner + int(best_inner[o])]
        params: dict[str, float] = {"R0": max(float(cf[0]), 1e-6 * data.rscale)}  # R0 >= 0
        i = 1
        if spec.inductance:
            params["L"] = max(float(cf[i]), 1e-6 * data.lscale)
            i += 1
        for j in range(1, spec.n_arcs + 1):
            r, n = float(cf[i]), float(labels[f"n{j}"][o])
            params.update({f"R{j}": r, f"Q{j}": math.exp(n * labels[f"t{j}"][o]) / r, f"n{j}": n})
            i += 1
        if spec.spike:
            params["Qdl"] = 1.0 / float(cf[i])
            params["ndl"] = float(n_dl[best_inner[o]])
        seeds.append(_to_theta(spec, params, data))
    return seeds


def _tau_grid(data: _Data) -> np.ndarray:
    """ln τ of the arc grid: from 1e-3/ω_max to 3/ω_min, about 4 points per decade."""
    f_lo, f_hi = float(data.freq[-1]), float(data.freq[0])
    return np.linspace(
        math.log(1e-3 / (2 * np.pi * f_hi)),
        math.log(3.0 / (2 * np.pi * f_lo)),
        max(8, int(4 * math.log10(3e3 * f_hi / f_lo))),
    )


def _grid_seeds_li(
    spec: CircuitSpec,
    data: _Data,
    n_best: int = 3,
    bases: tuple[np.ndarray, ...] = (),
    one_arc_seeds: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Variable-projection seeds for circuits with an interfacial arc and a Warburg.

    One arc (+ Warburg): a grid over the arc's (τ, n) and the Warburg's τD, linear in R0, L,
    the arc resistance and RD (Z_D/RD = tanh(√(jωτD))/√(jωτD) depends on τD alone).
    Seeds: the best point of each of the lowest basins of the cost profile over the arc's τ,
    and of the profile over τD (see the module docstring for why both).

    Two arcs (bulk + interface): a second arc is added to one-arc solutions (the one-arc
    grid seeds and the refined one-arc fits passed as ``bases``, in the one-arc parameter
    layout), with the base's non-linear parameters held and a grid over the new arc's
    (τ, n). Holding what one arc already explains is what finds a second, smaller arc
    anywhere in the band: a joint two-arc grid coarse enough to be cheap lets the pair
    share the dominant arc and leaves the small one to the Warburg. Seeds: the best point
    of each refined base, and the basins of the profile over the new arc's τ across all
    bases. ``one_arc_seeds``: the one-arc grid seeds if already computed.
    """
    if not spec.diffusion or len(spec.arc_labels) not in (1, 2):
        raise ValueError(f"no seeding for circuit {spec.name}")
    if len(spec.arc_labels) == 1:
        return _one_arc_seeds(spec, data, n_best)
    one = replace(spec, n_arcs=0, interface=True)
    if one_arc_seeds is None:
        one_arc_seeds = _one_arc_seeds(one, data, n_best)
    return _add_arc_seeds(spec, one, data, [*bases, *one_arc_seeds], n_best, own_best=len(bases))


def _one_arc_seeds(spec: CircuitSpec, data: _Data, n_best: int) -> list[np.ndarray]:
    """Seeds of R0-[L]-p(R,CPE)-Ws from a grid over (τ, n) x τD."""
    ln_jw, w = data.ln_jw, data.w
    ln_tau = _tau_grid(data)
    t, n = (x.ravel() for x in np.meshgrid(ln_tau, np.array([0.7, 0.8, 0.9, 1.0]), indexing="ij"))
    ln_td = _tau_d_grid(data)
    outer, inner = t.size, ln_td.size
    o_idx, i_idx = (x.ravel() for x in np.meshgrid(np.arange(outer), np.arange(inner), indexing="ij"))
    cols = _li_columns(spec, data, o_idx.size)
    cols.add(_arc_rows(ln_jw, w, t, n), o_idx, positive=True)
    cols.add(_weighted_rows(_tanh_ratio(np.exp(0.5 * (ln_td[:, None] + ln_jw[None, :]))), w), i_idx, nonneg=True)
    coef, cost = cols.solve(_weighted_rows(data.z, w))
    cost[ln_td[i_idx] < t[o_idx] + math.log(_TAU_D_MIN_RATIO)] = np.inf  # diffusion slower than the arc

    cost2 = cost.reshape(outer, inner)
    best_inner = np.argmin(cost2, axis=1)
    picks = [(o, int(best_inner[o])) for o in _profile_picks(t, cost2[np.arange(outer), best_inner], n_best)]
    best_outer = np.argmin(cost2, axis=0)
    td_profile = cost2[best_outer, np.arange(inner)]
    picks += [(int(best_outer[i]), i) for i in _profile_minima(td_profile, n_best)]

    seeds = []
    for o, i in dict.fromkeys(picks):  # distinct, in order
        cf = coef[o * inner + i]
        params = _linear_params(spec, data, cf)
        r = float(cf[-2])
        params.update({"Rint": r, "Qint": math.exp(n[o] * t[o]) / r, "nint": float(n[o])})
        params.update({"RD": max(float(cf[-1]), 1e-6 * data.rscale), "tauD": math.exp(float(ln_td[i]))})
        seeds.append(_to_theta(spec, params, data))
    return seeds


def _add_arc_seeds(
    spec: CircuitSpec, one: CircuitSpec, data: _Data, bases: list[np.ndarray], n_best: int, own_best: int
) -> list[np.ndarray]:
    """Seeds of the two-arc circuit: the arc of each one-arc base held, a new arc on a (τ, n)
    grid and τD on its grid again (a one-arc fit often has its Warburg imitating the arc it
    lacks, so its τD is no guide); the first ``own_best`` bases each contribute their best
    point, the others only through the profiles over the new arc's τ and over τD."""
    ln_jw, w = data.ln_jw, data.w
    bp = [_from_theta(one, b, data) for b in bases]
    arcs = {(round(math.log(q["Rint"] * q["Qint"]) / q["nint"], 6), q["nint"]): None for q in bp}
    if not arcs:
        return []
    old_t, old_n = (np.array(x) for x in zip(*arcs, strict=True))
    n_own = len(dict.fromkeys(list(arcs)[:own_best]))  # distinct arcs among the refined bases
    ln_tau = _tau_grid(data)
    t, n = (x.ravel() for x in np.meshgrid(ln_tau, np.array([0.8, 0.9, 1.0]), indexing="ij"))
    ln_td = _tau_d_grid(data)
    k_idx, o_idx, i_idx = (
        x.ravel() for x in np.meshgrid(np.arange(old_t.size), np.arange(t.size), np.arange(ln_td.size), indexing="ij")
    )
    cols = _li_columns(spec, data, k_idx.size)
    cols.add(_arc_rows(ln_jw, w, t, n), o_idx, positive=True)
    cols.add(_arc_rows(ln_jw, w, old_t, old_n), k_idx, positive=True)
    cols.add(_weighted_rows(_tanh_ratio(np.exp(0.5 * (ln_td[:, None] + ln_jw[None, :]))), w), i_idx, nonneg=True)
    coef, cost = cols.solve(_weighted_rows(data.z, w))
    cost[ln_td[i_idx] < np.maximum(t[o_idx], old_t[k_idx]) + math.log(_TAU_D_MIN_RATIO)] = np.inf

    cost3 = cost.reshape(old_t.size, t.size, ln_td.size)
    flat = cost3.reshape(old_t.size * t.size, ln_td.size)
    best_i = np.argmin(flat, axis=1)
    best_ko = flat[np.arange(flat.shape[0]), best_i].reshape(old_t.size, t.size)
    best_k = np.argmin(best_ko, axis=0)
    picks = [
        (int(best_k[o]), o, int(best_i[best_k[o] * t.size + o]))
        for o in _profile_picks(t, best_ko[best_k, np.arange(t.size)], n_best)
    ]
    td_best = np.argmin(cost3.reshape(-1, ln_td.size), axis=0)
    picks += [
        (int(td_best[i] // t.size), int(td_best[i] % t.size), i)
        for i in _profile_minima(cost3.reshape(-1, ln_td.size)[td_best, np.arange(ln_td.size)], 2)
    ]
    for k in range(n_own):
        o = int(np.argmin(best_ko[k]))
        if np.isfinite(best_ko[k, o]):
            picks.append((k, o, int(best_i[k * t.size + o])))

    seeds = []
    for k, o, i in dict.fromkeys(picks):
        cf = coef[(k * t.size + o) * ln_td.size + i]
        params = _linear_params(spec, data, cf)
        r_new, r_old = float(cf[-3]), float(cf[-2])
        params.update({"R1": r_new, "Q1": math.exp(n[o] * t[o]) / r_new, "n1": float(n[o])})
        params.update({"Rint": r_old, "Qint": math.exp(old_n[k] * old_t[k]) / r_old, "nint": float(old_n[k])})
        params.update({"RD": max(float(cf[-1]), 1e-6 * data.rscale), "tauD": math.exp(float(ln_td[i]))})
        seeds.append(_to_theta(spec, params, data))
    return seeds


def _tau_d_grid(data: _Data) -> np.ndarray:
    """ln τD of the Warburg grid: from its lower bound to 1e3/ω_min, two points per decade
    (beyond 1e3/ω_min the whole band is semi-infinite and only RD/√τD matters)."""
    lo = math.log(_TAU_D_MIN_S)
    return np.arange(lo, max(math.log(1e3 / data.omega[-1]), lo) + 1e-9, math.log(10.0) / 2.0)


def _arc_rows(ln_jw: np.ndarray, w: np.ndarray, t: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Weighted rows of unit-resistance p(R,CPE) arcs with ln τ = t and exponent n."""
    return _weighted_rows(1.0 / (1.0 + np.exp(n[:, None] * (ln_jw[None, :] + t[:, None]))), w)


def _linear_params(spec: CircuitSpec, data: _Data, cf: np.ndarray) -> dict[str, float]:
    """R0 (and L) of a grid solution, floored to stay strictly inside their bounds."""
    params = {"R0": max(float(cf[0]), 1e-6 * data.rscale)}
    if spec.inductance:
        params["L"] = max(float(cf[1]), 1e-6 * data.lscale)
    return params


def _profile_picks(t: np.ndarray, best_cost: np.ndarray, n_best: int) -> list[int]:
    """Grid rows that are the best of the lowest basins of the cost profile over ``t``."""
    t_values = np.unique(t)
    pos = np.searchsorted(t_values, t)
    profile = np.full(t_values.size, np.inf)
    arg = np.zeros(t_values.size, dtype=int)
    for o in np.argsort(best_cost)[::-1]:  # the lowest cost per τ is written last
        profile[pos[o]] = best_cost[o]
        arg[pos[o]] = o
    return [int(arg[i]) for i in _profile_minima(profile, n_best)]


@dataclass
class _Columns:
    """Columns of a batched variable-projection solve: banks of weighted rows, the bank row
    each grid point uses, and sign constraints (arc resistances > 0; L, RD >= 0)."""

    n_points: int
    banks: list[np.ndarray] = field(default_factory=list)
    index: list[np.ndarray] = field(default_factory=list)
    positive: list[int] = field(default_factory=list)
    nonneg: list[int] = field(default_factory=list)

    def add(self, bank: np.ndarray, rows: np.ndarray, *, positive: bool = False, nonneg: bool = False) -> None:
        if positive:
            self.positive.append(len(self.banks))
        if nonneg:
            self.nonneg.append(len(self.banks))
        self.banks.append(bank)
        self.index.append(rows)

    def solve(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (G, C) and costs (G,); infeasible points cost inf. The >= 0 columns
        are exact: a point whose free solution violates one is re-solved on the faces where
        those columns are 0 (only those points), keeping the cheapest feasible solution."""
        n_cols = len(self.banks)
        # the bank products, once for all the column subsets (each is a BLAS call, and on a
        # busy multi-core machine every call costs thread wake-ups)
        all_grams = {(i, j): self.banks[i] @ self.banks[j].T for i in range(n_cols) for j in range(i, n_cols)}
        gbs = [bank @ b for bank in self.banks]
        bb = float(b @ b)
        coef = np.zeros((self.n_points, n_cols))
        cost = np.full(self.n_points, np.inf)
        todo = np.arange(self.n_points)
        for size in range(len(self.nonneg) + 1):
            found = np.zeros(todo.size, dtype=bool)
            for drop in combinations(self.nonneg, size):
                keep = [c for c in range(n_cols) if c not in drop]
                grams = {(a, bi): all_grams[keep[a], keep[bi]] for a in range(len(keep)) for bi in range(a, len(keep))}
                idx = [self.index[c][todo] for c in keep]
                c_sub, k_sub = _gram_lstsq(grams, [gbs[c] for c in keep], idx, bb)
                c_full = np.zeros((todo.size, n_cols))
                c_full[:, keep] = c_sub
                ok = np.all(c_full[:, self.positive] > 0, axis=1) & np.all(c_full[:, self.nonneg] >= 0, axis=1)
                better = ok & (k_sub < cost[todo])
                coef[todo[better]], cost[todo[better]] = c_full[better], k_sub[better]
                found |= ok
            todo = todo[~found]  # a feasible free solution is the constrained optimum
            if todo.size == 0:
                break
        return coef, cost


def _li_columns(spec: CircuitSpec, data: _Data, n_points: int) -> _Columns:
    """The R0 (and L) columns every Li|Li grid starts with."""
    zero = np.zeros(n_points, dtype=int)
    cols = _Columns(n_points)
    cols.add(_weighted_rows(np.ones(data.n, dtype=complex), data.w)[None, :], zero)
    if spec.inductance:
        cols.add(_weighted_rows(1j * data.omega, data.w)[None, :], zero, nonneg=True)
    return cols


# --------------------------------------------------------------------------- one circuit


@dataclass
class _Result:
    spec: CircuitSpec
    theta: np.ndarray
    chi2: float
    jac: np.ndarray  # Jacobian of the real weighted residual vector, (2N, p)
    bic: float


def _fit_one(spec: CircuitSpec, data: _Data, seeds: list[np.ndarray]) -> _Result | None:
    """Refine seeds with TRF: a short polish of each, then full convergence of the best (of
    the best two for the two-arc Li|Li circuit)."""
    lo, hi = _bounds(spec, data)
    w2 = np.concatenate([data.w, data.w])[:, None]
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = theta.tobytes()  # least_squares asks for fun and jac at the same point
        if key not in cache:
            cache.clear()
            zm, j = _model_and_jacobian(spec, theta, data)
            cache[key] = (_weighted_rows(zm - data.z, data.w), np.concatenate([j.real, j.imag]) * w2)
        return cache[key]

    def fun(theta: np.ndarray) -> np.ndarray:
        return evaluate(theta)[0]

    def jac(theta: np.ndarray) -> np.ndarray:
        return evaluate(theta)[1]

    def run(x0: np.ndarray, max_nfev: int) -> Any:
        try:
            return least_squares(
                fun,
                np.clip(x0, lo + 1e-9, hi - 1e-9),
                jac=jac,
                bounds=(lo, hi),
                method="trf",
                x_scale="jac",
                ftol=1e-9,
                xtol=1e-9,
                gtol=1e-9,
                max_nfev=max_nfev,
            )
        except (ValueError, np.linalg.LinAlgError):
            return None

    polished = [s for s in (run(x0, 12) for x0 in seeds) if s is not None and np.isfinite(s.cost)]
    if not polished:
        return None
    ranked = sorted(polished, key=lambda s: s.cost)
    starts = ranked[:1]
    if spec.diffusion and len(spec.arc_labels) == 2:
        # two-arc Li|Li circuits: also converge the best polished seed that is elsewhere: a
        # seed that starts far off (an absurd L from the grid) can trail after 12 evaluations
        # yet lead to the global minimum, while the leader settles in a local one where the
        # Warburg, gone semi-infinite, and the interfacial arc share the low frequencies
        # (elsewhere in the arcs: seeds differing only in a semi-infinite Warburg's τD are
        # one basin)
        arcs = [i for i, k in enumerate(spec.param_names) if k not in ("RD", "tauD")]
        starts += [s for s in ranked[1:] if np.max(np.abs(s.x[arcs] - ranked[0].x[arcs])) > 0.5][:1]
    sol = None
    for start in starts:
        final = run(start.x, 60)
        cand = final if final is not None and final.cost <= start.cost else start
        if sol is None or cand.cost < sol.cost:
            sol = cand
    chi2 = float(2.0 * sol.cost)
    m = 2 * data.n
    bic = m * math.log(max(chi2, 1e-300) / m) + spec.n_params * math.log(m)
    return _canonical(_Result(spec, sol.x, chi2, sol.jac, bic), data)


def _canonical(res: _Result, data: _Data) -> _Result:
    """Order two arcs by falling apex frequency: arc 1 = bulk, arc 2 = grain boundary.

    With an interfacial arc (Li electrodes) the bulk arc is the one with the smaller
    effective capacitance instead: geometric pF–nF against interfacial µF, which stays
    right when a resistive electrolyte's bulk arc peaks below a small interface arc."""
    p = _from_theta(res.spec, res.theta, data)
    if res.spec.interface and res.spec.n_arcs == 0 and _ceff(p, "int") < GEOMETRIC_CAPACITANCE_MAX_F:
        # the only arc of a Li|Li fit is the bulk arc (the interface is too small to see):
        # same parameter vector, named R1/Q1/n1
        return _Result(replace(res.spec, n_arcs=1, interface=False), res.theta, res.chi2, res.jac, res.bic)
    if res.spec.interface and res.spec.n_arcs == 1:
        first, second = "1", "int"
        ordered = _ceff(p, "1") <= _ceff(p, "int")
    elif res.spec.n_arcs == 2:
        first, second = "1", "2"
        ordered = _apex(p, 2) <= _apex(p, 1)
    else:
        return res
    if ordered:
        return res
    names = res.spec.param_names
    perm = list(range(len(names)))
    for k in ("R", "Q", "n"):
        a, b = names.index(f"{k}{first}"), names.index(f"{k}{second}")
        perm[a], perm[b] = b, a
    return _Result(res.spec, res.theta[perm], res.chi2, res.jac[:, perm], res.bic)


def _apex(p: dict[str, float], i: int | str) -> float:
    return arc_apex_frequency(p[f"R{i}"], p[f"Q{i}"], p[f"n{i}"])


def _ceff(p: dict[str, float], i: int | str) -> float:
    return effective_capacitance(p[f"R{i}"], p[f"Q{i}"], p[f"n{i}"])


def _covariance(res: _Result, n_obs: int) -> np.ndarray:
    """s²·(JᵀJ)⁺ via the SVD of the column-normalised J (not of JᵀJ, which squares the
    condition number): directions the data do not determine (an arc above the band) are
    dropped without corrupting well-determined combinations such as R0 + R1."""
    s2 = res.chi2 / max(n_obs - res.spec.n_params, 1)
    norms = np.linalg.norm(res.jac, axis=0)
    norms[norms == 0] = 1.0
    pj = np.linalg.pinv(res.jac / norms, rcond=1e-10)
    return s2 * (pj @ pj.T) / np.outer(norms, norms)


def _stderr(res: _Result, data: _Data) -> tuple[dict[str, float], float]:
    """Standard errors of the SI parameters and of R_total = R0 + Σ R_i (all arcs)."""
    cov = _si_covariance(res, data)
    se = {k: math.sqrt(cov[i, i]) if cov[i, i] >= 0 else math.nan for i, k in enumerate(res.spec.param_names)}
    r_names = ["R0"] + [f"R{a}" for a in res.spec.arc_labels]
    return se, _sum_stderr(res, data, r_names, cov)


def _si_covariance(res: _Result, data: _Data) -> np.ndarray:
    """Covariance of the SI parameters, (dp/dθ)·cov(θ)·(dp/dθ)ᵀ."""
    jac = _dp_dtheta(res.spec, res.theta, data)
    return jac @ _covariance(res, 2 * data.n) @ jac.T


def _sum_stderr(res: _Result, data: _Data, names: list[str], cov: np.ndarray | None = None) -> float:
    """Standard error of the sum of the SI parameters ``names`` (correlations included);
    ``cov``: their SI covariance if already computed."""
    if cov is None:
        cov = _si_covariance(res, data)
    idx = [res.spec.param_names.index(k) for k in names]
    var = float(np.sum(cov[np.ix_(idx, idx)]))
    return math.sqrt(var) if var >= 0 else math.nan


# --------------------------------------------------------------------------- result


@dataclass
class EisFit:
    """Result of :func:`fit_spectrum`. All values SI (Ω, H, F·s^(n−1), Hz).

    ``R_total`` = R0 + Σ R_arcs is the resistance at the low-frequency end of the arc(s),
    where the blocking spike starts (or the DC limit of an R-RC cell). It is determined even
    when the bulk arc lies above the measured band; ``R_bulk_fit`` (= R1) only when
    ``arc_resolved``. The electrolyte's bulk resistance is usually ``R_total − R_leads``, with
    R_leads measured on a shorted cell. ``stderr`` are standard errors from the Jacobian at
    the optimum scaled by the residual variance (NaN where not identifiable).
    ``R_total_stderr`` and ``arc_resolved`` are judged in the same circuit with a free series
    inductance (unless ``inductance=False``), because an unknown L trades off against the
    R0/R1 split of an arc near the top of the band.

    Li|Li circuits (``spec.interface`` / ``spec.diffusion``): ``R_total`` = R0 + R1 + Rint is
    the end of the arcs where the diffusion feature starts, ``R_interface_fit`` = Rint,
    ``R_diffusion_fit`` = RD and ``tau_diffusion`` = τD as fitted (meaningful only when
    ``diffusion_resolved``: RD known to 5 % at 1 sigma, i.e. the Warburg's turnover to the
    real axis is inside the band). ``derived`` holds sums with their correlated standard
    errors: ``R_high_freq`` = R0 + R1 (the high-frequency intercept), ``R_dc`` = R_total + RD,
    the effective capacitances and the interfacial apex frequency.

    ``covariance`` is the parameters' covariance in SI units (order ``spec.param_names``),
    kept so that callers can get the standard error of any sum of parameters
    (:meth:`stderr_of_sum`) with its correlations, e.g. R0 + Rint, which is far better
    determined than R0 and Rint separately when the bulk arc is above the band.
    """

    model: str
    spec: CircuitSpec
    params: dict[str, float]
    stderr: dict[str, float]
    units: dict[str, str]
    R_total: float
    R_total_stderr: float
    R_series: float
    R_bulk_fit: float | None
    R_gb_fit: float | None
    arc_resolved: bool
    apex_frequency: float | None
    chi_square: float
    rel_rms: float
    n_points: int
    bic: float
    f_min: float
    f_max: float
    candidates: dict[str, float] = field(default_factory=dict)
    conventions: dict[str, str] = field(default_factory=dict)
    R_interface_fit: float | None = None
    R_diffusion_fit: float | None = None
    tau_diffusion: float | None = None
    diffusion_resolved: bool | None = None
    derived: dict[str, float] = field(default_factory=dict)
    covariance: np.ndarray | None = field(default=None, repr=False)

    def stderr_of_sum(self, names: list[str] | tuple[str, ...]) -> float:
        """Standard error of the sum of the parameters ``names``, correlations included."""
        if self.covariance is None:
            return math.nan
        idx = [self.spec.param_names.index(k) for k in names]
        var = float(np.sum(self.covariance[np.ix_(idx, idx)]))
        return math.sqrt(var) if var >= 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (NaN becomes None) for a run file's results."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        return {
            k: clean(getattr(self, k))
            for k in (
                "model",
                "params",
                "stderr",
                "units",
                "R_total",
                "R_total_stderr",
                "R_series",
                "R_bulk_fit",
                "R_gb_fit",
                "arc_resolved",
                "apex_frequency",
                "chi_square",
                "rel_rms",
                "n_points",
                "bic",
                "f_min",
                "f_max",
                "candidates",
                "conventions",
                "R_interface_fit",
                "R_diffusion_fit",
                "tau_diffusion",
                "diffusion_resolved",
                "derived",
            )
        }


def model_impedance(fit: EisFit, freq: np.ndarray) -> np.ndarray:
    """Evaluate a fitted circuit at ``freq`` (Hz)."""
    return circuit_impedance(fit.spec, fit.params, freq)


# --------------------------------------------------------------------------- public fit


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

    if circuit == "auto":
        arcs = [1, 2] if n_arcs == "auto" else [int(n_arcs)]
        closes = _returns_to_real_axis(data)
        bases = [CircuitSpec(0, True)]
        for k in arcs:
            bases.append(CircuitSpec(k, True))
            if closes:
                bases.append(CircuitSpec(k, False))
    elif circuit in CIRCUITS:
        bases = [CIRCUITS[circuit]]
    elif circuit in CIRCUIT_FAMILIES:
        bases = [CIRCUITS[name] for name in CIRCUIT_FAMILIES[circuit]]
    else:
        known = sorted(CIRCUITS) + sorted(CIRCUIT_FAMILIES)
        raise ValueError(f"unknown circuit {circuit!r}; use 'auto' or one of {known}")

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
        if (r := _fit_one(spec, data, seeds)) is not None:
            results.append(r)
    if circuit in CIRCUIT_FAMILIES and CIRCUITS[CIRCUIT_FAMILIES[circuit][0]].diffusion:
        results += _without_diffusion(results, data)
    if not results:
        raise RuntimeError("impedance fit failed for every candidate circuit")
    admissible = [r for r in results if _arcs_in_band(r, data)] or results
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


def _summarise(best: _Result, general: _Result, data: _Data, results: list[_Result]) -> EisFit:
    spec = best.spec
    params = _from_theta(spec, best.theta, data)
    stderr, r_total_se = _stderr(best, data)
    g_params = _from_theta(general.spec, general.theta, data)
    g_stderr, g_total_se = _stderr(general, data)
    r_total = params["R0"] + sum(params[f"R{a}"] for a in spec.arc_labels)
    # the high-frequency intercept R0 + electrolyte arcs (= r_total without an interface arc)
    r_hf = params["R0"] + sum(params[f"R{i}"] for i in range(1, spec.n_arcs + 1))

    apex = r_bulk = r_gb = None
    resolved = False
    if spec.n_arcs >= 1:
        apex = _apex(params, 1)
        if "R1" not in g_params:  # a Li|Li refit without L whose single arc turned out geometric
            g_params, g_stderr = params, stderr
        resolved = bool(
            g_stderr["R1"] < _RESOLVED_REL_SE * g_params["R1"]
            and g_stderr["R0"] < _RESOLVED_REL_SE * r_hf
            and apex <= 3.0 * data.freq[0]
        )
        r_bulk = params["R1"] if resolved else None
        r_gb = params["R2"] if spec.n_arcs == 2 else None

    conventions = {
        "circuit": spec.name,
        "cpe": "Z = 1/(Q*(j*omega)^n)",
        "weighting": "modulus: residual = (Z_model - Z_data)/|Z_data|, real and imaginary stacked",
        "parameterisation": "ln R, ln Q; n linear, bounded 0.4..1; L linear, >= 0",
        "optimizer": "scipy.optimize.least_squares (trf, analytic Jacobian), seeded by a variable-projection grid",
        "model_selection": "BIC = 2N ln(chi2/2N) + p ln(2N); arcs must peak inside or above the band",
        "R_total": "R0 + sum of arc resistances (low-frequency end of the arcs)",
        "arc_resolved": "with L free: stderr(R1) < 2.5 % of R1, stderr(R0) < 2.5 % of R_total, "
        "apex frequency <= 3 f_max",
        "sign": "Z = Z' + jZ'', Z'' < 0 for capacitive behaviour",
    }
    extra: dict[str, Any] = {}
    if spec.interface or spec.diffusion:
        extra, li_conventions = _li_li_summary(best, data, params, stderr)
        conventions.update(li_conventions)

    m = 2 * data.n
    return EisFit(
        model=spec.name,
        spec=spec,
        params=params,
        stderr=stderr,
        units={k: _unit(k) for k in spec.param_names},
        R_total=r_total,
        R_total_stderr=max(r_total_se, g_total_se),
        R_series=params["R0"],
        R_bulk_fit=r_bulk,
        R_gb_fit=r_gb,
        arc_resolved=resolved,
        apex_frequency=apex,
        chi_square=best.chi2,
        rel_rms=math.sqrt(best.chi2 / m),
        n_points=data.n,
        bic=best.bic,
        f_min=float(data.freq[-1]),
        f_max=float(data.freq[0]),
        candidates={r.spec.name: r.bic for r in results},
        conventions=conventions,
        covariance=_si_covariance(best, data),
        **extra,
    )


def _li_li_summary(
    res: _Result, data: _Data, params: dict[str, float], stderr: dict[str, float]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The interface/diffusion fields of :class:`EisFit` and the conventions they follow."""
    spec = res.spec
    cov = _si_covariance(res, data)
    bulk = [f"R{i}" for i in range(1, spec.n_arcs + 1)]
    arcs = bulk + (["Rint"] if spec.interface else [])
    derived: dict[str, float] = {
        "R_high_freq": params["R0"] + sum(params[k] for k in bulk),
        "R_high_freq_stderr": _sum_stderr(res, data, ["R0", *bulk], cov),
    }
    if spec.n_arcs >= 1:
        derived["C_eff_bulk"] = _ceff(params, 1)
    out: dict[str, Any] = {"derived": derived}
    if spec.interface:
        out["R_interface_fit"] = params["Rint"]
        derived["C_eff_int"] = _ceff(params, "int")
        derived["apex_frequency_int"] = _apex(params, "int")
    if spec.diffusion:
        r_d, se_d = params["RD"], stderr["RD"]
        out["R_diffusion_fit"] = r_d
        out["tau_diffusion"] = params["tauD"]
        out["diffusion_resolved"] = bool(math.isfinite(se_d) and se_d < _DIFFUSION_REL_SE * r_d)
        derived["R_dc"] = params["R0"] + sum(params[k] for k in arcs) + r_d
        derived["R_dc_stderr"] = _sum_stderr(res, data, ["R0", *arcs, "RD"], cov)
    conventions = {
        "R_total": "R0 + R1 + Rint: the low-frequency end of the arcs, where the diffusion feature starts",
        "parameterisation": "ln R, ln Q, ln RD, ln(tauD/tau_ref); n linear, bounded 0.4..1 (nint 0.6..1); "
        "R0 and L linear, >= 0",
        "warburg": "finite-length, transmissive: Z_D = RD*tanh(sqrt(j*omega*tauD))/sqrt(j*omega*tauD) "
        "[Barsoukov & Macdonald, Impedance Spectroscopy, 2nd ed., 2005]",
        "arc_order": "bulk arc (R1) = the arc with the smaller effective capacitance Q^(1/n)*R^(1/n-1); "
        f"a single arc is the bulk arc (R1) when that capacitance is < {GEOMETRIC_CAPACITANCE_MAX_F:g} F, "
        "else the interfacial arc (Rint)",
        "diffusion_resolved": f"stderr(RD) < {_DIFFUSION_REL_SE:.0%} of RD",
        "arc_resolved": "with L free: stderr(R1) < 2.5 % of R1, stderr(R0) < 2.5 % of R0 + R1, "
        "apex frequency <= 3 f_max",
        "tauD_constraint": f"tauD >= {_TAU_D_MIN_RATIO:g} x the slowest arc's (RQ)^(1/n) and >= "
        f"{_TAU_D_MIN_S:g} s (smooth maximum): the diffusion is the slowest process of the cell",
        "model_selection": "BIC among [L]-R0-[p(R1,CPE1)]-p(Rint,CPEint)-[Ws] (the Warburg-free circuits "
        "refitted only when RD is not determined); arcs must peak inside or above the band",
    }
    return out, conventions
