"""Rewards commands of the fedchain CLI: ``rewards`` (the ledger, reconciled with the chain)
and ``claim`` (registered on the app by :func:`register`).

The chain stores only the root of the cumulative-rewards Merkle tree; its leaves live in
every peer's data directory (``checkpoint.npz``). Both commands therefore take the
``--data-dir`` of any peer of the federation, and trust its balances only once they give
the chain's ``latestRewardsRoot``. See :mod:`peer.ledger` for the checks.

Which chain and who signs: as for ``fedchain inspect`` (``--rpc URL``, else
``$FEDCHAIN_RPC``, else the running devnet; ``--keystore FILE`` or, on a devnet,
``--dev-account I``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from peer.cli_chain import _RPC, _cli_errors, _resolve_rpc, _signer
from peer.errors import ConfigError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from rich.console import Console

    from peer.chain import ChainClient, Federation

__all__ = ["NOT_RECONCILED_EXIT", "register", "render_rewards", "rewards_data"]

NOT_RECONCILED_EXIT = 3
"""Exit code of ``fedchain rewards`` when a check fails (1 is an error, 2 a usage error)."""

DEFAULT_SAMPLE_CAP = 1_000  # NodeConfig.sample_cap's default


# ---------------------------------------------------------------- the ledger as data


def rewards_data(federation: Federation, *, data_dir: Path | None = None,
                 sample_cap: int = DEFAULT_SAMPLE_CAP) -> dict[str, Any]:
    """A JSON-ready ledger of ``federation``: totals, the checks and one row per participant.
    ``data_dir`` (a peer's) adds earned / claimable / kept / rejected."""
    from peer import ledger

    checkpoint: ledger.Checkpoint | None = None
    records: list[ledger.RoundOutcome] = []
    if data_dir is not None:
        checkpoint = ledger.load_checkpoint_balances(data_dir)
        checkpoint.require_contract(federation.address)
        records = ledger.load_round_records(data_dir)
    snapshot = ledger.read_chain(federation)
    books = ledger.tally(snapshot.events, committee_size=snapshot.params.committee_size)
    participants = ledger.participant_table(snapshot, books, checkpoint=checkpoint, records=records)
    result = ledger.reconcile(snapshot, books, participants, checkpoint=checkpoint, records=records,
                              sample_cap=sample_cap)
    good, _ = ledger.usable_records(books, records)
    return {
        "contract": snapshot.contract,
        "chain_id": snapshot.chain_id,
        "block": snapshot.block,
        "rounds_opened": books.rounds_opened,
        "rounds_finalized": len(books.finalized),
        "rounds_failed": len(books.failed),
        "last_finalized_round": snapshot.last_finalized_round,
        "reward_per_round": snapshot.params.reward_per_round,
        "reward_pool": snapshot.reward_pool,
        "funded": books.funded,
        "claimed_total": books.claimed_total,
        "rewards_root": "0x" + snapshot.latest_rewards_root.hex(),
        "rewards_root_set": snapshot.latest_rewards_root != ledger.NO_REWARDS_ROOT,
        "checkpoint": None if checkpoint is None else {
            "path": str(checkpoint.path), "model_round": checkpoint.model_round,
            "root": "0x" + checkpoint.root.hex(), "accounts": len(checkpoint.balances),
            "round_records": len(good)},
        "root_verified": result.root_verified,
        "reconciled": result.reconciled,
        "failed_checks": result.failed,
        "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in result.checks.items()},
        "participants": [asdict(p) for p in participants],
    }


def render_rewards(data: dict[str, Any], console: Console) -> None:
    """Print :func:`rewards_data` as a table and the reconciliation (amounts in ETH, rounded
    to 6 decimals where marked ``~``; ``--json`` has them exact in wei)."""
    from rich import box
    from rich.table import Table

    cp = data["checkpoint"]
    title = (f"Rewards of {data['contract']}: {data['rounds_finalized']} round(s) finalised, "
             f"{data['rounds_failed']} failed; pool {_eth(data['reward_pool'])} (amounts in ETH)")
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for col in ("#", "participant", "committee", "committed", "kept", "rejected", "majority votes",
                "earned", "claimed", "claimable", "stake", "status"):
        table.add_column(col, justify="left" if col in ("participant", "status") else "right", overflow="fold",
                         no_wrap=col == "participant" and console.width >= 140)
    for p in data["participants"]:
        eth = functools.partial(_eth, unit="")
        table.add_row("-" if p["index"] is None else str(p["index"]), p["address"], str(p["committee_rounds"]),
                      str(p["committed"]), _opt(p["kept"]), _opt(p["rejected"]),
                      f"{p['votes_with_majority']} of {p['votes']}", _opt(p["earned_wei"], eth),
                      eth(p["claimed_wei"]), _opt(p["claimable_wei"], eth), eth(p["stake_wei"]), p["status"])
    console.print(table)
    if cp is None:
        console.print("earned, claimable, kept, rejected: pass --data-dir of a peer of this federation")
    else:
        verdict = ("verified against the chain's rewards root" if data["root_verified"]
                   else "[bold red]MISMATCH[/] with the chain's rewards root")
        console.print(f"earned: balances of round {cp['model_round']} in {cp['path']} (root {cp['root']}): {verdict}",
                      highlight=False)
        if cp["round_records"] < data["rounds_finalized"]:
            console.print(f"kept, rejected: from the {cp['round_records']} of {data['rounds_finalized']} "
                          f"finalised round(s) this peer recorded")
    console.print(f"chain's rewards root: {data['rewards_root']}"
                  + ("" if data["rewards_root_set"] else " (none yet: no round finalised)"), highlight=False)
    for name, check in data["checks"].items():
        mark = {True: "[green]ok[/]", False: "[bold red]FAILED[/]", None: "[dim]skipped[/]"}[check["ok"]]
        console.print(f"  {mark} {name}: {check['detail']}", highlight=False)
    if data["reconciled"]:
        console.print("reconciled: [bold green]yes[/]")
    else:
        console.print(f"reconciled: [bold red]no[/] (failed: {', '.join(data['failed_checks'])})")


def _opt(value: int | None, fmt: Any = str) -> str:
    return "-" if value is None else fmt(value)


def _eth(wei: int, *, unit: str = " ETH") -> str:
    """Ether, exact up to 6 decimals (``0.06 ETH``), else rounded and marked (``~0.044286 ETH``)."""
    from decimal import ROUND_HALF_EVEN, Decimal

    ether = Decimal(wei) / Decimal(10**18)
    shown = ether.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
    text = f"{shown.normalize():f}" if shown else "0"
    return f"{'' if shown == ether else '~'}{text}{unit}"


# ---------------------------------------------------------------- commands


def _open_client(rpc: str | None, *, account: LocalAccount | None = None, dev_accounts: int = 10) -> ChainClient:
    """The chain the commands talk to (the seam tests replace with an embedded chain)."""
    from peer.chain import ChainClient

    return ChainClient.connect(_resolve_rpc(rpc), account=account, dev_account_count=dev_accounts)


def _contract_address(contract: str) -> str:
    from eth_utils import is_address, to_checksum_address

    if not is_address(contract):
        raise ConfigError(f"--contract {contract!r} is not an address")
    return to_checksum_address(contract)


_CONTRACT = typer.Option(..., "--contract", help="Address of the Federation contract.")


def rewards_command(
    contract: str = _CONTRACT,
    rpc: str | None = _RPC,
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data directory of any peer of this federation (its checkpoint holds the "
                                 "balances behind the chain's rewards root): adds earned, claimable, kept, rejected."),
    sample_cap: int = typer.Option(DEFAULT_SAMPLE_CAP, "--sample-cap",
                                   help="The peers' sample cap, to recompute the rewards from the round records."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Per participant: rounds in committee, updates committed, kept and rejected, votes with
    the majority, earned, claimed, claimable, stake, slashing; reconciled with the chain's
    events and balances. Exit code 3 when a check fails."""
    from rich.console import Console

    with _cli_errors():
        if sample_cap <= 0:
            raise ConfigError(f"--sample-cap must be > 0, got {sample_cap}")
        address = _contract_address(contract)
        federation = _open_client(rpc).federation(address)
        data = rewards_data(federation, data_dir=data_dir, sample_cap=sample_cap)
    if as_json:
        typer.echo(json.dumps(data, indent=1))
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # piped: wide enough for full addresses
        render_rewards(data, console)
    if not data["reconciled"]:
        raise typer.Exit(NOT_RECONCILED_EXIT)


def claim_command(
    contract: str = _CONTRACT,
    rpc: str | None = _RPC,
    data_dir: Path = typer.Option(..., "--data-dir", help="Data directory of any peer of this federation."),
    dev_account: int | None = typer.Option(None, "--dev-account",
                                           help="Claim for development account I (devnets only)."),
    keystore: Path | None = typer.Option(None, "--keystore", help="Keystore file of the account that claims."),
) -> None:
    """Claim everything the account has earned so far, with one Merkle proof built from the
    peer's checkpoint (checked against the chain's latest rewards root first)."""
    from peer import ledger

    with _cli_errors():
        if (dev_account is None) == (keystore is None):
            raise ConfigError("pass exactly one of --dev-account I and --keystore FILE: the key that claims")
        if dev_account is not None and dev_account < 0:
            raise ConfigError(f"--dev-account must be >= 0, got {dev_account}")
        address = _contract_address(contract)
        checkpoint = ledger.load_checkpoint_balances(data_dir)
        checkpoint.require_contract(address)
        account = _signer(keystore)
        client = _open_client(rpc, account=account, dev_accounts=max(10, (dev_account or 0) + 1))
        if account is None:
            account = client.dev_accounts[dev_account or 0]
        federation = client.federation(address)
        plan = ledger.plan_claim(checkpoint, account=account.address,
                                 latest_root=federation.latest_rewards_root(),
                                 already_claimed=federation.claimed(account.address),
                                 reward_pool=federation.reward_pool())
        if plan.amount == 0:
            typer.echo(f"nothing to claim for {plan.account}: {plan.reason}")
            return
        receipt = federation.claim(plan.cumulative, plan.proof, sender=account)
        paid = receipt.event("Claimed").args["amount"]
        typer.echo(f"claimed {_eth(paid)} ({paid} wei) for {plan.account}: earned {_eth(plan.cumulative)} "
                   f"as of round {checkpoint.model_round}, {_eth(plan.already_claimed)} claimed before")
        typer.echo(f"gas used {receipt.gas_used}, transaction {receipt.tx_hash} in block {receipt.block_number}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the fedchain app."""
    app.command("rewards")(rewards_command)
    app.command("claim")(claim_command)
