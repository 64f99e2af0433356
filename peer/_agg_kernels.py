"""Deterministic, memory-lean kernels behind :mod:`peer.aggregate` (private).

Everything here works on a list of N one-dimensional float32 numpy arrays (the
updates, never stacked) in **column blocks**, so the extra memory is a few
blocks per worker thread, not a copy of the input.

Determinism (every peer must get the same bits, whatever its thread count):

* Column kernels compute each column by the same sequence of IEEE operations
  whatever the block size or the thread that runs it: selection by elementwise
  ``minimum``/``maximum`` (a pruned Batcher sorting network), and sums in
  float64 in a fixed row order. Threads split columns, never a sum.
* Distances come from an **exact** Gram matrix: each (row, block of 8192
  columns) is scaled by a power of two and rounded to a 20-bit integer, so
  every product is below 2**40 and every block dot product below 2**53: a
  float64 GEMM computes it exactly, in any order, on any BLAS and thread
  count. The blocks are then added in a fixed order. The rounding keeps 20 bits
  relative to the largest entry of each row-block (relative error <= 2**-21 of
  that entry), far below the differences a robust rule acts on.
* Small N x N algebra uses explicit fixed-order loops (no BLAS reductions).

Only numpy elementwise code runs in the column kernels (no BLAS thread pool);
the Gram GEMM goes through torch (MKL), so numpy's OpenBLAS pool never wakes
up next to torch's (see PITFALLS: mixing them slowed torch ops 10-100x).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = [
    "sort_ops",
    "block_size",
    "run_blocks",
    "Source",
    "select_columns",
    "combine",
    "exact_gram",
    "gram_distances",
    "distances_to",
    "nonfinite_row",
    "matmul_fixed",
    "matvec_fixed",
]

Rows = Sequence[np.ndarray]
Ops = tuple[tuple[int, int, bool, bool], ...]

GRAM_BLOCK = 8192  # 2**13 columns per exact GEMM block
GRAM_BITS = 20  # 2 * 20 + 13 = 53: every block dot product is an exact float64


# --------------------------------------------------------------------- networks


@functools.lru_cache(maxsize=256)
def _batcher_pairs(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort comparators for n wires (min goes to the lower index)."""
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


@functools.lru_cache(maxsize=256)
def sort_ops(n: int, outputs: tuple[int, ...]) -> Ops:
    """Comparators of a sorting network for n wires, pruned to what ``outputs`` need.

    Walking backwards from the wanted output positions, a comparator none of whose
    outputs is needed is dropped, and one with a single needed output computes only
    that side (a lone ``minimum`` or ``maximum``). Each op is ``(a, b, want_min,
    want_max)``: ``a < b``, the minimum goes to wire ``a``, the maximum to ``b``.
    """
    needed = set(outputs)
    ops: list[tuple[int, int, bool, bool]] = []
    for a, b in reversed(_batcher_pairs(n)):
        want_min, want_max = a in needed, b in needed
        if want_min or want_max:
            ops.append((a, b, want_min, want_max))
            needed.update((a, b))
    ops.reverse()
    return tuple(ops)


def _run_network(wires: list[np.ndarray], ops: Ops, pool: list[np.ndarray]) -> list[np.ndarray]:
    """Apply ``ops`` to ``wires`` (never written: outputs go to buffers from ``pool``)."""
    wires = list(wires)
    owned = [False] * len(wires)
    free = list(pool)
    for a, b, want_min, want_max in ops:
        wa, wb = wires[a], wires[b]
        if want_min:
            lo = free.pop()
            np.minimum(wa, wb, out=lo)
        if want_max:
            hi = free.pop()
            np.maximum(wa, wb, out=hi)
        if want_min:
            if owned[a]:
                free.append(wa)
            wires[a], owned[a] = lo, True
        if want_max:
            if owned[b]:
                free.append(wb)
            wires[b], owned[b] = hi, True
    return wires


# --------------------------------------------------------------------- executor


def block_size(n_rows: int) -> int:
    """Columns per block: about 8 MB of float32 across the rows, a power of two.

    The result never depends on it (columns are independent); it only trades
    per-call overhead against cache misses.
    """
    b = 1 << max(12, min(16, (2**21 // max(n_rows, 1)).bit_length() - 1))
    return b


def n_workers() -> int:
    """Worker threads for column kernels: torch's thread setting (results do not depend on it)."""
    return max(1, torch.get_num_threads())


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="fedchain-agg")
    return _POOL


def run_blocks(d: int, block: int, fn: Callable[[int, int, dict], None], *, fixed: bool = False) -> None:
    """Call ``fn(start, stop, scratch)`` for every column block, on ``n_workers()`` threads.

    Each thread gets its own ``scratch`` dict for buffers it reuses between blocks.
    numpy releases the GIL inside its loops, so two threads use two cores. Small
    inputs get smaller blocks so that every worker has some, unless ``fixed``
    (for kernels whose result depends on the block boundaries).
    """
    workers = n_workers()
    while not fixed and block > 4096 and d < 2 * workers * block:
        block //= 2
    starts = list(range(0, d, block))
    workers = min(workers, len(starts))

    def work(tid: int) -> None:
        scratch: dict = {}
        for s in starts[tid::workers]:
            fn(s, min(s + block, d), scratch)

    if workers <= 1:
        work(0)
        return
    futures = [_pool().submit(work, t) for t in range(1, workers)]
    work(0)  # the calling thread is worker 0
    for fut in futures:
        fut.result()


def _buffers(scratch: dict, key: str, count: int, width: int, dtype: type) -> list[np.ndarray]:
    """``count`` reusable buffers of ``width`` elements kept in ``scratch``."""
    bufs = scratch.get(key)
    if bufs is None or len(bufs) < count or bufs[0].shape[0] < width:
        bufs = [np.empty(width, dtype) for _ in range(count)]
        scratch[key] = bufs
    return [b[:width] for b in bufs[:count]]


class Source:
    """The rows a rule sees: ``rows`` (N float32 arrays), or ``round32(mix @ rows)``.

    Pre-aggregation (clipping, nearest-neighbour mixing, bucketing) is a linear
    map of the updates; it is kept as an M x N float64 ``mix`` and applied per
    column block when a kernel reads the rows: computed in float64 in a fixed row
    order, then rounded once to float32, the same bits as materialising it.
    """

    def __init__(self, rows: Rows, mix: np.ndarray | None = None, matrix: np.ndarray | None = None) -> None:
        self.rows = list(rows)
        self.mix = mix
        self.matrix = matrix  # the [N, d] array the rows are views of, if any (fast block copies)
        self.d = int(self.rows[0].shape[0])
        self.n = len(self.rows) if mix is None else int(mix.shape[0])

    def block(self, s: int, e: int, scratch: dict) -> list[np.ndarray]:
        """The visible rows' columns s:e (views when there is no mix)."""
        if self.mix is None:
            return [r[s:e] for r in self.rows]
        out = _buffers(scratch, "mixed", self.n, e - s, np.float32)
        acc, tmp = _buffers(scratch, "mixacc", 2, e - s, np.float64)
        for k in range(self.n):
            acc.fill(0.0)
            for i, r in enumerate(self.rows):
                c = self.mix[k, i]
                if c != 0.0:
                    np.multiply(r[s:e], c, out=tmp, dtype=np.float64)
                    np.add(acc, tmp, out=acc)
            out[k][...] = acc
        return out

    def materialise(self) -> list[np.ndarray]:
        """The visible rows as arrays (copies only when there is a mix)."""
        if self.mix is None:
            return self.rows
        out = [np.empty(self.d, np.float32) for _ in range(self.n)]

        def fn(s: int, e: int, scratch: dict) -> None:
            for o, b in zip(out, self.block(s, e, scratch), strict=True):
                o[s:e] = b

        run_blocks(self.d, block_size(len(self.rows)), fn)
        return out


# --------------------------------------------------------------------- column rules


def select_columns(
    src: Source,
    positions: tuple[int, ...],
    finish: Callable[[list[np.ndarray], np.ndarray, dict], None],
) -> np.ndarray:
    """Per column, the order statistics at ``positions`` (0 = smallest), reduced by ``finish``.

    ``finish(selected, out, scratch)`` writes the block's float32 result into
    ``out`` from the selected float32 blocks (in ``positions`` order).
    """
    n, d = src.n, src.d
    ops = sort_ops(n, positions)
    result = np.empty(d, np.float32)
    extra = n + 2 if ops else 0  # live owned buffers never exceed n, plus two in flight

    def fn(s: int, e: int, scratch: dict) -> None:
        wires = src.block(s, e, scratch)
        pool = _buffers(scratch, "net", extra, e - s, np.float32) if extra else []
        wires = _run_network(wires, ops, pool)
        finish([wires[p] for p in positions], result[s:e], scratch)

    run_blocks(d, block_size(n), fn)
    return result


def combine(src: Source, coef: Sequence[float], *, divisor: float = 1.0) -> np.ndarray:
    """``sum_i coef[i] * row_i / divisor`` per column, in float64, fixed row order, to float32."""
    d = src.d
    result = np.empty(d, np.float32)
    coef = [float(c) for c in coef]

    def fn(s: int, e: int, scratch: dict) -> None:
        acc, tmp = _buffers(scratch, "acc", 2, e - s, np.float64)
        acc.fill(0.0)
        for r, c in zip(src.block(s, e, scratch), coef, strict=True):
            if c != 0.0:
                np.multiply(r, c, out=tmp, dtype=np.float64)
                np.add(acc, tmp, out=acc)
        if divisor != 1.0:
            np.divide(acc, divisor, out=acc)
        result[s:e] = acc

    run_blocks(d, block_size(len(src.rows)), fn)
    return result


# --------------------------------------------------------------------- validation


def nonfinite_row(rows: Rows) -> int | None:
    """Index of the first row holding a NaN or an infinity, else None.

    min/max propagate NaN and show infinities, so two reductions per block
    suffice and nothing of the input's size is allocated.
    """
    d = rows[0].shape[0]
    bad = np.zeros(len(rows), dtype=bool)

    def fn(s: int, e: int, scratch: dict) -> None:
        for i, r in enumerate(rows):
            blk = r[s:e]
            if not (math.isfinite(float(blk.min())) and math.isfinite(float(blk.max()))):
                bad[i] = True

    run_blocks(d, max(block_size(len(rows)), 1 << 16), fn)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


# --------------------------------------------------------------------- exact Gram


def _parallel(count: int, fn: Callable[[int, dict], None]) -> None:
    """Call ``fn(i, scratch)`` for i in range(count) on the worker threads (results must not
    depend on which thread runs which i)."""
    workers = min(n_workers(), count)

    def work(tid: int) -> None:
        scratch: dict = {}
        for i in range(tid, count, workers):
            fn(i, scratch)

    futures = [_pool().submit(work, t) for t in range(1, workers)]
    work(0)
    for fut in futures:
        fut.result()


def exact_gram(src: Source) -> np.ndarray:
    """Gram matrix ``G[i, j] = <x_i, x_j>`` in float64, bit-identical on every machine.

    Each (row, 8192-column block) is rounded to a 20-bit integer times a power of
    two (its scale), so the block GEMM of integers is exact; block results are
    scaled (exactly) and added in block order. See the module docstring.

    Blocks are quantised by numpy on the worker threads and multiplied in groups
    by one ``torch.bmm`` call per group: few parallel regions, so a busy core
    (another process) does not stall torch's thread barrier hundreds of times.
    The group buffer is at most 16 MB and 5% of the input (one block at least).
    """
    n, d = src.n, src.d
    nblocks = (d + GRAM_BLOCK - 1) // GRAM_BLOCK
    block_bytes = n * GRAM_BLOCK * 8
    per_group = max(1, min(nblocks, min(16 << 20, n * d * 4 // 20) // block_bytes))
    buf = torch.empty((per_group, n, GRAM_BLOCK), dtype=torch.float64)
    bufn = buf.numpy()
    scales = np.empty((per_group, n), np.float64)
    gram = np.zeros((n, n), np.float64)
    direct = src.mix is None and src.matrix is not None

    for g0 in range(0, nblocks, per_group):
        count = min(per_group, nblocks - g0)

        def quantise(k: int, scratch: dict, g0: int = g0) -> None:
            s = (g0 + k) * GRAM_BLOCK
            e = min(s + GRAM_BLOCK, d)
            q = bufn[k]
            if direct:
                q[:, : e - s] = src.matrix[:, s:e]
            else:
                for i, r in enumerate(src.block(s, e, scratch)):
                    q[i, : e - s] = r
            q[:, e - s :] = 0.0  # the last block's padding adds nothing
            amax = np.maximum(q.max(axis=1), -q.min(axis=1))
            _, expo = np.frexp(amax)  # amax = m * 2**expo, 0.5 <= m < 1 (expo = 0 for 0)
            q *= np.ldexp(1.0, GRAM_BITS - expo)[:, None]
            np.rint(q, out=q)  # |q| <= 2**20, round half to even
            scales[k] = np.ldexp(1.0, expo - GRAM_BITS)

        _parallel(count, quantise)
        part = buf[:count]
        prods = torch.bmm(part, part.transpose(1, 2)).numpy()  # exact: integers below 2**53
        for k in range(count):  # fixed block order
            gram += prods[k] * scales[k][:, None] * scales[k][None, :]
    return gram


def gram_distances(gram: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances from a Gram matrix (clamped at 0, exact zeros on the diagonal)."""
    diag = np.diag(gram)
    dist = (diag[:, None] + diag[None, :]) - 2.0 * gram
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return np.maximum(dist, dist.T)  # symmetric to the bit


def matmul_fixed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for small float64 matrices, summed in a fixed order (no BLAS)."""
    out = np.zeros((a.shape[0], b.shape[1]), np.float64)
    for k in range(a.shape[1]):
        out += a[:, k : k + 1] * b[k : k + 1, :]
    return out


def matvec_fixed(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``a @ v`` for a small float64 matrix, summed in a fixed order (no BLAS)."""
    out = np.zeros(a.shape[0], np.float64)
    for k in range(a.shape[1]):
        out += a[:, k] * v[k]
    return out


def _row_sums(rows: Rows, point: np.ndarray, term: Callable[[np.ndarray, np.ndarray, np.ndarray], None]) -> np.ndarray:
    """For every row, the float64 sum over coordinates of ``term(row_block, point_block, out)``
    (which writes its per-coordinate values into ``out``), in a fixed order on any thread
    count: per block numpy's pairwise sum (no BLAS), blocks added in block order."""
    n, d = len(rows), rows[0].shape[0]
    block = 1 << 16
    nblocks = (d + block - 1) // block
    partial = np.zeros((nblocks, n), np.float64)

    def fn(s: int, e: int, scratch: dict) -> None:
        out = _buffers(scratch, "out", 1, e - s, np.float64)[0]
        p64 = _buffers(scratch, "p64", 1, e - s, np.float64)[0]
        p64[...] = point[s:e]
        for i, r in enumerate(rows):
            term(r[s:e], p64, out)
            partial[s // block, i] = np.add.reduce(out)

    run_blocks(d, block, fn, fixed=True)  # the partial sums' grouping must not move
    total = np.zeros(n, np.float64)
    for k in range(nblocks):
        total += partial[k]
    return total


def _squared_difference(r: np.ndarray, p64: np.ndarray, out: np.ndarray) -> None:
    np.subtract(r, p64, out=out, dtype=np.float64)
    np.multiply(out, out, out=out)


def _product(r: np.ndarray, p64: np.ndarray, out: np.ndarray) -> None:
    np.multiply(r, p64, out=out, dtype=np.float64)


def dots_with(rows: Rows, point: np.ndarray) -> np.ndarray:
    """Dot product of every row with ``point``, float64, fixed summation order."""
    return _row_sums(rows, point, _product)


def distances_to(rows: Rows, point: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row to ``point``, float64, fixed summation order."""
    return np.sqrt(_row_sums(rows, point, _squared_difference))
