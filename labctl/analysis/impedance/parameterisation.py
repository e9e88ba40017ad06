"""A spectrum prepared for fitting, the fitted parameter vector θ (log and linear
parameters, bounds) and the modulus-weighted model with its analytic Jacobian."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labctl.analysis.impedance.circuits import CircuitSpec
from labctl.analysis.impedance.constants import (
    _L_MAX,
    _LN_Q_BOUNDS,
    _N_BOUNDS_ARC,
    _N_BOUNDS_DL,
    _N_BOUNDS_INT,
    _TAU_D_MAX_OMEGA,
    _TAU_D_MIN_RATIO,
    _TAU_D_MIN_S,
)
from labctl.analysis.impedance.elements import _tanh_ratio


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
    if spec.randles:
        # Zr = 1/Y, Y = Qct·s^nct + 1/Zb, Zb = Rct + Zw, Zw = 1/(Qw·s^nw): dZr = −Zr²·dY
        ycpe = p["Qct"] * np.exp(p["nct"] * ln_jw)
        zw = np.exp(-p["nw"] * ln_jw) / p["Qw"]
        zb = p["Rct"] + zw
        zr = 1.0 / (ycpe + 1.0 / zb)
        z += zr
        zr2, g = zr * zr, (zr / zb) ** 2  # dZr/dZb = Zr²/Zb²
        jac[:, col] = g * p["Rct"]  # d/d ln Rct
        jac[:, col + 1] = -zr2 * ycpe  # d/d ln Qct
        jac[:, col + 2] = -zr2 * ycpe * ln_jw  # d/d nct
        jac[:, col + 3] = -g * zw  # d/d ln Qw
        jac[:, col + 4] = -g * zw * ln_jw  # d/d nw
        col += 5
    if spec.leakage:
        # Z = R0 [+ jωL] + Re·Zi/(Re + Zi): the branch's columns scale by Re²/(Re + Zi)²
        first = 1 + int(spec.inductance)
        zi = z - p["R0"] - (1j * omega * p["L"] if spec.inductance else 0.0)
        re = p["Re"]
        den = re + zi
        jac[:, first:-1] *= (re * re / (den * den))[:, None]
        jac[:, -1] = re * zi * zi / (den * den)
        z = z - zi + re * zi / den
    return z, jac
