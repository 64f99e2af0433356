"""``fedchain sim``: many peers as separate OS processes against a devnet chain.

The command starts a ganache (or anvil) devnet on a free loopback port, deploys and funds
the contract, writes one ``peer.toml`` per peer and starts ``fedchain peer run`` for each as
its own process (so each has its own libp2p host, torch and chain connection, exactly as
on separate machines), opens round 1 once every peer registered, and waits for the
federation's last round. The result is a JSON summary and a plot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peer.errors import ConfigError, FedchainError

__all__ = ["SimOptions", "run_sim", "write_peer_config", "PeerProcess"]

ETHER = 10**18


@dataclass(frozen=True)
class SimOptions:
    peers: int = 4
    rounds: int = 3
    byzantine: int = 0
    attack: str = "sign_flip"
    aggregator: str = "median"
    pre: tuple[str, ...] = ("nnm",)
    alpha: float = 0.5
    partition: str = "dirichlet"
    chain: str = "ganache"
    out_dir: Path = Path("out/sim")
    epochs: int = 1
    hidden: tuple[int, ...] = (32,)
    seed: int = 0
    timeout: float = 300.0
    commit_window: int = 60
    vote_window: int = 60
    late_joiners: int = 0  # peers started only after round 1 finalised
    extra_env: dict[str, str] = field(default_factory=dict)
    # called once round 1 is open, with the contract handle and the (mutable) process list:
    # fault-injection tests kill and restart peers from here
    during: Callable[[Any, list[PeerProcess]], None] | None = None

    def __post_init__(self) -> None:
        if self.peers < 2:
            raise ConfigError(f"--peers must be at least 2, got {self.peers}")
        if not 0 <= self.byzantine < self.peers:
            raise ConfigError(f"--byzantine must be in [0, {self.peers - 1}], got {self.byzantine}")
        if self.chain not in ("ganache", "anvil"):
            raise ConfigError(f"--chain must be ganache or anvil, got {self.chain!r}")


def write_peer_config(path: Path, *, rpc: str, contract: str, dev_account: int, peer_index: int, n_peers: int,
                      spec: Any, opts: SimOptions, byzantine: str | None, bootstrap: list[str]) -> None:
    """One peer's TOML, in the format ``fedchain peer run`` reads (see peer/config.py)."""
    lines = [
        "[chain]", f'rpc = "{rpc}"', f'contract = "{contract}"', f"dev_account = {dev_account}", "",
        "[network]", 'listen = ["/ip4/127.0.0.1/tcp/0"]', f"bootstrap = {json.dumps(bootstrap)}", "",
        "[data]", 'dataset = "digits"', f'partition = "{opts.partition}"', f"alpha = {opts.alpha}",
        f"seed = {opts.seed}", f"peer_index = {peer_index}", f"n_peers = {n_peers}", "",
        "[model]", f'arch = "{spec.arch}"', f"input_shape = {list(spec.input_shape)}",
        f"n_classes = {spec.n_classes}", f"hidden = {list(spec.hidden or ())}", f"seed = {spec.seed}", "",
        "[train]", f"epochs = {opts.epochs}", f"seed = {opts.seed}", "",
        "[aggregation]", f'rule = "{opts.aggregator}"', f"f = {max(opts.byzantine, 1)}",
        f"pre = {json.dumps(list(opts.pre))}", "",
        "[node]", f'data_dir = "{path.parent / ("peer%d" % peer_index)}"',
    ]
    if byzantine:
        lines.append(f'byzantine = "{byzantine}"')
    path.write_text("\n".join(lines) + "\n")


class PeerProcess:
    """A ``fedchain peer run`` child process with its output in a log file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "peer.cli", "peer", "run", "--config", str(config), "--quiet"],
            stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def result(self) -> dict[str, Any] | None:
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    return None
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise FedchainError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def run_sim(opts: SimOptions, *, console: Any) -> dict[str, Any]:
    from peer.accounts import dev_accounts
    from peer.chain import ChainClient, FederationParams
    from peer.data import DataConfig, load_peer_data, pooled_data
    from peer.devnet import Devnet
    from peer.models import ModelSpec, build_model, get_flat, model_hash, spec_hash
    from peer.train import evaluate

    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("peer*"):  # a new federation: the previous run's peers are not ours
        if old.is_dir():
            shutil.rmtree(old)
        elif old.suffix in (".log", ".toml"):
            old.unlink()
    t0 = time.perf_counter()
    data_cfg = DataConfig(dataset="digits", partition=opts.partition, alpha=opts.alpha, seed=opts.seed)
    probe, _ = load_peer_data(data_cfg, 0, opts.peers)
    spec = ModelSpec(arch="mlp", input_shape=probe.input_shape, n_classes=probe.n_classes,
                     hidden=opts.hidden, seed=opts.seed)
    genesis = get_flat(build_model(spec))
    accounts = dev_accounts(opts.peers + 1)
    with Devnet.start(opts.chain, accounts=opts.peers + 1, state_dir=out / "chain", port=0) as dev:
        client = ChainClient.connect(dev.rpc_url)
        params = FederationParams(
            model_spec_hash=spec_hash(spec), genesis_model_hash=model_hash(genesis),
            commit_window=opts.commit_window, vote_window=opts.vote_window, committee_size=opts.peers,
            quorum_bps=5_001, reward_per_round=ETHER, min_stake=ETHER // 10, unbonding_delay=3600,
            max_rounds=opts.rounds, contributor_share_bps=7_000, slash_reporter_bps=5_000,
        )
        fed = client.deploy(params, sender=accounts[0])
        fed.fund(ETHER * opts.rounds, sender=accounts[0])
        console.print(f"{opts.chain} at {dev.rpc_url}; Federation at {fed.address}")
        procs: list[PeerProcess] = []
        try:
            n_first = opts.peers - opts.late_joiners
            for i in range(opts.peers):
                byz = opts.attack if i >= opts.peers - opts.byzantine else None
                cfg_path = out / f"peer{i}.toml"
                write_peer_config(cfg_path, rpc=dev.rpc_url, contract=fed.address, dev_account=i + 1, peer_index=i,
                                  n_peers=opts.peers, spec=spec, opts=opts, byzantine=byz, bootstrap=[])
                if i < n_first:
                    procs.append(PeerProcess(cfg_path, out / f"peer{i}.log", opts.extra_env))
            _wait(lambda: fed.peer_count() >= n_first, opts.timeout, f"{n_first} peers to register")
            fed.start(sender=accounts[0])
            console.print(f"{n_first} peers registered; round 1 open")
            if opts.during is not None:
                opts.during(fed, procs)
            if opts.late_joiners:
                _wait(lambda: fed.last_finalized_round() >= 1, opts.timeout, "round 1 to finalise")
                for i in range(n_first, opts.peers):
                    procs.append(PeerProcess(out / f"peer{i}.toml", out / f"peer{i}.log", opts.extra_env))
            _wait(lambda: all(p.proc.poll() is not None for p in procs), opts.timeout, "the peers to finish")
        finally:
            for p in procs:
                p.stop()
        results = [p.result() for p in procs]
        onchain = fed.latest_model_hash().hex()
        finalized = fed.last_finalized_round()
    _, test = pooled_data(data_cfg, opts.peers)
    honest = [r for i, r in enumerate(results) if i < opts.peers - opts.byzantine]
    final_acc = None
    if results and results[0] is not None:
        import numpy as np

        vec = np.load(out / "peer0" / "models" / f"round-{results[0]['model_round']:06d}.npy")
        final_acc, _ = evaluate(spec, vec, test)
    summary = {
        "peers": opts.peers, "rounds": opts.rounds, "rounds_finalized": finalized, "byzantine": opts.byzantine,
        "aggregator": opts.aggregator, "alpha": opts.alpha, "chain": opts.chain,
        "onchain_model_hash": onchain,
        "peer_results": results,
        "honest_hashes_agree": all(r is not None and r["model_hash"] == onchain for r in honest),
        "final_accuracy": final_acc,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    summary["accuracy_per_round"] = _accuracy_per_round(out / "peer0" / "models", spec, test)
    summary["plot"] = str(_plot(out, summary))
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    console.print(f"{finalized}/{opts.rounds} rounds finalised; honest peers agree with the chain: "
                  f"{summary['honest_hashes_agree']}; results in {out / 'results.json'}")
    return summary


def _accuracy_per_round(models: Path, spec: Any, test: Any) -> dict[int, float]:
    """Accuracy on the pooled test split of every finalised model peer 0 kept."""
    import numpy as np

    from peer.train import evaluate

    out: dict[int, float] = {}
    for path in sorted(models.glob("round-*.npy")):
        r = int(path.stem.split("-")[1])
        out[r] = round(float(evaluate(spec, np.load(path).astype(np.float32), test)[0]), 4)
    return out


def _plot(out: Path, summary: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = summary["accuracy_per_round"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(list(acc), list(acc.values()), marker="o")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy (pooled test split)")
    ax.set_title(f"fedchain sim: {summary['peers']} peers, {summary['aggregator']}, "
                 f"{summary['byzantine']} Byzantine, alpha {summary['alpha']}")
    fig.tight_layout()
    path = out / "sim.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
