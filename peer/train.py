"""Local training of one peer, evaluation, and the centralised baseline.

:func:`train_local` is what a selected peer runs each round: start from the global
model M(r-1), train on its own data (mini-batch SGD or Adam, optional weight decay
and FedProx proximal term ``mu/2 * ||w - w_global||^2``, Li et al. 2020), and return
the update ``U = M_local - M(r-1)``, optionally clipped and noised for client-level
differential privacy (:mod:`peer.privacy`).

Determinism: the shuffling of every epoch comes from a private ``torch.Generator``
seeded from ``(cfg.seed, peer_seed, round)``, the model starts from the exact global
vector, and the ops used (linear, conv2d, max-pool, cross-entropy, SGD, Adam) are
deterministic on CPU (they also run under ``torch.use_deterministic_algorithms(True)``,
which a caller may set; this module does not touch that global flag). The same inputs
in one process setting therefore give a bit-identical update. Across intra-op thread
counts they agree only to float32 rounding (about 1e-7 relative): MKL splits the
weight-gradient matmul differently with 1 and 2 threads. Training need not be
bit-identical between peers: only decoding and aggregation are consensus-critical.
Nothing here changes torch's global state (RNG, thread count, deterministic flag).

Threads: small models train fastest on one intra-op thread (per-op thread start-up
dominates the tiny matmuls), and several peers of one simulation then run in
parallel without oversubscribing the cores. :func:`configure_torch_threads` sets
that once per process; the CLI and the simulator call it, libraries never do.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from peer.data import DataConfig, Dataset, pooled_data
from peer.errors import ConfigError, DataError
from peer.models import (
    ModelError,
    ModelSpec,
    build_model,
    get_flat,
    model_hash,
    set_flat,
    spec_hash,
)
from peer.privacy import DPConfig, PrivacyAccountant, clip_and_noise

if TYPE_CHECKING:
    import torch

__all__ = [
    "TrainConfig",
    "LocalResult",
    "OPTIMIZERS",
    "train_local",
    "evaluate",
    "centralized_baseline",
    "configure_torch_threads",
]

OPTIMIZERS = ("sgd", "adam")
_EVAL_CHUNK = 4096


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class TrainConfig:
    """Local training options (the same for every peer of a federation)."""

    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    prox_mu: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if type(self.epochs) is not int or self.epochs < 1:
            raise ConfigError(f"train.epochs must be an int >= 1, got {self.epochs!r}")
        if type(self.batch_size) is not int or self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer must be one of {OPTIMIZERS}, "
                              f"got {self.optimizer!r}")
        if not (_finite(self.lr) and self.lr > 0):
            raise ConfigError(f"train.lr must be a finite number > 0, got {self.lr!r}")
        if not (_finite(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError(f"train.momentum must be in [0, 1), got {self.momentum!r}")
        if self.momentum and self.optimizer != "sgd":
            raise ConfigError(f"train.momentum applies to sgd only, "
                              f"got optimizer={self.optimizer!r}")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (_finite(self.prox_mu) and self.prox_mu >= 0):
            raise ConfigError(f"train.prox_mu must be >= 0, got {self.prox_mu!r}")
        if type(self.seed) is not int or self.seed < 0:
            raise ConfigError(f"train.seed must be a non-negative int, got {self.seed!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a TOML table; unknown keys are a ConfigError naming them."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"train: unknown option(s) {unknown}")
        return cls(**d)


@dataclass(frozen=True)
class LocalResult:
    """One peer's round: ``update`` = local - global (float32), the number of training
    records, the mean training loss of the last epoch, and with DP the epsilon of this
    round alone and (if an accountant was given) the peer's total so far."""

    update: np.ndarray
    n_samples: int
    loss: float
    dp_epsilon: float | None = None
    dp_epsilon_total: float | None = None
    seconds: float = field(default=0.0, compare=False)


def configure_torch_threads(n: int | None = 1) -> int:
    """Set torch's intra-op threads for this process (``None``: leave torch's default);
    returns the count in force. Call once at start-up, not from library code."""
    import torch

    if n is not None:
        if type(n) is not int or n < 1:
            raise ConfigError(f"threads must be a positive int, got {n!r}")
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _check_data(spec: ModelSpec, ds: Dataset) -> None:
    if tuple(ds.input_shape) != tuple(spec.input_shape):
        raise DataError(f"dataset {ds.name!r} has input_shape {ds.input_shape}, "
                        f"the model expects {spec.input_shape}")
    if ds.n_classes != spec.n_classes:
        raise DataError(f"dataset {ds.name!r} has {ds.n_classes} classes, "
                        f"the model has {spec.n_classes}")
    if len(ds) == 0:
        raise DataError(f"dataset {ds.name!r} is empty")


def _round_seed(*parts: int) -> int:
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # < 2**63


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    import torch

    params = list(model.parameters())
    if cfg.optimizer == "sgd":
        # foreach=False: one plain loop per tensor, the same kernel whatever the sizes.
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, foreach=False)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)


def train_local(spec: ModelSpec, global_vec: np.ndarray, train: Dataset, cfg: TrainConfig, *,
                round: int, peer_seed: int, dp: DPConfig | None = None,
                accountant: PrivacyAccountant | None = None) -> LocalResult:
    """Train the global model on ``train`` and return the (optionally private) update.

    Deterministic in (spec, global_vec, train, cfg, round, peer_seed), and with DP also
    in ``dp.noise_seed`` when set. ``accountant`` (with ``dp``) records this round and
    reports the peer's total epsilon.
    """
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    _check_data(spec, train)
    if type(round) is not int or round < 0:
        raise ConfigError(f"round must be a non-negative int, got {round!r}")
    if type(peer_seed) is not int or peer_seed < 0:
        raise ConfigError(f"peer_seed must be a non-negative int, got {peer_seed!r}")
    start = np.asarray(global_vec)
    model = build_model(spec)
    set_flat(model, start)  # checks dtype and length
    if not np.isfinite(start).all():
        raise ModelError("global model vector contains NaN or Inf")

    X = torch.from_numpy(train.X)
    y = torch.from_numpy(train.y)
    n = len(train)
    gen = torch.Generator().manual_seed(_round_seed(cfg.seed, peer_seed, round))
    opt = _optimizer(model, cfg)
    params = list(model.parameters())
    anchor = [p.detach().clone() for p in params] if cfg.prox_mu else []

    model.train()
    epoch_loss = 0.0
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for lo in range(0, n, cfg.batch_size):
            idx = order[lo:lo + cfg.batch_size]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            total += float(loss.detach()) * len(idx)
            if cfg.prox_mu:
                prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
                loss = loss + 0.5 * cfg.prox_mu * prox
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epoch_loss = total / n

    update = get_flat(model) - start
    if not np.isfinite(update).all() or not math.isfinite(epoch_loss):
        raise ModelError(f"local training diverged (loss {epoch_loss}, non-finite update); "
                         f"lower train.lr={cfg.lr}")
    eps = eps_total = None
    if dp is not None:
        update = clip_and_noise(update, dp, generator=dp.generator(peer_seed, round))
        acct = accountant if accountant is not None else PrivacyAccountant(
            delta=dp.delta, kind=dp.accountant)
        eps = acct.round_epsilon(dp)
        if accountant is not None:
            accountant.step(dp)
            eps_total = accountant.epsilon()
    return LocalResult(update=update, n_samples=n, loss=epoch_loss, dp_epsilon=eps,
                       dp_epsilon_total=eps_total, seconds=time.perf_counter() - t0)


def evaluate(spec: ModelSpec, vec: np.ndarray, test: Dataset) -> tuple[float, float]:
    """(accuracy, mean cross-entropy loss) of the model ``vec`` on ``test``."""
    import torch
    import torch.nn.functional as F

    _check_data(spec, test)
    model = build_model(spec)
    set_flat(model, np.asarray(vec))
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.inference_mode():
        for lo in range(0, len(test), _EVAL_CHUNK):
            xb = torch.from_numpy(test.X[lo:lo + _EVAL_CHUNK])
            yb = torch.from_numpy(test.y[lo:lo + _EVAL_CHUNK])
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(dim=1) == yb).sum())
    return correct / len(test), loss_sum / len(test)


def centralized_baseline(data_cfg: DataConfig, spec: ModelSpec, train_cfg: TrainConfig, *,
                         n_peers: int = 1) -> dict[str, Any]:
    """Train ``spec`` on the pooled data of ``n_peers`` peers with the peers' own code
    path (:func:`train_local` from the genesis model, ``train_cfg.epochs`` epochs) and
    evaluate it on the union of their test sets: the figure a federated run of the
    same config should approach."""
    train, test = pooled_data(data_cfg, n_peers)
    if len(test) == 0:
        raise ConfigError("the baseline needs test data: set data.test_fraction > 0")
    genesis = get_flat(build_model(spec))
    result = train_local(spec, genesis, train, train_cfg, round=0, peer_seed=0)
    final = genesis + result.update
    accuracy, loss = evaluate(spec, final, test)
    train_acc, _ = evaluate(spec, final, train)
    return {
        "dataset": data_cfg.dataset,
        "model": spec.arch,
        "hidden": list(spec.hidden or ()),
        "n_peers": n_peers,
        "partition": data_cfg.partition,
        "n_train": len(train),
        "n_test": len(test),
        "n_params": int(genesis.shape[0]),
        "epochs": train_cfg.epochs,
        "optimizer": train_cfg.optimizer,
        "lr": train_cfg.lr,
        "batch_size": train_cfg.batch_size,
        "accuracy": accuracy,
        "loss": loss,
        "train_accuracy": train_acc,
        "train_loss": result.loss,
        "train_seconds": result.seconds,
        "spec_hash": "0x" + spec_hash(spec).hex(),
        "model_hash": "0x" + model_hash(final).hex(),
    }
