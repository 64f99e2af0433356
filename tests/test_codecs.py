"""peer.codecs: size ratios, decode error bounds, error feedback, determinism and the
strictness of decoding, through the real gossip.wire container."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gossip.wire import (
    ENCODING_FLOAT16,
    ENCODING_FLOAT32,
    ENCODING_INT8,
    ENCODING_TOPK,
    encode_arrays,
)
from peer.codecs import CODECS, CodecError, codec_name, decode_update, encode_update
from peer.errors import ConfigError
from peer.models import ModelSpec, tensor_sizes

D = 100_000
MAX = 1 << 24


@pytest.fixture(scope="module")
def vec() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(D) * 0.01).astype(np.float32)


def _roundtrip(v: np.ndarray, codec: str, **kw) -> tuple[bytes, np.ndarray]:
    payload, enc, _ = encode_update(v, codec=codec, **kw)
    assert enc == CODECS[codec]
    out = decode_update(payload, expected_dim=v.size, max_bytes=MAX, expected_encoding=enc)
    assert out.dtype == np.float32 and out.shape == v.shape and out.flags.writeable
    return payload, out


def test_encoding_numbers_are_the_wire_constants() -> None:
    assert CODECS == {"float32": ENCODING_FLOAT32, "float16": ENCODING_FLOAT16,
                      "int8": ENCODING_INT8, "topk": ENCODING_TOPK} == {
        "float32": 0, "float16": 1, "int8": 2, "topk": 3}
    assert codec_name(2) == "int8"
    with pytest.raises(CodecError, match="7"):
        codec_name(7)


def test_float32_is_exact(vec) -> None:
    payload, out = _roundtrip(vec, "float32")
    assert out.tobytes() == vec.tobytes()
    assert 4 * D <= len(payload) < 4 * D + 200


def test_float16_half_size_and_relative_error(vec) -> None:
    base, _ = _roundtrip(vec, "float32")
    payload, out = _roundtrip(vec, "float16")
    assert len(payload) / len(base) == pytest.approx(0.5, abs=0.01)
    # round-to-nearest half precision: relative error <= 2**-11 (normal range)
    normal = np.abs(vec) > 6.2e-5
    rel = np.abs(out[normal] - vec[normal]) / np.abs(vec[normal])
    assert rel.max() <= 2.0**-11
    assert np.abs(out - vec).max() <= 2.0**-24 / 2 + 2.0**-11 * np.abs(vec).max()


def test_float16_overflow_is_refused() -> None:
    with pytest.raises(CodecError, match="70000"):
        encode_update(np.array([70000.0, 1.0], dtype=np.float32), codec="float16")


def test_int8_quarter_size_and_half_scale_error(vec) -> None:
    base, _ = _roundtrip(vec, "float32")
    payload, out = _roundtrip(vec, "int8")
    assert len(payload) / len(base) == pytest.approx(0.25, abs=0.01)
    scale = np.float32(np.abs(vec).max()) / 127
    assert np.abs(out - vec).max() <= 0.5 * scale * (1 + 1e-5)
    assert np.abs(out).max() == pytest.approx(np.abs(vec).max(), rel=1e-6)


def test_int8_per_tensor_scales_follow_the_model_layout() -> None:
    spec = ModelSpec("mlp", input_shape=(1, 8, 8), n_classes=10)
    sizes = tensor_sizes(spec)  # 4096, 64, 640, 10
    rng = np.random.default_rng(1)
    # tensors of very different magnitudes: one global scale would crush the small ones
    mags = (1.0, 1e-4, 1e-2, 1e-6)
    parts = [rng.standard_normal(n) * mag for n, mag in zip(sizes, mags, strict=True)]
    v = np.concatenate(parts).astype(np.float32)
    _, per_tensor = _roundtrip(v, "int8", segments=sizes)
    _, global_scale = _roundtrip(v, "int8")
    lo = 0
    for n in sizes:
        err = np.abs(per_tensor[lo:lo + n] - v[lo:lo + n]).max()
        assert err <= 0.5 * np.abs(v[lo:lo + n]).max() / 127 * (1 + 1e-5)
        lo += n
    small = slice(sizes[0], sizes[0] + sizes[1])
    assert np.abs(global_scale[small]).max() == 0.0  # all rounded away
    assert np.abs(per_tensor[small] - v[small]).max() < 1e-6
    with pytest.raises(ConfigError, match="segments"):
        encode_update(v, codec="int8", segments=[5, 5])


def test_topk_keeps_largest_exactly(vec) -> None:
    base, _ = _roundtrip(vec, "float32")
    payload, out = _roundtrip(vec, "topk", topk_fraction=0.05)
    k = int(np.ceil(0.05 * D))
    kept = np.flatnonzero(out)
    assert kept.size == k
    np.testing.assert_array_equal(out[kept], vec[kept])
    assert np.abs(vec[kept]).min() >= np.sort(np.abs(vec))[-k]
    assert len(payload) / len(base) == pytest.approx(2 * 0.05, abs=0.005)


@pytest.mark.parametrize("codec", ["float16", "int8", "topk"])
def test_error_feedback_loses_nothing_over_rounds(codec: str) -> None:
    rng = np.random.default_rng(2)
    residual = np.zeros(5_000, dtype=np.float32)
    sent = np.zeros(5_000, dtype=np.float64)
    truth = np.zeros(5_000, dtype=np.float64)
    for _ in range(30):
        v = (rng.standard_normal(5_000) * 0.01).astype(np.float32)
        payload, enc, residual = encode_update(v, codec=codec, topk_fraction=0.1,
                                               residual=residual)
        sent += decode_update(payload, expected_dim=5_000, max_bytes=MAX)
        truth += v
    # telescoping: everything sent plus what is still held back equals everything produced
    np.testing.assert_allclose(sent + residual, truth, atol=1e-5)
    if codec == "topk":  # and without feedback the loss would be ~90% of the mass
        assert np.linalg.norm(sent - truth) < 0.6 * np.linalg.norm(truth)


def test_float32_has_no_residual(vec) -> None:
    _, _, res = encode_update(vec, codec="float32")
    assert res is None


@pytest.mark.parametrize("codec", list(CODECS))
def test_encoding_and_decoding_are_deterministic(vec, codec: str) -> None:
    a, _, _ = encode_update(vec, codec=codec)
    b, _, _ = encode_update(vec.copy(), codec=codec)
    assert a == b
    outs = {hashlib.sha256(decode_update(a, expected_dim=D, max_bytes=MAX).tobytes()).hexdigest()
            for _ in range(3)}
    assert len(outs) == 1


def _payload(arrays: dict, codec: str = "float32", dim: int = 4, **meta) -> bytes:
    return encode_arrays(arrays, {"codec": codec, "dim": dim, "format": 1, **meta})


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (_payload({"values": np.zeros(3, np.float32)}), "3 values, expected 4"),
        (_payload({"values": np.zeros(4, np.float64)}), "float64"),
        (_payload({"values": np.zeros((2, 2), np.float32)}), "1-D"),
        (_payload({"values": np.array([0, np.nan, 0, 0], np.float32)}),
         "non-finite value at index 1"),
        (_payload({"values": np.array([0, np.inf, 0, 0], np.float16)}, "float16"), "non-finite"),
        (_payload({"values": np.zeros(4, np.float32), "extra": np.zeros(1, np.float32)}), "extra"),
        (_payload({"values": np.zeros(4, np.float32)}, dim=5), "dim 5"),
        (_payload({"values": np.zeros(4, np.float32)}, codec="zstd"), "'zstd'"),
        (_payload({"values": np.zeros(4, np.float32)}, note="hi"), "meta"),
        (_payload({"indices": np.array([2, 1], np.uint32), "values": np.ones(2, np.float32)},
                  "topk"), "strictly increasing"),
        (_payload({"indices": np.array([1, 4], np.uint32), "values": np.ones(2, np.float32)},
                  "topk"), "< 4"),
        (_payload({"indices": np.array([1, 1], np.uint32), "values": np.ones(2, np.float32)},
                  "topk"), "strictly increasing"),
        (_payload({"q": np.zeros(4, np.int8), "scales": np.ones(1, np.float32),
                   "segments": np.array([3], np.uint32)}, "int8"), "summing to 3"),
        (_payload({"q": np.zeros(4, np.int8), "scales": np.array([np.inf], np.float32),
                   "segments": np.array([4], np.uint32)}, "int8"), "scales"),
        (b"\x00garbage", "msgpack"),
    ],
)
def test_decode_is_strict(payload: bytes, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        decode_update(payload, expected_dim=4, max_bytes=MAX)


def test_decode_checks_size_limit_and_signed_encoding(vec) -> None:
    payload, enc, _ = encode_update(vec, codec="int8")
    with pytest.raises(CodecError, match="exceeds"):
        decode_update(payload, expected_dim=D, max_bytes=len(payload) - 1)
    with pytest.raises(CodecError, match="signed encoding is 0"):
        decode_update(payload, expected_dim=D, max_bytes=MAX, expected_encoding=ENCODING_FLOAT32)


def test_encode_refuses_bad_input() -> None:
    with pytest.raises(CodecError, match="NaN"):
        encode_update(np.array([np.nan], np.float32))
    with pytest.raises(ConfigError, match="float64"):
        encode_update(np.zeros(3))
    with pytest.raises(ConfigError, match="'gzip'"):
        encode_update(np.zeros(3, np.float32), codec="gzip")
    with pytest.raises(ConfigError, match="topk_fraction"):
        encode_update(np.zeros(3, np.float32), codec="topk", topk_fraction=0)
    with pytest.raises(ConfigError, match="residual"):
        encode_update(np.zeros(3, np.float32), residual=np.zeros(4, np.float32))
