"""``fedchain peer run``: one long-running peer node in its own process.

Connects to the chain, loads the peer's key, starts its libp2p host (bootstrap peers from
the config plus every registered peer's multiaddrs from the chain, which doubles as a
directory), registers with the minimum stake when not yet registered, and runs
:class:`peer.node.PeerNode` with a live view, structured logs and Prometheus metrics.
"""

from __future__ import annotations

import getpass
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from peer.config import PeerConfig, load_peer_config
from peer.errors import ConfigError, FedchainError

__all__ = ["run_peer", "export_round", "load_account"]

log = logging.getLogger("fedchain.peer")


def load_account(cfg: PeerConfig) -> Any:
    """The peer's key: a devnet development account, or an encrypted keystore file."""
    from peer import accounts

    if cfg.chain.dev_account is not None:
        return accounts.dev_accounts(cfg.chain.dev_account + 1)[cfg.chain.dev_account]
    import os

    passphrase = os.environ.get(cfg.chain.passphrase_env)
    if passphrase is None:
        passphrase = getpass.getpass(f"passphrase for {cfg.chain.keystore}: ")
    return accounts.load_keystore(Path(os.path.expanduser(cfg.chain.keystore or "")), passphrase)


def _setup_logging(cfg: PeerConfig) -> None:
    path = Path(cfg.node.log_file) if cfg.node.log_file else cfg.data_dir / "peer.log.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("fedchain")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    root.propagate = False  # structured lines go to the file, not to libraries' root handlers


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"t": round(record.created, 3), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        if isinstance(record.args, dict):
            entry.update(record.args)
        return json.dumps(entry, default=str)


async def run_peer(cfg: PeerConfig, *, console: Console, live: bool = True) -> dict[str, Any]:
    from gossip.network import Libp2pNetwork, NetworkConfig
    from peer.chain import ChainClient
    from peer.data import load_peer_data
    from peer.metrics import PeerMetrics
    from peer.node import NodeConfig, PeerNode

    _setup_logging(cfg)
    account = load_account(cfg)
    client = ChainClient.connect(cfg.chain.rpc)
    fed = client.federation(cfg.chain.contract)
    params = await trio.to_thread.run_sync(fed.params)
    registered = await trio.to_thread.run_sync(fed.peers)
    # the chain doubles as a directory: dial every other registered peer too
    bootstrap = tuple(dict.fromkeys([*cfg.network.bootstrap,
                                     *[m for p in registered if p.address != account.address for m in p.multiaddrs]]))
    train, test = load_peer_data(cfg.data, cfg.peer_index, cfg.n_peers)
    metrics = PeerMetrics(port=cfg.node.metrics_port) if cfg.node.metrics_port else None
    ncfg = NetworkConfig(data_dir=cfg.data_dir, chain_id=client.chain_id, contract=fed.address,
                         listen_addrs=cfg.network.listen, bootstrap=bootstrap)
    async with Libp2pNetwork(config=ncfg).running() as net:
        info = await trio.to_thread.run_sync(fed.peer_info, account.address)
        addrs = "\n".join(net.listen_multiaddrs()).encode()
        if not info.registered:
            await trio.to_thread.run_sync(lambda: fed.register(addrs, value=params.min_stake, sender=account))
            log.info("registered", {"peer": account.address, "stake": params.min_stake})
        elif "\n".join(info.multiaddrs).encode() != addrs:
            await trio.to_thread.run_sync(lambda: fed.set_multiaddrs(addrs, sender=account))
        node_cfg = NodeConfig(data_dir=cfg.data_dir, model=cfg.model, train=cfg.train, dp=cfg.privacy,
                              aggregator=cfg.aggregation.rule, aggregator_f=cfg.aggregation.f,
                              aggregator_pre=cfg.aggregation.pre,
                              codec=cfg.aggregation.codec, kept_factor=cfg.aggregation.kept_factor,
                              byzantine=cfg.node.byzantine, poll_interval=cfg.node.poll_interval,
                              fetch_timeout=cfg.node.fetch_timeout, linger=cfg.node.linger)
        status: dict[str, Any] = {"round": 0, "phase": "starting", "accuracy": None}

        def on_event(kind: str, data: dict[str, Any]) -> None:
            log.info(kind, data)
            if kind == "decision":
                status["round"], status["phase"] = data["round"], data["action"]
            elif kind in ("finalized", "synced"):
                status["accuracy"] = data.get("accuracy", status["accuracy"])
                status["model_hash"] = data.get("model_hash")
                status["finalized"] = data["round"]
            if metrics is not None:
                metrics.observe(kind, data)

        node = PeerNode(config=node_cfg, federation=fed, account=account, network=net,
                        train_data=train, test_data=test, on_event=on_event)

        async def refresh_peers() -> None:
            """The chain is the directory: dial every registered peer we are not connected to
            (peers that start together find each other once they have registered)."""
            from gossip.errors import GossipError

            while True:
                connected = set(net.connected_peers())
                for p in await trio.to_thread.run_sync(fed.peers):
                    if p.address == account.address or not p.active:
                        continue
                    for maddr in p.multiaddrs:
                        if maddr.rsplit("/p2p/", 1)[-1] in connected:
                            break
                        try:
                            with trio.move_on_after(5):
                                await net.connect(maddr)
                            break
                        except GossipError as exc:
                            log.info("dial_failed", {"peer": p.address, "multiaddr": maddr, "error": str(exc)})
                status["peers"] = len(net.connected_peers())
                await trio.sleep(1.0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refresh_peers)
            if live:
                nursery.start_soon(_live_view, console, account.address, status)
            await node.run(stop_after=cfg.node.stop_after)
            nursery.cancel_scope.cancel()
    result = {"peer": account.address, "model_round": node.state.model_round,
              "model_hash": node.state.model_hash.hex(), "counters": node.counters,
              "accuracy": status.get("accuracy")}
    # one JSON line on stdout, unwrapped (rich would fold it), for `fedchain sim` and scripts
    print(json.dumps(result), flush=True)
    return result


async def _live_view(console: Console, address: str, status: dict[str, Any]) -> None:
    def render() -> Table:
        t = Table(title=f"fedchain peer {address}")
        for col in ("round", "phase", "peers", "finalised", "accuracy", "model"):
            t.add_column(col)
        acc = status.get("accuracy")
        t.add_row(str(status.get("round")), str(status.get("phase")), str(status.get("peers", "-")),
                  str(status.get("finalized", "-")), f"{acc:.3f}" if acc is not None else "-",
                  (status.get("model_hash") or "-")[:16])
        return t

    with Live(render(), console=console, refresh_per_second=4, transient=False) as view:
        while True:
            view.update(render())
            await trio.sleep(0.25)


def export_round(*, round: int, out: Path, data_dir: Path, contract: str, rpc: str,
                 config: Path | None) -> bytes:
    """Export the model of finalised round ``round`` from a peer's data directory."""
    from peer.chain import ChainClient
    from peer.export import save_model
    from peer.models import model_hash

    path = Path(data_dir) / "models" / f"round-{round:06d}.npy"
    if not path.exists():
        raise ConfigError(f"{path} does not exist: this peer holds no model for round {round}")
    vec = np.load(path, allow_pickle=False).astype(np.float32)
    spec_path = Path(data_dir) / "models" / "spec.json"
    if config is not None:
        spec = load_peer_config(config).model
    elif spec_path.exists():
        from peer.models import ModelSpec

        spec = ModelSpec.from_dict(json.loads(spec_path.read_text()))
    else:
        raise ConfigError(f"no model spec: pass --config or keep {spec_path}")
    fed = ChainClient.connect(rpc).federation(contract)
    onchain = fed.finalized_model(round)
    digest = model_hash(vec)
    if onchain != digest:
        raise FedchainError(f"round {round}: this model's hash {digest.hex()} is not the chain's "
                            f"{onchain.hex() if any(onchain) else '(none: round not finalised)'}")
    save_model(out, spec, vec, round=round)
    return digest
