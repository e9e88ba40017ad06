"""Every protocol completes, or fails with a physical reason, over the documented range of
every ``--sim`` parameter.

Each parameter is set to the low and the high end of its documented range (``SimParams.specs``,
the table ``labctl sim-params`` prints), all others at their defaults, and the protocols whose
physics read it are run, shortened with -p parameters, on the virtual clock. A run must
complete with results that serialise; where the result cannot be trusted (no onset inside the
sweep, a cell too resistive to plate, a short that makes the CE meaningless) it must say so
with ``valid`` False and a reason, never report a number as if nothing happened.

The bulk parameters change every cell type, so they are run with every protocol; the others
with the protocols of the cell types whose model reads them (keeping the whole file < 40 s).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from drivers.sim.params import SimParams
from labctl.runner import prepare_run

#: Shortened runs (virtual clock): one of each protocol, a few seconds of CPU for all of them.
SHORT: dict[str, tuple[str, dict[str, object]]] = {
    "eis": ("eis", {"f_stop": 100, "points_per_decade": 3, "rest": 1}),
    "arrhenius": ("arrhenius", {"temperatures": "25,60", "settle_time": 0, "f_stop": 100, "points_per_decade": 3}),
    "transference": (
        "transference",
        {"max_time": 0.05, "steady_window": 30, "points_per_decade": 2, "f_stop": 0.3, "rest": 1, "sample_period": 10},
    ),
    "lsv": ("lsv", {"upper": 6, "rate": 10, "resolution": 10, "rest": 1}),
    "ccd": ("ccd", {"start": 0.5, "step": 0.5, "max": 1.5, "half_cycle": 0.05, "sample_period": 2}),
    "li_cu_ce": ("li_cu_ce", {"q_t": 0.05, "q_c": 0.01, "n": 1, "sample_period": 5}),
    "cycling": ("cycling", {"cycles": 1, "half_cycle": 0.05}),
    "cycling_full": ("cycling", {"mode": "full", "cycles": 1}),
}

ALL = tuple(SHORT)
SS = ("eis", "arrhenius")
LI = ("transference", "ccd", "li_cu_ce", "cycling")
HOST = ("lsv", "li_cu_ce")
FULL = ("cycling_full",)
NOT_SWEPT = {"cell"}  # the cell model itself, chosen by each protocol (a mismatch is refused up front)

#: Which protocols read each parameter (every parameter must be listed: see the test below).
RELEVANT: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("sigma", "ea", "thickness", "area", "temperature", "r_series"), ALL),
    "seed": ("eis", "ccd"),
    "t_plus": LI,
    "esw": ("lsv",),
    "ccd": ("ccd", "li_cu_ce", "cycling"),
    "ce": ("li_cu_ce",),
    **dict.fromkeys(("eps_r", "n_bulk", "inductance", "r_gb_ratio", "gb_cap_ratio"), ("eis",)),
    **dict.fromkeys(("q_dl", "n_dl", "sigma_e"), ("eis", *HOST)),
    **dict.fromkeys(("j0", "ea_int"), (*LI, "lsv", "cycling_full")),
    **dict.fromkeys(("q_int", "n_int"), ("transference",)),
    **dict.fromkeys(("rss_ratio", "tau_int_ratio"), ("transference",)),
    "diffusivity": ("transference", "ccd", "li_cu_ce"),
    **dict.fromkeys(("ocv_bare", "tafel", "i_lim_ox"), HOST),
    **dict.fromkeys(("nuc_eta", "nuc_charge", "knee_charge"), ("li_cu_ce",)),
    **dict.fromkeys(("short_kind", "short_q0", "short_m", "r_short"), ("ccd", "li_cu_ce")),
    **dict.fromkeys(("cathode", "capacity", "soc0", "fade", "ce_full", "r_cathode", "q_cathode", "n_cathode"), FULL),
    **dict.fromkeys(("noise", "noise_v", "noise_i"), ("eis", "lsv", "ccd")),
    **dict.fromkeys(("noise_t", "tau_chamber", "tau_cell"), ("arrhenius",)),
}


#: Failures that state a physical reason the measurement cannot be made (protocol messages).
PHYSICAL_FAILURES = {
    # A chamber (tau_chamber 1e5 s) or a cell (tau_cell 1e4 s) too slow to reach a set point
    # within the protocol's timeout: no second temperature, no activation energy.
    "fewer than two temperatures were reached": "arrhenius",
    # Bruce–Vincent–Evans needs Iss·Rss < ΔV; when the interface carries nearly all of ΔV
    # (bulk negligible: sigma 1 S/cm; j0 1e-4 mA/cm²; Rss 10 × R0) the measured Iss·Rss reaches
    # ΔV within its error and t+ is not determinable from this experiment.
    "must be smaller than delta_V": "transference",
}


def _limits() -> list[tuple[str, str]]:
    """(name, value) at both ends of every documented range (both choices of a choice)."""
    out = []
    for spec in SimParams.specs():
        if spec.name in NOT_SWEPT:
            continue
        if spec.choices is not None:
            out += [(spec.name, c) for c in spec.choices]
        elif spec.kind is int:
            out += [(spec.name, str(int(spec.low))), (spec.name, str(int(spec.high)))]
        else:
            out += [(spec.name, repr(float(spec.low))), (spec.name, repr(float(spec.high)))]
    return out


CASES = [(name, value, run) for name, value in _limits() for run in RELEVANT[name]]


def test_every_parameter_is_swept() -> None:
    names = {s.name for s in SimParams.specs()} - NOT_SWEPT
    assert names == set(RELEVANT), names ^ set(RELEVANT)


@pytest.mark.parametrize(("name", "value", "which"), CASES, ids=[f"{n}={v}-{w}" for n, v, w in CASES])
def test_protocol_at_the_limit_of_a_sim_parameter(name: str, value: str, which: str, tmp_path: Path) -> None:
    protocol, params = SHORT[which]
    prepared = prepare_run(protocol, params={k: str(v) for k, v in params.items()}, sim={name: value}, out_dir=tmp_path)
    outcome = prepared.execute()
    if outcome.status.value == "failed" and any(why in str(outcome.error) for why in PHYSICAL_FAILURES):
        return  # refused for a stated physical reason (see PHYSICAL_FAILURES)
    assert outcome.status.value == "completed", f"{protocol} with {name}={value}: {outcome.error}"
    results = json.loads(json.dumps(outcome.results))  # plain JSON
    if results.get("valid") is False:  # an untrustworthy result says why
        why = results.get("reason") or results.get("invalid_reasons")
        assert why, f"{protocol} with {name}={value}: invalid without a reason"
    for key in ("ce_avg", "onset_V", "ccd_mA_cm2", "nucleation_overpotential_mV"):
        v = results.get(key)
        assert v is None or (isinstance(v, (int, float)) and math.isfinite(v)), (key, v)
