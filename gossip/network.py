"""``Libp2pNetwork``: the :class:`~gossip.interface.Network` on real libp2p hosts.

One host (TCP, noise, yamux; identity persisted in ``data_dir``), one gossipsub
topic per federation carrying signed announcements, and the
``/fedchain/payload/1`` stream protocol carrying payload bytes:

1. ``publish_update`` stores the payload, then publishes the ~220-byte
   announcement on the topic.
2. Every peer's gossipsub validator (:class:`AnnouncementValidator`) checks an
   announcement before accepting or forwarding it; drops are counted by reason
   and lower the forwarder's peer score (see :mod:`gossip.topics`).
3. A peer that accepts an announcement fetches the payload once, from the
   announcer first and then from any other connected peer (every peer that
   fetched a payload serves it too), checking size and sha256 while streaming,
   and yields ``(announcement, payload)`` from ``updates()``.

Start and stop with ``async with net.running():`` (or ``open_network(cfg)``).
Shutdown order is: our tasks, then gossipsub, then pubsub, then the host, which
avoids py-libp2p's "Nursery is closed to new arrivals" race.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from gossip.errors import FetchError, NetworkError, ValidationError
from gossip.host import build_host, load_or_create_identity, parse_peer_multiaddr
from gossip.interface import Network
from gossip.payload import (
    PAYLOAD_PROTOCOL,
    STREAM_ERRORS,
    BlobStore,
    FetchLimits,
    ProviderError,
    fetch_failed,
    fetch_from_peer,
    make_payload_handler,
)
from gossip.topics import GossipParams, announce_topic, build_gossipsub
from gossip.validation import AnnouncementValidator, Counters
from gossip.wire import UpdateAnnouncement, eip712_digest

__all__ = ["Network", "NetworkConfig", "Libp2pNetwork", "open_network"]

log = logging.getLogger(__name__)

_MiB = 1 << 20


@dataclass(frozen=True)
class NetworkConfig:
    """Configuration of one peer's network (all options keyword-only).

    ``data_dir`` holds the host identity key. ``bootstrap`` multiaddrs (with
    ``/p2p/<id>``) are dialed at start and re-dialed with exponential backoff
    whenever the connection drops. A provider must start answering a fetch
    within ``fetch_timeout_base`` seconds (waiting for one of its
    ``serve_concurrency`` slots included), never pause longer than that, and
    deliver ``size`` bytes within ``fetch_timeout_base + size / fetch_min_rate``
    seconds; otherwise the next provider is tried. When no provider delivered,
    all connected peers are asked again up to ``fetch_attempts`` times,
    ``fetch_retry_delay`` doubling between. ``fetch(hash, size=None)`` accepts
    any size up to ``max_payload_bytes``.
    """

    data_dir: Path
    chain_id: int
    contract: str
    listen_addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()
    max_payload_bytes: int = 256 * _MiB
    fetch_concurrency: int = 4
    serve_concurrency: int = 8
    fetch_timeout_base: float = 10.0
    fetch_min_rate: float = 1e6
    connect_timeout: float = 10.0
    reconnect_min_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    store_max_bytes: int = 2048 * _MiB
    updates_buffer: int = 1024
    max_pending_fetches: int = 4096
    fetch_attempts: int = 3
    fetch_retry_delay: float = 0.5
    gossip: GossipParams = field(default_factory=GossipParams)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "listen_addrs", tuple(self.listen_addrs))
        object.__setattr__(self, "bootstrap", tuple(self.bootstrap))
        for name in ("max_payload_bytes", "fetch_concurrency", "serve_concurrency",
                     "store_max_bytes", "updates_buffer", "max_pending_fetches", "fetch_attempts"):
            if getattr(self, name) <= 0:
                raise ValueError(f"NetworkConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.listen_addrs:
            raise ValueError("NetworkConfig.listen_addrs is empty")
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay:
            raise ValueError(f"need 0 < reconnect_min_delay <= reconnect_max_delay, got "
                             f"{self.reconnect_min_delay}, {self.reconnect_max_delay}")


@dataclass
class _Running:
    """Everything that exists only while the network runs."""

    host: IHost
    pubsub: Pubsub
    gossipsub: GossipSub
    nursery: trio.Nursery
    my_id: ID


class Libp2pNetwork:
    """The gossip network of one peer on py-libp2p. See the module docstring."""

    def __init__(self, *, config: NetworkConfig) -> None:
        self.config = config
        self.topic = announce_topic(config.chain_id, config.contract)
        self._counters = Counters()
        self._validator = AnnouncementValidator(
            chain_id=config.chain_id, contract=config.contract,
            max_payload_bytes=config.max_payload_bytes, counters=self._counters)
        self._store = BlobStore(config.store_max_bytes)
        self._fetch_limiter = trio.CapacityLimiter(config.fetch_concurrency)
        self._serve_limiter = trio.CapacityLimiter(config.serve_concurrency)
        self._fetch_limits = FetchLimits(max_bytes=config.max_payload_bytes,
                                         timeout_base=config.fetch_timeout_base,
                                         min_rate=config.fetch_min_rate)
        self._fetch_locks: dict[bytes, trio.Lock] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._pending_fetches = 0
        self._run: _Running | None = None
        self._used = False
        self._updates_send, self._updates_recv = trio.open_memory_channel[
            tuple[UpdateAnnouncement, bytes]](config.updates_buffer)
        self._rng = random.Random()

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Libp2pNetwork]:
        """Run the host, gossipsub and the payload protocol inside this block."""
        if self._used:
            raise NetworkError("a Libp2pNetwork runs once; create a new one to restart")
        self._used = True
        cfg = self.config
        for addr in cfg.bootstrap:  # fail now, not in a background task
            try:
                parse_peer_multiaddr(addr)
            except NetworkError as exc:
                raise NetworkError(f"bootstrap: {exc}") from exc
        key_pair = load_or_create_identity(cfg.data_dir)
        host = build_host(key_pair, cfg.listen_addrs)
        gossipsub = build_gossipsub(cfg.gossip)
        pubsub = Pubsub(host, gossipsub, strict_signing=True)
        pubsub.set_topic_validator(self.topic, self._gossip_validator, False)
        host.set_stream_handler(PAYLOAD_PROTOCOL, make_payload_handler(
            self._store, self._counters, limiter=self._serve_limiter,
            request_timeout=cfg.connect_timeout))
        maddrs = [multiaddr.Multiaddr(a) for a in cfg.listen_addrs]
        # An error raised by the caller's block is re-raised as itself after shutdown,
        # not wrapped in one ExceptionGroup per nursery below (five levels deep).
        body_error: Exception | None = None
        try:
            async with host.run(maddrs):
                async with background_trio_service(pubsub):
                    async with background_trio_service(gossipsub):
                        await pubsub.wait_until_ready()
                        subscription = await pubsub.subscribe(self.topic)
                        async with trio.open_nursery() as nursery:
                            run = _Running(host, pubsub, gossipsub, nursery, host.get_id())
                            self._run = run
                            nursery.start_soon(self._read_announcements, run, subscription)
                            for addr in cfg.bootstrap:
                                nursery.start_soon(self._keep_connected, run, addr)
                            try:
                                yield self
                            except Exception as exc:  # re-raised below, unwrapped
                                body_error = exc
                            finally:
                                self._run = None
                                nursery.cancel_scope.cancel()
        except OSError as exc:
            raise NetworkError(f"cannot listen on {list(cfg.listen_addrs)}: {exc}") from exc
        finally:
            self._run = None
            self._updates_send.close()
        if body_error is not None:
            raise body_error

    def _require(self) -> _Running:
        if self._run is None:
            raise NetworkError("the network is not running (use `async with net.running():`)")
        return self._run

    # ---------------------------------------------------------------- validation

    def _gossip_validator(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Gossipsub topic validator (sync): False drops the message and lowers the
        forwarder's score. Our own messages were validated by publish_update."""
        run = self._run
        if run is not None and msg.from_id == run.my_id.to_bytes():
            return True
        self._counters.inc("announce_received")
        try:
            self._validator.check_bytes(msg.data)
        except ValidationError as exc:
            log.info("dropped announcement from %s: %s", forwarder, exc)
            return False
        self._counters.inc("announce_valid")
        return True

    def set_allowed_senders(self, addresses: Iterable[str] | None) -> None:
        self._validator.set_allowed_senders(None if addresses is None else set(addresses))

    def set_round_window(self, lo: int, hi: int) -> None:
        self._validator.set_round_window(lo, hi)

    def _first_sighting(self, ann: UpdateAnnouncement) -> bool:
        """True once per (sender, signed digest); later copies are replays."""
        key = bytes.fromhex(ann.sender[2:]) + eip712_digest(ann)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > 100_000:
            self._seen.popitem(last=False)
        return True

    # ------------------------------------------------------------------ publish

    async def publish_update(self, ann: UpdateAnnouncement, payload: bytes) -> None:
        run = self._require()
        if len(payload) != ann.payload_size:
            raise ValidationError("payload_mismatch", f"payload has {len(payload)} bytes, "
                                  f"announcement says {ann.payload_size}")
        digest = hashlib.sha256(payload).digest()
        if digest != ann.payload_hash:
            raise ValidationError("payload_mismatch", "sha256 of payload differs from "
                                  "announcement's payload_hash")
        self._validator.verify(ann)
        self._first_sighting(ann)
        self._store.put_verified(digest, bytes(payload))
        await run.pubsub.publish(self.topic, ann.encode())
        self._counters.inc("published")

    def provide(self, data: bytes) -> bytes:
        return self._store.put(bytes(data))

    # ------------------------------------------------------------------ receive

    async def _read_announcements(self, run: _Running, subscription: Any) -> None:
        async for msg in subscription:
            if msg.from_id == run.my_id.to_bytes():
                continue
            # Gossipsub delivers only messages our validator accepted.
            ann = UpdateAnnouncement.decode(msg.data)
            if not self._first_sighting(ann):
                self._counters.inc("drop_duplicate")
                continue
            if self._pending_fetches >= self.config.max_pending_fetches:
                self._counters.inc("drop_fetch_backlog")
                continue
            self._pending_fetches += 1
            run.nursery.start_soon(self._fetch_and_deliver, ann, ID(msg.from_id))

    async def _fetch_and_deliver(self, ann: UpdateAnnouncement, announcer: ID) -> None:
        try:
            payload = await self.fetch(ann.payload_hash, size=ann.payload_size,
                                       providers=[announcer.to_base58()])
        except FetchError as exc:
            self._counters.inc("update_fetch_failed")
            log.warning("update of %s for round %d lost: %s", ann.sender, ann.round, exc)
            return
        finally:
            self._pending_fetches -= 1
        try:
            await self._updates_send.send((ann, payload))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return  # stopping, or nobody iterates updates() any more
        self._counters.inc("updates_delivered")

    def updates(self) -> AsyncIterator[tuple[UpdateAnnouncement, bytes]]:
        return self._updates_recv.__aiter__()

    # ------------------------------------------------------------------ fetch

    async def fetch(self, payload_hash: bytes, *, size: int | None,
                    providers: list[str] | None = None) -> bytes:
        run = self._require()
        cap = self.config.max_payload_bytes
        if size is not None and not 0 <= size <= cap:
            raise FetchError(f"size {size} is not within 0..max_payload_bytes ({cap})")
        lock = self._fetch_locks.setdefault(payload_hash, trio.Lock())
        try:
            async with lock:  # one fetch per hash: others wait and then find it stored
                data = self._store.get(payload_hash)
                if data is not None:
                    if size is not None and len(data) != size:
                        raise FetchError(f"payload {payload_hash.hex()} has {len(data)} bytes, "
                                         f"not {size}")
                    return data
                async with self._fetch_limiter:
                    data = await self._fetch_from_any(run, payload_hash, size, providers or [])
                self._store.put_verified(payload_hash, data)
                return data
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._fetch_locks.pop(payload_hash, None)

    async def _fetch_from_any(self, run: _Running, digest: bytes, size: int | None,
                              hints: list[str]) -> bytes:
        order: list[ID] = []
        for hint in hints:
            try:
                peer = ID.from_base58(hint)
            except ValueError as exc:
                raise FetchError(f"provider {hint!r} is not a peer id") from exc
            if peer != run.my_id and peer not in order:
                order.append(peer)
        others = [p for p in run.host.get_connected_peers() if p not in order and p != run.my_id]
        self._rng.shuffle(others)
        order += others
        reasons: list[str] = []
        bad: set[ID] = set()  # sent wrong bytes: never asked again in this fetch
        for attempt in range(self.config.fetch_attempts):
            if attempt:
                # Nobody had it yet (e.g. the announcer is not connected to us and our
                # neighbours are still fetching it): wait, then ask everyone again.
                await trio.sleep(self.config.fetch_retry_delay * 2 ** (attempt - 1))
                order += [p for p in run.host.get_connected_peers()
                          if p not in order and p != run.my_id]
            order = [p for p in order if p not in bad]
            data = await self._try_providers(run, order, digest, size, reasons, bad)
            if data is not None:
                return data
        self._counters.inc("fetch_failed")
        raise fetch_failed(digest, reasons)

    async def _try_providers(self, run: _Running, order: list[ID], digest: bytes,
                             size: int | None, reasons: list[str], bad: set[ID]) -> bytes | None:
        for peer in order:
            if peer in bad:
                continue
            try:
                data = await fetch_from_peer(run.host, peer, digest, size=size,
                                             limits=self._fetch_limits, counters=self._counters)
            except ProviderError as exc:
                self._counters.inc(f"fetch_{exc.reason}")
                reasons.append(str(exc))
                if exc.reason in ("size_mismatch", "oversize", "hash_mismatch"):
                    bad.add(peer)
                continue
            self._counters.inc("fetch_ok")
            return data
        return None

    # ------------------------------------------------------------------ peers

    async def connect(self, multiaddr: str) -> None:
        await self._dial(self._require(), multiaddr)

    async def _dial(self, run: _Running, multiaddr: str) -> None:
        info = parse_peer_multiaddr(multiaddr)
        try:
            with trio.fail_after(self.config.connect_timeout):
                await run.host.connect(info)
        except (trio.TooSlowError, *STREAM_ERRORS) as exc:
            raise NetworkError(f"cannot connect to {multiaddr}: {type(exc).__name__}: {exc}") from exc

    async def _keep_connected(self, run: _Running, addr: str) -> None:
        """Dial a bootstrap peer, and re-dial with exponential backoff (plus jitter)
        whenever we are not connected to it."""
        info = parse_peer_multiaddr(addr)
        if info.peer_id == run.my_id:
            return
        delay = self.config.reconnect_min_delay
        while True:
            if info.peer_id in run.host.get_connected_peers():
                delay = self.config.reconnect_min_delay
                await trio.sleep(self.config.reconnect_min_delay)  # cheap liveness poll
                continue
            try:
                await self._dial(run, addr)
                self._counters.inc("bootstrap_connected")
                delay = self.config.reconnect_min_delay
            except NetworkError as exc:
                self._counters.inc("bootstrap_dial_failed")
                log.info("bootstrap %s unreachable (%s); retry in %.1f s", addr, exc, delay)
                await trio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, self.config.reconnect_max_delay)

    def connected_peers(self) -> list[str]:
        run = self._run
        return [] if run is None else [p.to_base58() for p in run.host.get_connected_peers()]

    def topic_peers(self) -> list[str]:
        """Peers known to be subscribed to our announcement topic."""
        run = self._run
        if run is None:
            return []
        return [p.to_base58() for p in run.pubsub.peer_topics.get(self.topic, set())]

    def mesh_peers(self) -> list[str]:
        """Peers in our gossipsub mesh for the announcement topic."""
        run = self._run
        if run is None:
            return []
        return [p.to_base58() for p in run.gossipsub.mesh.get(self.topic, set())]

    def peer_id(self) -> str:
        return self._require().my_id.to_base58()

    def listen_multiaddrs(self) -> list[str]:
        run = self._run
        if run is None:
            return []
        out = []
        for addr in run.host.get_addrs():
            text = str(addr)
            if "/p2p/" not in text:
                text += f"/p2p/{run.my_id.to_base58()}"
            out.append(text)
        return out

    def counters(self) -> dict[str, int]:
        return self._counters.snapshot()

    def is_graylisted(self, peer_id: str) -> bool:
        """Whether gossipsub's score for ``peer_id`` is below the graylist threshold."""
        run = self._require()
        return run.gossipsub.scorer.is_graylisted(ID.from_base58(peer_id), [self.topic])


@asynccontextmanager
async def open_network(config: NetworkConfig) -> AsyncIterator[Libp2pNetwork]:
    """``async with open_network(cfg) as net:`` = ``Libp2pNetwork(config=cfg).running()``."""
    async with Libp2pNetwork(config=config).running() as net:
        yield net
