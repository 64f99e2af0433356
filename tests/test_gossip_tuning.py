"""The py-libp2p workarounds of gossip.tuning: each keeps the data correct and
removes the work it claims to remove."""

from __future__ import annotations

import contextlib
import random

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerstore import create_signed_peer_record
from libp2p.pubsub.pb.rpc_pb2 import RPC
from libp2p.stream_muxer.yamux.yamux import YamuxStream

import gossip.tuning as tuning
from gossip.host import build_host, load_or_create_identity
from tests.gossip_helpers import connect_all, start_networks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ECHO = TProtocol("/fedchain-test/echo/1")


class _ChunkedConnection:
    """An inner connection that returns fixed pieces, then EOF (b"")."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.is_initiator = True
        self.asked: list[int | None] = []

    async def read(self, n: int | None = None) -> bytes:
        self.asked.append(n)
        return self.pieces.pop(0) if self.pieces else b""


async def test_buffered_connection_reads_like_a_socket() -> None:
    data = random.Random(1).randbytes(70_000)
    inner = _ChunkedConnection([data[:50_000], data[50_000:]])
    conn = tuning.BufferedRawConnection(inner)  # type: ignore[arg-type]
    got = [await conn.read(2), await conn.read(65_535), await conn.read(3), await conn.read(None)]
    assert [len(g) for g in got] == [2, 49_998, 3, 19_997]
    assert b"".join(got) == data
    assert inner.asked == [tuning.RECV_BUFFER_BYTES, tuning.RECV_BUFFER_BYTES]  # 2 recvs, not 4
    assert await conn.read(5) == b""  # EOF passes through
    assert await conn.read(0) == b""


async def _echo(stream) -> None:
    """Send back everything, then close."""
    with contextlib.suppress(Exception):
        while True:
            chunk = await stream.read(1 << 20)
            if not chunk:
                break
            await stream.write(chunk)
    await stream.close()


async def test_streams_larger_than_the_window_and_byte_reads(tmp_path, monkeypatch) -> None:
    updates: list[int] = []
    original = YamuxStream.send_window_update

    async def counting(self, increment, skip_lock=False):
        updates.append(increment)
        await original(self, increment, skip_lock)

    monkeypatch.setattr(YamuxStream, "send_window_update", counting)
    async with contextlib.AsyncExitStack() as stack:
        a, b = await start_networks(stack, tmp_path, 2)
        await connect_all([a, b])
        assert tuning.workarounds_active()  # py-libp2p 0.8.1 is pinned
        b._require().host.set_stream_handler(ECHO, _echo)
        host = a._require().host
        peer = b._require().my_id
        # 1. Three times more than the 256 KiB window, no window granted: the
        #    echo must not stall on window credit in either direction.
        data = random.Random(2).randbytes(3 << 20)
        stream = await host.new_stream(peer, [ECHO])
        back = bytearray()
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                async def send() -> None:
                    for off in range(0, len(data), 200_000):
                        await stream.write(data[off:off + 200_000])
                    await stream.close()
                nursery.start_soon(send)
                while len(back) < len(data):
                    back += await stream.read(1 << 20)
        assert bytes(back) == data
        # 2. A thousand one-byte reads (how pubsub and multistream read length
        #    prefixes) send no window update: far less than half a window.
        stream = await host.new_stream(peer, [ECHO])
        await stream.write(bytes(1000))
        updates.clear()
        with trio.fail_after(10):
            for _ in range(1000):
                assert await stream.read(1) == b"\0"
        assert updates == []
        await stream.close()


def test_a_signed_record_is_verified_once_per_peer_and_content(tmp_path, monkeypatch) -> None:
    host = build_host(load_or_create_identity(tmp_path / "me"), ["/ip4/127.0.0.1/tcp/0"])
    other = load_or_create_identity(tmp_path / "other")
    other_host = build_host(other, ["/ip4/127.0.0.1/tcp/0"])
    peer = other_host.get_id()
    checked: list[bytes] = []
    original = tuning._pubsub_utils.maybe_consume_signed_record

    def counting(msg, host_, peer_id):
        checked.append(msg.senderRecord)
        return original(msg, host_, peer_id)

    monkeypatch.setattr(tuning._pubsub_utils, "maybe_consume_signed_record", counting)
    monkeypatch.setattr(tuning, "_checked_records", {})

    def rpc_with(addr: str) -> RPC:
        import multiaddr
        env = create_signed_peer_record(peer, [multiaddr.Multiaddr(addr)], other.private_key)
        return RPC(senderRecord=env.marshal_envelope())

    first, moved = rpc_with("/ip4/127.0.0.1/tcp/4001"), rpc_with("/ip4/127.0.0.1/tcp/4002")
    assert all(tuning._consume_signed_record_once(first, host, peer) for _ in range(3))
    assert tuning._consume_signed_record_once(moved, host, peer)
    assert checked == [first.senderRecord, moved.senderRecord]
    # a record signed by someone else for this peer is refused, every time
    forged = RPC(senderRecord=create_signed_peer_record(
        peer, [], load_or_create_identity(tmp_path / "x").private_key).marshal_envelope())
    assert not tuning._consume_signed_record_once(forged, host, peer)
    assert not tuning._consume_signed_record_once(forged, host, peer)
    assert len(checked) == 4
    assert tuning._consume_signed_record_once(RPC(), host, peer)  # no record: nothing to check
