"""Wire format of fedchain gossip: signed update announcements and tensor payloads.

Everything here is msgpack with a version number and an exact schema. Decoding is
strict: the input size is bounded before msgpack sees it, msgpack's own length
limits stop a length field that claims gigabytes, every field must have exactly
the expected Python type (``bool`` is not an ``int``), unknown or missing keys are
errors, and nothing is ever unpickled. Every decode failure raises
:class:`~gossip.errors.WireError` naming the field.

Update signatures are EIP-712 typed data, as the team brief fixes them::

    domain = {name: "fedchain", version: "1", chainId, verifyingContract: contract}
    Update(uint256 round,bytes32 payloadHash,uint256 payloadSize,uint256 nSamples,uint8 encoding)

The digest is computed here by hand (32-byte ABI words and keccak) so that
verification is fast and the same bytes the contract hashes; a unit test checks it
against ``eth_account.messages.encode_typed_data``.

Example::

    ann = sign_update(key, chain_id=1337, contract=addr, round=3,
                      payload_hash=sha256(payload).digest(), payload_size=len(payload),
                      n_samples=100, encoding=ENCODING_FLOAT32)
    assert UpdateAnnouncement.decode(ann.encode()) == ann
    assert recover_update_signer(ann) == ann.sender
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak, to_checksum_address

from gossip.errors import ValidationError, WireError

__all__ = [
    "WIRE_VERSION",
    "MAX_ANNOUNCEMENT_BYTES",
    "ENCODING_FLOAT32",
    "ENCODING_FLOAT16",
    "ENCODING_INT8",
    "ENCODING_TOPK",
    "KNOWN_ENCODINGS",
    "UpdateAnnouncement",
    "sign_update",
    "recover_update_signer",
    "update_struct_hash",
    "domain_separator",
    "update_digest",
    "eip712_digest",
    "update_typed_data",
    "encode_arrays",
    "decode_arrays",
    "ARRAY_DTYPES",
]

WIRE_VERSION = 1
MAX_ANNOUNCEMENT_BYTES = 1024
"""An encoded announcement is about 220 bytes; anything past this is not one."""

ENCODING_FLOAT32 = 0
ENCODING_FLOAT16 = 1
ENCODING_INT8 = 2
ENCODING_TOPK = 3
KNOWN_ENCODINGS = frozenset({ENCODING_FLOAT32, ENCODING_FLOAT16, ENCODING_INT8, ENCODING_TOPK})

_UINT64_MAX = 2**64 - 1
# secp256k1 group order; signatures with s > n/2 are malleable copies and are refused
# (OpenZeppelin's ECDSA.recover refuses them too, so the contract agrees).
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_UPDATE_TYPE = (
    "Update(uint256 round,bytes32 payloadHash,uint256 payloadSize,uint256 nSamples,uint8 encoding)"
)
_UPDATE_TYPEHASH = keccak(text=_UPDATE_TYPE)
_NAME_HASH = keccak(text="fedchain")
_VERSION_HASH = keccak(text="1")

_ANN_KIND = "update"
_ANN_KEYS = frozenset(
    {"v", "k", "chain", "contract", "round", "sender", "hash", "size", "n", "enc", "sig"}
)


# ---------------------------------------------------------------------------- helpers


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_bytes(address: str, field: str) -> bytes:
    try:
        return bytes.fromhex(to_checksum_address(address)[2:])
    except (ValueError, TypeError) as exc:
        raise WireError(f"{field}: not an Ethereum address: {address!r}") from exc


def _unpack(data: bytes, *, what: str, max_bytes: int, max_bin: int, max_str: int,
            max_array: int, max_map: int) -> Any:
    """msgpack-decode ``data`` with every length bounded; any failure is a WireError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise WireError(f"{what}: {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=max_bin,
            max_str_len=max_str,
            max_array_len=max_array,
            max_map_len=max_map,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ValueError covers truncated input, extra data, limits exceeded, bad UTF-8.
        raise WireError(f"{what}: malformed msgpack ({exc})") from exc


def _check_map(obj: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if type(obj) is not dict:
        raise WireError(f"{what}: expected a map, got {type(obj).__name__}")
    got = frozenset(obj)
    if got != keys:
        missing = sorted(keys - got)
        extra = sorted(str(k) for k in got - keys)
        raise WireError(f"{what}: fields missing {missing}, unexpected {extra}")
    return obj


def _uint(obj: dict[str, Any], key: str, what: str, *, max_value: int = _UINT64_MAX) -> int:
    value = obj[key]
    if type(value) is not int:  # bool is an int subclass: refuse it explicitly
        raise WireError(f"{what}.{key}: expected int, got {type(value).__name__}")
    if not 0 <= value <= max_value:
        raise WireError(f"{what}.{key}: {value} outside [0, {max_value}]")
    return value


def _bin(obj: dict[str, Any], key: str, what: str, length: int) -> bytes:
    value = obj[key]
    if type(value) is not bytes:
        raise WireError(f"{what}.{key}: expected bytes, got {type(value).__name__}")
    if len(value) != length:
        raise WireError(f"{what}.{key}: expected {length} bytes, got {len(value)}")
    return value


# ---------------------------------------------------------------------- announcements


@dataclass(frozen=True, slots=True)
class UpdateAnnouncement:
    """A peer's signed claim: "my update for ``round`` is the payload with this hash".

    ``signature`` is the sender's 65-byte EIP-712 signature (r, s, v with v in 27/28)
    over (round, payload_hash, payload_size, n_samples, encoding) in the domain of
    (chain_id, contract). ``sender`` and ``contract`` are checksummed addresses.
    """

    chain_id: int
    contract: str
    round: int
    sender: str
    payload_hash: bytes
    payload_size: int
    n_samples: int
    encoding: int
    signature: bytes

    def encode(self) -> bytes:
        """The canonical msgpack bytes of this announcement (version ``WIRE_VERSION``)."""
        return msgpack.packb(
            {
                "v": WIRE_VERSION,
                "k": _ANN_KIND,
                "chain": self.chain_id,
                "contract": _address_bytes(self.contract, "contract"),
                "round": self.round,
                "sender": _address_bytes(self.sender, "sender"),
                "hash": self.payload_hash,
                "size": self.payload_size,
                "n": self.n_samples,
                "enc": self.encoding,
                "sig": self.signature,
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> UpdateAnnouncement:
        """Strictly decode bytes from the network; raises WireError naming the field."""
        what = "announcement"
        obj = _unpack(data, what=what, max_bytes=MAX_ANNOUNCEMENT_BYTES, max_bin=65,
                      max_str=16, max_array=0, max_map=len(_ANN_KEYS))
        obj = _check_map(obj, _ANN_KEYS, what)
        version = _uint(obj, "v", what)
        if version != WIRE_VERSION:
            raise WireError(f"{what}.v: unsupported wire version {version} (want {WIRE_VERSION})")
        if obj["k"] != _ANN_KIND or type(obj["k"]) is not str:
            raise WireError(f"{what}.k: expected {_ANN_KIND!r}, got {obj['k']!r}")
        return cls(
            chain_id=_uint(obj, "chain", what),
            contract=to_checksum_address(_bin(obj, "contract", what, 20)),
            round=_uint(obj, "round", what),
            sender=to_checksum_address(_bin(obj, "sender", what, 20)),
            payload_hash=_bin(obj, "hash", what, 32),
            payload_size=_uint(obj, "size", what),
            n_samples=_uint(obj, "n", what),
            encoding=_uint(obj, "enc", what, max_value=255),
            signature=_bin(obj, "sig", what, 65),
        )


def domain_separator(chain_id: int, contract: str) -> bytes:
    """EIP-712 domain separator of a federation (name "fedchain", version "1")."""
    return keccak(
        _DOMAIN_TYPEHASH
        + _NAME_HASH
        + _VERSION_HASH
        + _word(chain_id)
        + _address_bytes(contract, "contract").rjust(32, b"\0")
    )


def update_struct_hash(*, round: int, payload_hash: bytes, payload_size: int,
                       n_samples: int, encoding: int) -> bytes:
    """EIP-712 ``hashStruct(Update)``: keccak(typehash, the five fields as ABI words)."""
    if len(payload_hash) != 32:
        raise WireError(f"payload_hash: expected 32 bytes, got {len(payload_hash)}")
    if not 0 <= encoding <= 255:
        raise WireError(f"encoding: {encoding} does not fit uint8")
    return keccak(
        _UPDATE_TYPEHASH
        + _word(round)
        + bytes(payload_hash)
        + _word(payload_size)
        + _word(n_samples)
        + _word(encoding)
    )


def update_digest(*, chain_id: int, contract: str, round: int, payload_hash: bytes,
                  payload_size: int, n_samples: int, encoding: int) -> bytes:
    """The 32-byte EIP-712 digest ``keccak(0x1901 ‖ domainSeparator ‖ structHash)``."""
    return keccak(
        b"\x19\x01"
        + domain_separator(chain_id, contract)
        + update_struct_hash(round=round, payload_hash=payload_hash,
                             payload_size=payload_size, n_samples=n_samples,
                             encoding=encoding)
    )


def eip712_digest(ann: UpdateAnnouncement) -> bytes:
    """The digest ``ann.signature`` signs; the contract computes the same bytes."""
    return update_digest(chain_id=ann.chain_id, contract=ann.contract, round=ann.round,
                         payload_hash=ann.payload_hash, payload_size=ann.payload_size,
                         n_samples=ann.n_samples, encoding=ann.encoding)


def update_typed_data(*, chain_id: int, contract: str, round: int, payload_hash: bytes,
                      payload_size: int, n_samples: int, encoding: int) -> dict[str, Any]:
    """The EIP-712 typed-data dict (as wallets and ``encode_typed_data`` take it)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Update": [
                {"name": "round", "type": "uint256"},
                {"name": "payloadHash", "type": "bytes32"},
                {"name": "payloadSize", "type": "uint256"},
                {"name": "nSamples", "type": "uint256"},
                {"name": "encoding", "type": "uint8"},
            ],
        },
        "primaryType": "Update",
        "domain": {
            "name": "fedchain",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(contract),
        },
        "message": {
            "round": round,
            "payloadHash": bytes(payload_hash),
            "payloadSize": payload_size,
            "nSamples": n_samples,
            "encoding": encoding,
        },
    }


def sign_update(private_key: bytes | str, *, chain_id: int, contract: str, round: int,
                payload_hash: bytes, payload_size: int, n_samples: int,
                encoding: int) -> UpdateAnnouncement:
    """Sign an update with an Ethereum key (EIP-712) and return the announcement."""
    for name, value, top in (("chain_id", chain_id, _UINT64_MAX), ("round", round, _UINT64_MAX),
                             ("payload_size", payload_size, _UINT64_MAX),
                             ("n_samples", n_samples, _UINT64_MAX), ("encoding", encoding, 255)):
        if type(value) is not int or not 0 <= value <= top:
            raise WireError(f"{name}: {value!r} is not an integer in [0, {top}]")
    if type(payload_hash) is not bytes or len(payload_hash) != 32:
        raise WireError(f"payload_hash: expected 32 bytes, got {payload_hash!r}")
    account = Account.from_key(private_key)
    signable = encode_typed_data(full_message=update_typed_data(
        chain_id=chain_id, contract=contract, round=round, payload_hash=payload_hash,
        payload_size=payload_size, n_samples=n_samples, encoding=encoding))
    signed = account.sign_message(signable)
    return UpdateAnnouncement(
        chain_id=chain_id,
        contract=to_checksum_address(contract),
        round=round,
        sender=account.address,
        payload_hash=payload_hash,
        payload_size=payload_size,
        n_samples=n_samples,
        encoding=encoding,
        signature=bytes(signed.signature),
    )


def recover_update_signer(ann: UpdateAnnouncement) -> str:
    """The checksummed address that signed ``ann``; ValidationError("bad_signature")
    for a malformed or malleable (high-s) signature. Compare it with ``ann.sender``."""
    sig = ann.signature
    if len(sig) != 65:
        raise ValidationError("bad_signature", f"signature has {len(sig)} bytes, want 65")
    s = int.from_bytes(sig[32:64], "big")
    if sig[64] not in (27, 28) or not 0 < s <= _SECP256K1_N // 2:
        raise ValidationError("bad_signature", "signature v or s outside the canonical range")
    signable = SignableMessage(
        version=b"\x01",
        header=domain_separator(ann.chain_id, ann.contract),
        body=update_struct_hash(round=ann.round, payload_hash=ann.payload_hash,
                                payload_size=ann.payload_size, n_samples=ann.n_samples,
                                encoding=ann.encoding),
    )
    try:
        return to_checksum_address(Account.recover_message(signable, signature=sig))
    except (ValueError, TypeError) as exc:  # eth_keys BadSignature is a ValueError
        raise ValidationError("bad_signature", f"cannot recover signer: {exc}") from exc


# ---------------------------------------------------------------------- tensor payloads

ARRAY_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "float64": np.dtype("<f8"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint32": np.dtype("<u4"),
}
"""Dtypes a payload may carry, by wire name; all little-endian."""

_ARRAYS_KIND = "arrays"
_ARRAYS_KEYS = frozenset({"v", "k", "meta", "arrays"})
_ENTRY_KEYS = frozenset({"dtype", "shape", "data"})
MAX_ARRAYS = 4096
MAX_NDIM = 32
MAX_NAME = 256
MAX_META_STR = 4096


def _wire_dtype(arr: np.ndarray, name: str) -> tuple[str, np.dtype[Any]]:
    for wire_name, dt in ARRAY_DTYPES.items():
        if arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize:
            return wire_name, dt
    raise WireError(f"arrays[{name!r}]: dtype {arr.dtype} not supported "
                    f"(use one of {sorted(ARRAY_DTYPES)})")


def encode_arrays(arrays: dict[str, np.ndarray], meta: dict[str, int | float | str]) -> bytes:
    """Pack named arrays as raw little-endian bytes with explicit dtype and shape.

    Deterministic: names and meta keys are sorted, so equal inputs give equal bytes.
    """
    if len(arrays) > MAX_ARRAYS:
        raise WireError(f"arrays: {len(arrays)} arrays exceeds {MAX_ARRAYS}")
    entries: dict[str, Any] = {}
    for name in sorted(arrays):
        if type(name) is not str or not 0 < len(name) <= MAX_NAME:
            raise WireError(f"arrays: bad array name {name!r}")
        arr = np.asarray(arrays[name])
        wire_name, dt = _wire_dtype(arr, name)
        if arr.ndim > MAX_NDIM:
            raise WireError(f"arrays[{name!r}]: {arr.ndim} dimensions exceeds {MAX_NDIM}")
        flat = np.ascontiguousarray(arr, dtype=dt).reshape(-1)
        entries[name] = {"dtype": wire_name, "shape": list(arr.shape),
                         "data": memoryview(flat.view(np.uint8))}
    meta_out: dict[str, int | float | str] = {}
    for key in sorted(meta):
        value = meta[key]
        if type(key) is not str or not 0 < len(key) <= MAX_NAME:
            raise WireError(f"meta: bad key {key!r}")
        if type(value) not in (int, float, str):
            raise WireError(f"meta[{key!r}]: expected int, float or str, got {type(value).__name__}")
        meta_out[key] = value
    return msgpack.packb({"v": WIRE_VERSION, "k": _ARRAYS_KIND, "meta": meta_out,
                          "arrays": entries}, use_bin_type=True)


def decode_arrays(data: bytes, *, max_bytes: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Strictly decode :func:`encode_arrays` output of at most ``max_bytes``.

    Arrays are zero-copy, read-only views of ``data`` (``np.frombuffer``); copy them
    to modify. Raises WireError naming the field on any deviation from the schema.
    """
    what = "payload"
    obj = _unpack(data, what=what, max_bytes=max_bytes, max_bin=max_bytes,
                  max_str=max(MAX_META_STR, MAX_NAME), max_array=MAX_NDIM, max_map=MAX_ARRAYS)
    obj = _check_map(obj, _ARRAYS_KEYS, what)
    version = _uint(obj, "v", what)
    if version != WIRE_VERSION:
        raise WireError(f"{what}.v: unsupported wire version {version} (want {WIRE_VERSION})")
    if type(obj["k"]) is not str or obj["k"] != _ARRAYS_KIND:
        raise WireError(f"{what}.k: expected {_ARRAYS_KIND!r}, got {obj['k']!r}")
    meta = obj["meta"]
    if type(meta) is not dict:
        raise WireError(f"{what}.meta: expected a map, got {type(meta).__name__}")
    for key, value in meta.items():
        if type(value) not in (int, float, str):
            raise WireError(f"{what}.meta[{key!r}]: expected int, float or str, "
                            f"got {type(value).__name__}")
    entries = obj["arrays"]
    if type(entries) is not dict:
        raise WireError(f"{what}.arrays: expected a map, got {type(entries).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, entry in entries.items():
        where = f"{what}.arrays[{name!r}]"
        if not 0 < len(name) <= MAX_NAME:
            raise WireError(f"{where}: bad array name")
        entry = _check_map(entry, _ENTRY_KEYS, where)
        dtype_name = entry["dtype"]
        if type(dtype_name) is not str or dtype_name not in ARRAY_DTYPES:
            raise WireError(f"{where}.dtype: unsupported dtype {dtype_name!r}")
        dt = ARRAY_DTYPES[dtype_name]
        shape = entry["shape"]
        if type(shape) is not list or any(type(d) is not int or d < 0 for d in shape):
            raise WireError(f"{where}.shape: expected a list of non-negative ints, got {shape!r}")
        raw = entry["data"]
        if type(raw) is not bytes:
            raise WireError(f"{where}.data: expected bytes, got {type(raw).__name__}")
        count = math.prod(shape)
        if count * dt.itemsize != len(raw):
            raise WireError(f"{where}.data: {len(raw)} bytes, but shape {shape} of {dtype_name} "
                            f"needs {count * dt.itemsize}")
        out[name] = np.frombuffer(raw, dtype=dt).reshape(shape)
    return out, meta
