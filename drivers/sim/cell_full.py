"""Li|SE|cathode full cell for galvanostatic cycling (capacity, CE, fade)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.sim import fullcell, transport
from drivers.sim import impedance as zel
from drivers.sim.cellbase import COMPLIANCE_V, CellModel, CellState
from drivers.sim.transport import MODES


@dataclass(frozen=True, eq=False)
class FullState(CellState):
    modes: np.ndarray = dataclasses.field(default_factory=MODES.zeros)
    stored: float = 0.0  # C charged into the cathode (0 = fully lithiated)
    throughput: float = 0.0  # C passed, total
    charged: float = 0.0  # C of charge passed, total
    discharged: float = 0.0  # C of discharge passed, total (drives the fade)


class FullCell(CellModel):
    """Li|SE|cathode: OCV(SOC) + ohmic + Butler–Volmer (anode, cathode) + salt gradient.

    Charging (I > 0) stores ce_full of the charge (the rest feeds side
    reactions), so the coulombic efficiency of a full cycle is ce_full. The
    capacity fades with the charge discharged: each coulomb discharged takes
    ``fade`` coulomb of capacity away, so a cycle that discharges the whole
    present capacity loses the fraction ``fade`` of it (a shallower cycle
    proportionally less), whatever the rate or how much has faded already.
    """

    kind = "full"

    def initial_state(self, t_abs: float, celsius: float) -> FullState:
        return FullState(t_abs=t_abs, temp=celsius, stored=self.p.soc0 * self.p.capacity_c)

    def _stored_and_capacity(self, s: FullState, current: float, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        eff = p.ce_full if current > 0 else 1.0
        stored = s.stored + eff * current * np.asarray(dt)
        discharged = s.discharged + (-current * np.asarray(dt) if current < 0 else 0.0)
        cap = fullcell.capacity(p.capacity_c, discharged, p.fade)
        return stored, cap

    def soc(self, s: FullState) -> float:
        return s.stored / float(fullcell.capacity(self.p.capacity_c, s.discharged, self.p.fade))

    def _coefficients(self, celsius: float) -> tuple[float, float, float, float, float]:
        """(R_ohm, 1/(2·j0·A) Li, 1/(2·j0·A) cathode, R_D, 2RT/F) at one temperature, memoised.

        A potentiostatic hold solves the voltage a dozen times per sample at
        the same temperature; the Arrhenius terms are the same each time.
        """
        cache: dict[float, tuple[float, float, float, float, float]] = self.__dict__.setdefault("_coeff_cache", {})
        hit = cache.get(celsius)
        if hit is None:
            p = self.p
            if len(cache) > 512:
                cache.clear()
            hit = cache[celsius] = (
                float(p.r_series + transport.ionic_resistance(p, celsius)),
                float(0.5 / (transport.exchange_current(p, celsius) * p.area)),
                float(0.5 / (transport.cathode_exchange_current(p, celsius) * p.area)),
                float(transport.diffusion_resistance(p, celsius)),
                float(2.0 * transport.thermal_voltage(celsius)),
            )
        return hit

    def cc_voltage(self, s: FullState, current: float, dt: np.ndarray, temp: np.ndarray) -> np.ndarray:
        p = self.p
        dt = np.asarray(dt, dtype=float)
        if dt.size == 1:  # one trial point (a potentiostatic solve): plain floats, same formulas
            return np.array([self._voltage_at(s, current, float(dt.flat[0]), float(np.asarray(temp).flat[0]))])
        temp = np.broadcast_to(np.asarray(temp, dtype=float), dt.shape)
        stored, cap = self._stored_and_capacity(s, current, dt)
        tau = transport.tau_diffusion(p, s.temp)
        if temp.size and np.all(temp == temp.flat[0]):  # one temperature: memoised coefficients
            r_ohm, k_li, k_cat, r_d, vt2 = self._coefficients(float(temp.flat[0]))
            eta = vt2 * (math.asinh(current * k_li) + math.asinh(current * k_cat))
            ohmic: Any = current * r_ohm + eta
        else:
            r_d = transport.diffusion_resistance(p, temp)
            ohmic = (
                current * (p.r_series + transport.ionic_resistance(p, temp))
                + transport.bv_overpotential(current, transport.exchange_current(p, temp), p.area, temp)
                + transport.bv_overpotential(current, transport.cathode_exchange_current(p, temp), p.area, temp)
            )
        conc = r_d * MODES.overpotential_factor(s.modes, current, dt, tau)
        e = fullcell.ocv(stored / cap, p.cathode) + ohmic + conc
        return np.clip(e, -COMPLIANCE_V, COMPLIANCE_V)

    def _voltage_at(self, s: FullState, current: float, dt: float, celsius: float) -> float:
        p = self.p
        eff = p.ce_full if current > 0 else 1.0
        stored = s.stored + eff * current * dt
        discharged = s.discharged + (-current * dt if current < 0 else 0.0)
        cap = max(p.capacity_c - p.fade * discharged, 1e-3 * p.capacity_c) if p.fade > 0 else p.capacity_c
        r_ohm, k_li, k_cat, r_d, vt2 = self._coefficients(celsius)
        eta = vt2 * (math.asinh(current * k_li) + math.asinh(current * k_cat))
        a, b = self._mode_sums(s, dt)
        conc = r_d * (current * (1.0 - a) + b)  # = R_D · MODES.overpotential_factor(...), linear in I
        e = fullcell.ocv_scalar(stored / cap, p.cathode) + current * r_ohm + eta + conc
        return min(max(e, -COMPLIANCE_V), COMPLIANCE_V)

    def current_for_voltage(
        self, s: FullState, dt: float, celsius: float, e_target: float, guess: float
    ) -> float | None:
        """The constant current over ``dt`` after ``s`` that ends at ``e_target`` (Newton, analytic slope).

        The generic potentiostatic stepper would bracket and bisect ~15 voltage
        evaluations per sample; V(I) here is smooth and increasing, so Newton
        from the last current converges in a few (bisection inside the bracket
        when a steep end of the OCV throws it out). None (the caller falls back
        to bracketing) if the target is at the compliance clamp or Newton stalls.
        """
        r_ohm, k_li, k_cat, r_d, vt2 = self._coefficients(celsius)
        a, _ = self._mode_sums(s, dt)
        current = guess
        lo, hi = -math.inf, math.inf  # bracket: V(lo) < target < V(hi) (V rises with I)
        for _ in range(80):
            f = self._voltage_at(s, current, dt, celsius) - e_target
            if abs(f) > 1.0 and abs(f) >= COMPLIANCE_V - abs(e_target) - 1e-9:
                return None  # at the compliance clamp: let the generic solver decide
            if f == 0.0:
                return current
            if f < 0:
                lo = current
            else:
                hi = current
            slope = self._slope(s, current, dt, r_ohm, k_li, k_cat, r_d * (1.0 - a), vt2)
            new = current - f / slope if slope > 0 else math.nan
            if not lo < new < hi:  # Newton left the bracket (a steep end of the OCV): bisect
                if not (math.isfinite(lo) and math.isfinite(hi)):
                    return None
                new = 0.5 * (lo + hi)
            if abs(new - current) <= 1e-12 * abs(new) + 1e-18:
                return new
            current = new
        return None

    def _slope(
        self,
        s: FullState,
        current: float,
        dt: float,
        r_ohm: float,
        k_li: float,
        k_cat: float,
        r_conc: float,
        vt2: float,
    ) -> float:
        """dV/dI of ``_voltage_at`` (Ω)."""
        p = self.p
        eff = p.ce_full if current > 0 else 1.0
        stored = s.stored + eff * current * dt
        discharged = s.discharged + (-current * dt if current < 0 else 0.0)
        cap_raw = p.capacity_c - p.fade * discharged if p.fade > 0 else p.capacity_c
        floor = 1e-3 * p.capacity_c
        dcap = p.fade * dt if (current < 0 and p.fade > 0 and cap_raw > floor) else 0.0  # d(cap)/dI
        cap = max(cap_raw, floor)
        dx = (eff * dt * cap - stored * dcap) / cap**2
        kinetic = vt2 * (
            k_li / math.sqrt(1.0 + (current * k_li) ** 2) + k_cat / math.sqrt(1.0 + (current * k_cat) ** 2)
        )
        return fullcell.docv_scalar(stored / cap, p.cathode) * dx + r_ohm + kinetic + r_conc

    def _mode_sums(self, s: FullState, dt: float) -> tuple[float, float]:
        """(Σ w·e, Σ w·e·x0) with e = exp(−k²dt/τ): the diffusion term for any current.

        A potentiostatic solve tries many currents over the same interval from
        the same state; the 160-mode sums depend only on (state, dt), so the
        last pair is kept.
        """
        cached = self.__dict__.get("_modes_cache")
        if cached is not None and cached[0] is s and cached[1] == dt:  # the state is held: no id reuse
            return cached[2]
        decay = MODES.decay(dt, transport.tau_diffusion(self.p, s.temp))
        w = MODES.weights
        sums = (float(decay @ w), float(decay @ (w * s.modes)))
        self.__dict__["_modes_cache"] = (s, dt, sums)
        return sums

    def cc_advance(self, s: FullState, current: float, dt: float, temp_end: float) -> FullState:
        stored, _ = self._stored_and_capacity(s, current, np.asarray(dt))
        tau = transport.tau_diffusion(self.p, s.temp)
        q = abs(current) * dt
        return dataclasses.replace(
            s,
            t_abs=s.t_abs + dt,
            temp=temp_end,
            modes=MODES.evolve(s.modes, current, dt, tau),
            stored=float(stored),
            throughput=s.throughput + q,
            charged=s.charged + (q if current > 0 else 0.0),
            discharged=s.discharged + (q if current < 0 else 0.0),
        )

    def impedance(self, s: FullState, freq: np.ndarray, celsius: float) -> np.ndarray:
        p = self.p
        w = zel.omega(freq)
        r_ct_li = float(transport.charge_transfer_resistance(p, celsius))
        r_ct_cat = float(transport.thermal_voltage(celsius) / (transport.cathode_exchange_current(p, celsius) * p.area))
        tau_w = math.pi**2 / 4.0 * transport.tau_diffusion(p, celsius)
        # Intercalation capacitance dQ/dV of the cathode closes the spectrum at low frequency.
        x = self.soc(s)
        dx = 1e-4
        slope = float(fullcell.ocv(x + dx, p.cathode) - fullcell.ocv(x - dx, p.cathode)) / (2 * dx)
        c_int = float(fullcell.capacity(p.capacity_c, s.discharged, p.fade)) / max(slope, 1e-3)
        z = (
            zel.bulk_arc(p, celsius, w)
            + zel.r_cpe(r_ct_li, p.q_int * p.area, p.n_int, w)
            + zel.r_cpe(r_ct_cat, p.q_cathode * p.area, p.n_cathode, w)
            + zel.finite_length_diffusion(float(transport.diffusion_resistance(p, celsius)), tau_w, w)
            + 1.0 / (1j * w * c_int)
        )
        return zel.series_front(p, w) + z

    def dc_resistance(self, s: FullState, celsius: float) -> float:
        p = self.p
        return float(
            p.r_series
            + transport.ionic_resistance(p, celsius) / p.t_plus
            + transport.charge_transfer_resistance(p, celsius)
            + transport.thermal_voltage(celsius) / (transport.cathode_exchange_current(p, celsius) * p.area)
        )

    def truth(self, s: FullState) -> dict[str, Any]:
        out = super().truth(s)
        cap = float(fullcell.capacity(self.p.capacity_c, s.discharged, self.p.fade))
        out.update(
            soc=self.soc(s),
            capacity_c=cap,
            capacity_mah_cm2=cap / 3.6 / self.p.area,
            charged_c=s.charged,
            discharged_c=s.discharged,
            ce_full=self.p.ce_full,
        )
        return out
