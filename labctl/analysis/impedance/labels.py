"""What each fitted arc is, judged from its effective capacitance and the cell geometry.

Irvine, Sinclair & West (Adv. Mater. 2 (1990) 132) assign arcs by capacitance: a bulk
(geometric) arc has C = ε0·εr·A/L, i.e. C·L/A of order pF/cm with a plausible εr; a grain
boundary ~nF; a surface layer or an electrode (double layer, charge transfer) 0.1–10 µF/cm².
The effective capacitance of a p(R,CPE) arc is Brug's C = Q^(1/n)·R^(1/n−1) (Brug et al.,
J. Electroanal. Chem. 176 (1984) 275; Hsu & Mansfeld, Corrosion 57 (2001) 747 give the same
for an arc through its apex frequency). An electrode arc is never counted as electrolyte.
"""

from __future__ import annotations

from dataclasses import dataclass

from labctl.analysis.impedance.elements import effective_capacitance

EPS0_F_PER_CM = 8.8541878128e-14
#: εr of a bulk (geometric) arc: 1 (vacuum) to 1000 (the most polar solid electrolytes and
#: ferroelectric-like oxides reach a few hundred).
EPS_R_BULK = (1.0, 1000.0)
#: Capacitance per area above which an arc is an electrode process (double layer, charge
#: transfer): 1 µF/cm²; grain boundaries of fine-grained pellets reach 0.1 µF/cm² (Irvine et al.).
ELECTRODE_C_PER_AREA_F_CM2 = 1e-6

BULK, GRAIN_BOUNDARY, ELECTRODE, UNASSIGNED = "bulk", "grain boundary", "electrode", "electrolyte (unassigned)"


@dataclass(frozen=True)
class ArcLabel:
    """One arc: its parameter suffix, effective capacitance, εr it implies and the label."""

    arc: str
    label: str
    c_eff_F: float
    eps_r: float
    c_per_area_F_cm2: float

    @property
    def electrolyte(self) -> bool:
        return self.label != ELECTRODE


def label_arc(arc: str, r: float, q: float, n: float, thickness_um: float, area_cm2: float) -> ArcLabel:
    """Label one p(R,CPE) arc of a cell of thickness ``thickness_um`` and area ``area_cm2``."""
    c = effective_capacitance(r, q, n)
    eps_r = c * (thickness_um * 1e-4) / (EPS0_F_PER_CM * area_cm2)
    per_area = c / area_cm2
    if per_area >= ELECTRODE_C_PER_AREA_F_CM2:
        label = ELECTRODE
    elif EPS_R_BULK[0] <= eps_r <= EPS_R_BULK[1]:
        label = BULK
    elif eps_r > EPS_R_BULK[1]:
        label = GRAIN_BOUNDARY
    else:
        label = UNASSIGNED
    return ArcLabel(arc, label, c, eps_r, per_area)
