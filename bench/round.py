"""Benchmark: one federation round end to end, and time to accuracy (issue 5).

    .venv/bin/python bench/round.py [--json] [--quick] [--peers 5,10,20] [--sizes 0.1M,1M]
                                    [--rounds 3] [--accuracy-rounds 10] [--skip timing,accuracy,demo]

Everything runs on the real machinery: :func:`peer.demo.run_demo` (embedded py-evm chain,
one py-libp2p host per peer on loopback, one :class:`peer.node.PeerNode` per peer, all in
this process), then ``fedchain demo --json`` as a subprocess. ``--json`` prints one JSON
object; without it, markdown tables.

**timing**: for every peer count x model size, a federation of ``--rounds`` rounds (digits,
IID, no Byzantine peer, median, the demo's training options: 2 epochs, batch 32, lr 0.3).
Model sizes are MLPs on digits (64 inputs, 10 classes), sized with
:func:`peer.models.n_params`: ``0.1M`` = hidden (1333,) = 99,985 parameters, ``1M`` = hidden
(963, 963) = 1,000,567 parameters.

How a round's wall time is split. The parts run concurrently on different peers, so they
are taken along the round's *critical path*: round r opens (the finalising vote of r-1 is
mined) -> peer P, the committee member whose commit closed the commit phase, adopts the
model of r-1, trains, publishes, sends commitUpdate -> peer Q, whose vote finalised round r
(read from the chain: the VoteCast in the block of RoundFinalized), fetches and aggregates
the updates and sends voteAggregate -> the first peer sees the round finalised.

* ``wall``: from round r opening to round r+1 opening. Round 1 opens when
  ``Federation.start`` returns; a round is over at the earliest moment any peer starts
  adopting (or syncing) its finalised model, i.e. when the first peer's poll saw it.
* ``train``: P's ``records[r].seconds["train"]``: local training, encoding the update,
  hashing and signing it.
* ``publish``: P's ``seconds["publish"]``: gossip announcement + storing the payload for
  the stream protocol (``Libp2pNetwork.publish_update``).
* ``fetch``: Q's ``seconds["fetch"]``: reading the commitments from the chain and getting
  every committed payload (gossip-triggered stream fetches, waiting for the late ones).
* ``aggregate``: Q's ``seconds["aggregate"]``: decoding, the robust aggregation, the kept
  mask, the rewards (which read the previous round's votes from the chain).
* ``adopt``: how long P took to install the model of round r-1 before it trained (evaluate
  on its test split, checkpoint to disk); 0 in round 1.
* ``chain`` = ``wall`` - (train + publish + fetch + aggregate + adopt): P's commitUpdate
  transaction (``commit_tx``, shown apart), Q's voteAggregate transaction (``vote_tx``, the
  duration of Q's VOTE action), and all waiting for the chain (polling latency, the
  embedded EVM's lock shared by every peer's reads and writes, scheduling).
* ``overhead`` = (wall - train) / wall: the share of the round that is not local training
  (issue 5's target: at most 25% at 10 peers x 1M parameters).

Figures are medians over rounds 2..R (round 1 also pays one-off costs: first torch calls,
first stream connections); round 1 is reported apart. Also reported per configuration:
the mean over all peers of each recorded part (for comparison with the critical path), the
chain polls (``PeerNode._read_chain`` calls: count per peer per second and mean seconds).

**accuracy**: the demo's model and training (MLP (32,), 2 epochs, lr 0.3, 5 peers,
``--accuracy-rounds`` rounds, median) on digits IID with no Byzantine peer, and on
Dirichlet alpha 0.5 with one sign-flipping peer of five; against
:func:`peer.train.centralized_baseline` with epochs x rounds epochs (what the demo
compares to). Accuracy is the watcher's figure (the first honest peer's model on the pooled
test set, the baseline's test set). Time to accuracy: the first round whose model reaches
baseline - 2 points, and the seconds from round 1 opening to that round's finalisation.

**demo**: wall time of ``.venv/bin/fedchain demo --json`` with its defaults (the last
stdout line is the summary), target < 60 s.

Bench-only shims (nothing in peer/ is changed): ``PeerNode._act`` and
``PeerNode._read_chain`` are wrapped to time every action and chain poll,
``Federation.start`` to time round 1's opening, and ``peer.demo._summarise`` to capture the
nodes and the chain once the rounds are done (in timing runs it also skips the end-of-run
baseline training, plot and export, which come after the measured rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, Python puts bench/ first on sys.path, where bench/gossip.py would
# shadow the gossip package: look in the repository root instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

SIZES: dict[str, tuple[int, ...]] = {"0.1M": (1333,), "1M": (963, 963)}
PARTS = ("train", "publish", "fetch", "aggregate", "adopt", "chain")
OVERHEAD_TARGET = 0.25
DEMO_TARGET_S = 60.0
GAP_TARGETS = {"iid": 0.02, "dirichlet0.5+signflip": 0.04}


# ---------------------------------------------------------------------------- probe


@dataclass
class Action:
    peer: str
    action: str
    round: int
    t0: float
    t1: float


@dataclass
class Probe:
    """What the bench-only shims saw during one run_demo call."""

    actions: list[Action] = field(default_factory=list)
    polls: dict[str, list[float]] = field(default_factory=dict)  # peer -> durations
    calls: dict[str, list[float]] = field(default_factory=dict)  # wrapped function -> durations
    counters: dict[str, int] = field(default_factory=dict)
    # (receiver peer id, round, announcement seen, payload fetched or failed, ok)
    deliveries: list[tuple[str, int, float, float, bool]] = field(default_factory=list)
    published: dict[tuple[str, int], float] = field(default_factory=dict)  # (sender, round) -> time
    started_at: float | None = None
    nodes: list[Any] = field(default_factory=list)
    finalising_voter: dict[int, str] = field(default_factory=dict)
    rounds_report: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    keep_summary: bool = True
    fed: Any = None
    trace: bool = False  # print every action and node event to stderr as it happens
    t_ref: float = field(default_factory=time.perf_counter)

    def log(self, peer: str, what: str) -> None:
        if self.trace:
            print(f"{time.perf_counter() - self.t_ref:8.2f} {peer[:8]} {what}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def instrument(probe: Probe) -> Iterator[None]:
    """Install the bench-only shims for one run (see the module docstring); undo them after.

    BENCH-ONLY SHIM: wraps private methods of PeerNode, Federation.start and
    peer.demo._summarise; the federation itself runs unchanged.
    """
    import peer.demo as demo
    from peer.chain import Federation
    from peer.node import PeerNode

    orig_act, orig_read, orig_init = PeerNode._act, PeerNode._read_chain, PeerNode.__init__
    orig_start, orig_summarise = Federation.start, demo._summarise
    orig_emit = PeerNode._emit

    def emit(self: Any, kind: str, data: dict[str, Any]) -> None:
        if kind != "decision":
            probe.log(self.address, f"event {kind} {data}")
        orig_emit(self, kind, data)

    async def act(self: Any, d: Any, view: Any) -> None:
        t0 = time.perf_counter()
        try:
            await orig_act(self, d, view)
        finally:
            probe.actions.append(Action(self.address, d.action.value, d.round, t0, time.perf_counter()))
            probe.log(self.address, f"{d.action.value} r{d.round} {time.perf_counter() - t0:.2f}s ({d.reason})")

    async def read_chain(self: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await orig_read(self)
        finally:
            probe.polls.setdefault(self.address, []).append(time.perf_counter() - t0)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        orig_init(self, *args, **kwargs)
        probe.nodes.append(self)

    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        receipt = orig_start(self, *args, **kwargs)
        probe.started_at = time.perf_counter()
        probe.fed = self
        return receipt

    def summarise(opts: Any, fed: Any, nodes: list[Any], honest: list[Any], *rest: Any) -> dict[str, Any]:
        if probe.keep_summary:
            return orig_summarise(opts, fed, nodes, honest, *rest)
        from peer.models import model_hash

        onchain = fed.latest_model_hash()
        return {"rounds": opts.rounds, "rounds_finalized": fed.last_finalized_round(),
                "honest_hashes_agree": {n.state.model_hash for n in honest} == {onchain},
                "model_hash": model_hash(honest[0].model).hex()}

    PeerNode._act, PeerNode._read_chain, PeerNode.__init__ = act, read_chain, init  # type: ignore[method-assign]
    # The fetch part: when each announcement reached each peer, and how long its fetch took.
    import gossip.network as gn

    orig_deliver, orig_publish = gn.Libp2pNetwork._fetch_and_deliver, gn.Libp2pNetwork.publish_update

    async def deliver(self: Any, ann: Any, announcer: Any) -> None:
        t0 = time.perf_counter()
        before = self._counters.snapshot().get("updates_delivered", 0)
        try:
            await orig_deliver(self, ann, announcer)
        finally:
            ok = self._counters.snapshot().get("updates_delivered", 0) > before
            probe.deliveries.append((ann.sender, ann.round, t0, time.perf_counter(), ok))

    async def publish(self: Any, ann: Any, payload: bytes) -> None:
        probe.published[(ann.sender, ann.round)] = time.perf_counter()
        await orig_publish(self, ann, payload)

    gn.Libp2pNetwork._fetch_and_deliver, gn.Libp2pNetwork.publish_update = deliver, publish  # type: ignore[method-assign]
    # Where the fetch and aggregate parts go: time a few callees (module names bound in peer.node).
    import peer.node as node_mod

    timed: list[tuple[Any, str, Any]] = []
    for owner, name in ((node_mod, "decode_update"), (node_mod, "aggregate"), (node_mod, "kept_mask"),
                        (node_mod, "round_rewards"), (Federation, "commitments"), (Federation, "votes"),
                        (Federation, "events"), (PeerNode, "_previous_majority_voters"),
                        (PeerNode, "_save_checkpoint"), (PeerNode, "_append_round_log")):
        if hasattr(owner, name):
            timed.append((owner, name, getattr(owner, name)))
            setattr(owner, name, _timed(getattr(owner, name), probe.calls.setdefault(name, [])))
    if probe.trace:
        PeerNode._emit = emit  # type: ignore[method-assign]
    Federation.start, demo._summarise = start, summarise  # type: ignore[method-assign]
    try:
        yield
    finally:
        PeerNode._act, PeerNode._read_chain, PeerNode.__init__ = orig_act, orig_read, orig_init  # type: ignore[method-assign]
        PeerNode._emit = orig_emit  # type: ignore[method-assign]
        Federation.start, demo._summarise = orig_start, orig_summarise  # type: ignore[method-assign]
        gn.Libp2pNetwork._fetch_and_deliver, gn.Libp2pNetwork.publish_update = orig_deliver, orig_publish  # type: ignore[method-assign]
        for owner, name, fn in timed:
            setattr(owner, name, fn)


def _timed(fn: Any, sink: list[float]) -> Any:
    """``fn`` (sync or async) that appends each call's duration to ``sink``."""
    import functools
    import inspect

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                sink.append(time.perf_counter() - t0)
        return awrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)
    return wrapper


def delivery_stats(probe: Probe) -> dict[str, Any]:
    """Announcement latency (publish -> a peer starts fetching) and fetch duration, per round."""
    out: dict[str, Any] = {}
    for r in sorted({d[1] for d in probe.deliveries}):
        ds = [d for d in probe.deliveries if d[1] == r]
        lat = [d[2] - probe.published[(d[0], r)] for d in ds if (d[0], r) in probe.published]
        dur = [d[3] - d[2] for d in ds if d[4]]
        out[str(r)] = {"fetches": len(ds), "failed": sum(1 for d in ds if not d[4]),
                       "announce_latency_median_s": statistics.median(lat) if lat else None,
                       "announce_latency_max_s": max(lat) if lat else None,
                       "fetch_median_s": statistics.median(dur) if dur else None,
                       "fetch_max_s": max(dur) if dur else None,
                       "last_delivery_after_first_publish_s":
                           max(d[3] for d in ds) - min(t for (_, rr), t in probe.published.items() if rr == r)
                           if any(rr == r for (_, rr) in probe.published) else None}
    return out


def call_stats(probe: Probe) -> dict[str, dict[str, float]]:
    return {name: {"calls": len(v), "mean_s": statistics.fmean(v), "max_s": max(v)}
            for name, v in probe.calls.items() if v}


def _finalising_voters(fed: Any) -> dict[int, str]:
    """round -> the voter whose voteAggregate finalised it (same block as RoundFinalized)."""
    out: dict[int, str] = {}
    blocks = {e.block_number: e.round for e in fed.events("RoundFinalized")}
    for v in fed.events("VoteCast"):
        if v.block_number in blocks and blocks[v.block_number] == v.round:
            out[v.round] = v.args["voter"]
    return out


@contextlib.contextmanager
def full_mesh() -> Iterator[None]:
    """BENCH-ONLY SHIM (``--topology mesh``): every peer's network also bootstraps to every
    peer started before it, so the demo's peers form a full mesh, as ``fedchain peer run``
    peers do (peer/runner.py dials every peer registered on chain). As shipped, run_demo
    bootstraps every peer to peer 0 only: a star, in which every payload fetch goes through
    peer 0 (see the report). Remove once run_demo dials the mesh itself."""
    import dataclasses

    import gossip.network as gn

    orig = gn.Libp2pNetwork
    known: list[str] = []

    class MeshNetwork(orig):  # type: ignore[misc, valid-type]
        def __init__(self, *, config: Any) -> None:
            boot = tuple(dict.fromkeys([*config.bootstrap, *known]))
            super().__init__(config=dataclasses.replace(config, bootstrap=boot))

        @contextlib.asynccontextmanager
        async def running(self) -> Any:
            async with super().running() as net:
                known.extend(net.listen_multiaddrs())
                yield net

    gn.Libp2pNetwork = MeshNetwork  # type: ignore[misc]
    try:
        yield
    finally:
        gn.Libp2pNetwork = orig  # type: ignore[misc]


class RoundFailed(Exception):
    """Raised from the report callback to end a timing run at its first failed round."""


def _contains(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_contains(e, kind) for e in exc.exceptions)
    return False


@dataclass(frozen=True)
class Settings:
    """Bench-wide options (from the command line)."""

    topology: str = "mesh"  # mesh | star (as shipped)
    trace: bool = False


SETTINGS = Settings()


def run_federation(opts: Any, *, keep_summary: bool, stop_on_failed_round: bool = False,
                   ) -> tuple[dict[str, Any] | None, Probe, float]:
    """run_demo under the shims; returns (summary or None if stopped, probe, wall seconds)."""
    import trio

    from peer.demo import run_demo

    probe = Probe(keep_summary=keep_summary, trace=SETTINGS.trace)

    def report(kind: str, data: dict[str, Any]) -> None:
        probe.log("demo", f"{kind} {data if kind != 'registered' else ''}")
        if kind == "round":
            probe.rounds_report.append((time.perf_counter(), data))
            if stop_on_failed_round and not data["finalized"]:
                raise RoundFailed(f"round {data['round']} failed")

    t0 = time.perf_counter()
    summary: dict[str, Any] | None = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(instrument(probe))
        if SETTINGS.topology == "mesh":
            stack.enter_context(full_mesh())
        try:
            summary = trio.run(lambda: run_demo(opts, report=report))
        except BaseException as exc:  # noqa: BLE001 - only our own stop signal is swallowed
            if not _contains(exc, RoundFailed):
                raise
    if probe.fed is not None:
        probe.finalising_voter = _finalising_voters(probe.fed)
    for n in probe.nodes:  # gossip and node counters, summed over peers (drops, fetch failures)
        for source in (n.net.counters(), n.counters):
            for k, v in source.items():
                probe.counters[k] = probe.counters.get(k, 0) + int(v)
    return summary, probe, time.perf_counter() - t0


# ---------------------------------------------------------------------------- analysis


def round_bounds(probe: Probe, rounds: int) -> dict[int, tuple[float, float, bool]]:
    """round -> (opened, closed, finalised) on the perf_counter clock."""
    ends: dict[int, tuple[float, bool]] = {}
    for a in probe.actions:
        if a.action in ("adopt", "sync_model"):
            t, ok = ends.get(a.round, (float("inf"), True))
            ends[a.round] = (min(t, a.t0), True)
        elif a.action == "fail_round":
            t, ok = ends.get(a.round, (float("inf"), False))
            if not ok:
                ends[a.round] = (min(t, a.t1), False)
    assert probe.started_at is not None, "Federation.start was never called"
    out: dict[int, tuple[float, float, bool]] = {}
    opened = probe.started_at
    for r in range(1, rounds + 1):
        if r not in ends:
            break
        closed, ok = ends[r]
        out[r] = (opened, closed, ok)
        opened = closed
    return out


def _last(actions: list[Action], peer: str, action: str, r: int) -> Action | None:
    hits = [a for a in actions if a.peer == peer and a.action == action and a.round == r]
    return hits[-1] if hits else None


def split_rounds(probe: Probe, rounds: int) -> list[dict[str, Any]]:
    """One row per round: wall time and its parts along the critical path (docstring)."""
    nodes = {n.address: n for n in probe.nodes}
    rows = []
    for r, (opened, closed, ok) in round_bounds(probe, rounds).items():
        wall = closed - opened
        commits = [a for a in probe.actions if a.action == "commit" and a.round == r and opened <= a.t1 <= closed]
        q = probe.finalising_voter.get(r)
        recs = [n.records[r] for n in probe.nodes if r in n.records and "fetch" in n.records[r].seconds]
        # payloads each aggregating peer had: fewer than committed means fetches failed
        seen = {"committed": max((x.committed for x in recs), default=0),
                "valid_min": min((x.valid for x in recs), default=0),
                "valid_max": max((x.valid for x in recs), default=0)}
        if not ok or not commits or q is None:
            rows.append({"round": r, "finalized": ok, "wall": wall, **seen})
            continue
        p = max(commits, key=lambda a: a.t1).peer
        rec_p, rec_q = nodes[p].records[r], nodes[q].records[r]
        prev = _last(probe.actions, p, "adopt", r - 1) or _last(probe.actions, p, "sync_model", r - 1)
        vote = _last(probe.actions, q, "vote", r)
        row: dict[str, Any] = {
            "round": r, "finalized": True, "wall": wall,
            "train": rec_p.seconds.get("train", 0.0),
            "publish": rec_p.seconds.get("publish", 0.0),
            "fetch": rec_q.seconds.get("fetch", 0.0),
            "aggregate": rec_q.seconds.get("aggregate", 0.0),
            "adopt": (prev.t1 - prev.t0) if prev is not None and r > 1 else 0.0,
            "commit_tx": rec_p.seconds.get("commit_tx", 0.0),
            "vote_tx": (vote.t1 - vote.t0) if vote is not None else 0.0,
        }
        row.update(seen)
        row["chain"] = wall - sum(row[k] for k in PARTS if k != "chain")
        row["overhead"] = (wall - row["train"]) / wall
        # the same parts averaged over every peer that recorded them (not the critical path)
        means: dict[str, float] = {}
        for key in ("train", "publish", "commit_tx", "fetch", "aggregate"):
            vals = [n.records[r].seconds[key] for n in probe.nodes if r in n.records and key in n.records[r].seconds]
            means[key] = statistics.fmean(vals) if vals else 0.0
        row["peer_mean"] = means
        rows.append(row)
    return rows


def summarise_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the finalised rounds 2..R (round 1 apart)."""
    steady = [x for x in rows if x["round"] >= 2 and "train" in x]
    keys = ("wall", *PARTS, "commit_tx", "vote_tx", "overhead")
    out: dict[str, Any] = {"rounds_measured": [x["round"] for x in steady]}
    out["median"] = {k: statistics.median(x[k] for x in steady) for k in keys} if steady else {}
    first = [x for x in rows if x["round"] == 1]
    out["round1"] = {k: first[0][k] for k in keys if k in first[0]} if first else {}
    out["failed_rounds"] = [x["round"] for x in rows if not x["finalized"]]
    return out


def poll_stats(probe: Probe, seconds: float) -> dict[str, float]:
    counts = [len(v) for v in probe.polls.values()]
    durations = [d for v in probe.polls.values() for d in v]
    if not durations:
        return {}
    return {"polls_per_peer_s": statistics.fmean(counts) / seconds,
            "poll_mean_s": statistics.fmean(durations),
            "poll_p90_s": statistics.quantiles(durations, n=10)[-1] if len(durations) >= 10 else max(durations)}


# ---------------------------------------------------------------------------- runs


def bench_timing(peers: int, size: str, rounds: int, out_dir: Path) -> dict[str, Any]:
    from peer.demo import DemoOptions
    from peer.models import ModelSpec, n_params

    hidden = SIZES[size]
    opts = DemoOptions(peers=peers, rounds=rounds, byzantine=0, partition="iid", hidden=hidden,
                       out_dir=out_dir / f"timing-{peers}p-{size}")
    summary, probe, wall = run_federation(opts, keep_summary=False, stop_on_failed_round=True)
    rows = split_rounds(probe, rounds)
    rounds_s = sum(x["wall"] for x in rows)
    return {
        "peers": peers, "size": size, "hidden": list(hidden),
        "n_params": n_params(ModelSpec("mlp", (64,), 10, hidden=hidden)),
        "rounds": rounds, "stopped_at_failed_round": summary is None,
        "rounds_finalized": sum(1 for x in rows if x["finalized"]),
        "honest_hashes_agree": summary["honest_hashes_agree"] if summary else None,
        "run_seconds": wall, "rounds_seconds": rounds_s,
        **summarise_rows(rows), "polls": poll_stats(probe, rounds_s), "calls": call_stats(probe),
        "counters": probe.counters, "deliveries": delivery_stats(probe),
        "per_round": rows,
    }


def bench_accuracy(name: str, rounds: int, out_dir: Path, **kw: Any) -> dict[str, Any]:
    from peer.data import DataConfig
    from peer.demo import DemoOptions
    from peer.models import ModelSpec
    from peer.train import TrainConfig, centralized_baseline

    opts = DemoOptions(rounds=rounds, out_dir=out_dir / f"accuracy-{name}", **kw)
    summary, probe, wall = run_federation(opts, keep_summary=True)
    data_cfg = DataConfig(dataset=opts.dataset, partition=opts.partition, alpha=opts.alpha, seed=opts.seed)
    spec = ModelSpec(opts.arch, (64,), 10, hidden=opts.hidden, seed=opts.seed)
    base = centralized_baseline(data_cfg, spec, TrainConfig(epochs=opts.epochs * rounds, batch_size=opts.batch_size,
                                                            lr=opts.lr, seed=opts.seed), n_peers=opts.peers)
    bounds = round_bounds(probe, rounds)
    start = probe.started_at or 0.0
    target = base["accuracy"] - 0.02
    curve, reached = [], None
    for _, data in probe.rounds_report:
        r = data["round"]
        secs = bounds[r][1] - start if r in bounds else None
        curve.append({"round": r, "accuracy": data["accuracy"], "seconds": secs})
        if reached is None and data["accuracy"] is not None and data["accuracy"] >= target:
            reached = {"round": r, "seconds": secs}
    final = summary["final_accuracy"]
    gap = base["accuracy"] - final
    return {
        "name": name, "peers": opts.peers, "byzantine": opts.byzantine, "attack": opts.attack if opts.byzantine else None,
        "partition": opts.partition, "alpha": opts.alpha if opts.partition == "dirichlet" else None,
        "rounds": rounds, "rounds_finalized": summary["rounds_finalized"],
        "final_accuracy": final, "centralized_accuracy": base["accuracy"],
        "centralized_epochs": base["epochs"], "centralized_train_seconds": base["train_seconds"],
        "gap_points": 100 * gap, "target_gap_points": 100 * GAP_TARGETS[name],
        "within_target": gap <= GAP_TARGETS[name],
        "time_to_baseline_minus_2pts": reached,  # None: not reached within the rounds run
        "run_seconds": wall, "curve": curve,
    }


def bench_demo(out_dir: Path) -> dict[str, Any]:
    exe = ROOT / ".venv" / "bin" / "fedchain"
    cmd = [str(exe), "demo", "--json", "--out", str(out_dir / "demo")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"command": "fedchain demo --json", "exit_code": proc.returncode, "seconds": wall,
                "stderr_tail": proc.stderr[-2000:]}
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"command": "fedchain demo --json", "exit_code": 0, "seconds": wall,
            "demo_seconds": s["seconds"], "within_target": wall < DEMO_TARGET_S,
            "rounds_finalized": s["rounds_finalized"], "rounds": s["rounds"],
            "final_accuracy": s["final_accuracy"], "centralized_accuracy": s["centralized_accuracy"]}


# ---------------------------------------------------------------------------- output


def _f(x: Any, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def markdown(result: dict[str, Any]) -> str:
    lines = []
    if result.get("timing"):
        lines += ["| peers | params | wall s | train | publish | fetch | aggregate | adopt | chain "
                  "(commit tx, vote tx) | overhead | round 1 wall s |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for t in result["timing"]:
            m = t["median"]
            if not m:
                lines.append(f"| {t['peers']} | {t['n_params']:,} | no finalised round 2..R "
                             f"(failed: {t['failed_rounds']}) | | | | | | | | |")
                continue
            lines.append(
                f"| {t['peers']} | {t['n_params']:,} | {_f(m['wall'])} | {_f(m['train'])} | {_f(m['publish'])} "
                f"| {_f(m['fetch'])} | {_f(m['aggregate'])} | {_f(m['adopt'])} | {_f(m['chain'])} "
                f"({_f(m['commit_tx'])}, {_f(m['vote_tx'])}) | {100 * m['overhead']:.0f}% "
                f"| {_f(t['round1'].get('wall'))} |")
        lines.append("")
    if result.get("accuracy"):
        lines += ["| run | final acc | centralised acc | gap (target) | baseline-2pt reached at |",
                  "| --- | ---: | ---: | ---: | --- |"]
        for a in result["accuracy"]:
            hit = a["time_to_baseline_minus_2pts"]
            when = f"round {hit['round']}, {hit['seconds']:.1f} s" if hit else f"not in {a['rounds']} rounds"
            lines.append(f"| {a['name']} ({a['peers']} peers, {a['rounds']} rounds) | {a['final_accuracy']:.3f} "
                         f"| {a['centralized_accuracy']:.3f} | {a['gap_points']:.1f} pt "
                         f"(<= {a['target_gap_points']:.0f}) | {when} |")
        lines.append("")
    if result.get("demo"):
        d = result["demo"]
        lines.append(f"`fedchain demo --json` (defaults): {d['seconds']:.1f} s wall (target < {DEMO_TARGET_S:.0f} s), "
                     f"exit {d['exit_code']}, {d.get('rounds_finalized')}/{d.get('rounds')} rounds finalised, "
                     f"accuracy {_f(d.get('final_accuracy'), 3)} vs centralised {_f(d.get('centralized_accuracy'), 3)}")
    lines.append(f"load average before / after: {result['loadavg_before']} / {result['loadavg_after']}")
    return "\n".join(lines)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="smoke configuration: 3 peers x 0.1M, 2 rounds, "
                    "no accuracy or demo run")
    ap.add_argument("--peers", default="5,10,20", help="peer counts of the timing runs")
    ap.add_argument("--sizes", default="0.1M,1M", help=f"model sizes of the timing runs ({', '.join(SIZES)})")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each timing run (round 1 reported apart)")
    ap.add_argument("--accuracy-rounds", type=int, default=10)
    ap.add_argument("--skip", default="", help="comma-separated: timing, accuracy, demo")
    ap.add_argument("--topology", choices=("mesh", "star"), default="mesh",
                    help="mesh: bench-only shim, every peer dials every other (as `fedchain peer run` does); "
                         "star: run_demo as shipped (every peer bootstraps to peer 0 only)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads of this process (0: torch's default, as `fedchain demo` runs)")
    ap.add_argument("--trace", action="store_true", help="print every peer action to stderr as it happens")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one)")
    args = ap.parse_args()

    global SETTINGS
    SETTINGS = Settings(topology=args.topology, trace=args.trace)
    if args.torch_threads:
        from peer.train import configure_torch_threads

        configure_torch_threads(args.torch_threads)
    skip = {s for s in args.skip.split(",") if s}
    peers = [int(p) for p in args.peers.split(",") if p]
    sizes = [s for s in args.sizes.split(",") if s]
    for s in sizes:
        if s not in SIZES:
            ap.error(f"--sizes: {s!r} is not one of {sorted(SIZES)}")
    if args.quick:
        peers, sizes, args.rounds, skip = [3], ["0.1M"], 2, {"accuracy", "demo"}

    result: dict[str, Any] = {"loadavg_before": _loadavg(), "cpus": os.cpu_count(),
                              "timing": [], "accuracy": [], "demo": None}
    with tempfile.TemporaryDirectory(prefix="fedchain-round-") as tmp:
        out = args.out or Path(tmp)
        if "timing" not in skip:
            for size in sizes:
                for n in peers:
                    result["timing"].append(bench_timing(n, size, args.rounds, out))
                    print(f"timing {n} peers x {size}: done", file=sys.stderr, flush=True)
        if "accuracy" not in skip:
            result["accuracy"].append(bench_accuracy("iid", args.accuracy_rounds, out, partition="iid", byzantine=0))
            result["accuracy"].append(bench_accuracy("dirichlet0.5+signflip", args.accuracy_rounds, out,
                                                     partition="dirichlet", alpha=0.5, byzantine=1,
                                                     attack="sign_flip"))
            print("accuracy: done", file=sys.stderr, flush=True)
        if "demo" not in skip:
            result["demo"] = bench_demo(out)
    result["loadavg_after"] = _loadavg()
    if args.json:
        print(json.dumps(result))
    else:
        print(markdown(result))


if __name__ == "__main__":
    main()
