"""Update codecs: a flat float32 update vector to payload bytes and back.

Payloads are :func:`gossip.wire.encode_arrays` containers; the ``encoding`` number is
the one signed in the EIP-712 ``Update`` struct:

====  ========  ==========================================  ===================
enc   codec     arrays in the payload                        size / float32
====  ========  ==========================================  ===================
0     float32   ``values`` <f4[d]                            1
1     float16   ``values`` <f2[d]                            1/2
2     int8      ``q`` i1[d], ``scales`` <f4[s],               ~1/4
                ``segments`` <u4[s] (tensor sizes, sum d)
3     topk      ``indices`` <u4[k] (strictly increasing),     2k/d
                ``values`` <f4[k]
====  ========  ==========================================  ===================

plus ``meta = {"codec": name, "dim": d, "format": 1}``.

int8 quantises each parameter tensor (``segments``, from
:func:`peer.models.tensor_sizes`; the whole vector if not given) with its own scale
``max|x| / 127`` and round-half-to-even, so the decode error of a coordinate is at
most half its tensor's scale. top-k keeps the ``ceil(topk_fraction * d)`` largest
magnitudes.

Error feedback (Stich et al. 2018; Karimireddy et al. 2019, "Error feedback fixes
SignSGD"): pass the previous round's ``residual``; the codec encodes ``vec + residual``
and returns the new residual ``(vec + residual) - decode(payload)``, which the peer
keeps for its next round. Lossy codecs then lose nothing in the long run.

Decoding is strict and deterministic (each output float is one IEEE operation:
float16->float32 conversion, int8*scale in float32, or a copy), so every peer
decodes the same bytes to the same vector. Any deviation raises :class:`CodecError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gossip.errors import WireError
from gossip.wire import (
    ENCODING_FLOAT16,
    ENCODING_FLOAT32,
    ENCODING_INT8,
    ENCODING_TOPK,
    decode_arrays,
    encode_arrays,
)
from peer.errors import ConfigError, FedchainError

__all__ = ["CODECS", "CodecError", "encode_update", "decode_update", "codec_name"]

CODECS: dict[str, int] = {
    "float32": ENCODING_FLOAT32,
    "float16": ENCODING_FLOAT16,
    "int8": ENCODING_INT8,
    "topk": ENCODING_TOPK,
}
_NAMES = {v: k for k, v in CODECS.items()}
_FORMAT = 1
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_ARRAYS: dict[str, dict[str, np.dtype]] = {
    "float32": {"values": np.dtype("<f4")},
    "float16": {"values": np.dtype("<f2")},
    "int8": {"q": np.dtype("i1"), "scales": np.dtype("<f4"), "segments": np.dtype("<u4")},
    "topk": {"indices": np.dtype("<u4"), "values": np.dtype("<f4")},
}


class CodecError(FedchainError):
    """An update payload does not decode to a valid update; the message says why."""


def codec_name(encoding: int) -> str:
    """The codec name of a wire encoding number (CodecError if unknown)."""
    if encoding not in _NAMES:
        raise CodecError(f"unknown update encoding {encoding!r}; known {sorted(_NAMES)}")
    return _NAMES[encoding]


# -------------------------------------------------------------------------- array level


def _to_arrays(vec: np.ndarray, codec: str, topk_fraction: float,
               segments: Sequence[int] | None) -> dict[str, np.ndarray]:
    d = vec.shape[0]
    if codec == "float32":
        return {"values": vec}
    if codec == "float16":
        peak = float(np.abs(vec).max()) if d else 0.0
        if peak > _FLOAT16_MAX:
            raise CodecError(f"float16 cannot hold an update coordinate of magnitude {peak:g} "
                             f"(max {_FLOAT16_MAX:g}); use float32 or int8")
        return {"values": vec.astype(np.float16)}
    if codec == "int8":
        seg = np.asarray([d] if segments is None else list(segments), dtype=np.int64)
        if seg.ndim != 1 or (seg < 1).any() or int(seg.sum()) != d:
            raise ConfigError(f"int8 segments must be positive sizes summing to {d}, "
                              f"got {list(segments or [])[:8]}...")
        bounds = np.concatenate([[0], np.cumsum(seg)])
        peaks = np.maximum.reduceat(np.abs(vec), bounds[:-1]) if d else np.zeros(0, np.float32)
        scales = (peaks.astype(np.float64) / 127.0).astype(np.float32)
        per = np.repeat(scales.astype(np.float64), seg)
        safe = np.where(per > 0, per, 1.0)
        q = np.clip(np.rint(vec.astype(np.float64) / safe), -127, 127).astype(np.int8)
        return {"q": q, "scales": scales, "segments": seg.astype(np.uint32)}
    if codec == "topk":
        k = min(d, max(1, math.ceil(topk_fraction * d)))
        idx = np.sort(np.argpartition(np.abs(vec), d - k)[d - k:]).astype(np.uint32)
        return {"indices": idx, "values": vec[idx]}
    raise ConfigError(f"unknown codec {codec!r}; choose one of {tuple(CODECS)}")


def _check_arrays(arrays: dict[str, np.ndarray], codec: str) -> None:
    want = _ARRAYS[codec]
    if set(arrays) != set(want):
        raise CodecError(f"{codec} payload must hold arrays {sorted(want)}, got {sorted(arrays)}")
    for name, dt in want.items():
        a = arrays[name]
        if a.dtype != dt or a.ndim != 1:
            raise CodecError(f"{codec} payload: array {name!r} must be 1-D {dt}, "
                             f"got {a.ndim}-D {a.dtype}")


def _from_arrays(arrays: dict[str, np.ndarray], codec: str, dim: int) -> np.ndarray:
    """The float32 vector a payload's arrays stand for; strict on every shape."""
    _check_arrays(arrays, codec)
    if codec in ("float32", "float16"):
        values = arrays["values"]
        if values.shape != (dim,):
            raise CodecError(f"{codec} payload has {values.shape[0]} values, expected {dim}")
        out = values.astype(np.float32)  # a copy: writable, and float16->float32 is exact
    elif codec == "int8":
        q, scales, seg = arrays["q"], arrays["scales"], arrays["segments"]
        if q.shape != (dim,):
            raise CodecError(f"int8 payload has {q.shape[0]} values, expected {dim}")
        if scales.shape != seg.shape or (seg == 0).any() or int(seg.sum(dtype=np.int64)) != dim:
            raise CodecError(f"int8 payload: {len(seg)} segments summing to "
                             f"{int(seg.sum(dtype=np.int64))} with {len(scales)} scales, "
                             f"expected positive sizes summing to {dim}")
        if not np.isfinite(scales).all() or (scales < 0).any():
            raise CodecError("int8 payload: scales must be finite and >= 0")
        out = q.astype(np.float32) * np.repeat(scales, seg.astype(np.int64))
    else:
        idx, values = arrays["indices"], arrays["values"]
        if idx.shape != values.shape or len(idx) > dim:
            raise CodecError(f"topk payload: {len(idx)} indices, {len(values)} values, dim {dim}")
        steps = np.diff(idx.astype(np.int64))
        if len(idx) and (int(idx[-1]) >= dim or (steps <= 0).any()):
            raise CodecError(f"topk payload: indices must be strictly increasing and < {dim}")
        out = np.zeros(dim, dtype=np.float32)
        out[idx.astype(np.int64)] = values
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise CodecError(f"{codec} payload decodes to a non-finite value at index {bad}")
    return out


# -------------------------------------------------------------------------- bytes level


def encode_update(vec: np.ndarray, *, codec: str = "float32", topk_fraction: float = 0.1,
                  residual: np.ndarray | None = None,
                  segments: Sequence[int] | None = None) -> tuple[bytes, int, np.ndarray | None]:
    """Encode an update; returns ``(payload, encoding, new_residual)``.

    ``residual`` (error feedback) is added to ``vec`` before encoding; the returned
    residual is what the lossy codec dropped (``None`` for float32, which drops
    nothing). ``segments``: tensor sizes for int8's per-tensor scales.
    """
    if codec not in CODECS:
        raise ConfigError(f"unknown codec {codec!r}; choose one of {tuple(CODECS)}")
    if not (isinstance(topk_fraction, (int, float)) and 0 < topk_fraction <= 1):
        raise ConfigError(f"topk_fraction must be in (0, 1], got {topk_fraction!r}")
    v = np.asarray(vec)
    if v.dtype != np.float32 or v.ndim != 1:
        raise ConfigError(f"update must be a 1-D float32 vector, got {v.dtype} {v.shape}")
    if residual is not None:
        r = np.asarray(residual)
        if r.dtype != np.float32 or r.shape != v.shape:
            raise ConfigError(f"residual must be float32 of shape {v.shape}, "
                              f"got {r.dtype} {r.shape}")
        v = v + r
    if not np.isfinite(v).all():
        raise CodecError("update contains NaN or Inf; refusing to encode it")
    arrays = _to_arrays(np.ascontiguousarray(v), codec, float(topk_fraction), segments)
    meta: dict[str, int | float | str] = {"codec": codec, "dim": int(v.shape[0]), "format": _FORMAT}
    payload = encode_arrays(arrays, meta)
    new_residual = None if codec == "float32" else v - _from_arrays(arrays, codec, v.shape[0])
    return payload, CODECS[codec], new_residual


def decode_update(payload: bytes, *, expected_dim: int, max_bytes: int,
                  expected_encoding: int | None = None) -> np.ndarray:
    """Decode a payload to a new float32 vector of length ``expected_dim``.

    Raises CodecError on anything unexpected: bytes over ``max_bytes``, malformed
    msgpack, unknown codec, a codec other than ``expected_encoding`` (the signed one),
    wrong dimension, wrong dtypes, NaN or Inf.
    """
    try:
        arrays, meta = decode_arrays(payload, max_bytes=max_bytes)
    except WireError as exc:
        raise CodecError(f"update payload: {exc}") from exc
    if set(meta) != {"codec", "dim", "format"}:
        raise CodecError(f"update payload meta must have keys codec, dim, format; "
                         f"got {sorted(meta)}")
    codec, dim, fmt = meta["codec"], meta["dim"], meta["format"]
    if fmt != _FORMAT or type(fmt) is not int:
        raise CodecError(f"update payload format {fmt!r} is not {_FORMAT}")
    if type(codec) is not str or codec not in CODECS:
        raise CodecError(f"update payload codec {codec!r} is unknown; known {tuple(CODECS)}")
    if expected_encoding is not None and CODECS[codec] != expected_encoding:
        raise CodecError(f"update payload is {codec} (encoding {CODECS[codec]}) but the "
                         f"signed encoding is {expected_encoding}")
    if type(dim) is not int or dim != expected_dim:
        raise CodecError(f"update payload has dim {dim!r}, the model has {expected_dim}")
    return _from_arrays(arrays, codec, expected_dim)

