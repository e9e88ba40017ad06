"""Bounds and thresholds of the impedance fit, each with the physics that sets it."""

from __future__ import annotations

import math

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

#: A second electrolyte arc counts as identifiable when its R is known to 50 % (1 sigma) and
#: its apex lies within [f_min, 10 f_max]; otherwise the one-arc circuit is chosen whatever
#: the BIC (the extra parameters then fit noise or an instrument artefact, not a process).
_ARC_REL_SE_MAX = 0.5
_APEX_ABOVE_BAND_MAX = 10.0
