"""Chain commands of the fedchain CLI: ``deploy``, ``inspect``, ``devnet up|down|status`` and
``account new|list`` (registered on the app by :func:`register`).

Which chain: ``--rpc URL``, else ``$FEDCHAIN_RPC``, else the devnet that ``fedchain devnet up``
started from ``./.devnet``. There is no embedded chain here on purpose: it lives inside one
process, so a contract deployed on it would vanish when the command exits (``fedchain demo``
runs a whole federation on an embedded chain in one process, and reuses
:func:`render_inspect`).

Who signs: ``--keystore FILE`` (passphrase from ``$FEDCHAIN_PASSPHRASE`` or a prompt), else on
a devnet the first development account.

Parameters TOML (``fedchain deploy --params FILE``): top-level keys are the fields of
:class:`peer.chain.FederationParams`; amounts are wei (integers) or strings such as
``"0.1 ether"`` / ``"5 gwei"``; hashes are ``"0x"`` + 64 hex digits.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from peer.errors import ConfigError, FedchainError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from rich.console import Console

    from peer.chain import ChainClient, Federation, FederationParams

__all__ = ["inspect_data", "load_params", "parse_amount", "register", "render_inspect"]

RPC_ENV = "FEDCHAIN_RPC"
_UNITS = {"wei": 0, "gwei": 9, "ether": 18, "eth": 18}
_AMOUNT_FIELDS = {"reward_per_round", "min_stake"}
_HASH_FIELDS = {"model_spec_hash", "genesis_model_hash"}


# ---------------------------------------------------------------- pure helpers


def parse_amount(value: int | str, *, name: str = "amount") -> int:
    """Wei from an integer or a string ``"<number> <wei|gwei|ether>"`` (``"0.5 ether"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an amount, got {value!r}")
    if isinstance(value, int):
        wei = value
    else:
        parts = str(value).strip().split()
        unit = parts[1].lower() if len(parts) == 2 else "wei"
        if len(parts) not in (1, 2) or unit not in _UNITS:
            raise ConfigError(f"{name}: cannot read {value!r} as an amount "
                              f"(an integer of wei, or '<number> wei|gwei|ether')")
        try:
            exact = Decimal(parts[0]) * (Decimal(10) ** _UNITS[unit])
        except InvalidOperation as exc:
            raise ConfigError(f"{name}: {parts[0]!r} is not a number") from exc
        if exact != exact.to_integral_value():
            raise ConfigError(f"{name}: {value!r} is not a whole number of wei")
        wei = int(exact)
    if wei < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return wei


def load_params(path: Path | None) -> FederationParams:
    """FederationParams from a TOML file (defaults for absent keys; None: all defaults).
    Unknown keys and malformed values raise ConfigError naming them."""
    from peer.chain import FederationParams

    if path is None:
        return FederationParams()
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"params file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"params file {path} is not valid TOML: {exc}") from exc
    known = {f.name for f in fields(FederationParams)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _HASH_FIELDS:
            values[key] = _parse_hash(value, name=key)
        elif key in _AMOUNT_FIELDS:
            values[key] = parse_amount(value, name=key)
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            values[key] = value
        else:
            raise ConfigError(f"{path}: {key} must be a non-negative integer, got {value!r}")
    return FederationParams(**values)


def _parse_hash(value: Any, *, name: str) -> bytes:
    text = str(value)
    if not (isinstance(value, str) and text.startswith("0x") and len(text) == 66):
        raise ConfigError(f"{name} must be '0x' followed by 64 hex digits, got {value!r}")
    try:
        return bytes.fromhex(text[2:])
    except ValueError as exc:
        raise ConfigError(f"{name} must be hex, got {value!r}") from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------- inspect


def inspect_data(federation: Federation, *, round: int | None = None) -> dict[str, Any]:
    """A JSON-ready snapshot of ``federation``: parameters, pool, peers, current round and
    phase, and per round its commitments, votes and outcome (all rounds, or only ``round``).
    Events are read once (one ``eth_getLogs``)."""
    client = federation.client
    rv = federation.round_state()
    if round is not None and not 1 <= round <= max(rv.round, 0):
        raise ConfigError(f"--round {round} does not exist: rounds so far are 1..{rv.round}"
                          if rv.round else f"--round {round} does not exist: no round has started")
    rounds: dict[int, dict[str, Any]] = {}
    for ev in federation.events():
        if ev.round is None or (round is not None and ev.round != round):
            continue
        entry = rounds.setdefault(ev.round, {"round": ev.round, "status": "open", "model_hash": None,
                                             "rewards_root": None, "commitments": [], "votes": []})
        if ev.name == "RoundOpened":
            entry.update(seed=ev.args["seed"], n_peers=ev.args["nPeers"],
                         committee_expected=ev.args["committeeExpected"],
                         quorum_votes=ev.args["quorumVotes"])
        elif ev.name == "UpdateCommitted":
            entry["commitments"].append({"peer": ev.args["peer"], "payload_hash": ev.args["payloadHash"],
                                         "n_samples": ev.args["nSamples"]})
        elif ev.name == "VoteCast":
            entry["votes"].append({"voter": ev.args["voter"], "model_hash": ev.args["modelHash"],
                                   "rewards_root": ev.args["rewardsRoot"], "votes": ev.args["votes"]})
        elif ev.name == "RoundFinalized":
            entry.update(status="finalized", model_hash=ev.args["modelHash"],
                         rewards_root=ev.args["rewardsRoot"])
        elif ev.name == "RoundFailed":
            entry["status"] = "failed"
    for entry in rounds.values():
        entry["commitments"].sort(key=lambda c: int(c["peer"], 16))
    data = {
        "address": federation.address,
        "chain_id": client.chain_id,
        "rpc": client.url,
        "block": client.block_number(),
        "timestamp": client.timestamp(),
        "operator": federation.operator(),
        "params": asdict(federation.params()),
        "reward_pool": federation.reward_pool(),
        "balance": federation.balance(),
        "active_peers": federation.active_peers(),
        "current_round": rv.round,
        "phase": rv.phase.name.lower(),
        "round_state": {**asdict(rv), "phase": rv.phase.name.lower()},
        "last_finalized_round": federation.last_finalized_round(),
        "latest_model_hash": federation.latest_model_hash(),
        "latest_rewards_root": federation.latest_rewards_root(),
        "committee": federation.committee(rv),
        "peers": [{**asdict(p), "multiaddrs": list(p.multiaddrs)} for p in federation.peers()],
        "rounds": [rounds[r] for r in sorted(rounds)],
    }
    return _jsonable(data)


def render_inspect(
    client: ChainClient, federation: Federation, *, round: int | None = None, as_json: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Print :func:`inspect_data` as rich tables (or one JSON object) and return the data."""
    from rich.console import Console

    assert federation.client is client, "federation must be a handle of this client"
    data = inspect_data(federation, round=round)
    console = console or Console()
    if as_json:
        console.out(json.dumps(data, indent=1), highlight=False)
        return data
    _print_tables(console, data)
    return data


def _eth(wei: int) -> str:
    """Exact decimal ether (no float rounding): 1500000000000000000 -> "1.5 ETH"."""
    from decimal import Decimal

    return f"{(Decimal(int(wei)) / Decimal(10**18)).normalize():f} ETH"


def _short(hex_value: str | None, n: int = 10) -> str:
    return "-" if not hex_value else f"{hex_value[:n]}…{hex_value[-4:]}"


def _when(ts: int, now: int) -> str:
    if not ts:
        return "-"
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = ts - now
    return f"{stamp} ({'in ' + str(delta) + ' s' if delta >= 0 else str(-delta) + ' s ago'})"


def _print_tables(console: Console, data: dict[str, Any]) -> None:
    from rich.table import Table

    p = data["params"]
    rs = data["round_state"]
    overview = Table(title=f"Federation {data['address']}", show_header=False)
    overview.add_column(style="bold", no_wrap=True)
    overview.add_column(overflow="fold")
    for key, value in [
        ("chain", f"{data['chain_id']} at {data['rpc']} (block {data['block']})"),
        ("operator", data["operator"]),
        ("reward pool", _eth(data["reward_pool"])),
        ("contract balance", _eth(data["balance"])),
        ("current round", f"{data['current_round']} ({data['phase']})"),
        ("commit deadline", _when(rs["commit_deadline"], data["timestamp"])),
        ("vote deadline", _when(rs["vote_deadline"], data["timestamp"])),
        ("committed / expected", f"{rs['committed']} / {rs['committee_expected']}"),
        ("quorum", f"{rs['quorum_votes']} votes of {data['active_peers']} active peers"),
        ("committee", "\n".join(data["committee"]) or "-"),
        ("last finalised round", str(data["last_finalized_round"])),
        ("latest model hash", data["latest_model_hash"]),
        ("latest rewards root", data["latest_rewards_root"]),
    ]:
        overview.add_row(key, value)
    console.print(overview)

    params = Table(title="Parameters", show_header=False)
    params.add_column(style="bold", no_wrap=True)
    params.add_column(overflow="fold")
    for key, value in p.items():
        params.add_row(key, _eth(value) if key in _AMOUNT_FIELDS else str(value))
    console.print(params)

    peers = Table(title=f"Peers ({len(data['peers'])} registered, {data['active_peers']} active)")
    peers.add_column("#", no_wrap=True)
    peers.add_column("address / multiaddrs", overflow="fold")
    for col in ("stake", "state", "last commit / vote"):
        peers.add_column(col, no_wrap=True)
    for peer in data["peers"]:
        state = "slashed" if peer["slashed"] else "active" if peer["active"] else "exited"
        where = "\n".join([peer["address"], *(f"  {m}" for m in peer["multiaddrs"])])
        peers.add_row(str(peer["index"]), where, _eth(peer["stake"]), state,
                      f"{peer['last_commit_round']} / {peer['last_vote_round']}")
    console.print(peers)

    for entry in data["rounds"]:
        outcome = entry["status"] + (f", model {entry['model_hash']}" if entry["model_hash"] else "")
        if not entry["commitments"] and not entry["votes"]:
            console.print(f"Round {entry['round']}: {outcome}; no commitments or votes yet")
            continue
        table = Table(title=f"Round {entry['round']}: {outcome}")
        for col in ("", "peer", "payload / model", "rewards root", "samples / tally"):
            table.add_column(col, no_wrap=True)
        for c in entry["commitments"]:
            table.add_row("commit", _short(c["peer"], 6), _short(c["payload_hash"]), "", str(c["n_samples"]))
        for v in entry["votes"]:
            table.add_row("vote", _short(v["voter"], 6), _short(v["model_hash"]), _short(v["rewards_root"]),
                          str(v["votes"]))
        console.print(table)


# ---------------------------------------------------------------- command plumbing


@contextmanager
def _cli_errors() -> Iterator[None]:
    """FedchainError -> 'error: ...' on stderr and exit code 1, not a traceback."""
    try:
        yield
    except FedchainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _resolve_rpc(rpc: str | None) -> str:
    from peer import devnet

    if rpc:
        return rpc
    if os.environ.get(RPC_ENV):
        return os.environ[RPC_ENV]
    running = devnet.status(devnet.DEFAULT_STATE_DIR)
    if running is not None:
        return running.rpc_url
    raise ConfigError(
        "no chain to talk to: pass --rpc URL, set $FEDCHAIN_RPC, or start a local chain with "
        "`fedchain devnet up`. (The embedded chain lives only inside one process: a contract "
        "deployed on it would vanish when this command exits; `fedchain demo` runs a whole "
        "federation on it in one process.)")


def _signer(keystore: Path | None) -> LocalAccount | None:
    from peer import accounts

    if keystore is None:
        return None
    passphrase = accounts.passphrase_from_env()
    if passphrase is None:
        passphrase = typer.prompt(f"Passphrase for {keystore}", hide_input=True)
    return accounts.load_keystore(keystore, passphrase)


def _connect(rpc: str | None, keystore: Path | None) -> ChainClient:
    from peer.chain import ChainClient

    return ChainClient.connect(_resolve_rpc(rpc), account=_signer(keystore))


# ---------------------------------------------------------------- commands

_RPC = typer.Option(None, "--rpc", help="JSON-RPC URL (default: $FEDCHAIN_RPC, else the running devnet).")
_KEYSTORE = typer.Option(None, "--keystore", help="Keystore file that signs (default on a devnet: development account 0).")


def deploy_command(
    rpc: str | None = _RPC,
    params: Path | None = typer.Option(None, "--params", help="TOML file of FederationParams fields (snake_case)."),
    keystore: Path | None = _KEYSTORE,
    fund: str | None = typer.Option(None, "--fund", help="Also fund the reward pool, e.g. '10 ether'."),
) -> None:
    """Deploy a Federation contract and print its address."""
    with _cli_errors():
        federation_params = load_params(params)
        funding = parse_amount(fund, name="--fund") if fund else 0
        client = _connect(rpc, keystore)
        if client.default_account is None:
            raise ConfigError(f"chain {client.chain_id} at {client.url} is not a devnet: "
                              f"pass --keystore FILE to sign the deployment")
        if federation_params.uses_placeholder_hashes():
            typer.echo("warning: model_spec_hash/genesis_model_hash are placeholders; set them in "
                       "--params for a real federation", err=True)
        federation = client.deploy(federation_params, sender=client.default_account)
        if funding:
            federation.fund(funding, sender=client.default_account)
        typer.echo(f"deployed on chain {client.chain_id} ({client.url}) by "
                   f"{client.default_account.address}", err=True)
        typer.echo(federation.address)


def inspect_command(
    contract: str = typer.Option(..., "--contract", help="Address of the Federation contract."),
    rpc: str | None = _RPC,
    round: int | None = typer.Option(None, "--round", help="Show only this round."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Show a federation: parameters, pool, peers, current round and phase, and per round its
    commitments, votes and finalised model hash."""
    from rich.console import Console

    with _cli_errors():
        from eth_utils import is_address

        if not is_address(contract):
            raise ConfigError(f"--contract {contract!r} is not an address")
        client = _connect(rpc, None)
        federation = client.federation(contract)
        console = Console(soft_wrap=as_json)
        if not console.is_terminal and not as_json:
            console = Console(width=120)  # piped: wide enough for full addresses
        render_inspect(client, federation, round=round, as_json=as_json, console=console)


devnet_app = typer.Typer(help="Start, stop and check a local chain (ganache or anvil) on 127.0.0.1.",
                         no_args_is_help=True)
_STATE = typer.Option(Path(".devnet"), "--state", help="Directory for the chain's state, pid and log.")


@devnet_app.command("up")
def devnet_up(
    chain: str = typer.Option("ganache", "--chain", help="ganache (default) or anvil (faster)."),
    port: int = typer.Option(8545, "--port", help="TCP port on 127.0.0.1."),
    accounts: int = typer.Option(10, "--accounts", help="Number of funded development accounts."),
    state: Path = _STATE,
) -> None:
    """Start a chain with the development accounts; its state is kept in --state."""
    from peer import devnet
    from peer.accounts import DEV_HD_PATH, DEV_MNEMONIC, dev_accounts

    with _cli_errors():
        if chain not in devnet.CHAINS:
            raise ConfigError(f"--chain {chain!r}: choose one of {', '.join(devnet.CHAINS)}")
        running = devnet.start(chain, port=port, accounts=accounts, state_dir=state)  # type: ignore[arg-type]
        typer.echo(f"{running.chain} running (pid {running.pid}, chain id {running.chain_id}, "
                   f"state {running.state_dir})")
        typer.echo(f"RPC URL: {running.rpc_url}")
        typer.echo(f"accounts of the public test mnemonic \"{DEV_MNEMONIC}\" at {DEV_HD_PATH}/i "
                   "(never send real funds to them):")
        for i, account in enumerate(dev_accounts(accounts)):
            typer.echo(f"  ({i}) {account.address}")


@devnet_app.command("down")
def devnet_down(state: Path = _STATE) -> None:
    """Stop the chain started from --state (its state stays on disk)."""
    from peer import devnet

    with _cli_errors():
        stopped = devnet.stop(state)
        if stopped is None:
            typer.echo(f"no devnet running from {state}")
        else:
            typer.echo(f"stopped {stopped.chain} (pid {stopped.pid}) at {stopped.rpc_url}")


@devnet_app.command("status")
def devnet_status(
    state: Path = _STATE,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Show whether a chain runs from --state, its URL and whether it answers (exit code 1 if none)."""
    from peer import devnet

    with _cli_errors():
        running = devnet.status(state)
        if running is None:
            typer.echo(json.dumps({"running": False}) if as_json else f"no devnet running from {state}")
            raise typer.Exit(1)
        answering = devnet.rpc_chain_id(running.rpc_url) is not None
        if as_json:
            typer.echo(json.dumps({"running": True, "answering": answering, **asdict(running)}))
        else:
            typer.echo(f"{running.chain} running (pid {running.pid}) at {running.rpc_url}, chain id "
                       f"{running.chain_id}, {running.accounts} accounts, state {running.state_dir}"
                       + ("" if answering else " — NOT answering RPC"))


account_app = typer.Typer(help="Encrypted keystore accounts (eth-account keyfiles).", no_args_is_help=True)
_KEYDIR = typer.Option(None, "--keystore", help="Keystore directory (default $FEDCHAIN_KEYSTORE or ~/.fedchain/keystore).")


@account_app.command("new")
def account_new(keystore: Path | None = _KEYDIR) -> None:
    """Create an account in an encrypted keystore; passphrase from $FEDCHAIN_PASSPHRASE or a prompt."""
    from peer import accounts

    with _cli_errors():
        directory = keystore or accounts.default_keystore_dir()
        passphrase = accounts.passphrase_from_env()
        if passphrase is None:
            passphrase = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=True)
        entry = accounts.new_keystore(directory, passphrase)
        typer.echo(entry.address)
        typer.echo(f"keystore: {entry.path}", err=True)


@account_app.command("list")
def account_list(keystore: Path | None = _KEYDIR) -> None:
    """List the accounts in a keystore directory."""
    from peer import accounts

    with _cli_errors():
        directory = keystore or accounts.default_keystore_dir()
        entries = accounts.list_keystores(directory)
        if not entries:
            typer.echo(f"no keystore files in {directory}", err=True)
        for entry in entries:
            typer.echo(f"{entry.address}  {entry.path}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the fedchain app."""
    app.command("deploy")(deploy_command)
    app.command("inspect")(inspect_command)
    app.add_typer(devnet_app, name="devnet")
    app.add_typer(account_app, name="account")

