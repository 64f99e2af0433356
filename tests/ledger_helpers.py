"""Shared helpers of the ledger and rewards-CLI tests: a small federation played by hand on
a real (embedded) chain, and a peer data directory written in PeerNode's formats."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from eth_account.signers.local import LocalAccount

from peer.chain import ChainClient, Federation, FederationParams
from peer.ledger import balances_root
from peer.rewards import RewardRule, accumulate, round_rewards

REWARD = 10**17
PARAMS = FederationParams(committee_size=3, quorum_bps=5000, commit_window=100, vote_window=100,
                          reward_per_round=REWARD, min_stake=10**18, contributor_share_bps=8000,
                          slash_reporter_bps=5000)
SAMPLES = [300, 1500, 200, 400]  # peer i's sample count (1500 is capped at 1000 by the rule)


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def write_checkpoint(data_dir: Path, *, contract: str, model_round: int, model_hash: bytes,
                     balances: dict[str, int]) -> Path:
    """``checkpoint.npz`` exactly as ``PeerNode._save_checkpoint`` writes it."""
    meta = {"model_round": model_round, "model_hash": model_hash.hex(),
            "balances": {a: str(v) for a, v in balances.items()}, "contract": contract}
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "checkpoint.npz"
    np.savez(path, model=np.zeros(4, dtype=np.float32),
             meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return path


def append_record(data_dir: Path, *, round: int, committed: list[str], kept: list[str], model_hash: bytes,
                  synced: bool = False) -> None:
    """One line of ``rounds.jsonl`` (the format the node writes at each finalisation)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    line = {"round": round, "committed": committed, "kept": kept, "model_hash": model_hash.hex(),
            "accuracy": 0.5, "synced": synced}
    with (data_dir / "rounds.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


@dataclass
class Played:
    """What the test did, to compare the ledger with."""

    client: ChainClient
    fed: Federation
    operator: LocalAccount
    peers: list[LocalAccount]  # alice, bob, carol, dave (registration order)
    reporter: LocalAccount
    committees: dict[int, set[str]] = field(default_factory=dict)  # round -> members at opening
    committed: dict[int, list[str]] = field(default_factory=dict)
    kept: dict[int, list[str]] = field(default_factory=dict)
    balances: dict[int, dict[str, int]] = field(default_factory=dict)  # round -> cumulative balances
    majority: dict[int, list[str]] = field(default_factory=dict)
    minority: dict[int, list[str]] = field(default_factory=dict)
    claimed: dict[str, int] = field(default_factory=dict)
    slash_amount: int = 0
    slash_reward: int = 0

    def write_data_dir(self, data_dir: Path, *, upto: int = 2) -> Path:
        """A peer's data directory holding its state after round ``upto``."""
        write_checkpoint(data_dir, contract=self.fed.address, model_round=upto, model_hash=h(f"model-{upto}"),
                         balances=self.balances[upto])
        for r in range(1, upto + 1):
            append_record(data_dir, round=r, committed=self.committed[r], kept=self.kept[r],
                          model_hash=h(f"model-{r}"))
        return data_dir


def _commit_round(p: Played, r: int, rule: RewardRule, *, reject: int) -> dict[str, int]:
    """Every member of round r's committee commits; the ``reject`` last ones (by address)
    are rejected by the 'aggregator'. Returns the new cumulative balances."""
    members = p.fed.committee()
    assert all(p.fed.is_committee_member(a) for a in members)
    p.committees[r] = set(members)
    samples: dict[str, int] = {a.address: n for a, n in zip(p.peers, SAMPLES, strict=True)}
    committed = sorted(members, key=lambda a: int(a, 16))
    for acct in p.peers:
        if acct.address in members:
            p.fed.commit_update(r, h(f"{acct.address}-{r}"), samples[acct.address], sender=acct)
    kept = committed[:len(committed) - reject]
    p.committed[r], p.kept[r] = committed, kept
    amounts = round_rewards(rule, contributors=committed, n_samples=[samples[a] for a in committed],
                            kept=[a in kept for a in committed], previous_voters=p.majority.get(r - 1, [])).amounts
    return accumulate(p.balances.get(r - 1, {}), amounts)


def play(client: ChainClient, *, claim: bool = True) -> Played:
    """Two finalised rounds of four peers (committee of three), then round 3 open:

    * round 1: one update rejected; dave votes a minority pair, alice and bob finalise;
    * round 2: every update kept; alice and carol finalise; voters of round 1 are paid;
    * alice claims (``claim``), dave is slashed for equivocation, carol exits.
    """
    operator, *peers = client.dev_accounts[:5]
    p = Played(client=client, fed=client.deploy(PARAMS, sender=operator), operator=operator, peers=peers,
               reporter=client.dev_accounts[9])
    alice, bob, carol, dave = peers
    rule = RewardRule(reward_per_round=REWARD, contributor_share_bps=PARAMS.contributor_share_bps)
    p.fed.fund(10**18, sender=operator)
    for i, acct in enumerate(peers):
        p.fed.register([f"/ip4/127.0.0.1/tcp/{7000 + i}"], sender=acct)
    p.fed.start(sender=operator)

    p.balances[1] = _commit_round(p, 1, rule, reject=1)
    root = balances_root(p.balances[1])
    p.fed.vote_aggregate(1, h("wrong-model"), root, sender=dave)
    for acct in (alice, bob):
        p.fed.vote_aggregate(1, h("model-1"), root, sender=acct)
    p.majority[1], p.minority[1] = sorted([alice.address, bob.address]), [dave.address]
    assert p.fed.last_finalized_round() == 1

    p.balances[2] = _commit_round(p, 2, rule, reject=0)
    for acct in (alice, carol):
        p.fed.vote_aggregate(2, h("model-2"), balances_root(p.balances[2]), sender=acct)
    p.majority[2], p.minority[2] = sorted([alice.address, carol.address]), []
    assert p.fed.last_finalized_round() == 2 and p.fed.latest_rewards_root() == balances_root(p.balances[2])
    p.committees[3] = set(p.fed.committee())

    if claim:
        from peer.merkle import MerkleTree

        tree = MerkleTree(p.balances[2].items())
        p.fed.claim(p.balances[2][alice.address], tree.proof(alice.address), sender=alice)
        p.claimed[alice.address] = p.balances[2][alice.address]
    a = p.fed.sign_update(dave, round=3, payload_hash=h("one"), payload_size=10, n_samples=5, encoding=0)
    b = p.fed.sign_update(dave, round=3, payload_hash=h("two"), payload_size=10, n_samples=5, encoding=0)
    slashed = p.fed.report_equivocation(dave.address, a, b, sender=p.reporter).event("Slashed")
    p.slash_amount, p.slash_reward = slashed.args["amount"], slashed.args["reward"]
    p.fed.exit(sender=carol)
    return p


@functools.cache
def shared_played() -> Played:
    """One played federation on its own embedded chain, for the tests that only read it
    (shared by the ledger and CLI test modules: playing costs a few seconds on a busy CPU)."""
    return play(ChainClient.embedded(accounts=10))
