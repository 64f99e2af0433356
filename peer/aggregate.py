"""Byzantine-robust aggregation rules: pure, deterministic, lean functions.

Every peer aggregates the round's updates itself and votes on the hash of the
result, so a rule must give **bit-identical** output for the same input on
every peer (any thread count), and must be fast on N updates of d floats.

Rules (``RULES``), each ``rule(updates, weights=None, ...) -> torch.Tensor [d]``:

=====================  ========================================================
``mean``               FedAvg: sum_i w_i x_i / sum_i w_i (float64, row order).
``median``             coordinate-wise median (the default). Odd N: the middle
                       value. **Even N: the midpoint of the two middle values,
                       (a + b) / 2 computed exactly in float64 and rounded once
                       to float32** (the correctly rounded midpoint; equals
                       ``np.median`` whenever a + b does not overflow float32).
                       Weights are ignored: each update is one vote.
``trimmed_mean``       per coordinate, drop the f smallest and f largest values,
                       average the rest (summed in ascending order, float64).
                       Weights ignored.
``krum``               the update with the smallest sum of squared distances to
                       its max(1, n - f - 2) nearest others (Blanchard et al.
                       2017); ties go to the lowest index. Weights ignored.
``multi_krum``         weighted mean of the ``m`` (default n - f) best Krum scores.
``geometric_median``   weighted geometric median by Weiszfeld's iteration,
                       smoothed by ``nu`` (Pillutla et al., RFA).
``centered_clipping``  ``iters`` steps of v += sum_i a_i clip_tau(x_i - v)
                       from ``center`` (zeros) (Karimireddy et al. 2021).
=====================  ========================================================

Pre-aggregation (``pre=(...)`` in :func:`aggregate`, applied in the order given;
also public functions returning the transformed updates): ``"clip"``
(:func:`clip_norms`), ``"nnm"`` nearest-neighbour mixing (:func:`nnm`, Allouah
et al. 2023), ``"bucketing"`` (:func:`bucketing`, Karimireddy et al. 2022). Each
is a linear map of the updates; maps compose in float64 and the mixed updates
are rounded once to float32 per coordinate, so ``aggregate(x, pre=("clip",))``
equals ``median(clip_norms(x))`` bit for bit.

How determinism is kept (details in :mod:`peer._agg_kernels`): selection by
elementwise min/max (a pruned sorting network over column blocks), sums in
float64 in a fixed order, distances from an exact integer Gram matrix, -0.0
turned into +0.0 in every output. Threads split columns, never a sum.

Inputs: a float32 tensor/array [N, d], or a sequence of N one-dimensional float32
arrays or tensors (never stacked: kernels read column blocks of each). Invalid
input raises :class:`peer.errors.AggregationError` naming the bad row or value.

Example::

    >>> import torch
    >>> from peer.aggregate import aggregate
    >>> x = torch.tensor([[1.0, 5.0], [2.0, -1.0], [100.0, 0.0]])
    >>> aggregate(x)  # the coordinate-wise median
    tensor([2., 0.])
    >>> aggregate(x, rule="krum", f=0).tolist()
    [1.0, 5.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from peer import _agg_kernels as K
from peer.errors import AggregationError

__all__ = [
    "RULES",
    "PRE_AGGREGATIONS",
    "aggregate",
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "geometric_median",
    "centered_clipping",
    "clip_norms",
    "nnm",
    "bucketing",
    "kept_mask",
]

RULES: tuple[str, ...] = (
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "geometric_median",
    "centered_clipping",
)
PRE_AGGREGATIONS: tuple[str, ...] = ("clip", "nnm", "bucketing")

Updates = torch.Tensor | np.ndarray | Sequence[np.ndarray] | Sequence[torch.Tensor]


# --------------------------------------------------------------------- inputs


class _Batch:
    """Validated updates as a :class:`K.Source` plus float64 weights, and a cached Gram."""

    def __init__(self, src: K.Source, weights: np.ndarray) -> None:
        self.src = src
        self.weights = weights
        self._gram: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.src.n

    def gram(self) -> np.ndarray:
        """Exact Gram matrix of the visible rows (computed once)."""
        if self._gram is None:
            self._gram = K.exact_gram(self.src)
        return self._gram

    def remix(self, mix: np.ndarray, weights: np.ndarray) -> _Batch:
        """A batch whose rows are ``mix @ (this batch's rows)``."""
        total = mix if self.src.mix is None else K.matmul_fixed(mix, self.src.mix)
        return _Batch(K.Source(self.src.rows, total), weights)


def _as_row(value: Any, i: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu":
            raise AggregationError(f"update {i} is on device {value.device}; move it to the CPU")
        value = value.detach().numpy()
    if not isinstance(value, np.ndarray):
        raise AggregationError(f"update {i} is a {type(value).__name__}, expected a float32 array or tensor")
    if value.dtype != np.float32:
        raise AggregationError(f"update {i} has dtype {value.dtype}, expected float32")
    if value.ndim != 1:
        raise AggregationError(f"update {i} has shape {value.shape}, expected one dimension")
    return np.ascontiguousarray(value)


def _matrix(updates: Updates) -> np.ndarray | None:
    """The updates as one C-contiguous float32 [N, d] numpy array, when they are one (no copy)."""
    if isinstance(updates, torch.Tensor) and updates.device.type == "cpu":
        updates = updates.detach().numpy()
    if isinstance(updates, np.ndarray) and updates.dtype == np.float32 and updates.flags.c_contiguous:
        return updates
    return None


def _rows(updates: Updates) -> list[np.ndarray]:
    """The updates as a list of contiguous 1-D float32 arrays (views where possible)."""
    if isinstance(updates, (torch.Tensor, np.ndarray)):
        if updates.ndim != 2:
            raise AggregationError(f"updates have shape {tuple(updates.shape)}, expected [N, d]")
        seq: Sequence[Any] = list(updates)
    else:
        seq = list(updates)
    if not seq:
        raise AggregationError("no updates to aggregate (N = 0)")
    rows = [_as_row(u, i) for i, u in enumerate(seq)]
    d = rows[0].shape[0]
    if d == 0:
        raise AggregationError("updates are empty (d = 0)")
    for i, r in enumerate(rows):
        if r.shape[0] != d:
            raise AggregationError(f"update {i} has {r.shape[0]} values, update 0 has {d}")
    bad = K.nonfinite_row(rows)
    if bad is not None:
        raise AggregationError(f"update {bad} holds NaN or infinite values")
    return rows


def _weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, np.float64)
    w = np.asarray([float(x) for x in weights], np.float64)
    if w.shape[0] != n:
        raise AggregationError(f"got {w.shape[0]} weights for {n} updates")
    for i, x in enumerate(w):
        if not (math.isfinite(x) and x > 0.0):
            raise AggregationError(f"weight {i} is {x}; weights must be finite and > 0")
    return w


def _batch(updates: Updates, weights: Sequence[float] | None) -> _Batch:
    rows = _rows(updates)
    return _Batch(K.Source(rows, matrix=_matrix(updates)), _weights(weights, len(rows)))


def _check_f_type(f: int, rule: str) -> None:
    if not isinstance(f, (int, np.integer)) or isinstance(f, bool) or f < 0:
        raise AggregationError(f"f = {f!r} for {rule}: f must be an integer >= 0")


def _check_f(f: int, n: int, rule: str) -> None:
    _check_f_type(f, rule)
    if 2 * f >= n and f > 0:
        raise AggregationError(f"f = {f} for {rule} with {n} updates: need 2 * f < N")


def _out(vec: np.ndarray) -> torch.Tensor:
    """Canonical float32 result: -0.0 becomes +0.0 (x + 0.0 does exactly that)."""
    np.add(vec, np.float32(0.0), out=vec)
    return torch.from_numpy(vec)


def _to_tensor_rows(rows: list[np.ndarray]) -> torch.Tensor:
    out = torch.empty((len(rows), rows[0].shape[0]), dtype=torch.float32)
    on = out.numpy()
    for i, r in enumerate(rows):
        on[i] = r
    np.add(on, np.float32(0.0), out=on)
    return out


# --------------------------------------------------------------------- rules on a batch


def _mean(b: _Batch) -> np.ndarray:
    return K.combine(b.src, b.weights, divisor=math.fsum(b.weights))


def _median(b: _Batch) -> np.ndarray:
    n = b.n
    if n % 2:
        return K.select_columns(b.src, ((n - 1) // 2,), _copy_first)
    return K.select_columns(b.src, (n // 2 - 1, n // 2), _midpoint)


def _copy_first(sel: list[np.ndarray], out: np.ndarray, scratch: dict) -> None:
    out[...] = sel[0]


def _midpoint(sel: list[np.ndarray], out: np.ndarray, scratch: dict) -> None:
    acc = K._buffers(scratch, "mid", 1, out.shape[0], np.float64)[0]
    np.add(sel[0], sel[1], out=acc, dtype=np.float64)  # exact: two float32 fit a float64
    np.multiply(acc, 0.5, out=acc)
    out[...] = acc  # one rounding to float32


def _trimmed_mean(b: _Batch, f: int) -> np.ndarray:
    n = b.n
    _check_f(f, n, "trimmed_mean")
    if f == 0:
        return K.combine(b.src, np.ones(n), divisor=float(n))
    kept = n - 2 * f

    def finish(sel: list[np.ndarray], out: np.ndarray, scratch: dict) -> None:
        acc = K._buffers(scratch, "tm", 1, out.shape[0], np.float64)[0]
        acc[...] = sel[0]
        for s in sel[1:]:  # ascending order
            np.add(acc, s, out=acc)
        np.divide(acc, float(kept), out=acc)
        out[...] = acc

    return K.select_columns(b.src, tuple(range(f, n - f)), finish)


def _krum_scores(b: _Batch, f: int) -> list[float]:
    n = b.n
    if n == 1:
        return [0.0]
    dist = K.gram_distances(b.gram())
    k = min(max(1, n - f - 2), n - 1)
    scores = []
    for i in range(n):
        others = np.sort(np.delete(dist[i], i))
        scores.append(math.fsum(others[:k].tolist()))  # correctly rounded: order-free
    return scores


def _krum_select(b: _Batch, f: int, m: int | None, rule: str) -> list[int]:
    _check_f(f, b.n, rule)
    scores = _krum_scores(b, f)
    order = sorted(range(b.n), key=lambda i: (scores[i], i))
    if m is None:
        m = 1 if rule == "krum" else b.n - f
    if not (1 <= m <= b.n):
        raise AggregationError(f"m = {m} for {rule} with {b.n} updates: need 1 <= m <= N")
    return sorted(order[:m])


def _krum(b: _Batch, f: int) -> np.ndarray:
    (best,) = _krum_select(b, f, 1, "krum")
    coef = np.zeros(b.n)
    coef[best] = 1.0
    return K.combine(b.src, coef)  # a copy of the row, bit for bit


def _multi_krum(b: _Batch, f: int, m: int | None) -> np.ndarray:
    chosen = _krum_select(b, f, m, "multi_krum")
    coef = np.zeros(b.n)
    coef[chosen] = b.weights[chosen]
    return K.combine(b.src, coef, divisor=math.fsum(coef.tolist()))


def _quad(gram: np.ndarray, c: np.ndarray) -> float:
    """c^T G c with a fixed-order product and a correctly rounded sum."""
    return math.fsum((K.matvec_fixed(gram, c) * c).tolist())


def _dists_to_combo(gram: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Distances from each basis row to sum_j c_j row_j, from the Gram matrix."""
    sq = np.diag(gram) - 2.0 * K.matvec_fixed(gram, c) + _quad(gram, c)
    return np.sqrt(np.maximum(sq, 0.0))


def _geometric_median(b: _Batch, nu: float | None, maxiter: int, tol: float) -> np.ndarray:
    if maxiter < 1 or not tol >= 0.0:
        raise AggregationError(f"geometric_median: maxiter = {maxiter}, tol = {tol}: need maxiter >= 1, tol >= 0")
    gram = b.gram()
    scale = math.sqrt(max(float(np.max(np.diag(gram))), 0.0)) or 1.0
    floor = 1e-6 * scale if nu is None else float(nu)
    if not floor > 0.0:
        raise AggregationError(f"geometric_median: nu = {nu}; need nu > 0")
    alpha = b.weights / math.fsum(b.weights)
    beta = alpha.copy()  # start at the weighted mean
    for _ in range(maxiter):
        inv = alpha / np.maximum(_dists_to_combo(gram, beta), floor)
        new = inv / math.fsum(inv.tolist())
        step = math.sqrt(max(_quad(gram, new - beta), 0.0))
        beta = new
        if step <= tol * scale:
            break
    return K.combine(b.src, beta)


def _centered_clipping(
    b: _Batch, tau: float | None, iters: int, center: Updates | None
) -> np.ndarray:
    if iters < 1:
        raise AggregationError(f"centered_clipping: iters = {iters}; need iters >= 1")
    n = b.n
    if center is not None:
        c_row = _rows([center])[0]
        if c_row.shape[0] != b.src.d:
            raise AggregationError(f"center has {c_row.shape[0]} values, updates have {b.src.d}")
        if b.src.mix is None:
            ext = _Batch(K.Source(b.src.rows + [c_row]), b.weights)
        else:
            mix = np.pad(b.src.mix, ((0, 1), (0, 1)))
            mix[n, -1] = 1.0
            ext = _Batch(K.Source(b.src.rows + [c_row], mix), b.weights)
        coef = np.zeros(n + 1)
        coef[n] = 1.0
    else:
        ext = b
        coef = np.zeros(n)
    gram = ext.gram()
    alpha = b.weights / math.fsum(b.weights)
    radius = None if tau is None else float(tau)
    if radius is not None and not radius > 0.0:
        raise AggregationError(f"centered_clipping: tau = {tau}; need tau > 0")
    for _ in range(iters):
        dist = _dists_to_combo(gram, coef)[:n]
        if radius is None:  # default: the median distance to the starting center
            radius = float(np.median(dist)) or 1.0
        clip = np.where(dist > radius, radius / np.where(dist > 0, dist, 1.0), 1.0)
        step = alpha * clip
        coef = coef * (1.0 - math.fsum(step.tolist()))
        coef[:n] += step
    return K.combine(ext.src, coef)


# --------------------------------------------------------------------- pre-aggregation on a batch


def _pre_clip(b: _Batch, tau: float | None) -> _Batch:
    norms = np.sqrt(np.maximum(np.diag(b.gram()), 0.0))
    radius = float(np.median(norms)) if tau is None else float(tau)
    if not radius >= 0.0 or not math.isfinite(radius):
        raise AggregationError(f"clip: tau = {tau}; need a finite tau >= 0")
    factor = np.where(norms > radius, radius / np.where(norms > 0, norms, 1.0), 1.0)
    return b.remix(np.diag(factor), b.weights)


def _pre_nnm(b: _Batch, f: int) -> _Batch:
    n = b.n
    _check_f(f, n, "nnm")
    dist = K.gram_distances(b.gram())
    keep = n - f
    mix = np.zeros((n, n))
    for i in range(n):
        nearest = sorted(range(n), key=lambda j: (dist[i, j], j))[:keep]  # includes i itself
        mix[i, nearest] = 1.0 / keep
    return b.remix(mix, b.weights)


def _pre_bucketing(b: _Batch, size: int, seed: int) -> _Batch:
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise AggregationError(f"bucketing: bucket_size = {size!r}; need an integer >= 1")
    n = b.n
    perm = np.random.default_rng(seed).permutation(n)
    buckets = [perm[s : s + size] for s in range(0, n, size)]
    mix = np.zeros((len(buckets), n))
    weights = np.zeros(len(buckets))
    for k, members in enumerate(buckets):
        total = math.fsum(b.weights[members].tolist())
        mix[k, members] = b.weights[members] / total
        weights[k] = total
    return b.remix(mix, weights)


# --------------------------------------------------------------------- public API

_RULE_OPTIONS: dict[str, tuple[str, ...]] = {
    "mean": (),
    "median": (),
    "trimmed_mean": (),
    "krum": (),
    "multi_krum": ("m",),
    "geometric_median": ("nu", "maxiter", "tol"),
    "centered_clipping": ("tau", "iters", "center"),
}
_PRE_OPTIONS = ("clip_tau", "bucket_size", "bucket_seed")


def _apply_pre(b: _Batch, pre: Sequence[str], f: int, opts: dict[str, Any]) -> _Batch:
    if isinstance(pre, str):
        pre = (pre,)
    for step in pre:
        if step == "clip":
            b = _pre_clip(b, opts.get("clip_tau"))
        elif step == "nnm":
            b = _pre_nnm(b, f)
        elif step == "bucketing":
            b = _pre_bucketing(b, opts.get("bucket_size", 2), opts.get("bucket_seed", 0))
        else:
            raise AggregationError(f"unknown pre-aggregation {step!r}; choose from {PRE_AGGREGATIONS}")
    return b


def _run_rule(b: _Batch, rule: str, f: int, opts: dict[str, Any]) -> np.ndarray:
    if rule == "mean":
        return _mean(b)
    if rule == "median":
        _check_f(f, b.n, rule)
        return _median(b)
    if rule == "trimmed_mean":
        return _trimmed_mean(b, f)
    if rule == "krum":
        return _krum(b, f)
    if rule == "multi_krum":
        return _multi_krum(b, f, opts.get("m"))
    if rule == "geometric_median":
        return _geometric_median(b, opts.get("nu"), opts.get("maxiter", 100), opts.get("tol", 1e-7))
    if rule == "centered_clipping":
        return _centered_clipping(b, opts.get("tau"), opts.get("iters", 3), opts.get("center"))
    raise AggregationError(f"unknown rule {rule!r}; choose from {RULES}")


def _check_options(rule: str, options: dict[str, Any]) -> None:
    allowed = set(_RULE_OPTIONS.get(rule, ())) | set(_PRE_OPTIONS)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise AggregationError(f"unknown option(s) {unknown} for rule {rule!r}; allowed: {sorted(allowed)}")


def aggregate(
    updates: Updates,
    weights: Sequence[float] | None = None,
    *,
    rule: str = "median",
    f: int = 0,
    pre: Sequence[str] = (),
    **options: Any,
) -> torch.Tensor:
    """Aggregate N updates of d values into one float32 vector of d values.

    ``rule`` is one of :data:`RULES`; ``f`` the number of Byzantine updates to
    tolerate (used by trimmed_mean, krum, multi_krum, nnm; need 2f < N);
    ``pre`` a sequence of :data:`PRE_AGGREGATIONS` applied first, in order.
    Options: ``m`` (multi_krum), ``nu``, ``maxiter``, ``tol`` (geometric_median),
    ``tau``, ``iters``, ``center`` (centered_clipping), ``clip_tau`` (clip; default
    the median norm), ``bucket_size`` (default 2), ``bucket_seed`` (default 0:
    pass the round's shared seed so every peer draws the same buckets).
    """
    if rule not in RULES:
        raise AggregationError(f"unknown rule {rule!r}; choose from {RULES}")
    _check_options(rule, options)
    _check_f_type(f, rule)  # the range 2f < N is checked where N is known (after pre)
    b = _apply_pre(_batch(updates, weights), pre, f, options)
    return _out(_run_rule(b, rule, f, options))


def mean(updates: Updates, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Weighted mean (FedAvg): sum_i w_i x_i / sum_i w_i, in float64 in row order."""
    return _out(_mean(_batch(updates, weights)))


def median(updates: Updates, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Coordinate-wise median; even N gives the correctly rounded midpoint. Weights ignored."""
    return _out(_median(_batch(updates, weights)))


def trimmed_mean(updates: Updates, weights: Sequence[float] | None = None, *, f: int) -> torch.Tensor:
    """Per coordinate, mean of the values left after dropping the f lowest and f highest."""
    return _out(_trimmed_mean(_batch(updates, weights), f))


def krum(updates: Updates, weights: Sequence[float] | None = None, *, f: int) -> torch.Tensor:
    """The update with the lowest Krum score (a copy of that row)."""
    return _out(_krum(_batch(updates, weights), f))


def multi_krum(
    updates: Updates, weights: Sequence[float] | None = None, *, f: int, m: int | None = None
) -> torch.Tensor:
    """Weighted mean of the ``m`` (default N - f) updates with the lowest Krum scores."""
    return _out(_multi_krum(_batch(updates, weights), f, m))


def geometric_median(
    updates: Updates,
    weights: Sequence[float] | None = None,
    *,
    nu: float | None = None,
    maxiter: int = 100,
    tol: float = 1e-7,
) -> torch.Tensor:
    """Weighted geometric median, argmin_z sum_i w_i ||x_i - z||, by Weiszfeld's iteration.

    The iterate is kept as convex coefficients over the updates, so each step
    costs O(N^2) on the exact Gram matrix instead of a pass over N x d values.
    Distances are floored at ``nu`` (default 1e-6 x the largest update norm);
    stops when a step moves less than ``tol`` x that norm, or after ``maxiter``.
    """
    return _out(_geometric_median(_batch(updates, weights), nu, maxiter, tol))


def centered_clipping(
    updates: Updates,
    weights: Sequence[float] | None = None,
    *,
    tau: float | None = None,
    iters: int = 3,
    center: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """Centered clipping: ``iters`` times v += sum_i a_i (x_i - v) min(1, tau / ||x_i - v||).

    Starts at ``center`` (e.g. the previous round's aggregate; default zeros).
    ``tau`` defaults to the median distance of the updates to the center.
    """
    return _out(_centered_clipping(_batch(updates, weights), tau, iters, center))


def clip_norms(updates: Updates, *, tau: float | None = None) -> torch.Tensor:
    """Updates scaled down to L2 norm <= ``tau`` (default: the median norm), as [N, d]."""
    return _to_tensor_rows(_pre_clip(_batch(updates, None), tau).src.materialise())


def nnm(updates: Updates, *, f: int) -> torch.Tensor:
    """Nearest-neighbour mixing: each update replaced by the mean of its N - f nearest (itself included)."""
    return _to_tensor_rows(_pre_nnm(_batch(updates, None), f).src.materialise())


def bucketing(
    updates: Updates, weights: Sequence[float] | None = None, *, size: int = 2, seed: int = 0
) -> tuple[torch.Tensor, list[float]]:
    """Seeded random buckets of ``size`` updates, each replaced by its weighted mean.

    Returns the ceil(N / size) bucket means and their weights (sums of the members').
    """
    b = _pre_bucketing(_batch(updates, weights), size, seed)
    return _to_tensor_rows(b.src.materialise()), b.weights.tolist()


def kept_mask(
    updates: Updates,
    aggregate_vec: torch.Tensor | np.ndarray,
    *,
    rule: str,
    f: int = 0,
    factor: float = 2.0,
    same_direction: bool = True,
    **options: Any,
) -> list[bool]:
    """Which updates the rule "kept" (feeds the reward rule); deterministic.

    krum / multi_krum: the selected updates (recomputed; with ``pre`` options an
    update counts as kept when a selected mixed row uses it). Every other rule:
    update i is kept when its L2 distance to ``aggregate_vec`` is at most
    ``factor`` times the median of all N such distances (float64, fixed order;
    median of an even count = mean of the two middle distances) and, with
    ``same_direction``, when it points the aggregate's way (dot product > 0, float64,
    fixed order): a sign-flipped update can sit within the distance bound when the
    honest updates are spread (non-IID data), never on the aggregate's side.
    A zero aggregate keeps every update within the distance bound.
    """
    if rule not in RULES:
        raise AggregationError(f"unknown rule {rule!r}; choose from {RULES}")
    if not (math.isfinite(factor) and factor > 0):
        raise AggregationError(f"factor = {factor}; need a finite factor > 0")
    weights = options.pop("weights", None)
    pre = options.pop("pre", ())
    _check_options(rule, options)
    _check_f_type(f, rule)
    b = _batch(updates, weights)
    if rule in ("krum", "multi_krum"):
        mixed = _apply_pre(b, pre, f, options)
        chosen = _krum_select(mixed, f, options.get("m") if rule == "multi_krum" else 1, rule)
        if mixed.src.mix is None:
            used = set(chosen)
        else:
            used = {int(j) for i in chosen for j in np.flatnonzero(mixed.src.mix[i])}
        return [i in used for i in range(b.n)]
    vec = aggregate_vec.detach().numpy() if isinstance(aggregate_vec, torch.Tensor) else np.asarray(aggregate_vec)
    if vec.shape != (b.src.d,):
        raise AggregationError(f"aggregate_vec has shape {vec.shape}, expected ({b.src.d},)")
    dist = K.distances_to(b.src.rows, vec.astype(np.float32, copy=False))
    srt = np.sort(dist)
    n = b.n
    med = srt[(n - 1) // 2] if n % 2 else (srt[n // 2 - 1] + srt[n // 2]) / 2.0
    near = [bool(x <= factor * med) for x in dist]
    if not same_direction or not np.any(vec):
        return near
    dots = K.dots_with(b.src.rows, vec.astype(np.float32, copy=False))
    return [n_ok and bool(dot > 0.0) for n_ok, dot in zip(near, dots, strict=True)]
