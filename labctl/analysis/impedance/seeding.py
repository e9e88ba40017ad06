"""Global seeds for the least-squares fit by variable projection: for fixed time
constants and exponents Z is linear in the resistances, so a grid over the non-linear
parameters with batched weighted linear solves finds every basin."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np

from labctl.analysis.impedance.circuits import CircuitSpec
from labctl.analysis.impedance.constants import _TAU_D_MIN_RATIO, _TAU_D_MIN_S
from labctl.analysis.impedance.elements import _tanh_ratio
from labctl.analysis.impedance.parameterisation import _Data, _from_theta, _to_theta


def _weighted_rows(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Complex (..., N) -> real (..., 2N): real parts then imaginary parts, times 1/|Z|."""
    return np.concatenate([v.real * w, v.imag * w], axis=-1)


def _profile_minima(profile: np.ndarray, n_best: int) -> list[int]:
    """Indices of the lowest local minima of a 1-D cost profile (distinct basins)."""
    idx = []
    for i in range(profile.size):
        left = profile[i - 1] if i > 0 else np.inf
        right = profile[i + 1] if i + 1 < profile.size else np.inf
        if np.isfinite(profile[i]) and profile[i] <= left and profile[i] <= right:
            idx.append(i)
    idx.sort(key=lambda i: profile[i])
    return idx[:n_best]


def _banked_lstsq(banks: list[np.ndarray], index: list[np.ndarray], b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched weighted least squares where column c of grid point g is row index[c][g] of
    banks[c] (shape (K_c, M)). The normal equations are assembled from the small bank-by-bank
    Gram products, so the (G, M, C) design matrix is never built. Returns coefficients (G, C)
    and residual costs (G,)."""
    n_cols = len(banks)
    grams = {(i, j): banks[i] @ banks[j].T for i in range(n_cols) for j in range(i, n_cols)}
    return _gram_lstsq(grams, [bank @ b for bank in banks], index, float(b @ b))


def _gram_lstsq(
    grams: dict[tuple[int, int], np.ndarray], gbs: list[np.ndarray], index: list[np.ndarray], bb: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_banked_lstsq` from precomputed bank products: ``grams[i, j]`` = banks[i] @
    banks[j].T (i <= j), ``gbs[i]`` = banks[i] @ b, ``bb`` = b @ b (so that solves over
    subsets of the columns reuse them)."""
    n_cols = len(index)
    g = index[0].size
    ata = np.empty((g, n_cols, n_cols))
    atb = np.empty((g, n_cols))
    for i in range(n_cols):
        atb[:, i] = gbs[i][index[i]]
        for j in range(i, n_cols):
            ata[:, i, j] = ata[:, j, i] = grams[i, j][index[i], index[j]]
    scale = np.sqrt(np.einsum("gii->gi", ata)) + 1e-300  # unit-normalised columns
    ata /= scale[:, :, None] * scale[:, None, :]
    atb /= scale
    ata += 1e-10 * np.eye(n_cols)[None]
    coef = np.linalg.solve(ata, atb[..., None])[..., 0]
    cost = bb - np.einsum("gj,gj->g", coef, atb)
    return coef / scale, cost


def _grid_seeds(spec: CircuitSpec, data: _Data, n_best: int = 3) -> list[np.ndarray]:
    """Global starting points by variable projection over (τ_i, n_i, n_dl).

    For fixed time constants and exponents the circuit is linear in (R0, L, R_i, 1/Q_dl), so
    every grid point costs one small weighted linear least-squares solve; all of them are done
    as one batched solve of the normal equations. The seeds are the best points of distinct
    basins along the bulk time constant (local minima of the cost profile over ln τ1): the
    single best grid point is often a low-frequency arc imitating the spike while the true
    high-frequency arc sits in a neighbouring basin.
    """
    if spec.interface or spec.diffusion:
        return _grid_seeds_li(spec, data, n_best)
    if spec.leakage:
        return _leakage_seeds(spec, data, n_best)
    grid = _blocking_grid(spec, data)
    coef, cost = _solve_blocking_grid(spec, data, grid)
    picks, best_inner = _best_per_basin(spec, grid, coef, cost, n_best)
    return [
        _to_theta(
            spec, _blocking_seed(spec, data, grid, coef[o * grid.inner + int(best_inner[o])], o, best_inner[o]), data
        )
        for o in picks
    ]


@dataclass
class _BlockingGrid:
    """The grid of a blocking circuit: ``outer`` arc (τ, n) points × ``inner`` spike exponents.

    ``labels`` holds the arcs' ln τ and n per outer point; ``arc_banks`` the weighted arc
    columns with, per outer point, the bank row to use.
    """

    labels: dict[str, np.ndarray]
    arc_banks: list[tuple[np.ndarray, np.ndarray]]
    outer: int
    inner: int
    n_dl: np.ndarray


def _blocking_grid(spec: CircuitSpec, data: _Data) -> _BlockingGrid:
    ln_jw, w = data.ln_jw, data.w
    f_lo, f_hi = float(data.freq[-1]), float(data.freq[0])
    ln_tau = np.linspace(
        math.log(1e-3 / (2 * np.pi * f_hi)),
        math.log(3.0 / (2 * np.pi * f_lo)),
        max(8, int(4 * math.log10(3e3 * f_hi / f_lo))),
    )
    n_dl = np.arange(0.40, 1.0001, 0.05) if spec.spike else np.zeros(1)
    n_arc = np.array([0.7, 0.8, 0.9, 1.0])

    def arc_rows(t: np.ndarray, n: np.ndarray) -> np.ndarray:
        return _weighted_rows(1.0 / (1.0 + np.exp(n[:, None] * (ln_jw[None, :] + t[:, None]))), w)

    # grid = outer (arc time constants/exponents) x inner (spike exponent)
    labels: dict[str, np.ndarray] = {}
    arc_banks: list[tuple[np.ndarray, np.ndarray]] = []  # (bank, outer -> bank row)
    if spec.n_arcs == 1:
        t, n = (x.ravel() for x in np.meshgrid(ln_tau, n_arc, indexing="ij"))
        outer = t.size
        arc_banks.append((arc_rows(t, n), np.arange(outer)))
        labels.update(t1=t, n1=n)
    elif spec.n_arcs == 2:
        coarse = ln_tau[::2]
        bank = arc_rows(coarse, np.full(coarse.size, 0.9))
        i1, i2 = np.triu_indices(coarse.size, k=1)
        outer = i1.size
        arc_banks += [(bank, i1), (bank, i2)]
        labels.update(t1=coarse[i1], n1=np.full(outer, 0.9), t2=coarse[i2], n2=np.full(outer, 0.9))
    else:
        outer = 1
    inner = n_dl.size if spec.spike else 1
    return _BlockingGrid(labels, arc_banks, outer, inner, n_dl)


def _solve_blocking_grid(spec: CircuitSpec, data: _Data, grid: _BlockingGrid) -> tuple[np.ndarray, np.ndarray]:
    """Linear coefficients (R0, [L], R_i, [1/Q_dl]) and cost of every grid point, with L >= 0."""
    w = data.w
    o_idx, i_idx = (x.ravel() for x in np.meshgrid(np.arange(grid.outer), np.arange(grid.inner), indexing="ij"))
    zero = np.zeros(o_idx.size, dtype=int)
    banks = [_weighted_rows(np.ones(data.n, dtype=complex), w)[None, :]]
    index = [zero]
    if spec.inductance:
        banks.append(_weighted_rows(1j * data.omega, w)[None, :])
        index.append(zero)
    for bank, rows in grid.arc_banks:
        banks.append(bank)
        index.append(rows[o_idx])
    if spec.spike:
        banks.append(_weighted_rows(np.exp(-grid.n_dl[:, None] * data.ln_jw[None, :]), w))
        index.append(i_idx)
    b = _weighted_rows(data.z, w)
    coef, cost = _banked_lstsq(banks, index, b)
    if spec.inductance:
        # L >= 0: where the free solve wants a negative L (imitating a capacitive tail),
        # use the solve without the L column, i.e. L = 0
        coef0, cost0 = _banked_lstsq(banks[:1] + banks[2:], index[:1] + index[2:], b)
        neg = coef[:, 1] < 0
        coef[neg] = np.insert(coef0[neg], 1, 0.0, axis=1)
        cost[neg] = cost0[neg]
    return coef, cost


def _best_per_basin(
    spec: CircuitSpec, grid: _BlockingGrid, coef: np.ndarray, cost: np.ndarray, n_best: int
) -> tuple[list[int], np.ndarray]:
    """The outer grid points to seed from (best of each basin along ln τ1) and, per outer
    point, its best spike exponent; points with a negative resistance or Q_dl are out."""
    first_arc = 1 + int(spec.inductance)
    valid = np.all(coef[:, first_arc : first_arc + spec.n_arcs] > 0, axis=1)
    if spec.spike:
        valid &= coef[:, -1] > 0
    cost = np.where(valid, cost, np.inf).reshape(grid.outer, grid.inner)
    best_inner = np.argmin(cost, axis=1)
    best_cost = cost[np.arange(grid.outer), best_inner]
    if spec.n_arcs == 0:
        return ([0] if np.isfinite(best_cost[0]) else []), best_inner
    t1_values = np.unique(grid.labels["t1"])
    pos = np.searchsorted(t1_values, grid.labels["t1"])
    profile = np.full(t1_values.size, np.inf)
    arg = np.zeros(t1_values.size, dtype=int)
    for o in np.argsort(best_cost)[::-1]:  # the lowest cost per tau1 is written last
        profile[pos[o]] = best_cost[o]
        arg[pos[o]] = o
    return [int(arg[i]) for i in _profile_minima(profile, n_best)], best_inner


def _blocking_seed(
    spec: CircuitSpec, data: _Data, grid: _BlockingGrid, cf: np.ndarray, o: int, inner: int
) -> dict[str, float]:
    """Circuit parameters of one grid point from its linear coefficients ``cf``."""
    params: dict[str, float] = {"R0": max(float(cf[0]), 1e-6 * data.rscale)}  # R0 >= 0
    i = 1
    if spec.inductance:
        params["L"] = max(float(cf[i]), 1e-6 * data.lscale)
        i += 1
    for j in range(1, spec.n_arcs + 1):
        r, n = float(cf[i]), float(grid.labels[f"n{j}"][o])
        params.update({f"R{j}": r, f"Q{j}": math.exp(n * grid.labels[f"t{j}"][o]) / r, f"n{j}": n})
        i += 1
    if spec.spike:
        params["Qdl"] = 1.0 / float(cf[i])
        params["ndl"] = float(grid.n_dl[inner])
    return params


def _tau_grid(data: _Data) -> np.ndarray:
    """ln τ of the arc grid: from 1e-3/ω_max to 3/ω_min, about 4 points per decade."""
    f_lo, f_hi = float(data.freq[-1]), float(data.freq[0])
    return np.linspace(
        math.log(1e-3 / (2 * np.pi * f_hi)),
        math.log(3.0 / (2 * np.pi * f_lo)),
        max(8, int(4 * math.log10(3e3 * f_hi / f_lo))),
    )


def _grid_seeds_li(
    spec: CircuitSpec,
    data: _Data,
    n_best: int = 3,
    bases: tuple[np.ndarray, ...] = (),
    one_arc_seeds: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Variable-projection seeds for circuits with an interfacial arc and a Warburg.

    One arc (+ Warburg): a grid over the arc's (τ, n) and the Warburg's τD, linear in R0, L,
    the arc resistance and RD (Z_D/RD = tanh(√(jωτD))/√(jωτD) depends on τD alone).
    Seeds: the best point of each of the lowest basins of the cost profile over the arc's τ,
    and of the profile over τD (see the module docstring for why both).

    Two arcs (bulk + interface): a second arc is added to one-arc solutions (the one-arc
    grid seeds and the refined one-arc fits passed as ``bases``, in the one-arc parameter
    layout), with the base's non-linear parameters held and a grid over the new arc's
    (τ, n). Holding what one arc already explains is what finds a second, smaller arc
    anywhere in the band: a joint two-arc grid coarse enough to be cheap lets the pair
    share the dominant arc and leaves the small one to the Warburg. Seeds: the best point
    of each refined base, and the basins of the profile over the new arc's τ across all
    bases. ``one_arc_seeds``: the one-arc grid seeds if already computed.
    """
    if not spec.diffusion or len(spec.arc_labels) not in (1, 2):
        raise ValueError(f"no seeding for circuit {spec.name}")
    if len(spec.arc_labels) == 1:
        return _one_arc_seeds(spec, data, n_best)
    one = replace(spec, n_arcs=0, interface=True)
    if one_arc_seeds is None:
        one_arc_seeds = _one_arc_seeds(one, data, n_best)
    return _add_arc_seeds(spec, one, data, [*bases, *one_arc_seeds], n_best, own_best=len(bases))


def _one_arc_seeds(spec: CircuitSpec, data: _Data, n_best: int) -> list[np.ndarray]:
    """Seeds of R0-[L]-p(R,CPE)-Ws from a grid over (τ, n) x τD."""
    ln_jw, w = data.ln_jw, data.w
    ln_tau = _tau_grid(data)
    t, n = (x.ravel() for x in np.meshgrid(ln_tau, np.array([0.7, 0.8, 0.9, 1.0]), indexing="ij"))
    ln_td = _tau_d_grid(data)
    outer, inner = t.size, ln_td.size
    o_idx, i_idx = (x.ravel() for x in np.meshgrid(np.arange(outer), np.arange(inner), indexing="ij"))
    cols = _li_columns(spec, data, o_idx.size)
    cols.add(_arc_rows(ln_jw, w, t, n), o_idx, positive=True)
    cols.add(_weighted_rows(_tanh_ratio(np.exp(0.5 * (ln_td[:, None] + ln_jw[None, :]))), w), i_idx, nonneg=True)
    coef, cost = cols.solve(_weighted_rows(data.z, w))
    cost[ln_td[i_idx] < t[o_idx] + math.log(_TAU_D_MIN_RATIO)] = np.inf  # diffusion slower than the arc

    cost2 = cost.reshape(outer, inner)
    best_inner = np.argmin(cost2, axis=1)
    picks = [(o, int(best_inner[o])) for o in _profile_picks(t, cost2[np.arange(outer), best_inner], n_best)]
    best_outer = np.argmin(cost2, axis=0)
    td_profile = cost2[best_outer, np.arange(inner)]
    picks += [(int(best_outer[i]), i) for i in _profile_minima(td_profile, n_best)]

    seeds = []
    for o, i in dict.fromkeys(picks):  # distinct, in order
        cf = coef[o * inner + i]
        params = _linear_params(spec, data, cf)
        r = float(cf[-2])
        params.update({"Rint": r, "Qint": math.exp(n[o] * t[o]) / r, "nint": float(n[o])})
        params.update({"RD": max(float(cf[-1]), 1e-6 * data.rscale), "tauD": math.exp(float(ln_td[i]))})
        seeds.append(_to_theta(spec, params, data))
    return seeds


def _add_arc_seeds(
    spec: CircuitSpec, one: CircuitSpec, data: _Data, bases: list[np.ndarray], n_best: int, own_best: int
) -> list[np.ndarray]:
    """Seeds of the two-arc circuit: the arc of each one-arc base held, a new arc on a (τ, n)
    grid and τD on its grid again (a one-arc fit often has its Warburg imitating the arc it
    lacks, so its τD is no guide); the first ``own_best`` bases each contribute their best
    point, the others only through the profiles over the new arc's τ and over τD."""
    ln_jw, w = data.ln_jw, data.w
    bp = [_from_theta(one, b, data) for b in bases]
    arcs = {(round(math.log(q["Rint"] * q["Qint"]) / q["nint"], 6), q["nint"]): None for q in bp}
    if not arcs:
        return []
    old_t, old_n = (np.array(x) for x in zip(*arcs, strict=True))
    n_own = len(dict.fromkeys(list(arcs)[:own_best]))  # distinct arcs among the refined bases
    ln_tau = _tau_grid(data)
    t, n = (x.ravel() for x in np.meshgrid(ln_tau, np.array([0.8, 0.9, 1.0]), indexing="ij"))
    ln_td = _tau_d_grid(data)
    k_idx, o_idx, i_idx = (
        x.ravel() for x in np.meshgrid(np.arange(old_t.size), np.arange(t.size), np.arange(ln_td.size), indexing="ij")
    )
    cols = _li_columns(spec, data, k_idx.size)
    cols.add(_arc_rows(ln_jw, w, t, n), o_idx, positive=True)
    cols.add(_arc_rows(ln_jw, w, old_t, old_n), k_idx, positive=True)
    cols.add(_weighted_rows(_tanh_ratio(np.exp(0.5 * (ln_td[:, None] + ln_jw[None, :]))), w), i_idx, nonneg=True)
    coef, cost = cols.solve(_weighted_rows(data.z, w))
    cost[ln_td[i_idx] < np.maximum(t[o_idx], old_t[k_idx]) + math.log(_TAU_D_MIN_RATIO)] = np.inf

    cost3 = cost.reshape(old_t.size, t.size, ln_td.size)
    flat = cost3.reshape(old_t.size * t.size, ln_td.size)
    best_i = np.argmin(flat, axis=1)
    best_ko = flat[np.arange(flat.shape[0]), best_i].reshape(old_t.size, t.size)
    best_k = np.argmin(best_ko, axis=0)
    picks = [
        (int(best_k[o]), o, int(best_i[best_k[o] * t.size + o]))
        for o in _profile_picks(t, best_ko[best_k, np.arange(t.size)], n_best)
    ]
    td_best = np.argmin(cost3.reshape(-1, ln_td.size), axis=0)
    picks += [
        (int(td_best[i] // t.size), int(td_best[i] % t.size), i)
        for i in _profile_minima(cost3.reshape(-1, ln_td.size)[td_best, np.arange(ln_td.size)], 2)
    ]
    for k in range(n_own):
        o = int(np.argmin(best_ko[k]))
        if np.isfinite(best_ko[k, o]):
            picks.append((k, o, int(best_i[k * t.size + o])))

    seeds = []
    for k, o, i in dict.fromkeys(picks):
        cf = coef[(k * t.size + o) * ln_td.size + i]
        params = _linear_params(spec, data, cf)
        r_new, r_old = float(cf[-3]), float(cf[-2])
        params.update({"R1": r_new, "Q1": math.exp(n[o] * t[o]) / r_new, "n1": float(n[o])})
        params.update({"Rint": r_old, "Qint": math.exp(old_n[k] * old_t[k]) / r_old, "nint": float(old_n[k])})
        params.update({"RD": max(float(cf[-1]), 1e-6 * data.rscale), "tauD": math.exp(float(ln_td[i]))})
        seeds.append(_to_theta(spec, params, data))
    return seeds


def _tau_d_grid(data: _Data) -> np.ndarray:
    """ln τD of the Warburg grid: from its lower bound to 1e3/ω_min, two points per decade
    (beyond 1e3/ω_min the whole band is semi-infinite and only RD/√τD matters)."""
    lo = math.log(_TAU_D_MIN_S)
    return np.arange(lo, max(math.log(1e3 / data.omega[-1]), lo) + 1e-9, math.log(10.0) / 2.0)


def _arc_rows(ln_jw: np.ndarray, w: np.ndarray, t: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Weighted rows of unit-resistance p(R,CPE) arcs with ln τ = t and exponent n."""
    return _weighted_rows(1.0 / (1.0 + np.exp(n[:, None] * (ln_jw[None, :] + t[:, None]))), w)


def _linear_params(spec: CircuitSpec, data: _Data, cf: np.ndarray) -> dict[str, float]:
    """R0 (and L) of a grid solution, floored to stay strictly inside their bounds."""
    params = {"R0": max(float(cf[0]), 1e-6 * data.rscale)}
    if spec.inductance:
        params["L"] = max(float(cf[1]), 1e-6 * data.lscale)
    return params


def _profile_picks(t: np.ndarray, best_cost: np.ndarray, n_best: int) -> list[int]:
    """Grid rows that are the best of the lowest basins of the cost profile over ``t``."""
    t_values = np.unique(t)
    pos = np.searchsorted(t_values, t)
    profile = np.full(t_values.size, np.inf)
    arg = np.zeros(t_values.size, dtype=int)
    for o in np.argsort(best_cost)[::-1]:  # the lowest cost per τ is written last
        profile[pos[o]] = best_cost[o]
        arg[pos[o]] = o
    return [int(arg[i]) for i in _profile_minima(profile, n_best)]


@dataclass
class _Columns:
    """Columns of a batched variable-projection solve: banks of weighted rows, the bank row
    each grid point uses, and sign constraints (arc resistances > 0; L, RD >= 0)."""

    n_points: int
    banks: list[np.ndarray] = field(default_factory=list)
    index: list[np.ndarray] = field(default_factory=list)
    positive: list[int] = field(default_factory=list)
    nonneg: list[int] = field(default_factory=list)

    def add(self, bank: np.ndarray, rows: np.ndarray, *, positive: bool = False, nonneg: bool = False) -> None:
        if positive:
            self.positive.append(len(self.banks))
        if nonneg:
            self.nonneg.append(len(self.banks))
        self.banks.append(bank)
        self.index.append(rows)

    def solve(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (G, C) and costs (G,); infeasible points cost inf. The >= 0 columns
        are exact: a point whose free solution violates one is re-solved on the faces where
        those columns are 0 (only those points), keeping the cheapest feasible solution."""
        n_cols = len(self.banks)
        # the bank products, once for all the column subsets (each is a BLAS call, and on a
        # busy multi-core machine every call costs thread wake-ups)
        all_grams = {(i, j): self.banks[i] @ self.banks[j].T for i in range(n_cols) for j in range(i, n_cols)}
        gbs = [bank @ b for bank in self.banks]
        bb = float(b @ b)
        coef = np.zeros((self.n_points, n_cols))
        cost = np.full(self.n_points, np.inf)
        todo = np.arange(self.n_points)
        for size in range(len(self.nonneg) + 1):
            found = np.zeros(todo.size, dtype=bool)
            for drop in combinations(self.nonneg, size):
                keep = [c for c in range(n_cols) if c not in drop]
                grams = {(a, bi): all_grams[keep[a], keep[bi]] for a in range(len(keep)) for bi in range(a, len(keep))}
                idx = [self.index[c][todo] for c in keep]
                c_sub, k_sub = _gram_lstsq(grams, [gbs[c] for c in keep], idx, bb)
                c_full = np.zeros((todo.size, n_cols))
                c_full[:, keep] = c_sub
                ok = np.all(c_full[:, self.positive] > 0, axis=1) & np.all(c_full[:, self.nonneg] >= 0, axis=1)
                better = ok & (k_sub < cost[todo])
                coef[todo[better]], cost[todo[better]] = c_full[better], k_sub[better]
                found |= ok
            todo = todo[~found]  # a feasible free solution is the constrained optimum
            if todo.size == 0:
                break
        return coef, cost


def _li_columns(spec: CircuitSpec, data: _Data, n_points: int) -> _Columns:
    """The R0 (and L) columns every Li|Li grid starts with."""
    zero = np.zeros(n_points, dtype=int)
    cols = _Columns(n_points)
    cols.add(_weighted_rows(np.ones(data.n, dtype=complex), data.w)[None, :], zero)
    if spec.inductance:
        cols.add(_weighted_rows(1j * data.omega, data.w)[None, :], zero, nonneg=True)
    return cols


def _add_arc_seeds_blocking(
    spec: CircuitSpec, data: _Data, bases: list[dict[str, float]], n_best: int = 3
) -> list[np.ndarray]:
    """Seeds of a two-arc blocking (or R-RC) circuit from refined one-arc fits: the base's
    arc (τ, n) and spike exponent held, a second arc on a fine (τ, n) grid, and R0, L, both
    arc resistances and 1/Q_dl solved linearly.

    The joint two-arc grid is coarse (every other τ, n = 0.9 for both arcs) so that it stays
    cheap; it misses a grain-boundary arc that peaks inside the band while the bulk arc sits
    near f_max (seen: σ 6 % off with a 9 % rms misfit, while the two-arc optimum started
    from the truth fits to the noise). Holding what the one-arc fit already explains and
    searching only for the arc it lacks finds that basin."""
    if spec.n_arcs != 2 or spec.interface or spec.diffusion or spec.leakage or not bases:
        return []
    ln_jw, w = data.ln_jw, data.w
    ln_tau = _tau_grid(data)
    t, n = (x.ravel() for x in np.meshgrid(ln_tau, np.array([0.6, 0.7, 0.8, 0.9, 1.0]), indexing="ij"))
    seeds: list[tuple[float, np.ndarray]] = []
    b = _weighted_rows(data.z, w)
    for base in bases:
        old_n = float(base["n1"])
        old_t = math.log(base["R1"] * base["Q1"]) / old_n
        cols = _li_columns(spec, data, t.size)
        cols.add(_arc_rows(ln_jw, w, np.array([old_t]), np.array([old_n])), np.zeros(t.size, dtype=int), positive=True)
        cols.add(_arc_rows(ln_jw, w, t, n), np.arange(t.size), positive=True)
        if spec.spike:
            ndl = float(base.get("ndl", 0.9))
            bank = _weighted_rows(np.exp(-ndl * ln_jw), w)[None, :]
            cols.add(bank, np.zeros(t.size, dtype=int), positive=True)
        coef, cost = cols.solve(b)
        for o in _profile_picks(t, cost, n_best):
            if not np.isfinite(cost[o]):
                continue
            cf = coef[o]
            params = _linear_params(spec, data, cf)
            k = 1 + int(spec.inductance)
            r1, r2 = float(cf[k]), float(cf[k + 1])
            params.update({"R1": r1, "Q1": math.exp(old_n * old_t) / r1, "n1": old_n})
            params.update({"R2": r2, "Q2": math.exp(float(n[o]) * float(t[o])) / r2, "n2": float(n[o])})
            if spec.spike:
                params.update({"Qdl": 1.0 / float(cf[k + 2]), "ndl": ndl})
            seeds.append((float(cost[o]), _to_theta(spec, params, data)))
    # the best few over all bases: each seed costs a polish
    return [theta for _, theta in sorted(seeds, key=lambda c: c[0])[:n_best]]


def _leakage_seeds(spec: CircuitSpec, data: _Data, n_best: int) -> list[np.ndarray]:
    """Seeds of R0-p(Re, arcs-CPEdl): the blocking circuit's grid seeds with Re from the
    low-frequency end, where the spectrum returns to the real axis at R0 + Re (Re is not
    linear in Z, so it gets a few trial values instead of a grid dimension)."""
    base = replace(spec, leakage=False)
    re_lf = float(np.max(data.z.real))
    seeds = []
    for theta in _grid_seeds(base, data, n_best):
        params = _from_theta(base, theta, data)
        for factor in (1.0, 3.0):
            seeds.append(_to_theta(spec, {**params, "Re": factor * max(re_lf - params["R0"], data.rscale)}, data))
    return seeds
