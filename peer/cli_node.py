"""Commands that run federations: ``demo``, ``peer run``, ``sim``, ``export``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from peer.errors import FedchainError

peer_app = typer.Typer(help="Run a peer node.", no_args_is_help=True)


def _fail(console: Console, exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the fedchain app."""
    app.command("demo")(demo)
    app.command("sim")(sim)
    app.command("export")(export)
    app.add_typer(peer_app, name="peer")
    peer_app.command("run")(peer_run)


def demo(
    peers: int = typer.Option(5, help="Number of peers."),
    rounds: int = typer.Option(10, help="Rounds to run."),
    byzantine: int = typer.Option(1, help="How many peers are Byzantine."),
    attack: str = typer.Option("sign_flip", help="What the Byzantine peers do (see peer.attacks; also nan_inf, mismatch)."),
    aggregator: str = typer.Option("median", help="Aggregation rule."),
    pre: str = typer.Option("nnm", help="Pre-aggregation steps, comma-separated (clip, nnm, bucketing; '' for none)."),
    chain: str = typer.Option("embedded", help="embedded, ganache, anvil, or an RPC URL."),
    partition: str = typer.Option("dirichlet", help="Data split: iid, dirichlet, quantity."),
    alpha: float = typer.Option(0.5, help="Dirichlet alpha (non-IID-ness) for --partition dirichlet."),
    seed: int = typer.Option(0, help="Seed of data split, model init and training."),
    out: Path = typer.Option(Path("out/demo"), help="Directory for the plot, the model and summary.json."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON object on the last line."),
) -> None:
    """A whole federation in one process: deploy, register, train, aggregate, finalise, reward."""
    import trio

    from peer.demo import DemoOptions, run_demo

    console = Console(stderr=as_json)
    try:
        opts = DemoOptions(peers=peers, rounds=rounds, byzantine=byzantine, attack=attack, aggregator=aggregator,
                           pre=tuple(p.strip() for p in pre.split(",") if p.strip()),
                           chain=chain, partition=partition, alpha=alpha, seed=seed, out_dir=out)
    except FedchainError as exc:
        _fail(console, exc)

    def report(kind: str, data: dict[str, Any]) -> None:
        if kind == "deployed":
            console.print(f"deployed Federation at [bold]{data['contract']}[/bold] on {data['chain']} "
                          f"(chain id {data['chain_id']})")
        elif kind == "registered":
            console.print(f"{len(data['peers'])} peers registered; Byzantine: "
                          f"{', '.join(a[:10] for a in data['byzantine']) or 'none'}")
        elif kind == "round":
            if data["finalized"]:
                short = {"commitUpdate": "commit", "voteAggregate": "vote"}
                gas = " ".join(f"{short.get(k, k)} {v:,}" for k, v in sorted(data["gas"].items()))
                console.print(f"round {data['round']:>2}  acc {data['accuracy']:.3f}  committed {data['committed']} "
                              f"kept {data['kept']}  model {data['model_hash'][:12]}…  gas {gas}", soft_wrap=True)
            else:
                console.print(f"round {data['round']:>2}: [yellow]failed[/yellow] (no quorum); model unchanged")

    try:
        summary = trio.run(lambda: run_demo(opts, report=report))
    except FedchainError as exc:
        _fail(console, exc)
    _print_summary(console, summary)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")


def _print_summary(console: Console, s: dict[str, Any]) -> None:
    console.print()
    console.print(f"final accuracy [bold]{s['final_accuracy']:.3f}[/bold]  "
                  f"(centralised baseline {s['centralized_accuracy']:.3f}); "
                  f"{s['rounds_finalized']}/{s['rounds']} rounds finalised")
    agree = "[green]yes[/green]" if s["honest_hashes_agree"] else "[red]NO[/red]"
    console.print(f"final model {s['model_hash']}\non chain    {s['onchain_model_hash']}  honest peers agree: {agree}")
    table = Table(title="rewards")
    for col in ("peer", "byzantine", "updates kept", "rejected", "earned (ETH)", "claimable (ETH)"):
        table.add_column(col)
    for r in s["rewards"]:
        table.add_row(r["peer"], "yes" if r["byzantine"] else "", str(r["kept"]), str(r["rejected"]),
                      f"{r['earned_wei'] / 1e18:.4f}", f"{r['claimable_wei'] / 1e18:.4f}")
    console.print(table)
    console.print("gas: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s["gas"].items())))
    console.print(f"plot: {s['plot']}   model: {s['model_file']}   ({s['seconds']:.1f} s)")


def peer_run(
    config: Path = typer.Option(..., "--config", "-c", help="The peer's TOML file (see README)."),
    quiet: bool = typer.Option(False, help="No live view; log lines only."),
) -> None:
    """Run a peer node until the federation's last round (or [node] stop_after)."""
    import trio

    from peer.config import load_peer_config
    from peer.runner import run_peer

    console = Console()
    try:
        cfg = load_peer_config(config)
        trio.run(lambda: run_peer(cfg, console=console, live=not quiet))
    except FedchainError as exc:
        _fail(console, exc)


def sim(
    peers: int = typer.Option(4, help="Peer processes."),
    rounds: int = typer.Option(3),
    byzantine: int = typer.Option(0),
    attack: str = typer.Option("sign_flip"),
    aggregator: str = typer.Option("median"),
    alpha: float = typer.Option(0.5, help="Dirichlet alpha of the data split."),
    chain: str = typer.Option("ganache", help="ganache or anvil (started and stopped by the command)."),
    commit_window: int = typer.Option(60, help="Commit window in seconds."),
    vote_window: int = typer.Option(60, help="Vote window in seconds."),
    out: Path = typer.Option(Path("out/sim")),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Many peers as separate OS processes against a devnet chain this command starts."""
    from peer.sim import SimOptions, run_sim

    console = Console(stderr=as_json)
    try:
        result = run_sim(SimOptions(peers=peers, rounds=rounds, byzantine=byzantine, attack=attack,
                                    aggregator=aggregator, alpha=alpha, chain=chain, out_dir=out,
                                    commit_window=commit_window, vote_window=vote_window),
                         console=console)
    except FedchainError as exc:
        _fail(console, exc)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")


def export(
    round: int = typer.Option(..., "--round", help="The finalised round whose model to export."),
    out: Path = typer.Option(..., "--out", help="Output file (.safetensors)."),
    data_dir: Path = typer.Option(..., "--data-dir", help="A peer's data directory (holds its models)."),
    contract: str = typer.Option(..., help="The federation's contract address."),
    rpc: str = typer.Option("http://127.0.0.1:8545", help="RPC URL of the chain."),
    arch_config: Optional[Path] = typer.Option(None, "--config", help="The peer's TOML (for the model spec)."),
) -> None:
    """Write the model of a finalised round, after checking its hash against the chain."""
    from peer.runner import export_round

    console = Console()
    try:
        digest = export_round(round=round, out=out, data_dir=data_dir, contract=contract, rpc=rpc,
                              config=arch_config)
    except FedchainError as exc:
        _fail(console, exc)
    console.print(f"wrote {out}: round {round}, model hash {digest.hex()} (matches the chain)")
