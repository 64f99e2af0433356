"""The round protocol as a pure decision function.

``decide(chain, local)`` looks at what the chain says (the current round, its phase and
deadlines, the latest finalised model hash) and what this peer holds (its model, what it
trained, committed, aggregated and voted), and returns the one next thing to do. It does no
I/O, so every branch is unit-tested without a network or a chain; ``peer.node`` carries the
decisions out.

The round (DESIGN.md), from one peer's point of view::

    NotStarted ──start()──► Commit ──all committed / deadline──► Vote ──quorum──► (next round)
                              │ committee: TRAIN, then COMMIT      │ everyone: AGGREGATE, then VOTE
                              │                                    └─deadline──► Expired: FAIL_ROUND
    at any time: if the chain finalised a model we do not hold, ADOPT ours (same hash) or SYNC it.

A peer that misses a window skips that round: the decision for a later round never depends
on having done the earlier one, only on holding the latest finalised model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Phase", "Action", "ChainView", "LocalState", "Decision", "decide"]


class Phase(enum.IntEnum):
    """``Federation.roundState().phase``."""

    NOT_STARTED = 0
    COMMIT = 1
    VOTE = 2
    EXPIRED = 3
    DONE = 4


class Action(enum.Enum):
    WAIT = "wait"  # nothing to do until the chain or the clock moves
    ADOPT = "adopt"  # the chain finalised the aggregate we computed: make it our model
    SYNC_MODEL = "sync_model"  # the chain finalised a model we do not hold: fetch it, check its hash
    TRAIN = "train"  # we are in the committee: train on local data
    COMMIT = "commit"  # publish the update on gossip and commit its hash on chain
    AGGREGATE = "aggregate"  # collect the committed updates and aggregate them
    VOTE = "vote"  # vote for (model hash, rewards root)
    FAIL_ROUND = "fail_round"  # the vote window closed without a quorum
    DONE = "done"  # the federation ran its last round and we hold the final model


@dataclass(frozen=True, slots=True)
class ChainView:
    """What the chain says, read at one moment."""

    round: int
    phase: Phase
    in_committee: bool
    commit_deadline: int
    vote_deadline: int
    last_finalized_round: int
    latest_model_hash: bytes
    now: float  # wall-clock seconds: the chain enforces deadlines; we only decide when to try


@dataclass(frozen=True, slots=True)
class LocalState:
    """What this peer holds. Rounds are 0 when nothing was done yet."""

    model_round: int  # the finalised round whose model we hold (0 = genesis)
    model_hash: bytes
    trained_round: int = 0  # round of the update we hold, ready to publish
    committed_round: int = 0
    aggregated_round: int = 0  # round of the aggregate we hold
    aggregated_hash: bytes = b""  # hash of that aggregate model
    voted_round: int = 0
    failed_round: int = 0  # last round we tried to mark failed


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    round: int
    reason: str


def decide(chain: ChainView, local: LocalState) -> Decision:
    """The next action of a peer, given the chain and its own state. Pure and total."""
    r = chain.round
    # 1. Hold the latest finalised model before anything else: every round starts from it.
    if local.model_hash != chain.latest_model_hash or local.model_round != chain.last_finalized_round:
        if (
            chain.last_finalized_round > 0
            and local.aggregated_round == chain.last_finalized_round
            and local.aggregated_hash == chain.latest_model_hash
        ):
            return Decision(Action.ADOPT, chain.last_finalized_round, "the chain finalised our aggregate")
        if chain.last_finalized_round == local.model_round and local.model_hash != chain.latest_model_hash:
            return Decision(Action.SYNC_MODEL, chain.last_finalized_round, "our model differs from the chain's")
        if chain.last_finalized_round != local.model_round:
            return Decision(Action.SYNC_MODEL, chain.last_finalized_round, "the chain finalised a model we lack")
    if chain.phase == Phase.DONE:
        return Decision(Action.DONE, r, "the federation ran its last round")
    if chain.phase == Phase.NOT_STARTED:
        return Decision(Action.WAIT, r, "round 1 is not open yet")
    if chain.phase == Phase.COMMIT:
        if not chain.in_committee:
            return Decision(Action.WAIT, r, "not in this round's committee")
        if local.committed_round >= r:
            return Decision(Action.WAIT, r, "committed; waiting for the commit phase to close")
        if chain.now >= chain.commit_deadline:
            return Decision(Action.WAIT, r, "commit deadline passed")
        if local.trained_round < r:
            return Decision(Action.TRAIN, r, "in the committee")
        return Decision(Action.COMMIT, r, "update ready")
    if chain.phase == Phase.VOTE:
        if local.voted_round >= r:
            return Decision(Action.WAIT, r, "voted; waiting for the quorum")
        if local.aggregated_round < r:
            return Decision(Action.AGGREGATE, r, "commit phase closed")
        return Decision(Action.VOTE, r, "aggregate ready")
    # Phase.EXPIRED
    if local.failed_round >= r:
        return Decision(Action.WAIT, r, "asked the chain to fail this round")
    return Decision(Action.FAIL_ROUND, r, "vote window closed without a quorum")

