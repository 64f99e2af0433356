"""The rewards ledger of a federation: per participant what it did, earned, claimed and can
still claim, reconciled with the contract's events and balances.

Two sources, kept apart:

* **The chain** (facts anyone can read): ``Registered``/``Exited``/``Slashed``/
  ``StakeWithdrawn`` (membership, stake), ``RoundOpened`` (committees), ``UpdateCommitted``,
  ``VoteCast``, ``RoundFinalized``, ``Funded``, ``Claimed``, ``OwedWithdrawn``, and the views
  ``rewardPool``, ``claimed``, ``owed``, ``peerInfo``, the contract's balance and
  ``latestRewardsRoot``. :func:`read_chain` takes them at one block.
* **A peer's data directory** (what the chain only commits to): the cumulative balances in
  ``checkpoint.npz`` (the leaves of the rewards tree: the chain holds only its root, so they
  are *proven* by recomputing that root) and ``rounds.jsonl``, one line per finalised round,
  ``{"round": r, "committed": [...], "kept": [...], "model_hash": hex, "synced": bool}``:
  which updates the robust aggregator kept. A ``synced`` round is one the peer fetched
  instead of aggregating (it knows no kept list); round 0 is the genesis model.

:func:`tally` folds the events into :class:`Books`; :func:`participant_table` and
:func:`reconcile` are pure functions of the snapshot, the books and the data directory's
contents, so every check is unit-testable on a real chain's data.

Committee membership of a past round is recomputed from its ``RoundOpened`` (seed, nPeers),
the registration order and each peer's active flag *at the round's opening* (the contract
checks the flag again at commit time: a peer that left during the round is still counted).

Errors::

    FedchainError
     └── LedgerError   an unreadable checkpoint or rounds.jsonl, a checkpoint of another
                       contract, the chain moving during a snapshot
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eth_utils import is_address, keccak, to_checksum_address

from peer.errors import FedchainError
from peer.merkle import EMPTY_ROOT, MerkleTree, rewards_root
from peer.rewards import RewardRule, accumulate, round_rewards

if TYPE_CHECKING:
    from peer.chain import Event, Federation, FederationParams, PeerView

__all__ = [
    "EMPTY_ROOT",
    "NO_REWARDS_ROOT",
    "Books",
    "ChainSnapshot",
    "Check",
    "Checkpoint",
    "ClaimPlan",
    "LedgerError",
    "Participant",
    "Reconciliation",
    "RoundOutcome",
    "balances_root",
    "load_checkpoint_balances",
    "load_round_records",
    "participant_table",
    "plan_claim",
    "read_chain",
    "reconcile",
    "tally",
    "usable_records",
]


NO_REWARDS_ROOT = keccak(text="fedchain.rewards.none")
"""The contract's ``latestRewardsRoot`` before any round finalised (its public constant)."""

CHECKPOINT_FILE = "checkpoint.npz"
ROUNDS_FILE = "rounds.jsonl"


class LedgerError(FedchainError):
    """A peer's data directory cannot be read as a ledger source, or the chain cannot be
    read consistently; the message names the file, line or value."""


# ---------------------------------------------------------------- the data directory


@dataclass(frozen=True)
class Checkpoint:
    """The balances part of a peer's ``checkpoint.npz`` (written by ``PeerNode``)."""

    path: Path
    contract: str
    model_round: int
    model_hash: bytes
    balances: dict[str, int]  # checksummed address -> cumulative wei earned

    @property
    def root(self) -> bytes:
        """The rewards root these balances give (what the peer voted for)."""
        return balances_root(self.balances)

    def require_contract(self, address: str) -> None:
        """LedgerError unless this checkpoint belongs to the contract at ``address``."""
        if self.contract != to_checksum_address(address):
            raise LedgerError(f"{self.path} is a checkpoint of contract {self.contract}, not "
                              f"{to_checksum_address(address)}: pass the data directory of a peer of this federation")


@dataclass(frozen=True)
class RoundOutcome:
    """One line of ``rounds.jsonl``: a finalised round as the peer aggregated it."""

    round: int
    committed: tuple[str, ...]
    kept: tuple[str, ...]
    model_hash: bytes
    synced: bool = False  # the peer fetched this round's model: committed/kept unknown


def balances_root(balances: Mapping[str, int]) -> bytes:
    """Merkle root of the positive balances: :func:`peer.merkle.rewards_root`."""
    return rewards_root(balances)


def load_checkpoint_balances(data_dir: Path) -> Checkpoint:
    """Read ``<data_dir>/checkpoint.npz``'s metadata: contract, model round and balances."""
    import zipfile

    import numpy as np

    path = Path(data_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise LedgerError(f"no {CHECKPOINT_FILE} in {data_dir}: pass the data directory of a peer "
                          f"(its data_dir); a peer writes it when it holds its first finalised round")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
        balances = {_address(a, path): _wei(v, path, a) for a, v in meta["balances"].items()}
        return Checkpoint(path=path, contract=_address(meta["contract"], path),
                          model_round=int(meta["model_round"]), model_hash=bytes.fromhex(_hex(meta["model_hash"])),
                          balances={a: balances[a] for a in sorted(balances)})
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:  # zip, JSON, key, value
        raise LedgerError(f"{path} is not a readable peer checkpoint: {exc!r}") from exc


def load_round_records(data_dir: Path) -> list[RoundOutcome]:
    """Read ``<data_dir>/rounds.jsonl`` (absent: no records). A round written twice (a peer
    that restarted) keeps its last line; the result is ordered by round."""
    path = Path(data_dir) / ROUNDS_FILE
    if not path.is_file():
        return []
    out: dict[int, RoundOutcome] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            rec = RoundOutcome(round=int(raw["round"]),
                               committed=tuple(to_checksum_address(a) for a in raw["committed"]),
                               kept=tuple(to_checksum_address(a) for a in raw["kept"]),
                               model_hash=bytes.fromhex(_hex(raw["model_hash"])),
                               synced=bool(raw.get("synced", False)))
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerError(f"{path}:{n}: not a round record "
                              f'{{"round", "committed", "kept", "model_hash"}}: {exc!r}') from exc
        out[rec.round] = rec
    return [out[r] for r in sorted(out)]


def _hex(text: str) -> str:
    text = str(text)
    return text[2:] if text.startswith("0x") else text


def _address(value: str, path: Path) -> str:
    if not is_address(value):
        raise LedgerError(f"{path}: {value!r} is not an address")
    return to_checksum_address(value)


def _wei(value: str | int, path: Path, account: str) -> int:
    wei = int(value)
    if wei < 0:
        raise LedgerError(f"{path}: balance of {account} is negative ({wei})")
    return wei


# ---------------------------------------------------------------- the chain


@dataclass(frozen=True)
class ChainSnapshot:
    """Everything the ledger reads from the chain, taken at one block."""

    contract: str
    chain_id: int
    block: int
    params: FederationParams
    reward_pool: int
    contract_balance: int
    latest_rewards_root: bytes
    last_finalized_round: int
    peers: tuple[PeerView, ...]
    claimed: Mapping[str, int]  # claimed(a) for every account with a Claimed event
    owed: Mapping[str, int]  # owed(a) for every reporter with a Slashed event
    events: tuple[Event, ...]


def read_chain(federation: Federation, *, attempts: int = 5) -> ChainSnapshot:
    """Read the events and views the ledger needs. The views carry no block number, so the
    read is repeated until no block was mined during it (a live chain would otherwise show
    a claim in the events but not yet in the pool)."""
    client = federation.client
    for _ in range(attempts):
        block = client.block_number()
        events = tuple(federation.events())
        claimers = sorted({e.args["account"] for e in events if e.name == "Claimed"})
        reporters = sorted({e.args["reporter"] for e in events if e.name == "Slashed"})
        snapshot = ChainSnapshot(
            contract=federation.address, chain_id=client.chain_id, block=block,
            params=federation.params(), reward_pool=federation.reward_pool(),
            contract_balance=federation.balance(), latest_rewards_root=federation.latest_rewards_root(),
            last_finalized_round=federation.last_finalized_round(), peers=tuple(federation.peers()),
            claimed={a: federation.claimed(a) for a in claimers},
            owed={a: federation.owed(a) for a in reporters}, events=events)
        if client.block_number() == block:
            return snapshot
    raise LedgerError(f"the chain mined a block during each of {attempts} reads of {federation.address}: "
                      f"try again when it is quieter")


@dataclass
class Books:
    """The events of a federation, summed (see :func:`tally`)."""

    funded: int = 0
    slashed_to_pool: int = 0  # Slashed.amount - Slashed.reward
    claimed_total: int = 0
    rounds_opened: int = 0
    finalized: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # round -> (model, root)
    failed: set[int] = field(default_factory=set)
    committee_rounds: dict[str, int] = field(default_factory=dict)
    commitments: dict[int, dict[str, int]] = field(default_factory=dict)  # round -> peer -> nSamples
    votes: dict[int, list[tuple[str, bytes, bytes]]] = field(default_factory=dict)  # round -> [(voter, model, root)]
    claimed: dict[str, int] = field(default_factory=dict)  # sum of Claimed.amount
    claimed_cumulative: dict[str, int] = field(default_factory=dict)  # last Claimed.cumulativeAmount
    stake: dict[str, int] = field(default_factory=dict)  # registered - withdrawn - slashed
    slashed: dict[str, int] = field(default_factory=dict)  # Slashed.amount
    owed: dict[str, int] = field(default_factory=dict)  # rewards - withdrawals

    def majority_voters(self, round: int) -> list[str]:
        """Voters of ``round`` whose pair is the one it finalised (none if it did not)."""
        pair = self.finalized.get(round)
        return sorted({v for v, m, r in self.votes.get(round, []) if (m, r) == pair})


def tally(events: Iterable[Event], *, committee_size: int) -> Books:
    """Fold the contract's events (oldest first) into :class:`Books`."""
    from peer.chain import committee_indices

    books = Books()
    by_index: list[str] = []
    active: dict[str, bool] = {}
    add = _add
    for ev in events:
        a = ev.args
        if ev.name == "Registered":
            by_index.append(a["peer"])
            active[a["peer"]] = True
            add(books.stake, a["peer"], a["stake"])
        elif ev.name == "Exited":
            active[a["peer"]] = False
        elif ev.name == "StakeWithdrawn":
            add(books.stake, a["peer"], -a["amount"])
        elif ev.name == "Slashed":
            active[a["peer"]] = False
            add(books.stake, a["peer"], -a["amount"])
            add(books.slashed, a["peer"], a["amount"])
            add(books.owed, a["reporter"], a["reward"])
            books.slashed_to_pool += a["amount"] - a["reward"]
        elif ev.name == "OwedWithdrawn":
            add(books.owed, a["account"], -a["amount"])
        elif ev.name == "Funded":
            books.funded += a["amount"]
        elif ev.name == "Claimed":
            add(books.claimed, a["account"], a["amount"])
            books.claimed_cumulative[a["account"]] = a["cumulativeAmount"]
            books.claimed_total += a["amount"]
        elif ev.name == "RoundOpened":
            books.rounds_opened += 1
            n = a["nPeers"]
            for i in committee_indices(a["seed"], n, committee_size, [active[p] for p in by_index[:n]]):
                add(books.committee_rounds, by_index[i], 1)
        elif ev.name == "UpdateCommitted":
            books.commitments.setdefault(a["round"], {})[a["peer"]] = a["nSamples"]
        elif ev.name == "VoteCast":
            books.votes.setdefault(a["round"], []).append((a["voter"], a["modelHash"], a["rewardsRoot"]))
        elif ev.name == "RoundFinalized":
            books.finalized[a["round"]] = (a["modelHash"], a["rewardsRoot"])
        elif ev.name == "RoundFailed":
            books.failed.add(a["round"])
    return books


def _add(d: dict[str, int], key: str, amount: int) -> None:
    d[key] = d.get(key, 0) + amount


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Participant:
    """One row of the ledger. ``kept``/``rejected`` are None without round records,
    ``earned_wei``/``claimable_wei`` None without a checkpoint; ``index`` None for an
    account that earned or claimed without being a registered peer."""

    address: str
    index: int | None
    status: str  # active | exited | slashed | not a peer
    committee_rounds: int
    committed: int
    kept: int | None
    rejected: int | None
    votes: int
    votes_with_majority: int
    earned_wei: int | None
    claimed_wei: int
    claimable_wei: int | None
    stake_wei: int
    slashed: bool
    slashed_wei: int


def usable_records(books: Books, records: Sequence[RoundOutcome]) -> tuple[list[RoundOutcome], list[str]]:
    """The records that agree with the chain (the round finalised this model hash, and the
    committed set is the chain's), and a note for each one that does not. The genesis line
    (round 0) and synced rounds with commitments (no kept list) are neither."""
    good, bad = [], []
    for rec in records:
        final = books.finalized.get(rec.round)
        chain_committed = set(books.commitments.get(rec.round, {}))
        if rec.round == 0 or (rec.synced and chain_committed and final is not None and final[0] == rec.model_hash):
            continue
        if final is None:
            bad.append(f"round {rec.round} did not finalise on chain")
        elif final[0] != rec.model_hash:
            bad.append(f"round {rec.round}: model 0x{rec.model_hash.hex()[:12]}… is not the finalised "
                       f"0x{final[0].hex()[:12]}…")
        elif set(rec.committed) != chain_committed:
            bad.append(f"round {rec.round}: committed peers differ from the chain's UpdateCommitted events")
        elif not set(rec.kept) <= chain_committed:
            bad.append(f"round {rec.round}: kept peers that committed nothing")
        else:
            good.append(rec)
    return good, bad


def participant_table(
    snapshot: ChainSnapshot, books: Books, *, checkpoint: Checkpoint | None = None,
    records: Sequence[RoundOutcome] = (),
) -> list[Participant]:
    """Every registered peer (in index order), then every other account that earned or
    claimed (by address)."""
    good, _ = usable_records(books, records)
    kept: dict[str, int] = {}
    rejected: dict[str, int] = {}
    for rec in good:
        for address in rec.committed:
            _add(kept if address in rec.kept else rejected, address, 1)
    committed: dict[str, int] = {}
    for round_commitments in books.commitments.values():
        for address in round_commitments:
            _add(committed, address, 1)
    votes: dict[str, int] = {}
    with_majority: dict[str, int] = {}
    for r, cast in books.votes.items():
        for voter, m, root in cast:
            _add(votes, voter, 1)
            if books.finalized.get(r) == (m, root):
                _add(with_majority, voter, 1)
    balances = checkpoint.balances if checkpoint is not None else {}
    by_address = {p.address: p for p in snapshot.peers}
    others = sorted((set(balances) | set(books.claimed)) - set(by_address), key=lambda a: int(a, 16))
    rows = []
    for address in [p.address for p in snapshot.peers] + others:
        peer = by_address.get(address)
        earned = balances.get(address, 0) if checkpoint is not None else None
        claimed = books.claimed.get(address, 0)
        rows.append(Participant(
            address=address, index=peer.index if peer else None,
            status=("slashed" if peer.slashed else "active" if peer.active else "exited") if peer else "not a peer",
            committee_rounds=books.committee_rounds.get(address, 0), committed=committed.get(address, 0),
            kept=kept.get(address, 0) if good else None, rejected=rejected.get(address, 0) if good else None,
            votes=votes.get(address, 0), votes_with_majority=with_majority.get(address, 0),
            earned_wei=earned, claimed_wei=claimed,
            claimable_wei=max(earned - claimed, 0) if earned is not None else None,
            stake_wei=peer.stake if peer else 0, slashed=bool(peer and peer.slashed),
            slashed_wei=books.slashed.get(address, 0)))
    return rows


# ---------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class Check:
    """One reconciliation check: ``ok`` is None when it could not run (its data is missing)."""

    ok: bool | None
    detail: str


@dataclass(frozen=True)
class Reconciliation:
    checks: dict[str, Check]
    root_verified: bool | None  # None: no checkpoint to verify

    @property
    def reconciled(self) -> bool:
        """True when no check failed (checks that could not run do not fail)."""
        return all(c.ok is not False for c in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, c in self.checks.items() if c.ok is False]


def reconcile(
    snapshot: ChainSnapshot, books: Books, participants: Sequence[Participant], *,
    checkpoint: Checkpoint | None = None, records: Sequence[RoundOutcome] = (), sample_cap: int = 1_000,
) -> Reconciliation:
    """Check that the event sums match the contract's balances, and the checkpoint's
    balances match the chain's rewards root and its rules. Checks, by name:

    * ``reward_pool``: rewardPool == Σ Funded + Σ (Slashed.amount - Slashed.reward) - Σ Claimed
    * ``claimed``: per account, Σ Claimed.amount == claimed(account) == last cumulativeAmount
    * ``stakes``: per peer, Registered.stake - StakeWithdrawn - Slashed == peerInfo.stake
    * ``owed``: per reporter, Σ Slashed.reward - Σ OwedWithdrawn == owed(reporter)
    * ``contract_balance``: the contract holds at least rewardPool + stakes + owed
    * ``rewards_root``: the checkpoint's balances give the chain's latestRewardsRoot
    * ``earned_within_budget``: Σ earned <= rounds finalised x rewardPerRound
    * ``claims_within_earned``: every account claimed at most what it earned
    * ``round_records``: every line of rounds.jsonl agrees with the chain
    * ``earned_recomputed``: the reward rule (``sample_cap``) over the chain's commitments,
      the records' kept lists and the chain's votes gives the checkpoint's balances (runs
      only when the records cover every finalised round)
    """
    checks: dict[str, Check] = {}
    expected_pool = books.funded + books.slashed_to_pool - books.claimed_total
    checks["reward_pool"] = Check(
        snapshot.reward_pool == expected_pool,
        f"rewardPool {snapshot.reward_pool} wei; funded {books.funded} + slashed to pool "
        f"{books.slashed_to_pool} - claimed {books.claimed_total} = {expected_pool} wei")
    wrong = [f"{a}: events {books.claimed.get(a, 0)} (cumulative {books.claimed_cumulative.get(a, 0)}), "
             f"contract {snapshot.claimed.get(a, 0)}"
             for a in sorted(set(books.claimed) | set(snapshot.claimed))
             if not books.claimed.get(a, 0) == books.claimed_cumulative.get(a, 0) == snapshot.claimed.get(a, 0)]
    checks["claimed"] = Check(not wrong, "; ".join(wrong) or
                              f"{len(books.claimed)} account(s) claimed {books.claimed_total} wei in all")
    wrong = [f"{p.address}: events {books.stake.get(p.address, 0)}, contract {p.stake}"
             for p in snapshot.peers if books.stake.get(p.address, 0) != p.stake]
    stakes = sum(p.stake for p in snapshot.peers)
    checks["stakes"] = Check(not wrong, "; ".join(wrong) or f"{len(snapshot.peers)} peer(s) stake {stakes} wei")
    wrong = [f"{a}: events {books.owed.get(a, 0)}, contract {snapshot.owed.get(a, 0)}"
             for a in sorted(set(books.owed) | set(snapshot.owed)) if books.owed.get(a, 0) != snapshot.owed.get(a, 0)]
    owed = sum(snapshot.owed.values())
    checks["owed"] = Check(not wrong, "; ".join(wrong) or f"{owed} wei owed to reporters")
    needed = snapshot.reward_pool + stakes + owed
    surplus = snapshot.contract_balance - needed
    checks["contract_balance"] = Check(
        surplus >= 0,
        f"holds {snapshot.contract_balance} wei for pool + stakes + owed = {needed} wei"
        + (f" ({surplus} wei more: ether sent without fund())" if surplus > 0 else ""))

    root_verified = None
    if checkpoint is None:
        checks["rewards_root"] = Check(None, "no checkpoint (pass --data-dir of a peer)")
    else:
        root_verified, detail = _check_root(snapshot, books, checkpoint)
        checks["rewards_root"] = Check(root_verified, detail)
    earned = {p.address: p.earned_wei for p in participants if p.earned_wei is not None}
    if root_verified:
        n_final = len(books.finalized)
        budget = n_final * snapshot.params.reward_per_round
        checks["earned_within_budget"] = Check(
            sum(earned.values()) <= budget,
            f"earned {sum(earned.values())} wei of at most {n_final} round(s) x "
            f"{snapshot.params.reward_per_round} = {budget} wei")
        over = [f"{p.address}: claimed {p.claimed_wei} > earned {p.earned_wei}"
                for p in participants if p.earned_wei is not None and p.claimed_wei > p.earned_wei]
        checks["claims_within_earned"] = Check(not over, "; ".join(over) or "every claim within its earnings")
    else:
        skipped = "skipped: balances not verified against the chain's rewards root"
        checks["earned_within_budget"] = checks["claims_within_earned"] = Check(None, skipped)
    good, bad = usable_records(books, records)
    n_synced = sum(1 for rec in records if rec.round) - len(good) - len(bad)
    checks["round_records"] = (Check(None, "no rounds.jsonl") if not records else Check(
        not bad, "; ".join(bad) or f"{len(good)} round(s) agree with the chain"
                                   + (f", {n_synced} synced (no kept list)" if n_synced else "")))
    checks["earned_recomputed"] = _recompute(snapshot, books, checkpoint, good if not bad else [], sample_cap)
    return Reconciliation(checks=checks, root_verified=root_verified)


def _check_root(snapshot: ChainSnapshot, books: Books, cp: Checkpoint) -> tuple[bool, str]:
    root, latest = cp.root, snapshot.latest_rewards_root
    if cp.contract != snapshot.contract:
        return False, f"{cp.path} is a checkpoint of contract {cp.contract}, not {snapshot.contract}"
    if root == latest or (root == EMPTY_ROOT and latest == NO_REWARDS_ROOT):
        return True, f"0x{root.hex()}: the checkpoint's balances (round {cp.model_round}) " \
                     f"verified against the chain's rewards root"
    own = books.finalized.get(cp.model_round)
    behind = own is not None and own[1] == root and cp.model_round < snapshot.last_finalized_round
    why = (f"it matches round {cp.model_round}'s root: the peer is behind round {snapshot.last_finalized_round}, "
           f"wait for it to sync" if behind else "the balances are not the ones the chain agreed on")
    return False, f"MISMATCH: the checkpoint's balances give root 0x{root.hex()}, the chain's latest is " \
                  f"0x{latest.hex()}; {why}"


def _recompute(snapshot: ChainSnapshot, books: Books, cp: Checkpoint | None, good: Sequence[RoundOutcome],
               sample_cap: int) -> Check:
    """Replay ``peer.rewards`` over every finalised round up to the checkpoint's."""
    if cp is None:
        return Check(None, "no checkpoint")
    rounds = sorted(r for r in books.finalized if r <= cp.model_round)
    by_round = {rec.round: rec for rec in good}
    missing = [r for r in rounds if r not in by_round]
    if missing:
        return Check(None, f"skipped: no usable record of finalised round(s) {_span(missing)}")
    rule = RewardRule(reward_per_round=snapshot.params.reward_per_round,
                      contributor_share_bps=snapshot.params.contributor_share_bps, sample_cap=sample_cap)
    balances: dict[str, int] = {}
    for r in rounds:
        committed = sorted(books.commitments.get(r, {}).items(), key=lambda kv: int(kv[0], 16))
        kept = set(by_round[r].kept)
        amounts = round_rewards(rule, contributors=[p for p, _ in committed], n_samples=[n for _, n in committed],
                                kept=[p in kept for p, _ in committed],
                                previous_voters=books.majority_voters(r - 1)).amounts
        balances = accumulate(balances, amounts)
    ours = {a: v for a, v in cp.balances.items() if v}
    diff = [f"{a}: rule {balances.get(a, 0)}, checkpoint {ours.get(a, 0)}"
            for a in sorted(set(balances) | set(ours)) if balances.get(a, 0) != ours.get(a, 0)]
    if diff:
        return Check(False, "; ".join(diff) + f" (rule capped_samples_v1, sample cap {sample_cap}: "
                                              f"pass --sample-cap if the peers use another)")
    return Check(True, f"rule capped_samples_v1 (sample cap {sample_cap}) over {len(rounds)} round(s) "
                       f"gives the checkpoint's balances")


def _span(rounds: Sequence[int]) -> str:
    return ", ".join(map(str, rounds[:8])) + (f" … ({len(rounds)} in all)" if len(rounds) > 8 else "")


# ---------------------------------------------------------------- claiming


@dataclass(frozen=True)
class ClaimPlan:
    """What ``claim`` would send for ``account``: ``amount`` is 0 when there is nothing to
    claim (``reason`` says why)."""

    account: str
    cumulative: int
    already_claimed: int
    proof: tuple[bytes, ...]
    reason: str = ""

    @property
    def amount(self) -> int:
        return max(self.cumulative - self.already_claimed, 0)


def plan_claim(checkpoint: Checkpoint, *, account: str, latest_root: bytes, already_claimed: int,
               reward_pool: int) -> ClaimPlan:
    """The claim of ``account`` from ``checkpoint``'s balances, checked first against the
    chain's ``latest_root`` (a proof against another root would only revert)."""
    account = to_checksum_address(account)
    if latest_root == NO_REWARDS_ROOT:
        return ClaimPlan(account, 0, already_claimed, (), reason="no round has finalised yet")
    root = checkpoint.root
    if root != latest_root:
        raise LedgerError(f"the checkpoint's balances (round {checkpoint.model_round}, {checkpoint.path}) give root "
                          f"0x{root.hex()}, the chain's latest is 0x{latest_root.hex()}: wait for this peer to "
                          f"sync, or use the data directory of a peer that follows the chain")
    cumulative = checkpoint.balances.get(account, 0)
    if cumulative <= already_claimed:
        why = (f"it has earned nothing as of round {checkpoint.model_round}" if cumulative == 0 else
               f"it earned {cumulative} wei as of round {checkpoint.model_round} and claimed {already_claimed} wei")
        return ClaimPlan(account, cumulative, already_claimed, (), reason=why)
    if cumulative - already_claimed > reward_pool:
        raise LedgerError(f"{account} can claim {cumulative - already_claimed} wei but the reward pool holds only "
                          f"{reward_pool} wei: ask the operator to top it up (the contract's fund())")
    tree = MerkleTree((a, v) for a, v in checkpoint.balances.items() if v > 0)
    return ClaimPlan(account, cumulative, already_claimed, tuple(tree.proof(account)))
