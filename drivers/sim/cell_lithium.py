"""Li|SE|Li, Li|SE|Cu and Li|SE|SS: a Li counter electrode against Li or a Li-free host."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.sim import impedance as zel
from drivers.sim import lithium, transport
from drivers.sim.cellbase import COMPLIANCE_V, CellModel, CellState
from drivers.sim.lsv import OxidationModel
from drivers.sim.params import SimParams
from drivers.sim.transport import MODES


@dataclass(frozen=True, eq=False)
class LithiumState(CellState):
    modes: np.ndarray = dataclasses.field(default_factory=MODES.zeros)  # A, salt-profile modes
    drift: float = 1.0  # interfacial resistance / its pristine value
    damage: float = 0.0  # dendrite damage (shorts at 1)
    t_short: float | None = None  # absolute time the short formed
    short_j: float = 0.0  # A/cm² when it formed
    inventory: float = 0.0  # C of active Li on the host working electrode
    since_bare: float = 0.0  # C plated since the host was last bare
    dead: float = 0.0  # C of Li lost on the host (1 − CE of every plated coulomb)
    plated: float = 0.0  # C plated onto the host, total
    stripped: float = 0.0  # C of Li stripped from the host, total
    oxidised: float = 0.0  # C passed while the host was Li-free (oxidation)


class LithiumCell(CellModel):
    """A Li counter electrode against a Li (li_li) or a host (li_cu, li_ss) working electrode.

    Terminal voltage = ohmic + Butler–Volmer at both interfaces + salt
    concentration term (+ nucleation on a bare host, + the stripping knee when
    the host runs out of Li), shunted by a shorting path once one has formed.
    Each coulomb plated on a host adds CE to the active inventory (the rest
    becomes dead Li/SEI), each coulomb stripped removes one.
    """

    def __init__(self, p: SimParams, kind: str) -> None:
        super().__init__(p)
        self.kind = kind
        self.host = kind in ("li_cu", "li_ss")
        self.short = lithium.ShortModel(p)
        self.knee = p.knee_charge * 3.6 * p.area  # C
        self.bare_below = lithium.BARE_FRACTION * self.knee
        self._oxidation: dict[float, OxidationModel] = {}

    def initial_state(self, t_abs: float, celsius: float) -> LithiumState:
        return LithiumState(t_abs=t_abs, temp=celsius)

    # --- helpers -------------------------------------------------------------------
    def is_bare(self, s: LithiumState) -> bool:
        return self.host and s.inventory <= self.bare_below

    def oxidation(self, celsius: float) -> OxidationModel:
        """Oxidation model of the bare host, calibrated at this temperature (cached)."""
        key = round(float(celsius), 6)
        model = self._oxidation.get(key)
        if model is None:
            model = OxidationModel.calibrate(self.p, key, self.p.ocv_bare, self.p.q_dl * self.p.area)
            if len(self._oxidation) > 256:
                self._oxidation.clear()
            self._oxidation[key] = model
        return model

    def r_int(self, s: LithiumState, celsius: float | np.ndarray) -> float | np.ndarray:
        """Total interfacial resistance: both Li interfaces, or the Li counter only on a bare host."""
        per_interface = transport.charge_transfer_resistance(self.p, celsius) * s.drift
        return per_interface if self.is_bare(s) else 2.0 * per_interface

    def dc_resistance(self, s: LithiumState, celsius: float | np.ndarray) -> float | np.ndarray:
        p = self.p
        r_ion = transport.ionic_resistance(p, celsius)
        if self.is_bare(s):
            return p.r_series + r_ion + self.r_int(s, celsius)
        return p.r_series + r_ion / p.t_plus + self.r_int(s, celsius)

    def short_onset(self, s: LithiumState, current: float) -> float | None:
        """Absolute time the short forms (already formed, or later at this current)."""
        if s.t_short is not None:
            return s.t_short
        rate = self.short.damage_rate(current)
        if rate <= 0:
            return None
        return s.t_abs + max(1.0 - s.damage, 0.0) / rate

    def short_resistance(self, s: LithiumState, t_abs: np.ndarray, celsius: np.ndarray) -> np.ndarray:
        assert s.t_short is not None
        return self.short.resistance(np.asarray(t_abs) - s.t_short, self.dc_resistance(s, celsius))

    # --- constant current ----------------------------------------------------------
    def cc_voltage(self, s: LithiumState, current: float, dt: np.ndarray, temp: np.ndarray) -> np.ndarray:
        p = self.p
        dt = np.asarray(dt, dtype=float)
        temp = np.broadcast_to(np.asarray(temp, dtype=float), dt.shape)
        r_ohm = p.r_series + transport.ionic_resistance(p, temp)
        j0 = transport.exchange_current(p, temp) / s.drift
        eta_ce = transport.bv_overpotential(current, j0, p.area, temp)
        tau = transport.tau_diffusion(p, s.temp)
        conc = transport.diffusion_resistance(p, temp) * MODES.overpotential_factor(s.modes, current, dt, tau)
        if not self.host:
            e_open = current * r_ohm + 2.0 * eta_ce + conc
        else:
            # Through a short only the Faradaic share of the current plates or strips Li.
            dt_f = self.faradaic_charge(s, current, dt, temp) / current if current != 0.0 else dt
            e_open = self._host_voltage(s, current, dt_f, temp, r_ohm, j0, eta_ce, conc)
        e = self._shunt(s, current, dt, temp, e_open)
        return np.clip(e, -COMPLIANCE_V, COMPLIANCE_V)

    def _host_voltage(
        self,
        s: LithiumState,
        current: float,
        dt: np.ndarray,
        temp: np.ndarray,
        r_ohm: np.ndarray,
        j0: np.ndarray,
        eta_ce: np.ndarray,
        conc: np.ndarray,
    ) -> np.ndarray:
        p = self.p
        bare0 = self.is_bare(s)
        if current == 0.0:
            return np.full(dt.shape, p.ocv_bare) if bare0 else conc
        if current < 0.0:
            q_sb = (0.0 if bare0 else s.since_bare) - current * dt
            eta_we = transport.bv_overpotential(current, j0, p.area, temp)
            nuc = lithium.nucleation_overpotential(q_sb, p)
            return current * r_ohm + eta_we + eta_ce + conc - nuc
        # Stripping: Li while it lasts, then the Li-free host charges up to oxidation.
        drop = current * r_ohm + eta_ce
        inventory = s.inventory - current * dt
        theta = lithium.active_fraction(inventory, self.knee)
        e_li = drop + transport.bv_overpotential(current, j0 * theta, p.area, temp) + conc
        if not (inventory <= 0).any() and not bare0:
            return e_li
        theta_min = lithium.active_fraction(0.0, self.knee)
        e_zero = transport.bv_overpotential(current, j0 * theta_min, p.area, temp)
        start = np.full(dt.shape, p.ocv_bare) if bare0 else e_zero
        q_free = np.maximum(current * dt - max(s.inventory, 0.0), 0.0) + (s.oxidised if bare0 else 0.0)
        e_ox = self.oxidation(s.temp).interface_for_current(current)
        e_host = np.maximum(start, np.minimum(e_ox, start + q_free / (p.q_dl * p.area)))
        if bare0:
            return drop + e_host
        return np.where(inventory <= 0, drop + e_host + conc, e_li)  # continuous at the exhaustion

    def _shunt(
        self, s: LithiumState, current: float, dt: np.ndarray, temp: np.ndarray, e_open: np.ndarray
    ) -> np.ndarray:
        t_on = self.short_onset(s, current)
        if t_on is None:
            return e_open
        t_abs = s.t_abs + dt
        shorted = t_abs >= t_on
        if not shorted.any():
            return e_open
        onset_state = dataclasses.replace(s, t_short=t_on)
        r_sh = self.short_resistance(onset_state, t_abs, temp)
        v = lithium.shunted(e_open, r_sh, self.dc_resistance(s, temp))
        # The short carries V/r_sh of the imposed current, never more than all of it: when the
        # cell itself cannot pass current (a host stripped bare), |V| stays at |I|·r_sh.
        v = np.sign(v) * np.minimum(np.abs(v), abs(current) * r_sh) if current != 0.0 else v
        return np.where(shorted, v, e_open)

    def faradaic_charge(
        self, s: LithiumState, current: float, dt: np.ndarray | float, temp: np.ndarray | float
    ) -> np.ndarray:
        """Charge (C, signed like ``current``) passed through the electrolyte, not the short, by dt.

        The shorting path and the cell share the imposed current as r_sh : R_cell (linear
        divider, R_cell the DC resistance), so after a short only the fraction
        r_sh/(r_sh + R_cell) plates or strips lithium; the rest flows through the filament.
        """
        dt = np.asarray(dt, dtype=float)
        full = current * dt
        t_on = self.short_onset(s, current)
        if current == 0.0 or t_on is None or t_on >= s.t_abs + float(np.max(dt, initial=0.0)):
            return full
        a = max(t_on - s.t_abs, 0.0)
        span = max(float(np.max(dt)) - a, 0.0)
        grid = np.unique(
            np.concatenate((a + np.linspace(0.0, span, 401), a + np.minimum(np.geomspace(1e-3, 600.0, 200), span)))
        )
        celsius = float(np.mean(np.asarray(temp, dtype=float)))
        onset_state = dataclasses.replace(s, t_short=t_on)
        r_sh = self.short_resistance(onset_state, s.t_abs + grid, np.full(grid.shape, celsius))
        frac = r_sh / (r_sh + float(self.dc_resistance(s, celsius)))
        cum = np.concatenate(([0.0], np.cumsum(0.5 * (frac[1:] + frac[:-1]) * np.diff(grid))))
        after = np.interp(np.clip(dt - a, 0.0, span), grid - a, cum)
        return current * (np.minimum(dt, a) + after)

    def cc_advance(self, s: LithiumState, current: float, dt: float, temp_end: float) -> LithiumState:
        p = self.p
        tau = transport.tau_diffusion(p, s.temp)
        changes: dict[str, Any] = {
            "t_abs": s.t_abs + dt,
            "temp": temp_end,
            "modes": MODES.evolve(s.modes, current, dt, tau),
        }
        rate = self.short.damage_rate(current)
        if rate > 0:
            if s.t_short is None and s.damage + rate * dt >= 1.0:
                changes["t_short"] = s.t_abs + max(1.0 - s.damage, 0.0) / rate
                changes["short_j"] = abs(current) / p.area
            changes["damage"] = s.damage + rate * dt
        if self.host and current != 0.0:
            q_f = float(self.faradaic_charge(s, current, np.asarray(dt), temp_end))
            changes.update(self._host_bookkeeping(s, current, q_f / current))
        return dataclasses.replace(s, **changes)

    def _host_bookkeeping(self, s: LithiumState, current: float, dt: float) -> dict[str, float]:
        q = abs(current) * dt
        if current < 0:
            bare0 = self.is_bare(s)
            inventory = max(s.inventory, 0.0) if bare0 else s.inventory
            return {
                "inventory": inventory + self.p.ce * q,
                "dead": s.dead + (1.0 - self.p.ce) * q,
                "plated": s.plated + q,
                "since_bare": (0.0 if bare0 else s.since_bare) + q,
                "oxidised": 0.0,
            }
        take = min(q, max(s.inventory, 0.0))
        inventory = s.inventory - take
        return {
            "inventory": inventory,
            "stripped": s.stripped + take,
            "oxidised": s.oxidised + (q - take),
            "since_bare": 0.0 if inventory <= self.bare_below else s.since_bare,
        }

    # --- impedance -------------------------------------------------------------------
    def impedance(self, s: LithiumState, freq: np.ndarray, celsius: float) -> np.ndarray:
        p = self.p
        w = zel.omega(freq)
        z = zel.bulk_arc(p, celsius, w)
        r_ct = float(transport.charge_transfer_resistance(p, celsius)) * s.drift
        if self.is_bare(s):
            z = z + zel.r_cpe(r_ct, p.q_int * p.area, p.n_int, w) + zel.cpe(p.q_dl * p.area, p.n_dl, w)
        else:
            # Two identical R_ct‖CPE interfaces in series = one with 2R and Q/2.
            z = z + zel.r_cpe(2.0 * r_ct, p.q_int * p.area / 2.0, p.n_int, w)
            tau_w = math.pi**2 / 4.0 * transport.tau_diffusion(p, celsius)
            z = z + zel.finite_length_diffusion(float(transport.diffusion_resistance(p, celsius)), tau_w, w)
        if s.t_short is not None and s.t_abs >= s.t_short:
            r_sh = float(self.short_resistance(s, np.array([s.t_abs]), np.array([celsius]))[0])
            z = z * r_sh / (z + r_sh)
        return zel.series_front(p, w) + z

    def truth(self, s: LithiumState) -> dict[str, Any]:
        p = self.p
        out = super().truth(s)
        out.update(
            r_int=float(self.r_int(s, s.temp)),
            r_ct_interface=float(transport.charge_transfer_resistance(p, s.temp)) * s.drift,
            drift=s.drift,
            tau_diffusion=transport.tau_diffusion(p, s.temp),
            r_diffusion=float(transport.diffusion_resistance(p, s.temp)),
            dc_resistance=float(self.dc_resistance(s, s.temp)),
            damage=s.damage,
            shorted=s.t_short is not None,
            short_t_abs=s.t_short,
            short_current_density_ma_cm2=s.short_j * 1e3,
        )
        if self.host:
            out.update(
                inventory_c=s.inventory,
                dead_c=s.dead,
                plated_c=s.plated,
                stripped_c=s.stripped,
                oxidised_c=s.oxidised,
                bare=self.is_bare(s),
                ce=p.ce,
                nucleation_overpotential=p.nuc_eta,
            )
        return out
