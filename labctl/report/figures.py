"""The figures of a report, per protocol, looked up by the protocol's name.

Each function takes the RunView and returns ReportFigures; a protocol
without its own function gets :func:`generic_figures` (E–t and I–t of every
step, Nyquist and Bode of any spectra), so a new protocol is reported from
the day it exists. Every figure reads what the run holds and says so on the
axes when something is missing, rather than drawing an empty plot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.ticker import MaxNLocator

from labctl.analysis.arrhenius import K_B_EV, ZERO_CELSIUS_K
from labctl.report.circuit import circuit_text, find_fits, fit_curve
from labctl.report.plotting import (
    ReportFigure,
    bode,
    empty,
    equal_nyquist,
    joined,
    legend,
    new_figure,
    note,
    nyquist,
    plain,
    spectrum_curve,
    time_scale,
    titled,
    zoom_window,
)
from labctl.report.runview import RunView, StepView
from labctl.report.tabulate import result_rows

FigureFunction = Callable[[RunView], list[ReportFigure]]


def figures_for(view: RunView) -> list[ReportFigure]:
    """The protocol's figures (or the generic ones)."""
    return FIGURES.get(view.protocol, generic_figures)(view)


def headline(view: RunView, *names: str) -> list[str]:
    """``name = value ± uncertainty`` lines for the results present among ``names``."""
    rows = {r.name: r for r in result_rows(view.results)}
    out = []
    for name in names:
        r = rows.get(name)
        if r is not None and r.raw is not None:
            out.append(f"{name} = {r.value}" + (f" {r.uncertainty}" if r.uncertainty else ""))
    return out


# -- generic ---------------------------------------------------------------------------


def generic_figures(view: RunView) -> list[ReportFigure]:
    out = []
    if any(len(s.data) for s in view.steps):
        out.append(potential_current_figure(view))
    if view.spectra_steps:
        out += spectra_figures(view, view.spectra_steps, fit=None)
    if not out:
        fig, ax = new_figure()
        empty(ax[0, 0], "this run holds no samples and no spectra yet")
        titled(fig, view, "no data")
        out.append(ReportFigure("no_data", "The run holds no data.", fig))
    return out


def potential_current_figure(view: RunView, steps: list[StepView] | None = None) -> ReportFigure:
    """E–t and I–t of the steps (run time), one colour per step kind."""
    steps = [s for s in (view.steps if steps is None else steps) if len(s.data)]
    fig, axes = new_figure(2, 1, size=(8, 5.5), sharex=True)
    ax_e, ax_i = axes[0, 0], axes[1, 0]
    t_all = np.concatenate([s.data["t"] for s in steps])
    div, unit = time_scale(float(np.nanmax(t_all) - np.nanmin(t_all)) if len(t_all) else 0.0)
    i_div, i_unit = _current_scale(np.concatenate([s.data["I"] for s in steps]))
    kinds = sorted({s.kind for s in steps})
    colors = dict(zip(kinds, colormaps["tab10"].colors, strict=False))
    for kind in kinds:
        t, e = joined([s for s in steps if s.kind == kind], "E")
        _, i = joined([s for s in steps if s.kind == kind], "I")
        ax_e.plot(t / div, e, lw=1, color=colors[kind], label=plain(kind))
        ax_i.plot(t / div, i / i_div, lw=1, color=colors[kind], label=plain(kind))
    ax_e.set_ylabel("E / V")
    ax_i.set_ylabel(f"I / {i_unit}")
    ax_i.set_xlabel(f"t / {unit}")
    for ax in (ax_e, ax_i):
        ax.grid(True, alpha=0.3)
    legend(ax_e, loc="best")
    titled(fig, view, "potential and current vs time")
    return ReportFigure("potential_current", f"E–t and I–t of {len(steps)} steps (run time).", fig)


def _current_scale(i: np.ndarray) -> tuple[float, str]:
    peak = float(np.nanmax(np.abs(i))) if len(i) and np.isfinite(i).any() else 0.0
    if peak >= 0.1:
        return 1.0, "A"
    if peak >= 1e-4:
        return 1e-3, "mA"
    if peak >= 1e-7:
        return 1e-6, "µA"
    return 1e-9, "nA"


def spectra_figures(
    view: RunView,
    steps: list[StepView],
    fit: Mapping[str, Any] | None,
    text: list[str] | None = None,
    r_ref: float | None = None,
) -> list[ReportFigure]:
    """Nyquist (equal aspect, fit curve if given, a high-frequency zoom when the
    electrolyte part is small beside the rest) and Bode of the spectra."""
    curves = [spectrum_curve(s) for s in steps]
    fits: list[tuple[np.ndarray, np.ndarray]] = []
    lines = list(text or [])
    if fit is not None and curves:
        freq = np.concatenate([c[1] for c in curves])
        dense = np.logspace(np.log10(freq.min()), np.log10(freq.max()), 300)
        z_fit = fit_curve(fit, dense)
        if z_fit is not None:
            fits.append((dense, z_fit))
        lines.insert(0, circuit_text(fit))
        if z_fit is None:
            lines.append("(no fit curve: the result holds no evaluable circuit)")
    label = None if fit is None else f"fit {fit.get('circuit')}"
    out = [nyquist_figure(view, curves, _colors(len(curves)), fits, label, r_ref, "Nyquist plot", lines)]
    fig, axes = new_figure(2, 1, size=(7, 5.5), sharex=True)
    bode(axes[0, 0], axes[1, 0], curves)
    for freq, z_fit in fits:
        axes[0, 0].loglog(freq, np.abs(z_fit), "-", color="crimson", lw=1.2, label="fit")
        axes[1, 0].semilogx(freq, np.degrees(np.angle(z_fit)), "-", color="crimson", lw=1.2, label="fit")
    legend(axes[0, 0], loc="best")
    titled(fig, view, "Bode plot")
    out.append(ReportFigure("bode", "Bode plot: |Z| and phase vs frequency.", fig))
    return out


def nyquist_figure(
    view: RunView,
    curves: list[tuple[str, np.ndarray, np.ndarray]],
    colors: list[Any],
    fits: list[tuple[np.ndarray, np.ndarray]],
    fit_label: str | None,
    r_ref: float | None,
    what: str,
    text: list[str],
    name: str = "nyquist",
) -> ReportFigure:
    window = zoom_window(curves, r_ref)
    fig, axes = new_figure(1, 2 if window else 1, size=(12, 5.6) if window else (7, 5.8))
    panels = [(axes[0, 0], None)] + ([(axes[0, 1], window)] if window else [])
    for ax, win in panels:
        nyquist(ax, curves, colors)
        per_spectrum = len(fits) == len(curves) and fit_label is None  # one fit per spectrum, in its colour
        for k, (_freq, z_fit) in enumerate(fits):
            color = colors[k] if per_spectrum else "crimson"
            label = ("fits" if k == 0 else None) if per_spectrum else plain(fit_label or "fit")
            ax.plot(z_fit.real, -z_fit.imag, "-", color=color, lw=1.2, label=label)
        equal_nyquist(ax, win)
    if window:
        axes[0, 0].set_title("whole spectrum", fontsize=9)
        axes[0, 1].set_title("high-frequency zoom (electrolyte)", fontsize=9)
    legend(panels[-1][0], loc="lower right" if window else "upper right", ncol=2 if len(curves) > 6 else 1)
    if text:
        note(panels[-1][0], "\n".join(text), loc="upper left")
    titled(fig, view, what)
    caption = (
        f"{what}: {len(curves)} spectra, Z = Z′ + jZ″ with −Z″ up, equal axes"
        + ("; right: zoom" if window else "")
        + "."
    )
    return ReportFigure(name, caption, fig)


def per_spectrum_fits(
    results: Mapping[str, Any], curves: list[tuple[str, np.ndarray, np.ndarray]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stored fits nested in the results (``circuit`` + ``fit_params``), one per spectrum
    in order, evaluated over each spectrum's band; none unless there is exactly one each."""
    found = [fit for where, fit in find_fits(results) if where]
    if len(found) != len(curves):
        return []
    out = []
    for fit, (_label, freq, _z) in zip(found, curves, strict=True):
        dense = np.logspace(np.log10(freq.min()), np.log10(freq.max()), 200)
        z_fit = fit_curve(fit, dense)
        if z_fit is None:
            return []
        out.append((dense, z_fit))
    return out


def _colors(n: int) -> list[Any]:
    cmap = colormaps["viridis"]
    return [cmap(k / max(n - 1, 1) * 0.9) for k in range(n)]


# -- eis -----------------------------------------------------------------------------


def eis_figures(view: RunView) -> list[ReportFigure]:
    steps = view.spectra_steps
    if not steps:
        return generic_figures(view)
    text = headline(view, "sigma_S_cm", "R_total_ohm", "R_bulk_ohm", "R_gb_ohm")
    fit = view.results if "circuit" in view.results else None
    r_ref = view.results.get("R_total_ohm")
    return spectra_figures(view, steps, fit, text, r_ref if isinstance(r_ref, int | float) else None)


# -- arrhenius -------------------------------------------------------------------------


def arrhenius_figures(view: RunView) -> list[ReportFigure]:
    r = view.results
    rows = [row for row in r.get("table") or [] if isinstance(row, Mapping)]
    fig, axes = new_figure(size=(7, 5))
    ax = axes[0, 0]
    form = str(r.get("form") or "sigma")
    pts = [
        (float(row["T_C"]), float(row["sigma_S_cm"]))
        for row in rows
        if isinstance(row.get("T_C"), int | float)
        and isinstance(row.get("sigma_S_cm"), int | float)
        and row["sigma_S_cm"] > 0
    ]
    if pts:
        t_k = np.array([p[0] for p in pts]) + ZERO_CELSIUS_K
        sigma = np.array([p[1] for p in pts])
        y_label, y = (
            ("ln(σT / (S·K·cm⁻¹))", np.log(sigma * t_k)) if form == "sigmaT" else ("ln(σ / (S·cm⁻¹))", np.log(sigma))
        )
        ax.plot(1000 / t_k, y, "o", label="measured")
        line = _arrhenius_line(r, form, t_k)
        if line is not None:
            ax.plot(1000 / line[0], line[1], "-", color="crimson", label=f"fit ({form} form)")
        ax.set_xlabel("1000 / T / K⁻¹")
        ax.set_ylabel(y_label)
        ax.grid(True, alpha=0.3)
        top = ax.secondary_xaxis("top", functions=(_inverse_k_to_c, _c_to_inverse_k))
        top.set_xlabel("T / °C")
        lines = [*headline(view, "ea_eV", "ea_bulk_eV", "r_squared"), f"form: {form}"]
        note(ax, "\n".join(lines), loc="upper right")
        legend(ax, loc="lower left")
    else:
        empty(ax, "no σ(T) table in the results")
    titled(fig, view, "Arrhenius plot")
    out = [ReportFigure("arrhenius", f"Conductivity vs inverse temperature ({form} form) with the fit.", fig)]
    steps = view.spectra_steps
    if steps:
        r_tot = [row.get("R_total_ohm") for row in rows if isinstance(row.get("R_total_ohm"), int | float)]
        curves = [spectrum_curve(s) for s in steps]
        out.append(
            nyquist_figure(
                view,
                curves,
                _colors(len(steps)),
                per_spectrum_fits(view.results, curves),
                None,
                max(r_tot) if r_tot else None,
                "Nyquist plots per temperature",
                [],
                name="nyquist_per_temperature",
            )
        )
    return out


def _inverse_k_to_c(x: np.ndarray) -> np.ndarray:
    """1000/T (K⁻¹) -> T (°C), for the top axis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1000.0 / np.asarray(x, dtype=float) - ZERO_CELSIUS_K


def _c_to_inverse_k(c: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1000.0 / (np.asarray(c, dtype=float) + ZERO_CELSIUS_K)


def _arrhenius_line(r: Mapping[str, Any], form: str, t_k: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    ea, pref = r.get("ea_eV"), r.get("prefactor")
    if not isinstance(ea, int | float) or not isinstance(pref, int | float) or pref <= 0:
        return None
    t = np.linspace(t_k.min(), t_k.max(), 100)
    ln_y = np.log(pref) - ea / (K_B_EV * t)  # ln σ (sigma form) or ln σT (sigmaT form)
    return (t, ln_y) if form in ("sigma", "sigmaT") else None


# -- transference ------------------------------------------------------------------------


def transference_figures(view: RunView) -> list[ReportFigure]:
    holds = [s for s in view.steps_of("ConstantVoltage") if len(s.data)]
    r = view.results
    fig, axes = new_figure(size=(7.5, 4.8))
    ax = axes[0, 0]
    if holds:
        hold = holds[0]
        t = hold.data["t"] - hold.data["t"][0]
        div, unit = time_scale(float(t[-1]) if len(t) else 0.0)
        i_div, i_unit = _current_scale(hold.data["I"])
        ax.plot(t / div, np.abs(hold.data["I"]) / i_div, lw=1.2, label=plain(f"|I| under {hold.label or 'ΔV'}"))
        for key, style, name in (("I0_A", "--", "I0"), ("Iss_A", ":", "Iss")):
            value = r.get(key)
            if isinstance(value, int | float):
                ax.axhline(
                    abs(value) / i_div,
                    ls=style,
                    color="crimson" if name == "I0" else "k",
                    label=f"{name} = {abs(value) / i_div:.4g} {i_unit}",
                )
        ax.margins(y=0.08)
        ax.set_xlabel(f"t since the start of the hold / {unit}")
        ax.set_ylabel(f"|I| / {i_unit}")
        ax.grid(True, alpha=0.3)
        note(ax, "\n".join(headline(view, "t_plus", "R0_ohm", "Rss_ohm", "I0_convention", "steady")), loc="upper right")
        legend(ax, loc="center right")
    else:
        empty(ax, "no potentiostatic hold recorded")
    titled(fig, view, "DC polarisation")
    out = [ReportFigure("polarisation", "Current during the DC polarisation with I0 and Iss.", fig)]
    spectra = view.spectra_steps
    if spectra:
        curves = [spectrum_curve(s) for s in spectra]
        colors = [f"C{k}" for k in range(len(curves))]
        out.append(
            nyquist_figure(
                view,
                curves,
                colors,
                per_spectrum_fits(view.results, curves),
                None,
                None,
                "EIS before and after the polarisation",
                [],
                name="nyquist_before_after",
            )
        )
    return out


# -- lsv ---------------------------------------------------------------------------------


def lsv_figures(view: RunView) -> list[ReportFigure]:
    sweeps = [s for s in view.steps_of("VoltageSweep") if len(s.data)]
    area = float(view.cell.get("area_cm2") or 1.0)
    r = view.results
    fig, axes = new_figure(2, 1, size=(7.5, 6.5), sharex=True)
    ax_lin, ax_log = axes[0, 0], axes[1, 0]
    if not sweeps:
        empty(ax_lin, "no sweep recorded")
    for s in sweeps:
        j = s.data["I"] / area * 1e3
        ax_lin.plot(s.data["E"], j, lw=1.2, label=plain(s.label or "sweep"))
        ax_log.semilogy(s.data["E"], np.abs(j), lw=1.2, label=plain(s.label or "sweep"))
    onsets = [
        (k, v)
        for k, v in r.items()
        if k.endswith("_V") and k not in ("ocv_V", "E_max_V", "onset_V") and isinstance(v, int | float)
    ]
    styles = ["--", "-.", ":", (0, (5, 1, 1, 1))]
    for n, (key, value) in enumerate(onsets):
        for ax in (ax_lin, ax_log):
            ax.axvline(value, ls=styles[n % len(styles)], color=f"C{n + 1}", label=plain(f"{key[:-2]}: {value:.3f} V"))
    chosen = r.get("onset_V")
    if isinstance(chosen, int | float):
        note(ax_lin, f"onset ({r.get('method')}) = {chosen:.3f} V", loc="upper left")
    thr = r.get("j_threshold_mA_cm2")
    if isinstance(thr, int | float):
        ax_log.axhline(thr, color="0.4", lw=0.8, label=f"threshold {thr:g} mA/cm²")
    ax_lin.set_ylabel("j / (mA·cm⁻²)")
    ax_log.set_ylabel("|j| / (mA·cm⁻²)")
    ax_log.set_xlabel("E / V")
    for ax in (ax_lin, ax_log):
        ax.grid(True, alpha=0.3)
    legend(ax_lin, loc="center left")
    legend(ax_log, loc="upper left")
    titled(fig, view, "linear sweep voltammetry")
    return [ReportFigure("lsv", "Current density vs potential (linear and log) with each onset method marked.", fig)]


# -- galvanostatic: ccd, li_cu_ce, cycling -------------------------------------------------


def _vt_with_current(view: RunView, what: str) -> tuple[Any, Any, Any, float, str]:
    steps = [s for s in view.steps if len(s.data)]
    fig, axes = new_figure(2, 1, size=(8.5, 6), sharex=True, height_ratios=[3, 1])
    ax_v, ax_j = axes[0, 0], axes[1, 0]
    t_all = np.concatenate([s.data["t"] for s in steps]) if steps else np.zeros(1)
    div, unit = time_scale(float(np.nanmax(t_all) - np.nanmin(t_all)))
    area = float(view.cell.get("area_cm2") or 1.0)
    t, v = joined(steps, "E")
    _, i = joined(steps, "I")
    ax_v.plot(t / div, v, lw=0.8, color="tab:blue", label="cell voltage")
    ax_j.plot(t / div, i / area * 1e3, lw=1.0, color="tab:green", label="current density")
    ax_v.set_ylabel("E / V")
    ax_j.set_ylabel("j / (mA·cm⁻²)")
    ax_j.set_xlabel(f"t / {unit}")
    for ax in (ax_v, ax_j):
        ax.grid(True, alpha=0.3)
    titled(fig, view, what)
    return fig, ax_v, ax_j, div, unit


def ccd_figures(view: RunView) -> list[ReportFigure]:
    if not any(len(s.data) for s in view.steps):
        return generic_figures(view)
    fig, ax_v, ax_j, div, _ = _vt_with_current(view, "critical current density")
    r = view.results
    by_index = {s.index: s for s in view.steps}
    for key, color, name in (
        ("failure_index", "crimson", "failing step"),
        ("contact_loss_index", "orange", "contact loss"),
    ):
        idx = r.get(key)
        step = by_index.get(idx) if isinstance(idx, int) else None
        if step is not None and len(step.data):
            t0, t1 = step.data["t"][0] / div, step.data["t"][-1] / div
            for ax in (ax_v, ax_j):
                ax.axvspan(
                    t0,
                    t1,
                    color=color,
                    alpha=0.2,
                    label=plain(f"{name}: step {idx} ({step.label})") if ax is ax_v else None,
                )
    lines = headline(view, "ccd_mA_cm2", "last_passed_mA_cm2", "failure_kind", "failure")
    note(ax_v, "\n".join(lines) or "no failure found", loc="upper left")
    legend(ax_v, loc="lower left")
    return [ReportFigure("ccd", "Voltage and current density vs time; the failing half-cycle shaded.", fig)]


def li_cu_ce_figures(view: RunView) -> list[ReportFigure]:
    if not any(len(s.data) for s in view.steps):
        return generic_figures(view)
    fig, ax_v, _ax_j, div, _ = _vt_with_current(view, "Li‖Cu Coulombic efficiency")
    cycle_steps = [s for s in view.steps if s.label.startswith("cycle") and len(s.data)]
    shown = {s.label.split()[1] for s in cycle_steps}
    every = max(1, len(shown) // 10)
    for s in cycle_steps:
        number = s.label.split()[1]
        if "strip" in s.label and number.isdigit() and int(number) % every == 0:
            ax_v.axvline(s.data["t"][0] / div, color="0.7", lw=0.6)
            ax_v.annotate(
                number,
                (s.data["t"][0] / div, 0.985),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                ha="left",
                va="top",
                color="0.3",
            )
    r = view.results
    lines = headline(
        view, "ce_avg", "Q_t_mAh_cm2", "Q_c_mAh_cm2", "Q_s_mAh_cm2", "n_cycles", "nucleation_overpotential_mV"
    )
    if r.get("valid") is False:
        lines.append("INVALID: " + "; ".join(str(x) for x in r.get("invalid_reasons") or [])[:150])
    note(ax_v, "\n".join(lines), loc="upper left")
    legend(ax_v, loc="center left")
    out = [ReportFigure("li_cu_ce", "Voltage vs time: precondition, reservoir, n cycles (numbered), final strip.", fig)]
    nuc = r.get("nucleation")
    # The nucleation dip is measured on the first plating onto bare Cu.
    plating = next((s for s in view.steps if "plate" in s.label and len(s.data) > 2), None)
    if isinstance(nuc, Mapping) and plating is not None:
        fig, axes = new_figure(size=(7, 4.5))
        ax = axes[0, 0]
        t = plating.data["t"] - plating.data["t"][0]
        ax.plot(t / 60, plating.data["E"] * 1e3, lw=1, label=plain(plating.label))
        for key, style, name in (("dip_V", "--", "nucleation dip"), ("plateau_V", ":", "growth plateau")):
            if isinstance(nuc.get(key), int | float):
                ax.axhline(nuc[key] * 1e3, ls=style, color="crimson", label=f"{name} {nuc[key] * 1e3:.1f} mV")
        ax.set_xlim(-0.01 * t[-1] / 60, 0.25 * t[-1] / 60)
        ax.set_xlabel("t since plating start / min (first quarter of the step)")
        ax.set_ylabel("E / mV")
        ax.grid(True, alpha=0.3)
        legend(ax, loc="lower right")
        titled(fig, view, "nucleation overpotential")
        out.append(ReportFigure("nucleation", "Plating onset on Cu: nucleation dip and growth plateau.", fig))
    return out


def cycling_figures(view: RunView) -> list[ReportFigure]:
    out = [per_cycle_figure(view)]
    if any(len(s.data) for s in view.steps):
        fig, ax_v, _ax_j, _div, _ = _vt_with_current(view, "cycling: voltage vs time")
        legend(ax_v, loc="best")
        out.append(ReportFigure("voltage_time", "Voltage and current density vs time.", fig))
    return out


_CYCLE_ORDER = ("capacity", "coulombic", "ce", "retention", "overpotential", "hysteresis", "energy", "mean")


def per_cycle_figure(view: RunView) -> ReportFigure:
    """Every per-cycle series of the results (numeric lists), one panel each."""
    series: dict[str, list[float]] = {}
    for key, value in view.results.items():
        numeric = isinstance(value, list) and value and all(isinstance(v, int | float) or v is None for v in value)
        if numeric and any(v is not None for v in value) and not isinstance(value[0], bool):
            series[key] = [np.nan if v is None else float(v) for v in value]
    cycles = view.results.get("cycles")
    if isinstance(cycles, list) and cycles and all(isinstance(c, Mapping) for c in cycles):
        for key in cycles[0]:
            values = [c.get(key) for c in cycles]
            if (
                key not in series
                and key != "cycle"
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            ):
                series[key] = [float(v) for v in values]  # type: ignore[arg-type]
    table = view.results.get("table")
    x_cycles: list[float] | None = None
    if isinstance(table, Mapping) and isinstance(table.get("cycle"), list) and table["cycle"]:
        # a full cell's per-cycle table (formation, rate capability, long cycling): the columns a
        # paper plots against the cycle number
        x_cycles = [float(c) for c in table["cycle"]]
        for key in _FULL_CELL_COLUMNS:
            values = table.get(key)
            if isinstance(values, list) and len(values) == len(x_cycles):
                numeric = [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
                           for v in values]  # fmt: skip
                if any(np.isfinite(numeric)):
                    series[key] = numeric
    # A plain-mAh series duplicates its per-area (or per-mass) twin.
    for key in [k for k in series if k.endswith("_mAh")]:
        if f"{key}_cm2" in series or f"{key}_g" in series:
            del series[key]
    groups: dict[str, list[str]] = {}
    def order(key: str) -> tuple[int, int]:
        if key in _FULL_CELL_COLUMNS:
            return (0, _FULL_CELL_COLUMNS.index(key))
        return (1, next((n for n, w in enumerate(_CYCLE_ORDER) if w in key.lower()), 99))

    for key in sorted(series, key=order):
        unit = next((u for suffix, u in _UNITS.items() if key.endswith(suffix)), key)
        groups.setdefault(unit, []).append(key)
    panels = list(groups.items())[:5]
    n = max(len(panels), 1)
    fig, axes = new_figure(n, 1, size=(7.5, 1.9 * n + 1.3), sharex=True)
    if not panels:
        empty(axes[0, 0], "no per-cycle results")
    for ax, (unit, keys) in zip(axes[:, 0], panels, strict=False):
        for key in keys:
            y = np.array(series[key])
            x = np.array(x_cycles) if x_cycles is not None and len(x_cycles) == len(y) else np.arange(1, len(y) + 1)
            ax.plot(x, y, "o-", ms=4, lw=1, label=plain(key))
        many = f"{_QUANTITY.get(unit, 'value')} / {unit}"
        ax.set_ylabel(plain(_label_with_unit(keys[0]) if len(keys) == 1 else many), fontsize=8)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(True, alpha=0.3)
        legend(ax, loc="best")
    if panels:
        axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("cycle number (half-cycle number for per-half-cycle series)")
    titled(fig, view, "per-cycle results")
    shown = ", ".join(k for _, keys in panels for k in keys) or "none"
    return ReportFigure("per_cycle", f"Per-cycle results: {shown}.", fig)


_QUANTITY = {
    "Wh/kg": "specific energy",
    "V": "voltage",
    "mV": "voltage",
    "mAh/cm²": "capacity",
    "mAh/g": "specific capacity",
    "mAh": "capacity",
}
_FULL_CELL_COLUMNS = (
    "charge_mAh_g",
    "discharge_mAh_g",
    "coulombic_efficiency",
    "retention",
    "mean_charge_V",
    "mean_discharge_V",
    "discharge_energy_Wh_kg",
)  # in the order a paper shows them (the gap is visible between the mean voltages)
_UNITS = {
    "_Wh_kg": "Wh/kg",
    "_mAh_cm2": "mAh/cm²",
    "_mAh_g": "mAh/g",
    "_mAh": "mAh",
    "_V": "V",
    "_mV": "mV",
    "_Wh": "Wh",
    "_ohm": "Ω",
}


def _label_with_unit(key: str) -> str:
    for suffix, unit in _UNITS.items():
        if key.endswith(suffix):
            return f"{key[: -len(suffix)]} / {unit}"
    return key if key not in ("coulombic_efficiency", "retention") else f"{key} / 1"


FIGURES: dict[str, FigureFunction] = {
    "eis": eis_figures,
    "leads": eis_figures,
    "arrhenius": arrhenius_figures,
    "transference": transference_figures,
    "lsv": lsv_figures,
    "ccd": ccd_figures,
    "li_cu_ce": li_cu_ce_figures,
    "cycling": cycling_figures,
    "formation": cycling_figures,
    "rate_capability": cycling_figures,
    "long_cycling": cycling_figures,
}
