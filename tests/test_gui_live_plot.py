"""LiveCurve on a real (offscreen) pyqtgraph PlotWidget: what it hands pyqtgraph, and when.

Checked against the raw points: the number of points drawn stays bounded whatever the curve
holds, every pixel column of the visible window shows the raw min and max (spikes kept), a
zoom re-decimates the new window, non-monotonic curves keep their outline, and the memory cap
compacts old data without losing its spikes. No timing (bench/gui_fps.py measures speed).
"""

from __future__ import annotations

import gc
import itertools
import math
import os
import weakref

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pyqtgraph as pg
import pytest
from qtpy import QtCore

from gui.live_plot import FollowX, LiveCurve

SEEDS = np.random.default_rng(411).integers(0, 2**31, 5)


@pytest.fixture
def plot():
    app = pg.mkQApp()
    widget = pg.PlotWidget()
    widget.resize(640, 300)
    widget.show()
    app.processEvents()
    yield widget.getPlotItem()
    widget.close()
    widget.deleteLater()
    app.processEvents()


def settle(curve: LiveCurve) -> tuple[np.ndarray, np.ndarray]:
    """refresh(), let the view react (auto-range), refresh again; the data pyqtgraph holds."""
    app = pg.mkQApp()
    curve.refresh()
    app.processEvents()
    curve.refresh()
    x, y = curve.item.xData, curve.item.yData  # as given (getData() is log-mapped in log mode)
    return (np.empty(0), np.empty(0)) if x is None else (np.asarray(x), np.asarray(y))


def stream(curve: LiveCurve, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, refresh_every: int = 5) -> None:
    """Append in random batches, refreshing now and then as the 25 Hz timer would."""
    i, k = 0, 0
    while i < len(x):
        j = min(len(x), i + int(rng.integers(1, 5000)))
        curve.append(x[i:j], y[i:j])
        i, k = j, k + 1
        if k % refresh_every == 0:
            curve.refresh()


def columns_exact(x: np.ndarray, y: np.ndarray, shown_x: np.ndarray, shown_y: np.ndarray, edges: np.ndarray) -> None:
    """Every column [edges[c], edges[c+1]) shows the raw min and max of the points inside it."""
    for c in range(len(edges) - 1):
        last = c == len(edges) - 2
        raw = (x >= edges[c]) & ((x <= edges[c + 1]) if last else (x < edges[c + 1]))
        mine = (shown_x >= edges[c]) & ((shown_x <= edges[c + 1]) if last else (shown_x < edges[c + 1]))
        if not raw.any():
            assert not mine.any()
            continue
        assert shown_y[mine].min() == y[raw].min(), f"column {c}: min"
        assert shown_y[mine].max() == y[raw].max(), f"column {c}: max"


def signal(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A noisy voltage trace sampled at 1 kHz with one single-sample dip; returns its index."""
    x = np.arange(n) * 1e-3
    y = 3.0 + 0.2 * np.exp(-x / (n * 2e-4)) + rng.normal(0, 1e-3, n)
    at = int(rng.integers(0, n))
    y[at] -= 0.5
    return x, y, at


def test_drawing_settings(plot) -> None:
    curve = LiveCurve(plot, pen=(255, 0, 0), name="E")
    pen = curve.item.opts["pen"]
    assert pen.isCosmetic() and pen.widthF() == 1.0
    assert curve.item.opts["antialias"] is False
    assert curve.item.opts["autoDownsample"] is False and curve.item.opts["clipToView"] is False
    assert curve.item in plot.listDataItems() and curve.item.name() == "E"


@pytest.mark.parametrize("seed", SEEDS)
def test_whole_curve_view_is_bounded_exact_and_keeps_the_spike(plot, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(100_000, 400_000))
    x, y, at = signal(rng, n)
    curve = LiveCurve(plot)
    stream(curve, x, y, rng)
    shown_x, shown_y = settle(curve)
    assert curve.n_points == n
    columns = curve.columns()
    assert len(shown_x) <= 4 * columns + 2, "never the whole curve"
    idx = curve.visible_indices()
    assert np.array_equal(shown_x, x[idx]) and np.array_equal(shown_y, y[idx]), "only real points"
    assert at in idx and shown_y.min() == y.min(), "the dip is drawn"
    assert shown_x[0] == x[0] and shown_x[-1] == x[-1]
    envelope = curve._envelope
    assert envelope is not None and columns <= envelope.columns <= 2 * columns
    columns_exact(x, y, shown_x, shown_y, envelope.edges())


@pytest.mark.parametrize("seed", SEEDS)
def test_zoom_re_decimates_the_visible_window(plot, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300_000
    x, y, at = signal(rng, n)
    curve = LiveCurve(plot)
    stream(curve, x, y, rng)
    settle(curve)
    width = float(rng.uniform(2.0, 40.0))  # s, out of 300: 2000-40000 samples in view
    x0 = float(np.clip(x[at] - rng.uniform(0.1, 0.9) * width, 0, x[-1] - width))
    plot.getViewBox().setXRange(x0, x0 + width, padding=0)
    shown_x, shown_y = settle(curve)
    v0, v1 = curve.window()
    assert (v0, v1) == pytest.approx((x0, x0 + width))
    inside = (shown_x >= v0) & (shown_x <= v1)
    assert (~inside).sum() <= 2, "only the two neighbours outside the window"
    assert len(shown_x) <= 2 * curve.columns() + 2
    assert inside.sum() > curve.columns(), "the zoomed window is drawn in detail, not from the whole-curve view"
    columns_exact(x, y, shown_x, shown_y, np.linspace(v0, v1, curve.columns() + 1))
    if x0 <= x[at] <= x0 + width:
        assert x[at] in shown_x
    # zoom in to a few dozen samples: every raw point is drawn
    plot.getViewBox().setXRange(x[at] - 0.02, x[at] + 0.02, padding=0)
    shown_x, shown_y = settle(curve)
    raw = np.flatnonzero((x >= x[at] - 0.02) & (x <= x[at] + 0.02))
    assert set(raw) <= set(np.searchsorted(x, shown_x)) and y[at] in shown_y


def test_zoomed_view_follows_new_data_only_when_it_changes_the_window(plot) -> None:
    rng = np.random.default_rng(5)
    x, y, _ = signal(rng, 100_000)
    curve = LiveCurve(plot)
    curve.append(x[:50_000], y[:50_000])
    settle(curve)
    plot.getViewBox().setXRange(10.0, 20.0, padding=0)
    settle(curve)
    calls = []
    original = curve.item.setData
    curve.item.setData = lambda *a, **k: (calls.append(1), original(*a, **k))
    curve.refresh()
    assert calls == [], "nothing changed: no redraw"
    curve.append(x[50_000:60_000], y[50_000:60_000])  # beyond the window
    curve.refresh()
    shown_x = curve.item.xData
    assert shown_x.max() < 20.01, "the window still ends at 20 s"
    plot.getViewBox().setXRange(40.0, 70.0, padding=0)
    settle(curve)
    shown_x = curve.item.xData
    assert shown_x.min() < 40.001 and shown_x.max() > 59.9, "the new data is drawn once in view"


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_non_monotonic_curves_keep_their_outline(plot, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # a Nyquist sweep with an inductive loop at high frequency (Z' goes back): drawn whole
    f = np.logspace(6, -1, 350)
    w = 2 * np.pi * f
    z = 100 + 1000 / (1 + 1j * w * 1e-6 * 1000) + 1j * w * 2e-5 / (1 + 1j * w * 2e-5 / 50)
    z = z + rng.normal(0, 0.5, len(f))
    assert (np.diff(z.real) < 0).any()
    nyquist = LiveCurve(plot)
    for i in range(0, len(f), 7):
        nyquist.append(z.real[i : i + 7], -z.imag[i : i + 7])
    shown_x, shown_y = settle(nyquist)
    assert not nyquist.monotonic
    assert np.array_equal(shown_x, z.real) and np.array_equal(shown_y, -z.imag)
    # a long cyclic voltammogram: bounded, every index bucket keeps its E and I extremes
    n = 200_000
    phase = np.linspace(0, 40 * np.pi, n)
    e = np.abs((phase / np.pi) % 2 - 1) + rng.normal(0, 1e-3, n)
    i = np.tanh((e - 0.5) * 8) + rng.normal(0, 1e-3, n)
    i[int(rng.integers(n))] += 2  # a short
    cv = LiveCurve(plot)
    stream(cv, e, i, rng)
    shown_x, shown_y = settle(cv)
    assert not cv.monotonic
    assert len(shown_x) <= 4 * cv.columns() + 2
    assert shown_y.max() == i.max() and shown_x.min() == e.min() and shown_x.max() == e.max()


def test_clear_and_non_finite_points(plot) -> None:
    curve = LiveCurve(plot)
    curve.append(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, np.nan, 2.0, np.inf]))
    assert curve.n_points == 2 and curve.n_dropped == 2
    curve.append(np.array([1.0]), np.array([5.0]))  # x went back
    assert not curve.monotonic
    curve.clear()
    assert curve.n_points == 0 and curve.monotonic and curve.n_dropped == 0
    assert len(settle(curve)[0]) == 0
    curve.append(np.arange(10.0), np.arange(10.0))
    assert np.array_equal(settle(curve)[0], np.arange(10.0))
    with pytest.raises(ValueError, match="lengths"):
        curve.append(np.arange(3.0), np.arange(4.0))


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_memory_cap_compacts_old_data_and_keeps_its_spikes(plot, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cap = 50_000
    n = 200_000
    x, y, _ = signal(rng, n)
    spikes = rng.choice(n, 10, replace=False)
    y[spikes] += rng.choice([-1.0, 1.0], 10)
    curve = LiveCurve(plot, max_points=cap)
    stream(curve, x, y, rng)
    assert curve.n_points <= cap
    shown_x, _shown_y = settle(curve)
    held_x = curve._x.view()
    assert np.all(np.diff(held_x) >= 0), "compaction keeps x in order"
    assert set(x[spikes]) <= set(held_x), "every spike survives compaction"
    assert set(x[spikes]) <= set(shown_x), "and is drawn"
    assert held_x[-1] == x[-1] and held_x[0] == x[0]
    assert curve.nbytes <= 31 * cap
    with pytest.raises(ValueError, match="max_points"):
        LiveCurve(plot, max_points=10)


def test_compacted_data_is_compacted_again_when_it_outgrows_half_the_cap(plot) -> None:
    rng = np.random.default_rng(12)
    cap, n = 8192, 1_500_000
    x, y, at = signal(rng, n)
    y[at] = -7.0  # the deepest point of all must survive every round
    y[n // 3] = 9.0
    curve = LiveCurve(plot, max_points=cap)
    compacted = []
    for i in range(0, n, 4000):
        curve.append(x[i : i + 4000], y[i : i + 4000])
        compacted.append(curve._compacted)
    curve.refresh()
    held_x, held_y = curve._x.view(), curve._y.view()
    assert curve.n_points <= cap
    assert max(compacted) <= cap // 2 + 4000, "the compacted part stays within half the cap"
    assert any(b < a for a, b in itertools.pairwise(compacted)), "the compacted part was compacted again"
    assert np.all(np.diff(held_x) >= 0) and held_x[0] == x[0] and held_x[-1] == x[-1]
    assert held_y.min() == -7.0 and held_y.max() == 9.0
    recent = x >= held_x[-cap // 4]
    assert np.array_equal(held_x[-recent.sum() :], x[recent]), "the newest points are all kept"


def test_log_x_window_uses_logarithmic_columns(plot) -> None:
    rng = np.random.default_rng(9)
    n = 100_000
    x = np.logspace(-2, 4, n)  # a time axis shown in log (a long relaxation)
    y = rng.normal(size=n)
    curve = LiveCurve(plot)
    curve.append(x, y)
    plot.setLogMode(x=True, y=False)
    shown_x, shown_y = settle(curve)
    assert len(shown_x) <= 2 * curve.columns() + 2
    x0, x1 = curve.window()
    columns_exact(x, y, shown_x, shown_y, np.logspace(math.log10(x0), math.log10(x1), curve.columns() + 1))


def test_auto_range_button_shows_the_whole_curve_after_a_zoom(plot) -> None:
    rng = np.random.default_rng(3)
    x, y, _ = signal(rng, 200_000)
    curve = LiveCurve(plot)
    curve.append(x, y)
    settle(curve)
    vb = plot.getViewBox()
    vb.setXRange(50.0, 60.0, padding=0)
    settle(curve)
    assert curve.item.xData.max() < 61, "only the window is drawn"
    assert curve.item.dataBounds(0) == (x[0], x[-1]), "but the item reports the whole curve"
    plot.autoBtnClicked()
    settle(curve)
    x0, x1 = vb.viewRange()[0]
    assert x0 <= x[0] and x1 >= x[-1]


def test_follow_x_steps_the_range_ahead_of_the_data(plot) -> None:
    rng = np.random.default_rng(4)
    x, y, _ = signal(rng, 100_000)
    curve = LiveCurve(plot)
    follower = FollowX(plot, headroom=0.1)
    vb = plot.getViewBox()
    ranges = []
    app = pg.mkQApp()
    for k in range(0, 100_000, 40):  # 2500 frames of 40 points
        curve.append(x[k : k + 40], y[k : k + 40])
        curve.refresh()
        follower.update()
        app.processEvents()
        x0, x1 = vb.viewRange()[0]
        assert x0 <= x[0] + 1e-9 and x[k + 39] <= x1, f"frame {k // 40}: data outside the range"
        ranges.append((x0, x1))
    steps = sum(1 for a, b in itertools.pairwise(ranges) if a != b)
    # growing from 40 points to 100 s by ≥ 10 % a step: about log(2500)/log(1.1) ≈ 82 steps
    assert steps <= 100, f"{steps} range changes in 2500 frames"
    assert ranges[-1][1] - ranges[-1][0] <= 1.25 * (x[-1] - x[0])
    # a pan with the mouse stops following; the auto-range button resumes it
    vb.sigRangeChangedManually.emit([True, False])
    assert not follower.following
    curve.append(x[-1:] + np.arange(1, 5000) * 1e-3, y[:4999])
    curve.refresh()
    follower.update()
    assert vb.viewRange()[0][1] < curve.x_extent()[1], "not following"
    plot.autoBtnClicked()
    assert follower.following and vb.autoRangeEnabled()[0] is False
    assert vb.viewRange()[0][1] >= curve.x_extent()[1]


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_streaming_into_a_zoomed_view_draws_what_a_fresh_curve_draws(plot, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y, _ = signal(rng, 150_000)
    x0 = float(rng.uniform(10, 100))
    # both ranges fixed: the axes keep their width, so the window is never rebuilt from scratch
    plot.getViewBox().setRange(xRange=(x0, x0 + float(rng.uniform(5, 40))), yRange=(2.0, 3.5), padding=0)
    pg.mkQApp().processEvents()
    streamed = LiveCurve(plot)
    cut = len(x) // 5
    stream(streamed, x[:cut], y[:cut], rng, refresh_every=1)
    settle(streamed)
    window = streamed._window
    stream(streamed, x[cut:], y[cut:], rng, refresh_every=1)
    fresh = LiveCurve(plot)
    fresh.append(x, y)
    settle(streamed)
    settle(fresh)
    assert streamed._window is window, "the window was updated in place, not rebuilt"
    assert np.array_equal(streamed.item.xData, fresh.item.xData)
    assert np.array_equal(streamed.item.yData, fresh.item.yData)
    assert len(fresh.item.xData) > fresh.columns()  # the window held enough points to decimate


def test_closing_a_plot_frees_its_curves_memory() -> None:
    app = pg.mkQApp()
    widget = pg.PlotWidget()
    widget.show()
    curve = LiveCurve(widget.getPlotItem())
    follower = FollowX(widget.getPlotItem())
    curve.append(np.arange(100_000.0), np.zeros(100_000))
    curve.refresh()
    follower.update()
    refs = weakref.ref(curve), weakref.ref(follower)
    del curve, follower
    widget.close()
    widget.deleteLater()
    app.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    app.processEvents()
    gc.collect()
    assert all(ref() is None for ref in refs), "a curve outlived its plot (its Qt item kept it)"
