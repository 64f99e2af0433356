"""Workarounds for the speed of py-libp2p 0.8.1 (TCP, noise, yamux, pubsub).

Every change fedchain makes to how py-libp2p works is in this module, so it can
be checked (and dropped) when py-libp2p is upgraded. None of them changes what
goes on the wire in a way another libp2p implementation could object to: noise
messages stay <= 65535 bytes, yamux frames stay within the receive window the
other side granted, and window updates follow go-yamux. Measured with
``bench/gossip.py`` (see BENCHMARKS.md): on loopback the exchange is CPU-bound
in Python, so every fix removes work per byte or per message:

1. **Buffered reads under noise** (:class:`BufferedNoiseTransport`). The noise
   reader asks the TCP socket for each message's 2-byte length and then for its
   body: two ``recv`` calls (each a trio checkpoint, lock and syscall) per
   64 KiB. Reading the socket 256 KiB at a time into a buffer serves both from
   memory.
2. **Yamux frames of 1 MiB** (:func:`apply_workarounds`). py-libp2p's
   yamux cuts writes into frames of ``MAX_MESSAGE_SIZE`` = 64 KiB (a module
   constant, no option), and each frame costs a pass through yamux's locks, a
   wake-up of the reader and a WINDOW_UPDATE back. Worse, a 64 KiB frame plus
   its 12-byte header is 17 bytes over noise's 65519-byte plaintext limit, so
   every frame went out as two noise messages. 1 MiB frames (exactly 16 full
   noise messages) cost about half the CPU per byte. The receiving side
   of py-libp2p accepts frames up to 16 MiB, and a frame never exceeds the
   sender's window, so peers without this change still read them.
3. **Window updates after half a window, not after every read**
   (:func:`_credit_consumed_bytes`). py-libp2p's yamux sends a WINDOW_UPDATE
   frame after *every* read of a stream, however small, and multistream-select
   and pubsub read length prefixes one byte at a time: each gossip RPC, stream
   negotiation and payload header cost several extra frames, each encrypted,
   written with a syscall and processed by the other side's muxer. We credit
   the consumed bytes once they reach half the receive window, as go-yamux
   does; a reader that drains its buffer always passes that mark before the
   sender's window can run out, so no stream stalls.
4. **A peer's signed record checked once, not with every RPC**
   (:func:`_consume_signed_record_once`). py-libp2p's pubsub attaches the
   sender's signed peer record to every RPC and verifies it (an Ed25519
   signature and a peerstore update) on receipt, twice for control RPCs
   (pubsub and gossipsub each check it). The record only changes when the
   sender's addresses do, so a record byte-identical to the one last accepted
   from the same peer is accepted without checking it again (it is re-checked
   every 10 minutes, which also refreshes its 2-hour peerstore TTL).
5. **A receive window granted up front** (:func:`grant_receive_window`). A new
   yamux stream may carry 256 KiB before the receiver sends a WINDOW_UPDATE;
   py-libp2p then grows the window only when updates arrive within 4 RTTs,
   and a writer that finds its window empty polls it every 10 ms. The fetcher
   knows how much it will accept (the payload size, at most 16 MiB, the
   largest window py-libp2p allows) and grants it when it opens the stream, so
   the provider never waits for window.
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import version

from multiaddr import Multiaddr
from libp2p.abc import IHost, INetStream, IRawConnection, ISecureConn
from libp2p.connection_types import ConnectionType
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub as _gossipsub
from libp2p.pubsub import pubsub as _pubsub
from libp2p.pubsub import utils as _pubsub_utils
from libp2p.pubsub.pb.rpc_pb2 import RPC
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH as NOISE_MAX_PLAINTEXT
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux import yamux as _yamux

__all__ = [
    "YAMUX_FRAME_BYTES",
    "YAMUX_FRAME_PAYLOAD_BYTES",
    "RECV_BUFFER_BYTES",
    "MAX_WINDOW_BYTES",
    "BufferedRawConnection",
    "BufferedNoiseTransport",
    "apply_workarounds",
    "workarounds_active",
    "grant_receive_window",
]

log = logging.getLogger(__name__)

_WRITTEN_FOR = "0.8.1"
_LIBP2P_VERSION = version("libp2p")
_active = False

YAMUX_FRAME_BYTES = 16 * NOISE_MAX_PLAINTEXT
"""Largest yamux frame we send, header included (~1 MiB): exactly 16 full noise
messages. See the module docstring, item 2."""

YAMUX_FRAME_PAYLOAD_BYTES = YAMUX_FRAME_BYTES - _yamux.HEADER_SIZE
"""Stream bytes in one full frame: a write of this size is one frame."""

RECV_BUFFER_BYTES = 256 * 1024
"""How much one ``recv`` on the TCP socket may return; see item 1."""

MAX_WINDOW_BYTES: int = _yamux.MAX_WINDOW_SIZE
"""The largest receive window py-libp2p's yamux accepts (16 MiB)."""


class BufferedRawConnection(IRawConnection):
    """A raw connection whose reads are served from a buffer filled 256 KiB at a time.

    Used by exactly one reader (the noise session reads sequentially), so it
    needs no lock. ``read`` returns at most ``n`` bytes, like the socket.
    """

    def __init__(self, inner: IRawConnection) -> None:
        self._inner = inner
        self.is_initiator = inner.is_initiator
        self._buf = bytearray()

    async def read(self, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        buf = self._buf
        if not buf:
            chunk = await self._inner.read(RECV_BUFFER_BYTES)
            if n is None or len(chunk) <= n:
                return chunk  # also b"" at EOF, as from the socket
            buf += chunk
        if n is None or n >= len(buf):
            out = bytes(buf)
            buf.clear()
            return out
        out = bytes(buf[:n])
        del buf[:n]  # O(1): bytearray drops a prefix without moving the rest
        return out

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    def get_remote_address(self) -> tuple[str, int] | None:
        return self._inner.get_remote_address()

    def get_transport_addresses(self) -> list[Multiaddr]:
        return self._inner.get_transport_addresses()

    def get_connection_type(self) -> ConnectionType:
        return self._inner.get_connection_type()


class BufferedNoiseTransport(NoiseTransport):
    """py-libp2p's noise transport, reading the TCP socket through a buffer.

    The connection is wrapped before the handshake: everything after
    multistream-select's choice of ``/noise`` is read by noise alone.
    """

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        return await super().secure_inbound(BufferedRawConnection(conn))

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        return await super().secure_outbound(BufferedRawConnection(conn), peer_id)


async def _credit_consumed_bytes(self: _yamux.YamuxStream, *, bytes_read: int = 0) -> None:
    """Replaces ``YamuxStream._auto_tune_and_send_window_update`` (item 3): one
    WINDOW_UPDATE per half window of bytes read, not one per read."""
    increment = 0
    async with self.window_lock:
        self._pending_recv_release += bytes_read
        if self._pending_recv_release >= self.target_recv_window // 2:
            increment = self._pending_recv_release
            self._pending_recv_release = 0
            self.recv_window += increment
    if increment:
        await self.send_window_update(increment, skip_lock=True)


# (our host, peer) -> (record bytes last accepted from the peer, monotonic time checked)
_checked_records: dict[tuple[ID, ID], tuple[bytes, float]] = {}
_RECORD_RECHECK_SECONDS = 600.0
_MAX_CHECKED_RECORDS = 10_000


def _consume_signed_record_once(msg: RPC, host: IHost, peer_id: ID) -> bool:
    """Replaces pubsub's ``maybe_consume_signed_record`` (item 4)."""
    if not msg.HasField("senderRecord"):
        return True
    record = msg.senderRecord
    now = time.monotonic()
    key = (host.get_id(), peer_id)  # each host keeps its own peerstore
    seen = _checked_records.get(key)
    if seen is not None and seen[0] == record and now - seen[1] < _RECORD_RECHECK_SECONDS:
        return True
    ok = _pubsub_utils.maybe_consume_signed_record(msg, host, peer_id)
    if ok:
        if len(_checked_records) >= _MAX_CHECKED_RECORDS:
            _checked_records.clear()
        _checked_records[key] = (record, now)
    return ok


def apply_workarounds() -> None:
    """Install items 2, 3 and 4 of the module docstring in py-libp2p.

    Process-wide (they change yamux's module constant, one method of
    ``YamuxStream`` and the record check pubsub and gossipsub call),
    idempotent, and only for the py-libp2p version they were
    written and measured against: another version is left as it is, and
    :func:`workarounds_active` says so.
    """
    global _active
    if _LIBP2P_VERSION != _WRITTEN_FOR:
        log.warning("py-libp2p %s, not %s: gossip.tuning's workarounds are not applied",
                    _LIBP2P_VERSION, _WRITTEN_FOR)
        return
    _yamux.MAX_MESSAGE_SIZE = YAMUX_FRAME_BYTES
    setattr(_yamux.YamuxStream, "_auto_tune_and_send_window_update", _credit_consumed_bytes)
    _pubsub.maybe_consume_signed_record = _consume_signed_record_once
    _gossipsub.maybe_consume_signed_record = _consume_signed_record_once
    _active = True


def workarounds_active() -> bool:
    """Whether :func:`apply_workarounds` changed py-libp2p in this process."""
    return _active


async def grant_receive_window(stream: INetStream, nbytes: int) -> None:
    """Let the remote side of ``stream`` send ``nbytes`` (at most 16 MiB) without
    waiting for window updates (item 5). No-op on a muxer other than py-libp2p
    0.8.1's yamux, whose window fields it sets."""
    muxed = getattr(stream, "muxed_stream", None)
    if not _active or not isinstance(muxed, _yamux.YamuxStream):
        return
    nbytes = min(nbytes, MAX_WINDOW_BYTES)
    async with muxed.window_lock:
        increment = nbytes - muxed.recv_window
        if increment > 0:
            muxed.recv_window += increment
            muxed.target_recv_window = max(muxed.target_recv_window, nbytes)
    if increment > 0:
        await muxed.send_window_update(increment)
