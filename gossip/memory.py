"""An in-memory :class:`~gossip.interface.Network` for unit tests of ``peer/``.

All :class:`MemoryNetwork` objects on one :class:`MemoryHub` see each other while
they run. Announcements go through the same :class:`AnnouncementValidator` and
counters as on libp2p (so a test of peer/ sees the same drops), encoded and
decoded with the real wire format; payloads are "fetched" by copying from a
peer's store and are hash-checked like real fetches. Delivery is asynchronous
(one task per receiver), as on a real network.

    hub = MemoryHub()
    a, b = hub.network(chain_id=1337, contract=addr), hub.network(chain_id=1337, contract=addr)
    async with a.running(), b.running():
        await a.publish_update(ann, payload)
        async for ann, payload in b.updates(): ...

``hub.inject(data)`` delivers raw announcement bytes to every running network, to
test how peer/ copes with bad input; ``hub.set_offline(net)`` cuts a peer off.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio

from gossip.errors import FetchError, NetworkError, ValidationError
from gossip.payload import BlobStore
from gossip.validation import AnnouncementValidator, Counters
from gossip.wire import UpdateAnnouncement, eip712_digest

__all__ = ["MemoryHub", "MemoryNetwork"]


class MemoryHub:
    """The shared "wire" of a set of in-memory networks."""

    def __init__(self) -> None:
        self._running: dict[str, MemoryNetwork] = {}
        self._offline: set[str] = set()
        self._ids = itertools.count(1)

    def network(self, *, chain_id: int, contract: str, max_payload_bytes: int = 256 << 20,
                updates_buffer: int = 1024) -> MemoryNetwork:
        """A new network attached to this hub (not yet running)."""
        return MemoryNetwork(self, peer_id=f"mem-{next(self._ids)}", chain_id=chain_id,
                             contract=contract, max_payload_bytes=max_payload_bytes,
                             updates_buffer=updates_buffer)

    def set_offline(self, net: MemoryNetwork, offline: bool = True) -> None:
        """Cut ``net`` off the hub (or reconnect it): it neither sends nor receives."""
        (self._offline.add if offline else self._offline.discard)(net.peer_id)

    def _peers_of(self, peer_id: str) -> list[MemoryNetwork]:
        if peer_id in self._offline:
            return []
        return [n for pid, n in self._running.items()
                if pid != peer_id and pid not in self._offline]

    def inject(self, data: bytes, *, from_peer: str = "mem-attacker") -> None:
        """Deliver raw gossip bytes to every running, online network."""
        for net in list(self._running.values()):
            if net.peer_id not in self._offline:
                net._receive(data, from_peer)


class MemoryNetwork:
    """Same interface and validation as Libp2pNetwork, over a MemoryHub."""

    def __init__(self, hub: MemoryHub, *, peer_id: str, chain_id: int, contract: str,
                 max_payload_bytes: int, updates_buffer: int) -> None:
        self.hub = hub
        self.peer_id = peer_id
        self.max_payload_bytes = max_payload_bytes
        self._counters = Counters()
        self._validator = AnnouncementValidator(chain_id=chain_id, contract=contract,
                                                max_payload_bytes=max_payload_bytes,
                                                counters=self._counters)
        self._store = BlobStore(1 << 62)
        self._seen: set[bytes] = set()
        self._nursery: trio.Nursery | None = None
        self._used = False
        self._updates_send, self._updates_recv = trio.open_memory_channel[
            tuple[UpdateAnnouncement, bytes]](updates_buffer)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MemoryNetwork]:
        if self._used:
            raise NetworkError("a MemoryNetwork runs once; create a new one to restart")
        self._used = True
        body_error: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.hub._running[self.peer_id] = self
                try:
                    yield self
                except Exception as exc:  # re-raised below, not wrapped in an ExceptionGroup
                    body_error = exc
                finally:
                    self.hub._running.pop(self.peer_id, None)
                    self._nursery = None
                    nursery.cancel_scope.cancel()
        finally:
            self._updates_send.close()
        if body_error is not None:
            raise body_error

    def _require(self) -> trio.Nursery:
        if self._nursery is None:
            raise NetworkError("the network is not running (use `async with net.running():`)")
        return self._nursery

    def _first_sighting(self, ann: UpdateAnnouncement) -> bool:
        key = bytes.fromhex(ann.sender[2:]) + eip712_digest(ann)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    async def publish_update(self, ann: UpdateAnnouncement, payload: bytes) -> None:
        self._require()
        if len(payload) != ann.payload_size or hashlib.sha256(payload).digest() != ann.payload_hash:
            raise ValidationError("payload_mismatch", "payload does not match the "
                                  "announcement's payload_size / payload_hash")
        self._validator.verify(ann)
        self._first_sighting(ann)
        self._store.put_verified(ann.payload_hash, bytes(payload))
        data = ann.encode()
        for peer in self.hub._peers_of(self.peer_id):
            peer._receive(data, self.peer_id)
        self._counters.inc("published")
        await trio.lowlevel.checkpoint()

    def _receive(self, data: bytes, from_peer: str) -> None:
        nursery = self._nursery
        if nursery is None:
            return
        self._counters.inc("announce_received")
        try:
            ann = self._validator.check_bytes(data)
        except ValidationError:
            return
        self._counters.inc("announce_valid")
        if not self._first_sighting(ann):
            self._counters.inc("drop_duplicate")
            return
        nursery.start_soon(self._fetch_and_deliver, ann, from_peer)

    async def _fetch_and_deliver(self, ann: UpdateAnnouncement, from_peer: str) -> None:
        try:
            payload = await self.fetch(ann.payload_hash, size=ann.payload_size,
                                       providers=[from_peer])
        except FetchError:
            self._counters.inc("update_fetch_failed")
            return
        try:
            await self._updates_send.send((ann, payload))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        self._counters.inc("updates_delivered")

    def updates(self) -> AsyncIterator[tuple[UpdateAnnouncement, bytes]]:
        return self._updates_recv.__aiter__()

    async def fetch(self, payload_hash: bytes, *, size: int | None,
                    providers: list[str] | None = None) -> bytes:
        self._require()
        await trio.lowlevel.checkpoint()
        cap = self.max_payload_bytes
        if size is not None and not 0 <= size <= cap:
            raise FetchError(f"size {size} is not within 0..max_payload_bytes ({cap})")
        data = self._store.get(payload_hash)
        if data is None:
            data = self._fetch_from_peers(payload_hash, size, providers or [])
        if size is not None and len(data) != size:
            raise FetchError(f"payload {payload_hash.hex()} has {len(data)} bytes, not {size}")
        return data

    def _fetch_from_peers(self, payload_hash: bytes, size: int | None,
                          providers: list[str]) -> bytes:
        """Copy the payload from the first peer whose copy passes the same checks
        as a libp2p fetch (size header, cap when the size is unknown, sha256)."""
        cap = self.max_payload_bytes
        peers = {p.peer_id: p for p in self.hub._peers_of(self.peer_id)}
        order = [peers[p] for p in providers if p in peers]
        order += [p for p in peers.values() if p not in order]
        for peer in order:
            candidate = peer._store.get(payload_hash)
            if candidate is None:
                self._counters.inc("fetch_not_found")
            elif size is None and len(candidate) > cap:
                self._counters.inc("fetch_oversize")  # refused on its size header
            elif size is not None and len(candidate) != size:
                self._counters.inc("fetch_size_mismatch")
            else:
                self._counters.inc("bytes_received", len(candidate))
                if hashlib.sha256(candidate).digest() != payload_hash:
                    self._counters.inc("fetch_hash_mismatch")
                    continue
                self._counters.inc("fetch_ok")
                self._counters.inc("bytes_fetched", len(candidate))
                self._store.put_verified(payload_hash, candidate)
                return candidate
        self._counters.inc("fetch_failed")
        raise FetchError(f"payload {payload_hash.hex()}: no connected peer delivered it")

    def provide(self, data: bytes) -> bytes:
        return self._store.put(bytes(data))

    def set_allowed_senders(self, addresses: Iterable[str] | None) -> None:
        self._validator.set_allowed_senders(None if addresses is None else set(addresses))

    def set_round_window(self, lo: int, hi: int) -> None:
        self._validator.set_round_window(lo, hi)

    def connected_peers(self) -> list[str]:
        return [] if self._nursery is None else [p.peer_id for p in self.hub._peers_of(self.peer_id)]

    def listen_multiaddrs(self) -> list[str]:
        return [f"/memory/{self.peer_id}"]

    def counters(self) -> dict[str, int]:
        return self._counters.snapshot()

    async def connect(self, multiaddr: str) -> None:
        """Every network on the hub is connected to every other: only checks the address."""
        self._require()
        if not multiaddr.startswith("/memory/mem-"):
            raise NetworkError(f"not a memory multiaddr: {multiaddr!r}")
        await trio.lowlevel.checkpoint()
