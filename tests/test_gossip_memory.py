"""The validator's drop reasons, and the in-memory Network that peer/ tests use."""

from __future__ import annotations

import hashlib

import pytest
import trio

from gossip import MemoryHub, Network
from gossip.errors import FetchError, NetworkError, ValidationError
from gossip.validation import AnnouncementValidator, Counters
from gossip.wire import UpdateAnnouncement
from tests.gossip_helpers import CHAIN_ID, CONTRACT, address, payload, signed, wait_until


def _validator() -> AnnouncementValidator:
    v = AnnouncementValidator(chain_id=CHAIN_ID, contract=CONTRACT, max_payload_bytes=1000,
                              counters=Counters())
    v.set_round_window(3, 4)
    v.set_allowed_senders({address(1), address(2)})
    return v


def _bad_inputs() -> list[tuple[str, bytes]]:
    good = signed(1, b"p", round=3)
    other_round = UpdateAnnouncement(**{**{f: getattr(good, f) for f in good.__slots__},
                                        "round": 4})
    forged = UpdateAnnouncement(**{**{f: getattr(good, f) for f in good.__slots__},
                                   "signature": signed(3, b"p", round=3).signature})
    return [
        ("malformed", good.encode()[:-7]),
        ("malformed", b"\xc6\x7f\xff\xff\xff" + b"\0" * 8),   # bin32 claiming 2 GiB
        ("oversize", b"\0" * 4096),
        ("wrong_chain", signed(1, b"p", round=3, chain_id=1).encode()),
        ("wrong_contract", signed(1, b"p", round=3, contract="0x" + "22" * 20).encode()),
        ("round_window", signed(1, b"p", round=9).encode()),
        ("unknown_encoding", signed(1, b"p", round=3, encoding=7).encode()),
        ("payload_too_large", signed(1, b"p", round=3, size=5000).encode()),
        ("sender_not_allowed", signed(3, b"p", round=3).encode()),
        ("bad_signature", forged.encode()),                  # allowed sender, other signer
        ("bad_signature", other_round.encode()),             # replayed into another round
    ]


@pytest.mark.parametrize("reason, data", _bad_inputs())
def test_validator_drops_with_the_right_counter(reason: str, data: bytes) -> None:
    v = _validator()
    with pytest.raises(ValidationError) as info:
        v.check_bytes(data)
    assert info.value.reason == reason
    counts = v.counters.snapshot()
    assert counts[f"drop_{reason}"] == 1
    assert sum(n for k, n in counts.items() if k.startswith("drop_")) == 1


def test_validator_accepts_honest_announcement_and_case_insensitive_allow_list() -> None:
    v = _validator()
    v.set_allowed_senders({address(2).lower()})
    ann = v.check_bytes(signed(2, b"p", round=4).encode())
    assert ann.sender == address(2)
    with pytest.raises(ValueError, match="lo"):
        v.set_round_window(5, 4)


async def test_memory_networks_exchange_updates_and_drop_bad_input() -> None:
    hub = MemoryHub()
    nets = [hub.network(chain_id=CHAIN_ID, contract=CONTRACT) for _ in range(3)]
    assert all(isinstance(n, Network) for n in nets)
    async with nets[0].running() as a, nets[1].running() as b, nets[2].running() as c:
        for n in (a, b, c):
            n.set_allowed_senders({address(0), address(1), address(2)})
            n.set_round_window(1, 1)
        assert sorted(a.connected_peers()) == sorted([b.listen_multiaddrs()[0].split("/")[-1],
                                                      c.listen_multiaddrs()[0].split("/")[-1]])
        hub.inject(b"\x93garbage")
        hub.inject(signed(5, b"zz").encode())  # sender outside the allowed set
        payloads = [payload(i, 1000 + i) for i in range(3)]
        for i, n in enumerate((a, b, c)):
            await n.publish_update(signed(i, payloads[i]), payloads[i])
        got: dict[str, bytes] = {}
        with trio.fail_after(5):
            async for ann, data in b.updates():
                got[ann.sender] = data
                if len(got) == 2:
                    break
        assert got == {address(0): payloads[0], address(2): payloads[2]}
        counts = b.counters()
        assert counts["drop_malformed"] == 1 and counts["drop_sender_not_allowed"] == 1
        # replay of an already delivered announcement: counted, not delivered again
        hub.inject(signed(0, payloads[0]).encode())
        assert b.counters()["drop_duplicate"] == 1
        # fetch by hash from whoever has it, and provide() for arbitrary blobs
        model = payload(99, 5000)
        digest = c.provide(model)
        assert await a.fetch(digest, size=len(model)) == model
        with pytest.raises(FetchError):
            await a.fetch(hashlib.sha256(b"nobody").digest(), size=6)
        with pytest.raises(ValidationError, match="payload_mismatch"):
            await a.publish_update(signed(0, b"abc"), b"abd")
    with pytest.raises(NetworkError, match="not running"):
        await a.publish_update(signed(0, b"abc"), b"abc")
    # updates() ends once the network stopped
    async for _ in b.updates():
        pass


async def test_memory_offline_peer_receives_nothing() -> None:
    hub = MemoryHub()
    a = hub.network(chain_id=CHAIN_ID, contract=CONTRACT)
    b = hub.network(chain_id=CHAIN_ID, contract=CONTRACT)
    async with a.running(), b.running():
        hub.set_offline(b)
        data = payload(1, 10)
        await a.publish_update(signed(1, data), data)
        await wait_until(lambda: a.counters()["published"] == 1, 2, "publish")
        assert b.counters()["announce_received"] == 0
        assert a.connected_peers() == []


async def test_memory_fetch_by_hash_only_and_a_copy_above_the_cap_is_refused() -> None:
    hub = MemoryHub()
    small = hub.network(chain_id=CHAIN_ID, contract=CONTRACT, max_payload_bytes=4000)
    big = hub.network(chain_id=CHAIN_ID, contract=CONTRACT)
    async with small.running() as a, big.running() as b:
        fits, too_big = payload(1, 4000), payload(2, 4001)
        digest_fits, digest_too_big = b.provide(fits), b.provide(too_big)
        assert await a.fetch(digest_fits, size=None) == fits
        assert a.counters()["fetch_ok"] == 1 and a.counters()["bytes_received"] == len(fits)
        with pytest.raises(FetchError, match="no connected peer delivered it"):
            await a.fetch(digest_too_big, size=None)
        counts = a.counters()
        assert counts["fetch_oversize"] == 1 and counts["bytes_received"] == len(fits)
        with pytest.raises(FetchError, match="max_payload_bytes"):
            await a.fetch(digest_too_big, size=len(too_big))
        assert await b.fetch(digest_too_big, size=None) == too_big  # own store
