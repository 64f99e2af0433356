"""The libp2p host: persistent identity, TCP + noise + yamux, nothing else.

``new_host()`` of py-libp2p 0.8.1 offers plaintext, secio and TLS next to noise
when no security option is given, and mplex as a fallback muxer: we pass exactly
one of each (noise, yamux), so two fedchain peers can never negotiate down to an
unauthenticated channel. The noise transport and yamux carry fedchain's
speed workarounds (:mod:`gossip.tuning`).

The host's identity is an Ed25519 key whose 32-byte seed lives in
``<data_dir>/p2p_identity.key`` (mode 0600): the peer id survives restarts, so
multiaddrs published on chain stay valid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from gossip.errors import NetworkError
from gossip.tuning import BufferedNoiseTransport, apply_workarounds

__all__ = ["IDENTITY_FILE", "load_or_create_identity", "build_host", "parse_peer_multiaddr"]

IDENTITY_FILE = "p2p_identity.key"
_SEED_BYTES = 32


def load_or_create_identity(data_dir: Path) -> KeyPair:
    """Load the host key from ``data_dir``, or create and persist a new one."""
    path = Path(data_dir) / IDENTITY_FILE
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != _SEED_BYTES:
            raise NetworkError(f"identity key {path}: {len(seed)} bytes, expected {_SEED_BYTES}")
        try:
            return create_new_key_pair(seed)
        except ValueError as exc:
            raise NetworkError(f"identity key {path} is not a valid Ed25519 seed") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    key_pair = create_new_key_pair()
    seed = key_pair.private_key.to_bytes()[:_SEED_BYTES]
    # Write to a temporary file then rename, so a crash never leaves half a key.
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(seed)
    os.replace(tmp, path)
    return create_new_key_pair(seed)


def build_host(key_pair: KeyPair, listen_addrs: Sequence[str]) -> IHost:
    """A host speaking only TCP, noise and yamux, with ``key_pair`` as identity."""
    try:
        maddrs = [multiaddr.Multiaddr(a) for a in listen_addrs]
    except (ValueError, TypeError) as exc:
        raise NetworkError(f"bad listen multiaddr in {list(listen_addrs)!r}: {exc}") from exc
    for addr in maddrs:
        names = [p.name for p in addr.protocols()]
        if "tcp" not in names or any(n in names for n in ("ws", "wss", "quic", "quic-v1")):
            raise NetworkError(f"listen multiaddr {addr} is not plain TCP")
    apply_workarounds()  # py-libp2p speed fixes, see gossip.tuning
    noise = BufferedNoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=maddrs,
    )


def parse_peer_multiaddr(addr: str) -> PeerInfo:
    """``/ip4/../tcp/../p2p/<id>`` -> PeerInfo; NetworkError naming the address."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:  # multiaddr raises several unrelated types; we re-raise
        raise NetworkError(f"not a dialable multiaddr with /p2p/<id>: {addr!r}") from exc
