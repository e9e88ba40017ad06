"""Drawing helpers shared by the per-protocol figures.

Figures are ``matplotlib.figure.Figure`` objects on the Agg canvas, made
without pyplot: no GUI backend is ever touched (a report runs on a headless
lab PC, inside a queue worker, or in a test) and nothing global is kept.
Conventions every figure follows: axes carry units, a curve per thing with a
legend, Nyquist plots have equal aspect (a semicircle must look like one),
titles name the cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labctl.report.runview import RunView, StepView

NYQUIST_X = "Z′ / Ω"
NYQUIST_Y = "−Z″ / Ω"
#: Legends with more entries than this are left out (the colour bar or the text says it).
MAX_LEGEND = 14


@dataclass(frozen=True)
class ReportFigure:
    """One figure of a report: a file-safe ``name``, a caption, the figure."""

    name: str
    caption: str
    figure: Figure


def new_figure(
    nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (7.5, 4.8), **kw: object
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def plain(text: object) -> str:
    """Text from the run file shown literally (no mathtext: a "$" stays a "$")."""
    return str(text).replace("$", r"\$")


def titled(fig: Figure, view: RunView, what: str) -> None:
    fig.suptitle(plain(f"{what} — cell {view.cell_id} ({view.protocol}, {view.status})"), fontsize=11)


def time_scale(span_s: float) -> tuple[float, str]:
    """Divisor and unit for a time axis spanning ``span_s`` seconds."""
    if span_s > 3 * 3600:
        return 3600.0, "h"
    if span_s > 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def joined(steps: Sequence[StepView], field: str) -> tuple[np.ndarray, np.ndarray]:
    """Run time and ``field`` of several steps, NaN-separated so steps do not join."""
    ts: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for s in steps:
        if not len(s.data):
            continue
        ts += [s.data["t"], np.array([np.nan])]
        ys += [s.data[field], np.array([np.nan])]
    if not ts:
        return np.empty(0), np.empty(0)
    return np.concatenate(ts), np.concatenate(ys)


def nyquist(
    ax: Axes, curves: Sequence[tuple[str, np.ndarray, np.ndarray]], colors: Sequence[object] | None = None
) -> None:
    """Plot measured spectra (label, freq, Z) as Z' vs −Z'' with equal aspect."""
    for k, (label, _freq, z) in enumerate(curves):
        color = None if colors is None else colors[k]
        ax.plot(z.real, -z.imag, "o", ms=3, label=label, color=color, alpha=0.85)
    equal_nyquist(ax)


def equal_nyquist(ax: Axes, window: tuple[float, float, float, float] | None = None) -> None:
    """Equal aspect on a square window: ``window`` (x0, x1, y0, y1) or the data's own."""
    ax.set_xlabel(NYQUIST_X)
    ax.set_ylabel(NYQUIST_Y)
    if window is None:
        xs, ys = _line_data(ax)
        if len(xs):
            window = (min(0.0, float(xs.min())), float(xs.max()), min(0.0, float(ys.min())), float(ys.max()))
    if window is not None:
        # Equal scales; the box takes the data's shape, but no thinner than 2:5 either way.
        x0, x1, y0, y1 = window
        w, h = max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)
        w, h = max(w, 0.4 * h), max(h, 0.4 * w)
        pad = 0.04 * max(w, h)
        ax.set_xlim(x0 - pad, x0 + w + pad)
        ax.set_ylim(y0 - pad, y0 + h + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(True, alpha=0.3)
    ax.axhline(0.0, color="0.6", lw=0.6)


def _line_data(ax: Axes) -> tuple[np.ndarray, np.ndarray]:
    xs = [np.asarray(line.get_xdata(), dtype=float) for line in ax.get_lines()]
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    if not xs:
        return np.empty(0), np.empty(0)
    x, y = np.concatenate(xs), np.concatenate(ys)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def zoom_window(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]], r_ref: float | None
) -> tuple[float, float, float, float] | None:
    """A square window on the high-frequency part (the electrolyte), or None when
    the full view already shows it: 0 … 2.5·R_ref, R_ref the electrolyte resistance
    if known, else Z′ at the valley of −Z″ (between arc and spike)."""
    z = np.concatenate([c[2] for c in curves]) if curves else np.empty(0, complex)
    z = z[np.isfinite(z)]
    if not len(z):
        return None
    if r_ref is None or not np.isfinite(r_ref) or r_ref <= 0:
        valley = []
        for _, _f, zc in curves:
            zc = zc[np.isfinite(zc)]
            if len(zc):
                valley.append(float(zc.real[np.argmin(-zc.imag)]))
        r_ref = max(max(valley, default=0.0), float(z.real.min()), 1e-12)
    extent = 2.5 * r_ref
    full = max(float(np.ptp(z.real)), float(np.ptp(z.imag)), float(np.abs(z).max()))
    if full < 4 * extent:
        return None
    x0 = min(0.0, float(z.real.min()))
    return (x0, x0 + extent, min(0.0, float((-z.imag).min())), extent * 0.6)


def bode(ax_mag: Axes, ax_phase: Axes, curves: Sequence[tuple[str, np.ndarray, np.ndarray]], style: str = "o") -> None:
    for label, freq, z in curves:
        ax_mag.loglog(freq, np.abs(z), style, ms=3, label=label)
        ax_phase.semilogx(freq, np.degrees(np.angle(z)), style, ms=3, label=label)
    ax_mag.set_ylabel("|Z| / Ω")
    ax_phase.set_ylabel("phase / °")
    ax_phase.set_xlabel("f / Hz")
    for ax in (ax_mag, ax_phase):
        ax.grid(True, which="both", alpha=0.3)


def spectrum_curve(step: StepView) -> tuple[str, np.ndarray, np.ndarray]:
    spec = step.spectrum
    assert spec is not None
    return (plain(step.label or f"step {step.index}"), spec["freq"], spec["z_re"] + 1j * spec["z_im"])


def legend(ax: Axes, **kw: object) -> None:
    handles, _labels = ax.get_legend_handles_labels()
    if handles and len(handles) <= MAX_LEGEND:
        ax.legend(fontsize=8, **kw)


def note(ax: Axes, text: str, loc: str = "upper left") -> None:
    """A boxed text inside the axes (results on the figure itself)."""
    x, ha = (0.02, "left") if "left" in loc else (0.98, "right")
    y, va = (0.97, "top") if "upper" in loc else (0.03, "bottom")
    ax.text(
        x,
        y,
        plain(text),
        transform=ax.transAxes,
        ha=ha,
        va=va,
        fontsize=8,
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.6", "alpha": 0.9},
    )


def empty(ax: Axes, text: str) -> None:
    """An axes that says why it has nothing to show (never a blank plot)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
