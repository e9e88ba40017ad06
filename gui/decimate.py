"""Min/max decimation of growing curves, for live plots that never hand pyqtgraph the whole curve.

Why not pyqtgraph's own ``autoDownsample``: it re-reads the whole curve on every update, so one
update costs O(N) (≈ 10 fps at 10⁷ points on the reference machine), and its ``peak`` method
works on fixed strides that do not follow the pixels. Here the envelope is *exact*: for every
pixel column of the visible window, the points handed to the plot contain the raw data's
minimum and maximum in that column, so a single-sample spike (a nucleation dip, a short) is
visible at every zoom; and a streaming frame costs O(new points), not O(N).

Pieces (numpy only, no Qt, so they are tested and benchmarked on their own):

* :class:`GrowableArray` -- raw storage grown geometrically (×1.5): appending m points costs
  amortised O(m), never an O(N) copy per append, and the slack is at most half the data.
* :class:`MinMaxPyramid` -- level k holds, for every complete bucket of ``F**(k+1)``
  consecutive raw points, the value and raw index of its minimum and maximum (32 B per
  bucket; with F = 8, N/7 buckets: 0.29× the raw x+y float64 memory). Built incrementally.
* :meth:`MinMaxPyramid.extrema` -- exact argmin/argmax of many index ranges at once, walking
  the pyramid like a segment tree: at each level only the ≤ F-1 unaligned elements at each
  end of a range are read, the aligned middle is left to the next level. O(F · log_F N) a range.
* :class:`WindowColumns` -- a fixed x-window (zoomed or panned view) cut into pixel columns:
  each column's min and max, plus the nearest point outside each edge so lines run to the
  border; streaming data only recomputes the columns it lands in.
* :class:`ColumnEnvelope` -- the whole curve while x auto-ranges: a grid anchored at the
  first x whose column width doubles as the curve grows (exact merges), O(new points) a frame.
* :func:`index_decimate` -- for curves whose x is not monotonic (Nyquist, I–E): the curve is
  cut into equal index buckets and each keeps the points holding its x and y extremes.
"""

from __future__ import annotations

import math

import numpy as np

#: Pyramid branching factor: buckets of level k hold F**(k+1) raw points.
FACTOR = 8
#: Up to this many ranges, :meth:`MinMaxPyramid.extrema` loops in Python instead of vectorising.
SCALAR_QUERIES = 8


class GrowableArray:
    """A 1-D numpy array that grows by ×1.5: amortised O(1) per element, slack ≤ 50 %."""

    __slots__ = ("_data", "_n")

    def __init__(self, dtype: type | np.dtype = np.float64, capacity: int = 1024) -> None:
        self._data = np.empty(max(capacity, 16), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes allocated (capacity, not length)."""
        return self._data.nbytes

    def view(self) -> np.ndarray:
        """The filled part; a view, valid until the next :meth:`extend`."""
        return self._data[: self._n]

    def rows(self, width: int) -> np.ndarray:
        """The filled part as rows of ``width``, the last row padded with unspecified values."""
        need = -(-self._n // width) * width
        if need > len(self._data):
            self._grow(need)
        return self._data[:need].reshape(-1, width)

    def extend(self, values: np.ndarray) -> None:
        need = self._n + len(values)
        if need > len(self._data):
            self._grow(need)
        self._data[self._n : need] = values
        self._n = need

    def _grow(self, need: int) -> None:
        grown = np.empty(max(need, len(self._data) * 3 // 2), dtype=self._data.dtype)
        grown[: self._n] = self._data[: self._n]
        self._data = grown

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` values."""
        self._n = min(self._n, max(n, 0))

    def clear(self) -> None:
        self._n = 0


class MinMaxPyramid:
    """Per-bucket min and max of a growing array at levels of F, F², F³ … points.

    Level k keeps, for every complete bucket of F**(k+1) raw points, the value and raw index
    of its minimum and of its maximum (2 float64 + 2 int64 = 32 bytes per bucket; with F = 8
    the levels hold N/7 buckets, 0.29× the raw x+y float64 memory). Values are stored, not
    only indices, so a query reads short contiguous rows instead of gathering at random from
    the raw arrays (cache misses made that 3× slower at 10⁷ points).

    The pyramid does not own the raw values: :meth:`update` is given the whole array so far
    (its prefix unchanged since the last call) and adds the buckets that became complete.
    Incomplete trailing buckets are not stored; :meth:`extrema` reads those raw.
    """

    def __init__(self, factor: int = FACTOR) -> None:
        if factor < 2:
            raise ValueError(f"factor: must be ≥ 2, got {factor}")
        self.factor = factor
        #: per level: (min value, min raw index, max value, max raw index)
        self._levels: list[tuple[GrowableArray, GrowableArray, GrowableArray, GrowableArray]] = []
        self._n = 0

    def __len__(self) -> int:
        """How many raw values the pyramid has seen."""
        return self._n

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for level in self._levels for a in level)

    def level_sizes(self) -> list[int]:
        return [len(level[0]) for level in self._levels]

    def bucket_extrema(self, level: int, first: int, stop: int) -> np.ndarray:
        """Raw indices of the min and max of buckets ``first:stop`` of ``level`` (F**(level+1) points each)."""
        if level >= len(self._levels) or stop > len(self._levels[level][0]):
            raise ValueError(f"level {level}: has fewer than {stop} complete buckets")
        lv = self._levels[level]
        return np.concatenate((lv[1].view()[first:stop], lv[3].view()[first:stop]))

    def clear(self) -> None:
        self._levels.clear()
        self._n = 0

    def update(self, values: np.ndarray) -> None:
        """Add the buckets completed by ``values[len(self):]``: amortised O(new values)."""
        f = self.factor
        if len(values) < self._n:
            raise ValueError(f"values: pyramid built over {self._n} values, got only {len(values)}")
        self._n = len(values)
        below = len(values)  # element count of the level below (raw first)
        prev = None
        k = 0
        while below >= f:
            count = below // f
            if k == len(self._levels):
                self._levels.append(
                    (GrowableArray(), GrowableArray(np.int64), GrowableArray(), GrowableArray(np.int64))
                )
            level = self._levels[k]
            done = len(level[0])
            if count > done:
                lo, hi = done * f, count * f
                rows = np.arange(count - done)
                if prev is None:  # from the raw values
                    seg = values[lo:hi].reshape(-1, f)
                    base = np.arange(lo, hi, f, dtype=np.int64)
                    jmin, jmax = seg.argmin(axis=1), seg.argmax(axis=1)
                    level[0].extend(seg[rows, jmin])
                    level[1].extend(base + jmin)
                    level[2].extend(seg[rows, jmax])
                    level[3].extend(base + jmax)
                else:  # from the level below
                    vmin, imin = prev[0].view()[lo:hi].reshape(-1, f), prev[1].view()[lo:hi].reshape(-1, f)
                    vmax, imax = prev[2].view()[lo:hi].reshape(-1, f), prev[3].view()[lo:hi].reshape(-1, f)
                    jmin, jmax = vmin.argmin(axis=1), vmax.argmax(axis=1)
                    level[0].extend(vmin[rows, jmin])
                    level[1].extend(imin[rows, jmin])
                    level[2].extend(vmax[rows, jmax])
                    level[3].extend(imax[rows, jmax])
            prev = level
            below = count
            k += 1

    def _extrema_one(self, values: np.ndarray, a: int, b: int) -> tuple[int, int]:
        """:meth:`extrema` of one range, as a loop over levels (same walk, scalar)."""
        f = self.factor
        lo_v, lo_i, hi_v, hi_i = math.inf, -1, -math.inf, -1
        level = -1
        while a < b:
            if level < 0:
                vmin = vmax = values
                imin = imax = None
            else:
                lv = self._levels[level]
                vmin, imin, vmax, imax = lv[0].view(), lv[1].view(), lv[2].view(), lv[3].view()
            for s, e in ((a, min(-(-a // f) * f, b)), (max(b // f * f, a), b)):
                if s >= e:
                    continue
                j = s + int(vmin[s:e].argmin())
                if vmin[j] < lo_v:
                    lo_v, lo_i = vmin[j], j if imin is None else int(imin[j])
                j = s + int(vmax[s:e].argmax())
                if vmax[j] > hi_v:
                    hi_v, hi_i = vmax[j], j if imax is None else int(imax[j])
            a, b = -(-a // f), b // f
            level += 1
        return lo_i, hi_i

    def extrema(self, values: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw indices of the minimum and maximum of ``values[starts[i]:stops[i]]`` for every i.

        ``values`` is the array last given to :meth:`update`. An empty range gives -1 for both.
        Like a segment tree: at each level a range reads the ≤ F-1 unaligned elements at each
        of its ends (one row of F at each end) and leaves the aligned middle to the next level.
        Cost O(len(starts) · F · levels), independent of the range lengths. Ties resolve to
        any of the equal values (only the value is promised).
        """
        f = self.factor
        if len(values) != self._n:
            raise ValueError(f"values: pyramid built over {self._n} values, got {len(values)}")
        a = np.asarray(starts, dtype=np.int64)
        b = np.asarray(stops, dtype=np.int64)
        q = len(a)
        empty = np.full(q, -1, dtype=np.int64)
        if q == 0 or not (a < b).any():
            return empty, empty.copy()
        if q <= SCALAR_QUERIES:  # a frame's newest columns: a plain loop beats 25 numpy calls a level
            found = [self._extrema_one(values, int(s), int(t)) for s, t in zip(a, b, strict=True)]
            return np.array([lo for lo, _ in found], dtype=np.int64), np.array([hi for _, hi in found], dtype=np.int64)
        j = np.arange(f, dtype=np.int64)
        flat = np.arange(q)
        lo_v, lo_i, hi_v, hi_i = [], [], [], []
        level = -1
        while True:
            live = a < b
            if not live.any():
                break
            if level >= len(self._levels):  # cannot happen when the pyramid is up to date
                raise AssertionError("pyramid range query ran past the top level")
            if level < 0:
                size = len(values)
                vmin = vmax = None
            else:
                lv = self._levels[level]
                size = len(lv[0])
                vmin, vmax = lv[0].rows(f), lv[2].rows(f)
            last_row = (size - 1) // f
            # rows holding the head [a, ceil_f(a)) and the tail [floor_f(b), b) of each range
            row = np.stack((np.minimum(a // f, last_row), np.minimum(b // f, last_row)), axis=1)  # (q, 2)
            start = np.stack((a, np.maximum(b // f * f, a)), axis=1)[:, :, None]
            stop = np.stack((np.minimum(-(-a // f) * f, b), b), axis=1)[:, :, None]
            pos = row[:, :, None] * f + j  # (q, 2, f) element positions at this level
            ok = ((pos >= start) & (pos < stop)).reshape(q, 2 * f)
            pos = pos.reshape(q, 2 * f)
            if vmin is None:  # raw values: gather the two runs of f elements directly
                run_min = run_max = values[np.minimum(pos, size - 1)]
            else:  # one row of f at each end of each range
                run_min, run_max = vmin[row].reshape(q, 2 * f), vmax[row].reshape(q, 2 * f)
            cand = np.where(ok, run_min, np.inf)
            k = cand.argmin(axis=1)
            lo_v.append(cand[flat, k])
            lo_i.append(pos[flat, k])
            cand = np.where(ok, run_max, -np.inf)
            k = cand.argmax(axis=1)
            hi_v.append(cand[flat, k])
            hi_i.append(pos[flat, k])
            if level >= 0:  # level positions -> raw indices
                lo_i[-1] = lv[1].view()[np.minimum(lo_i[-1], size - 1)]
                hi_i[-1] = lv[3].view()[np.minimum(hi_i[-1], size - 1)]
            a, b = -(-a // f), b // f
            level += 1
        k = np.argmin(np.stack(lo_v), axis=0)
        lo = np.stack(lo_i)[k, flat]
        k = np.argmax(np.stack(hi_v), axis=0)
        hi = np.stack(hi_i)[k, flat]
        blank = np.asarray(starts) >= np.asarray(stops)
        lo[blank] = -1
        hi[blank] = -1
        return lo, hi


def column_edges(x0: float, x1: float, pixels: int) -> np.ndarray:
    """The ``pixels + 1`` x edges of equal columns spanning [x0, x1]."""
    return np.linspace(x0, x1, pixels + 1)


def paired(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sorted indices of per-column (min, max) pairs, empty columns (-1) skipped, no repeats.

    Columns are in x order and each pair is put in time order, so the result is sorted.
    """
    keep = lo >= 0
    picked = np.stack((np.minimum(lo, hi), np.maximum(lo, hi)), axis=1)[keep].ravel()
    if len(picked) > 1:
        picked = picked[np.concatenate(([True], picked[1:] != picked[:-1]))]
    return picked


class WindowColumns:
    """Exact min/max per pixel column of a fixed x-window, kept up to date as points arrive.

    Column c holds the points with ``edges[c] <= x < edges[c+1]`` (the last column also
    takes x == edges[-1]). Building costs O(columns · F · log_F N); after that, new points
    (x non-decreasing) only change the columns from the one holding the first new point on,
    so a zoomed or panned view that data streams into costs O(new columns) per frame.
    """

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self._bounds = np.zeros(len(self.edges), dtype=np.int64)
        self._lo = np.full(len(self.edges) - 1, -1, dtype=np.int64)
        self._hi = self._lo.copy()
        self._n = 0

    def update(self, x: np.ndarray, y: np.ndarray, pyramid: MinMaxPyramid) -> bool:
        """Take in the points appended since the last call; whether any column changed."""
        n = len(x)
        if n == self._n:
            return False
        old = self._n
        first = 0 if old == 0 else max(int(np.searchsorted(self.edges, x[old], side="left")) - 1, 0)
        self._n = n
        columns = len(self.edges) - 1
        if first >= columns:  # all new points lie past the window: only the right neighbour may appear
            return old > 0 and self._bounds[-1] == old
        # columns [first, upto) can hold points; those past the newest point stay empty
        upto = max(min(int(np.searchsorted(self.edges, x[-1], side="right")), columns), first)
        bounds = np.searchsorted(x, self.edges[first : upto + 1], side="left")
        if upto == columns:
            bounds[-1] = np.searchsorted(x, self.edges[-1], side="right")
        self._bounds[first : upto + 1] = bounds
        self._bounds[upto + 1 :] = n
        self._lo[first:upto], self._hi[first:upto] = pyramid.extrema(y, bounds[:-1], bounds[1:])
        self._lo[upto:] = -1
        self._hi[upto:] = -1
        return True

    def indices(self) -> np.ndarray:
        """Sorted raw indices to draw: each column's min and max, and the nearest point outside
        each end of the window (so the line reaches its borders). At most 2 · columns + 2."""
        picked = paired(self._lo, self._hi)
        before = [self._bounds[0] - 1] if self._bounds[0] > 0 else []
        after = [self._bounds[-1]] if self._bounds[-1] < self._n else []
        return np.concatenate((np.array(before, dtype=np.int64), picked, np.array(after, dtype=np.int64)))


def window_indices(x: np.ndarray, y: np.ndarray, pyramid: MinMaxPyramid, edges: np.ndarray) -> np.ndarray:
    """Sorted raw indices to draw a monotonic-x curve in the columns bounded by ``edges``.

    See :class:`WindowColumns` (this builds one from scratch).
    """
    if len(x) == 0:
        return np.empty(0, dtype=np.int64)
    window = WindowColumns(edges)
    window.update(x, y, pyramid)
    return window.indices()


def index_decimate(n: int, buckets: int, pyramids: list[tuple[np.ndarray, MinMaxPyramid]]) -> np.ndarray:
    """Sorted indices for a curve of ``n`` points cut into ``buckets`` equal index ranges.

    Each range keeps the indices of the extremes of every given (values, pyramid) pair -- x
    and y for a Nyquist or I–E curve -- so the curve's outline survives in both directions.
    Every index is kept when ``n`` is at most ``buckets``.
    """
    if n <= buckets:
        return np.arange(n, dtype=np.int64)
    bounds = np.linspace(0, n, buckets + 1).astype(np.int64)
    parts = []
    for values, pyramid in pyramids:
        parts.extend(pyramid.extrema(values, bounds[:-1], bounds[1:]))
    picked = np.unique(np.concatenate([*parts, np.array([0, n - 1], dtype=np.int64)]))
    return picked[picked >= 0]


class ColumnEnvelope:
    """Exact min/max per column of a growing grid over a monotonic-x curve, updated incrementally.

    The live view of a streaming curve shows the whole curve (x auto-ranges), so its window
    moves every frame; pixel-exact columns would then be recomputed from scratch every frame,
    and at 10⁷ points that is cache misses all over 200 MB (≈ 3 ms per curve). This grid is
    anchored at the first x with a column width ``dx``: finished columns never change, so a
    frame only recomputes the last open column and the new ones (O(new points)); when the
    curve outgrows ``2 · target`` columns, ``dx`` doubles (×2**k) and groups of columns merge
    exactly (min of mins). Between ``target`` and ``2 · target`` columns cover the curve, i.e.
    1–2 columns per pixel for ``target`` = pixel width, each drawn as its min and max point in
    time order: ≤ 4 · target + 2 points.

    Edges are ``x0 + c * dx`` for integer c; doubling dx is exact in binary floating point,
    so a merged column holds exactly the points of the two columns it replaces.
    """

    def __init__(self, target: int) -> None:
        if target < 1:
            raise ValueError(f"target: must be ≥ 1, got {target}")
        self.target = target
        self.x0 = 0.0
        self.dx = 0.0  # 0: not yet defined (fewer than two distinct x)
        self._lo_i = GrowableArray(np.int64)
        self._hi_i = GrowableArray(np.int64)
        self._lo_y = GrowableArray()
        self._hi_y = GrowableArray()

    @property
    def columns(self) -> int:
        return len(self._lo_i)

    def edges(self) -> np.ndarray:
        """x edges of the columns (``columns + 1`` values)."""
        return self.x0 + np.arange(self.columns + 1) * self.dx

    def update(self, x: np.ndarray, y: np.ndarray, pyramid: MinMaxPyramid) -> None:
        """Take in the points appended since the last call (``pyramid`` must be up to date)."""
        n = len(x)
        if n == 0:
            return
        if self.dx == 0.0:
            self.x0 = float(x[0])
            span = float(x[-1]) - self.x0
            if span <= 0.0:
                return
            self.dx = span / self.target
        last = int((float(x[-1]) - self.x0) // self.dx)  # column of the newest point
        if last + 1 > 2 * self.target:
            factor = 1 << math.ceil(math.log2((last + 1) / (2 * self.target)))
            self._merge(factor)
            last //= factor
        first = max(self.columns - 1, 0)  # the open column is recomputed
        edges = self.x0 + np.arange(first, last + 2) * self.dx
        bounds = np.searchsorted(x, edges, side="left")
        bounds[-1] = n
        lo, hi = pyramid.extrema(y, bounds[:-1], bounds[1:])
        for buf, new in ((self._lo_i, lo), (self._hi_i, hi)):
            buf.truncate(first)
            buf.extend(new)
        for buf, idx, empty in ((self._lo_y, lo, np.inf), (self._hi_y, hi, -np.inf)):
            buf.truncate(first)
            buf.extend(np.where(idx >= 0, y[idx], empty))

    def _merge(self, factor: int) -> None:
        """Widen the columns ``factor`` times, merging groups of columns exactly."""
        count = self.columns
        groups = -(-count // factor)
        self.dx *= factor
        if count == 0:
            return
        rows = np.arange(groups)
        merged = []
        for idx_buf, y_buf, fill, pick in (
            (self._lo_i, self._lo_y, np.inf, np.argmin),
            (self._hi_i, self._hi_y, -np.inf, np.argmax),
        ):
            ys = np.full(groups * factor, fill)
            ys[:count] = y_buf.view()
            idx = np.full(groups * factor, -1, dtype=np.int64)
            idx[:count] = idx_buf.view()
            j = pick(ys.reshape(groups, factor), axis=1)
            merged.append((idx.reshape(groups, factor)[rows, j], ys.reshape(groups, factor)[rows, j]))
        for buf, new in (
            (self._lo_i, merged[0][0]),
            (self._lo_y, merged[0][1]),
            (self._hi_i, merged[1][0]),
            (self._hi_y, merged[1][1]),
        ):
            buf.clear()
            buf.extend(new)

    def indices(self) -> np.ndarray:
        """Sorted raw indices of every column's min and max (empty columns skipped)."""
        return paired(self._lo_i.view(), self._hi_i.view())
