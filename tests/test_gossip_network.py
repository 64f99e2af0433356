"""Real libp2p hosts on loopback: exchange, validation under attack, payload attacks,
bootstrap reconnects, identity persistence, clean shutdown."""

from __future__ import annotations

import contextlib
import hashlib
import logging

import pytest
import trio

from libp2p.peer.id import ID

from gossip.errors import FetchError, NetworkError
from gossip.host import load_or_create_identity
from gossip.network import Libp2pNetwork
from gossip.payload import PAYLOAD_PROTOCOL
from gossip.wire import UpdateAnnouncement
from tests.gossip_helpers import (
    address,
    config,
    connect_all,
    payload,
    signed,
    start_networks,
    wait_until,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _no_shutdown_errors(caplog: pytest.LogCaptureFixture) -> None:
    """No shutdown race logged, no error of ours. (libp2p logs ERROR for routine events
    such as a refused dial or a peer hanging up, so its own errors are not counted.)"""
    bad = [r.getMessage() for r in caplog.records
           if "Nursery is closed" in r.getMessage() or "Nursery is closed" in str(r.exc_info)
           or (r.levelno >= logging.ERROR and r.name.startswith("gossip"))]
    assert not bad, bad


async def _collect(net: Libp2pNetwork, n: int, timeout: float) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    with trio.fail_after(timeout):
        async for ann, data in net.updates():
            got[ann.sender] = data
            if len(got) == n:
                break
    return got


async def test_two_hosts_exchange_updates_and_stop_cleanly(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    async with contextlib.AsyncExitStack() as stack:
        a, b = await start_networks(stack, tmp_path, 2)
        assert a.listen_multiaddrs()[0].startswith("/ip4/127.0.0.1/tcp/")
        assert f"/p2p/{a.peer_id()}" in a.listen_multiaddrs()[0]
        await connect_all([a, b])
        assert b.peer_id() in a.connected_peers()
        pa, pb = payload(1, 1 << 20), payload(2, 300_000)
        await a.publish_update(signed(0, pa), pa)
        await b.publish_update(signed(1, pb), pb)
        assert await _collect(b, 1, 10) == {address(0): pa}
        assert await _collect(a, 1, 10) == {address(1): pb}
        for net, size in ((a, len(pb)), (b, len(pa))):
            c = net.counters()
            assert c["bytes_fetched"] == size  # exactly one copy received
            assert c["fetch_ok"] == 1 and c["announce_valid"] == 1
            assert sum(v for k, v in c.items() if k.startswith("drop_")) == 0
        # provide() serves any blob by hash; fetch() finds it on a connected peer
        model = payload(3, 50_000)
        digest = a.provide(model)
        assert await b.fetch(digest, size=len(model)) == model
        with pytest.raises(FetchError, match="no provider"):
            await b.fetch(hashlib.sha256(b"absent").digest(), size=6)
    _no_shutdown_errors(caplog)
    with pytest.raises(NetworkError, match="not running"):
        await a.fetch(digest, size=len(model))


async def test_identity_is_persisted_and_bad_config_refused(tmp_path) -> None:
    async with Libp2pNetwork(config=config(tmp_path, "x")).running() as net:
        first = net.peer_id()
    async with Libp2pNetwork(config=config(tmp_path, "x")).running() as net:
        assert net.peer_id() == first
    assert (tmp_path / "x" / "p2p_identity.key").stat().st_mode & 0o077 == 0
    with pytest.raises(NetworkError, match="not plain TCP"):
        async with Libp2pNetwork(config=config(tmp_path, "y", listen_addrs=["/ip4/127.0.0.1/udp/0/quic-v1"])).running():
            pass
    with pytest.raises(NetworkError, match="bootstrap"):
        async with Libp2pNetwork(config=config(tmp_path, "b", bootstrap=["/ip4/1.2.3.4/tcp/1"])).running():
            pass
    net = Libp2pNetwork(config=config(tmp_path, "z"))
    with pytest.raises(NetworkError, match="not running"):
        await net.connect("/ip4/127.0.0.1/tcp/1/p2p/" + first)


def _bad_announcements() -> list[tuple[str, bytes]]:
    good = signed(1, b"p", round=1)
    fields = {f: getattr(good, f) for f in good.__slots__}
    return [
        ("malformed", good.encode()[:-9]),                               # truncated
        ("malformed", b"\x81\xa3sig\xc6\xff\xff\xff\xf0" + b"\0" * 20),   # length: ~4 GiB
        ("malformed", good.encode().replace(b"\xa5round\x01", b"\xa5round\xc3")),  # bool
        ("wrong_chain", signed(1, b"p", chain_id=5).encode()),
        ("round_window", signed(1, b"p", round=7).encode()),
        ("bad_signature", UpdateAnnouncement(**{**fields, "round": 2}).encode()),  # replayed
        ("bad_signature", UpdateAnnouncement(**{**fields, "signature": signed(2, b"p").signature}).encode()),
        ("sender_not_allowed", signed(2, b"p").encode()),
        ("oversize", b"\x00" * 2000),
    ]


async def _publish_raw(net: Libp2pNetwork, data: bytes) -> None:
    """What a malicious peer does: skip our own validation and publish bytes as they are."""
    run = net._require()
    await run.pubsub.publish(net.topic, data)


async def test_bad_announcements_are_dropped_and_counted_while_honest_ones_arrive(tmp_path) -> None:
    bad = _bad_announcements()
    async with contextlib.AsyncExitStack() as stack:
        nets = await start_networks(stack, tmp_path, 5)
        receiver, honest, attackers = nets[0], nets[1], nets[2:]
        for net in nets:
            net.set_allowed_senders({address(0), address(1)})
            net.set_round_window(1, 2)
        await connect_all(nets)
        # Each attacker sends at most 3 bad messages: below the graylist (5 messages),
        # so every one reaches the validator and is counted.
        for k, (_, data) in enumerate(bad):
            await _publish_raw(attackers[k % len(attackers)], data)
        data = payload(7, 200_000)
        await honest.publish_update(signed(1, data), data)
        assert await _collect(receiver, 1, 10) == {address(1): data}
        expected: dict[str, int] = {}
        for reason, _ in bad:
            expected[f"drop_{reason}"] = expected.get(f"drop_{reason}", 0) + 1
        await wait_until(lambda: all(receiver.counters()[k] == v for k, v in expected.items()),
                         10, f"drop counters {expected}, got {receiver.counters()}")
        counts = receiver.counters()
        assert {k: v for k, v in counts.items() if k.startswith("drop_") and v} == expected
        assert counts["fetch_ok"] == 1 and counts["announce_valid"] == 1


async def test_a_peer_sending_invalid_messages_is_graylisted(tmp_path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        receiver, honest, attacker = await start_networks(stack, tmp_path, 3)
        for net in (receiver, honest, attacker):
            net.set_allowed_senders({address(0), address(1)})
        await connect_all([receiver, honest, attacker])
        for i in range(10):
            await _publish_raw(attacker, signed(1, b"x", chain_id=9, n_samples=i).encode())
        await wait_until(lambda: receiver.is_graylisted(attacker.peer_id()), 10, "graylisting")
        assert not receiver.is_graylisted(honest.peer_id())
        dropped = receiver.counters()["drop_wrong_chain"]
        assert 5 <= dropped < 10  # once graylisted, its messages are not even validated
        # now even a valid announcement from the graylisted peer is ignored; honest ones arrive
        pa, ph = payload(1, 1000), payload(2, 1000)
        await attacker.publish_update(signed(0, pa), pa)
        await honest.publish_update(signed(1, ph), ph)
        assert await _collect(receiver, 1, 10) == {address(1): ph}


_CAP = 1 << 20  # max_payload_bytes of the hosts in the bad-provider tests


def _evil_handler(mode: str, data: bytes):
    async def handler(stream) -> None:
        await stream.read(33)
        header = bytes([0]) + len(data).to_bytes(8, "big")
        if mode == "wrong_bytes":
            await stream.write(header + bytes(len(data)))
        elif mode == "too_long":
            await stream.write(header + data + b"extra bytes past the announced size")
        elif mode == "size_header":
            await stream.write(bytes([0]) + (len(data) + 1).to_bytes(8, "big") + data + b"!")
        elif mode == "over_cap":  # a size above max_payload_bytes, then bytes that match it
            await stream.write(bytes([0]) + (_CAP + 1).to_bytes(8, "big") + data)
        elif mode == "disconnect":
            await stream.write(header + data[: len(data) // 2])
            await stream.reset()
            return
        elif mode == "stall":
            await stream.write(header + data[: len(data) // 2])
            await trio.sleep_forever()  # a provider that stops sending, connection open
        await stream.close()
    return handler


@pytest.mark.parametrize("mode, counter, size_known", [
    ("wrong_bytes", "fetch_hash_mismatch", True),
    ("wrong_bytes", "fetch_hash_mismatch", False),
    ("too_long", "fetch_oversize", True),
    ("size_header", "fetch_size_mismatch", True),
    ("over_cap", "fetch_oversize", False),
    ("disconnect", "fetch_stream_error", True),
    ("stall", "fetch_timeout", True),
])
async def test_fetch_survives_a_bad_provider(tmp_path, mode, counter, size_known, caplog) -> None:
    caplog.set_level(logging.WARNING)
    async with contextlib.AsyncExitStack() as stack:
        fetcher, evil, honest = await start_networks(stack, tmp_path, 3, max_payload_bytes=_CAP,
                                                     fetch_timeout_base=1.0)
        await connect_all([fetcher, evil, honest])
        data = payload(5, 400_000)
        digest = honest.provide(data)
        evil._require().host.set_stream_handler(PAYLOAD_PROTOCOL, _evil_handler(mode, data))
        with trio.fail_after(15):
            got = await fetcher.fetch(digest, size=len(data) if size_known else None,
                                      providers=[evil.peer_id()])
        assert got == data
        c = fetcher.counters()
        assert c[counter] == 1 and c["fetch_ok"] == 1
        assert c["bytes_fetched"] == len(data)
        if mode in ("size_header", "over_cap"):  # refused on the header: no body byte read
            assert c["bytes_received"] == len(data)
    _no_shutdown_errors(caplog)


async def test_fetch_by_hash_only_from_a_peer_that_has_it(tmp_path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a, b, c = await start_networks(stack, tmp_path, 3)
        await connect_all([a, b, c])
        model = payload(6, 3 << 20)  # several yamux frames and windows
        digest = c.provide(model)
        with trio.fail_after(15):
            assert await a.fetch(digest, size=None) == model
            assert await a.fetch(digest, size=None) == model  # now from its own store
        counts = a.counters()
        assert counts["fetch_ok"] == 1 and counts["bytes_fetched"] == len(model)
        assert counts["bytes_received"] == len(model)
        with pytest.raises(FetchError, match="no provider"):
            await b.fetch(hashlib.sha256(b"nobody has this").digest(), size=None)
        with pytest.raises(FetchError, match="max_payload_bytes"):
            await b.fetch(digest, size=(256 << 20) + 1)


async def test_announced_payload_that_no_one_serves_correctly_is_not_delivered(tmp_path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        receiver, evil, honest = await start_networks(
            stack, tmp_path, 3, fetch_attempts=2, fetch_retry_delay=0.1)
        await connect_all([receiver, evil, honest])
        promised = payload(8, 100_000)
        evil._require().host.set_stream_handler(
            PAYLOAD_PROTOCOL, _evil_handler("wrong_bytes", promised))
        await evil.publish_update(signed(0, promised), promised)
        good = payload(9, 100_000)
        await honest.publish_update(signed(1, good), good)
        assert await _collect(receiver, 1, 10) == {address(1): good}
        await wait_until(lambda: receiver.counters()["update_fetch_failed"] == 1, 10,
                         "the bad update to be given up")
        assert receiver.counters()["fetch_hash_mismatch"] == 1


async def test_bootstrap_dials_and_reconnects_with_backoff(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    async with contextlib.AsyncExitStack() as stack:
        (seed,) = await start_networks(stack, tmp_path, 1, prefix="seed")
        dead_id = ID.from_pubkey(load_or_create_identity(tmp_path / "dead").public_key)
        dead = f"/ip4/127.0.0.1/tcp/9/p2p/{dead_id.to_base58()}"
        joiner = await stack.enter_async_context(Libp2pNetwork(config=config(
            tmp_path, "joiner", bootstrap=[seed.listen_multiaddrs()[0], dead],
            reconnect_min_delay=0.1, connect_timeout=2)).running())
        await wait_until(lambda: seed.peer_id() in joiner.connected_peers(), 10, "bootstrap dial")
        await seed._require().host.disconnect(joiner._require().my_id)
        await wait_until(lambda: joiner.counters()["bootstrap_connected"] >= 2, 10, "reconnect")
        assert seed.peer_id() in joiner.connected_peers()
        await wait_until(lambda: joiner.counters()["bootstrap_dial_failed"] >= 2, 10,
                         "retries of the dead bootstrap address")
    _no_shutdown_errors(caplog)


async def test_stop_during_a_transfer_does_not_hang(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    with trio.fail_after(20):
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start_networks(stack, tmp_path, 2)
            await connect_all([a, b])
            data = payload(4, 8 << 20)
            digest = a.provide(data)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: b.fetch(digest, size=len(data)))
                await wait_until(lambda: a.counters()["serve_requests"] == 1, 10, "transfer start")
                nursery.cancel_scope.cancel()
    _no_shutdown_errors(caplog)
