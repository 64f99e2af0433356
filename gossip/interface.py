"""The small interface ``peer/`` codes against: :class:`Network`.

Two implementations: :class:`gossip.network.Libp2pNetwork` (real hosts) and
:class:`gossip.memory.MemoryNetwork` (in memory, same validation, for unit tests).

Lifecycle is an async context manager, so start and stop can never be unbalanced
and nothing is left running after an error::

    async with Libp2pNetwork(config=cfg).running() as net:   # or open_network(cfg)
        net.set_allowed_senders(registered_addresses)
        net.set_round_window(r, r + 1)
        await net.publish_update(ann, payload)
        async for ann, payload in net.updates():   # verified, payload hash-checked
            ...

Leaving the block stops background tasks, closes streams and the host, and ends
any ``updates()`` iteration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from gossip.wire import UpdateAnnouncement

__all__ = ["Network"]


@runtime_checkable
class Network(Protocol):
    """A peer's view of the federation's gossip network."""

    def running(self) -> AbstractAsyncContextManager[Network]:
        """Start the network for the duration of an ``async with`` block."""
        ...

    async def publish_update(self, ann: UpdateAnnouncement, payload: bytes) -> None:
        """Serve ``payload`` and announce it; raises ValidationError if ``ann`` is not
        valid for this federation or does not match ``payload`` (size, sha256)."""
        ...

    def updates(self) -> AsyncIterator[tuple[UpdateAnnouncement, bytes]]:
        """Other peers' verified announcements with their fetched, hash-checked payload.

        Own updates are not yielded. Each distinct signed announcement is yielded
        once. Iteration ends when the network stops.
        """
        ...

    async def fetch(self, payload_hash: bytes, *, size: int | None,
                    providers: list[str] | None = None) -> bytes:
        """The payload with this sha256 and exact size, from any peer that has it
        (``providers``, peer ids, are tried first). Raises FetchError.

        ``size=None``: the size is not known (e.g. the hash came from the chain and
        the announcement was missed); any size up to ``max_payload_bytes`` is
        accepted, a provider offering more is refused (counter ``fetch_oversize``),
        and the bytes are still checked against the hash as they arrive."""
        ...

    def provide(self, data: bytes) -> bytes:
        """Serve ``data`` to other peers by its sha256, which is returned."""
        ...

    def set_allowed_senders(self, addresses: Iterable[str] | None) -> None:
        """Only announcements signed by these addresses pass (None: any signer)."""
        ...

    def set_round_window(self, lo: int, hi: int) -> None:
        """Only announcements for rounds lo..hi (inclusive) pass."""
        ...

    def connected_peers(self) -> list[str]:
        """Peer ids of the peers currently connected."""
        ...

    def listen_multiaddrs(self) -> list[str]:
        """Full multiaddrs (with ``/p2p/<id>``) other peers can dial."""
        ...

    def counters(self) -> dict[str, int]:
        """A snapshot of the counters (drops by reason, fetches, bytes)."""
        ...

    async def connect(self, multiaddr: str) -> None:
        """Dial a peer by full multiaddr; raises NetworkError."""
        ...
