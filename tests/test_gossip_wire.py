"""Wire format: round trips, EIP-712 digest against eth-account, strict decoding."""

from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import pytest
from eth_account.messages import _hash_eip191_message, encode_typed_data

from gossip.errors import ValidationError, WireError
from gossip.wire import (
    UpdateAnnouncement,
    decode_arrays,
    eip712_digest,
    encode_arrays,
    recover_update_signer,
    update_typed_data,
)
from tests.gossip_helpers import CHAIN_ID, CONTRACT, address, signed


def _fields(data: bytes) -> dict:
    return msgpack.unpackb(data, raw=False)


def _repack(d: dict) -> bytes:
    return msgpack.packb(d, use_bin_type=True)


def test_announcement_round_trip_and_signer() -> None:
    ann = signed(1, b"update bytes", round=7, n_samples=123, encoding=1)
    data = ann.encode()
    assert len(data) < 300
    back = UpdateAnnouncement.decode(data)
    assert back == ann
    assert recover_update_signer(back) == address(1) == ann.sender


def test_digest_matches_eth_account_typed_data() -> None:
    ann = signed(2, b"x" * 1000, round=2**40 + 3, n_samples=2**33, encoding=3)
    typed = update_typed_data(chain_id=ann.chain_id, contract=ann.contract, round=ann.round,
                              payload_hash=ann.payload_hash, payload_size=ann.payload_size,
                              n_samples=ann.n_samples, encoding=ann.encoding)
    assert eip712_digest(ann) == _hash_eip191_message(encode_typed_data(full_message=typed))


def test_every_signed_field_is_covered_by_the_signature() -> None:
    ann = signed(3, b"payload", round=5)
    for change in ({"round": 6}, {"payload_size": 8}, {"n_samples": 11}, {"encoding": 1},
                   {"chain_id": CHAIN_ID + 1}, {"payload_hash": b"\x01" * 32},
                   {"contract": "0x" + "11" * 20}):
        forged = UpdateAnnouncement(**{**{f: getattr(ann, f) for f in ann.__slots__}, **change})
        assert recover_update_signer(forged) != ann.sender, change


def test_high_s_signature_is_refused() -> None:
    ann = signed(4, b"p")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    r, s, v = ann.signature[:32], int.from_bytes(ann.signature[32:64], "big"), ann.signature[64]
    malleable = r + (n - s).to_bytes(32, "big") + bytes([55 - v])
    with pytest.raises(ValidationError, match="bad_signature"):
        recover_update_signer(UpdateAnnouncement(**{**{f: getattr(ann, f) for f in ann.__slots__},
                                                     "signature": malleable}))


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(round=True), "round"),            # bool is not an int
    (lambda d: d.update(round="1"), "round"),
    (lambda d: d.update(round=-1), "round"),
    (lambda d: d.update(hash=b"\0" * 31), "hash"),
    (lambda d: d.update(hash="00" * 8), "hash"),
    (lambda d: d.update(hash="00" * 32), "malformed"),  # str longer than any field
    (lambda d: d.update(sig=b"\0" * 64), "sig"),
    (lambda d: d.update(sender=b"\0" * 19), "sender"),
    (lambda d: d.update(enc=256), "enc"),
    (lambda d: d.update(v=2), "version"),
    (lambda d: d.update(k="arrays"), "k"),
    (lambda d: d.update(extra=d.pop("n")), "unexpected"),
    (lambda d: d.update(extra=1), "malformed"),  # more keys than the schema has
    (lambda d: d.pop("n"), "missing"),
    (lambda d: d.update(n=[1, 2]), "n"),
])
def test_decode_rejects_wrong_types_and_fields(mutate, field) -> None:
    d = _fields(signed(5, b"p").encode())
    mutate(d)
    with pytest.raises(WireError, match=field):
        UpdateAnnouncement.decode(_repack(d))


def test_decode_rejects_truncation_garbage_and_huge_length_fields() -> None:
    data = signed(6, b"p").encode()
    for cut in (1, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(WireError, match="malformed"):
            UpdateAnnouncement.decode(data[:cut])
    with pytest.raises(WireError, match="malformed"):
        UpdateAnnouncement.decode(data + b"\x00")  # trailing bytes
    # bin32 header claiming 3 GiB: refused by the length limit, nothing allocated
    with pytest.raises(WireError, match="malformed"):
        UpdateAnnouncement.decode(b"\x81\xa3sig\xc6" + (3 << 30).to_bytes(4, "big") + b"x")
    with pytest.raises(WireError, match="exceeds"):
        UpdateAnnouncement.decode(b"\x00" * 5000)
    with pytest.raises(WireError, match="malformed"):
        UpdateAnnouncement.decode(msgpack.packb([1, 2, 3]))
    with pytest.raises(WireError, match="map"):
        UpdateAnnouncement.decode(msgpack.packb(7))


def test_arrays_round_trip_exact_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal(5).astype(np.float16),
        "q": rng.integers(-128, 127, size=(2, 2, 2), dtype=np.int8),
        "be": np.arange(4, dtype=">i4"),           # big-endian input is converted
        "scalar": np.float32(-0.0).reshape(()),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    meta = {"round": 3, "scale": 0.5, "codec": "fp32"}
    data = encode_arrays(arrays, meta)
    assert data == encode_arrays(dict(reversed(list(arrays.items()))), dict(reversed(list(meta.items()))))
    out, meta_out = decode_arrays(data, max_bytes=len(data))
    assert meta_out == meta
    assert sorted(out) == sorted(arrays)
    for name, arr in arrays.items():
        assert out[name].shape == arr.shape
        assert out[name].dtype.byteorder in ("<", "|", "=")
        np.testing.assert_array_equal(out[name], arr.astype(arr.dtype.newbyteorder("<")))
    assert np.signbit(out["scalar"])  # raw bytes: -0.0 survives (canonicalising is peer/'s job)


def test_arrays_payload_is_little_endian_raw_bytes() -> None:
    data = encode_arrays({"x": np.array([1.0, 2.0], dtype=np.float32)}, {})
    assert np.array([1.0, 2.0], dtype="<f4").tobytes() in data


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["arrays"]["x"].update(dtype="object"), "dtype"),
    (lambda d: d["arrays"]["x"].update(shape=[3]), "data"),
    (lambda d: d["arrays"]["x"].update(shape=[-2, -1]), "shape"),
    (lambda d: d["arrays"]["x"].update(shape=[True, 2]), "shape"),
    (lambda d: d["arrays"]["x"].update(data="abcd"), "data"),
    (lambda d: d["arrays"]["x"].update(extra=1), "unexpected"),
    (lambda d: d["meta"].update(bad=[1]), "meta"),
    (lambda d: d["meta"].update(bad=None), "meta"),
    (lambda d: d.update(arrays=[]), "arrays"),
    (lambda d: d.update(v=9), "version"),
])
def test_decode_arrays_is_strict(mutate, field) -> None:
    d = _fields(encode_arrays({"x": np.ones(2, dtype=np.float32)}, {"a": 1}))
    mutate(d)
    data = _repack(d)
    with pytest.raises(WireError, match=field):
        decode_arrays(data, max_bytes=1 << 20)


def test_decode_arrays_bounds_size_and_nesting() -> None:
    data = encode_arrays({"x": np.ones(1000, dtype=np.float32)}, {})
    with pytest.raises(WireError, match="exceeds"):
        decode_arrays(data, max_bytes=1000)
    with pytest.raises(WireError, match="malformed"):
        decode_arrays(data[:-10], max_bytes=1 << 20)
    nested = b"\x91" * 2000 + b"\x00"  # 2000 nested one-element arrays
    with pytest.raises(WireError):
        decode_arrays(nested, max_bytes=1 << 20)
    claims_gigabytes = b"\xc6\xff\xff\xff\xf0" + b"\0" * 16
    with pytest.raises(WireError, match="malformed"):
        decode_arrays(claims_gigabytes, max_bytes=1 << 20)


def test_encode_arrays_rejects_unsupported_input() -> None:
    with pytest.raises(WireError, match="dtype"):
        encode_arrays({"x": np.array(["a"])}, {})
    with pytest.raises(WireError, match="meta"):
        encode_arrays({}, {"flag": True})  # type: ignore[dict-item]


def test_sign_update_validates_arguments() -> None:
    with pytest.raises(WireError, match="payload_hash"):
        signed(1, b"x", digest=b"short")
    with pytest.raises(WireError, match="encoding"):
        signed(1, b"x", encoding=300)
    assert hashlib.sha256(b"x").digest() == signed(1, b"x").payload_hash
    assert signed(1, b"x").contract == CONTRACT
