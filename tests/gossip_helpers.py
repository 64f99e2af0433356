"""Shared helpers of the gossip tests: deterministic keys, signed updates, waits."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import trio
from eth_account import Account

from gossip.network import NetworkConfig
from gossip.wire import UpdateAnnouncement, sign_update

CHAIN_ID = 1337
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def eth_key(i: int) -> bytes:
    """A fixed Ethereum private key per index (deterministic tests)."""
    return hashlib.sha256(f"fedchain-gossip-test-key-{i}".encode()).digest()


def address(i: int) -> str:
    return Account.from_key(eth_key(i)).address


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def signed(i: int, data: bytes, *, round: int = 1, chain_id: int = CHAIN_ID,
           contract: str = CONTRACT, n_samples: int = 10, encoding: int = 0,
           size: int | None = None, digest: bytes | None = None) -> UpdateAnnouncement:
    return sign_update(eth_key(i), chain_id=chain_id, contract=contract, round=round,
                       payload_hash=digest or hashlib.sha256(data).digest(),
                       payload_size=len(data) if size is None else size,
                       n_samples=n_samples, encoding=encoding)


def config(tmp: Path, name: str, **kw: object) -> NetworkConfig:
    return NetworkConfig(data_dir=tmp / name, chain_id=CHAIN_ID, contract=CONTRACT, **kw)


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` (cheap, in-memory) until true; fail with ``what`` after ``timeout``."""
    try:
        with trio.fail_after(timeout):
            while not cond():
                await trio.sleep(0.02)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


async def start_networks(stack, tmp: Path, n: int, prefix: str = "n", **kw: object) -> list:
    """Start ``n`` Libp2pNetworks inside ``stack`` (an AsyncExitStack)."""
    from gossip.network import Libp2pNetwork

    nets = []
    for i in range(n):
        nets.append(await stack.enter_async_context(
            Libp2pNetwork(config=config(tmp, f"{prefix}{i}", **kw)).running()))
    return nets


async def connect_all(nets: list, *, full: bool = True) -> None:
    """Connect every pair (``full``) or each to the first; wait for topic meshes."""
    for i, a in enumerate(nets):
        for b in nets[:i] if full else nets[:1]:
            if a is not b:
                await a.connect(b.listen_multiaddrs()[0])
    want = len(nets) - 1
    await wait_until(lambda: all(len(n.topic_peers()) >= (want if full else 1) for n in nets),
                     20, "topic subscriptions")
    await wait_until(lambda: all(n.mesh_peers() for n in nets), 20, "gossipsub meshes")
