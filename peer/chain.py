"""The chain client: one :class:`ChainClient` over web3.py for every chain, and
:class:`Federation`, a thin handle on one deployed Federation contract.

* ``ChainClient.embedded()`` runs an in-process EVM (eth-tester + py-evm, pinned to the
  Shanghai fork the contract is compiled for) with the development accounts funded;
  ``ChainClient.connect(url)`` talks JSON-RPC to ganache, anvil, geth or a testnet. Nothing
  else differs: the embedded chain is wrapped in a provider that answers like a JSON-RPC
  node (reverts carry their data, ``evm_increaseTime`` moves time), so all the code paths
  below are the same for both.
* Transactions are signed locally with eth-account keys (never ``eth_sendTransaction``), so
  the same code works on any RPC. Sends are thread-safe: one lock and a local nonce counter
  per sender, which lets peers sharing one process (and one embedded chain) send at once
  from ``trio.to_thread.run_sync``.
* Views return frozen dataclasses; events are :class:`Event` records; every write returns a
  :class:`TxReceipt` with the gas used and the decoded events.
* Errors: a revert becomes :class:`ContractRevert` naming the contract's custom error and
  its arguments (decoded from the ABI by selector); an RPC that is down becomes a
  :class:`ChainError` naming the URL.

Errors::

    FedchainError
     └── ChainError          RPC down or failing, bad receipt, wrong chain for dev accounts
          └── ContractRevert a reverted call or transaction, custom error decoded

Example::

    >>> from peer.chain import ChainClient, FederationParams
    >>> client = ChainClient.embedded(accounts=3)
    >>> operator, alice, bob = client.dev_accounts
    >>> fed = client.deploy(FederationParams(committee_size=2), sender=operator)
    >>> fed.register(["/ip4/127.0.0.1/tcp/4001"], sender=alice).gas_used > 0
    True
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import abi_to_signature, event_abi_to_log_topic, keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import (
    ContractLogicError,
    TimeExhausted,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.rpc.utils import REQUEST_RETRY_ALLOWLIST, ExceptionRetryConfiguration

from peer.accounts import DEV_HD_PATH, DEV_MNEMONIC, dev_accounts
from peer.errors import FedchainError
from peer.protocol import Phase  # one definition of the round phases

__all__ = [
    "ARTIFACTS_DIR",
    "DEVNET_CHAIN_IDS",
    "Artifact",
    "ChainClient",
    "ChainError",
    "Commitment",
    "ContractRevert",
    "Event",
    "Federation",
    "FederationParams",
    "PeerView",
    "Phase",
    "RoundView",
    "SignedUpdate",
    "TxReceipt",
    "Vote",
    "committee_indices",
    "decode_multiaddrs",
    "encode_multiaddrs",
    "load_artifact",
    "sign_update",
    "update_typed_data",
    "signed_update_of",
]

ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "contracts" / "build"
"""Compiled contracts (``node devnet/compile.js``), committed so that peers need no compiler."""

DEVNET_CHAIN_IDS = frozenset({1337, 31337})
"""Chain ids of ganache and anvil as :mod:`peer.devnet` starts them: the only RPC chains on
which the public development keys are offered."""

POLL_LATENCY = 0.005  # web3's default 0.1 s would add 0.1 s to every receipt (PITFALLS.md)
RECEIPT_TIMEOUT = 120.0
GAS_MARGIN = 1.2  # over eth_estimateGas: storage refunds and the 63/64 rule make it tight
# Peers send concurrently: between the estimate and the mining, another peer's transaction
# can change which path ours takes (a plain vote becomes the finalising vote, which opens the
# next round: ~45k more; a vote for a later tally slot: ~2.3k per slot). Unused gas is not
# paid for, so a fixed headroom costs nothing and prevents out-of-gas failures (seen on
# ganache with four peers voting at once).
GAS_HEADROOM = 80_000
# Gas limit of transactions whose validity depends on the clock (see Federation.fail_round
# and vote_aggregate): sent without estimation. Covers a finalising vote that scans the whole
# tally table and opens the next round (~120k).
TIME_SENSITIVE_GAS = 250_000

# ---------------------------------------------------------------- errors


class ChainError(FedchainError):
    """The chain cannot do what was asked: RPC unreachable or failing, a transaction lost,
    development keys asked of a real chain. The message names the URL or the transaction."""


class ContractRevert(ChainError):
    """A contract call or transaction reverted; the custom error is decoded from the ABI.

    ``error_name`` is the Solidity error (``"NotInCommittee"``; ``"Error"`` for a
    ``require`` string, ``"Panic"`` for an assertion or overflow, None when the revert
    carried no data) and ``args_dict`` its arguments by the contract's names (addresses
    checksummed, bytes as ``bytes``).
    """

    def __init__(
        self, function: str, error_name: str | None, args_dict: Mapping[str, Any], data: bytes,
        *, node_message: str | None = None,
    ) -> None:
        self.function = function
        self.error_name = error_name
        self.args_dict = dict(args_dict)
        self.data = data
        if error_name is None:
            detail = "no reason given" + (f" ({node_message})" if node_message else "")
        else:
            detail = f"{error_name}({', '.join(f'{k}={_show(v)}' for k, v in self.args_dict.items())})"
        super().__init__(f"{function} reverted: {detail}")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and not value.startswith("0x"):
        return repr(value)
    return str(value)


# ---------------------------------------------------------------- records


_UNSPECIFIED_SPEC = hashlib.sha256(b"fedchain:model-spec:unspecified").digest()
_UNSPECIFIED_GENESIS = hashlib.sha256(b"fedchain:genesis-model:unspecified").digest()


@dataclass(frozen=True)
class FederationParams:
    """The contract's immutable deployment parameters (``Params``), in snake_case.

    Amounts are in wei, windows and delays in seconds, shares in basis points (1/10000).
    The two hashes default to placeholders (sha256 of a fixed label) so that a devnet can be
    deployed without a model; a real federation sets them from its model spec.
    """

    model_spec_hash: bytes = _UNSPECIFIED_SPEC
    genesis_model_hash: bytes = _UNSPECIFIED_GENESIS
    commit_window: int = 300
    vote_window: int = 300
    committee_size: int = 10
    quorum_bps: int = 6667
    reward_per_round: int = 10**17
    min_stake: int = 10**18
    unbonding_delay: int = 86_400
    max_rounds: int = 0
    contributor_share_bps: int = 8000
    slash_reporter_bps: int = 5000

    def uses_placeholder_hashes(self) -> bool:
        """True when a model hash was left at its placeholder default."""
        return _UNSPECIFIED_SPEC == self.model_spec_hash or _UNSPECIFIED_GENESIS == self.genesis_model_hash


@dataclass(frozen=True)
class RoundView:
    """``roundState()``: the current round (timestamps in seconds since the epoch)."""

    round: int
    seed: int
    opened_at: int
    commit_deadline: int
    vote_deadline: int
    n_peers: int
    committee_expected: int
    committed: int
    quorum_votes: int
    phase: Phase


@dataclass(frozen=True)
class PeerView:
    """``peerInfo(address)`` plus the address; ``multiaddrs`` decoded from the newline-separated
    UTF-8 the contract stores."""

    address: str
    index: int
    registered: bool
    active: bool
    slashed: bool
    unlock_at: int
    last_commit_round: int
    last_vote_round: int
    stake: int
    multiaddrs: tuple[str, ...]


@dataclass(frozen=True)
class Event:
    """One decoded contract event. ``args`` are keyed by the contract's names
    (``payloadHash``, ``nSamples``); bytes32 values are ``bytes``, addresses checksummed."""

    name: str
    args: Mapping[str, Any]
    block_number: int
    tx_hash: str
    log_index: int
    address: str

    @property
    def round(self) -> int | None:
        """The event's ``round`` argument, if it has one."""
        return self.args.get("round")


@dataclass(frozen=True)
class TxReceipt:
    """A mined, successful transaction: hash, block, gas used and its decoded events."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[Event, ...]
    contract_address: str | None = None

    def event(self, name: str) -> Event:
        """The first event called ``name``; ChainError if the transaction emitted none."""
        for ev in self.events:
            if ev.name == name:
                return ev
        raise ChainError(f"transaction {self.tx_hash} emitted no {name} event "
                         f"(it emitted: {', '.join(e.name for e in self.events) or 'nothing'})")


@dataclass(frozen=True)
class Commitment:
    """An ``UpdateCommitted`` event: what ``peer`` committed for ``round``."""

    round: int
    peer: str
    payload_hash: bytes
    n_samples: int
    block_number: int


@dataclass(frozen=True)
class Vote:
    """A ``VoteCast`` event; ``votes`` is the pair's tally after this vote."""

    round: int
    voter: str
    model_hash: bytes
    rewards_root: bytes
    votes: int
    block_number: int


@dataclass(frozen=True)
class SignedUpdate:
    """An update announcement with its EIP-712 signature (``Signed`` in the contract), the
    evidence ``reportEquivocation`` takes."""

    round: int
    payload_hash: bytes
    payload_size: int
    n_samples: int
    encoding: int
    signature: bytes

    def as_abi(self) -> tuple:
        return (self.round, self.payload_hash, self.payload_size, self.n_samples,
                self.encoding, self.signature)


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: ABI and creation bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


def load_artifact(name: str = "Federation", *, directory: Path = ARTIFACTS_DIR) -> Artifact:
    """Read ``contracts/build/<name>.json`` (written by ``make compile``)."""
    path = directory / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ChainError(f"no compiled contract at {path}: run `make compile`") from exc
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"])


# ---------------------------------------------------------------- pure helpers


def committee_indices(seed: int, n_peers: int, committee_size: int, active: Sequence[bool]) -> list[int]:
    """Indices of the round's committee, the contract's rule off chain.

    Peer ``i`` is a member iff ``i < n_peers``, it is active, and either
    ``committee_size >= n_peers`` or ``(i + n - seed % n) % n < committee_size``: a window of
    ``committee_size`` consecutive indices starting at ``seed % n_peers``, wrapping around,
    in which inactive peers are skipped (not replaced). ``active[i]`` is peer i's flag.
    """
    if len(active) < n_peers:
        raise ValueError(f"need the active flag of all {n_peers} peers, got {len(active)}")
    n, k = n_peers, committee_size
    if n == 0:
        return []
    start = seed % n
    return [i for i in range(n) if active[i] and (k >= n or (i + n - start) % n < k)]


def encode_multiaddrs(multiaddrs: Sequence[str] | str | bytes) -> bytes:
    """Multiaddrs as the contract stores them: newline-separated UTF-8."""
    if isinstance(multiaddrs, bytes):
        return multiaddrs
    if isinstance(multiaddrs, str):
        multiaddrs = [multiaddrs]
    for ma in multiaddrs:
        if "\n" in ma or not ma.startswith("/"):
            raise ValueError(f"not a multiaddr: {ma!r}")
    return "\n".join(multiaddrs).encode()


def decode_multiaddrs(data: bytes) -> tuple[str, ...]:
    """Inverse of :func:`encode_multiaddrs`; undecodable bytes are shown, not dropped."""
    text = bytes(data).decode("utf-8", errors="replace")
    return tuple(line for line in text.split("\n") if line)


def update_typed_data(
    *, chain_id: int, contract: str, round: int, payload_hash: bytes, payload_size: int,
    n_samples: int, encoding: int,
) -> dict[str, Any]:
    """The EIP-712 message of an update announcement; one definition, in gossip.wire."""
    from gossip.wire import update_typed_data as typed

    return typed(chain_id=chain_id, contract=contract, round=round, payload_hash=payload_hash,
                 payload_size=payload_size, n_samples=n_samples, encoding=encoding)


def signed_update_of(ann: Any) -> SignedUpdate:
    """The contract's ``Signed`` evidence from a gossiped :class:`gossip.wire.UpdateAnnouncement`."""
    return SignedUpdate(ann.round, bytes(ann.payload_hash), ann.payload_size, ann.n_samples,
                        ann.encoding, bytes(ann.signature))


def sign_update(
    account: LocalAccount, *, chain_id: int, contract: str, round: int, payload_hash: bytes,
    payload_size: int, n_samples: int, encoding: int,
) -> SignedUpdate:
    """Sign an update announcement with ``account`` (what the contract's ``hashUpdate``
    digests and ``reportEquivocation`` recovers), via gossip.wire's signer."""
    from gossip.wire import sign_update as sign

    return signed_update_of(sign(account.key, chain_id=chain_id, contract=contract, round=round,
                                 payload_hash=payload_hash, payload_size=payload_size,
                                 n_samples=n_samples, encoding=encoding))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _struct_kwargs(components: Sequence[Mapping[str, Any]], values: Sequence[Any]) -> dict[str, Any]:
    return {_snake(c["name"]): v for c, v in zip(components, values, strict=True)}


def _plain(value: Any) -> Any:
    """web3 values to plain Python: HexBytes -> bytes, lists -> tuples."""
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


# ---------------------------------------------------------------- embedded provider


class _EmbeddedProvider(EthereumTesterProvider):
    """eth-tester behind the same JSON-RPC answers a node gives.

    * Reverts come back as ``{"code": 3, "message": "execution reverted", "data": "0x..."}``
      (eth-tester raises with the data pasted into a string), invalid transactions as RPC
      errors, so web3 raises the same exceptions as over HTTP.
    * ``evm_increaseTime(seconds)`` moves time like ganache/anvil (and mines a block).
    * One lock around every request: py-evm is not thread-safe and peers in one process
      call it from worker threads.
    """

    def __init__(self, tester: Any) -> None:
        super().__init__(tester)
        self._lock = threading.RLock()

    def make_request(self, method: Any, params: Any) -> Any:
        from eth_tester.exceptions import TransactionFailed
        from eth_tester.exceptions import ValidationError as TesterValidationError
        from eth_utils import ValidationError as EVMValidationError

        with self._lock:
            request_id = self._current_request_id
            self._current_request_id += 1
            try:
                if method == "evm_increaseTime":
                    latest = self.ethereum_tester.get_block_by_number("latest")
                    self.ethereum_tester.time_travel(latest["timestamp"] + int(params[0]))
                    return {"id": request_id, "jsonrpc": "2.0", "result": int(params[0])}
                namespace, _, endpoint = method.partition("_")
                delegator = self.api_endpoints.get(namespace, {}).get(endpoint)
                if delegator is None:
                    return _rpc_error(request_id, -32601, f"Unknown RPC Endpoint: {method}")
                return {"id": request_id, "jsonrpc": "2.0",
                        "result": delegator(self.ethereum_tester, params)}
            except NotImplementedError:
                return _rpc_error(request_id, -32601, f"RPC Endpoint has not been implemented: {method}")
            except TransactionFailed as exc:
                reason = exc.args[0] if exc.args else b""
                if isinstance(reason, Exception):  # eth-tester sometimes wraps once more
                    reason = reason.args[0] if reason.args else b""
                if isinstance(reason, bytes):
                    return _rpc_error(request_id, 3, "execution reverted", "0x" + reason.hex())
                return _rpc_error(request_id, 3, f"execution reverted: {reason}")
            except (TesterValidationError, EVMValidationError) as exc:  # bad nonce, no funds...
                return _rpc_error(request_id, -32000, str(exc))


@functools.cache
def _embedded_backend_class() -> type:
    """eth-tester's py-evm backend with an ``eth_call`` that behaves like a node's: a revert
    keeps its raw data (the stock one turns it into ``str(error)``, losing custom errors),
    and the caller needs no balance (fees are zero, as geth and anvil do for calls). Built on
    first use so that importing this module does not import py-evm."""
    from eth.exceptions import Revert
    from eth.vm.spoof import SpoofTransaction
    from eth_tester import PyEVMBackend
    from eth_tester.backends.pyevm.main import _get_block_by_number
    from eth_tester.exceptions import TransactionFailed

    class EmbeddedBackend(PyEVMBackend):  # type: ignore[misc]
        def call(self, transaction: dict[str, Any], block_number: Any = "latest") -> bytes:
            tx = {"gas": self._max_available_gas(), **transaction}
            unsigned = self._get_normalized_and_unsigned_evm_transaction(tx, block_number)
            free = SpoofTransaction(unsigned, from_=transaction["from"], gas_price=0,
                                    max_fee_per_gas=0, max_priority_fee_per_gas=0)
            header = _get_block_by_number(self.chain, block_number).header
            vm = self.chain.get_vm(at_header=header)
            if hasattr(header, "base_fee_per_gas"):
                header = header.copy(base_fee_per_gas=0)
            state = vm.build_state(vm.chaindb.db, header, vm.chain_context, vm.previous_hashes)
            snapshot = state.snapshot()
            try:
                computation = state.apply_transaction(free)
            finally:
                state.revert(snapshot)
            if computation.is_error:
                error = computation.error
                if isinstance(error, Revert) and error.args and isinstance(error.args[0], bytes):
                    raise TransactionFailed(error.args[0])
                raise TransactionFailed(str(error))
            return computation.output

    return EmbeddedBackend


def _single_run_gas_estimate(state: Any, transaction: Any) -> int:
    """py-evm's gas estimator hook in two executions instead of a binary search (~13).

    Runs the transaction with the block's gas limit, takes the gas it used before refunds
    plus 1/63 (EIP-150: each call leaves that much behind) and a call stipend (2300), and
    checks that limit with a second run; if that run fails (deep call chains), falls back to
    py-evm's exact binary search. A transaction that fails at the block limit raises its VM
    error, as the default estimator does. The client adds its own margin on top.
    """
    from eth.estimators.gas import binary_gas_search
    from eth.vm.spoof import SpoofTransaction

    def run(gas: int) -> Any:
        snapshot = state.snapshot()
        try:
            return state.apply_transaction(SpoofTransaction(transaction, gas=gas, gas_price=0))
        finally:
            state.revert(snapshot)

    computation = run(state.gas_limit)
    if computation.is_error:
        raise computation.error
    used = transaction.intrinsic_gas + computation.get_gas_used()
    estimate = min(used + used // 63 + 2300, state.gas_limit)
    if run(estimate).is_error:
        return binary_gas_search(state, transaction, tolerance=1)
    return estimate


def _rpc_error(request_id: int, code: int, message: str, data: str | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"id": request_id, "jsonrpc": "2.0", "error": error}


# ---------------------------------------------------------------- the client


class ChainClient:
    """One chain, any kind: deploy contracts, send signed transactions, read state.

    Build it with :meth:`embedded` or :meth:`connect`. ``dev_accounts`` are the funded
    development accounts (embedded chain and devnets only); ``default_account`` signs when a
    write is called without ``sender``.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        url: str,
        dev_accounts: Sequence[LocalAccount] = (),
        default_account: LocalAccount | None = None,
        devnet: bool | None = None,
    ) -> None:
        self.w3 = w3
        self.url = url
        self._dev_accounts = list(dev_accounts)
        self.default_account = default_account
        self._send_locks: dict[str, threading.Lock] = {}
        self._nonces: dict[str, int] = {}
        self._locks_guard = threading.Lock()
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        self._events: dict[bytes, dict[str, Any]] = {}
        with self._translate("eth_chainId"):
            self.chain_id: int = w3.eth.chain_id
        self.is_devnet: bool = self.chain_id in DEVNET_CHAIN_IDS if devnet is None else devnet
        """True on the embedded chain and ganache/anvil chain ids: development keys allowed."""

    # -- construction

    @classmethod
    def embedded(cls, *, accounts: int = 10, balance_eth: int = 1_000_000) -> ChainClient:
        """A fresh in-process chain (Shanghai rules) whose first ``accounts`` development
        accounts hold ``balance_eth`` ether each. Costs about 50 ms."""
        from eth.vm.forks import ShanghaiVM
        from eth_tester import EthereumTester

        backend = _embedded_backend_class().from_mnemonic(
            DEV_MNEMONIC,
            num_accounts=accounts,
            genesis_state_overrides={"balance": Web3.to_wei(balance_eth, "ether")},
            vm_configuration=((0, ShanghaiVM),),
            hd_path=DEV_HD_PATH,
        )
        backend.chain.gas_estimator = _single_run_gas_estimate
        w3 = Web3(_EmbeddedProvider(EthereumTester(backend)))
        keys = dev_accounts(accounts)
        return cls(w3, url="embedded", dev_accounts=keys, default_account=keys[0] if keys else None,
                   devnet=True)

    @classmethod
    def connect(
        cls, rpc_url: str, *, account: LocalAccount | None = None, dev_account_count: int = 10,
        timeout: float = 30.0,
    ) -> ChainClient:
        """Connect to a JSON-RPC endpoint. On a devnet chain id (1337, 31337) the development
        accounts are available and the first is the default sender unless ``account`` is
        given. An unreachable URL raises ChainError naming it."""
        retry = ExceptionRetryConfiguration(
            errors=(ConnectionError, requests.ConnectionError, requests.HTTPError, requests.Timeout),
            retries=2, backoff_factor=0.05,
            # a resent raw transaction could come back "nonce too low": never retry sends
            method_allowlist=[m for m in REQUEST_RETRY_ALLOWLIST if m != "eth_sendRawTransaction"],
        )
        provider = Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout},
                                     exception_retry_configuration=retry)
        client = cls(Web3(provider), url=rpc_url, default_account=account)
        if client.is_devnet:
            client._dev_accounts = dev_accounts(dev_account_count)
            if client.default_account is None and client._dev_accounts:
                client.default_account = client._dev_accounts[0]
        return client

    # -- chain state

    @property
    def dev_accounts(self) -> list[LocalAccount]:
        """The funded development accounts; ChainError on a chain that is not a devnet."""
        if not self.is_devnet:
            raise ChainError(
                f"chain {self.chain_id} at {self.url} is not a devnet: development keys are public "
                f"and offered only on chain ids {sorted(DEVNET_CHAIN_IDS)} and the embedded chain; "
                f"use a keystore (fedchain account new)")
        return list(self._dev_accounts)

    def block_number(self) -> int:
        with self._translate("eth_blockNumber"):
            return self.w3.eth.block_number

    def timestamp(self) -> int:
        """Timestamp of the latest block."""
        with self._translate("eth_getBlockByNumber"):
            return int(self.w3.eth.get_block("latest")["timestamp"])

    def balance(self, address: str) -> int:
        with self._translate("eth_getBalance"):
            return self.w3.eth.get_balance(to_checksum_address(address))

    def time_travel(self, seconds: int) -> int:
        """Move the chain's clock ``seconds`` forward and mine a block (embedded chain,
        ganache, anvil); returns the new latest timestamp."""
        if seconds < 0:
            raise ValueError(f"cannot travel back in time: {seconds} s")
        self._raw("evm_increaseTime", [int(seconds)])
        self._raw("evm_mine", [])
        return self.timestamp()

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""
        for _ in range(blocks):
            self._raw("evm_mine", [])

    def _raw(self, method: str, params: list[Any]) -> Any:
        with self._translate(method):
            response = self.w3.provider.make_request(method, params)
        if "error" in response:
            raise ChainError(f"{method} failed at {self.url}: {response['error']}")
        return response.get("result")

    # -- contracts

    def contract(self, address: str, artifact: Artifact) -> Any:
        """A web3 contract object at ``address``; its errors and events become decodable."""
        self._learn_abi(artifact.abi)
        return self.w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)

    def deploy_contract(
        self, artifact: Artifact, *args: Any, sender: LocalAccount | None = None, value: int = 0
    ) -> TxReceipt:
        """Deploy ``artifact`` with constructor ``args``; ``receipt.contract_address`` is set."""
        self._learn_abi(artifact.abi)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        return self.transact(factory.constructor(*args), sender=sender, value=value,
                             label=f"{artifact.name} constructor")

    def deploy(
        self, params: FederationParams, *, sender: LocalAccount | None = None,
        artifact: Artifact | None = None,
    ) -> Federation:
        """Deploy a Federation with ``params``; ``sender`` becomes its operator."""
        artifact = artifact or load_artifact("Federation")
        components = _constructor_components(artifact.abi)
        values = tuple(getattr(params, _snake(c["name"])) for c in components)
        receipt = self.deploy_contract(artifact, values, sender=sender)
        assert receipt.contract_address is not None
        return Federation(self, receipt.contract_address, artifact=artifact)

    def federation(self, address: str, *, artifact: Artifact | None = None) -> Federation:
        """A handle on the Federation deployed at ``address`` (checks there is code there)."""
        address = to_checksum_address(address)
        with self._translate("eth_getCode"):
            code = self.w3.eth.get_code(address)
        if not code:
            raise ChainError(f"no contract at {address} on chain {self.chain_id} ({self.url})")
        return Federation(self, address, artifact=artifact or load_artifact("Federation"))

    # -- transactions

    def transfer(self, to: str, amount: int, *, sender: LocalAccount | None = None) -> TxReceipt:
        """Send ``amount`` wei to ``to``."""
        return self._send({"to": to_checksum_address(to), "value": amount}, sender=sender,
                          label="transfer", gas=21_000)

    def transact(
        self, fn: Any, *, sender: LocalAccount | None = None, value: int = 0, label: str | None = None,
        gas: int | None = None,
    ) -> TxReceipt:
        """Sign and send the contract call ``fn`` (a web3 ContractFunction or constructor),
        wait for its receipt, decode its events. A revert raises ContractRevert, usually at
        gas estimation, before anything is sent."""
        label = label or getattr(fn, "fn_name", None) or "transaction"
        # placeholders stop web3 from asking the node for gas, fees and nonce: _send does
        placeholders = {"from": self._sender(sender).address, "value": value, "gas": 0, "nonce": 0,
                        "maxFeePerGas": 0, "maxPriorityFeePerGas": 0, "chainId": self.chain_id}
        with self._translate(label):
            built = fn.build_transaction(placeholders)
        tx = {"data": built["data"], "value": value}
        if built.get("to"):
            tx["to"] = built["to"]
        return self._send(tx, sender=sender, label=label, gas=gas)

    def call(self, fn: Any, *, sender: LocalAccount | str | None = None, label: str | None = None) -> Any:
        """Run ``fn`` as an ``eth_call`` (nothing is sent) and return its result; ``sender``
        (an account or an address) is ``msg.sender``. A revert raises ContractRevert, so this
        also answers "would this transaction succeed now?"."""
        tx: dict[str, Any] = {}
        if sender is not None:
            tx["from"] = sender if isinstance(sender, str) else sender.address
        with self._translate(label or getattr(fn, "fn_name", "call")):
            return fn.call(tx)

    def _sender(self, sender: LocalAccount | None) -> LocalAccount:
        sender = sender or self.default_account
        if sender is None:
            raise ChainError("no sender: pass sender= or connect with account=")
        return sender

    def _send(self, tx: dict[str, Any], *, sender: LocalAccount | None, label: str, gas: int | None = None) -> TxReceipt:
        """Estimate, sign, send with the sender's next nonce, wait, decode."""
        sender = self._sender(sender)
        address = sender.address
        with self._translate(label):
            if gas is None:  # a revert surfaces here, before a nonce is used
                gas = int(self.w3.eth.estimate_gas({**tx, "from": address}) * GAS_MARGIN) + GAS_HEADROOM
            full = {**tx, "gas": gas, "chainId": self.chain_id, **self._fees()}
            with self._lock_for(address):
                nonce = self._nonces.get(address)
                if nonce is None:
                    nonce = self.w3.eth.get_transaction_count(address, "pending")
                try:
                    tx_hash = self._send_raw(sender, {**full, "nonce": nonce})
                except Web3RPCError as exc:
                    if "nonce" not in str(exc).lower():
                        raise
                    # another process used this key: resynchronise once
                    nonce = self.w3.eth.get_transaction_count(address, "pending")
                    tx_hash = self._send_raw(sender, {**full, "nonce": nonce})
                self._nonces[address] = nonce + 1
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=RECEIPT_TIMEOUT, poll_latency=POLL_LATENCY)
            except TimeExhausted as exc:
                raise ChainError(f"{label}: transaction 0x{tx_hash.hex()} not mined after "
                                 f"{RECEIPT_TIMEOUT:.0f} s at {self.url}") from exc
            if receipt["status"] != 1:
                self._replay_revert(full, address, receipt, label)
        return TxReceipt(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            events=tuple(self._decode_logs(receipt["logs"])),
            contract_address=receipt.get("contractAddress"),
        )

    def _send_raw(self, sender: LocalAccount, tx: dict[str, Any]) -> bytes:
        signed = sender.sign_transaction(tx)
        return bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))

    def _fees(self) -> dict[str, int]:
        base = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            return {"gasPrice": self.w3.eth.gas_price}
        tip = Web3.to_wei(1, "gwei")
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(base) + tip}

    def _replay_revert(self, tx: dict[str, Any], address: str, receipt: Any, label: str) -> None:
        """A mined transaction failed (state changed after estimation): replay it at the
        block before to recover the revert data, then raise."""
        call = {k: tx[k] for k in ("to", "data", "value", "gas") if k in tx}
        call["from"] = address
        self.w3.eth.call(call, block_identifier=receipt["blockNumber"] - 1)  # raises if it reverts
        raise ChainError(f"{label}: transaction 0x{bytes(receipt['transactionHash']).hex()} failed "
                         f"in block {receipt['blockNumber']} (gas used {receipt['gasUsed']}) "
                         f"and its replay does not revert: no reason available")

    def _lock_for(self, address: str) -> threading.Lock:
        with self._locks_guard:
            return self._send_locks.setdefault(address, threading.Lock())

    # -- decoding

    def _learn_abi(self, abi: Sequence[Mapping[str, Any]]) -> None:
        for item in abi:
            if item["type"] == "error":
                selector = keccak(text=abi_to_signature(item))[:4]
                self._errors[selector] = (
                    item["name"],
                    [i["name"] or f"arg{n}" for n, i in enumerate(item["inputs"])],
                    [_abi_type(i) for i in item["inputs"]],
                )
            elif item["type"] == "event" and not item.get("anonymous"):
                self._events[event_abi_to_log_topic(item)] = dict(item)

    def decode_revert(self, function: str, data: bytes, *, node_message: str | None = None) -> ContractRevert:
        """The ContractRevert for revert ``data`` of ``function`` (custom error, Error(string),
        Panic(uint256), or no data: then the node's message, e.g. an invalid opcode, is kept)."""
        data = bytes(data)
        if len(data) < 4:
            return ContractRevert(function, None, {}, data, node_message=node_message)
        selector, payload = data[:4], data[4:]
        if selector == bytes.fromhex("08c379a0"):
            return ContractRevert(function, "Error", {"message": abi_decode(["string"], payload)[0]}, data)
        if selector == bytes.fromhex("4e487b71"):
            return ContractRevert(function, "Panic", {"code": hex(abi_decode(["uint256"], payload)[0])}, data)
        if selector not in self._errors:
            return ContractRevert(function, "0x" + selector.hex(), {"data": payload}, data)
        name, names, types = self._errors[selector]
        values = abi_decode(types, payload)
        args = {n: _normalise(t, v) for n, t, v in zip(names, types, values, strict=True)}
        return ContractRevert(function, name, args, data)

    def _decode_logs(self, logs: Sequence[Any]) -> Iterator[Event]:
        from web3._utils.events import get_event_data

        for log in logs:
            topics = log["topics"]
            event_abi = self._events.get(bytes(topics[0])) if topics else None
            if event_abi is None:
                continue  # another contract's event
            decoded = get_event_data(self.w3.codec, event_abi, log)
            yield Event(
                name=decoded["event"],
                args=MappingProxyType({k: _plain(v) for k, v in decoded["args"].items()}),
                block_number=decoded["blockNumber"],
                tx_hash="0x" + bytes(decoded["transactionHash"]).hex(),
                log_index=decoded["logIndex"],
                address=decoded["address"],
            )

    def get_logs(self, address: str, *, from_block: int = 0, topics: list[Any] | None = None) -> list[Event]:
        """Decoded events of ``address`` from ``from_block`` to the latest block."""
        query: dict[str, Any] = {"address": to_checksum_address(address), "fromBlock": from_block,
                                 "toBlock": "latest"}
        if topics:
            query["topics"] = topics
        with self._translate("eth_getLogs"):
            logs = self.w3.eth.get_logs(query)
        return list(self._decode_logs(logs))

    @contextmanager
    def _translate(self, label: str) -> Iterator[None]:
        """web3/requests exceptions -> ChainError / ContractRevert, at the edge."""
        try:
            yield
        except ContractLogicError as exc:
            raise self.decode_revert(label, _revert_data(exc), node_message=exc.message) from exc
        except requests.exceptions.ConnectionError as exc:
            raise ChainError(f"cannot reach RPC at {self.url}: connection refused") from exc
        except requests.exceptions.Timeout as exc:
            raise ChainError(f"RPC at {self.url} timed out ({label})") from exc
        except requests.exceptions.HTTPError as exc:
            raise ChainError(f"RPC at {self.url} answered {label} with HTTP error: {exc}") from exc
        except Web3RPCError as exc:
            raise ChainError(f"{label} failed at {self.url}: {exc.message}") from exc
        except Web3Exception as exc:
            raise ChainError(f"{label} failed at {self.url}: {exc}") from exc


def _abi_type(item: Mapping[str, Any]) -> str:
    from eth_utils.abi import collapse_if_tuple

    return collapse_if_tuple(dict(item))


def _normalise(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    return _plain(value)


def _revert_data(exc: ContractLogicError) -> bytes:
    """The raw revert bytes in a web3 error, whatever the node's error shape."""
    data = exc.data
    if isinstance(data, dict):  # ganache: {"result": "0x..", ...} or {"data": "0x.."}
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return b""


def _constructor_components(abi: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    for item in abi:
        if item["type"] == "constructor":
            return list(item["inputs"][0]["components"])
    raise ChainError("the Federation ABI has no constructor(Params)")


# ---------------------------------------------------------------- the contract handle


class Federation:
    """One deployed Federation contract, seen through a :class:`ChainClient`.

    Writes take ``sender`` (an eth-account LocalAccount; the client's default account when
    omitted) and return a :class:`TxReceipt`; reverts raise :class:`ContractRevert`.
    """

    def __init__(self, client: ChainClient, address: str, *, artifact: Artifact) -> None:
        self.client = client
        self.address = to_checksum_address(address)
        self.artifact = artifact
        self.contract = client.contract(self.address, artifact)
        self._outputs = {item["name"]: item.get("outputs", []) for item in artifact.abi
                         if item["type"] == "function"}
        self._params: FederationParams | None = None

    def __repr__(self) -> str:
        return f"Federation({self.address} on chain {self.client.chain_id})"

    # -- writes

    def _tx(self, name: str, *args: Any, sender: LocalAccount | None, value: int = 0,
            gas: int | None = None) -> TxReceipt:
        fn = getattr(self.contract.functions, name)(*args)
        return self.client.transact(fn, sender=sender, value=value, label=name, gas=gas)

    def fund(self, amount: int, *, sender: LocalAccount | None = None) -> TxReceipt:
        """Add ``amount`` wei to the reward pool."""
        return self._tx("fund", sender=sender, value=amount)

    def register(
        self, multiaddrs: Sequence[str] | str | bytes = (), *, value: int | None = None,
        sender: LocalAccount | None = None,
    ) -> TxReceipt:
        """Register ``sender`` as a peer with a stake of ``value`` wei (default: the
        federation's minimum stake)."""
        if value is None:
            value = self.params().min_stake
        return self._tx("register", encode_multiaddrs(multiaddrs), sender=sender, value=value)

    def set_multiaddrs(self, multiaddrs: Sequence[str] | str | bytes, *, sender: LocalAccount | None = None) -> TxReceipt:
        return self._tx("setMultiaddrs", encode_multiaddrs(multiaddrs), sender=sender)

    def exit(self, *, sender: LocalAccount | None = None) -> TxReceipt:
        """Leave at once; the stake unlocks after the unbonding delay."""
        return self._tx("exit", sender=sender)

    def withdraw_stake(self, *, sender: LocalAccount | None = None) -> TxReceipt:
        return self._tx("withdrawStake", sender=sender)

    def start(self, *, sender: LocalAccount | None = None) -> TxReceipt:
        """Open round 1."""
        return self._tx("start", sender=sender)

    def commit_update(self, round: int, payload_hash: bytes, n_samples: int, *, sender: LocalAccount | None = None) -> TxReceipt:
        return self._tx("commitUpdate", round, bytes(payload_hash), n_samples, sender=sender)

    def vote_aggregate(self, round: int, model_hash: bytes, rewards_root: bytes, *, sender: LocalAccount | None = None) -> TxReceipt:
        # time-sensitive like fail_round: the vote phase may have begun by the clock (commit
        # deadline passed) while the latest block still predates it
        return self._tx("voteAggregate", round, bytes(model_hash), bytes(rewards_root), sender=sender,
                        gas=TIME_SENSITIVE_GAS)

    def fail_round(self, round: int, *, sender: LocalAccount | None = None) -> TxReceipt:
        # No gas estimation: eth_estimateGas runs against the latest block, whose timestamp
        # on a quiet devnet predates the vote deadline, and would revert RoundNotExpired;
        # the mined transaction gets a new block with the current time.
        return self._tx("failRound", round, sender=sender, gas=TIME_SENSITIVE_GAS)

    def claim(self, cumulative: int, proof: Sequence[bytes], *, sender: LocalAccount | None = None) -> TxReceipt:
        """Claim rewards up to ``cumulative`` wei with a proof against the latest rewards root."""
        return self._tx("claim", cumulative, [bytes(p) for p in proof], sender=sender)

    def report_equivocation(self, peer: str, a: SignedUpdate, b: SignedUpdate, *, sender: LocalAccount | None = None) -> TxReceipt:
        return self._tx("reportEquivocation", to_checksum_address(peer), a.as_abi(), b.as_abi(), sender=sender)

    def withdraw_owed(self, *, sender: LocalAccount | None = None) -> TxReceipt:
        return self._tx("withdrawOwed", sender=sender)

    # -- views

    def _view(self, name: str, *args: Any) -> Any:
        return self.client.call(getattr(self.contract.functions, name)(*args), label=name)

    def _view_struct(self, name: str, *args: Any) -> dict[str, Any]:
        value = self._view(name, *args)
        return _struct_kwargs(self._outputs[name][0]["components"], value)

    def params(self) -> FederationParams:
        """The deployment parameters (immutable: read once, then cached)."""
        if self._params is None:
            kwargs = {k: _plain(v) for k, v in self._view_struct("params").items()}
            self._params = FederationParams(**kwargs)
        return self._params

    def operator(self) -> str:
        return self._view("operator")

    def current_round(self) -> int:
        return self._view("currentRound")

    def last_finalized_round(self) -> int:
        return self._view("lastFinalizedRound")

    def latest_model_hash(self) -> bytes:
        return bytes(self._view("latestModelHash"))

    def latest_rewards_root(self) -> bytes:
        return bytes(self._view("latestRewardsRoot"))

    def round_state(self) -> RoundView:
        kwargs = self._view_struct("roundState")
        kwargs["phase"] = Phase(kwargs["phase"])
        return RoundView(**kwargs)

    def finalized_model(self, round: int) -> bytes:
        """The model hash round ``round`` finalised (32 zero bytes if it did not)."""
        return bytes(self._view("finalizedModel", round))

    def peer_count(self) -> int:
        return self._view("peerCount")

    def active_peers(self) -> int:
        return self._view("activePeers")

    def peer_at(self, index: int) -> str:
        return self._view("peerAt", index)

    def peer_info(self, address: str) -> PeerView:
        address = to_checksum_address(address)
        kwargs = self._view_struct("peerInfo", address)
        kwargs["multiaddrs"] = decode_multiaddrs(kwargs["multiaddrs"])
        return PeerView(address=address, **kwargs)

    def peers(self) -> list[PeerView]:
        """Every peer ever registered, in index order."""
        return [self.peer_info(self.peer_at(i)) for i in range(self.peer_count())]

    def is_committee_member(self, address: str) -> bool:
        return self._view("isCommitteeMember", to_checksum_address(address))

    def candidate_votes(self, model_hash: bytes, rewards_root: bytes) -> int:
        return self._view("candidateVotes", bytes(model_hash), bytes(rewards_root))

    def claimed(self, address: str) -> int:
        return self._view("claimed", to_checksum_address(address))

    def reward_pool(self) -> int:
        return self._view("rewardPool")

    def owed(self, address: str) -> int:
        return self._view("owed", to_checksum_address(address))

    def hash_update(self, round: int, payload_hash: bytes, payload_size: int, n_samples: int, encoding: int) -> bytes:
        return bytes(self._view("hashUpdate", round, bytes(payload_hash), payload_size, n_samples, encoding))

    def balance(self) -> int:
        """Wei held by the contract (reward pool plus stakes plus amounts owed)."""
        return self.client.balance(self.address)

    # -- committee

    def committee(self, round_view: RoundView | None = None) -> list[str]:
        """Addresses of the committee of the current round (``round_view`` if given),
        computed off chain with :func:`committee_indices` from the peers' active flags."""
        rv = round_view or self.round_state()
        if rv.phase in (Phase.NOT_STARTED, Phase.DONE):
            return []
        peers = [self.peer_info(self.peer_at(i)) for i in range(rv.n_peers)]
        indices = committee_indices(rv.seed, rv.n_peers, self.params().committee_size,
                                    [p.active for p in peers])
        return [peers[i].address for i in indices]

    # -- events

    def events(self, name: str | None = None, *, from_block: int = 0, round: int | None = None) -> list[Event]:
        """Decoded events of this contract, oldest first; ``name`` and ``round`` filter
        (``round`` keeps events whose ``round`` argument equals it, filtered on chain when the
        argument is indexed)."""
        topics: list[Any] | None = None
        if name is not None:
            abi = self._event_abi(name)
            topics = ["0x" + event_abi_to_log_topic(abi).hex()]
            if round is not None:
                indexed = [i for i in abi["inputs"] if i.get("indexed")]
                if indexed and indexed[0]["name"] == "round":
                    topics.append("0x" + round.to_bytes(32, "big").hex())
        events = self.client.get_logs(self.address, from_block=from_block, topics=topics)
        if round is not None:
            events = [e for e in events if e.round == round]
        return events

    def _event_abi(self, name: str) -> dict[str, Any]:
        for item in self.artifact.abi:
            if item["type"] == "event" and item["name"] == name:
                return item
        names = sorted(i["name"] for i in self.artifact.abi if i["type"] == "event")
        raise ValueError(f"the Federation has no event {name!r}; events: {', '.join(names)}")

    def commitments(self, round: int, *, from_block: int = 0) -> list[Commitment]:
        """Round ``round``'s commitments, ordered by peer address (numerically): the order
        in which every peer aggregates the updates."""
        out = [Commitment(round=e.args["round"], peer=e.args["peer"], payload_hash=e.args["payloadHash"],
                          n_samples=e.args["nSamples"], block_number=e.block_number)
               for e in self.events("UpdateCommitted", round=round, from_block=from_block)]
        return sorted(out, key=lambda c: int(c.peer, 16))

    def votes(self, round: int, *, from_block: int = 0) -> list[Vote]:
        """Round ``round``'s votes in the order they were cast."""
        return [Vote(round=e.args["round"], voter=e.args["voter"], model_hash=e.args["modelHash"],
                     rewards_root=e.args["rewardsRoot"], votes=e.args["votes"], block_number=e.block_number)
                for e in self.events("VoteCast", round=round, from_block=from_block)]

    # -- signatures

    def sign_update(
        self, account: LocalAccount, *, round: int, payload_hash: bytes, payload_size: int,
        n_samples: int, encoding: int,
    ) -> SignedUpdate:
        """:func:`sign_update` with this contract's chain id and address as the domain."""
        return sign_update(account, chain_id=self.client.chain_id, contract=self.address, round=round,
                           payload_hash=payload_hash, payload_size=payload_size,
                           n_samples=n_samples, encoding=encoding)

