"""peer.data: loaders, partitioners, splits and per-peer data, checked against counts
computed independently (numpy) and against scikit-learn's own arrays."""

from __future__ import annotations

import numpy as np
import pytest

from peer.data import (
    DataConfig,
    Dataset,
    load_dataset,
    load_peer_data,
    partition,
    pooled_data,
    train_test_split,
)
from peer.errors import ConfigError, DataError

# ------------------------------------------------------------------------------ loaders


def test_digits_scaled_to_unit_interval_as_images() -> None:
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    ref = load_digits()
    assert ds.X.shape == (1797, 1, 8, 8) and ds.input_shape == (1, 8, 8)
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.n_classes == 10
    np.testing.assert_array_equal(ds.y, ref.target)
    np.testing.assert_allclose(ds.X.reshape(1797, 64), ref.data / 16.0, rtol=0, atol=1e-7)
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0


def test_breast_cancer_standardised() -> None:
    ds = load_dataset("breast_cancer")
    assert ds.X.shape == (569, 30) and ds.n_classes == 2
    X = ds.X.astype(np.float64)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=0), 1.0, atol=1e-5)


def test_synthetic_any_size_and_deterministic() -> None:
    a = load_dataset("synthetic", n_samples=5000, seed=3, n_classes=5, n_features=12)
    b = load_dataset("synthetic", n_samples=5000, seed=3, n_classes=5, n_features=12)
    c = load_dataset("synthetic", n_samples=5000, seed=4, n_classes=5, n_features=12)
    assert a.X.shape == (5000, 12) and a.n_classes == 5
    assert set(np.unique(a.y)) == set(range(5))
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


def test_synthetic_impossible_shape_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="n_classes=10, n_features=2"):
        load_dataset("synthetic", n_classes=10, n_features=2)


def test_subsample_is_seeded_subset() -> None:
    full = load_dataset("digits")
    sub = load_dataset("digits", n_samples=300, seed=5)
    assert len(sub) == 300
    again = load_dataset("digits", n_samples=300, seed=5)
    np.testing.assert_array_equal(sub.X, again.X)
    # every subsampled record is a record of the full set
    full_rows = {r.tobytes() for r in full.X.reshape(len(full), -1)}
    assert all(r.tobytes() in full_rows for r in sub.X.reshape(300, -1))
    with pytest.raises(DataError, match="n_samples=5000"):
        load_dataset("digits", n_samples=5000)


def test_unknown_dataset_named() -> None:
    with pytest.raises(ConfigError, match="'mnist'"):
        load_dataset("mnist")


def test_csv_with_string_labels(tmp_path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("age,bp,outcome\n50,120,sick\n30,110,well\n40,115,sick\n35,140,well\n")
    ds = load_dataset("csv", path=str(path), csv_label="outcome", standardize=False)
    assert ds.input_shape == (2,) and ds.n_classes == 2
    np.testing.assert_array_equal(ds.y, [0, 1, 0, 1])  # sorted vocabulary: sick, well
    np.testing.assert_array_equal(ds.X[0], [50, 120])
    std = load_dataset("csv", path=str(path), csv_label="outcome")
    np.testing.assert_allclose(std.X.mean(axis=0), 0, atol=1e-6)


def test_csv_integer_labels_and_declared_classes(tmp_path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("y,a\n0,1.5\n2,2.5\n2,0.5\n")
    ds = load_dataset("csv", path=str(path), csv_label="y", n_classes=4)
    np.testing.assert_array_equal(ds.y, [0, 2, 2])
    assert ds.n_classes == 4


@pytest.mark.parametrize(
    ("text", "label", "error", "match"),
    [
        ("a,b\n1,2\n", "y", DataError, "no label column 'y'"),
        ("a,y\n1,0\nx,1\n", "y", DataError, "line 3"),
        ("a,y\n1,0\n2\n", "y", DataError, "line 3"),
        ("a,y\n1,0.5\n2,1\n", "y", DataError, "whole numbers"),
        ("a,y\n1,0\n2,1\n", None, ConfigError, "csv_label"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path, text, label, error, match) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(error, match=match):
        load_dataset("csv", path=str(path), csv_label=label)


def test_npz_roundtrip_and_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    good = tmp_path / "good.npz"
    np.savez(good, X=X, y=y)
    ds = load_dataset("npz", path=str(good), standardize=False)
    assert ds.input_shape == (3, 4) and ds.n_classes == 3
    np.testing.assert_array_equal(ds.X, X)
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=X, labels=y)
    with pytest.raises(DataError, match="'y'"):
        load_dataset("npz", path=str(bad))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("npz", path=str(tmp_path / "missing.npz"))


# ---------------------------------------------------------------------------- partition


def _assert_disjoint_sorted(parts: list[np.ndarray], n: int) -> None:
    allidx = np.concatenate(parts)
    assert len(np.unique(allidx)) == len(allidx), "parts overlap"
    assert allidx.min() >= 0 and allidx.max() < n
    assert all(np.all(np.diff(p) > 0) for p in parts)


def test_iid_partition_covers_everything_evenly() -> None:
    y = load_dataset("digits").y
    parts = partition(y, 7, scheme="iid", seed=1)
    _assert_disjoint_sorted(parts, len(y))
    assert sum(len(p) for p in parts) == len(y)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    again = partition(y, 7, scheme="iid", seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition(y, 7, scheme="iid", seed=2)
    assert not np.array_equal(parts[0], other[0])


def _mean_tv_distance(y: np.ndarray, parts: list[np.ndarray], k: int) -> float:
    """Mean total-variation distance between each part's label histogram and the global one."""
    glob = np.bincount(y, minlength=k) / len(y)
    return float(np.mean([0.5 * np.abs(np.bincount(y[p], minlength=k) / len(p) - glob).sum()
                          for p in parts]))


def test_dirichlet_skew_is_measurable_and_shrinks_with_alpha() -> None:
    ds = load_dataset("digits")
    skewed = partition(ds.y, 10, scheme="dirichlet", alpha=0.1, seed=0)
    mild = partition(ds.y, 10, scheme="dirichlet", alpha=100.0, seed=0)
    iid = partition(ds.y, 10, scheme="iid", seed=0)
    for parts in (skewed, mild):
        _assert_disjoint_sorted(parts, len(ds.y))
        assert sum(len(p) for p in parts) == len(ds.y)
        assert min(map(len, parts)) >= 1
    tv_skewed = _mean_tv_distance(ds.y, skewed, 10)
    tv_mild = _mean_tv_distance(ds.y, mild, 10)
    tv_iid = _mean_tv_distance(ds.y, iid, 10)
    assert tv_skewed > 0.5, tv_skewed
    assert tv_mild < 0.15 and tv_iid < 0.15, (tv_mild, tv_iid)


def test_dirichlet_impossible_is_a_clear_error() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(DataError, match="alpha=0.01"):
        partition(y, 5, scheme="dirichlet", alpha=0.01, seed=0, min_size=2)


def test_sizes_partition_hospitals() -> None:
    ds = load_dataset("synthetic", n_samples=3500, seed=0)
    parts = partition(ds.y, 3, scheme="sizes", sizes=[1000, 1500, 800], seed=9)
    assert [len(p) for p in parts] == [1000, 1500, 800]
    _assert_disjoint_sorted(parts, 3500)
    with pytest.raises(DataError, match=r"\[1000, 1500, 800\] need 3300"):
        partition(ds.y[:3000], 3, scheme="sizes", sizes=[1000, 1500, 800])
    with pytest.raises(ConfigError, match="one size per part"):
        partition(ds.y, 2, scheme="sizes", sizes=[1000, 1500, 800])


def test_quantity_skew_sizes_vary_labels_do_not() -> None:
    ds = load_dataset("synthetic", n_samples=4000, seed=1)
    parts = partition(ds.y, 8, scheme="quantity", alpha=0.5, seed=3, min_size=10)
    sizes = np.array([len(p) for p in parts])
    _assert_disjoint_sorted(parts, 4000)
    assert sizes.sum() == 4000 and sizes.min() >= 10
    assert sizes.max() > 3 * sizes.min(), sizes
    big = [p for p in parts if len(p) >= 200]
    assert _mean_tv_distance(ds.y, big, 4) < 0.15


def test_partition_validation() -> None:
    y = np.zeros(10, dtype=np.int64)
    with pytest.raises(ConfigError, match="'zipf'"):
        partition(y, 2, scheme="zipf")
    with pytest.raises(ConfigError, match="alpha"):
        partition(y, 2, scheme="dirichlet", alpha=0)
    with pytest.raises(DataError, match="10 records cannot give 11 parts"):
        partition(y, 11)


# ------------------------------------------------------------------------------- splits


def test_train_test_split_disjoint_and_seeded() -> None:
    ds = load_dataset("breast_cancer")
    tr, te = train_test_split(ds, test_fraction=0.25, seed=2)
    assert len(te) == round(569 * 0.25) and len(tr) + len(te) == 569
    rows = {r.tobytes() for r in tr.X}
    assert not any(r.tobytes() in rows for r in te.X)
    tr2, _ = train_test_split(ds, test_fraction=0.25, seed=2)
    np.testing.assert_array_equal(tr.X, tr2.X)
    with pytest.raises(ConfigError, match="1.5"):
        train_test_split(ds, test_fraction=1.5, seed=0)
    tiny = ds.subset(np.array([0]))
    with pytest.raises(DataError, match="too few"):
        train_test_split(tiny, test_fraction=0.5, seed=0)


def test_load_peer_data_gives_disjoint_peer_shares() -> None:
    cfg = DataConfig(dataset="digits", partition="dirichlet", alpha=0.5, seed=4)
    shares = [load_peer_data(cfg, i, 4) for i in range(4)]
    seen: set[bytes] = set()
    total = 0
    for train, test in shares:
        assert len(train) >= 1 and len(test) >= 1
        for part in (train, test):
            pairs = zip(part.X, part.y, strict=True)
            keys = {r.tobytes() + bytes([int(label)]) for r, label in pairs}
            assert not keys & seen
            seen |= keys
            total += len(part)
    assert total == 1797
    train0, _ = load_peer_data(cfg, 0, 4)
    np.testing.assert_array_equal(train0.X, shares[0][0].X)
    pooled_train, pooled_test = pooled_data(cfg, 4)
    assert len(pooled_train) == sum(len(t) for t, _ in shares)
    assert len(pooled_test) == sum(len(t) for _, t in shares)
    np.testing.assert_array_equal(pooled_test.y, np.concatenate([t.y for _, t in shares]))


def test_data_config_validation() -> None:
    with pytest.raises(ConfigError, match="'zipf'"):
        DataConfig(partition="zipf")
    with pytest.raises(ConfigError, match="data.sizes"):
        DataConfig(partition="sizes")
    with pytest.raises(ConfigError, match=r"\['colour'\]"):
        DataConfig.from_dict({"dataset": "digits", "colour": "red"})
    assert DataConfig.from_dict({"partition": "sizes", "sizes": [2, 3]}).sizes == (2, 3)
    with pytest.raises(ConfigError, match="peer_index"):
        load_peer_data(DataConfig(), 3, 3)


def test_partition_none_uses_the_whole_file(tmp_path) -> None:
    path = tmp_path / "own.npz"
    np.savez(path, X=np.arange(20, dtype=np.float32).reshape(10, 2), y=np.arange(10) % 2)
    cfg = DataConfig(dataset="npz", path=str(path), partition="none", test_fraction=0.2)
    train, test = load_peer_data(cfg, 0, 1)
    assert (len(train), len(test)) == (8, 2)


def test_dataset_checks_its_arrays() -> None:
    with pytest.raises(DataError, match="float32"):
        Dataset(X=np.zeros((2, 3)), y=np.zeros(2, dtype=np.int64), n_classes=2,
                input_shape=(3,), name="x")
    with pytest.raises(DataError, match="n_classes=2"):
        Dataset(X=np.zeros((2, 3), np.float32), y=np.array([0, 2]), n_classes=2,
                input_shape=(3,), name="x")
