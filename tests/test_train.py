"""peer.train: local training against a numpy reference of SGD (with and without the
FedProx term), bit-identical determinism, speed, evaluation and DP wiring."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from peer.data import DataConfig, Dataset, load_dataset, load_peer_data
from peer.errors import ConfigError, DataError
from peer.models import ModelError, ModelSpec, build_model, get_flat
from peer.privacy import DPConfig, PrivacyAccountant
from peer.train import LocalResult, TrainConfig, evaluate, train_local


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_peer() -> tuple[Dataset, Dataset]:
    """One of five IID peers of digits: about 290 train and 72 test records."""
    return load_peer_data(DataConfig(dataset="digits", seed=0), 0, 5)


def _spec(arch: str, ds: Dataset, seed: int = 0) -> ModelSpec:
    return ModelSpec(arch, input_shape=ds.input_shape, n_classes=ds.n_classes, seed=seed)


def _softmax_ce_grad(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray):
    logits = X @ W.T + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    p /= len(y)
    return p.T @ X, p.sum(axis=0)


@pytest.mark.parametrize("prox_mu", [0.0, 3.0])
def test_full_batch_sgd_matches_numpy_reference(prox_mu: float) -> None:
    ds = load_dataset("breast_cancer")
    spec = ModelSpec("logreg", input_shape=(30,), n_classes=2, seed=1)
    start = get_flat(build_model(spec))
    cfg = TrainConfig(epochs=3, batch_size=len(ds), optimizer="sgd", lr=0.5, prox_mu=prox_mu)
    result = train_local(spec, start, ds, cfg, round=1, peer_seed=0)

    W0, b0 = start[:60].reshape(2, 30).astype(np.float64), start[60:].astype(np.float64)
    W, b = W0.copy(), b0.copy()
    X, y = ds.X.astype(np.float64), ds.y
    for _ in range(3):  # full batch: the shuffle does not change the gradient
        gW, gb = _softmax_ce_grad(W, b, X, y)
        W, b = W - 0.5 * (gW + prox_mu * (W - W0)), b - 0.5 * (gb + prox_mu * (b - b0))
    expected = np.concatenate([(W - W0).ravel(), b - b0])
    np.testing.assert_allclose(result.update, expected, rtol=1e-4, atol=2e-6)
    assert result.update.dtype == np.float32 and result.n_samples == len(ds)


def test_fedprox_pulls_towards_the_global_model(digits_peer) -> None:
    train, _ = digits_peer
    spec = _spec("mlp", train)
    start = get_flat(build_model(spec))
    plain = train_local(spec, start, train, TrainConfig(epochs=2, lr=0.1), round=1, peer_seed=0)
    prox = train_local(spec, start, train, TrainConfig(epochs=2, lr=0.1, prox_mu=5.0),
                       round=1, peer_seed=0)
    assert np.linalg.norm(prox.update) < 0.8 * np.linalg.norm(plain.update)


@pytest.mark.parametrize("arch", ["logreg", "mlp", "cnn"])
def test_same_inputs_give_bit_identical_updates(digits_peer, arch: str) -> None:
    train, _ = digits_peer
    spec = _spec(arch, train)
    start = get_flat(build_model(spec))
    cfg = TrainConfig(epochs=1, batch_size=16, optimizer="adam", lr=0.01)
    torch.manual_seed(123)  # the global RNG must not matter
    a = train_local(spec, start, train, cfg, round=4, peer_seed=9)
    torch.manual_seed(456)
    torch.use_deterministic_algorithms(True)  # the ops used all have deterministic kernels
    try:
        b = train_local(spec, start, train, cfg, round=4, peer_seed=9)
    finally:
        torch.use_deterministic_algorithms(False)
    assert a.update.tobytes() == b.update.tobytes() and a.loss == b.loss
    c = train_local(spec, start, train, cfg, round=5, peer_seed=9)
    d = train_local(spec, start, train, cfg, round=4, peer_seed=10)
    assert not np.array_equal(a.update, c.update) and not np.array_equal(a.update, d.update)


def test_thread_counts_agree_to_rounding(digits_peer) -> None:
    """1 and 2 intra-op threads: bit-identical forward, but MKL splits the weight-gradient
    matmul differently, so updates agree to float32 rounding, not bit for bit (see README)."""
    train, _ = digits_peer
    spec = _spec("mlp", train)
    start = get_flat(build_model(spec))
    cfg = TrainConfig(epochs=2, lr=0.1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train_local(spec, start, train, cfg, round=1, peer_seed=0)
        one_again = train_local(spec, start, train, cfg, round=1, peer_seed=0)
        torch.set_num_threads(2)
        two = train_local(spec, start, train, cfg, round=1, peer_seed=0)
    finally:
        torch.set_num_threads(before)
    assert one.update.tobytes() == one_again.update.tobytes()
    np.testing.assert_allclose(two.update, one.update, rtol=1e-3, atol=1e-6)


def test_training_learns(digits_peer) -> None:
    train, test = digits_peer
    spec = _spec("mlp", train)
    start = get_flat(build_model(spec))
    acc0, loss0 = evaluate(spec, start, test)
    result = train_local(spec, start, train, TrainConfig(epochs=10, optimizer="adam", lr=0.01),
                         round=1, peer_seed=0)
    acc1, loss1 = evaluate(spec, start + result.update, test)
    assert loss1 < 0.5 * loss0 and acc1 > 0.8 > acc0 + 0.3
    assert 0 < result.loss < loss0


def test_weight_decay_shrinks_weights(digits_peer) -> None:
    train, _ = digits_peer
    spec = _spec("logreg", train)
    start = get_flat(build_model(spec))
    base = TrainConfig(epochs=3, lr=0.1)
    plain = train_local(spec, start, train, base, round=1, peer_seed=0)
    decayed = train_local(spec, start, train, TrainConfig(epochs=3, lr=0.1, weight_decay=0.5),
                          round=1, peer_seed=0)
    assert np.linalg.norm(start + decayed.update) < np.linalg.norm(start + plain.update)


def test_local_round_is_fast(digits_peer) -> None:
    train, _ = digits_peer
    spec = _spec("mlp", train)
    start = get_flat(build_model(spec))
    cfg = TrainConfig(epochs=2, batch_size=32)
    train_local(spec, start, train, cfg, round=0, peer_seed=0)  # warm-up: torch's first call
    best = min(_timed(lambda: train_local(spec, start, train, cfg, round=1, peer_seed=0))
               for _ in range(3))
    assert best < 0.5, f"{best:.3f} s for {len(train)} records x 2 epochs"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_evaluate_matches_numpy_argmax(digits_peer) -> None:
    _, test = digits_peer
    spec = _spec("logreg", test, seed=3)
    vec = get_flat(build_model(spec))
    W, b = vec[:640].reshape(10, 64), vec[640:]
    logits = test.X.reshape(len(test), 64).astype(np.float64) @ W.T + b
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    acc, loss = evaluate(spec, vec, test)
    assert acc == pytest.approx(float(np.mean(logits.argmax(axis=1) == test.y)))
    assert loss == pytest.approx(float(-logp[np.arange(len(test)), test.y].mean()), rel=1e-5)


def test_dp_update_is_clipped_and_accounted(digits_peer) -> None:
    train, _ = digits_peer
    spec = _spec("mlp", train)
    start = get_flat(build_model(spec))
    cfg = TrainConfig(epochs=1, lr=0.5)
    clip_only = DPConfig(clip=0.05, noise_multiplier=0.0)
    r = train_local(spec, start, train, cfg, round=1, peer_seed=0, dp=clip_only)
    assert np.linalg.norm(r.update.astype(np.float64)) == pytest.approx(0.05, rel=1e-6)
    dp = DPConfig(clip=0.05, noise_multiplier=1.0, delta=1e-5, noise_seed=7)
    acct = PrivacyAccountant(delta=1e-5)
    r1 = train_local(spec, start, train, cfg, round=1, peer_seed=0, dp=dp, accountant=acct)
    r2 = train_local(spec, start, train, cfg, round=2, peer_seed=0, dp=dp, accountant=acct)
    again = train_local(spec, start, train, cfg, round=1, peer_seed=0, dp=dp)
    assert r1.update.tobytes() == again.update.tobytes()  # noise_seed makes DP reproducible
    assert r1.dp_epsilon == r2.dp_epsilon == again.dp_epsilon > 0
    assert r1.dp_epsilon_total == pytest.approx(r1.dp_epsilon)
    assert r2.dp_epsilon_total > r1.dp_epsilon_total and acct.rounds == 2
    assert again.dp_epsilon_total is None


def test_divergence_is_an_error(digits_peer) -> None:
    train, _ = digits_peer
    spec = _spec("logreg", train)
    start = get_flat(build_model(spec))
    with pytest.raises(ModelError, match="diverged"):
        train_local(spec, start, train, TrainConfig(epochs=2, lr=1e38), round=1, peer_seed=0)


def test_inputs_are_checked(digits_peer) -> None:
    train, _ = digits_peer
    spec = ModelSpec("logreg", input_shape=(30,), n_classes=2)
    with pytest.raises(DataError, match=r"input_shape \(1, 8, 8\)"):
        train_local(spec, get_flat(build_model(spec)), train, TrainConfig(), round=1, peer_seed=0)
    good = _spec("logreg", train)
    with pytest.raises(ModelError, match="float32"):
        train_local(good, np.zeros(650), train, TrainConfig(), round=1, peer_seed=0)
    bad = np.full(650, np.nan, dtype=np.float32)
    with pytest.raises(ModelError, match="NaN"):
        train_local(good, bad, train, TrainConfig(), round=1, peer_seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(epochs=0), "epochs"),
        (dict(lr=-1.0), "lr"),
        (dict(optimizer="rmsprop"), "'rmsprop'"),
        (dict(optimizer="adam", momentum=0.9), "momentum"),
        (dict(prox_mu=float("nan")), "prox_mu"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_train_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_train_config_from_dict() -> None:
    assert TrainConfig.from_dict({"epochs": 3, "lr": 0.2}) == TrainConfig(epochs=3, lr=0.2)
    with pytest.raises(ConfigError, match=r"\['lr_decay'\]"):
        TrainConfig.from_dict({"lr_decay": 0.5})


def test_local_result_is_frozen() -> None:
    r = LocalResult(update=np.zeros(2, np.float32), n_samples=1, loss=0.0)
    with pytest.raises(AttributeError):
        r.loss = 1.0  # type: ignore[misc]
