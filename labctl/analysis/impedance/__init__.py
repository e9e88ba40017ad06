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

- **Identifiability before BIC** (issue 9): a two-arc candidate is admissible only when both
  arcs' R are known to 50 % from the fit covariance and both apexes lie in [f_min, 10 f_max]
  (a dummy cell's inductive tail is not a bulk arc); two-arc fits are also seeded from the
  refined one-arc fits with a fine grid for the missing arc (an in-band grain boundary). A
  faradaic electrode is fitted as Randles R0-p(CPEct,Rct-CPEw) when its arc is interfacial;
  ``leakage`` (R0-p(Re, arcs-CPEdl)) is available by name. Labels (bulk / grain boundary /
  electrode) need the geometry and are given by ``labels.label_arc`` in the conductivity
  layer.

One job per module: ``elements`` (CPE, arc, Warburg), ``circuits`` (:class:`CircuitSpec`
and the named circuits), ``constants`` (bounds and thresholds with their reasons),
``parameterisation`` (the prepared spectrum, θ, bounds, weighted model and Jacobian),
``labels`` (what an arc is, from C_eff and the geometry),
``seeding`` (variable-projection grids), ``fitting`` (one circuit from its seeds, standard
errors), ``model_choice`` (the candidates and BIC: :func:`fit_spectrum`) and ``results``
(:class:`EisFit` and its summary). The underscored names are internal to the package; the
public ones are imported here, so ``from labctl.analysis.impedance import ...`` is unchanged.

Pure numpy/scipy: no file or instrument access here (DESIGN §1).
"""

from __future__ import annotations

from labctl.analysis.impedance.circuits import CIRCUIT_FAMILIES, CIRCUITS, CircuitSpec, circuit_impedance
from labctl.analysis.impedance.constants import GEOMETRIC_CAPACITANCE_MAX_F
from labctl.analysis.impedance.elements import (
    arc_apex_frequency,
    cpe_impedance,
    effective_capacitance,
    finite_warburg_impedance,
    rq_impedance,
)
from labctl.analysis.impedance.model_choice import fit_spectrum
from labctl.analysis.impedance.results import EisFit, model_impedance

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
