"""Frame rate of the live view: 8 channels streaming while each curve holds 10⁵, 10⁶, 10⁷ points.

An offscreen window (QT_QPA_PLATFORM=offscreen unless set) holds 8 PlotWidgets, one per
channel, each with one ``LiveCurve`` preloaded with N points (a noisy relaxation with
single-sample spikes, sampled at 1 kHz). One *frame* is what the GUI's timer does: append a
batch of points (40, i.e. 1 kHz drained at 25 Hz) to every curve, ``refresh()`` every curve,
then repaint the window and process events.

Two ways to range x, both measured: ``FollowX`` (the range steps ahead of the data by 10 % of
its span, so the axes stay still between steps and each curve updates only the newest pixel
columns) -- the headline ``fps`` -- and pyqtgraph's x auto-range (``autorange``: the range,
both axes and the whole-curve envelope move every frame). The baseline is plain pyqtgraph:
``setData`` of the whole curve every frame with ``autoDownsample``, ``clipToView`` and
``downsampleMethod='peak'``: its cost grows with N, which is why the decimator exists.

Per N: ``fps`` (frames per second), ``update_ms`` (append + refresh of the 8 curves, the part
that depends on N) and ``frame_ms``. Times are this process's CPU time (Qt paints offscreen
in this process): the machine is shared, and wall-clock time measures the neighbours' load as
much as this code; wall-clock fps is reported beside it (``fps_wall_by_points``).

    python bench/gui_fps.py [--json] [--sizes 1e5,1e6,1e7] [--seconds 3] [--no-baseline]

The issue's target: ≥ 60 fps at 10⁶ points with 8 channels, and ``update_ms`` flat from 10⁵
to 10⁷ points. With ``--json``: one object with ``fps`` (10⁶ points, 8 channels),
``fps_by_points``, ``update_ms``, ``frame_ms`` keyed by point count, and the same under
``autorange`` and ``baseline``. ``--channels 1`` gives the one-curve figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pyqtgraph as pg
from qtpy import QtWidgets

from gui.live_plot import FollowX, LiveCurve

CHANNELS = 8  # default; --channels changes it
BATCH = 40  # points per channel per frame: 1 kHz sampling drained at 25 Hz
RATE = 1000.0  # Hz, sample rate of the synthetic signal
TAIL = 200_000  # points per channel streamed during the measurement (5000 frames)


def signal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy relaxation with a spike every 10⁵ samples, sampled at RATE."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    y = 3.0 + 0.5 * np.exp(-t / (n / RATE / 5)) + rng.normal(0.0, 0.002, n)
    y[50_000::100_000] -= 0.3  # nucleation-like dips, one sample each
    return t, y


@dataclass(frozen=True)
class Timing:
    """Mean per frame, in ms: append+refresh (CPU), the whole frame (CPU), the whole frame (wall)."""

    update_ms: float
    frame_ms: float
    wall_ms: float
    curve_mb: float = 0.0  # memory one LiveCurve holds at the end (raw + pyramid, allocated)


class Window:
    """A grid of ``channels`` plot widgets in one offscreen top-level window."""

    channels = CHANNELS

    def __init__(self, app: QtWidgets.QApplication) -> None:
        self.app = app
        self.top = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(self.top)
        self.plots = []
        for i in range(self.channels):
            widget = pg.PlotWidget(title=f"ch{i + 1}")
            grid.addWidget(widget, i // 2, i % 2)
            self.plots.append(widget)
        self.top.resize(1600, 1200)
        self.top.show()
        app.processEvents()

    def paint(self) -> None:
        self.top.repaint()
        self.app.processEvents()

    def close(self) -> None:
        self.top.close()
        self.top.deleteLater()
        self.app.processEvents()


def run_frames(step: Callable[[], float], window: Window, seconds: float, min_frames: int) -> Timing:
    """Run frames for ``seconds`` of CPU time (at least ``min_frames``); mean costs per frame."""
    for _ in range(3):  # warm-up: first paint, auto-range settling
        step()
        window.paint()
    frames, update = 0, 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    while frames < min_frames or time.process_time() - cpu < seconds:
        update += step()
        window.paint()
        frames += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Timing(update / frames * 1e3, cpu / frames * 1e3, wall / frames * 1e3)


def bench_live(app: QtWidgets.QApplication, n: int, seconds: float, follow: bool) -> Timing:
    """LiveCurves; x either followed in steps (FollowX) or auto-ranged by pyqtgraph every frame."""
    window = Window(app)
    curves, tails, followers = [], [], []
    t, y = signal(n + TAIL, seed=0)  # each curve copies it into its own arrays
    for i, widget in enumerate(window.plots):
        curve = LiveCurve(widget.getPlotItem(), pen=pg.intColor(i), name=f"ch{i + 1}", max_points=None)
        curve.append(t[:n], y[:n])
        tails.append((t[n:], y[n:]))
        if follow:
            followers.append(FollowX(widget.getPlotItem()))
        curve.refresh()
        curves.append(curve)
    del t, y  # the tails are views: the source stays alive, once
    pos = [0]

    def step() -> float:
        k = pos[0]
        pos[0] += BATCH
        if pos[0] > TAIL:
            raise RuntimeError("more frames than TAIL points allow: raise TAIL")
        start = time.process_time()
        for curve, (t, y) in zip(curves, tails, strict=True):
            curve.append(t[k : k + BATCH], y[k : k + BATCH])
            curve.refresh()
        for follower in followers:
            follower.update()
        return time.process_time() - start

    result = run_frames(step, window, seconds, min_frames=20)
    result = dataclasses.replace(result, curve_mb=curves[0].nbytes / 2**20)
    window.close()
    return result


def bench_plain(app: QtWidgets.QApplication, n: int, seconds: float) -> Timing:
    window = Window(app)
    items = []
    t, y = signal(n + TAIL, seed=0)  # one signal shared by the 8 items: the same work, 1/8 the memory
    for i, widget in enumerate(window.plots):
        item = widget.getPlotItem().plot(
            pen=pg.intColor(i), antialias=False, autoDownsample=True, clipToView=True, downsampleMethod="peak"
        )
        items.append(item)
    pos = [n]

    def step() -> float:
        pos[0] += BATCH
        k = pos[0]
        start = time.process_time()
        for item in items:
            item.setData(t[:k], y[:k])
        return time.process_time() - start

    result = run_frames(step, window, seconds, min_frames=3)
    window.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="points per curve, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per size")
    parser.add_argument("--no-baseline", action="store_true", help="skip plain pyqtgraph")
    parser.add_argument("--channels", type=int, default=CHANNELS, help="plots streaming at once (default 8)")
    args = parser.parse_args(argv)
    if not 1 <= args.channels <= 16:
        parser.error(f"--channels: must be 1..16, got {args.channels}")
    Window.channels = args.channels
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    app = pg.mkQApp()
    live: dict[str, Timing] = {}
    auto: dict[str, Timing] = {}
    plain: dict[str, Timing] = {}
    for n in sizes:
        live[str(n)] = bench_live(app, n, args.seconds, follow=True)
        gc.collect()
        auto[str(n)] = bench_live(app, n, args.seconds, follow=False)
        gc.collect()
        if not args.no_baseline:
            plain[str(n)] = bench_plain(app, n, args.seconds)
            gc.collect()

    def summary(res: dict[str, Timing]) -> dict[str, object]:
        return {
            "fps_by_points": {k: round(1e3 / t.frame_ms, 1) for k, t in res.items()},
            "update_ms": {k: round(t.update_ms, 3) for k, t in res.items()},
            "frame_ms": {k: round(t.frame_ms, 3) for k, t in res.items()},
            "fps_wall_by_points": {k: round(1e3 / t.wall_ms, 1) for k, t in res.items()},
            **({"curve_mb": {k: round(t.curve_mb, 1) for k, t in res.items()}} if res is not plain else {}),
        }

    key = str(10**6)
    out: dict[str, object] = {
        "fps": round(1e3 / live[key].frame_ms, 1) if key in live else None,
        **summary(live),
        "x_range": "FollowX (steps of 10 % of the span); see autorange for pyqtgraph's auto-range",
        "channels": args.channels,
        "batch_per_frame": BATCH,
        "clock": "process CPU time (fps = 1000 / CPU ms per frame); fps_wall_by_points: wall clock",
        "platform": os.environ.get("QT_QPA_PLATFORM"),
        "load_average": os.getloadavg()[0],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    out["autorange"] = {"method": "LiveCurve, pyqtgraph x auto-range every frame", **summary(auto)}
    if plain:
        out["baseline"] = {"method": "setData(whole curve), autoDownsample+clipToView, peak", **summary(plain)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"live view, {args.channels} channels, {BATCH} new points per channel per frame ({out['platform']});")
    print("fps from CPU time per frame (the machine is shared), wall-clock fps beside it")
    head = f"{'points/curve':>12} {'fps':>7} {'wall fps':>8} {'update ms':>9} {'frame ms':>8} {'MB/curve':>8}"
    head += f"   {'auto fps':>8}"
    print(head + (f"   {'plain fps':>9} {'plain upd ms':>12}" if plain else ""))
    for n in sizes:
        t = live[str(n)]
        line = f"{n:>12.0e} {1e3 / t.frame_ms:>7.1f} {1e3 / t.wall_ms:>8.1f} {t.update_ms:>9.2f} {t.frame_ms:>8.2f}"
        line += f" {t.curve_mb:>8.0f}"
        line += f"   {1e3 / auto[str(n)].frame_ms:>8.1f}"
        if plain:
            p = plain[str(n)]
            line += f"   {1e3 / p.frame_ms:>9.1f} {p.update_ms:>12.1f}"
        print(line)
    print("fps: x followed in steps (FollowX); auto fps: pyqtgraph x auto-range every frame")
    print(f"load average {out['load_average']:.1f}, peak RSS {out['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
