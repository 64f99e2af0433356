"""A peer's configuration file (``fedchain peer run --config peer.toml``).

Loaded once at the CLI and passed down as frozen dataclasses. Unknown sections or keys
are errors that name them. Example::

    [chain]
    rpc = "http://127.0.0.1:8545"
    contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    dev_account = 1              # devnets only: account 1 of the test mnemonic
    # keystore = "~/.fedchain/keystore/UTC--...json"   # else: an encrypted keystore,
    # passphrase from $FEDCHAIN_PASSPHRASE or a prompt

    [network]
    listen = ["/ip4/0.0.0.0/tcp/4001"]
    bootstrap = ["/ip4/192.0.2.10/tcp/4001/p2p/16Uiu2..."]   # plus the chain's directory

    [data]                       # peer.data.DataConfig
    dataset = "digits"
    partition = "dirichlet"
    alpha = 0.5
    peer_index = 0               # which part of a simulated split is ours
    n_peers = 4

    [model]                      # peer.models.ModelSpec (must match the contract's genesis)
    arch = "mlp"
    input_shape = [64]
    n_classes = 10
    hidden = [32]

    [train]                      # peer.train.TrainConfig
    epochs = 2
    lr = 0.05

    [privacy]                    # optional: peer.privacy.DPConfig
    # clip = 1.0
    # noise_multiplier = 0.8

    [aggregation]
    rule = "median"
    f = 1

    [node]
    data_dir = ".fedchain/peer0"
    metrics_port = 9100          # Prometheus; 0 = off
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from peer.errors import ConfigError

__all__ = ["PeerConfig", "ChainSection", "NetworkSection", "NodeSection", "load_peer_config"]


def _take(section: str, raw: dict[str, Any], cls: type) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"[{section}]: unknown key(s) {unknown}; known: {sorted(names)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"[{section}]: {exc}") from exc


@dataclass(frozen=True)
class ChainSection:
    rpc: str = "http://127.0.0.1:8545"
    contract: str = ""
    dev_account: int | None = None
    keystore: str | None = None
    passphrase_env: str = "FEDCHAIN_PASSPHRASE"

    def __post_init__(self) -> None:
        if not self.contract:
            raise ConfigError("[chain] contract is required: the address `fedchain deploy` printed")
        if (self.dev_account is None) == (self.keystore is None):
            raise ConfigError("[chain]: set exactly one of dev_account (devnets) or keystore")


@dataclass(frozen=True)
class NetworkSection:
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "listen", tuple(self.listen))
        object.__setattr__(self, "bootstrap", tuple(self.bootstrap))


@dataclass(frozen=True)
class AggregationSection:
    rule: str = "median"
    f: int = 0
    pre: tuple[str, ...] = ()  # e.g. ["nnm"]: nearest-neighbour mixing before the rule

    def __post_init__(self) -> None:
        object.__setattr__(self, "pre", tuple(self.pre))
    codec: str = "float32"
    kept_factor: float = 3.0


@dataclass(frozen=True)
class NodeSection:
    data_dir: str = ".fedchain/peer"
    metrics_port: int = 0
    byzantine: str | None = None  # simulations only
    log_file: str | None = None
    stop_after: int | None = None
    poll_interval: float = 0.2  # seconds between looks at the chain
    fetch_timeout: float = 15.0  # longest wait for the round's payloads
    linger: float = 15.0  # seconds to keep serving the final model after the last round


@dataclass(frozen=True)
class PeerConfig:
    chain: ChainSection
    network: NetworkSection
    data: Any  # peer.data.DataConfig
    peer_index: int
    n_peers: int
    model: Any  # peer.models.ModelSpec
    train: Any  # peer.train.TrainConfig
    privacy: Any | None  # peer.privacy.DPConfig
    aggregation: AggregationSection
    node: NodeSection
    path: Path = field(default=Path("peer.toml"))

    @property
    def data_dir(self) -> Path:
        d = Path(os.path.expanduser(self.node.data_dir))
        return d if d.is_absolute() else (self.path.parent / d)


SECTIONS = ("chain", "network", "data", "model", "train", "privacy", "aggregation", "node")


def load_peer_config(path: str | Path) -> PeerConfig:
    """Parse and validate a peer's TOML file; every error names the section and key."""
    from peer.data import DataConfig
    from peer.models import ModelSpec
    from peer.privacy import DPConfig
    from peer.train import TrainConfig

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {list(SECTIONS)}")
    data_raw = dict(raw.get("data", {}))
    peer_index = data_raw.pop("peer_index", 0)
    n_peers = data_raw.pop("n_peers", 1)
    if type(peer_index) is not int or type(n_peers) is not int or not 0 <= peer_index < n_peers:
        raise ConfigError(f"[data] peer_index must be in [0, n_peers), got {peer_index!r} of {n_peers!r}")
    if "model" not in raw:
        raise ConfigError(f"{path}: the [model] section is required (it must match the federation's genesis)")
    return PeerConfig(
        chain=_take("chain", raw.get("chain", {}), ChainSection),
        network=_take("network", raw.get("network", {}), NetworkSection),
        data=DataConfig.from_dict(data_raw),
        peer_index=peer_index,
        n_peers=n_peers,
        model=ModelSpec.from_dict(raw["model"]),
        train=_take("train", raw.get("train", {}), TrainConfig),
        privacy=_take("privacy", raw["privacy"], DPConfig) if raw.get("privacy") else None,
        aggregation=_take("aggregation", raw.get("aggregation", {}), AggregationSection),
        node=_take("node", raw.get("node", {}), NodeSection),
        path=path,
    )
