"""The reward rule, pinned on fixed examples (it is part of consensus)."""

from __future__ import annotations

import pytest

from peer.rewards import RewardRule, accumulate, round_rewards

A, B, C, D = ("0x" + c * 40 for c in "abcd")
ETH = 10**18


def test_pinned_example() -> None:
    rule = RewardRule(reward_per_round=ETH, contributor_share_bps=7000, sample_cap=1000)
    out = round_rewards(rule, contributors=[A, B, C], n_samples=[1000, 1500, 800], kept=[True, True, False],
                        previous_voters=[A, B, D])
    # contributors: 0.7 ETH split 1000:1000 (B capped at 1000); C rejected earns nothing
    # voters: 0.3 ETH split three ways
    assert out.amounts == {
        A: 350_000_000_000_000_000 + 100_000_000_000_000_000,
        B: 350_000_000_000_000_000 + 100_000_000_000_000_000,
        D: 100_000_000_000_000_000,
    }
    assert out.undistributed == 0
    assert sum(out.amounts.values()) + out.undistributed == ETH


def test_rounding_dust_stays_in_pool() -> None:
    rule = RewardRule(reward_per_round=100, contributor_share_bps=5000)
    out = round_rewards(rule, contributors=[A, B, C], n_samples=[1, 1, 1], kept=[True] * 3, previous_voters=[A, B, C])
    assert out.amounts == {A: 32, B: 32, C: 32}
    assert out.undistributed == 4


def test_nobody_kept_and_no_voters_pays_nothing() -> None:
    rule = RewardRule(reward_per_round=ETH, contributor_share_bps=7000)
    out = round_rewards(rule, contributors=[A], n_samples=[10], kept=[False], previous_voters=[])
    assert out.amounts == {} and out.undistributed == ETH


def test_mismatched_lengths_are_refused() -> None:
    rule = RewardRule(reward_per_round=1, contributor_share_bps=1)
    with pytest.raises(ValueError, match="differ in length"):
        round_rewards(rule, contributors=[A, B], n_samples=[1], kept=[True], previous_voters=[])


def test_bad_rule_names_the_value() -> None:
    with pytest.raises(ValueError, match="contributor_share_bps"):
        RewardRule(reward_per_round=1, contributor_share_bps=10_001)


def test_accumulate_is_sorted_and_cumulative() -> None:
    bal = accumulate({B: 5}, {A: 1, B: 2})
    assert list(bal) == [A, B] and bal == {A: 1, B: 7}
