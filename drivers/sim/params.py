"""The truth of a simulated cell: every physical parameter, with unit, range and help.

A simulator is only useful for testing analysis if the user can choose the
truth and read it back, so every model constant lives here (nowhere else), is
settable from the command line (``--sim name=value``) and is written into the
run file (``as_dict``). Ranges are checked on construction so a typo fails at
the start of a run, naming the field and what it may be, not hours later.

Conductivity convention: ``sigma`` is the bulk conductivity at 25 °C and its
temperature dependence uses the σ form of the Arrhenius law,
σ(T) = σ25·exp(−Ea/k·(1/T − 1/298.15)), not the σT form (the two differ by ~kT
in the apparent Ea; analysis records which one it fits).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from labctl.numbers import parse_number

#: Cell types the simulator models (SimParams.cell also accepts "auto").
CELL_TYPES: dict[str, str] = {
    "ss": "SS|SE|SS, ion-blocking electrodes (conductivity, Arrhenius)",
    "li_li": "Li|SE|Li symmetric (transference number, CCD, plating/stripping)",
    "li_ss": "Li|SE|SS, SS working electrode (LSV, electrochemical stability window)",
    "li_cu": "Li|SE|Cu, Cu working electrode (Li plating coulombic efficiency)",
    "full": "Li|SE|cathode full cell (galvanostatic cycling)",
    "short": "shorted holder / SS|SS blank: leads only, R_s + jωL (lead calibration)",
}


@dataclass(frozen=True)
class ParamSpec:
    """What a parameter means: shown by the CLI and used for validation."""

    name: str
    unit: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    kind: type = float

    @property
    def allowed(self) -> str:
        """The allowed values, as said in error messages and help."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.kind is int:
            return f"{int(self.low)}..{int(self.high)} (whole number)"
        return f"{self.low:g}..{self.high:g} {self.unit}".rstrip()

    def describe_default(self) -> str:
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


def _p(default: Any, unit: str, low: float, high: float, help: str, kind: type = float) -> Any:
    return field(
        default=default,
        metadata={"spec": dict(unit=unit, low=low, high=high, help=help, kind=kind)},
    )


def _choice(default: str, choices: tuple[str, ...], help: str) -> Any:
    return field(
        default=default,
        metadata={"spec": dict(unit="", choices=choices, help=help, kind=str)},
    )


@dataclass(frozen=True)
class SimParams:
    """The physical truth of the simulated cell (SI-ish lab units, see each field)."""

    # --- the headline truths the analyses recover -------------------------------
    sigma: float = _p(3.3e-4, "S/cm", 1e-9, 1.0, "bulk ionic conductivity at 25 °C (σ-form Arrhenius)")
    ea: float = _p(0.35, "eV", 0.01, 1.5, "activation energy of bulk conduction and salt diffusion")
    thickness: float = _p(100.0, "µm", 1.0, 10000.0, "electrolyte thickness L")
    area: float = _p(1.0, "cm²", 0.01, 100.0, "electrode area A")
    temperature: float = _p(25.0, "°C", -80.0, 300.0, "initial chamber and cell temperature")
    r_series: float = _p(0.25, "Ω", 0.0, 1000.0, "series resistance of leads and contacts R_s")
    seed: int = _p(0, "", 0, 2**32 - 1, "seed of all simulated noise", kind=int)
    t_plus: float = _p(0.4, "", 0.01, 0.99, "Li+ transference number (sets R_D = R_b(1−t+)/t+)")
    esw: float = _p(
        4.5,
        "V",
        3.0,
        7.0,
        "oxidative stability limit: applied E where j = 0.05 mA/cm² at 1 mV/s (above ocv_bare: an electrolyte "
        "oxidised below a bare host's rest potential could not rest there)",
    )
    ccd: float = _p(1.0, "mA/cm²", 0.01, 50.0, "critical current density: shorts form only above it")
    ce: float = _p(0.98, "", 0.5, 1.0, "coulombic efficiency of Li plating on the host (Cu/SS)")
    cell: str = _choice("auto", ("auto", *CELL_TYPES), "cell type; auto = the protocol chooses")

    # --- bulk and blocking-electrode impedance ----------------------------------
    eps_r: float = _p(20.0, "", 1.0, 1e5, "relative permittivity (geometric capacitance ε0·εr·A/L)")
    n_bulk: float = _p(0.95, "", 0.5, 1.0, "CPE exponent of the bulk arc")
    q_dl: float = _p(2e-5, "F·s^(n−1)/cm²", 1e-9, 1e-2, "double-layer CPE of a blocking (SS/Cu) electrode")
    n_dl: float = _p(0.9, "", 0.5, 1.0, "CPE exponent of the blocking double layer")
    inductance: float = _p(1e-7, "H", 0.0, 1e-4, "series inductance of the leads")
    r_gb_ratio: float = _p(0.0, "", 0.0, 100.0, "grain-boundary resistance / bulk resistance (0 = no gb arc)")
    gb_cap_ratio: float = _p(100.0, "", 1.0, 1e6, "grain-boundary / bulk capacitance (sets the gb arc frequency)")
    sigma_e: float = _p(1e-12, "S/cm", 0.0, 1e-6, "electronic conductivity of the electrolyte (leakage)")

    # --- Li|SE interfaces ---------------------------------------------------------
    j0: float = _p(1.0, "mA/cm²", 1e-4, 1e3, "Li|SE exchange current density at 25 °C; R_ct = RT/(F·j0) per interface")
    ea_int: float = _p(0.4, "eV", 0.0, 1.5, "activation energy of the interfacial (charge-transfer) kinetics")
    q_int: float = _p(1e-5, "F·s^(n−1)/cm²", 1e-9, 1e-2, "CPE of a Li|SE interface")
    n_int: float = _p(0.9, "", 0.5, 1.0, "CPE exponent of a Li|SE interface")
    rss_ratio: float = _p(1.5, "", 0.2, 10.0, "R_int after / before a DC polarisation (passivation drift Rss/R0)")
    tau_int_ratio: float = _p(0.5, "", 0.01, 10.0, "time constant of that drift as a fraction of τ_D")
    diffusivity: float = _p(1e-7, "cm²/s", 1e-12, 1e-2, "salt diffusivity D at 25 °C; τ = L²/(π²D)")

    # --- oxidative stability (LSV) ------------------------------------------------
    ocv_bare: float = _p(2.8, "V", 1.5, 3.5, "open-circuit voltage of a Li-free Cu/SS electrode vs Li")
    tafel: float = _p(80.0, "mV/dec", 20.0, 500.0, "Tafel slope of electrolyte oxidation beyond the ESW")
    i_lim_ox: float = _p(1.0, "mA/cm²", 0.1, 1000.0, "limiting current density of electrolyte oxidation")

    # --- Li plating / stripping on a host (Li|Cu, Li|SS) -----------------------
    nuc_eta: float = _p(
        0.05,
        "V",
        0.0,
        0.5,
        "amplitude of the nucleation overpotential at plating onset on a bare host (the observable "
        "dip minus growth plateau, in the nucleation event, is smaller while the salt gradient builds)",
    )
    nuc_charge: float = _p(0.02, "mAh/cm²", 0.001, 0.2, "plated charge over which the nucleation dip decays (1/e)")
    knee_charge: float = _p(0.05, "mAh/cm²", 1e-4, 0.5, "Li left on the host below which stripping loses active area")

    # --- short circuits above the CCD ------------------------------------------
    short_kind: str = _choice(
        "hard", ("hard", "soft"), "short above the CCD: hard (V collapses) or soft (noisy, falling)"
    )
    short_q0: float = _p(0.25, "h", 0.01, 100.0, "q* = short_q0·ccd·(ccd/j)^m: charge that shorts the cell at j > ccd")
    short_m: float = _p(2.0, "", 0.0, 10.0, "exponent m of q*(j)")
    r_short: float = _p(2.0, "Ω", 1e-3, 1e4, "resistance of a formed hard short")

    # --- full cell ------------------------------------------------------------------
    cathode: str = _choice("nmc", ("nmc", "lfp"), "cathode OCV curve: nmc (sloping) or lfp (3.42 V plateau)")
    capacity: float = _p(2.0, "mAh/cm²", 0.01, 50.0, "cathode capacity of a full cell")
    soc0: float = _p(
        0.0, "", 0.0, 0.8, "initial state of charge of a full cell (≤ 0.8: cycling starts with a charge to v_max)"
    )
    fade: float = _p(0.002, "", 0.0, 0.2, "capacity fade per full-depth cycle (capacity lost per charge discharged)")
    ce_full: float = _p(0.998, "", 0.5, 1.0, "coulombic efficiency of full-cell charging")
    r_cathode: float = _p(20.0, "Ω·cm²", 0.01, 1e5, "cathode charge-transfer resistance at 25 °C")
    q_cathode: float = _p(1e-4, "F·s^(n−1)/cm²", 1e-8, 1.0, "CPE of the composite cathode interface")
    n_cathode: float = _p(0.8, "", 0.5, 1.0, "CPE exponent of the cathode interface")

    # --- measurement and environment -----------------------------------------
    noise: float = _p(0.003, "", 0.0, 0.05, "impedance noise, relative to |Z| (rms of the complex error)")
    noise_v: float = _p(2e-5, "V", 0.0, 0.01, "voltage measurement noise (rms)")
    noise_i: float = _p(1e-4, "", 0.0, 0.01, "current measurement noise, relative (rms; floor 100 pA)")
    noise_t: float = _p(0.02, "K", 0.0, 2.0, "temperature reading noise (rms)")
    tau_chamber: float = _p(600.0, "s", 1.0, 1e5, "time constant of the chamber's approach to its set point")
    tau_cell: float = _p(120.0, "s", 0.0, 1e4, "thermal lag of the cell behind the chamber (0 = none)")

    def __post_init__(self) -> None:
        for spec in self.specs():
            value = getattr(self, spec.name)
            if spec.choices is not None:
                if value not in spec.choices:
                    raise ValueError(
                        f"sim parameter {spec.name}={value!r} is not allowed: {spec.allowed} ({spec.help})"
                    )
                continue
            if spec.kind is int and (isinstance(value, bool) or not float(value).is_integer()):
                raise ValueError(f"sim parameter {spec.name}={value!r} must be an integer")
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"sim parameter {spec.name}={value!r} must be a finite number")
            if not spec.low <= value <= spec.high:
                raise ValueError(
                    f"sim parameter {spec.name}={value!r} {spec.unit} is out of range {spec.allowed} ({spec.help})"
                )

        if self.esw < self.ocv_bare + 0.1:
            raise ValueError(
                f"sim parameter esw={self.esw!r} V must be at least 0.1 V above ocv_bare={self.ocv_bare!r} V: "
                "an electrolyte oxidised below the bare host's rest potential could not rest there"
            )

    # --- description ----------------------------------------------------------------
    @classmethod
    def specs(cls) -> list[ParamSpec]:
        """Every parameter with unit, default, range and help, in declaration order."""
        out = []
        for f in dataclasses.fields(cls):
            meta = dict(f.metadata["spec"])
            out.append(ParamSpec(name=f.name, default=f.default, **meta))
        return out

    @classmethod
    def spec(cls, name: str) -> ParamSpec:
        for s in cls.specs():
            if s.name == name:
                return s
        raise KeyError(name)

    @classmethod
    def from_strings(cls, values: dict[str, str], base: SimParams | None = None) -> SimParams:
        """Parse ``--sim name=value`` pairs; ValueError names the field and its range."""
        specs = {s.name: s for s in cls.specs()}
        parsed: dict[str, Any] = {}
        for name, text in values.items():
            key = name.strip()
            if key not in specs:
                raise ValueError(f"unknown sim parameter {key!r}; known: {', '.join(sorted(specs))}")
            spec = specs[key]
            raw = str(text).strip()
            if spec.choices is not None:
                parsed[key] = raw.lower()
                continue
            try:
                number = float(parse_number(raw))
            except ValueError:
                raise ValueError(
                    f"sim parameter {key}={raw!r} is not a number; allowed {spec.allowed} ({spec.help})"
                ) from None
            if spec.kind is int:
                if not number.is_integer():
                    raise ValueError(f"sim parameter {key}={raw!r} must be an integer; allowed {spec.allowed}")
                parsed[key] = int(number)
            else:
                parsed[key] = number
        return dataclasses.replace(base or cls(), **parsed)

    # --- views -----------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """All parameters as plain JSON-friendly values (for the run file)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def cell_info(self, cell_type: str | None = None) -> dict[str, Any]:
        """The geometry protocols may default to: type, area_cm2, thickness_um."""
        info: dict[str, Any] = {
            "type": cell_type or self.cell,
            "area_cm2": self.area,
            "thickness_um": self.thickness,
        }
        if info["type"] == "full":  # what a lab declares for a full cell: 1 C = the true capacity in 1 h
            from drivers.sim.fullcell import cathode_info

            info["cathode"] = cathode_info(self.cathode, self.capacity)
        return info

    # --- unit conversions used by the models --------------------------------
    @property
    def length_cm(self) -> float:
        return self.thickness * 1e-4

    @property
    def ccd_a_cm2(self) -> float:
        return self.ccd * 1e-3

    @property
    def j0_a_cm2(self) -> float:
        return self.j0 * 1e-3

    @property
    def capacity_c(self) -> float:
        """Full-cell capacity in coulombs."""
        return self.capacity * 3.6 * self.area
