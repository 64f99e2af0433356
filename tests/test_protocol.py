"""The round protocol's decision function, branch by branch, with no network or chain."""

from __future__ import annotations

import pytest

from peer.protocol import Action, ChainView, LocalState, Phase, decide

GENESIS = b"\x01" * 32
M1 = b"\x02" * 32
M2 = b"\x03" * 32


def view(**kw) -> ChainView:
    base = dict(round=1, phase=Phase.COMMIT, in_committee=True, commit_deadline=100, vote_deadline=200,
                last_finalized_round=0, latest_model_hash=GENESIS, now=50.0)
    base.update(kw)
    return ChainView(**base)


def local(**kw) -> LocalState:
    base = dict(model_round=0, model_hash=GENESIS)
    base.update(kw)
    return LocalState(**base)


def test_not_started_waits() -> None:
    assert decide(view(round=0, phase=Phase.NOT_STARTED), local()).action is Action.WAIT


def test_committee_member_trains_then_commits_then_waits() -> None:
    assert decide(view(), local()).action is Action.TRAIN
    assert decide(view(), local(trained_round=1)).action is Action.COMMIT
    assert decide(view(), local(trained_round=1, committed_round=1)).action is Action.WAIT


def test_non_member_waits_in_commit_phase() -> None:
    d = decide(view(in_committee=False), local())
    assert d.action is Action.WAIT and "committee" in d.reason


def test_commit_deadline_passed_does_not_train() -> None:
    assert decide(view(now=100.0), local()).action is Action.WAIT


def test_update_trained_for_an_old_round_is_not_committed() -> None:
    # trained in round 1, missed it; round 2 needs a fresh update from the round-1 model
    d = decide(view(round=2), local(trained_round=1, committed_round=0))
    assert d.action is Action.TRAIN and d.round == 2


def test_vote_phase_aggregates_then_votes_then_waits() -> None:
    v = view(phase=Phase.VOTE)
    assert decide(v, local()).action is Action.AGGREGATE
    assert decide(v, local(aggregated_round=1, aggregated_hash=M1)).action is Action.VOTE
    assert decide(v, local(aggregated_round=1, aggregated_hash=M1, voted_round=1)).action is Action.WAIT


def test_finalised_aggregate_is_adopted() -> None:
    v = view(round=2, last_finalized_round=1, latest_model_hash=M1)
    d = decide(v, local(aggregated_round=1, aggregated_hash=M1, voted_round=1))
    assert d.action is Action.ADOPT and d.round == 1


def test_finalised_model_that_differs_from_ours_is_synced() -> None:
    v = view(round=2, last_finalized_round=1, latest_model_hash=M1)
    d = decide(v, local(aggregated_round=1, aggregated_hash=M2, voted_round=1))
    assert d.action is Action.SYNC_MODEL and d.round == 1


def test_late_joiner_syncs_before_anything_else() -> None:
    v = view(round=5, last_finalized_round=4, latest_model_hash=M2, phase=Phase.VOTE)
    assert decide(v, local()).action is Action.SYNC_MODEL


def test_same_round_different_hash_is_synced() -> None:
    v = view(round=3, last_finalized_round=2, latest_model_hash=M2)
    assert decide(v, local(model_round=2, model_hash=M1)).action is Action.SYNC_MODEL


def test_expired_round_is_failed_once() -> None:
    v = view(phase=Phase.EXPIRED)
    assert decide(v, local()).action is Action.FAIL_ROUND
    assert decide(v, local(failed_round=1)).action is Action.WAIT


def test_done_after_holding_the_final_model() -> None:
    v = view(round=10, phase=Phase.DONE, last_finalized_round=10, latest_model_hash=M1)
    assert decide(v, local(model_round=10, model_hash=M1)).action is Action.DONE
    # but first adopt the last aggregate
    assert decide(v, local(aggregated_round=10, aggregated_hash=M1)).action is Action.ADOPT


@pytest.mark.parametrize("phase", list(Phase))
def test_decide_is_total(phase: Phase) -> None:
    for in_committee in (True, False):
        d = decide(view(phase=phase, in_committee=in_committee), local())
        assert isinstance(d.action, Action) and d.reason
