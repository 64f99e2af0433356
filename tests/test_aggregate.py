"""peer.aggregate: every rule against a plain numpy/torch reference, properties,
validation, and bit-determinism across thread counts and input forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from peer import _agg_kernels as K
from peer import aggregate as A
from peer.errors import AggregationError

SHAPES = [(1, 1), (1, 9), (2, 1), (2, 5), (3, 1), (4, 7), (5, 33), (6, 2), (10, 17), (25, 11), (50, 5), (100, 3)]


def rand(n: int, d: int, seed: int, *, ties: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many equal entries per column
        return rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    return (rng.standard_normal((n, d)) * rng.choice([1e-3, 1.0, 1e3], size=(n, 1))).astype(np.float32)


# ----------------------------------------------------------------- references


def ref_median(x: np.ndarray) -> np.ndarray:
    s = np.sort(x, axis=0).astype(np.float64)
    n = x.shape[0]
    mid = s[(n - 1) // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0
    return mid.astype(np.float32)


def ref_trimmed(x: np.ndarray, f: int) -> np.ndarray:
    s = np.sort(x, axis=0).astype(np.float64)[f : x.shape[0] - f]
    acc = s[0].copy()
    for row in s[1:]:
        acc += row
    return (acc / s.shape[0]).astype(np.float32)


def ref_mean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    acc = np.zeros(x.shape[1])
    for row, wi in zip(x.astype(np.float64), w, strict=True):
        acc += row * wi
    return (acc / math.fsum(w)).astype(np.float32)


def ref_krum_scores(x: np.ndarray, f: int) -> np.ndarray:
    x64 = x.astype(np.float64)
    n = x.shape[0]
    dist = ((x64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
    k = min(max(1, n - f - 2), n - 1)
    return np.array([np.sort(np.delete(dist[i], i))[:k].sum() for i in range(n)])


def ref_geomed(x: np.ndarray, iters: int = 2000) -> np.ndarray:
    x64 = torch.from_numpy(x).double()
    z = x64.mean(0)
    for _ in range(iters):
        w = 1.0 / torch.linalg.vector_norm(x64 - z, dim=1).clamp_min(1e-12)
        z = (w[:, None] * x64).sum(0) / w.sum()
    return z.numpy()


def objective(x: np.ndarray, z: np.ndarray) -> float:
    return float(np.linalg.norm(x.astype(np.float64) - z.astype(np.float64), axis=1).sum())


# ----------------------------------------------------------------- sorting network


@pytest.mark.parametrize("n", range(1, 13))
def test_batcher_network_sorts_every_zero_one_input(n: int) -> None:
    pairs = K._batcher_pairs(n)
    for bits in itertools.product((0, 1), repeat=n):
        wires = list(bits)
        for a, b in pairs:
            if wires[a] > wires[b]:
                wires[a], wires[b] = wires[b], wires[a]
        assert wires == sorted(bits)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 16, 25, 33, 64, 100])
def test_pruned_network_gives_requested_order_statistics(n: int) -> None:
    x = rand(n, 257, n, ties=n % 2 == 0)
    positions = tuple(sorted({0, (n - 1) // 2, n // 2, n - 1}))
    ops = K.sort_ops(n, positions)
    wires = K._run_network([r for r in x], ops, [np.empty(257, np.float32) for _ in range(n + 2)])
    expected = np.sort(x, axis=0)
    for p in positions:
        np.testing.assert_array_equal(wires[p], expected[p])
    assert len(K.sort_ops(n, ((n - 1) // 2,))) <= len(K._batcher_pairs(n))


# ----------------------------------------------------------------- rules vs references


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("ties", [False, True])
def test_median_matches_reference_bit_for_bit(n: int, d: int, ties: bool) -> None:
    x = rand(n, d, 10 * n + d, ties=ties)
    got = A.median(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, ref_median(x) + np.float32(0.0))
    np.testing.assert_allclose(got, np.median(x, axis=0), rtol=1e-6, atol=0)


def test_median_even_n_is_midpoint_without_overflow() -> None:
    big = np.float32(3e38)
    x = np.array([[big, 1.0], [big, 2.0], [-1.0, 3.0], [big, 4.0]], np.float32)
    np.testing.assert_array_equal(A.median(x).numpy(), np.array([big, 2.5], np.float32))


def test_median_spans_several_column_blocks() -> None:
    x = rand(7, 3 * 65536 + 5, 1)
    np.testing.assert_array_equal(A.median(x).numpy(), ref_median(x))


@pytest.mark.parametrize("n,d", [s for s in SHAPES if s[0] >= 3])
def test_trimmed_mean_matches_reference(n: int, d: int) -> None:
    x = rand(n, d, n + d, ties=d % 2 == 1)
    for f in {1, (n - 1) // 2}:
        np.testing.assert_array_equal(A.trimmed_mean(x, f=f).numpy(), ref_trimmed(x, f) + np.float32(0))
    np.testing.assert_array_equal(A.trimmed_mean(x, f=0).numpy(), ref_mean(x, np.ones(n)))


@pytest.mark.parametrize("n,d", SHAPES)
def test_weighted_mean_matches_reference(n: int, d: int) -> None:
    x = rand(n, d, n * d)
    w = np.random.default_rng(n).uniform(1, 100, n)
    np.testing.assert_array_equal(A.mean(x, w.tolist()).numpy(), ref_mean(x, w))
    np.testing.assert_allclose(A.mean(x).numpy(), x.astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n,d", [(3, 4), (5, 33), (10, 17), (25, 9), (50, 40)])
def test_krum_and_multi_krum_match_reference(n: int, d: int) -> None:
    x = rand(n, d, n + 1)
    x[: n // 3] += 50.0  # a clear outlier group
    f = (n - 1) // 3
    scores = ref_krum_scores(x, f)
    best = int(np.argmin(scores))
    np.testing.assert_array_equal(A.krum(x, f=f).numpy(), x[best])
    chosen = np.sort(np.argsort(scores, kind="stable")[: n - f])
    np.testing.assert_array_equal(A.multi_krum(x, f=f).numpy(), ref_mean(x[chosen], np.ones(n - f)))
    assert A.kept_mask(x, A.krum(x, f=f), rule="krum", f=f) == [i == best for i in range(n)]


def test_krum_ties_go_to_lowest_index() -> None:
    x = np.array([[0.0], [2.0], [4.0], [6.0]], np.float32)  # rows 1 and 2 tie
    np.testing.assert_array_equal(A.krum(x, f=0).numpy(), [2.0])
    y = np.array([[1.0], [1.0], [5.0], [9.0]], np.float32)
    np.testing.assert_array_equal(A.krum(y, f=0).numpy(), [1.0])


@pytest.mark.parametrize("n,d", [(2, 3), (5, 33), (10, 17), (25, 9)])
def test_geometric_median_matches_reference(n: int, d: int) -> None:
    x = rand(n, d, n + 7, ties=False)
    got = A.geometric_median(x, tol=1e-12, maxiter=2000).numpy()
    ref = ref_geomed(x)
    scale = np.abs(x).max()
    np.testing.assert_allclose(got, ref, atol=1e-4 * scale, rtol=0)
    assert objective(x, got) <= objective(x, x.astype(np.float64).mean(0)) * (1 + 1e-9)
    assert objective(x, got) <= objective(x, ref_median(x)) * (1 + 1e-6)


def test_geometric_median_weights_count_like_duplicates() -> None:
    x = rand(4, 6, 3)
    dup = np.concatenate([x, x[:1], x[:1]])
    a = A.geometric_median(x, [3.0, 1.0, 1.0, 1.0], tol=1e-12, maxiter=5000).numpy()
    b = A.geometric_median(dup, tol=1e-12, maxiter=5000).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_centered_clipping_matches_reference() -> None:
    x = rand(9, 21, 4)
    center = rand(1, 21, 5)[0]
    tau, iters = 2.0, 4
    v = torch.from_numpy(center).double()
    xt = torch.from_numpy(x).double()
    for _ in range(iters):
        diff = xt - v
        c = torch.clamp(tau / torch.linalg.vector_norm(diff, dim=1), max=1.0)
        v = v + (diff * c[:, None]).mean(0)
    got = A.centered_clipping(x, tau=tau, iters=iters, center=center).numpy()
    np.testing.assert_allclose(got, v.numpy(), rtol=1e-6, atol=1e-6)
    # from zeros, with a huge tau, one step is the plain mean
    np.testing.assert_allclose(A.centered_clipping(x, tau=1e30, iters=1).numpy(), x.mean(0), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- pre-aggregation


def test_clip_norms_matches_reference_and_composes_bit_exactly() -> None:
    x = rand(6, 40, 8)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    tau = float(np.median(norms))
    ref = (x.astype(np.float64) * np.minimum(1.0, tau / norms)[:, None]).astype(np.float32)
    clipped = A.clip_norms(x).numpy()
    np.testing.assert_allclose(clipped, ref, rtol=1e-6, atol=1e-7)
    assert np.all(np.linalg.norm(clipped.astype(np.float64), axis=1) <= tau * (1 + 1e-6))
    for rule in A.RULES:
        via_pre = A.aggregate(x, rule=rule, f=1, pre=("clip",))
        direct = A.aggregate(torch.from_numpy(clipped), rule=rule, f=1)
        assert torch.equal(via_pre, direct), rule


def test_nnm_matches_reference() -> None:
    x = rand(7, 12, 9)
    f = 2
    x64 = x.astype(np.float64)
    dist = ((x64[:, None] - x64[None]) ** 2).sum(-1)
    ref = np.stack([x64[np.argsort(dist[i], kind="stable")[: 7 - f]].mean(0) for i in range(7)])
    np.testing.assert_allclose(A.nnm(x, f=f).numpy(), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(A.aggregate(x, rule="median", f=f, pre=("nnm",)), A.median(A.nnm(x, f=f)))


def test_bucketing_is_seeded_weighted_and_complete() -> None:
    x = rand(7, 5, 10)
    w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    means, weights = A.bucketing(x, w, size=3, seed=42)
    perm = np.random.default_rng(42).permutation(7)
    assert means.shape == (3, 5) and math.isclose(sum(weights), sum(w))
    first = perm[:3]
    expected = (x[first].astype(np.float64) * np.array(w)[first, None]).sum(0) / np.array(w)[first].sum()
    np.testing.assert_allclose(means[0].numpy(), expected, rtol=1e-6)
    again, _ = A.bucketing(x, w, size=3, seed=42)
    other, _ = A.bucketing(x, w, size=3, seed=43)
    assert torch.equal(means, again) and not torch.equal(means, other)


# ----------------------------------------------------------------- properties


@pytest.mark.parametrize("rule", A.RULES)
@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_identical_rows_give_that_row(rule: str, n: int) -> None:
    row = rand(1, 50, 3)[0]
    x = np.tile(row, (n, 1))
    out = A.aggregate(x, rule=rule, f=(n - 1) // 2).numpy()
    if rule in ("geometric_median", "centered_clipping"):
        np.testing.assert_allclose(out, row, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(out, row)


@pytest.mark.parametrize("n,f", [(3, 1), (5, 2), (10, 4), (25, 12), (50, 24)])
@pytest.mark.parametrize("size", [1e3, 1e30, 3e38])
def test_median_stays_within_honest_range_with_f_outliers(n: int, f: int, size: float) -> None:
    honest = rand(n - f, 64, n)
    rng = np.random.default_rng(f)
    outliers = (rng.choice([-1.0, 1.0], size=(f, 64)) * size).astype(np.float32)
    out = A.median(np.concatenate([outliers, honest])).numpy()
    assert np.all(out >= honest.min(0)) and np.all(out <= honest.max(0))
    tm = A.trimmed_mean(np.concatenate([honest, outliers]), f=f).numpy()
    assert np.all(tm >= honest.min(0)) and np.all(tm <= honest.max(0))


def test_outputs_never_hold_negative_zero() -> None:
    x = np.full((4, 3), -0.0, np.float32)
    for rule in A.RULES:
        out = A.aggregate(x, rule=rule).numpy()
        assert not np.any(np.signbit(out)), rule


# ----------------------------------------------------------------- determinism and input forms


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


CASES = [
    ("mean", {}),
    ("median", {}),
    ("trimmed_mean", {"f": 2}),
    ("krum", {"f": 2}),
    ("multi_krum", {"f": 2}),
    ("geometric_median", {}),
    ("centered_clipping", {}),
    ("median", {"f": 2, "pre": ("clip", "nnm")}),
    ("geometric_median", {"pre": ("bucketing",), "bucket_seed": 7}),
]


@pytest.mark.parametrize("rule,opts", CASES)
@pytest.mark.parametrize("n", [7, 8])
def test_bit_identical_with_one_or_two_threads_and_any_input_form(threads, rule: str, opts: dict, n: int) -> None:
    x = rand(n, 2 * 65536 + 11, n)
    w = np.random.default_rng(1).uniform(1, 10, n).tolist()
    outs = []
    for t in (1, 2, 1):
        threads(t)
        outs.append(A.aggregate(torch.from_numpy(x), w, rule=rule, **opts).numpy().tobytes())
    threads(2)
    outs.append(A.aggregate(list(x), w, rule=rule, **opts).numpy().tobytes())
    outs.append(A.aggregate([torch.from_numpy(r) for r in x], w, rule=rule, **opts).numpy().tobytes())
    assert len(set(outs)) == 1


def test_exact_gram_is_exact_on_the_rounded_values() -> None:
    x = rand(4, 20000, 2)
    src = K.Source(list(x))
    gram = K.exact_gram(src)
    # Recompute with Python integers: exact by construction.
    expected = np.zeros((4, 4))
    for s in range(0, 20000, K.GRAM_BLOCK):
        blk = x[:, s : s + K.GRAM_BLOCK].astype(np.float64)
        _, e = np.frexp(np.abs(blk).max(1))
        q = np.rint(blk * np.ldexp(1.0, K.GRAM_BITS - e)[:, None]).astype(np.int64)
        prod = np.array([[int(sum(int(a) * int(b) for a, b in zip(q[i], q[j]))) for j in range(4)] for i in range(4)])
        sc = np.ldexp(1.0, e - K.GRAM_BITS)
        expected += prod.astype(np.float64) * sc[:, None] * sc[None, :]
    np.testing.assert_array_equal(gram, expected)
    # Rounding to 20 bits per (row, block) moves <x_i, x_j> by far less than 1e-6 |x_i| |x_j|.
    true = x.astype(np.float64) @ x.astype(np.float64).T
    norms = np.sqrt(np.diag(true))
    assert np.all(np.abs(gram - true) <= 1e-6 * norms[:, None] * norms[None, :])


# ----------------------------------------------------------------- kept_mask


def test_kept_mask_marks_far_updates_and_is_deterministic() -> None:
    x = rand(9, 30, 5, ties=False) * np.float32(0.001)
    x[2] += 100.0
    x[6] -= 100.0
    agg = A.median(x)
    mask = A.kept_mask(x, agg, rule="median", same_direction=False)  # centred noise: no direction
    assert mask == [i not in (2, 6) for i in range(9)]
    assert A.kept_mask(list(x), agg.numpy(), rule="median", same_direction=False) == mask
    assert A.kept_mask(x, agg, rule="multi_krum", f=2) == [i not in (2, 6) for i in range(9)]


def test_kept_mask_rejects_a_sign_flipped_update_within_the_distance_bound() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=200).astype(np.float32)
    honest = [base + rng.normal(scale=1.2, size=200).astype(np.float32) for _ in range(4)]  # spread: non-IID
    flipped = -honest[0]
    x = np.stack([*honest, flipped])
    agg = A.median(x)
    assert A.kept_mask(x, agg, rule="median", factor=3.0, same_direction=False)[4]  # distance alone keeps it
    mask = A.kept_mask(x, agg, rule="median", factor=3.0)
    assert mask == [True, True, True, True, False]
    assert A.kept_mask(list(x), agg.numpy(), rule="median", factor=3.0) == mask  # same on any input form


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_row_is_named(bad: float) -> None:
    x = rand(5, 100, 0)
    x[3, 77] = bad
    with pytest.raises(AggregationError, match="update 3"):
        A.aggregate(x)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: A.aggregate([x[0], x[1][:5]]), "update 1 has 5 values"),
        (lambda x: A.aggregate(x.astype(np.float64)), "dtype float64"),
        (lambda x: A.aggregate(x, [1.0, 2.0]), "2 weights for 4 updates"),
        (lambda x: A.aggregate(x, [1.0, -2.0, 1.0, 1.0]), "weight 1 is -2.0"),
        (lambda x: A.aggregate(x, rule="krum", f=2), "f = 2 for krum with 4 updates"),
        (lambda x: A.aggregate(x, f=-1), "f = -1"),
        (lambda x: A.aggregate(x, rule="average"), "unknown rule 'average'"),
        (lambda x: A.aggregate(x, rule="median", tau=3.0), "unknown option"),
        (lambda x: A.aggregate(x, pre=("shuffle",)), "unknown pre-aggregation 'shuffle'"),
        (lambda x: A.aggregate([]), "N = 0"),
        (lambda x: A.multi_krum(x, f=1, m=9), "m = 9"),
    ],
)
def test_invalid_input_raises_naming_the_value(call, match: str) -> None:
    with pytest.raises(AggregationError, match=match):
        call(rand(4, 10, 1))


def test_distances_to_aggregate_are_bit_identical_across_threads(threads) -> None:
    x = rand(5, 3 * 65536 + 3, 11)
    point = A.median(x).numpy()
    got = []
    for t in (1, 2):
        threads(t)
        got.append(K.distances_to(list(x), point).tobytes())
        got.append(bytes(A.kept_mask(x, point, rule="median", factor=1.0)))
    assert got[0] == got[2] and got[1] == got[3]
    ref = np.linalg.norm(x.astype(np.float64) - point.astype(np.float64), axis=1)
    np.testing.assert_allclose(np.frombuffer(got[0]), ref, rtol=1e-12)
