"""peer.models: deterministic init, flat vectors in state-dict order, canonical bytes
and the hashes the chain records; forward passes checked against numpy."""

from __future__ import annotations

import hashlib
import struct
import textwrap

import numpy as np
import pytest
import torch

from peer.errors import ConfigError
from peer.models import (
    ModelError,
    ModelSpec,
    build_model,
    canonical_bytes,
    get_flat,
    model_hash,
    n_params,
    set_flat,
    spec_hash,
    tensor_sizes,
)

DIGITS = dict(input_shape=(1, 8, 8), n_classes=10)


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("logreg", 64 * 10 + 10),
        ("mlp", 64 * 64 + 64 + 64 * 10 + 10),
        # conv 1->16 3x3, conv 16->32 3x3, two 2x2 pools: 8x8 -> 2x2, linear 32*2*2 -> 10
        ("cnn", (9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 4 * 10 + 10)),
    ],
)
def test_param_counts_and_forward_shapes(arch: str, expected: int) -> None:
    spec = ModelSpec(arch, **DIGITS)
    model = build_model(spec)
    assert n_params(spec) == expected == sum(p.numel() for p in model.parameters())
    assert sum(tensor_sizes(spec)) == expected
    assert all(p.dtype == torch.float32 for p in model.parameters())
    out = model(torch.zeros(5, 1, 8, 8))
    assert out.shape == (5, 10)
    # flat (n, 64) input works as well
    assert model(torch.zeros(3, 64)).shape == (3, 10)


def test_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    spec = ModelSpec("mlp", **DIGITS, seed=11)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = get_flat(build_model(spec))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)
    b = get_flat(build_model(spec))
    assert a.dtype == np.float32 and a.tobytes() == b.tobytes()
    c = get_flat(build_model(ModelSpec("mlp", **DIGITS, seed=12)))
    assert not np.array_equal(a, c)
    # fan-in uniform bound of the first layer (fan_in 64): |w| <= 1/8
    assert np.abs(a[:64 * 64]).max() <= 0.125


def test_flat_order_is_state_dict_order_and_roundtrips() -> None:
    model = build_model(ModelSpec("cnn", **DIGITS))
    ref = torch.cat([t.reshape(-1) for t in model.state_dict().values()]).numpy()
    flat = get_flat(model)
    np.testing.assert_array_equal(flat, ref)
    new = np.arange(flat.size, dtype=np.float32) / flat.size
    set_flat(model, new)
    np.testing.assert_array_equal(get_flat(model), new)
    first = next(iter(model.state_dict().values()))
    np.testing.assert_array_equal(first.reshape(-1).numpy(), new[:first.numel()])


def test_set_flat_refuses_wrong_vectors() -> None:
    model = build_model(ModelSpec("logreg", **DIGITS))
    with pytest.raises(ModelError, match=r"\(650,\)"):
        set_flat(model, np.zeros(649, dtype=np.float32))
    with pytest.raises(ModelError, match="float64"):
        set_flat(model, np.zeros(650))


def test_logreg_forward_matches_numpy() -> None:
    spec = ModelSpec("logreg", input_shape=(30,), n_classes=2, seed=3)
    model = build_model(spec)
    vec = get_flat(model)
    W, b = vec[:60].reshape(2, 30), vec[60:]
    X = np.random.default_rng(0).normal(size=(7, 30)).astype(np.float32)
    out = model(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(out, X.astype(np.float64) @ W.T + b, rtol=1e-5, atol=1e-6)


def test_canonical_bytes_little_endian_and_signed_zero() -> None:
    vec = np.array([1.5, -0.0, 0.0, -2.25], dtype=np.float32)
    assert canonical_bytes(vec) == struct.pack("<4f", 1.5, 0.0, 0.0, -2.25)
    assert model_hash(vec) == hashlib.sha256(struct.pack("<4f", 1.5, 0.0, 0.0, -2.25)).digest()
    assert model_hash(vec) == model_hash(np.abs(vec) * np.sign(vec + 0.0) + 0.0)
    assert len(model_hash(vec)) == 32
    assert canonical_bytes(vec.astype(">f4").astype(np.float32)) == canonical_bytes(vec)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_canonical_bytes_refuses_non_finite(bad: float) -> None:
    vec = np.array([0.0, bad], dtype=np.float32)
    with pytest.raises(ModelError, match="index 1"):
        canonical_bytes(vec)
    with pytest.raises(ModelError, match="float32"):
        canonical_bytes(np.zeros(2))


def test_spec_hash_pins_identity() -> None:
    spec = ModelSpec("mlp", **DIGITS)
    h = spec_hash(spec)
    assert len(h) == 32
    assert h == spec_hash(ModelSpec("mlp", **DIGITS, hidden=(64,)))  # default resolved
    assert h != spec_hash(ModelSpec("mlp", **DIGITS, seed=1))
    assert h != spec_hash(ModelSpec("mlp", **DIGITS, hidden=(32,)))
    assert h != spec_hash(ModelSpec("cnn", **DIGITS))
    # Pinned: a change here changes every deployed federation's model identity.
    assert h.hex() == spec_hash(ModelSpec.from_dict(spec.to_dict())).hex()
    assert h.hex() == PINNED_MLP_DIGITS_SPEC_HASH


PINNED_MLP_DIGITS_SPEC_HASH = "ae0102c0f8c045797f195cbb0de582d0a546395a747f20242490a48a85e55408"


def test_genesis_model_hash_pinned() -> None:
    vec = get_flat(build_model(ModelSpec("logreg", **DIGITS, seed=0)))
    assert model_hash(vec).hex() == PINNED_LOGREG_GENESIS_HASH


PINNED_LOGREG_GENESIS_HASH = "c242cd9487845ff7abce672f40038dfd275ed6389cff66a48342478586d306e2"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(arch="resnet", input_shape=(4,), n_classes=2), "'resnet'"),
        (dict(arch="cnn", input_shape=(64,), n_classes=10), r"\(C, H, W\)"),
        (dict(arch="cnn", input_shape=(1, 3, 3), n_classes=10), "too small"),
        (dict(arch="logreg", input_shape=(4,), n_classes=2, hidden=(8,)), "logreg"),
        (dict(arch="mlp", input_shape=(4,), n_classes=1), "n_classes"),
        (dict(arch="mlp", input_shape=(0,), n_classes=2), "input_shape"),
    ],
)
def test_spec_validation_names_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ModelSpec(**kwargs)


def test_user_factory(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch
        def tiny(input_shape, n_classes):
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(input_shape[0], 3),
                                       torch.nn.Tanh(), torch.nn.Linear(3, n_classes))
        def with_bn(**kwargs):
            return torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
        def not_a_module():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec("my_models:tiny", input_shape=(4,), n_classes=2, seed=5)
    torch.manual_seed(0)
    a = get_flat(build_model(spec))
    torch.manual_seed(1)
    b = get_flat(build_model(spec))
    assert a.shape == (4 * 3 + 3 + 3 * 2 + 2,) and np.array_equal(a, b)
    assert not np.array_equal(a, get_flat(build_model(ModelSpec("my_models:tiny", input_shape=(4,),
                                                                   n_classes=2, seed=6))))
    assert n_params(spec) == a.size
    with pytest.raises(ConfigError, match="buffers"):
        build_model(ModelSpec("my_models:with_bn", input_shape=(4,), n_classes=2))
    with pytest.raises(ConfigError, match="int"):
        build_model(ModelSpec("my_models:not_a_module", input_shape=(4,), n_classes=2))
    with pytest.raises(ConfigError, match="no function 'nope'"):
        build_model(ModelSpec("my_models:nope", input_shape=(4,), n_classes=2))
    with pytest.raises(ConfigError, match="cannot import 'no_such_mod'"):
        build_model(ModelSpec("no_such_mod:f", input_shape=(4,), n_classes=2))
