"""The Federation contract on the embedded EVM: every function, custom error and event,
with time moved by the test, and the edge cases of the round protocol (exact quorum,
competing pairs, late votes, double commits, outsiders, double claims, bad proofs,
reentrancy, refused payments).

Each test gets a fresh chain (``embedded_chain``) and deploys its own federation. The
committee seed comes from prevrandao, which the embedded chain draws at random, so tests
read the committee (``fed.committee()``, checked against ``isCommitteeMember``) instead of
assuming one.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from peer.chain import (
    Artifact,
    ChainClient,
    ContractRevert,
    Federation,
    FederationParams,
    Phase,
    load_artifact,
)
from peer.devnet import NODE_MODULES
from peer.merkle import MerkleTree

ZERO = b"\x00" * 32
BASE = FederationParams(
    model_spec_hash=hashlib.sha256(b"spec").digest(),
    genesis_model_hash=hashlib.sha256(b"genesis").digest(),
    commit_window=100,
    vote_window=100,
    committee_size=3,
    quorum_bps=5000,
    reward_per_round=10**16,
    min_stake=10**17,
    unbonding_delay=1000,
    max_rounds=0,
    contributor_share_bps=8000,
    slash_reporter_bps=5000,
)


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@dataclass
class Fed:
    client: ChainClient
    fed: Federation
    operator: LocalAccount
    peers: list[LocalAccount]

    def by_address(self, address: str) -> LocalAccount:
        return next(p for p in self.peers if p.address == address)

    def members(self) -> list[LocalAccount]:
        return [self.by_address(a) for a in self.fed.committee()]

    def outsiders(self) -> list[LocalAccount]:
        members = set(self.fed.committee())
        return [p for p in self.peers if p.address not in members]

    def commit_all(self, r: int) -> list[LocalAccount]:
        members = self.members()
        for m in members:
            self.fed.commit_update(r, h(f"update {r} {m.address}"), 100, sender=m)
        return members


def make(client: ChainClient, *, n_peers: int = 4, start: bool = True, fund: int = 10**18, **overrides) -> Fed:
    operator, *others = client.dev_accounts
    fed = client.deploy(replace(BASE, **overrides), sender=operator)
    peers = others[:n_peers]
    for i, acct in enumerate(peers):
        fed.register([f"/ip4/127.0.0.1/tcp/{4000 + i}"], sender=acct)
    if fund:
        fed.fund(fund, sender=operator)
    if start:
        fed.start(sender=operator)
    return Fed(client, fed, operator, peers)


def expect(error: str):  # noqa: ANN201 (pytest's RaisesContext type is private)
    """pytest.raises for a ContractRevert of ``error`` (check its arguments with assert_revert)."""
    return pytest.raises(ContractRevert, match=rf"reverted: {error}\(")


def assert_revert(excinfo: pytest.ExceptionInfo[ContractRevert], error: str, **args) -> None:
    assert excinfo.value.error_name == error
    for k, v in args.items():
        assert excinfo.value.args_dict[k] == v, (k, excinfo.value.args_dict)


# ---------------------------------------------------------------- deployment and views


def test_deploy_stores_params_and_views_start_empty(embedded_chain: ChainClient) -> None:
    operator = embedded_chain.dev_accounts[0]
    fed = embedded_chain.deploy(BASE, sender=operator)
    assert fed.params() == BASE
    assert fed.operator() == operator.address
    assert fed.current_round() == 0 and fed.last_finalized_round() == 0
    assert fed.latest_model_hash() == BASE.genesis_model_hash
    # before any finalisation: a sentinel no proof reaches (NO_REWARDS_ROOT), not a claimable root
    assert fed.latest_rewards_root() == keccak(text="fedchain.rewards.none")
    rv = fed.round_state()
    assert rv.phase is Phase.NOT_STARTED and rv.round == 0 and rv.vote_deadline == 0
    assert fed.peer_count() == 0 and fed.active_peers() == 0 and fed.reward_pool() == 0
    assert fed.committee() == []
    assert not fed.is_committee_member(operator.address)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"commit_window": 0}, "commitWindow must be > 0"),
        ({"vote_window": 0}, "voteWindow must be > 0"),
        ({"committee_size": 0}, "committeeSize must be > 0"),
        ({"committee_size": 70_000}, "committeeSize must fit uint16"),
        ({"quorum_bps": 0}, "quorumBps must be in 1..10000"),
        ({"quorum_bps": 10_001}, "quorumBps must be in 1..10000"),
        ({"contributor_share_bps": 10_001}, "contributorShareBps must be <= 10000"),
        ({"slash_reporter_bps": 10_001}, "slashReporterBps must be <= 10000"),
        ({"genesis_model_hash": ZERO}, "genesisModelHash must be set"),
    ],
)
def test_deploy_rejects_invalid_params(embedded_chain: ChainClient, override: dict, reason: str) -> None:
    with pytest.raises(ContractRevert) as excinfo:
        embedded_chain.deploy(replace(BASE, **override), sender=embedded_chain.dev_accounts[0])
    assert_revert(excinfo, "InvalidParams", reason=reason)
    assert str(excinfo.value) == f"Federation constructor reverted: InvalidParams(reason={reason!r})"


# ---------------------------------------------------------------- membership


def test_fund_adds_to_pool_and_zero_is_refused(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, start=False, fund=0)
    receipt = s.fed.fund(5 * 10**17, sender=s.operator)
    ev = receipt.event("Funded")
    assert ev.args == {"from": s.operator.address, "amount": 5 * 10**17, "pool": 5 * 10**17}
    s.fed.fund(10**17, sender=s.peers[0])
    assert s.fed.reward_pool() == 6 * 10**17
    with expect("ZeroAmount") as excinfo:
        s.fed.fund(0, sender=s.operator)
    assert excinfo.value.args_dict == {}


def test_register_records_peer_stake_and_multiaddrs(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=0, start=False)
    alice, bob = embedded_chain.dev_accounts[1:3]
    receipt = s.fed.register(["/ip4/10.0.0.1/tcp/4001", "/dns4/a.example/tcp/4001"], value=2 * 10**17, sender=alice)
    ev = receipt.event("Registered")
    assert ev.args == {"peer": alice.address, "index": 0, "stake": 2 * 10**17,
                       "multiaddrs": b"/ip4/10.0.0.1/tcp/4001\n/dns4/a.example/tcp/4001"}
    s.fed.register("/ip4/10.0.0.2/tcp/4001", sender=bob)  # default stake: min_stake
    info = s.fed.peer_info(alice.address)
    assert (info.index, info.registered, info.active, info.slashed, info.stake) == (0, True, True, False, 2 * 10**17)
    assert info.multiaddrs == ("/ip4/10.0.0.1/tcp/4001", "/dns4/a.example/tcp/4001")
    assert s.fed.peer_info(bob.address).stake == BASE.min_stake
    assert [p.address for p in s.fed.peers()] == [alice.address, bob.address]
    assert s.fed.peer_at(1) == bob.address and s.fed.peer_count() == 2 and s.fed.active_peers() == 2
    assert s.fed.balance() == 3 * 10**17 + 10**18  # stakes + pool
    outsider = s.fed.peer_info(embedded_chain.dev_accounts[5].address)
    assert not outsider.registered and outsider.index == 0


def test_register_errors(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=1, start=False)
    with expect("AlreadyRegistered") as excinfo:
        s.fed.register([], sender=s.peers[0])
    assert_revert(excinfo, "AlreadyRegistered", peer=s.peers[0].address)
    newcomer = embedded_chain.dev_accounts[5]
    with expect("InsufficientStake") as excinfo:
        s.fed.register([], value=BASE.min_stake - 1, sender=newcomer)
    assert_revert(excinfo, "InsufficientStake", sent=BASE.min_stake - 1, required=BASE.min_stake)


def test_set_multiaddrs(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=1, start=False)
    receipt = s.fed.set_multiaddrs(["/ip4/192.168.1.9/tcp/9000"], sender=s.peers[0])
    assert receipt.event("MultiaddrsUpdated").args == {"peer": s.peers[0].address,
                                                       "multiaddrs": b"/ip4/192.168.1.9/tcp/9000"}
    assert s.fed.peer_info(s.peers[0].address).multiaddrs == ("/ip4/192.168.1.9/tcp/9000",)
    with expect("NotRegistered") as excinfo:
        s.fed.set_multiaddrs([], sender=embedded_chain.dev_accounts[7])
    assert_revert(excinfo, "NotRegistered", peer=embedded_chain.dev_accounts[7].address)


def test_exit_unbonding_and_withdraw_stake(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=2, start=False)
    alice = s.peers[0]
    with expect("NotExited"):
        s.fed.withdraw_stake(sender=alice)
    receipt = s.fed.exit(sender=alice)
    unlock_at = receipt.event("Exited").args["unlockAt"]
    assert unlock_at == embedded_chain.w3.eth.get_block(receipt.block_number)["timestamp"] + BASE.unbonding_delay
    info = s.fed.peer_info(alice.address)
    assert not info.active and info.unlock_at == unlock_at and s.fed.active_peers() == 1
    with expect("NotActive"):
        s.fed.exit(sender=alice)
    with expect("StillBonded") as excinfo:
        s.fed.withdraw_stake(sender=alice)
    assert_revert(excinfo, "StillBonded", peer=alice.address, unlockAt=unlock_at)
    embedded_chain.time_travel(BASE.unbonding_delay)
    before = embedded_chain.balance(alice.address)
    receipt = s.fed.withdraw_stake(sender=alice)
    assert receipt.event("StakeWithdrawn").args == {"peer": alice.address, "amount": BASE.min_stake}
    gas_cost = receipt.gas_used * embedded_chain.w3.eth.get_transaction_receipt(receipt.tx_hash)["effectiveGasPrice"]
    assert embedded_chain.balance(alice.address) == before + BASE.min_stake - gas_cost
    assert s.fed.peer_info(alice.address).stake == 0
    with expect("NothingToWithdraw"):
        s.fed.withdraw_stake(sender=alice)
    stranger = embedded_chain.dev_accounts[8]
    for call in (s.fed.exit, s.fed.withdraw_stake):
        with expect("NotRegistered"):
            call(sender=stranger)


# ---------------------------------------------------------------- starting


def test_start_rules(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=2, start=False, committee_size=3)
    with expect("NotEnoughPeers") as excinfo:
        s.fed.start(sender=s.peers[0])  # not the operator, 2 active < committee of 3
    assert_revert(excinfo, "NotEnoughPeers", active=2, required=3)
    receipt = s.fed.start(sender=s.operator)  # the operator may start early
    ev = receipt.event("RoundOpened")
    rv = s.fed.round_state()
    assert ev.args["round"] == 1 and ev.args["nPeers"] == 2 and ev.args["committeeExpected"] == 2
    assert ev.args["quorumVotes"] == 1 and ev.args["seed"] == rv.seed
    assert rv.commit_deadline == ev.args["commitDeadline"] == rv.opened_at + BASE.commit_window
    assert rv.vote_deadline == rv.commit_deadline + BASE.vote_window and rv.phase is Phase.COMMIT
    with expect("AlreadyStarted"):
        s.fed.start(sender=s.operator)


def test_anyone_may_start_once_enough_peers_and_nobody_with_none(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, start=False, committee_size=3)
    assert s.fed.start(sender=s.peers[2]).event("RoundOpened").args["round"] == 1
    empty = embedded_chain.deploy(BASE, sender=s.operator)
    with expect("NotEnoughPeers") as excinfo:
        empty.start(sender=s.operator)
    assert_revert(excinfo, "NotEnoughPeers", active=0, required=1)


# ---------------------------------------------------------------- committee and commits


def test_committee_rule_matches_contract_over_many_seeds(embedded_chain: ChainClient) -> None:
    """committee() (the off-chain rule) equals isCommitteeMember for every peer, over rounds
    with fresh seeds, with one peer exited inside the window."""
    s = make(embedded_chain, n_peers=7, committee_size=3, commit_window=10, vote_window=10)
    s.fed.exit(sender=s.peers[3])
    sizes = set()
    for r in range(1, 9):
        rv = s.fed.round_state()
        assert rv.round == r
        committee = set(s.fed.committee(rv))
        for p in s.peers:
            assert s.fed.is_committee_member(p.address) == (p.address in committee), (r, rv.seed, p.address)
        assert s.peers[3].address not in committee
        sizes.add(len(committee))
        embedded_chain.time_travel(25)
        assert s.fed.round_state().phase is Phase.EXPIRED
        s.fed.fail_round(r, sender=s.operator)
    assert sizes <= {2, 3}


def test_commit_update_events_and_early_close(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=5, committee_size=3)
    members = s.members()
    assert len(members) == 3
    first = s.fed.commit_update(1, h("a"), 42, sender=members[0])
    assert first.event("UpdateCommitted").args == {"round": 1, "peer": members[0].address,
                                                    "payloadHash": h("a"), "nSamples": 42}
    assert [e.name for e in first.events] == ["UpdateCommitted"]
    with expect("NotVotePhase") as excinfo:
        s.fed.vote_aggregate(1, h("m"), h("r"), sender=members[1])
    assert_revert(excinfo, "NotVotePhase", round=1)
    s.fed.commit_update(1, h("b"), 7, sender=members[1])
    last = s.fed.commit_update(1, h("c"), 9, sender=members[2])
    assert [e.name for e in last.events] == ["UpdateCommitted", "CommitPhaseClosed"]
    assert last.event("CommitPhaseClosed").args == {"round": 1, "committed": 3}
    rv = s.fed.round_state()
    assert rv.phase is Phase.VOTE and rv.committed == 3
    assert rv.commit_deadline == embedded_chain.w3.eth.get_block(last.block_number)["timestamp"]
    commitments = s.fed.commitments(1)
    assert [c.peer for c in commitments] == sorted((m.address for m in members), key=lambda a: int(a, 16))
    assert {c.payload_hash: c.n_samples for c in commitments} == {h("a"): 42, h("b"): 7, h("c"): 9}
    assert peer_info_rounds(s, members[0]) == (1, 0)


def peer_info_rounds(s: Fed, acct: LocalAccount) -> tuple[int, int]:
    info = s.fed.peer_info(acct.address)
    return info.last_commit_round, info.last_vote_round


def test_commit_errors(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=5, committee_size=2)
    member, outsider = s.members()[0], s.outsiders()[0]
    s.fed.commit_update(1, h("x"), 1, sender=member)
    with expect("AlreadyCommitted") as excinfo:  # a second commit
        s.fed.commit_update(1, h("y"), 1, sender=member)
    assert_revert(excinfo, "AlreadyCommitted", peer=member.address, round=1)
    with expect("NotInCommittee") as excinfo:  # from outside the committee
        s.fed.commit_update(1, h("z"), 1, sender=outsider)
    assert_revert(excinfo, "NotInCommittee", peer=outsider.address, round=1)
    assert str(excinfo.value) == f"commitUpdate reverted: NotInCommittee(peer={outsider.address}, round=1)"
    with expect("NotInCommittee"):  # never registered
        s.fed.commit_update(1, h("z"), 1, sender=embedded_chain.dev_accounts[9])
    with expect("WrongRound") as excinfo:
        s.fed.commit_update(2, h("z"), 1, sender=member)
    assert_revert(excinfo, "WrongRound", given=2, current=1)
    embedded_chain.time_travel(BASE.commit_window)
    with expect("NotCommitPhase") as excinfo:  # after the deadline
        s.fed.commit_update(1, h("z"), 1, sender=s.members()[1])
    assert_revert(excinfo, "NotCommitPhase", round=1)
    assert len(s.fed.commitments(1)) == 1


def test_late_registrant_neither_commits_nor_votes_this_round(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=2, committee_size=5)
    late = embedded_chain.dev_accounts[6]
    s.fed.register([], sender=late)
    assert not s.fed.is_committee_member(late.address)
    with expect("NotInCommittee"):
        s.fed.commit_update(1, h("l"), 1, sender=late)
    s.commit_all(1)
    with expect("NotEligibleVoter") as excinfo:
        s.fed.vote_aggregate(1, h("m"), h("r"), sender=late)
    assert_revert(excinfo, "NotEligibleVoter", peer=late.address, round=1)


# ---------------------------------------------------------------- votes and finalisation


def test_exactly_the_quorum_finalises_and_opens_next_round(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=5, committee_size=5, quorum_bps=6000)  # ceil(5 * 0.6) = 3
    assert s.fed.round_state().quorum_votes == 3
    s.commit_all(1)
    model, root = h("model 1"), h("root 1")
    for i, voter in enumerate(s.peers[:2]):
        receipt = s.fed.vote_aggregate(1, model, root, sender=voter)
        assert receipt.event("VoteCast").args == {"round": 1, "voter": voter.address, "modelHash": model,
                                                   "rewardsRoot": root, "votes": i + 1}
        assert [e.name for e in receipt.events] == ["VoteCast"]
    assert s.fed.candidate_votes(model, root) == 2 and s.fed.last_finalized_round() == 0
    receipt = s.fed.vote_aggregate(1, model, root, sender=s.peers[2])  # the quorum-th vote
    assert [e.name for e in receipt.events] == ["VoteCast", "RoundFinalized", "RoundOpened"]
    assert receipt.event("RoundFinalized").args == {"round": 1, "modelHash": model, "rewardsRoot": root, "votes": 3}
    assert receipt.event("RoundOpened").args["round"] == 2
    assert s.fed.finalized_model(1) == model and s.fed.latest_model_hash() == model
    assert s.fed.latest_rewards_root() == root and s.fed.last_finalized_round() == 1
    assert s.fed.current_round() == 2 and s.fed.round_state().phase is Phase.COMMIT
    assert s.fed.candidate_votes(model, root) == 0  # tallies are per round
    assert [v.voter for v in s.fed.votes(1)] == [p.address for p in s.peers[:3]]
    with expect("WrongRound") as excinfo:  # a vote after finalisation
        s.fed.vote_aggregate(1, model, root, sender=s.peers[3])
    assert_revert(excinfo, "WrongRound", given=1, current=2)


def test_two_competing_pairs(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=5, committee_size=5, quorum_bps=6000)  # quorum 3
    s.commit_all(1)
    honest, other = (h("good"), h("root")), (h("bad"), h("root"))
    s.fed.vote_aggregate(1, *honest, sender=s.peers[0])
    s.fed.vote_aggregate(1, *other, sender=s.peers[1])
    s.fed.vote_aggregate(1, *other, sender=s.peers[2])
    s.fed.vote_aggregate(1, *honest, sender=s.peers[3])
    assert s.fed.candidate_votes(*honest) == 2 and s.fed.candidate_votes(*other) == 2
    assert s.fed.last_finalized_round() == 0
    receipt = s.fed.vote_aggregate(1, *honest, sender=s.peers[4])
    assert receipt.event("RoundFinalized").args["modelHash"] == h("good")
    assert s.fed.finalized_model(1) == h("good")
    # same model, different rewards root: a different candidate
    assert {(v.model_hash, v.votes) for v in s.fed.votes(1)} == {(h("good"), 1), (h("bad"), 1), (h("bad"), 2),
                                                                  (h("good"), 2), (h("good"), 3)}


def test_vote_errors(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=4, committee_size=4, quorum_bps=10_000)
    s.commit_all(1)
    s.fed.vote_aggregate(1, h("m"), h("r"), sender=s.peers[0])
    with expect("AlreadyVoted") as excinfo:
        s.fed.vote_aggregate(1, h("m2"), h("r"), sender=s.peers[0])
    assert_revert(excinfo, "AlreadyVoted", peer=s.peers[0].address, round=1)
    with expect("NotEligibleVoter"):
        s.fed.vote_aggregate(1, h("m"), h("r"), sender=embedded_chain.dev_accounts[9])
    s.fed.exit(sender=s.peers[1])
    with expect("NotEligibleVoter"):
        s.fed.vote_aggregate(1, h("m"), h("r"), sender=s.peers[1])
    embedded_chain.time_travel(BASE.vote_window)
    with expect("NotVotePhase"):
        s.fed.vote_aggregate(1, h("m"), h("r"), sender=s.peers[2])


def test_too_many_candidates() -> None:
    client = ChainClient.embedded(accounts=19)
    s = make(client, n_peers=17, committee_size=1, quorum_bps=10_000)
    s.commit_all(1)
    for i, voter in enumerate(s.peers[:16]):
        s.fed.vote_aggregate(1, h(f"model {i}"), ZERO, sender=voter)
    with expect("TooManyCandidates") as excinfo:
        s.fed.vote_aggregate(1, h("model 16"), ZERO, sender=s.peers[16])
    assert_revert(excinfo, "TooManyCandidates", round=1)
    # an existing candidate can still gain votes
    assert s.fed.vote_aggregate(1, h("model 3"), ZERO, sender=s.peers[16]).event("VoteCast").args["votes"] == 2


def test_fail_round_after_vote_deadline(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, committee_size=3)
    rv = s.fed.round_state()
    with expect("RoundNotExpired") as excinfo:
        s.fed.fail_round(1, sender=s.peers[0])
    assert_revert(excinfo, "RoundNotExpired", round=1, voteDeadline=rv.vote_deadline)
    embedded_chain.time_travel(BASE.commit_window + BASE.vote_window)
    assert s.fed.round_state().phase is Phase.EXPIRED
    receipt = s.fed.fail_round(1, sender=embedded_chain.dev_accounts[9])  # anyone
    assert [e.name for e in receipt.events] == ["RoundFailed", "RoundOpened"]
    assert receipt.event("RoundFailed").args == {"round": 1}
    assert s.fed.finalized_model(1) == ZERO and s.fed.latest_model_hash() == BASE.genesis_model_hash
    assert s.fed.current_round() == 2
    with expect("WrongRound"):
        s.fed.fail_round(1, sender=s.peers[0])


def test_max_rounds_ends_the_federation(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=2, committee_size=2, quorum_bps=10_000, max_rounds=1)
    s.commit_all(1)
    s.fed.vote_aggregate(1, h("m"), h("r"), sender=s.peers[0])
    receipt = s.fed.vote_aggregate(1, h("m"), h("r"), sender=s.peers[1])
    assert [e.name for e in receipt.events] == ["VoteCast", "RoundFinalized"]
    assert s.fed.round_state().phase is Phase.DONE and s.fed.committee() == []
    for call in (lambda: s.fed.commit_update(1, h("x"), 1, sender=s.peers[0]),
                 lambda: s.fed.vote_aggregate(1, h("m"), h("r"), sender=s.peers[0]),
                 lambda: s.fed.fail_round(1, sender=s.peers[0])):
        with expect("FederationDone"):
            call()


# ---------------------------------------------------------------- rewards


def finalize_root(s: Fed, tree: MerkleTree, r: int = 1) -> None:
    s.commit_all(r)
    for voter in s.peers:
        if s.fed.current_round() != r:
            break
        s.fed.vote_aggregate(r, h(f"model {r}"), tree.root, sender=voter)
    assert s.fed.latest_rewards_root() == tree.root


def test_claim_pays_difference_once(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, committee_size=3)
    alice, bob = s.peers[:2]
    tree = MerkleTree([(alice.address, 3 * 10**15), (bob.address, 10**15)])
    finalize_root(s, tree)
    receipt = s.fed.claim(3 * 10**15, tree.proof(alice.address), sender=alice)
    assert receipt.event("Claimed").args == {"account": alice.address, "amount": 3 * 10**15,
                                             "cumulativeAmount": 3 * 10**15}
    assert s.fed.claimed(alice.address) == 3 * 10**15 and s.fed.reward_pool() == 10**18 - 3 * 10**15
    with expect("NothingToClaim") as excinfo:  # a claim twice
        s.fed.claim(3 * 10**15, tree.proof(alice.address), sender=alice)
    assert_revert(excinfo, "NothingToClaim", account=alice.address, cumulativeAmount=3 * 10**15,
                  alreadyClaimed=3 * 10**15)
    # next round: cumulative amounts grow, alice is paid only the difference
    tree2 = MerkleTree([(alice.address, 5 * 10**15), (bob.address, 2 * 10**15)])
    finalize_root(s, tree2, r=2)
    receipt = s.fed.claim(5 * 10**15, tree2.proof(alice.address), sender=alice)
    assert receipt.event("Claimed").args["amount"] == 2 * 10**15
    assert s.fed.claim(2 * 10**15, tree2.proof(bob.address), sender=bob).event("Claimed").args["amount"] == 2 * 10**15


def test_claim_with_wrong_proof_or_amount(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, committee_size=3)
    alice, bob, carol = s.peers
    tree = MerkleTree([(alice.address, 100), (bob.address, 200)])
    finalize_root(s, tree)
    cases = [
        (alice, 101, tree.proof(alice.address)),  # wrong amount
        (alice, 100, tree.proof(bob.address)),  # someone else's proof
        (carol, 200, tree.proof(bob.address)),  # not in the tree
        (alice, 100, []),  # no proof
    ]
    for sender, amount, proof in cases:
        with expect("InvalidProof") as excinfo:
            s.fed.claim(amount, proof, sender=sender)
        assert_revert(excinfo, "InvalidProof", account=sender.address, cumulativeAmount=amount)
    assert s.fed.claimed(alice.address) == 0


def test_claim_more_than_pool(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, committee_size=3, fund=10**15)
    alice = s.peers[0]
    tree = MerkleTree([(alice.address, 10**16)])
    finalize_root(s, tree)
    with expect("InsufficientPool") as excinfo:
        s.fed.claim(10**16, tree.proof(alice.address), sender=alice)
    assert_revert(excinfo, "InsufficientPool", requested=10**16, available=10**15)


def test_reentrant_claimer_is_paid_once(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, committee_size=3)
    artifact = load_artifact("ReentrantClaimer")
    attacker_address = embedded_chain.deploy_contract(artifact, s.fed.address, sender=s.operator).contract_address
    attacker = embedded_chain.contract(attacker_address, artifact)
    tree = MerkleTree([(attacker_address, 10**16), (s.peers[0].address, 10**15)])
    finalize_root(s, tree)
    receipt = embedded_chain.transact(attacker.functions.attack(10**16, tree.proof(attacker_address)),
                                      sender=s.operator)
    assert [e.name for e in receipt.events] == ["Claimed"]
    assert embedded_chain.call(attacker.functions.reentries()) == 1  # it did try to re-enter
    assert embedded_chain.call(attacker.functions.reentrySucceeded()) is False
    # the guard, not the claimed-amount bookkeeping, stopped it: the re-entry hit ReentrancyGuardReentrantCall
    guard = Web3.keccak(text="ReentrancyGuardReentrantCall()")[:4]
    assert bytes(embedded_chain.call(attacker.functions.reentryError())) == guard
    assert embedded_chain.balance(attacker_address) == 10**16
    assert s.fed.claimed(attacker_address) == 10**16 and s.fed.reward_pool() == 10**18 - 10**16
    with expect("NothingToClaim"):
        embedded_chain.transact(attacker.functions.attack(10**16, tree.proof(attacker_address)), sender=s.operator)


FORWARDER_SOURCE = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;
/// A peer that is a contract without receive(): every payment to it fails.
contract Forwarder {
    function forward(address target, bytes calldata data) external payable {
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        if (!ok) assembly { revert(add(ret, 32), mload(ret)) }
    }
}
"""


@pytest.fixture(scope="module")
def forwarder_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """Compiled with the project's solc-js (a test-only contract; no artifact committed)."""
    script = f"""
const solc = require({json.dumps(str(NODE_MODULES / "solc"))});
const input = {{language: "Solidity", sources: {{"F.sol": {{content: {json.dumps(FORWARDER_SOURCE)}}}}},
  settings: {{evmVersion: "shanghai", outputSelection: {{"*": {{"*": ["abi", "evm.bytecode.object"]}}}}}}}};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const c = out.contracts["F.sol"].Forwarder;
process.stdout.write(JSON.stringify({{abi: c.abi, bytecode: "0x" + c.evm.bytecode.object}}));
"""
    result = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(result.stdout)
    return Artifact(name="Forwarder", abi=data["abi"], bytecode=data["bytecode"])


def test_payment_to_contract_that_refuses_ether(embedded_chain: ChainClient, forwarder_artifact: Artifact) -> None:
    s = make(embedded_chain, n_peers=2, committee_size=2)
    address = embedded_chain.deploy_contract(forwarder_artifact, sender=s.operator).contract_address
    forwarder = embedded_chain.contract(address, forwarder_artifact)
    tree = MerkleTree([(address, 10**15), (s.peers[0].address, 1)])
    finalize_root(s, tree)
    claim = s.fed.contract.functions.claim(10**15, tree.proof(address))._encode_transaction_data()
    with expect("TransferFailed") as excinfo:
        embedded_chain.transact(forwarder.functions.forward(s.fed.address, claim), sender=s.operator)
    assert_revert(excinfo, "TransferFailed", to=address, amount=10**15)
    assert s.fed.claimed(address) == 0


# ---------------------------------------------------------------- equivocation


def test_hash_update_matches_python_eip712(embedded_chain: ChainClient) -> None:
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from peer.chain import update_typed_data

    s = make(embedded_chain, n_peers=1, start=False)
    fields = {"round": 3, "payload_hash": h("p"), "payload_size": 12345, "n_samples": 77, "encoding": 2}
    message = update_typed_data(chain_id=embedded_chain.chain_id, contract=s.fed.address, **fields)
    encoded = encode_typed_data(full_message=message)
    digest = keccak(b"\x19" + encoded.version + encoded.header + encoded.body)
    assert s.fed.hash_update(3, h("p"), 12345, 77, 2) == digest
    signed = s.fed.sign_update(s.peers[0], **fields)
    assert Account._recover_hash(digest, signature=signed.signature) == s.peers[0].address


def test_report_equivocation_slashes_and_pays_reporter(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, committee_size=3)
    cheat, reporter = s.peers[0], embedded_chain.dev_accounts[9]
    a = s.fed.sign_update(cheat, round=1, payload_hash=h("one"), payload_size=10, n_samples=5, encoding=0)
    b = s.fed.sign_update(cheat, round=1, payload_hash=h("two"), payload_size=10, n_samples=5, encoding=0)
    pool = s.fed.reward_pool()
    receipt = s.fed.report_equivocation(cheat.address, a, b, sender=reporter)
    reward = BASE.min_stake * BASE.slash_reporter_bps // 10_000
    assert receipt.event("Slashed").args == {"peer": cheat.address, "round": 1, "amount": BASE.min_stake,
                                             "reporter": reporter.address, "reward": reward}
    info = s.fed.peer_info(cheat.address)
    assert info.slashed and not info.active and info.stake == 0 and s.fed.active_peers() == 2
    assert s.fed.owed(reporter.address) == reward and s.fed.reward_pool() == pool + BASE.min_stake - reward
    assert not s.fed.is_committee_member(cheat.address)
    with expect("AlreadySlashed"):
        s.fed.report_equivocation(cheat.address, a, b, sender=reporter)
    receipt = s.fed.withdraw_owed(sender=reporter)
    assert receipt.event("OwedWithdrawn").args == {"account": reporter.address, "amount": reward}
    assert s.fed.owed(reporter.address) == 0
    with expect("NothingToWithdraw") as excinfo:
        s.fed.withdraw_owed(sender=reporter)
    assert_revert(excinfo, "NothingToWithdraw", account=reporter.address)


def test_equivocation_after_the_stake_left_has_nothing_to_slash(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, committee_size=3)
    cheat, reporter = s.peers[0], s.peers[1]
    a = s.fed.sign_update(cheat, round=1, payload_hash=h("one"), payload_size=10, n_samples=5, encoding=0)
    b = s.fed.sign_update(cheat, round=1, payload_hash=h("two"), payload_size=10, n_samples=5, encoding=0)
    s.fed.exit(sender=cheat)
    embedded_chain.time_travel(BASE.unbonding_delay)
    s.fed.withdraw_stake(sender=cheat)
    with expect("NothingToSlash") as excinfo:
        s.fed.report_equivocation(cheat.address, a, b, sender=reporter)
    assert_revert(excinfo, "NothingToSlash", peer=cheat.address)


def test_report_equivocation_errors(embedded_chain: ChainClient) -> None:
    s = make(embedded_chain, n_peers=3, committee_size=3)
    cheat, other = s.peers[0], s.peers[1]
    sign = s.fed.sign_update
    a = sign(cheat, round=1, payload_hash=h("one"), payload_size=10, n_samples=5, encoding=0)
    same = sign(cheat, round=1, payload_hash=h("one"), payload_size=99, n_samples=5, encoding=0)
    later = sign(cheat, round=2, payload_hash=h("two"), payload_size=10, n_samples=5, encoding=0)
    forged = sign(other, round=1, payload_hash=h("two"), payload_size=10, n_samples=5, encoding=0)
    with expect("NotEquivocation") as excinfo:
        s.fed.report_equivocation(cheat.address, a, same, sender=other)
    assert_revert(excinfo, "NotEquivocation", peer=cheat.address)
    with expect("NotEquivocation"):
        s.fed.report_equivocation(cheat.address, a, later, sender=other)
    with expect("BadSignature") as excinfo:
        s.fed.report_equivocation(cheat.address, a, forged, sender=other)
    assert_revert(excinfo, "BadSignature", expected=cheat.address, recovered=other.address)
    tampered = replace(a, n_samples=6)  # signature no longer matches the fields
    with expect("BadSignature"):
        s.fed.report_equivocation(cheat.address, tampered, forged, sender=other)
    stranger = embedded_chain.dev_accounts[9]
    with expect("NotRegistered"):
        s.fed.report_equivocation(stranger.address, a, forged, sender=other)
    assert not s.fed.peer_info(cheat.address).slashed


def test_every_custom_error_and_event_is_exercised() -> None:
    """Guard: the ABI's errors and events are the ones this file covers (a new error or
    event in the contract must come with a test)."""
    abi = load_artifact("Federation").abi
    errors = {i["name"] for i in abi if i["type"] == "error"}
    events = {i["name"] for i in abi if i["type"] == "event"}
    source = Path(__file__).read_text()
    # OpenZeppelin internals that our contract cannot reach: the EIP-712 name and version are
    # short constants (no ShortString overflow, no domain change).
    unreachable = {"InvalidShortString", "StringTooLong", "EIP712DomainChanged",
                   "ReentrancyGuardReentrantCall"}  # caught by the attacker: asserted by its selector
    missing = sorted(n for n in (errors | events) - unreachable if f'"{n}"' not in source)
    assert not missing, f"not covered by test_contract.py: {missing}"
