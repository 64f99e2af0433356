"""The rewards ledger (peer.ledger) on a federation played by hand on the embedded chain:
the participant table against what was played, every reconciliation check passing, and each
failing on purpose (a tampered or stale checkpoint, a record that disagrees with the chain,
books that do not add up, an inflated root voted by a quorum); claim planning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from peer.chain import ChainClient, FederationParams
from peer.ledger import (
    EMPTY_ROOT,
    NO_REWARDS_ROOT,
    Check,
    LedgerError,
    balances_root,
    load_checkpoint_balances,
    load_round_records,
    participant_table,
    plan_claim,
    read_chain,
    reconcile,
    tally,
)
from peer.merkle import MerkleTree
from tests.ledger_helpers import PARAMS, Played, append_record, h, shared_played, write_checkpoint

A, B, C = (str(to_checksum_address("0x" + x * 20)) for x in ("ab", "cd", "ef"))


@pytest.fixture(scope="module")
def played() -> Played:
    """One played federation shared by the read-only tests of this module."""
    return shared_played()


def ledger(p: Played, data_dir: Path | None):  # noqa: ANN201 - (snapshot, books, rows, reconciliation)
    checkpoint = load_checkpoint_balances(data_dir) if data_dir else None
    records = load_round_records(data_dir) if data_dir else []
    snapshot = read_chain(p.fed)
    books = tally(snapshot.events, committee_size=snapshot.params.committee_size)
    rows = participant_table(snapshot, books, checkpoint=checkpoint, records=records)
    return snapshot, books, rows, reconcile(snapshot, books, rows, checkpoint=checkpoint, records=records)


# ---------------------------------------------------------------- the data directory


def test_balances_root_skips_zero_balances_and_has_an_empty_root() -> None:
    from peer import merkle

    for balances in [{A: 5}, {A: 5, B: 0, C: 7}, {C: 1, A: 2, B: 3}]:
        positive = [(a, v) for a, v in balances.items() if v > 0]
        assert balances_root(balances) == MerkleTree(positive).root
    assert balances_root({}) == balances_root({A: 0}) == EMPTY_ROOT == merkle.EMPTY_ROOT


def test_load_checkpoint_and_round_records(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, contract=B.lower(), model_round=3, model_hash=h("m"),
                     balances={C: 7, A.lower(): 5})  # any address spelling
    cp = load_checkpoint_balances(tmp_path)
    assert (cp.contract, cp.model_round, cp.model_hash) == (B, 3, h("m"))
    assert cp.balances == {A: 5, C: 7} and cp.root == MerkleTree([(A, 5), (C, 7)]).root
    cp.require_contract(B.lower())
    with pytest.raises(LedgerError, match=f"checkpoint of contract {B}, not {C}"):
        cp.require_contract(C)

    assert load_round_records(tmp_path) == []
    append_record(tmp_path, round=2, committed=[A, C], kept=[A], model_hash=h("two"))
    append_record(tmp_path, round=1, committed=[A], kept=[], model_hash=h("one"))
    append_record(tmp_path, round=2, committed=[A, C], kept=[A, C], model_hash=h("two"))  # a restarted peer
    records = load_round_records(tmp_path)
    assert [(r.round, r.kept) for r in records] == [(1, ()), (2, (A, C))]
    with (tmp_path / "rounds.jsonl").open("a") as f:
        f.write('{"round": 4, "committed": ["0x12"], "kept": [], "model_hash": "00"}\n')
    with pytest.raises(LedgerError, match=r"rounds.jsonl:4: not a round record"):
        load_round_records(tmp_path)


def test_unreadable_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no checkpoint.npz in .*pass the data directory of a peer"):
        load_checkpoint_balances(tmp_path)
    for junk in (b"not a zip", b"PK\x03\x04" + bytes(40)):  # the second: a truncated zip
        (tmp_path / "checkpoint.npz").write_bytes(junk)
        with pytest.raises(LedgerError, match="is not a readable peer checkpoint"):
            load_checkpoint_balances(tmp_path)
    write_checkpoint(tmp_path, contract=B, model_round=1, model_hash=h("m"), balances={A: -5})
    with pytest.raises(LedgerError, match=f"balance of {A} is negative"):
        load_checkpoint_balances(tmp_path)


# ---------------------------------------------------------------- the table


def test_participant_table_is_what_was_played(played: Played, tmp_path: Path) -> None:
    p = played
    snapshot, books, rows, _ = ledger(p, p.write_data_dir(tmp_path / "peer"))
    alice, bob, carol, dave = (a.address for a in p.peers)
    assert [r.address for r in rows] == [alice, bob, carol, dave] and [r.index for r in rows] == [0, 1, 2, 3]
    assert books.rounds_opened == 3 and set(books.finalized) == {1, 2} and snapshot.last_finalized_round == 2
    votes = {alice: 2, bob: 1, carol: 1, dave: 1}
    for row in rows:
        a = row.address
        committed = sum(a in p.committed[r] for r in (1, 2))
        kept = sum(a in p.kept[r] for r in (1, 2))
        assert row.committee_rounds == sum(a in p.committees[r] for r in (1, 2, 3)), a
        assert (row.committed, row.kept, row.rejected) == (committed, kept, committed - kept), a
        assert row.votes == votes[a]
        assert row.votes_with_majority == sum(a in p.majority[r] for r in (1, 2))
        assert row.earned_wei == p.balances[2].get(a, 0)
        assert row.claimed_wei == p.claimed.get(a, 0)
        assert row.claimable_wei == row.earned_wei - row.claimed_wei
        assert row.stake_wei == (0 if a == dave else PARAMS.min_stake)
        assert (row.slashed, row.slashed_wei) == ((True, p.slash_amount) if a == dave else (False, 0))
    assert [r.status for r in rows] == ["active", "active", "exited", "slashed"]
    assert sum(r.rejected or 0 for r in rows) == 1  # round 1 rejected one update
    assert rows[0].claimed_wei > 0 and rows[0].claimable_wei == 0  # alice claimed everything


def test_table_without_a_data_dir_has_chain_facts_only(played: Played) -> None:
    _, _, rows, result = ledger(played, None)
    assert all(r.earned_wei is None and r.claimable_wei is None and r.kept is None for r in rows)
    assert rows[0].claimed_wei == played.claimed[played.peers[0].address] and rows[0].votes == 2
    assert result.reconciled and result.root_verified is None
    assert {n for n, c in result.checks.items() if c.ok is None} == {
        "rewards_root", "earned_within_budget", "claims_within_earned", "round_records", "earned_recomputed"}


# ---------------------------------------------------------------- reconciliation


def test_every_check_passes_on_honest_books(played: Played, tmp_path: Path) -> None:
    snapshot, books, _, result = ledger(played, played.write_data_dir(tmp_path / "peer"))
    assert {name: c.ok for name, c in result.checks.items()} == {
        "reward_pool": True, "claimed": True, "stakes": True, "owed": True, "contract_balance": True,
        "rewards_root": True, "earned_within_budget": True, "claims_within_earned": True,
        "round_records": True, "earned_recomputed": True}
    assert result.reconciled and result.root_verified and result.failed == []
    assert "verified against the chain's rewards root" in result.checks["rewards_root"].detail
    claimed = sum(played.claimed.values())
    assert books.claimed_total == claimed and books.funded == 10**18
    assert snapshot.reward_pool == 10**18 + played.slash_amount - played.slash_reward - claimed
    assert snapshot.owed == {played.reporter.address: played.slash_reward}


def test_tampered_checkpoint_is_a_mismatch(played: Played, tmp_path: Path) -> None:
    p = played
    bob = p.peers[1].address
    richer = {**p.balances[2], bob: p.balances[2].get(bob, 0) + 10**15}
    data_dir = p.write_data_dir(tmp_path / "peer")  # records and all, then the balances edited
    write_checkpoint(data_dir, contract=p.fed.address, model_round=2, model_hash=h("model-2"), balances=richer)
    _, _, rows, result = ledger(p, data_dir)
    assert not result.reconciled and result.root_verified is False
    assert result.failed == ["rewards_root", "earned_recomputed"]
    assert result.checks["rewards_root"].detail.startswith("MISMATCH: the checkpoint's balances give root 0x")
    assert "not the ones the chain agreed on" in result.checks["rewards_root"].detail
    assert f"{bob}: rule {p.balances[2].get(bob, 0)}" in result.checks["earned_recomputed"].detail
    assert result.checks["earned_within_budget"].ok is None  # unverified balances are not audited
    assert rows[1].earned_wei == richer[bob]


def test_stale_checkpoint_says_wait_for_sync(played: Played, tmp_path: Path) -> None:
    p = played
    data_dir = p.write_data_dir(tmp_path / "peer", upto=1)
    _, _, rows, result = ledger(p, data_dir)
    assert result.failed == ["rewards_root"]
    assert "matches round 1's root: the peer is behind round 2, wait for it to sync" in \
        result.checks["rewards_root"].detail
    assert result.checks["earned_recomputed"].ok is True  # the records replay to the round-1 balances
    with pytest.raises(LedgerError, match="give root 0x.*the chain's latest is 0x.*wait for this peer to sync"):
        plan_claim(load_checkpoint_balances(data_dir), account=p.peers[0].address,
                   latest_root=p.fed.latest_rewards_root(), already_claimed=0, reward_pool=10**18)


def test_round_record_that_disagrees_with_the_chain(played: Played, tmp_path: Path) -> None:
    p = played
    write_checkpoint(tmp_path, contract=p.fed.address, model_round=2, model_hash=h("model-2"), balances=p.balances[2])
    append_record(tmp_path, round=1, committed=p.committed[1], kept=p.kept[1], model_hash=h("model-1"))
    append_record(tmp_path, round=2, committed=p.committed[2], kept=p.kept[2], model_hash=h("diverged"))
    _, _, rows, result = ledger(p, tmp_path)
    assert result.failed == ["round_records"] and "round 2: model 0x" in result.checks["round_records"].detail
    assert result.checks["earned_recomputed"].ok is None
    kept_round_1 = {a: int(a in p.kept[1]) for a in p.committed[1]}
    assert {r.address: r.kept for r in rows if r.address in kept_round_1} == kept_round_1  # only round 1 counted


def test_genesis_and_synced_records_are_not_disagreements(played: Played, tmp_path: Path) -> None:
    """The node logs round 0 (genesis) and rounds it fetched instead of aggregating ("synced":
    no kept list): neither is a disagreement, and kept counts come from the other rounds."""
    p = played
    write_checkpoint(tmp_path, contract=p.fed.address, model_round=2, model_hash=h("model-2"), balances=p.balances[2])
    append_record(tmp_path, round=0, committed=[], kept=[], model_hash=h("genesis"), synced=True)
    append_record(tmp_path, round=1, committed=[], kept=[], model_hash=h("model-1"), synced=True)
    append_record(tmp_path, round=2, committed=p.committed[2], kept=p.kept[2], model_hash=h("model-2"))
    assert [r.synced for r in load_round_records(tmp_path)] == [True, True, False]
    _, _, rows, result = ledger(p, tmp_path)
    assert result.reconciled and result.checks["round_records"].detail == \
        "1 round(s) agree with the chain, 1 synced (no kept list)"
    assert result.checks["earned_recomputed"] == Check(None, "skipped: no usable record of finalised round(s) 1")
    assert {r.address: r.kept for r in rows} == {a.address: int(a.address in p.kept[2]) for a in p.peers}
    append_record(tmp_path, round=2, committed=[], kept=[], model_hash=h("elsewhere"), synced=True)
    _, _, _, result = ledger(p, tmp_path)
    assert result.failed == ["round_records"]  # a synced model that is not the finalised one


def test_books_that_do_not_add_up(played: Played, tmp_path: Path) -> None:
    """The pure checks on a snapshot changed after reading: one wei missing from the pool, a
    claim the contract does not know, a stake that differs."""
    snapshot, books, rows, _ = ledger(played, None)
    alice = played.peers[0].address
    peers = list(snapshot.peers)
    peers[1] = dataclasses.replace(peers[1], stake=peers[1].stake + 1)
    bad = dataclasses.replace(snapshot, reward_pool=snapshot.reward_pool - 1, claimed={alice: 0},
                              contract_balance=snapshot.contract_balance - 10, peers=tuple(peers))
    result = reconcile(bad, books, rows)
    assert result.failed == ["reward_pool", "claimed", "stakes", "contract_balance"]
    assert f"rewardPool {snapshot.reward_pool - 1} wei" in result.checks["reward_pool"].detail
    assert f"{alice}: events {played.claimed[alice]}" in result.checks["claimed"].detail
    surplus = dataclasses.replace(snapshot, contract_balance=snapshot.contract_balance + 7)
    assert reconcile(surplus, books, rows).checks["contract_balance"].detail.endswith(
        "(7 wei more: ether sent without fund())")


def test_inflated_root_voted_by_a_quorum_breaks_the_budget(embedded_chain: ChainClient, tmp_path: Path) -> None:
    """The chain accepts any root a quorum votes; the ledger notices that the balances behind
    it pay more than the rounds allowed, and that the reward rule does not give them."""
    operator, alice, bob = embedded_chain.dev_accounts[:3]
    params = FederationParams(committee_size=2, quorum_bps=10_000, reward_per_round=10**17, min_stake=10**18)
    fed = embedded_chain.deploy(params, sender=operator)
    fed.fund(10**18, sender=operator)
    for acct in (alice, bob):
        fed.register([], sender=acct)
    fed.start(sender=operator)
    for acct in (alice, bob):
        fed.commit_update(1, h(acct.address), 100, sender=acct)
    greedy: dict[str, int] = {alice.address: 5 * 10**17}
    for acct in (alice, bob):
        fed.vote_aggregate(1, h("model-1"), balances_root(greedy), sender=acct)
    write_checkpoint(tmp_path, contract=fed.address, model_round=1, model_hash=h("model-1"), balances=greedy)
    append_record(tmp_path, round=1, committed=[alice.address, bob.address], kept=[alice.address, bob.address],
                  model_hash=h("model-1"))
    snapshot = read_chain(fed)
    books = tally(snapshot.events, committee_size=2)
    cp, records = load_checkpoint_balances(tmp_path), load_round_records(tmp_path)
    rows = participant_table(snapshot, books, checkpoint=cp, records=records)
    result = reconcile(snapshot, books, rows, checkpoint=cp, records=records)
    assert result.root_verified and result.failed == ["earned_within_budget", "earned_recomputed"]
    assert result.checks["earned_within_budget"].detail == (
        f"earned {5 * 10**17} wei of at most 1 round(s) x {10**17} = {10**17} wei")


# ---------------------------------------------------------------- claims


def test_plan_claim(tmp_path: Path) -> None:
    balances = {A: 5, B: 9}
    write_checkpoint(tmp_path, contract=C, model_round=4, model_hash=h("m"), balances=balances)
    cp = load_checkpoint_balances(tmp_path)
    root = MerkleTree(balances.items()).root
    plan = plan_claim(cp, account=B.lower(), latest_root=root, already_claimed=4, reward_pool=100)
    assert (plan.account, plan.cumulative, plan.amount) == (B, 9, 5)
    assert MerkleTree.verify(root, B, 9, plan.proof)
    done = plan_claim(cp, account=B, latest_root=root, already_claimed=9, reward_pool=100)
    assert done.amount == 0 and done.reason == "it earned 9 wei as of round 4 and claimed 9 wei"
    stranger = plan_claim(cp, account=C, latest_root=root, already_claimed=0, reward_pool=100)
    assert stranger.amount == 0 and stranger.reason == "it has earned nothing as of round 4"
    early = plan_claim(cp, account=A, latest_root=NO_REWARDS_ROOT, already_claimed=0, reward_pool=100)
    assert early.amount == 0 and early.reason == "no round has finalised yet"
    with pytest.raises(LedgerError, match="can claim 9 wei but the reward pool holds only 3 wei"):
        plan_claim(cp, account=B, latest_root=root, already_claimed=0, reward_pool=3)
    with pytest.raises(LedgerError, match="wait for this peer to sync"):
        plan_claim(cp, account=B, latest_root=h("other"), already_claimed=0, reward_pool=100)
