"""The min/max decimator of the live plots (gui/decimate.py), against brute force over random data.

Every property is checked over several draws of a seeded RNG: exact extrema of arbitrary
ranges, exact per-column envelopes, single-sample spikes kept, incremental building equal to
building from scratch, and the bounds on points drawn and memory held. No timing here (the
speed is bench/gui_fps.py's business).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gui.decimate import (
    FACTOR,
    ColumnEnvelope,
    GrowableArray,
    MinMaxPyramid,
    WindowColumns,
    index_decimate,
    window_indices,
)

SEEDS = np.random.default_rng(20261204).integers(0, 2**31, 8)


def monotonic_x(rng: np.random.Generator, n: int) -> np.ndarray:
    """Non-decreasing x with repeated values and gaps, as real time stamps can have."""
    steps = rng.exponential(1.0, n) * (rng.random(n) < 0.8)  # 20 % repeats
    steps[rng.random(n) < 0.002] *= 500  # a few long gaps (a paused run)
    return np.cumsum(steps) + rng.normal(0, 100)


def values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise, a random walk, or coarse integers (many ties) -- each draw picks one."""
    kind = rng.integers(3)
    if kind == 0:
        return rng.normal(size=n)
    if kind == 1:
        return np.cumsum(rng.normal(size=n))
    return rng.integers(-3, 4, n).astype(float)


def built(y: np.ndarray, rng: np.random.Generator, factor: int = FACTOR) -> MinMaxPyramid:
    """A pyramid fed in random batches, as a live curve feeds it."""
    pyramid = MinMaxPyramid(factor)
    i = 0
    while i < len(y):
        i = min(len(y), i + int(rng.integers(1, 2000)))
        pyramid.update(y[:i])
    return pyramid


def column_extremes(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> list[tuple[float, float] | None]:
    """Brute force: (min, max) of y per column [edges[c], edges[c+1]) (last one closed)."""
    out: list[tuple[float, float] | None] = []
    for c in range(len(edges) - 1):
        last = c == len(edges) - 2
        inside = (x >= edges[c]) & ((x <= edges[c + 1]) if last else (x < edges[c + 1]))
        out.append((y[inside].min(), y[inside].max()) if inside.any() else None)
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_extrema_of_any_range_equal_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    factor = int(rng.choice([2, 3, 8, 16]))
    n = int(rng.integers(1, 30_000))
    y = values(rng, n)
    pyramid = built(y, rng, factor)
    a = rng.integers(0, n + 1, 400)
    b = rng.integers(0, n + 1, 400)
    starts, stops = np.minimum(a, b), np.maximum(a, b)
    starts[:20] = stops[:20]  # some empty ranges
    starts[20:30], stops[20:30] = 0, n  # the whole array
    lo, hi = pyramid.extrema(y, starts, stops)  # vectorised
    few = [pyramid.extrema(y, starts[i : i + 3], stops[i : i + 3]) for i in range(0, 400, 3)]  # scalar loop
    lo_few, hi_few = np.concatenate([f[0] for f in few]), np.concatenate([f[1] for f in few])
    for s, t, *found in zip(starts, stops, lo, hi, lo_few, hi_few, strict=True):
        for i_lo, i_hi in (found[:2], found[2:]):
            if s == t:
                assert i_lo == i_hi == -1
                continue
            assert s <= i_lo < t and s <= i_hi < t
            assert y[i_lo] == y[s:t].min()
            assert y[i_hi] == y[s:t].max()


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_incremental_pyramid_equals_one_built_at_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10_000, 100_000))
    y = rng.normal(size=n)  # distinct values: the indices themselves must agree
    once = MinMaxPyramid()
    once.update(y)
    grown = built(y, rng)
    assert grown.level_sizes() == once.level_sizes()
    assert once.level_sizes()[0] == n // FACTOR
    for level, size in enumerate(once.level_sizes()):
        assert np.array_equal(grown.bucket_extrema(level, 0, size), once.bucket_extrema(level, 0, size))


def test_pyramid_refuses_values_it_was_not_built_on() -> None:
    pyramid = MinMaxPyramid()
    pyramid.update(np.zeros(100))
    with pytest.raises(ValueError, match="values"):
        pyramid.extrema(np.zeros(99), np.array([0]), np.array([5]))
    with pytest.raises(ValueError, match="factor"):
        MinMaxPyramid(1)


@pytest.mark.parametrize("seed", SEEDS)
def test_window_columns_hold_the_raw_min_and_max(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2_000, 60_000))
    x, y = monotonic_x(rng, n), values(rng, n)
    pyramid = built(y, rng)
    for _ in range(4):  # windows inside, across either end, and around the whole curve
        x0, x1 = np.sort(rng.uniform(x[0] - 0.1 * (x[-1] - x[0]), x[-1] + 0.1 * (x[-1] - x[0]), 2))
        columns = int(rng.integers(5, 700))
        edges = np.linspace(x0, x1, columns + 1)
        idx = window_indices(x, y, pyramid, edges)
        assert np.all(np.diff(idx) > 0), "indices sorted, no repeats"
        assert len(idx) <= 2 * columns + 2
        for c, expected in enumerate(column_extremes(x, y, edges)):
            last = c == columns - 1
            mine = idx[(x[idx] >= edges[c]) & ((x[idx] <= edges[c + 1]) if last else (x[idx] < edges[c + 1]))]
            if expected is None:
                assert len(mine) == 0
            else:
                assert (y[mine].min(), y[mine].max()) == expected
        # the neighbours outside the window are drawn so the line reaches its borders
        before, after = np.flatnonzero(x < x0), np.flatnonzero(x > x1)
        if len(before):
            assert before[-1] in idx
        if len(after):
            assert after[0] in idx
        assert len(idx) == 0 or (x[idx] >= x0).sum() + (x[idx] > x1).sum() >= len(idx) - 1


@pytest.mark.parametrize("seed", SEEDS)
def test_window_columns_updated_as_data_streams_in_equal_a_fresh_build(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5_000, 60_000))
    x, y = monotonic_x(rng, n), values(rng, n)
    x0, x1 = np.sort(rng.uniform(x[0], x[-1], 2))
    edges = np.linspace(x0, x1, int(rng.integers(5, 500)) + 1)
    window, pyramid = WindowColumns(edges), MinMaxPyramid()
    i = int(rng.integers(1, n // 4))
    pyramid.update(y[:i])
    assert window.update(x[:i], y[:i], pyramid) is True
    while True:
        fresh = window_indices(x[:i], y[:i], pyramid, edges)
        assert np.array_equal(window.indices(), fresh), f"after {i} points"
        assert window.update(x[:i], y[:i], pyramid) is False, "nothing new, nothing changed"
        if i == n:
            break
        before = window.indices()
        i = min(n, i + int(rng.choice([1, 40, 2000])))
        pyramid.update(y[:i])
        changed = window.update(x[:i], y[:i], pyramid)
        if not changed:
            assert np.array_equal(window.indices(), before), "reported unchanged, but it changed"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_single_sample_spike_is_drawn_at_every_zoom(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200_000
    x = np.arange(n) * 1e-3
    y = 3.0 + rng.normal(0, 1e-3, n)
    at = int(rng.integers(0, n))
    y[at] = 3.0 + rng.choice([-1, 1]) * 0.3  # nucleation dip or short: one sample
    pyramid = MinMaxPyramid()
    pyramid.update(y)
    for half_width in (1e-3, 0.05, 1.0, 30.0, 200.0):  # from 3 samples to the whole curve
        centre = x[at] + rng.uniform(-0.9, 0.9) * half_width
        edges = np.linspace(centre - half_width, centre + half_width, 501)
        idx = window_indices(x, y, pyramid, edges)
        assert at in idx, f"spike lost in a window of ±{half_width}"
    envelope = ColumnEnvelope(500)
    envelope.update(x, y, pyramid)
    assert at in envelope.indices()


@pytest.mark.parametrize("seed", SEEDS)
def test_column_envelope_grown_in_batches_is_exact_and_bounded(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1_000, 80_000))
    x, y = monotonic_x(rng, n), values(rng, n)
    target = int(rng.integers(10, 800))
    envelope, pyramid = ColumnEnvelope(target), MinMaxPyramid()
    i = 0
    while i < n:  # batches from one point to a big block
        i = min(n, i + int(rng.choice([1, 40, 3000])))
        pyramid.update(y[:i])
        envelope.update(x[:i], y[:i], pyramid)
    assert target <= envelope.columns <= 2 * target
    idx = envelope.indices()
    assert np.all(np.diff(idx) > 0)
    assert len(idx) <= 2 * envelope.columns
    edges = envelope.edges()
    assert edges[0] == x[0] and edges[-1] >= x[-1]
    for c, expected in enumerate(column_extremes(x, y, edges)):
        last = c == envelope.columns - 1
        mine = idx[(x[idx] >= edges[c]) & ((x[idx] <= edges[c + 1]) if last else (x[idx] < edges[c + 1]))]
        if expected is None:
            assert len(mine) == 0
        else:
            assert (y[mine].min(), y[mine].max()) == expected
    # the same grid built from all the points at once gives the same envelope values
    fresh = ColumnEnvelope(target)
    fresh.x0, fresh.dx = envelope.x0, envelope.dx
    fresh.update(x, y, pyramid)
    assert fresh.columns == envelope.columns
    assert np.array_equal(fresh._lo_y.view(), envelope._lo_y.view())
    assert np.array_equal(fresh._hi_y.view(), envelope._hi_y.view())


def test_column_envelope_waits_for_two_distinct_x() -> None:
    envelope, pyramid = ColumnEnvelope(10), MinMaxPyramid()
    x, y = np.full(5, 2.0), np.arange(5.0)
    pyramid.update(y)
    envelope.update(x, y, pyramid)
    assert envelope.columns == 0 and len(envelope.indices()) == 0


@pytest.mark.parametrize("seed", SEEDS[:5])
def test_index_buckets_keep_the_x_and_y_extremes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5_000, 50_000))
    phase = np.linspace(0, 12 * np.pi, n)  # a cyclic voltammogram: x goes back and forth
    x = np.sin(phase) + rng.normal(0, 0.01, n)
    y = np.cos(phase) * x + rng.normal(0, 0.01, n)
    buckets = int(rng.integers(50, 1000))
    pyramids = []
    for v in (x, y):
        p = MinMaxPyramid()
        p.update(v)
        pyramids.append((v, p))
    idx = index_decimate(n, buckets, pyramids)
    assert np.all(np.diff(idx) > 0) and idx[0] == 0 and idx[-1] == n - 1
    assert len(idx) <= 4 * buckets + 2
    bounds = np.linspace(0, n, buckets + 1).astype(np.int64)
    for s, t in itertools.pairwise(bounds):
        mine = idx[(idx >= s) & (idx < t)]
        for v in (x, y):
            assert v[mine].min() == v[s:t].min() and v[mine].max() == v[s:t].max()
    assert np.array_equal(index_decimate(300, 1000, pyramids[:0]), np.arange(300))


def test_growable_array_grows_in_chunks_with_bounded_slack() -> None:
    buf = GrowableArray(capacity=16)
    reallocations, data = 0, buf.view().base
    rng = np.random.default_rng(7)
    expected = []
    for _ in range(3000):
        chunk = rng.normal(size=int(rng.integers(1, 200)))
        expected.append(chunk)
        buf.extend(chunk)
        if buf.view().base is not data:
            reallocations, data = reallocations + 1, buf.view().base
        assert buf.nbytes <= max(1.5 * len(buf), 16) * 8 + 200 * 8
    assert np.array_equal(buf.view(), np.concatenate(expected))
    assert reallocations <= np.log(len(buf) / 16) / np.log(1.5) + 2  # geometric, not per append


def test_pyramid_memory_is_a_fraction_of_the_raw_data() -> None:
    n = 1_000_000
    pyramid = MinMaxPyramid()
    pyramid.update(np.random.default_rng(3).normal(size=n))
    raw = 16 * n  # x and y float64
    assert pyramid.nbytes <= 0.35 * raw  # 32 B per bucket of 8, N/7 buckets: 0.29 (+ growth slack)
    assert sum(pyramid.level_sizes()) <= n / (FACTOR - 1)
