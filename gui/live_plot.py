"""A live curve that hands pyqtgraph a few thousand points, whatever the curve holds.

A ``LiveCurve`` keeps the raw points (x, y as float64, grown in chunks) and a min/max
pyramid over them (:mod:`gui.decimate`). ``refresh()`` -- called by the GUI's ~25 Hz timer
after it drained the event bus -- draws the visible x-window as one min and one max point per
pixel column (exact: the raw min and max of the points in that column), so a single-sample
spike (nucleation dip, short) is never averaged or strided away. Both views below are
incremental, so a frame costs the same at 10⁵ and 10⁷ points.

Two kinds of curves:

* x non-decreasing (E–t, I–t, anything against time): the window follows the view. With a
  fixed x-range (zoomed, panned, or stepped by :class:`FollowX`) the window's pixel columns
  are built once in O(pixels · log N) and then only the columns new points land in are
  recomputed; the ViewBox's ``sigXRangeChanged`` marks the curve dirty so the next
  ``refresh()`` re-decimates a new window. With pyqtgraph's x auto-range the window is the
  whole curve, cut into a grid anchored at its first x (1–2 columns per pixel, see
  :class:`gui.decimate.ColumnEnvelope`), updated in O(new points).
* x that goes back (Nyquist, I–E, Bode against a falling frequency): detected on the first
  append that steps back, for good. The curve is cut into one index bucket per pixel and each
  keeps the points of its x and y extremes (≤ 4 per bucket); short curves (a Nyquist sweep has
  a few hundred points) are drawn whole. Zoom does not refine such a curve beyond that.

Memory bound (per curve, N points held): raw x+y 16 B/point; the pyramid 32 B per bucket of
8 points and of each coarser level, N/7 buckets: 4.6 B/point; so ≈ 21 B/point, up to ≈ 31
B/point while arrays grown ×1.5 are partly filled; a non-monotonic curve adds a pyramid for
x (+4.6 B/point). ``max_points`` caps N
(default 2²²: ≈ 88 MB, at most ≈ 130 MB): when exceeded, the older half of the points not yet
compacted is replaced by the min and max of every block of 512 points -- old spikes stay, old
detail goes -- and the pyramid is rebuilt (amortised O(1) per point: the next compaction needs
about N/2 more points). See ``_compact`` for when compacted data is compacted again.

Non-finite points (a NaN from an overflowing range) are dropped on append and counted in
``n_dropped``: pyqtgraph cannot draw them and min/max over them is meaningless.

Drawing: cosmetic pen (width 1 unless the given pen says otherwise), no anti-aliasing,
pyqtgraph's own downsampling and clip-to-view off (they would cost O(N) again).
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import pyqtgraph as pg

from gui.decimate import ColumnEnvelope, GrowableArray, MinMaxPyramid, WindowColumns, index_decimate

#: Default cap on the points one curve holds before its older half is compacted.
DEFAULT_MAX_POINTS = 1 << 22
#: Compaction keeps the min and max of each block of this many raw points.
COMPACT_BLOCK = 512
#: Bounds on the pixel columns used (a hidden widget reports a width of 0 or a huge one).
MIN_COLUMNS, MAX_COLUMNS = 64, 4096


class _LiveDataItem(pg.PlotDataItem):
    """A PlotDataItem whose x bounds are the whole curve's, not those of the points drawn.

    Why: a zoomed LiveCurve draws only its window (plus one point past each edge), so the
    bounds pyqtgraph derives from the drawn points would be the window's: the auto-range
    button would "auto-range" to the current zoom, and ``FollowX`` would chase the point past
    the right edge forever. y bounds stay pyqtgraph's (the drawn points hold every column's
    min and max, so they are exact for the window).
    """

    def __init__(self, extent: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # weakly: the Python wrapper of a Qt item can outlive its plot, and must not keep the
        # curve's arrays (hundreds of MB) alive with it
        self._extent = weakref.WeakMethod(extent)

    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange: Any = None) -> tuple[Any, Any]:
        extent_of = self._extent()
        wanted = extent_of is not None and ax == 0 and frac == 1.0 and orthoRange is None
        extent = extent_of() if wanted else None
        if extent is None:
            return super().dataBounds(ax, frac, orthoRange)
        lo, hi = extent
        if self.opts["logMode"][0]:
            if lo <= 0:
                return super().dataBounds(ax, frac, orthoRange)
            return math.log10(lo), math.log10(hi)
        return lo, hi


class LiveCurve:
    """One growing curve on a ``pyqtgraph.PlotItem``, drawn decimated to the visible pixels."""

    def __init__(
        self,
        plot_item: pg.PlotItem,
        pen: Any = None,
        name: str | None = None,
        *,
        max_points: int | None = DEFAULT_MAX_POINTS,
    ) -> None:
        least = 16 * COMPACT_BLOCK  # a compaction must free whole blocks
        if max_points is not None and max_points < least:
            raise ValueError(f"max_points: must be ≥ {least} or None, got {max_points}")
        self.max_points = max_points
        self.n_dropped = 0
        qpen = pg.mkPen(pen) if pen is not None else pg.mkPen()
        qpen.setCosmetic(True)
        self.item = _LiveDataItem(
            self.x_extent,
            pen=qpen,
            name=name,
            antialias=False,
            autoDownsample=False,
            clipToView=False,
            skipFiniteCheck=True,
            connect="all",
        )
        self._plot = plot_item
        self._vb = plot_item.getViewBox()
        plot_item.addItem(self.item)
        self._x = GrowableArray()
        self._y = GrowableArray()
        self._pyr_y = MinMaxPyramid()
        self._pyr_x: MinMaxPyramid | None = None  # only once x has gone back
        self._monotonic = True
        self._compacted = 0  # held points [0, _compacted) are compacted old data
        self._envelope: ColumnEnvelope | None = None  # the auto-ranging whole-curve view
        self._window_key: tuple[object, ...] | None = None  # the last zoomed window drawn, and its result
        self._window: WindowColumns | None = None
        self._window_idx = np.empty(0, dtype=np.int64)
        self._drawn: np.ndarray | None = None  # the index array last handed to pyqtgraph
        self._dirty = True
        self._vb.sigXRangeChanged.connect(self._mark_dirty)
        self._vb.sigResized.connect(self._mark_dirty)

    # -- data ---------------------------------------------------------------------------------

    @property
    def n_points(self) -> int:
        """Points held (after any compaction), not points drawn."""
        return len(self._x)

    @property
    def monotonic(self) -> bool:
        """Whether x has never gone back (then the view window is decimated by x columns)."""
        return self._monotonic

    @property
    def nbytes(self) -> int:
        """Bytes allocated for this curve's raw points and pyramids."""
        pyr = self._pyr_y.nbytes + (self._pyr_x.nbytes if self._pyr_x is not None else 0)
        return self._x.nbytes + self._y.nbytes + pyr

    def x_extent(self) -> tuple[float, float] | None:
        """(min x, max x) of every point held, or None when empty: O(log N)."""
        n = len(self._x)
        if n == 0:
            return None
        x = self._x.view()
        if self._monotonic:
            return float(x[0]), float(x[-1])
        self._sync()
        assert self._pyr_x is not None
        lo, hi = self._pyr_x.extrema(x, np.array([0]), np.array([n]))
        return float(x[lo[0]]), float(x[hi[0]])

    def append(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add points; amortised O(len(x)). The pyramid catches up at the next refresh."""
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"x, y: lengths differ ({len(x)} and {len(y)})")
        finite = np.isfinite(x) & np.isfinite(y)
        if not finite.all():
            self.n_dropped += int(len(x) - finite.sum())
            x, y = x[finite], y[finite]
        if len(x) == 0:
            return
        if self._monotonic and (
            (len(self._x) and x[0] < self._x.view()[-1]) or (len(x) > 1 and bool((np.diff(x) < 0).any()))
        ):
            self._monotonic = False
        self._x.extend(x)
        self._y.extend(y)
        self._dirty = True
        if self.max_points is not None and len(self._x) > self.max_points:
            self._compact()

    def clear(self) -> None:
        """Forget every point (the curve stays on its plot)."""
        self._x.clear()
        self._y.clear()
        self._pyr_y.clear()
        self._pyr_x = None
        self._monotonic = True
        self._compacted = 0
        self._envelope = None
        self._window_key = None
        self._drawn = None
        self.n_dropped = 0
        self.item.setData([], [])
        self._dirty = False

    def _sync(self) -> None:
        """Bring the pyramids up to date with the raw points."""
        self._pyr_y.update(self._y.view())
        if not self._monotonic:
            if self._pyr_x is None:
                self._pyr_x = MinMaxPyramid()
            self._pyr_x.update(self._x.view())

    def _compact(self) -> None:
        """Shrink the held points to about 3/4 of the cap, keeping every block's min and max.

        Points ``[0, _compacted)`` are already compacted. The older half of the rest is replaced
        by the min and max (of y, and of x for a non-monotonic curve) of each block of
        COMPACT_BLOCK = 512 points, so every spike survives. Only when the compacted part itself
        outgrows half the cap (after ≥ 64 × cap points) is everything old compacted again,
        coarser. Costs O(cap) with the pyramid rebuild, once per ≥ cap/4 new points.
        """
        assert self.max_points is not None
        n = len(self._x)
        done = self._compacted if self._compacted <= self.max_points // 2 else 0
        stop = done + (n - done) // 2 // COMPACT_BLOCK * COMPACT_BLOCK
        x, y = self._x.view(), self._y.view()
        base = np.arange(done, stop, COMPACT_BLOCK)
        keep = [np.arange(max(done, 1), dtype=np.int64)]  # the first point stays: the curve's start
        for values in (y,) if self._monotonic else (y, x):
            blocks = values[done:stop].reshape(-1, COMPACT_BLOCK)
            keep += [base + blocks.argmin(axis=1), base + blocks.argmax(axis=1)]
        kept = np.unique(np.concatenate(keep))
        new_x = np.concatenate((x[kept], x[stop:]))
        new_y = np.concatenate((y[kept], y[stop:]))
        self._x, self._y = GrowableArray(capacity=len(new_x) * 3 // 2), GrowableArray(capacity=len(new_x) * 3 // 2)
        self._x.extend(new_x)
        self._y.extend(new_y)
        self._compacted = len(kept)
        self._pyr_y = MinMaxPyramid()
        self._pyr_x = None
        self._envelope = None
        self._window_key = None
        self._drawn = None
        self._sync()

    # -- drawing ------------------------------------------------------------------------------

    def _mark_dirty(self, *_: object) -> None:
        self._dirty = True

    def columns(self) -> int:
        """Pixel columns of the plot area (device pixels), bounded to [MIN_COLUMNS, MAX_COLUMNS]."""
        width = self._vb.width()
        scene = self._vb.scene()
        views = scene.views() if scene is not None else []
        if views:
            width *= views[0].devicePixelRatioF()
        return int(min(max(math.ceil(width), MIN_COLUMNS), MAX_COLUMNS))

    def window(self) -> tuple[float, float]:
        """The x-window to draw, in data units: the whole curve while x auto-ranges, else the view."""
        x = self._x.view()
        if self._vb.autoRangeEnabled()[0] is not False or len(x) == 0:
            return (float(x[0]), float(x[-1])) if len(x) else (0.0, 0.0)
        v0, v1 = self._vb.viewRange()[0]
        if self.item.opts["logMode"][0]:
            return 10.0**v0, 10.0**v1
        return v0, v1

    def visible_indices(self) -> np.ndarray:
        """Sorted raw indices of the points ``refresh()`` would draw now."""
        n = len(self._x)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        self._sync()
        columns = self.columns()
        x, y = self._x.view(), self._y.view()
        if not self._monotonic:
            assert self._pyr_x is not None
            return index_decimate(n, columns, [(x, self._pyr_x), (y, self._pyr_y)])
        log_x = bool(self.item.opts["logMode"][0])
        if self._vb.autoRangeEnabled()[0] is not False and not log_x:
            # whole curve: the incremental grid, O(new points) per frame
            if n <= 2 * columns:
                return np.arange(n, dtype=np.int64)
            if self._envelope is None or self._envelope.target != columns:
                self._envelope = ColumnEnvelope(columns)
            self._envelope.update(x, y, self._pyr_y)
            idx = self._envelope.indices()
            # the first point, and the newest: the live value is where the eye looks
            head = [0] if len(idx) == 0 or idx[0] != 0 else []
            tail = [n - 1] if len(idx) == 0 or idx[-1] != n - 1 else []
            return np.concatenate((np.array(head, dtype=np.int64), idx, np.array(tail, dtype=np.int64)))
        return self._window_indices(x, y, columns, log_x)

    def _window_indices(self, x: np.ndarray, y: np.ndarray, columns: int, log_x: bool) -> np.ndarray:
        """Pixel-exact columns of the visible window (zoomed, panned or log x).

        Built in O(columns · log N) when the window changes; while it stays, streaming data
        only recomputes the columns it lands in, and data landing past the window nothing.
        """
        x0, x1 = self.window()
        key = (x0, x1, columns, log_x)
        if key == self._window_key and self._window is not None:
            if self._window.update(x, y, self._pyr_y):
                self._window_idx = self._window.indices()
            return self._window_idx
        if log_x and x0 > 0 and x1 > 0:
            edges = np.logspace(math.log10(x0), math.log10(x1), columns + 1)
        else:
            edges = np.linspace(x0, x1, columns + 1)
        self._window = WindowColumns(edges)
        self._window.update(x, y, self._pyr_y)
        self._window_key, self._window_idx = key, self._window.indices()
        return self._window_idx

    def refresh(self) -> None:
        """Draw the decimated visible window; does nothing when neither data nor view changed."""
        if not self._dirty:
            return
        self._dirty = False
        idx = self.visible_indices()
        if idx is self._drawn:  # a zoomed window that new data did not reach
            return
        self._drawn = idx
        self.item.setData(self._x.view()[idx], self._y.view()[idx])
        # Auto-range now rather than at the start of the next paint: pyqtgraph does it in
        # paintEvent, and the range change it makes there schedules a second paint of the
        # whole plot in the same frame (measured: 2 paints per frame, ~half of a frame's cost).
        self._vb.prepareForPaint()


class FollowX:
    """Keep a live plot's x-range ahead of its data in steps, instead of auto-ranging every frame.

    Why: with pyqtgraph's x auto-range each frame moves the range a little, so both axes are
    re-ticked and the plot is laid out again every frame -- with 8 channels that is about half
    of a frame's cost (bench/gui_fps.py). Here, when the data reaches the right end, the range
    grows to the data's span plus ``headroom`` of it (10 % by default): the axes change a few
    times a minute, and each ``LiveCurve`` then updates only the columns new points land in.

    Call :meth:`update` once per frame, after the plot's curves were refreshed. A pan or zoom
    with the mouse stops following; the plot's auto-range button ("A") or :meth:`follow`
    resumes. Only x is managed: y keeps whatever auto-range the plot has.
    """

    def __init__(self, plot_item: pg.PlotItem, headroom: float = 0.1) -> None:
        if not 0.0 < headroom <= 10.0:
            raise ValueError(f"headroom: must be in (0, 10], got {headroom}")
        self.headroom = headroom
        self.following = True
        self._vb = plot_item.getViewBox()
        self._vb.enableAutoRange(x=False)
        self._vb.sigRangeChangedManually.connect(self._manual)
        self._vb.sigStateChanged.connect(self._state)

    def follow(self) -> None:
        """Follow the data again (after a manual pan or zoom)."""
        self.following = True
        self.update(force=True)

    def _manual(self, mask: object) -> None:
        if isinstance(mask, (list, tuple)) and not mask[0]:
            return  # a y-only change
        self.following = False

    def _state(self, *_: object) -> None:
        if self._vb.autoRangeEnabled()[0] is not False:  # the "A" button: hand x back to us
            self._vb.enableAutoRange(x=False)
            self.follow()

    def update(self, force: bool = False) -> None:
        """Step the x-range if the data left it (or ``force``); otherwise leave the axes alone."""
        if not self.following:
            return
        lo, hi = self._vb.childrenBounds()[0] or (None, None)
        if lo is None or hi is None:
            return
        x0, x1 = self._vb.viewRange()[0]
        span = hi - lo
        # pyqtgraph pads item bounds by the pen's pixel width, which moves with the scale: a
        # few pixels of tolerance at the left keep that from stepping the range every frame
        tolerance = 4 * (x1 - x0) / max(self._vb.width(), 1.0)
        inside = x0 - tolerance <= lo and hi <= x1
        if not force and inside and (x1 - x0) <= span * (1 + self.headroom) * 2 + tolerance:
            return  # inside, and not grossly too wide (a cleared curve shrinks it)
        if span <= 0:
            span = abs(hi) * 1e-3 or 1.0
        self._vb.setXRange(lo, lo + span * (1 + self.headroom), padding=0)
