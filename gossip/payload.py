"""Payload transfer over the libp2p stream protocol ``/fedchain/payload/1``.

Gossipsub carries only announcements; the bytes of a payload move over one
libp2p stream per (fetcher, provider) pair, which on this machine runs at
85-200 MB/s against 8-15 MB/s for gossipsub (see shared/PITFALLS.md and
:mod:`gossip.tuning`).

Protocol (one request per stream)::

    fetcher -> provider : version (1 byte, = 1) ‖ sha256 of the payload (32 bytes)
    provider -> fetcher : status (1 byte: 0 found, 1 not found)
                          [found] size (8 bytes, big-endian) ‖ size bytes; then EOF

The fetcher checks as it reads. When it knows the size (from the signed
announcement or the chain) a different size header is refused at once; when it
does not (``size=None``, only the hash is known) the header is accepted up to
``FetchLimits.max_bytes`` and refused above. Bytes past the size cut the stream
(it is reset, never buffered), and the running sha256 must equal the requested
hash at EOF. Time limits (:class:`FetchLimits`): the provider must answer with
its header within ``timeout_base`` (this includes waiting for a serving slot),
may not pause for longer than that between reads, and must finish the body
within ``timeout_base + size / min_rate``. Any failure moves on to the next
provider; each outcome has a counter.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

from gossip.errors import FetchError, GossipError
from gossip.tuning import YAMUX_FRAME_PAYLOAD_BYTES, grant_receive_window
from gossip.validation import Counters

__all__ = [
    "PAYLOAD_PROTOCOL",
    "BlobStore",
    "FetchLimits",
    "make_payload_handler",
    "fetch_from_peer",
    "ProviderError",
    "STREAM_ERRORS",
]

PAYLOAD_PROTOCOL = TProtocol("/fedchain/payload/1")
_VERSION = 1
_FOUND = 0
_NOT_FOUND = 1
_REQUEST_BYTES = 33
_HEADER_BYTES = 9  # status + size
_SERVE_CHUNK = YAMUX_FRAME_PAYLOAD_BYTES  # one write, one yamux frame (gossip.tuning)
# A read returns what yamux has buffered, up to this; fewer reads, fewer window updates.
_READ_CHUNK = 4 << 20

# Everything a dead, slow or misbehaving remote can make libp2p/trio raise on a stream.
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    BaseLibp2pError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


class ProviderError(GossipError):
    """One provider failed to deliver; ``reason`` is the counter suffix."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """How much one provider may send and how long it may take (see module docstring)."""

    max_bytes: int
    timeout_base: float
    min_rate: float

    def body_timeout(self, size: int) -> float:
        return self.timeout_base + size / self.min_rate


class BlobStore:
    """Payloads this peer can serve, by sha256; oldest evicted past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self._total = 0

    def put(self, data: bytes) -> bytes:
        """Store ``data`` and return its sha256."""
        digest = hashlib.sha256(data).digest()
        self.put_verified(digest, data)
        return digest

    def put_verified(self, digest: bytes, data: bytes) -> None:
        """Store ``data`` whose sha256 the caller has already checked to be ``digest``."""
        if digest in self._blobs:
            self._blobs.move_to_end(digest)
            return
        self._blobs[digest] = data
        self._total += len(data)
        while self._total > self.max_bytes and len(self._blobs) > 1:
            _, old = self._blobs.popitem(last=False)
            self._total -= len(old)

    def get(self, digest: bytes) -> bytes | None:
        return self._blobs.get(digest)

    def __contains__(self, digest: object) -> bool:
        return digest in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)


async def _read_exact(stream: INetStream, n: int) -> bytes:
    """Read exactly ``n`` bytes (streams may return less per read); EOF -> ProviderError."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = await stream.read(n - len(buf))
        except StreamEOF as exc:
            raise ProviderError("stream_error", f"EOF after {len(buf)} of {n} bytes") from exc
        if not chunk:
            raise ProviderError("stream_error", f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def make_payload_handler(store: BlobStore, counters: Counters, *, limiter: trio.CapacityLimiter,
                         request_timeout: float) -> Callable[[INetStream], Awaitable[None]]:
    """The provider side: answer one request per stream from ``store``."""

    async def handler(stream: INetStream) -> None:
        counters.inc("serve_requests")
        try:
            with trio.fail_after(request_timeout):
                request = await _read_exact(stream, _REQUEST_BYTES)
            if request[0] != _VERSION:
                counters.inc("serve_bad_request")
                await stream.reset()
                return
            data = store.get(request[1:])
            if data is None:
                counters.inc("serve_not_found")
                await stream.write(bytes([_NOT_FOUND]))
                await stream.close()
                return
            async with limiter:
                view = memoryview(data)
                first = _SERVE_CHUNK - _HEADER_BYTES
                await stream.write(bytes([_FOUND]) + len(data).to_bytes(8, "big") + view[:first])
                for off in range(first, len(data), _SERVE_CHUNK):
                    await stream.write(bytes(view[off:off + _SERVE_CHUNK]))
                await stream.close()
            counters.inc("bytes_served", len(data))
            counters.inc("serve_ok")
        except (ProviderError, trio.TooSlowError, *STREAM_ERRORS):
            # The fetcher went away or misbehaved; it is its problem, not ours.
            counters.inc("serve_aborted")
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await stream.reset()
                except STREAM_ERRORS:
                    pass

    return handler


async def fetch_from_peer(host: IHost, peer: ID, digest: bytes, *, size: int | None,
                          limits: FetchLimits, counters: Counters) -> bytes:
    """Fetch the payload ``digest`` from ``peer``: exactly ``size`` bytes, or, with
    ``size=None``, whatever size the provider announces up to ``limits.max_bytes``.

    Raises ProviderError (reason: not_found, size_mismatch, oversize, hash_mismatch,
    stream_error, timeout); the caller tries the next provider.
    """
    expected = limits.max_bytes if size is None else size
    try:
        with trio.fail_after(limits.timeout_base):
            stream = await host.new_stream(peer, [PAYLOAD_PROTOCOL])
    except trio.TooSlowError as exc:
        raise ProviderError("timeout", f"{peer}: no stream within {limits.timeout_base} s") from exc
    except STREAM_ERRORS as exc:
        raise ProviderError("stream_error", f"cannot open stream to {peer}: {exc}") from exc
    ok = False
    try:
        await grant_receive_window(stream, _HEADER_BYTES + expected)
        try:
            with trio.fail_after(limits.timeout_base):
                await stream.write(bytes([_VERSION]) + digest)
                status = (await _read_exact(stream, 1))[0]
                if status == _NOT_FOUND:
                    ok = True
                    raise ProviderError("not_found", f"{peer} does not have {digest.hex()}")
                if status != _FOUND:
                    raise ProviderError("stream_error", f"{peer} answered status {status}")
                claimed = int.from_bytes(await _read_exact(stream, 8), "big")
        except trio.TooSlowError as exc:
            raise ProviderError("timeout", f"{peer}: no answer within {limits.timeout_base} s "
                                "(busy or stalled)") from exc
        if size is None and claimed > limits.max_bytes:
            raise ProviderError("oversize", f"{peer} offers {claimed} bytes, more than the "
                                f"{limits.max_bytes} allowed")
        if size is not None and claimed != size:
            raise ProviderError("size_mismatch", f"{peer} offers {claimed} bytes, expected {size}")
        data = await _read_body(stream, peer, digest, claimed, limits, counters)
        ok = True
        counters.inc("bytes_fetched", claimed)
        return data
    except STREAM_ERRORS as exc:
        raise ProviderError("stream_error", f"{peer}: {type(exc).__name__}: {exc}") from exc
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                if ok:
                    await stream.close()
                else:
                    await stream.reset()
            except STREAM_ERRORS:
                pass


async def _read_body(stream: INetStream, peer: ID, digest: bytes, size: int,
                     limits: FetchLimits, counters: Counters) -> bytes:
    """Read exactly ``size`` bytes whose sha256 is ``digest``, hashing as they come."""
    chunks: list[bytes] = []
    hasher = hashlib.sha256()
    got = 0
    body_timeout = limits.body_timeout(size)
    try:
        with trio.fail_after(body_timeout):
            while True:
                try:
                    with trio.fail_after(limits.timeout_base):
                        # One byte more than we still need: anything past `size` is oversize.
                        chunk = await stream.read(min(_READ_CHUNK, size - got + 1))
                except StreamEOF:
                    break
                if not chunk:
                    break
                got += len(chunk)
                counters.inc("bytes_received", len(chunk))
                if got > size:
                    raise ProviderError("oversize", f"{peer} sent more than the {size} bytes "
                                        "announced")
                hasher.update(chunk)
                chunks.append(chunk)
    except trio.TooSlowError as exc:
        raise ProviderError("timeout", f"{peer}: {got} of {size} bytes after a pause of "
                            f"{limits.timeout_base} s or a total of {body_timeout:.0f} s") from exc
    if got != size:
        raise ProviderError("stream_error", f"{peer} closed after {got} of {size} bytes")
    if hasher.digest() != digest:
        raise ProviderError("hash_mismatch", f"{peer} sent bytes whose sha256 is not "
                            f"{digest.hex()}")
    return b"".join(chunks)


def fetch_failed(digest: bytes, reasons: list[str]) -> FetchError:
    """The error for a payload no provider delivered."""
    return FetchError(f"payload {digest.hex()}: no provider delivered it "
                      f"({'; '.join(reasons) or 'no providers connected'})")
