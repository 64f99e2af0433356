"""Datasets and how they are split between peers.

A :class:`Dataset` is two arrays: features ``X`` (float32, shape ``(n, *input_shape)``)
and labels ``y`` (int64 in ``[0, n_classes)``). Sources (:func:`load_dataset`):

- ``digits``: scikit-learn's 8x8 handwritten digits (1797 records, 10 classes),
  pixels scaled to [0, 1], ``input_shape = (1, 8, 8)`` so a CNN can use it as an image;
- ``breast_cancer``: scikit-learn's Wisconsin set (569 records, 30 features, 2 classes);
- ``synthetic``: ``sklearn.datasets.make_classification`` of any size;
- ``csv``: a user's file with a header row; the label column is named by ``csv_label``;
- ``npz``: a user's ``numpy.savez`` file holding arrays ``X`` and ``y``.

Tabular features are standardised (z-score, computed in float64) so every optimiser
setting works on every dataset. Everything random is drawn from ``numpy``'s PCG64
seeded with ``seed`` (and a purpose tag), so the same config gives the same data.

Partitioners (:func:`partition`) give each simulated peer a set of record indices:

- ``iid``: a seeded shuffle cut into near-equal parts;
- ``dirichlet``: label skew (Hsu et al. 2019): for each class, proportions over the
  peers drawn from Dirichlet(alpha); small alpha = each peer sees few classes;
- ``sizes``: explicit record counts per peer (e.g. hospitals with 1000, 1500, 800);
- ``quantity``: quantity skew: part sizes proportional to a Dirichlet(alpha) draw,
  labels IID.

Example::

    cfg = DataConfig(dataset="digits", partition="dirichlet", alpha=0.3, seed=7)
    train, test = load_peer_data(cfg, peer_index=0, n_peers=5)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from peer.errors import ConfigError, DataError

__all__ = [
    "Dataset",
    "DataConfig",
    "DATASETS",
    "PARTITION_SCHEMES",
    "load_dataset",
    "partition",
    "train_test_split",
    "load_peer_data",
    "pooled_data",
]

DATASETS = ("digits", "breast_cancer", "synthetic", "csv", "npz")
PARTITION_SCHEMES = ("iid", "dirichlet", "sizes", "quantity")
_MAX_RESAMPLE = 100  # Dirichlet draws tried before a partition with an empty part is an error

# Purpose tags mixed into seeds, so that one user seed drives independent streams.
_TAG_SUBSAMPLE, _TAG_PARTITION, _TAG_SPLIT = 11, 22, 33


@dataclass(frozen=True)
class Dataset:
    """Features ``X`` (float32, ``(n, *input_shape)``) and labels ``y`` (int64)."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    input_shape: tuple[int, ...]
    name: str

    def __post_init__(self) -> None:
        if self.X.dtype != np.float32 or self.y.dtype != np.int64:
            raise DataError(f"dataset {self.name!r}: X must be float32 and y int64, "
                            f"got {self.X.dtype} and {self.y.dtype}")
        if self.X.shape[0] != self.y.shape[0] or self.y.ndim != 1:
            raise DataError(f"dataset {self.name!r}: X has {self.X.shape[0]} rows but y has "
                            f"shape {self.y.shape}")
        if tuple(self.X.shape[1:]) != tuple(self.input_shape):
            raise DataError(f"dataset {self.name!r}: X rows have shape {self.X.shape[1:]}, "
                            f"input_shape says {self.input_shape}")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.n_classes):
            raise DataError(f"dataset {self.name!r}: labels span [{self.y.min()}, {self.y.max()}]"
                            f" but n_classes={self.n_classes}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: np.ndarray, *, name: str | None = None) -> Dataset:
        """The records at ``indices`` (copied), same classes and shape."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(X=np.ascontiguousarray(self.X[idx]), y=np.ascontiguousarray(self.y[idx]),
                       n_classes=self.n_classes, input_shape=self.input_shape,
                       name=name or self.name)

    def class_counts(self) -> np.ndarray:
        """Records per class, length ``n_classes``."""
        return np.bincount(self.y, minlength=self.n_classes)


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *tags]))


def _check_seed(seed: int) -> None:
    if type(seed) is not int or seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}")


# ------------------------------------------------------------------------------ loading


def _standardise(X: np.ndarray) -> np.ndarray:
    """Per-feature z-score in float64, constant features left at 0; float32 out."""
    X64 = X.astype(np.float64)
    mean = X64.mean(axis=0)
    std = X64.std(axis=0)
    std[std == 0] = 1.0
    return ((X64 - mean) / std).astype(np.float32)


def _labels(raw: np.ndarray, n_classes: int | None, source: str) -> tuple[np.ndarray, int]:
    """Integer labels as given (>= 0), else a sorted vocabulary of the distinct values.

    Peers of one federation must agree on the label encoding: with string labels every
    peer's file must contain every class (or use integer labels), see the README.
    """
    if raw.dtype.kind in "biuf":
        y = raw.astype(np.int64)
        if raw.dtype.kind == "f" and not np.array_equal(y, raw):
            raise DataError(f"{source}: numeric labels must be whole numbers, found "
                            f"{raw[y != raw][0]!r}")
        if len(y) and y.min() < 0:
            raise DataError(f"{source}: integer labels must be >= 0, found {y.min()}")
        inferred = int(y.max()) + 1 if len(y) else 0
    elif raw.dtype.kind in "US":
        vocab, inverse = np.unique(raw.astype(str), return_inverse=True)
        y = inverse.astype(np.int64)
        inferred = len(vocab)
    else:
        raise DataError(f"{source}: labels of dtype {raw.dtype} are neither numbers nor strings")
    if n_classes is not None:
        if n_classes < inferred:
            raise DataError(f"{source}: labels need {inferred} classes but n_classes={n_classes}")
        inferred = n_classes
    if inferred < 2:
        raise DataError(f"{source}: a classification dataset needs >= 2 classes, got {inferred}")
    return y, inferred


def _load_csv(path: str, label: str | None,
              n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    if not label:
        raise ConfigError("dataset 'csv' needs csv_label, the name of the label column")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise DataError(f"cannot read CSV {path!r}: {exc}") from exc
    if len(rows) < 2:
        raise DataError(f"CSV {path!r}: needs a header row and at least one record")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise DataError(f"CSV {path!r}: no label column {label!r}; columns are {header}")
    li = header.index(label)
    features, labels = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"CSV {path!r} line {lineno}: {len(row)} fields, "
                            f"header has {len(header)}")
        labels.append(row[li].strip())
        try:
            features.append([float(v) for j, v in enumerate(row) if j != li])
        except ValueError as exc:
            raise DataError(f"CSV {path!r} line {lineno}: non-numeric feature ({exc})") from exc
    X = np.asarray(features, dtype=np.float64)
    if not np.isfinite(X).all():
        raise DataError(f"CSV {path!r}: features contain NaN or Inf")
    raw = np.asarray(labels)
    try:
        raw = raw.astype(np.float64)  # numeric labels such as "1" or "1.0"
    except ValueError:
        pass
    y, k = _labels(raw, n_classes, f"CSV {path!r}")
    return X, y, k


def _load_npz(path: str, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"X", "y"} <= keys:
                raise DataError(f"npz {path!r}: needs arrays 'X' and 'y', has {sorted(keys)}")
            X, raw = z["X"], z["y"]
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read npz {path!r}: {exc}") from exc
    if X.ndim < 2 or raw.ndim != 1 or X.shape[0] != raw.shape[0]:
        raise DataError(f"npz {path!r}: X must be (n, ...) and y (n,), "
                        f"got {X.shape} and {raw.shape}")
    if X.dtype.kind not in "fiu":
        raise DataError(f"npz {path!r}: X has non-numeric dtype {X.dtype}")
    if not np.isfinite(X).all():
        raise DataError(f"npz {path!r}: X contains NaN or Inf")
    y, k = _labels(raw, n_classes, f"npz {path!r}")
    return X.astype(np.float64), y, k


def load_dataset(name: str, *, n_samples: int | None = None, seed: int = 0,
                 csv_label: str | None = None, path: str | None = None,
                 n_classes: int | None = None, n_features: int = 20,
                 standardize: bool = True) -> Dataset:
    """Load a dataset by name (see the module docstring), deterministic in ``seed``.

    ``n_samples``: for ``synthetic`` the size to generate (default 1000); for the other
    sources a seeded random subset of that size (default: everything).
    ``n_classes``: classes to generate (synthetic, default 4), or the federation's
    declared number of classes for csv/npz (default: inferred from the labels).
    ``n_features``: features of synthetic data. ``standardize``: z-score tabular
    features (digits are always scaled to [0, 1] instead).
    """
    _check_seed(seed)
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if n_samples is not None and (type(n_samples) is not int or n_samples < 1):
        raise ConfigError(f"n_samples must be a positive int, got {n_samples!r}")
    if name in ("csv", "npz"):
        if not path:
            raise ConfigError(f"dataset {name!r} needs a path")
        if not os.path.isfile(path):
            raise DataError(f"dataset file {path!r} does not exist")

    from sklearn import datasets as skd  # heavy: only when loading

    input_shape: tuple[int, ...]
    if name == "digits":
        bunch = skd.load_digits()
        X = (bunch.data / 16.0).reshape(-1, 1, 8, 8)
        y, k, input_shape = bunch.target.astype(np.int64), 10, (1, 8, 8)
        standardize = False
    elif name == "breast_cancer":
        bunch = skd.load_breast_cancer()
        X, y, k = bunch.data, bunch.target.astype(np.int64), 2
    elif name == "synthetic":
        k = 4 if n_classes is None else n_classes
        if type(k) is not int or k < 2:
            raise ConfigError(f"n_classes must be an int >= 2, got {n_classes!r}")
        if type(n_features) is not int or n_features < 2:
            raise ConfigError(f"n_features must be an int >= 2, got {n_features!r}")
        n = 1000 if n_samples is None else n_samples
        if n < k:
            raise ConfigError(f"synthetic n_samples={n} is fewer than n_classes={k}")
        n_inf = max(2, min(n_features, math.ceil(math.log2(k)) + 4))
        try:
            X, y = skd.make_classification(
                n_samples=n, n_features=n_features, n_informative=n_inf,
                n_redundant=min(2, n_features - n_inf), n_classes=k, n_clusters_per_class=1,
                class_sep=1.0, random_state=seed)
        except ValueError as exc:  # e.g. too few features for that many classes
            raise ConfigError(f"synthetic data with n_classes={k}, n_features={n_features}: "
                              f"{exc}") from exc
        y = y.astype(np.int64)
        n_samples = None  # already the requested size
    elif name == "csv":
        assert path is not None
        X, y, k = _load_csv(path, csv_label, n_classes)
    else:
        assert path is not None
        X, y, k = _load_npz(path, n_classes)
    if name != "digits":
        input_shape = tuple(int(d) for d in X.shape[1:])

    if n_samples is not None:
        if n_samples > len(y):
            raise DataError(f"dataset {name!r} has {len(y)} records, n_samples={n_samples} asked")
        keep = np.sort(_rng(seed, _TAG_SUBSAMPLE).permutation(len(y))[:n_samples])
        X, y = X[keep], y[keep]
    if standardize:
        Xf = _standardise(X.reshape(len(y), -1)).reshape(X.shape)
    else:
        Xf = X.astype(np.float32)
    return Dataset(X=np.ascontiguousarray(Xf), y=np.ascontiguousarray(y), n_classes=k,
                   input_shape=input_shape, name=name)


# ---------------------------------------------------------------------------- partition


def _check_nonempty(parts: list[np.ndarray], scheme: str, min_size: int) -> list[np.ndarray]:
    for i, p in enumerate(parts):
        if len(p) < min_size:
            raise DataError(f"partition {scheme!r}: part {i} has {len(p)} records, "
                            f"fewer than min_size={min_size}")
    return parts


def _split_by_counts(order: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *counts])
    return [np.sort(order[bounds[i]:bounds[i + 1]]) for i in range(len(counts))]


def _dirichlet_label_skew(y: np.ndarray, n_parts: int, alpha: float, rng: np.random.Generator,
                          min_size: int) -> list[np.ndarray]:
    classes = np.unique(y)
    for _ in range(_MAX_RESAMPLE):
        buckets: list[list[np.ndarray]] = [[] for _ in range(n_parts)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            props = rng.dirichlet(np.full(n_parts, alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(np.int64)
            for part, chunk in enumerate(np.split(idx, cuts)):
                buckets[part].append(chunk)
        parts = [np.sort(np.concatenate(b)) for b in buckets]
        if min(len(p) for p in parts) >= min_size:
            return parts
    raise DataError(f"partition 'dirichlet': alpha={alpha} left a part with fewer than "
                    f"{min_size} records in {_MAX_RESAMPLE} draws; raise alpha or use fewer "
                    f"peers than {n_parts} for {len(y)} records")


def _quantity_skew(n: int, n_parts: int, alpha: float, rng: np.random.Generator,
                   min_size: int) -> list[np.ndarray]:
    if n < n_parts * min_size:
        raise DataError(f"partition 'quantity': {n} records cannot give {n_parts} parts of "
                        f">= {min_size}")
    order = rng.permutation(n)
    props = rng.dirichlet(np.full(n_parts, alpha))
    # Everyone gets min_size, the rest is shared by the Dirichlet proportions
    # (largest-remainder rounding, so the counts sum exactly to n).
    spare = n - n_parts * min_size
    raw = props * spare
    counts = np.floor(raw).astype(np.int64)
    left = spare - int(counts.sum())
    counts[np.argsort(-(raw - counts), kind="stable")[:left]] += 1
    return _split_by_counts(order, (counts + min_size).tolist())


def partition(y: np.ndarray, n_parts: int, *, scheme: str = "iid", alpha: float = 0.5,
              sizes: Sequence[int] | None = None, seed: int = 0,
              min_size: int = 1) -> list[np.ndarray]:
    """Split record indices ``0..len(y)-1`` into ``n_parts`` sorted, disjoint index arrays.

    Every part gets at least ``min_size`` records or a DataError says which did not.
    ``sizes`` (scheme ``sizes``) lists each part's record count; their sum may be less
    than ``len(y)`` (the rest is unused). ``alpha`` is the Dirichlet concentration of
    ``dirichlet`` and ``quantity``. Deterministic in ``seed``.
    """
    _check_seed(seed)
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"partition: labels must be 1-D, got shape {y.shape}")
    if type(n_parts) is not int or n_parts < 1:
        raise ConfigError(f"n_parts must be a positive int, got {n_parts!r}")
    if scheme not in PARTITION_SCHEMES:
        raise ConfigError(f"unknown partition scheme {scheme!r}; choose one of {PARTITION_SCHEMES}")
    if scheme in ("dirichlet", "quantity") and not (isinstance(alpha, (int, float))
                                                    and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"alpha must be a finite number > 0, got {alpha!r}")
    if type(min_size) is not int or min_size < 1:
        raise ConfigError(f"min_size must be an int >= 1, got {min_size!r}")
    n = len(y)
    rng = _rng(seed, _TAG_PARTITION)
    if scheme == "iid":
        if n < n_parts * min_size:
            raise DataError(f"partition 'iid': {n} records cannot give {n_parts} parts of "
                            f">= {min_size}")
        parts = [np.sort(p) for p in np.array_split(rng.permutation(n), n_parts)]
    elif scheme == "sizes":
        if sizes is None or len(sizes) != n_parts:
            raise ConfigError(f"partition 'sizes' needs one size per part ({n_parts}), "
                              f"got sizes={sizes!r}")
        if any(type(s) is not int or s < 1 for s in sizes):
            raise ConfigError(f"partition sizes must be positive ints, got {list(sizes)}")
        if sum(sizes) > n:
            raise DataError(f"partition sizes {list(sizes)} need {sum(sizes)} records, "
                            f"the dataset has {n}")
        parts = _split_by_counts(rng.permutation(n), sizes)
    elif scheme == "dirichlet":
        parts = _dirichlet_label_skew(y, n_parts, float(alpha), rng, min_size)
    else:
        parts = _quantity_skew(n, n_parts, float(alpha), rng, min_size)
    return _check_nonempty([p.astype(np.int64) for p in parts], scheme, min_size)


def train_test_split(ds: Dataset, *, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded random split; the test part has ``round(n * test_fraction)`` records
    (at least 1 when ``test_fraction > 0``), the train part at least 1."""
    _check_seed(seed)
    if not (isinstance(test_fraction, (int, float)) and 0 <= test_fraction < 1):
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    n = len(ds)
    n_test = 0 if test_fraction == 0 else max(1, round(n * test_fraction))
    if n - n_test < 1:
        raise DataError(f"dataset {ds.name!r} has {n} records: too few to hold out "
                        f"test_fraction={test_fraction} and still train")
    order = _rng(seed, _TAG_SPLIT).permutation(n)
    return (ds.subset(np.sort(order[n_test:]), name=f"{ds.name}/train"),
            ds.subset(np.sort(order[:n_test]), name=f"{ds.name}/test"))


# ------------------------------------------------------------------------- peer config


@dataclass(frozen=True)
class DataConfig:
    """Where a peer's data comes from and how a simulation splits it.

    ``partition="none"`` means the dataset is this peer's own (a real deployment: each
    participant points ``path`` at its private file); the other schemes simulate
    ``n_peers`` participants by splitting one dataset (see :func:`partition`).
    """

    dataset: str = "digits"
    n_samples: int | None = None
    path: str | None = None
    csv_label: str | None = None
    n_classes: int | None = None
    n_features: int = 20
    standardize: bool = True
    partition: str = "iid"
    alpha: float = 0.5
    sizes: tuple[int, ...] | None = None
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"data.dataset: unknown {self.dataset!r}; choose one of {DATASETS}")
        if self.partition not in (*PARTITION_SCHEMES, "none"):
            raise ConfigError(f"data.partition: unknown {self.partition!r}; choose one of "
                              f"{(*PARTITION_SCHEMES, 'none')}")
        if not (isinstance(self.test_fraction, (int, float)) and 0 <= self.test_fraction < 1):
            raise ConfigError(f"data.test_fraction must be in [0, 1), got {self.test_fraction!r}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)
                and self.alpha > 0):
            raise ConfigError(f"data.alpha must be a finite number > 0, got {self.alpha!r}")
        if self.sizes is not None:
            object.__setattr__(self, "sizes", tuple(self.sizes))
        if self.partition == "sizes" and not self.sizes:
            raise ConfigError("data.partition='sizes' needs data.sizes, e.g. [1000, 1500, 800]")
        _check_seed(self.seed)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        """Build from a TOML table; unknown keys are a ConfigError naming them."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"data: unknown option(s) {unknown}")
        return cls(**d)

    def load(self) -> Dataset:
        """The whole dataset this config names (before any partition)."""
        return load_dataset(self.dataset, n_samples=self.n_samples, seed=self.seed,
                            csv_label=self.csv_label, path=self.path, n_classes=self.n_classes,
                            n_features=self.n_features, standardize=self.standardize)


def _peer_part(cfg: DataConfig, ds: Dataset, peer_index: int, n_peers: int) -> Dataset:
    if type(n_peers) is not int or n_peers < 1:
        raise ConfigError(f"n_peers must be a positive int, got {n_peers!r}")
    if type(peer_index) is not int or not 0 <= peer_index < n_peers:
        raise ConfigError(f"peer_index must be in [0, {n_peers}), got {peer_index!r}")
    if cfg.partition == "none":
        return ds
    # min_size 2 so that every peer can hold out a test record and still train.
    parts = partition(ds.y, n_peers, scheme=cfg.partition, alpha=cfg.alpha,
                      sizes=cfg.sizes, seed=cfg.seed, min_size=2 if cfg.test_fraction else 1)
    return ds.subset(parts[peer_index], name=f"{ds.name}[{peer_index}/{n_peers}]")


def load_peer_data(cfg: DataConfig, peer_index: int, n_peers: int) -> tuple[Dataset, Dataset]:
    """Peer ``peer_index``'s (train, test) split: its partition of the dataset, then a
    per-peer seeded train/test split. Deterministic in ``cfg``."""
    part = _peer_part(cfg, cfg.load(), peer_index, n_peers)
    return train_test_split(part, test_fraction=cfg.test_fraction, seed=cfg.seed + peer_index)


def pooled_data(cfg: DataConfig, n_peers: int) -> tuple[Dataset, Dataset]:
    """The union of all peers' train sets and of all their test sets.

    These are exactly the records a federation of ``n_peers`` trains and tests on, so a
    centralised model trained here is the fair baseline for a federated result.
    """
    ds = cfg.load()
    trains, tests = [], []
    for i in range(n_peers if cfg.partition != "none" else 1):
        part = _peer_part(cfg, ds, i, n_peers if cfg.partition != "none" else 1)
        tr, te = train_test_split(part, test_fraction=cfg.test_fraction, seed=cfg.seed + i)
        trains.append(tr)
        tests.append(te)

    def cat(parts: list[Dataset], tag: str) -> Dataset:
        return Dataset(X=np.concatenate([p.X for p in parts]),
                       y=np.concatenate([p.y for p in parts]),
                       n_classes=ds.n_classes, input_shape=ds.input_shape, name=f"{ds.name}/{tag}")

    return cat(trains, "pooled-train"), cat(tests, "pooled-test")
