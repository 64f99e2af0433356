"""The exception root of the ``peer`` package.

    FedchainError
     ├── ConfigError          bad configuration or command-line input
     ├── ChainError           (peer.chain) RPC down, failed transactions
     │    └── ContractRevert  a custom error of the contract, decoded with its arguments
     ├── DataError            (peer.data) datasets, partitions, CSV input
     ├── ModelError           (peer.models) parameter vectors that do not fit the model
     ├── CodecError           (peer.codecs) update payloads that do not decode
     ├── AggregationError     (peer.aggregate) shapes, NaN, bad options
     ├── AttackError          (peer.attacks) simulation attacks misconfigured
     ├── MerkleError          (peer.merkle) entries or proofs
     ├── LedgerError          (peer.ledger) checkpoints and reward books
     └── ExportError          (peer.export) model files

Other libraries' exceptions (web3, libp2p, msgpack, torch) are translated at the
module that calls them, with ``raise X from exc``.
"""

from __future__ import annotations

__all__ = ["FedchainError", "ConfigError", "DataError", "AggregationError"]


class FedchainError(Exception):
    """Root of every error fedchain raises on purpose."""


class ConfigError(FedchainError):
    """A configuration value or command-line option is invalid; the message names it."""


class DataError(FedchainError):
    """A dataset, partition or data file cannot be used; the message says why."""


class AggregationError(FedchainError):
    """Aggregation inputs are invalid (shape, weights, non-finite values, options)."""
