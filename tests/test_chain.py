"""The chain client itself: construction, accounts and keystores, the embedded chain's rules,
error translation (reverts, RPC down), nonces under concurrent sends, events, time."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from web3 import Web3

from peer.accounts import (
    DEV_MNEMONIC,
    dev_accounts,
    list_keystores,
    load_keystore,
    new_keystore,
)
from peer.chain import (
    ChainClient,
    ChainError,
    ContractRevert,
    FederationParams,
    committee_indices,
    decode_multiaddrs,
    encode_multiaddrs,
)
from peer.devnet import free_port
from peer.errors import ConfigError, FedchainError

PARAMS = FederationParams(committee_size=2, quorum_bps=10_000, commit_window=100, vote_window=100, min_stake=10**15)


# ---------------------------------------------------------------- accounts


def test_dev_accounts_are_the_standard_test_mnemonic() -> None:
    accounts = dev_accounts(3)
    # the addresses hardhat, anvil and ganache print for "test test ... junk"
    assert [a.address for a in accounts] == [
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    ]
    assert dev_accounts(2, mnemonic=DEV_MNEMONIC) == accounts[:2]
    with pytest.raises(ConfigError, match="-1"):
        dev_accounts(-1)


def test_keystore_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    entry = new_keystore(directory, "correct horse", kdf="pbkdf2", iterations=2)
    assert stat.S_IMODE(os.stat(entry.path).st_mode) == 0o600
    assert entry.path.name.startswith("UTC--") and entry.path.name.endswith(entry.address[2:].lower())
    account = load_keystore(entry.path, "correct horse")
    assert account.address == entry.address
    imported = new_keystore(directory, "pw", private_key=dev_accounts(1)[0].key, kdf="pbkdf2", iterations=2)
    (directory / "notes.txt").write_text("not a keystore")
    assert [e.address for e in list_keystores(directory)] == [entry.address, imported.address]
    assert list_keystores(tmp_path / "absent") == []
    with pytest.raises(ConfigError, match="wrong passphrase"):
        load_keystore(entry.path, "wrong")
    with pytest.raises(ConfigError, match="does not exist"):
        load_keystore(tmp_path / "nope.json", "x")
    with pytest.raises(ConfigError, match="not a keystore"):
        load_keystore(directory / "notes.txt", "x")
    with pytest.raises(ConfigError, match="empty"):
        new_keystore(directory, "")


# ---------------------------------------------------------------- pure helpers


def test_committee_indices_rule() -> None:
    everyone = [True] * 5
    assert committee_indices(seed=7, n_peers=5, committee_size=2, active=everyone) == [2, 3]
    assert committee_indices(seed=9, n_peers=5, committee_size=3, active=everyone) == [0, 1, 4]  # wraps
    assert committee_indices(seed=9, n_peers=5, committee_size=5, active=everyone) == [0, 1, 2, 3, 4]
    # an inactive peer in the window is skipped, not replaced
    assert committee_indices(seed=9, n_peers=5, committee_size=3, active=[True, False, True, True, True]) == [0, 4]
    # indices beyond n_peers (registered after the round opened) never count
    assert committee_indices(seed=0, n_peers=2, committee_size=9, active=[True, True, True]) == [0, 1]
    assert committee_indices(seed=3, n_peers=0, committee_size=2, active=[]) == []
    with pytest.raises(ValueError, match="active flag"):
        committee_indices(seed=0, n_peers=3, committee_size=1, active=[True])


def test_multiaddrs_encoding() -> None:
    addrs = ["/ip4/127.0.0.1/tcp/4001/p2p/QmPeer", "/dns4/x.example/tcp/1"]
    assert encode_multiaddrs(addrs) == b"/ip4/127.0.0.1/tcp/4001/p2p/QmPeer\n/dns4/x.example/tcp/1"
    assert decode_multiaddrs(encode_multiaddrs(addrs)) == tuple(addrs)
    assert encode_multiaddrs("/ip4/1.2.3.4/tcp/1") == b"/ip4/1.2.3.4/tcp/1"
    assert encode_multiaddrs(b"raw") == b"raw" and decode_multiaddrs(b"") == ()
    with pytest.raises(ValueError, match="not a multiaddr"):
        encode_multiaddrs(["127.0.0.1:4001"])


# ---------------------------------------------------------------- the embedded chain


def test_embedded_chain_funds_dev_accounts(embedded_chain: ChainClient) -> None:
    assert embedded_chain.is_devnet and embedded_chain.url == "embedded"
    assert [a.address for a in embedded_chain.dev_accounts] == [a.address for a in dev_accounts(10)]
    assert all(embedded_chain.balance(a.address) == Web3.to_wei(1_000_000, "ether")
               for a in embedded_chain.dev_accounts)
    assert embedded_chain.default_account == embedded_chain.dev_accounts[0]


def test_embedded_chain_runs_shanghai_rules(embedded_chain: ChainClient) -> None:
    """PUSH0 (Shanghai) executes; TLOAD (Cancun) does not: the fork the contract targets."""
    w3 = embedded_chain.w3
    sender = embedded_chain.dev_accounts[0].address
    # init code: PUSH0 PUSH0 RETURN  -> deploys empty code
    assert w3.eth.call({"from": sender, "data": "0x5f5ff3"}) == b""
    # init code: PUSH0 TLOAD ... -> invalid opcode before Cancun
    with pytest.raises(ContractRevert, match="tload reverted: no reason given .*Invalid opcode 0x5c"):
        embedded_chain.call(_RawCall(w3, sender, "0x5f5c5f5ff3"), label="tload")


class _RawCall:
    """A minimal stand-in for a web3 ContractFunction: eth_call of raw init code."""

    def __init__(self, w3: Web3, sender: str, data: str) -> None:
        self.w3, self.sender, self.data = w3, sender, data

    def call(self, tx: dict) -> bytes:
        return self.w3.eth.call({"from": self.sender, "data": self.data, **tx})


def test_time_travel_and_mine(embedded_chain: ChainClient) -> None:
    t0, b0 = embedded_chain.timestamp(), embedded_chain.block_number()
    t1 = embedded_chain.time_travel(3600)
    assert t1 >= t0 + 3600 and embedded_chain.timestamp() == t1
    embedded_chain.mine(3)
    assert embedded_chain.block_number() >= b0 + 4
    with pytest.raises(ValueError, match="back in time"):
        embedded_chain.time_travel(-1)


def test_transfer_and_receipt(embedded_chain: ChainClient) -> None:
    alice, bob = embedded_chain.dev_accounts[1:3]
    before = embedded_chain.balance(bob.address)
    receipt = embedded_chain.transfer(bob.address, 12345, sender=alice)
    assert receipt.gas_used == 21_000 and receipt.events == () and receipt.tx_hash.startswith("0x")
    assert embedded_chain.balance(bob.address) == before + 12345
    with pytest.raises(ChainError, match="emitted no Funded event"):
        receipt.event("Funded")


def test_revert_is_decoded_with_arguments(embedded_chain: ChainClient) -> None:
    fed = embedded_chain.deploy(PARAMS, sender=embedded_chain.dev_accounts[0])
    alice = embedded_chain.dev_accounts[1]
    with pytest.raises(ContractRevert) as excinfo:
        fed.register([], value=1, sender=alice)
    err = excinfo.value
    assert isinstance(err, ChainError) and isinstance(err, FedchainError)
    assert err.function == "register" and err.error_name == "InsufficientStake"
    assert err.args_dict == {"sent": 1, "required": 10**15}
    assert str(err) == "register reverted: InsufficientStake(sent=1, required=1000000000000000)"
    assert err.data[:4] == Web3.keccak(text="InsufficientStake(uint256,uint256)")[:4]
    # a panic (array index out of bounds) in a view
    with pytest.raises(ContractRevert) as excinfo:
        fed.peer_at(5)
    assert excinfo.value.error_name == "Panic" and excinfo.value.args_dict == {"code": "0x32"}
    # nothing was sent: the nonce did not move
    assert embedded_chain.w3.eth.get_transaction_count(alice.address) == 0


def test_revert_of_a_mined_transaction_is_replayed_and_decoded(embedded_chain: ChainClient) -> None:
    """A transaction that passes estimation but reverts when mined (state changed in
    between) is decoded by replaying it; simulated by sending with a fixed gas limit."""
    fed = embedded_chain.deploy(PARAMS, sender=embedded_chain.dev_accounts[0])
    alice = embedded_chain.dev_accounts[1]
    fed.register([], sender=alice)
    data = fed.contract.functions.register(b"")._encode_transaction_data()
    with pytest.raises(ContractRevert, match=r"AlreadyRegistered\(peer=" + alice.address):
        embedded_chain._send({"to": fed.address, "data": data, "value": 10**15}, sender=alice,
                             label="register", gas=200_000)
    assert embedded_chain.w3.eth.get_transaction_count(alice.address) == 2  # it was mined
    assert fed.peer_count() == 1


def test_concurrent_sends_from_one_and_many_senders(embedded_chain: ChainClient) -> None:
    """Threads share one client (as peers do through trio.to_thread): nonces never collide."""
    fed = embedded_chain.deploy(PARAMS, sender=embedded_chain.dev_accounts[0])
    senders = embedded_chain.dev_accounts[1:5]
    errors: list[BaseException] = []

    def work(sender_index: int, amount: int) -> None:
        try:
            for _ in range(5):
                fed.fund(amount, sender=senders[sender_index])
                fed.reward_pool()  # views interleave with sends
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i % 2, i + 1)) for i in range(6)]  # 3 threads per sender
    threads += [threading.Thread(target=work, args=(2 + i, 100)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert fed.reward_pool() == 5 * sum(range(1, 7)) + 5 * 200
    for s, n in zip(senders, (15, 15, 5, 5), strict=True):
        assert embedded_chain.w3.eth.get_transaction_count(s.address) == n


def test_nonce_resynchronises_after_an_outside_send(embedded_chain: ChainClient) -> None:
    fed = embedded_chain.deploy(PARAMS, sender=embedded_chain.dev_accounts[0])
    alice = embedded_chain.dev_accounts[1]
    fed.fund(1, sender=alice)
    # another client (another process) uses the same key
    other = ChainClient(embedded_chain.w3, url="embedded", dev_accounts=embedded_chain.dev_accounts, devnet=True)
    other.federation(fed.address).fund(1, sender=alice)
    fed.fund(1, sender=alice)  # our cached nonce is stale: resynchronised once
    assert fed.reward_pool() == 3


def test_events_and_typed_records(embedded_chain: ChainClient) -> None:
    operator, alice, bob = embedded_chain.dev_accounts[:3]
    fed = embedded_chain.deploy(PARAMS, sender=operator)
    start_block = embedded_chain.block_number()
    fed.register(["/ip4/127.0.0.1/tcp/1"], sender=alice)
    fed.register(["/ip4/127.0.0.1/tcp/2"], sender=bob)
    fed.start(sender=operator)
    fed.commit_update(1, hashlib.sha256(b"b").digest(), 9, sender=bob)
    fed.commit_update(1, hashlib.sha256(b"a").digest(), 3, sender=alice)
    names = [e.name for e in fed.events()]
    assert names == ["Registered", "Registered", "RoundOpened", "UpdateCommitted", "UpdateCommitted",
                     "CommitPhaseClosed"]
    assert [e.args["peer"] for e in fed.events("Registered")] == [alice.address, bob.address]
    assert all(e.block_number > start_block for e in fed.events())
    assert fed.events("UpdateCommitted", round=2) == [] and len(fed.events(round=1)) == 4
    assert fed.events(from_block=embedded_chain.block_number()) == fed.events("UpdateCommitted")[1:] + fed.events("CommitPhaseClosed")
    commitments = fed.commitments(1)
    assert [c.peer for c in commitments] == sorted([alice.address, bob.address], key=lambda a: int(a, 16))
    assert {c.peer: c.n_samples for c in commitments} == {alice.address: 3, bob.address: 9}
    with pytest.raises(ValueError, match="no event 'Nope'"):
        fed.events("Nope")


def test_federation_handle_checks_code(embedded_chain: ChainClient) -> None:
    fed = embedded_chain.deploy(PARAMS, sender=embedded_chain.dev_accounts[0])
    again = embedded_chain.federation(fed.address.lower())
    assert again.address == fed.address and again.params() == PARAMS
    with pytest.raises(ChainError, match="no contract at 0x"):
        embedded_chain.federation(embedded_chain.dev_accounts[3].address)


def test_dev_accounts_refused_on_a_chain_that_is_not_a_devnet(embedded_chain: ChainClient) -> None:
    public = ChainClient(embedded_chain.w3, url="https://rpc.example.org")
    assert not public.is_devnet
    with pytest.raises(ChainError, match="not a devnet"):
        public.dev_accounts  # noqa: B018
    with pytest.raises(ChainError, match="no sender"):
        public.transfer(embedded_chain.dev_accounts[1].address, 1)


def test_rpc_down_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ChainError) as excinfo:
        ChainClient.connect(url)
    assert str(excinfo.value) == f"cannot reach RPC at {url}: connection refused"
    assert not isinstance(excinfo.value, ContractRevert)
    assert time.monotonic() - t0 < 5  # a couple of quick retries, not minutes
