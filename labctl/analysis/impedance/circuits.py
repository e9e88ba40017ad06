"""The equivalent circuits (a series chain described by :class:`CircuitSpec`) and their impedance."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from labctl.analysis.impedance.elements import cpe_impedance, finite_warburg_impedance, rq_impedance


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
    #: electronic leakage: a resistor Re across the blocking branch (arcs + CPEdl), so that
    #: R0-p(Re, arcs-CPEdl); the spectrum then returns to the real axis at R0 + Re.
    leakage: bool = False
    #: Randles electrode: R0-p(CPEct, Rct-CPEw), a faradaic charge-transfer resistance and
    #: its diffusion (a CPE, n ~ 0.5 for a Warburg) in parallel with the double layer; the
    #: electrolyte arc is above the band, so R0 is the solution (electrolyte) resistance.
    randles: bool = False

    def __post_init__(self) -> None:
        if self.n_arcs not in (0, 1, 2):
            raise ValueError(f"n_arcs must be 0, 1 or 2, not {self.n_arcs}")
        if self.diffusion and self.spike:
            raise ValueError("a circuit has either a blocking spike (CPEdl) or a diffusion element, not both")
        if self.randles and (self.n_arcs or self.spike or self.interface or self.diffusion or self.leakage):
            raise ValueError("the Randles circuit is R0-p(CPEct,Rct-CPEw) alone")
        if self.leakage and not (self.spike and not self.interface):
            raise ValueError("electronic leakage is modelled across a blocking branch (spike, no interface)")

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
        if self.randles:
            parts.append("p(CPEct,Rct-CPEw)")
        if self.leakage:
            head = parts.index("R0") + 1
            return "-".join(parts[:head]) + f"-p(Re,{'-'.join(parts[head:])})"
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
        if self.leakage:
            names += ["Re"]
        if self.randles:
            names += ["Rct", "Qct", "nct", "Qw", "nw"]
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
    # electronic leakage Re across the blocking branch. Not among "auto"'s candidates: for
    # ideal elements it is the same function of frequency as R0-p(R1)-p(R2) (a ladder and
    # a Voigt chain are interchangeable), so the spectrum cannot tell leakage from a
    # faradaic electrode arc; only the cell (blocking or not, DC polarisation) can
    "leakage": CircuitSpec(n_arcs=1, spike=True, leakage=True),
    "randles": CircuitSpec(n_arcs=0, spike=False, randles=True),
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
    z = np.zeros(freq.shape, dtype=complex)
    for a in spec.arc_labels:
        z = z + rq_impedance(freq, params[f"R{a}"], params[f"Q{a}"], params[f"n{a}"])
    if spec.spike:
        z = z + cpe_impedance(freq, params["Qdl"], params["ndl"])
    if spec.diffusion:
        z = z + finite_warburg_impedance(freq, params["RD"], params["tauD"])
    if spec.randles:
        branch = params["Rct"] + cpe_impedance(freq, params["Qw"], params["nw"])
        z = z + 1.0 / (1.0 / cpe_impedance(freq, params["Qct"], params["nct"]) + 1.0 / branch)
    if spec.leakage:
        z = params["Re"] * z / (params["Re"] + z)
    z = z + params["R0"]
    if spec.inductance:
        z = z + 2j * np.pi * freq * params["L"]
    return z
