"""Benchmark: one federation round end to end, and time to accuracy (issue 5).

    .venv/bin/python bench/round.py [--json] [--quick] [--peers 5,10,20] [--sizes 0.1M,1M]
        [--rounds 3] [--accuracy-rounds 10] [--skip timing,accuracy,demo] [--topology mesh|star]
        [--torch-threads 1] [--fetch-timeout S] [--poll-interval S] [--log-cache] [--trace]

Everything runs on the real machinery: :func:`peer.demo.run_demo` (embedded py-evm chain,
one py-libp2p host per peer on loopback, one :class:`peer.node.PeerNode` per peer, all in
this process), and ``fedchain demo --json`` as a subprocess. ``--json`` prints one JSON
object; without it, markdown tables. Notes and findings: bench/README-round.md.

**timing**: for every peer count x model size, a federation of ``--rounds`` rounds (digits,
IID, no Byzantine peer, median; the demo's training: 2 epochs, batch 32, lr 0.3). Models are
MLPs on digits (64 inputs, 10 classes) sized with :func:`peer.models.n_params`:
``0.1M`` = hidden (1333,) = 99,985 parameters, ``1M`` = hidden (963, 963) = 1,000,567.
A timing run stops at its first failed round (once every peer voted without a quorum).

How a round's wall time is split. The parts run concurrently on different peers, so they
are taken along the round's *critical path*: round r opens -> peer P, the committee member
whose commit closed the commit phase, installs the model of r-1, trains, publishes, sends
commitUpdate -> peer Q, whose vote finalised round r (the VoteCast in RoundFinalized's
block), collects and aggregates the updates and sends voteAggregate -> a peer sees round r
finalised.

* ``wall``: round 1 opens when ``Federation.start`` returns; round r ends (and r+1 opens)
  when the first peer starts adopting or syncing its finalised model (its poll saw it).
* ``train``: P's ``records[r].seconds["train"]``: local training, encoding the update,
  hashing and signing it.
* ``publish``: P's ``seconds["publish"]``: ``Libp2pNetwork.publish_update`` (store the
  payload, gossip the announcement).
* ``fetch``: Q's ``seconds["fetch"]``: read the round's commitments from the chain, then
  wait until every committed payload arrived (announcement, stream fetch) or the fetch
  timeout (``DemoOptions.fetch_timeout``) passed.
* ``aggregate``: Q's ``seconds["aggregate"]``: decode, robust aggregation, kept mask,
  rewards (which read the previous round's finalisation and votes from the chain).
* ``adopt``: P's install of round r-1's model before it trained (evaluate, checkpoint; a
  sync when P lacked the aggregate); 0 in round 1.
* ``chain`` = wall - (train + publish + fetch + aggregate + adopt): P's commitUpdate
  (``commit_tx``), Q's voteAggregate (``vote_tx``, its VOTE action) and all waiting for the
  chain: polling latency, the embedded EVM's lock shared by every peer, scheduling.
* ``overhead`` = (wall - train) / wall. Issue 5's target: <= 25% at 10 peers x 1M.

Medians over rounds 2..R; round 1 (first torch optimiser, connections) is reported apart.
Each timing entry also has: the mean over all peers of each recorded part, the chain polls
(``PeerNode._read_chain``: per peer per second, seconds each), callee timings (decode,
rule, kept mask, commitments and event reads, previous-round voters, checkpoint),
announcement latency and fetch durations per round, and the gossip/node counters.

**accuracy**: the demo's model and training (MLP (32,), 2 epochs, lr 0.3, 5 peers,
``--accuracy-rounds`` rounds, median), digits IID with no Byzantine peer, and Dirichlet
alpha 0.5 with one sign-flipping peer of five, against :func:`peer.train.centralized_baseline`
with epochs x rounds epochs (what the demo compares to). Accuracy per round is the demo
watcher's figure (the first honest peer's model on the pooled test set, the baseline's).
Time to accuracy: first round reaching baseline - 2 points, and seconds from round 1's
opening; the centralised model's epochs and training seconds to the same accuracy.

**demo**: wall time of ``.venv/bin/fedchain demo --json`` with its defaults; target < 60 s.

Bench-only shims (peer/ and gossip/ are not changed; each is undone after its run):
``PeerNode._act``, ``_read_chain``, ``__init__``, ``Federation.start``,
``Libp2pNetwork._fetch_and_deliver`` / ``publish_update`` and a few callees are wrapped to
take times; ``peer.demo._summarise`` is skipped in timing runs (baseline training, plot and
export come after the measured rounds). A run whose LAST round fails is stopped (run_demo
would wait for ever). Experiments, off by default: ``--topology mesh`` (run_demo as
shipped bootstraps every peer to peer 0 only; this makes a full mesh, as ``fedchain peer
run`` peers form), ``--fetch-timeout`` (DemoOptions), ``--poll-interval`` (a NodeConfig
override), ``--log-cache`` (incremental eth_getLogs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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
DIGITS_SHAPE = (1, 8, 8)  # peer.data's digits records
PARTS = ("train", "publish", "fetch", "aggregate", "adopt", "chain")
OVERHEAD_TARGET = 0.25
DEMO_TARGET_S = 60.0
GAP_TARGETS = {"iid": 0.02, "dirichlet0.5+signflip": 0.04}


@dataclass(frozen=True)
class Settings:
    """Bench-wide options (from the command line)."""

    topology: str = "star"  # star (run_demo as shipped) | mesh (bench shim)
    fetch_timeout: float | None = None  # None: DemoOptions' default (as shipped)
    poll_interval: float | None = None  # None: NodeConfig's default (as shipped)
    log_cache: bool = False
    trace: bool = False


SETTINGS = Settings()


class RoundFailed(Exception):
    """Raised by the bench to end a run at a failed round."""


# ---------------------------------------------------------------------------- probe


@dataclass
class Action:
    """One PeerNode action (a decision carried out), on the perf_counter clock."""

    peer: str
    action: str
    round: int
    t0: float
    t1: float


@dataclass
class Delivery:
    """One announcement a peer's network accepted and fetched (or failed to)."""

    sender: str
    round: int
    t0: float  # the fetch started (the announcement had arrived)
    t1: float
    ok: bool


@dataclass
class Probe:
    """What the bench-only shims saw during one run_demo call."""

    stop_on_failed_round: bool = False
    last_round: int = 0
    keep_summary: bool = True
    trace: bool = False
    actions: list[Action] = field(default_factory=list)
    polls: dict[str, list[float]] = field(default_factory=dict)  # peer -> durations
    calls: dict[str, list[float]] = field(default_factory=dict)  # callee -> durations
    deliveries: list[Delivery] = field(default_factory=list)
    published: dict[tuple[str, int], float] = field(default_factory=dict)  # (sender, round) -> time
    counters: dict[str, int] = field(default_factory=dict)
    rounds_report: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[Any] = field(default_factory=list)
    fed: Any = None
    started_at: float | None = None
    stopped: tuple[int, float] | None = None  # (round, time) when the bench stopped a failed run
    finalising_voter: dict[int, str] = field(default_factory=dict)
    t_ref: float = field(default_factory=time.perf_counter)

    def log(self, who: str, what: str) -> None:
        if self.trace:
            print(f"{time.perf_counter() - self.t_ref:8.2f} {who[:8]} {what}", file=sys.stderr, flush=True)

    def stop(self, r: int, why: str) -> None:
        self.stopped = (r, time.perf_counter())
        raise RoundFailed(why)


# ---------------------------------------------------------------------------- shims


@contextlib.contextmanager
def patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set ``owner.name = value`` for each patch; restore the originals on exit."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def _timed(fn: Any, sink: list[float]) -> Any:
    """``fn`` (sync or async) appending each call's duration to ``sink``."""
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


def _node_patches(probe: Probe) -> list[tuple[Any, str, Any]]:
    """BENCH-ONLY SHIM: time PeerNode's actions and chain polls, collect the nodes."""
    from peer.node import PeerNode

    orig_act, orig_read, orig_init, orig_emit = (PeerNode._act, PeerNode._read_chain, PeerNode.__init__,
                                                 PeerNode._emit)

    async def act(self: Any, d: Any, view: Any) -> None:
        t0 = time.perf_counter()
        try:
            await orig_act(self, d, view)
        finally:
            probe.actions.append(Action(self.address, d.action.value, d.round, t0, time.perf_counter()))
            probe.log(self.address, f"{d.action.value} r{d.round} {time.perf_counter() - t0:.2f}s ({d.reason})")
        r = d.round
        if d.action.value == "vote" and probe.stop_on_failed_round and probe.fed is not None:
            votes = sum(1 for a in probe.actions if a.action == "vote" and a.round == r)
            # one eth_call from the trio loop, once a round: every peer voted and no pair has
            # the quorum, so the round can only fail after its vote window; stop now
            if votes == len(probe.nodes) and not any(probe.fed.finalized_model(r)):
                probe.stop(r, f"round {r}: all {votes} peers voted, no quorum")
        if d.action.value == "fail_round" and (probe.stop_on_failed_round or r >= probe.last_round):
            # after a failed LAST round run_demo's watcher waits for ever (see the README)
            probe.stop(r, f"round {r} failed (no quorum)")

    async def read_chain(self: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await orig_read(self)
        finally:
            probe.polls.setdefault(self.address, []).append(time.perf_counter() - t0)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        orig_init(self, *args, **kwargs)
        if SETTINGS.poll_interval is not None:  # experiment knob
            self.cfg = dataclasses.replace(self.cfg, poll_interval=SETTINGS.poll_interval)
        probe.nodes.append(self)

    def emit(self: Any, kind: str, data: dict[str, Any]) -> None:
        if kind != "decision":
            probe.log(self.address, f"event {kind} {data}")
        orig_emit(self, kind, data)

    out = [(PeerNode, "_act", act), (PeerNode, "_read_chain", read_chain), (PeerNode, "__init__", init)]
    return out + ([(PeerNode, "_emit", emit)] if probe.trace else [])


def _chain_and_demo_patches(probe: Probe) -> list[tuple[Any, str, Any]]:
    """BENCH-ONLY SHIM: round 1's opening time, the Federation, and (in timing runs) no
    end-of-run summary work."""
    import peer.demo as demo
    from peer.chain import Federation

    orig_start, orig_summarise = Federation.start, demo._summarise

    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        receipt = orig_start(self, *args, **kwargs)
        probe.started_at = time.perf_counter()
        probe.fed = self
        return receipt

    def summarise(opts: Any, fed: Any, nodes: list[Any], honest: list[Any], *rest: Any) -> dict[str, Any]:
        if probe.keep_summary:
            return orig_summarise(opts, fed, nodes, honest, *rest)
        onchain = fed.latest_model_hash()
        return {"rounds": opts.rounds, "rounds_finalized": fed.last_finalized_round(),
                "honest_hashes_agree": {n.state.model_hash for n in honest} == {onchain}}

    return [(Federation, "start", start), (demo, "_summarise", summarise)]


def _network_patches(probe: Probe) -> list[tuple[Any, str, Any]]:
    """BENCH-ONLY SHIM: when each update was published, when each peer's network got its
    announcement and how long the payload fetch took."""
    import gossip.network as gn

    orig_deliver, orig_publish = gn.Libp2pNetwork._fetch_and_deliver, gn.Libp2pNetwork.publish_update

    async def deliver(self: Any, ann: Any, announcer: Any) -> None:
        t0 = time.perf_counter()
        before = self.counters().get("updates_delivered", 0)
        try:
            await orig_deliver(self, ann, announcer)
        finally:
            ok = self.counters().get("updates_delivered", 0) > before
            probe.deliveries.append(Delivery(ann.sender, ann.round, t0, time.perf_counter(), ok))

    async def publish(self: Any, ann: Any, payload: bytes) -> None:
        probe.published[(ann.sender, ann.round)] = time.perf_counter()
        await orig_publish(self, ann, payload)

    return [(gn.Libp2pNetwork, "_fetch_and_deliver", deliver), (gn.Libp2pNetwork, "publish_update", publish)]


def _callee_patches(probe: Probe) -> list[tuple[Any, str, Any]]:
    """BENCH-ONLY SHIM: time the callees of the fetch and aggregate parts (names bound in
    peer.node, methods of Federation and PeerNode)."""
    import peer.node as node_mod
    from peer.chain import Federation
    from peer.node import PeerNode

    names = ((node_mod, "decode_update"), (node_mod, "aggregate"), (node_mod, "kept_mask"),
             (node_mod, "round_rewards"), (Federation, "commitments"), (Federation, "votes"),
             (Federation, "events"), (PeerNode, "_previous_majority_voters"), (PeerNode, "_save_checkpoint"))
    return [(owner, name, _timed(getattr(owner, name), probe.calls.setdefault(name, [])))
            for owner, name in names if hasattr(owner, name)]


def _mesh_patches() -> list[tuple[Any, str, Any]]:
    """BENCH-ONLY SHIM (``--topology mesh``, an experiment): every peer's network also
    bootstraps to every peer started before it, so the demo's peers form a full mesh, as
    ``fedchain peer run`` peers do (peer/runner.py dials every peer registered on chain).
    run_demo as shipped bootstraps every peer to peer 0 only (a star)."""
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

    return [(gn, "Libp2pNetwork", MeshNetwork)]


def _log_cache_patches() -> list[tuple[Any, str, Any]]:
    """BENCH-ONLY SHIM (``--log-cache``, an experiment): ``ChainClient.get_logs`` answered
    from an incremental cache (the chain is asked only for blocks after the previous call),
    same results. eth-tester's eth_getLogs looks up every receipt of the range by walking the
    chain from block 0, so a scan from block 0 costs O(blocks^2); this shows what a
    from_block / cached log reader saves."""
    from eth_utils import to_checksum_address

    from peer.chain import ChainClient

    lock = threading.Lock()
    cache: dict[tuple[int, str], tuple[int, list[Any]]] = {}

    def matches(log: Any, topics: list[Any] | None) -> bool:
        have = ["0x" + bytes(t).hex() for t in log["topics"]]
        return all(want is None or (i < len(have) and have[i] == want) for i, want in enumerate(topics or []))

    def get_logs(self: Any, address: str, *, from_block: int = 0, topics: list[Any] | None = None) -> list[Any]:
        key = (id(self), to_checksum_address(address))
        with lock:
            last, logs = cache.get(key, (-1, []))
            head = self.block_number()
            if head > last:
                logs = logs + list(self.w3.eth.get_logs({"address": key[1], "fromBlock": last + 1, "toBlock": head}))
                cache[key] = (head, logs)
        return list(self._decode_logs([lg for lg in logs if lg["blockNumber"] >= from_block and matches(lg, topics)]))

    return [(ChainClient, "get_logs", get_logs)]


def _contains(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_contains(e, kind) for e in exc.exceptions)
    return False


def run_federation(opts: Any, *, keep_summary: bool, stop_on_failed_round: bool = False,
                   ) -> tuple[dict[str, Any] | None, Probe, float]:
    """run_demo under the shims: (summary, or None if the bench stopped it; probe; seconds)."""
    import trio

    from peer.demo import run_demo

    probe = Probe(stop_on_failed_round=stop_on_failed_round, last_round=opts.rounds,
                  keep_summary=keep_summary, trace=SETTINGS.trace)

    def report(kind: str, data: dict[str, Any]) -> None:
        probe.log("demo", f"{kind} {data if kind != 'registered' else ''}")
        if kind == "round":
            probe.rounds_report.append(data)

    patches = (_node_patches(probe) + _chain_and_demo_patches(probe) + _network_patches(probe)
               + _callee_patches(probe))
    if SETTINGS.topology == "mesh":
        patches += _mesh_patches()
    if SETTINGS.log_cache:
        patches += _log_cache_patches()
    t0 = time.perf_counter()
    summary: dict[str, Any] | None = None
    with patched(patches):
        try:
            summary = trio.run(lambda: run_demo(opts, report=report))
        except BaseException as exc:  # noqa: BLE001 - only the bench's own stop is swallowed
            if not _contains(exc, RoundFailed):
                raise
        if probe.fed is not None:
            seen = len(probe.calls.get("events", []))
            probe.finalising_voter = _finalising_voters(probe.fed)
            del probe.calls.get("events", [])[seen:]  # the bench's own reads are not the peers'
    for n in probe.nodes:  # gossip and node counters, summed over the peers
        for source in (n.net.counters(), n.counters):
            for k, v in source.items():
                probe.counters[k] = probe.counters.get(k, 0) + int(v)
    return summary, probe, time.perf_counter() - t0


def _finalising_voters(fed: Any) -> dict[int, str]:
    """round -> the voter whose voteAggregate finalised it (same block as RoundFinalized)."""
    blocks = {e.block_number: e.round for e in fed.events("RoundFinalized")}
    return {v.round: v.args["voter"] for v in fed.events("VoteCast") if blocks.get(v.block_number) == v.round}


# ---------------------------------------------------------------------------- analysis


def round_bounds(probe: Probe, rounds: int) -> dict[int, tuple[float, float, bool]]:
    """round -> (opened, closed, finalised) on the perf_counter clock, up to the first
    round that never ended."""
    ends: dict[int, tuple[float, bool]] = {}
    for a in probe.actions:
        if a.action in ("adopt", "sync_model"):
            ends[a.round] = (min(ends.get(a.round, (float("inf"), True))[0], a.t0), True)
        elif a.action == "fail_round" and not ends.get(a.round, (0.0, False))[1]:
            ends[a.round] = (min(ends.get(a.round, (float("inf"), False))[0], a.t1), False)
    if probe.stopped is not None and probe.stopped[0] not in ends:
        ends[probe.stopped[0]] = (probe.stopped[1], False)
    if probe.started_at is None:
        raise RuntimeError("Federation.start was never called: the run ended before round 1")
    out: dict[int, tuple[float, float, bool]] = {}
    opened = probe.started_at
    for r in range(1, rounds + 1):
        if r not in ends:
            break
        closed, ok = ends[r]
        out[r] = (opened, closed, ok)
        opened = closed
    return out


def _last(actions: list[Action], peer: str, names: tuple[str, ...], r: int) -> Action | None:
    hits = [a for a in actions if a.peer == peer and a.action in names and a.round == r]
    return hits[-1] if hits else None


def split_rounds(probe: Probe, rounds: int) -> list[dict[str, Any]]:
    """One row per round: its wall time and the parts along its critical path (docstring)."""
    nodes = {n.address: n for n in probe.nodes}
    rows = []
    for r, (opened, closed, ok) in round_bounds(probe, rounds).items():
        recs = [n.records[r] for n in probe.nodes if r in n.records and "fetch" in n.records[r].seconds]
        # how many of the committed updates each aggregating peer held when it aggregated
        row: dict[str, Any] = {"round": r, "finalized": ok, "wall": closed - opened,
                               "committed": max((x.committed for x in recs), default=0),
                               "valid_min": min((x.valid for x in recs), default=0),
                               "valid_max": max((x.valid for x in recs), default=0)}
        commits = [a for a in probe.actions if a.action == "commit" and a.round == r and a.t1 <= closed]
        q = probe.finalising_voter.get(r)
        if not ok or not commits or q is None:
            rows.append(row)
            continue
        p = max(commits, key=lambda a: a.t1).peer
        rec_p, rec_q = nodes[p].records[r].seconds, nodes[q].records[r].seconds
        prev = _last(probe.actions, p, ("adopt", "sync_model"), r - 1) if r > 1 else None
        vote = _last(probe.actions, q, ("vote",), r)
        row.update(train=rec_p.get("train", 0.0), publish=rec_p.get("publish", 0.0),
                   fetch=rec_q.get("fetch", 0.0), aggregate=rec_q.get("aggregate", 0.0),
                   adopt=(prev.t1 - prev.t0) if prev is not None else 0.0,
                   commit_tx=rec_p.get("commit_tx", 0.0), vote_tx=(vote.t1 - vote.t0) if vote else 0.0)
        row["chain"] = row["wall"] - sum(row[k] for k in PARTS if k != "chain")
        row["overhead"] = (row["wall"] - row["train"]) / row["wall"]
        row["peer_mean"] = {key: statistics.fmean(vals) if vals else 0.0 for key in
                            ("train", "publish", "commit_tx", "fetch", "aggregate")
                            for vals in [[n.records[r].seconds[key] for n in probe.nodes
                                          if r in n.records and key in n.records[r].seconds]]}
        rows.append(row)
    return rows


def summarise_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the finalised rounds 2..R, round 1 apart."""
    steady = [x for x in rows if x["round"] >= 2 and "train" in x]
    keys = ("wall", *PARTS, "commit_tx", "vote_tx", "overhead")
    first = [x for x in rows if x["round"] == 1]
    return {"rounds_measured": [x["round"] for x in steady],
            "median": {k: statistics.median(x[k] for x in steady) for k in keys} if steady else {},
            "round1": {k: first[0][k] for k in keys if k in first[0]} if first else {},
            "failed_rounds": [x["round"] for x in rows if not x["finalized"]]}


def poll_stats(probe: Probe, seconds: float) -> dict[str, float]:
    counts = [len(v) for v in probe.polls.values()]
    durations = sorted(d for v in probe.polls.values() for d in v)
    if not durations or seconds <= 0:
        return {}
    return {"polls_per_peer_s": statistics.fmean(counts) / seconds, "poll_mean_s": statistics.fmean(durations),
            "poll_p90_s": durations[int(0.9 * (len(durations) - 1))]}


def delivery_stats(probe: Probe) -> dict[str, Any]:
    """Per round: announcement latency (publish -> a peer starts the fetch), fetch seconds,
    and the time from the first publish to the last delivery."""
    out: dict[str, Any] = {}
    for r in sorted({d.round for d in probe.deliveries}):
        ds = [d for d in probe.deliveries if d.round == r]
        pubs = {s: t for (s, rr), t in probe.published.items() if rr == r}
        lat = [d.t0 - pubs[d.sender] for d in ds if d.sender in pubs]
        dur = [d.t1 - d.t0 for d in ds if d.ok]
        out[str(r)] = {"fetches": len(ds), "failed": sum(1 for d in ds if not d.ok),
                       "announce_latency_median_s": statistics.median(lat) if lat else None,
                       "fetch_median_s": statistics.median(dur) if dur else None,
                       "fetch_max_s": max(dur) if dur else None,
                       "first_publish_to_last_delivery_s": max(d.t1 for d in ds) - min(pubs.values()) if pubs else None}
    return out


def call_stats(probe: Probe) -> dict[str, dict[str, float]]:
    return {name: {"calls": len(v), "mean_s": statistics.fmean(v), "max_s": max(v)}
            for name, v in probe.calls.items() if v}


# ---------------------------------------------------------------------------- runs


def demo_options(**kw: Any) -> Any:
    """DemoOptions with the bench's overrides (``--fetch-timeout`` is a DemoOptions field)."""
    from peer.demo import DemoOptions

    if SETTINGS.fetch_timeout is not None:
        kw["fetch_timeout"] = SETTINGS.fetch_timeout
    return DemoOptions(**kw)


def _opts_dict(opts: Any) -> dict[str, Any]:
    skip = ("out_dir", "extra")
    return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.name not in skip}


def bench_timing(peers: int, size: str, rounds: int, out_dir: Path) -> dict[str, Any]:
    from peer.models import ModelSpec, n_params

    hidden = SIZES[size]
    opts = demo_options(peers=peers, rounds=rounds, byzantine=0, partition="iid", hidden=hidden,
                        out_dir=out_dir / f"timing-{peers}p-{size}")
    summary, probe, wall = run_federation(opts, keep_summary=False, stop_on_failed_round=True)
    rows = split_rounds(probe, rounds)
    rounds_s = sum(x["wall"] for x in rows)
    return {
        "peers": peers, "size": size, "hidden": list(hidden),
        "n_params": n_params(ModelSpec("mlp", DIGITS_SHAPE, 10, hidden=hidden)),
        "demo_options": _opts_dict(opts), "rounds": rounds, "stopped_at_failed_round": summary is None,
        "rounds_finalized": sum(1 for x in rows if x["finalized"]),
        "honest_hashes_agree": summary["honest_hashes_agree"] if summary else None,
        "run_seconds": wall, "setup_seconds": None if probe.started_at is None else probe.started_at - probe.t_ref,
        "rounds_seconds": rounds_s, **(parts := summarise_rows(rows)),
        "overhead_within_target": bool(parts["median"]) and parts["median"]["overhead"] <= OVERHEAD_TARGET,
        "polls": poll_stats(probe, rounds_s), "calls": call_stats(probe), "deliveries": delivery_stats(probe),
        "counters": {k: v for k, v in probe.counters.items() if v}, "per_round": rows,
    }


def centralized_time_to(data_cfg: Any, spec: Any, train_cfg: Any, n_peers: int, target: float,
                        ) -> dict[str, Any] | None:
    """Epochs and training seconds until the centralised model (pooled data, the peers' code
    path, one epoch per call) first reaches ``target``; None if not in train_cfg.epochs."""
    import numpy as np

    from peer.data import pooled_data
    from peer.models import build_model, get_flat
    from peer.train import evaluate, train_local

    train, test = pooled_data(data_cfg, n_peers)
    vec = get_flat(build_model(spec))
    spent = 0.0
    for e in range(1, train_cfg.epochs + 1):
        res = train_local(spec, vec, train, dataclasses.replace(train_cfg, epochs=1), round=e, peer_seed=0)
        spent += res.seconds
        vec = (vec + res.update).astype(np.float32)
        acc, _ = evaluate(spec, vec, test)
        if acc >= target:
            return {"epochs": e, "train_seconds": spent, "accuracy": acc}
    return None


def bench_accuracy(name: str, rounds: int, out_dir: Path, **kw: Any) -> dict[str, Any]:
    from peer.data import DataConfig
    from peer.models import ModelSpec
    from peer.train import TrainConfig, centralized_baseline

    opts = demo_options(rounds=rounds, out_dir=out_dir / f"accuracy-{name}", **kw)
    summary, probe, wall = run_federation(opts, keep_summary=True)
    data_cfg = DataConfig(dataset=opts.dataset, partition=opts.partition, alpha=opts.alpha, seed=opts.seed)
    spec = ModelSpec(opts.arch, DIGITS_SHAPE, 10, hidden=opts.hidden, seed=opts.seed)
    train_cfg = TrainConfig(epochs=opts.epochs * rounds, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed)
    base = centralized_baseline(data_cfg, spec, train_cfg, n_peers=opts.peers)
    target = base["accuracy"] - 0.02
    bounds = round_bounds(probe, rounds)
    start = probe.started_at or 0.0
    curve, reached, final = [], None, None
    for data in probe.rounds_report:
        r, acc = data["round"], data["accuracy"]
        secs = bounds[r][1] - start if r in bounds else None
        curve.append({"round": r, "finalized": data["finalized"], "accuracy": acc, "seconds": secs})
        if acc is not None:
            final = acc
            if reached is None and acc >= target:
                reached = {"round": r, "seconds": secs}
    if summary is not None:
        final = summary["final_accuracy"]
    gap = None if final is None else base["accuracy"] - final
    return {
        "name": name, "demo_options": _opts_dict(opts), "peers": opts.peers, "byzantine": opts.byzantine,
        "attack": opts.attack if opts.byzantine else None, "partition": opts.partition,
        "alpha": opts.alpha if opts.partition == "dirichlet" else None, "rounds": rounds,
        "rounds_finalized": sum(1 for c in curve if c["finalized"]),
        "failed_rounds": [c["round"] for c in curve if not c["finalized"]],
        "stopped_last_round_failed": summary is None,
        "final_accuracy": final, "centralized_accuracy": base["accuracy"],
        "demo_centralized_accuracy": summary.get("centralized_accuracy") if summary else None,
        "centralized_epochs": base["epochs"], "centralized_train_seconds": base["train_seconds"],
        "gap_points": None if gap is None else 100 * gap, "target_gap_points": 100 * GAP_TARGETS[name],
        "within_target": gap is not None and gap <= GAP_TARGETS[name],
        "target_accuracy": target, "time_to_target": reached,  # None: not within the rounds run
        "centralized_time_to_target": centralized_time_to(data_cfg, spec, train_cfg, opts.peers, target),
        "run_seconds": wall, "curve": curve,
    }


def bench_demo(out_dir: Path) -> dict[str, Any]:
    """``fedchain demo --json`` with its defaults, as a user runs it (own process: imports included)."""
    cmd = [str(ROOT / ".venv" / "bin" / "fedchain"), "demo", "--json", "--out", str(out_dir / "demo")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False, timeout=1800)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"command": "fedchain demo --json", "exit_code": proc.returncode, "seconds": wall,
                           "within_target": proc.returncode == 0 and wall < DEMO_TARGET_S}
    if proc.returncode != 0:
        return {**out, "stderr_tail": proc.stderr[-2000:]}
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    failed = [line.split(":")[0].strip() for line in proc.stderr.splitlines() if "failed (no quorum)" in line]
    return {**out, "demo_seconds": s["seconds"], "rounds_finalized": s["rounds_finalized"], "rounds": s["rounds"],
            "failed_rounds": failed, "final_accuracy": s["final_accuracy"],
            "centralized_accuracy": s["centralized_accuracy"]}


# ---------------------------------------------------------------------------- output


def _f(x: Any, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _timing_rows(timing: list[dict[str, Any]]) -> list[str]:
    lines = ["| peers | params | wall s | train | publish | fetch | aggregate | adopt | chain "
             "(commit tx, vote tx) | overhead | round 1 wall s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for t in timing:
        m = t["median"]
        if not m:
            bad = [x for x in t["per_round"] if not x["finalized"]]
            why = (f"round {bad[0]['round']} failed ({bad[0]['wall']:.0f} s): no quorum; peers held "
                   f"{bad[0]['valid_min']}-{bad[0]['valid_max']} of {bad[0]['committed']} updates when they "
                   f"aggregated" if bad else "no finalised round 2..R")
            lines.append(f"| {t['peers']} | {t['n_params']:,} | {why} | | | | | | | | |")
            continue
        lines.append(f"| {t['peers']} | {t['n_params']:,} | {_f(m['wall'])} | {_f(m['train'])} "
                     f"| {_f(m['publish'])} | {_f(m['fetch'])} | {_f(m['aggregate'])} | {_f(m['adopt'])} "
                     f"| {_f(m['chain'])} ({_f(m['commit_tx'])}, {_f(m['vote_tx'])}) | {100 * m['overhead']:.0f}% "
                     f"| {_f(t['round1'].get('wall'))} |")
    return lines + [""]


def _accuracy_rows(accuracy: list[dict[str, Any]]) -> list[str]:
    lines = ["| run | final acc | centralised acc | gap (target) | baseline - 2 pt: federated "
             "| centralised |", "| --- | ---: | ---: | ---: | --- | --- |"]
    for a in accuracy:
        hit, chit = a["time_to_target"], a["centralized_time_to_target"]
        when = f"round {hit['round']}, {hit['seconds']:.1f} s" if hit else f"not in {a['rounds']} rounds"
        cwhen = (f"epoch {chit['epochs']}, {chit['train_seconds']:.2f} s" if chit
                 else f"not in {a['centralized_epochs']} epochs")
        failed = f", failed rounds {a['failed_rounds']}" if a["failed_rounds"] else ""
        lines.append(f"| {a['name']} ({a['peers']} peers, {a['rounds']} rounds{failed}) "
                     f"| {_f(a['final_accuracy'], 3)} | {a['centralized_accuracy']:.3f} "
                     f"| {_f(a['gap_points'], 1)} pt (<= {a['target_gap_points']:.0f}) | {when} | {cwhen} |")
    return lines + [""]


def markdown(result: dict[str, Any]) -> str:
    lines = []
    if result["timing"]:
        lines += _timing_rows(result["timing"])
    if result["accuracy"]:
        lines += _accuracy_rows(result["accuracy"])
    if result["demo"]:
        d = result["demo"]
        lines.append(f"`fedchain demo --json` (defaults): {d['seconds']:.1f} s wall (target < {DEMO_TARGET_S:.0f} s), "
                     f"exit {d['exit_code']}, {d.get('rounds_finalized')}/{d.get('rounds')} rounds finalised "
                     f"(failed: {d.get('failed_rounds') or 'none'}), accuracy {_f(d.get('final_accuracy'), 3)} "
                     f"vs centralised {_f(d.get('centralized_accuracy'), 3)}")
    lines.append(f"load average before / after: {result['loadavg_before']} / {result['loadavg_after']}; "
                 f"{result['seconds']:.0f} s; settings: {result['settings']}")
    return "\n".join(lines)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    global SETTINGS
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true",
                    help="smoke configuration: 3 peers x 0.1M, 2 rounds, no accuracy or demo run")
    ap.add_argument("--peers", default="5,10,20", help="peer counts of the timing runs")
    ap.add_argument("--sizes", default="0.1M,1M", help=f"model sizes of the timing runs ({', '.join(SIZES)})")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each timing run (round 1 reported apart)")
    ap.add_argument("--accuracy-rounds", type=int, default=10)
    ap.add_argument("--skip", default="", help="comma-separated: timing, accuracy, demo")
    ap.add_argument("--topology", choices=("star", "mesh"), default="star",
                    help="star: run_demo as shipped (every peer bootstraps to peer 0 only); mesh: bench shim, "
                         "every peer dials every other (as `fedchain peer run` does)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads in this process (0: torch's default, as `fedchain demo` runs)")
    ap.add_argument("--fetch-timeout", type=float, default=None,
                    help="experiment: DemoOptions.fetch_timeout, the longest a peer waits for the committed "
                         "payloads before aggregating what it has (default: the demo's)")
    ap.add_argument("--poll-interval", type=float, default=None,
                    help="experiment: every node's NodeConfig.poll_interval (default: as shipped)")
    ap.add_argument("--log-cache", action="store_true",
                    help="experiment: ChainClient.get_logs from an incremental cache (see _log_cache_patches)")
    ap.add_argument("--trace", action="store_true", help="print every peer action to stderr as it happens")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one)")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="print the markdown tables of a saved --json result and exit")
    args = ap.parse_args()
    if args.render is not None:
        print(markdown(json.loads(args.render.read_text())))
        return

    skip = {s for s in args.skip.split(",") if s}
    peers = [int(p) for p in args.peers.split(",") if p]
    sizes = [s for s in args.sizes.split(",") if s]
    bad = [s for s in sizes if s not in SIZES] + [s for s in skip if s not in ("timing", "accuracy", "demo")]
    if bad:
        ap.error(f"unknown --sizes / --skip value(s) {bad}")
    if args.quick:
        peers, sizes, args.rounds, skip = [3], ["0.1M"], 2, {"accuracy", "demo"}
    SETTINGS = Settings(topology=args.topology, fetch_timeout=args.fetch_timeout,
                        poll_interval=args.poll_interval, log_cache=args.log_cache, trace=args.trace)
    if args.torch_threads:
        from peer.train import configure_torch_threads

        configure_torch_threads(args.torch_threads)

    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "loadavg_before": _loadavg(), "cpus": os.cpu_count(),
        "settings": {**dataclasses.asdict(SETTINGS), "torch_threads": args.torch_threads, "rounds": args.rounds,
                     "accuracy_rounds": args.accuracy_rounds},
        "timing": [], "accuracy": [], "demo": None}
    with tempfile.TemporaryDirectory(prefix="fedchain-round-") as tmp:
        out = args.out or Path(tmp)
        if "timing" not in skip:
            for size in sizes:
                for n in peers:
                    result["timing"].append(bench_timing(n, size, args.rounds, out))
                    print(f"timing {n} peers x {size}: done ({_loadavg()})", file=sys.stderr, flush=True)
        if "accuracy" not in skip:
            result["accuracy"].append(bench_accuracy("iid", args.accuracy_rounds, out, partition="iid", byzantine=0))
            result["accuracy"].append(bench_accuracy("dirichlet0.5+signflip", args.accuracy_rounds, out,
                                                     partition="dirichlet", alpha=0.5, byzantine=1,
                                                     attack="sign_flip"))
            print(f"accuracy: done ({_loadavg()})", file=sys.stderr, flush=True)
        if "demo" not in skip:
            result["demo"] = bench_demo(out)
    result["loadavg_after"] = _loadavg()
    result["seconds"] = time.perf_counter() - t0
    print(json.dumps(result) if args.json else markdown(result))


if __name__ == "__main__":
    main()
