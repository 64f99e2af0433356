"""A peer node: carries out the decisions of :func:`peer.protocol.decide`.

One :class:`PeerNode` holds one participant's key, data, model and network handle. Its
``run`` loop reads the chain, asks ``decide`` what to do, does it, and repeats. All chain
calls go through the one chain client (synchronous web3) in a worker thread; training and
aggregation run in worker threads too, so the trio loop keeps serving gossip and payloads.

Failure policy: a phase that cannot be completed (a missed deadline, a revert because the
round moved on, a payload that cannot be fetched) is logged and counted, and the peer moves
to the next decision; nothing a remote peer sends can crash the loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import trio

from gossip.errors import GossipError
from gossip.wire import UpdateAnnouncement, encode_arrays, sign_update
from peer.aggregate import aggregate, kept_mask
from peer.attacks import make_byzantine
from peer.codecs import decode_update, encode_update
from peer.data import Dataset
from peer.errors import FedchainError
from peer.merkle import rewards_root
from peer.models import ModelSpec, canonical_bytes, model_hash, tensor_sizes
from peer.privacy import DPConfig, PrivacyAccountant
from peer.protocol import Action, ChainView, Decision, LocalState, Phase, decide
from peer.rewards import RewardRule, accumulate, round_rewards
from peer.train import TrainConfig, evaluate, train_local

__all__ = ["NodeConfig", "PeerNode", "RoundRecord", "NODE_ATTACKS"]

# Byzantine behaviours at the protocol level (peer.attacks holds the update-level ones):
# nan_inf publishes a well-formed payload full of NaNs; mismatch commits a hash that is not
# the hash of what it published; equivocate gossips two different signed updates for one
# round (and commits one of them), which any peer that sees both can prove on chain.
NODE_ATTACKS = ("nan_inf", "mismatch", "equivocate")

log = logging.getLogger("fedchain.node")

# Reverts that mean "not yet by the chain's clock" rather than "never": retried, not skipped.
CLOCK_ERRORS = frozenset({"NotVotePhase", "RoundNotExpired"})
ENCODING_FLOAT32 = 0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Options of one peer node (loaded from the peer's TOML by the CLI)."""

    data_dir: Path
    model: ModelSpec
    train: TrainConfig
    dp: DPConfig | None = None
    aggregator: str = "median"
    aggregator_f: int = 0  # Byzantine peers assumed, for Krum / trimmed mean / nnm
    aggregator_pre: tuple[str, ...] = ()  # pre-aggregation steps: clip, nnm, bucketing
    codec: str = "float32"
    kept_factor: float = 3.0
    sample_cap: int = 1_000
    byzantine: str | None = None  # attack name: simulation and demo only
    poll_interval: float = 0.05
    fetch_timeout: float = 15.0
    max_payload_bytes: int = 64 * 1024 * 1024
    linger: float = 0.0  # seconds to keep serving the final model after the last round


@dataclass(slots=True)
class RoundRecord:
    """What this peer saw of one round (for the live view, the demo and metrics)."""

    round: int
    committed: int = 0
    valid: int = 0
    kept: int = 0
    rejected: list[str] = field(default_factory=list)
    model_hash: str = ""
    finalized: bool = False
    accuracy: float | None = None
    loss: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    gas: dict[str, int] = field(default_factory=dict)
    kept_peers: list[str] = field(default_factory=list)
    committed_peers: list[str] = field(default_factory=list)
    dp_epsilon: float | None = None


class PeerNode:
    """One participant. ``run()`` until the federation is done or ``stop_after`` rounds."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        federation: Any,
        account: Any,
        network: Any,
        train_data: Dataset,
        test_data: Dataset,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = config
        self.fed = federation
        self.account = account
        self.address: str = account.address
        self.net = network
        self.train_data = train_data
        self.test_data = test_data
        self._on_event = on_event or (lambda kind, data: None)
        params = federation.params()
        self.params = params
        self.rule = RewardRule(
            reward_per_round=params.reward_per_round,
            contributor_share_bps=params.contributor_share_bps,
            sample_cap=config.sample_cap,
        )
        self.chain_id: int = federation.client.chain_id
        self.contract: str = federation.address
        self.dim = _n_params(config.model)
        self.model: np.ndarray = _genesis_vector(config.model)
        self.balances: dict[str, int] = {}
        self.state = LocalState(model_round=0, model_hash=model_hash(self.model))
        if self.state.model_hash != params.genesis_model_hash:
            raise ValueError(
                f"the federation's genesis model hash {params.genesis_model_hash.hex()} is not the hash of "
                f"model {config.model} ({self.state.model_hash.hex()}): wrong model spec for this contract"
            )
        self.records: dict[int, RoundRecord] = {}
        self.counters: dict[str, int] = {}
        self._update: tuple[UpdateAnnouncement, bytes, int] | None = None
        self._aggregate: tuple[np.ndarray, dict[str, int]] | None = None
        self._inbox: dict[bytes, tuple[UpdateAnnouncement, bytes]] = {}
        self._residual: np.ndarray | None = None
        self._seen_round = -1
        self._chain_cache_key: tuple[int, bool] | None = None
        self._chain_cache: tuple[int, bytes] = (0, b"")
        self._clock_offset = 0.0
        self._segments = tensor_sizes(config.model)  # int8 codec: one scale per tensor
        self._accountant = (PrivacyAccountant(delta=float(config.dp.delta), kind=config.dp.accountant)
                            if config.dp is not None else None)
        self._announced: dict[tuple[str, int], UpdateAnnouncement] = {}
        self._checkpoint = Path(config.data_dir) / "checkpoint.npz"

    # ------------------------------------------------------------------ life cycle

    async def run(self, *, stop_after: int | None = None) -> None:
        """Take part until the federation is done (or round ``stop_after`` is finalised)."""
        await self._resume()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_updates)
            try:
                while True:
                    view = await self._read_chain()
                    if view.round != self._seen_round:
                        await self._on_new_round(view.round)
                    decision = decide(view, self.state)
                    if decision.action is Action.DONE:
                        # stragglers (restarted or late peers) may still need the final model
                        await trio.sleep(self.cfg.linger)
                        break
                    if stop_after is not None and self.state.model_round >= stop_after:
                        break
                    if decision.action is Action.WAIT:
                        await trio.sleep(self.cfg.poll_interval)  # polling the chain: it has no push
                        continue
                    await self._act(decision, view)
            finally:
                nursery.cancel_scope.cancel()

    async def _resume(self) -> None:
        """Start from the checkpoint (if any) and the chain's record of what we already did,
        so that a restarted peer never commits or votes twice in a round."""
        if self._checkpoint.exists():
            with np.load(self._checkpoint, allow_pickle=False) as z:
                vec = z["model"].astype(np.float32, copy=True)
                meta = json.loads(bytes(z["meta"]).decode())
            r = int(meta["model_round"])
            # a checkpoint counts only if the chain finalised exactly this model in its round
            # (the same address can host another federation on a fresh devnet)
            onchain = await self._chain(self.fed.finalized_model, r) if r > 0 else self.params.genesis_model_hash
            if vec.shape == (self.dim,) and model_hash(vec).hex() == meta["model_hash"] and model_hash(vec) == onchain:
                self.model = vec
                self.balances = {a: int(v) for a, v in meta["balances"].items()}
                self.state = replace(self.state, model_round=r, model_hash=model_hash(vec))
                self._emit("resumed", {"round": self.state.model_round})
            else:
                self._emit("checkpoint_ignored", {"round": r, "reason": "not this federation's finalised model"})
        info = await self._chain(self.fed.peer_info, self.address)
        self.state = replace(
            self.state,
            committed_round=max(self.state.committed_round, info.last_commit_round),
            voted_round=max(self.state.voted_round, info.last_vote_round),
        )
        self.net.provide(canonical_bytes(self.model))

    async def _on_new_round(self, r: int) -> None:
        """Admit announcements of this round (and the next, for fast peers) from registered,
        active peers only; drop payloads of rounds that are over."""
        peers = await self._chain(self.fed.peers)
        self.net.set_allowed_senders({p.address for p in peers if p.active})
        self.net.set_round_window(max(r - 1, 0), r + 1)
        self._inbox = {h: v for h, v in self._inbox.items() if v[0].round >= r - 1}
        self._announced = {k: v for k, v in self._announced.items() if k[1] >= r - 1}
        self._seen_round = r

    async def _receive_updates(self) -> None:
        async for ann, payload in self.net.updates():
            self._inbox[ann.payload_hash] = (ann, payload)
            first = self._announced.setdefault((ann.sender, ann.round), ann)
            if first.payload_hash != ann.payload_hash:
                # two different updates signed by one peer for one round: provable equivocation
                await self._report_equivocation(first, ann)

    async def _report_equivocation(self, a: UpdateAnnouncement, b: UpdateAnnouncement) -> None:
        from peer.chain import signed_update_of

        self._count("equivocation_seen")
        self._emit("equivocation", {"offender": a.sender, "round": a.round})
        receipt = await self._send("reportEquivocation", self.fed.report_equivocation, a.sender,
                                   signed_update_of(a), signed_update_of(b))
        if receipt is not None:
            self._emit("slashed", {"offender": a.sender, "round": a.round, "gas": receipt.gas_used})

    # ------------------------------------------------------------------ reading the chain

    async def _chain(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def _read_chain(self) -> ChainView:
        """One look at the chain: 2 RPC calls in the common case (the round, and membership
        during a commit phase); the finalised hash and the chain's clock are re-read only when
        the round changes, since only a finalisation or a failure changes them."""

        def read() -> ChainView:
            rs = self.fed.round_state()
            key = (rs.round, Phase(rs.phase) is Phase.DONE)
            if key != self._chain_cache_key:
                self._chain_cache = (self.fed.last_finalized_round(), self.fed.latest_model_hash())
                # chain time minus ours: eth-tester runs ahead (a second per block), devnets match
                self._clock_offset = max(0.0, float(self.fed.client.timestamp()) - time.time())
                self._chain_cache_key = key
            last_final, latest_hash = self._chain_cache
            now = time.time() + self._clock_offset
            phase = Phase(rs.phase)
            # The chain only re-evaluates deadlines in new blocks; on a quiet chain the
            # next transaction's block will see them passed, so decide on the clock too.
            if phase is Phase.COMMIT and now >= rs.commit_deadline:
                phase = Phase.VOTE
            if phase is Phase.VOTE and now >= rs.vote_deadline:
                phase = Phase.EXPIRED
            return ChainView(
                round=rs.round,
                phase=phase,
                in_committee=self.fed.is_committee_member(self.address) if phase is Phase.COMMIT else False,
                commit_deadline=rs.commit_deadline,
                vote_deadline=rs.vote_deadline,
                last_finalized_round=last_final,
                latest_model_hash=latest_hash,
                now=now,
            )

        return await trio.to_thread.run_sync(read)

    # ------------------------------------------------------------------ acting

    async def _act(self, d: Decision, view: ChainView) -> None:
        self._emit("decision", {"action": d.action.value, "round": d.round, "reason": d.reason})
        handler = {
            Action.ADOPT: self._adopt,
            Action.SYNC_MODEL: self._sync_model,
            Action.TRAIN: self._train,
            Action.COMMIT: self._commit,
            Action.AGGREGATE: self._collect_and_aggregate,
            Action.VOTE: self._vote,
            Action.FAIL_ROUND: self._fail_round,
        }[d.action]
        try:
            await handler(d.round, view)
        except _RetryLater:
            pass

    async def _train(self, r: int, view: ChainView) -> None:
        t0 = time.perf_counter()
        result = await trio.to_thread.run_sync(
            lambda: train_local(
                self.cfg.model, self.model, self.train_data, self.cfg.train,
                round=r, peer_seed=_peer_seed(self.address), dp=self.cfg.dp, accountant=self._accountant,
            )
        )
        update = result.update
        encoding = ENCODING_FLOAT32
        if self.cfg.byzantine:
            payload, update = self._byzantine_payload(update, r)
        else:
            payload, encoding, self._residual = encode_update(update, codec=self.cfg.codec, residual=self._residual,
                                                              segments=self._segments)
        digest = hashlib.sha256(payload).digest()
        ann = sign_update(
            self.account.key, chain_id=self.chain_id, contract=self.contract, round=r,
            payload_hash=digest, payload_size=len(payload), n_samples=result.n_samples, encoding=encoding,
        )
        self._update = (ann, payload, result.n_samples)
        self.state = replace(self.state, trained_round=r)
        rec = self._record(r)
        rec.seconds["train"] = time.perf_counter() - t0
        if result.dp_epsilon_total is not None:
            rec.dp_epsilon = result.dp_epsilon_total

    def _byzantine_payload(self, honest: np.ndarray, r: int) -> tuple[bytes, np.ndarray]:
        """The update a Byzantine peer publishes instead of its honest one (simulation)."""
        name = self.cfg.byzantine or ""
        if name in ("mismatch", "equivocate"):  # honest update; the lie is in _commit
            payload, _, _ = encode_update(honest, codec="float32")
            return payload, honest
        if name == "nan_inf":
            bad = honest.copy()
            bad[:: max(1, bad.size // 7)] = np.nan
            # a well-formed float32 payload (peer.codecs layout) carrying NaNs
            return encode_arrays({"values": bad}, {"codec": "float32", "dim": int(bad.size), "format": 1}), bad
        bad = np.asarray(make_byzantine(name, [honest], honest, seed=r), dtype=np.float32).reshape(-1)
        payload, _, _ = encode_update(bad, codec="float32")
        return payload, bad

    async def _commit(self, r: int, view: ChainView) -> None:
        assert self._update is not None
        ann, payload, n_samples = self._update
        t0 = time.perf_counter()
        await self.net.publish_update(ann, payload)
        self._inbox[ann.payload_hash] = (ann, payload)
        t1 = time.perf_counter()
        committed_hash = ann.payload_hash
        if self.cfg.byzantine == "mismatch":
            committed_hash = hashlib.sha256(b"not the payload" + payload[:64]).digest()
        elif self.cfg.byzantine == "equivocate":
            other = np.frombuffer(payload, dtype=np.uint8).copy()
            other[-1] ^= 1  # a second, different update for the same round, signed as well
            twin = sign_update(self.account.key, chain_id=self.chain_id, contract=self.contract, round=r,
                               payload_hash=hashlib.sha256(other.tobytes()).digest(), payload_size=len(other),
                               n_samples=n_samples, encoding=ann.encoding)
            await self.net.publish_update(twin, other.tobytes())
        receipt = await self._send("commitUpdate", self.fed.commit_update, r, committed_hash, n_samples)
        self.state = replace(self.state, committed_round=r)
        rec = self._record(r)
        rec.seconds["publish"] = t1 - t0
        rec.seconds["commit_tx"] = time.perf_counter() - t1
        if receipt is not None:
            rec.gas["commitUpdate"] = receipt.gas_used

    async def _collect_and_aggregate(self, r: int, view: ChainView) -> None:
        rec = self._record(r)
        t0 = time.perf_counter()
        commitments = await self._chain(self.fed.commitments, r)  # ordered by peer address
        rec.committed = len(commitments)
        rec.committed_peers = [c.peer for c in commitments]
        deadline = min(self.cfg.fetch_timeout, max(1.0, view.vote_deadline - view.now - 1.0))
        payloads = await self._gather_payloads(commitments, timeout=deadline)
        t1 = time.perf_counter()
        peers, vectors, samples = [], [], []
        for c in commitments:
            payload = payloads.get(c.payload_hash)
            if payload is None:
                rec.rejected.append(f"{c.peer}: payload unavailable")
                continue
            try:
                vec = decode_update(payload, expected_dim=self.dim, max_bytes=self.cfg.max_payload_bytes)
            except FedchainError as exc:  # CodecError: this one update is rejected, not the round
                rec.rejected.append(f"{c.peer}: {exc}")
                self._count("update_rejected")
                continue
            peers.append(c.peer)
            vectors.append(vec)
            samples.append(int(c.n_samples))
        rec.valid = len(vectors)
        if vectors:
            agg = await trio.to_thread.run_sync(
                lambda: aggregate(vectors, [float(max(s, 1)) for s in samples], rule=self.cfg.aggregator,
                                  f=min(self.cfg.aggregator_f, (len(vectors) - 1) // 2),
                                  pre=self.cfg.aggregator_pre if len(vectors) > 2 else ())
            )
            agg_np = np.asarray(agg, dtype=np.float32).reshape(-1)
            kept = kept_mask(vectors, agg_np, rule=self.cfg.aggregator,
                             f=min(self.cfg.aggregator_f, (len(vectors) - 1) // 2), factor=self.cfg.kept_factor)
        else:
            agg_np = np.zeros(self.dim, dtype=np.float32)
            kept = []
        new_model = (self.model + agg_np).astype(np.float32)
        new_model[new_model == 0] = 0.0  # canonical +0.0
        previous_voters = await self._previous_majority_voters(r)
        rewards = round_rewards(self.rule, contributors=peers, n_samples=samples, kept=list(kept),
                                previous_voters=previous_voters)
        balances = accumulate(self.balances, rewards.amounts)
        self._aggregate = (new_model, balances)
        rec.kept = int(sum(kept))
        rec.kept_peers = [p for p, k in zip(peers, kept, strict=True) if k]
        rec.model_hash = model_hash(new_model).hex()
        rec.seconds["fetch"] = t1 - t0
        rec.seconds["aggregate"] = time.perf_counter() - t1
        self.state = replace(self.state, aggregated_round=r, aggregated_hash=model_hash(new_model))
        self._emit("aggregated", {"round": r, "committed": rec.committed, "valid": rec.valid, "kept": rec.kept,
                                  "rejected": rec.rejected, "model_hash": rec.model_hash,
                                  "rewards_root": rewards_root(balances).hex()})

    async def _gather_payloads(self, commitments: list[Any], *, timeout: float) -> dict[bytes, bytes]:
        """The payload of every commitment we can get within ``timeout``: from gossip, or
        fetched by hash from any peer that has it."""
        out: dict[bytes, bytes] = {}
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for c in commitments:
                    nursery.start_soon(self._get_payload, c, out)
        return out

    async def _get_payload(self, c: Any, out: dict[bytes, bytes]) -> None:
        """The payload of one commitment: from gossip (the network yields an update once its
        payload is fetched and hash-checked), or, when the announcement has not arrived
        within a second, fetched by the committed hash from any peer that has it."""
        waited = 0.0
        while (got := self._inbox.get(c.payload_hash)) is None:
            if waited >= 1.0:
                try:
                    data = await self.net.fetch(c.payload_hash, size=None)
                except GossipError as exc:
                    self._count("payload_fetch_failed")
                    log.debug("fetch %s failed: %s", c.payload_hash.hex()[:12], exc)
                    waited = 0.0  # wait for gossip again before the next attempt
                else:
                    self._count("payload_fetched")
                    out[c.payload_hash] = data
                    return
            await trio.sleep(0.02)
            waited += 0.02
        out[c.payload_hash] = got[1]

    async def _previous_majority_voters(self, r: int) -> list[str]:
        """Peers whose vote in round r-1 matched its finalised pair (paid in round r)."""
        if r <= 1:
            return []

        def read() -> list[str]:
            finals = self.fed.events("RoundFinalized", round=r - 1)
            if not finals:
                return []  # round r-1 failed: nobody voted for a finalised result
            pair = (finals[0].args["modelHash"], finals[0].args["rewardsRoot"])
            return sorted({v.voter for v in self.fed.votes(r - 1) if (v.model_hash, v.rewards_root) == pair})

        return await self._chain(read)

    async def _vote(self, r: int, view: ChainView) -> None:
        assert self._aggregate is not None
        new_model, balances = self._aggregate
        root = rewards_root(balances)
        receipt = await self._send("voteAggregate", self.fed.vote_aggregate, r, model_hash(new_model), root)
        self.state = replace(self.state, voted_round=r)
        if receipt is not None:
            self._record(r).gas["voteAggregate"] = receipt.gas_used
            self._emit("voted", {"round": r, "gas": receipt.gas_used})

    async def _adopt(self, r: int, view: ChainView) -> None:
        assert self._aggregate is not None
        new_model, balances = self._aggregate
        await self._install(r, new_model, balances)

    async def _sync_model(self, r: int, view: ChainView) -> None:
        """Fetch the finalised model of round ``r`` from any peer and check it against the chain."""
        want = view.latest_model_hash
        try:
            with trio.fail_after(self.cfg.fetch_timeout):
                data = await self.net.fetch(want, size=4 * self.dim)
        except (GossipError, trio.TooSlowError) as exc:  # try again at the next decision
            self._count("model_sync_failed")
            log.warning("%s: cannot fetch model %s of round %d yet: %s", self.address[:10], want.hex()[:12], r, exc)
            await trio.sleep(0.5)
            return
        vec = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if model_hash(vec) != want:
            self._count("model_sync_bad_hash")
            return
        # Balances cannot be checked without their history: keep ours (see module notes).
        await self._install(r, vec, self.balances)
        self._emit("synced", {"round": r, "model_hash": want.hex()})

    async def _install(self, r: int, vec: np.ndarray, balances: dict[str, int]) -> None:
        self.model = vec
        self.balances = balances
        self.state = replace(self.state, model_round=r, model_hash=model_hash(vec))
        self.net.provide(canonical_bytes(vec))
        acc, loss = await trio.to_thread.run_sync(lambda: evaluate(self.cfg.model, vec, self.test_data))
        rec = self._record(r)
        rec.finalized = True
        rec.accuracy, rec.loss = acc, loss
        self._save_checkpoint()
        self._append_round_log(rec)
        self._emit("finalized", {"round": r, "accuracy": acc, "model_hash": model_hash(vec).hex()})

    async def _fail_round(self, r: int, view: ChainView) -> None:
        await self._send("failRound", self.fed.fail_round, r)  # WrongRound: someone else did it
        self.state = replace(self.state, failed_round=r)

    # ------------------------------------------------------------------ helpers

    async def _send(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Send a transaction; a revert because the round moved on is expected and counted."""
        from peer.chain import ChainError, ContractRevert

        try:
            return await self._chain(fn, *args, sender=self.account)
        except ContractRevert as exc:
            self._count(f"revert_{exc.error_name}")
            self._emit("revert", {"function": name, "error": str(exc)})
            if exc.error_name in CLOCK_ERRORS:
                # our clock is ahead of the chain's: try again shortly, state unchanged
                await trio.sleep(min(1.0, 10 * self.cfg.poll_interval))
                raise _RetryLater(name) from exc
            return None
        except ChainError as exc:
            # the RPC failed (down, out of gas, dropped): nothing changed on chain, so the
            # action is abandoned without touching local state and the next decision retries
            self._count(f"chain_error_{name}")
            self._emit("chain_error", {"function": name, "error": str(exc)})
            await trio.sleep(min(1.0, 10 * self.cfg.poll_interval))
            raise _RetryLater(name) from exc

    def _save_checkpoint(self) -> None:
        meta = {
            "model_round": self.state.model_round,
            "model_hash": self.state.model_hash.hex(),
            "balances": {a: str(v) for a, v in self.balances.items()},
            "contract": self.contract,
        }
        tmp = self._checkpoint.with_suffix(".tmp.npz")
        self._checkpoint.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, model=self.model, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        os.replace(tmp, self._checkpoint)
        # every finalised model, for `fedchain export --round N` (small models: a few hundred KB)
        models = self._checkpoint.parent / "models"
        models.mkdir(exist_ok=True)
        np.save(models / f"round-{self.state.model_round:06d}.npy", self.model)
        spec_file = models / "spec.json"
        if not spec_file.exists():
            spec_file.write_text(json.dumps(self.cfg.model.to_dict()))

    def _append_round_log(self, rec: RoundRecord) -> None:
        """One line per finalised round in ``<data_dir>/rounds.jsonl``: what this peer saw
        committed and kept (``fedchain rewards`` reads it)."""
        line = {"round": rec.round, "committed": rec.committed_peers, "kept": rec.kept_peers,
                "model_hash": self.state.model_hash.hex(), "accuracy": rec.accuracy,
                "synced": not rec.committed_peers and rec.committed == 0}
        with open(self._checkpoint.parent / "rounds.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")

    def _record(self, r: int) -> RoundRecord:
        return self.records.setdefault(r, RoundRecord(round=r))

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        self._on_event(kind, {"peer": self.address, **data})


class _RetryLater(Exception):
    """A chain call failed without effect; the decision loop will try again."""


def _peer_seed(address: str) -> int:
    return int.from_bytes(hashlib.sha256(address.lower().encode()).digest()[:8], "big") >> 1


def _n_params(spec: ModelSpec) -> int:
    from peer.models import n_params

    return n_params(spec)


def _genesis_vector(spec: ModelSpec) -> np.ndarray:
    from peer.models import build_model, get_flat

    return get_flat(build_model(spec))
