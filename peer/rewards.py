"""The reward rule: who earns what in a finalised round. Pure, integer-only, deterministic.

Every peer computes this from the same data (the round's chain-committed updates, which of
them the robust aggregator kept, and the previous round's votes on chain) and votes for the
Merkle root of the resulting cumulative balances, so the rule is part of consensus.

Rule ``capped_samples_v1`` (the only rule so far), for a round with pool ``R`` wei
(``rewardPerRound``) and contributors' share ``c`` basis points:

* **Contributors** share ``R * c // 10_000``: each update the aggregator *kept* earns in
  proportion to its sample count capped at ``sample_cap`` (so a peer cannot inflate its
  share by claiming more data); updates it rejected as outliers earn nothing.
  ``amount_i = pool_c * w_i // sum(w)``.
* **Voters** share the rest, equally, among the peers whose vote in the *previous* round
  matched that round's finalised (model hash, rewards root): votes of round r are only all
  known once round r finalised, so they are paid in round r + 1.
* Integer division leaves some wei (at most one per recipient): it stays in the pool, as
  does a part with no recipient.

Balances are cumulative: the Merkle tree of round r holds, for every peer that ever earned,
the total earned up to round r, and ``Federation.claim`` pays the difference to what the
peer already claimed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["RewardRule", "RoundRewards", "round_rewards", "accumulate"]

BPS = 10_000


@dataclass(frozen=True, slots=True)
class RewardRule:
    reward_per_round: int
    contributor_share_bps: int
    sample_cap: int = 1_000

    def __post_init__(self) -> None:
        if self.reward_per_round < 0:
            raise ValueError(f"reward_per_round must be >= 0, got {self.reward_per_round}")
        if not 0 <= self.contributor_share_bps <= BPS:
            raise ValueError(f"contributor_share_bps must be in 0..10000, got {self.contributor_share_bps}")
        if self.sample_cap <= 0:
            raise ValueError(f"sample_cap must be > 0, got {self.sample_cap}")


@dataclass(frozen=True, slots=True)
class RoundRewards:
    """What one round pays: address → wei, and how much of the pool stays undistributed."""

    amounts: dict[str, int]
    undistributed: int


def round_rewards(
    rule: RewardRule,
    *,
    contributors: Sequence[str],
    n_samples: Sequence[int],
    kept: Sequence[bool],
    previous_voters: Sequence[str],
) -> RoundRewards:
    """Rewards of one round (see the module docstring). ``contributors``, ``n_samples`` and
    ``kept`` are parallel, in the round's canonical order (by peer address)."""
    if not (len(contributors) == len(n_samples) == len(kept)):
        raise ValueError(
            f"contributors ({len(contributors)}), n_samples ({len(n_samples)}) and kept ({len(kept)}) differ in length"
        )
    pool_c = rule.reward_per_round * rule.contributor_share_bps // BPS
    pool_v = rule.reward_per_round - pool_c
    amounts: dict[str, int] = {}
    weights = [min(max(n, 0), rule.sample_cap) if k else 0 for n, k in zip(n_samples, kept, strict=True)]
    total_w = sum(weights)
    paid = 0
    if total_w > 0:
        for addr, w in zip(contributors, weights, strict=True):
            if w:
                a = pool_c * w // total_w
                amounts[addr] = amounts.get(addr, 0) + a
                paid += a
    voters = sorted(set(previous_voters))
    if voters:
        each = pool_v // len(voters)
        for addr in voters:
            amounts[addr] = amounts.get(addr, 0) + each
            paid += each
    return RoundRewards(amounts={a: v for a, v in amounts.items() if v > 0}, undistributed=rule.reward_per_round - paid)


def accumulate(balances: Mapping[str, int], amounts: Mapping[str, int]) -> dict[str, int]:
    """New cumulative balances: ``balances + amounts``, addresses in sorted order."""
    out = dict(balances)
    for addr, a in amounts.items():
        out[addr] = out.get(addr, 0) + a
    return {a: out[a] for a in sorted(out)}
