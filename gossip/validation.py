"""Validation of update announcements, shared by the libp2p and in-memory networks.

:class:`AnnouncementValidator` is pure (no I/O): it takes the raw bytes of a
gossip message and returns the decoded announcement or raises
:class:`~gossip.errors.ValidationError` whose ``reason`` is one of
:data:`DROP_REASONS`. Every drop increments ``drop_<reason>`` in the shared
:class:`Counters`, so an operator can see why messages were refused.

Checks run cheapest first: size, strict decode, chain id, contract, round window,
encoding, payload size, allowed sender, and last the EIP-712 signature
(~0.3 ms), which must recover exactly ``ann.sender``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from eth_utils import to_checksum_address

from gossip.errors import ValidationError, WireError
from gossip.wire import (
    KNOWN_ENCODINGS,
    MAX_ANNOUNCEMENT_BYTES,
    UpdateAnnouncement,
    recover_update_signer,
)

__all__ = ["DROP_REASONS", "COUNTER_NAMES", "Counters", "AnnouncementValidator", "RoundWindow"]

DROP_REASONS = (
    "oversize",            # gossip message larger than an announcement can be
    "malformed",           # not a strictly valid msgpack announcement (WireError)
    "wrong_chain",         # chain id of another chain
    "wrong_contract",      # another federation's contract
    "round_window",        # round outside the window the caller set
    "unknown_encoding",    # encoding byte not in KNOWN_ENCODINGS
    "payload_too_large",   # announced payload_size above max_payload_bytes
    "sender_not_allowed",  # sender outside the allowed set (registered peers)
    "bad_signature",       # signature malformed or not by ann.sender
    "duplicate",           # same signed announcement seen before (replay)
)


COUNTER_NAMES = (
    *(f"drop_{reason}" for reason in DROP_REASONS),
    "drop_fetch_backlog",     # valid announcement, but too many fetches pending
    "announce_received", "announce_valid", "published",
    "updates_delivered", "update_fetch_failed",
    # one per provider attempt
    "fetch_ok", "fetch_not_found", "fetch_size_mismatch", "fetch_oversize",
    "fetch_hash_mismatch", "fetch_stream_error", "fetch_timeout",
    "fetch_failed",           # no provider delivered (after all retries)
    "bytes_fetched",          # payload bytes of successful fetches
    "bytes_received",         # payload bytes read from providers, complete or not
    "bytes_served",
    "serve_requests", "serve_ok", "serve_not_found", "serve_aborted", "serve_bad_request",
    "bootstrap_connected", "bootstrap_dial_failed",
)
"""Every counter the networks keep; ``counters()`` always holds all of them."""


class Counters:
    """Named monotonic counters (``counters()`` of the networks returns a copy)."""

    def __init__(self) -> None:
        self._c: Counter[str] = Counter()
        for name in COUNTER_NAMES:
            self._c[name] = 0

    def inc(self, name: str, n: int = 1) -> None:
        self._c[name] += n

    def get(self, name: str) -> int:
        return self._c[name]

    def snapshot(self) -> dict[str, int]:
        return dict(self._c)


@dataclass(frozen=True, slots=True)
class RoundWindow:
    """Rounds ``lo..hi`` inclusive are accepted."""

    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise ValueError(f"round window needs 0 <= lo <= hi, got lo={self.lo} hi={self.hi}")


class AnnouncementValidator:
    """Decides whether gossip bytes are a valid announcement of this federation."""

    def __init__(self, *, chain_id: int, contract: str, max_payload_bytes: int,
                 counters: Counters) -> None:
        self.chain_id = chain_id
        self.contract = to_checksum_address(contract)
        self.max_payload_bytes = max_payload_bytes
        self.counters = counters
        self.window = RoundWindow(0, 2**64 - 1)
        self.allowed: frozenset[str] | None = None  # None: any signer (until set)

    def set_round_window(self, lo: int, hi: int) -> None:
        self.window = RoundWindow(lo, hi)

    def set_allowed_senders(self, addresses: Iterable[str] | None) -> None:
        """Restrict senders to ``addresses`` (any case); None lifts the restriction."""
        self.allowed = (None if addresses is None
                        else frozenset(to_checksum_address(a) for a in addresses))

    def check_bytes(self, data: bytes) -> UpdateAnnouncement:
        """Decode and check ``data``; count and raise ValidationError on a drop."""
        try:
            if len(data) > MAX_ANNOUNCEMENT_BYTES:
                raise ValidationError("oversize", f"{len(data)} bytes > {MAX_ANNOUNCEMENT_BYTES}")
            try:
                ann = UpdateAnnouncement.decode(data)
            except WireError as exc:
                raise ValidationError("malformed", str(exc)) from exc
            self._check(ann)
        except ValidationError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            raise
        return ann

    def check(self, ann: UpdateAnnouncement) -> None:
        """Check a decoded announcement; count and raise ValidationError on a drop."""
        try:
            self._check(ann)
        except ValidationError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            raise

    def verify(self, ann: UpdateAnnouncement) -> None:
        """Check our own announcement before publishing: raise, but count nothing."""
        self._check(ann)

    def _check(self, ann: UpdateAnnouncement) -> None:
        if ann.chain_id != self.chain_id:
            raise ValidationError("wrong_chain", f"chain id {ann.chain_id}, want {self.chain_id}")
        if ann.contract != self.contract:
            raise ValidationError("wrong_contract", f"contract {ann.contract}, want {self.contract}")
        if not self.window.lo <= ann.round <= self.window.hi:
            raise ValidationError("round_window", f"round {ann.round} outside "
                                  f"[{self.window.lo}, {self.window.hi}]")
        if ann.encoding not in KNOWN_ENCODINGS:
            raise ValidationError("unknown_encoding", f"encoding {ann.encoding}")
        if ann.payload_size > self.max_payload_bytes:
            raise ValidationError("payload_too_large", f"payload_size {ann.payload_size} > "
                                  f"{self.max_payload_bytes}")
        if self.allowed is not None and ann.sender not in self.allowed:
            raise ValidationError("sender_not_allowed", f"sender {ann.sender}")
        signer = recover_update_signer(ann)
        if signer != ann.sender:
            raise ValidationError("bad_signature", f"signed by {signer}, claims {ann.sender}")
