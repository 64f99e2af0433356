"""Learning commands of the fedchain CLI (see peer/cli.py): ``fedchain baseline``.

The baseline trains the federation's model on the pooled data of all simulated peers
(the union of their train splits) with the peers' own training code, and tests it on
the union of their test splits, so a federated run of the same options can be
compared with it figure for figure.
"""

from __future__ import annotations

import json

import typer

__all__ = ["register", "baseline"]


def _ints(text: str | None, option: str) -> tuple[int, ...] | None:
    from peer.errors import ConfigError

    if text is None or text.strip() == "":
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"{option}: expected comma-separated integers, got {text!r}") from exc


def baseline(
    dataset: str = typer.Option("digits", help="digits, breast_cancer, synthetic, csv or npz."),
    model: str = typer.Option("mlp", help="logreg, mlp, cnn, or package.module:function."),
    hidden: str | None = typer.Option(None, help="Hidden widths / conv channels, e.g. 64,32 "
                                         "(default: mlp 64, cnn 16,32)."),
    epochs: int = typer.Option(20, help="Training epochs over the pooled data."),
    batch_size: int = typer.Option(32, help="Mini-batch size."),
    optimizer: str = typer.Option("sgd", help="sgd or adam."),
    lr: float = typer.Option(0.05, help="Learning rate."),
    momentum: float = typer.Option(0.0, help="SGD momentum."),
    weight_decay: float = typer.Option(0.0, help="L2 weight decay."),
    seed: int = typer.Option(0, help="Seed of sampling, partition, splits, init, shuffling."),
    test_fraction: float = typer.Option(0.2, help="Share of each peer's records held out."),
    n_samples: int | None = typer.Option(None, help="Records to use (synthetic: to generate)."),
    n_classes: int | None = typer.Option(None, help="Classes (synthetic; declared for csv/npz)."),
    path: str | None = typer.Option(None, help="File of a csv or npz dataset."),
    csv_label: str | None = typer.Option(None, help="Label column of a csv dataset."),
    peers: int = typer.Option(1, help="Pool the splits of this many simulated peers."),
    partition: str = typer.Option("iid", help="iid, dirichlet, sizes or quantity."),
    alpha: float = typer.Option(0.5, help="Dirichlet alpha (dirichlet, quantity)."),
    sizes: str | None = typer.Option(None, help="Records per peer, e.g. 1000,1500,800."),
    threads: int = typer.Option(1, help="torch intra-op threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Train the model centrally on the pooled data and print its test accuracy."""
    from peer.data import DataConfig
    from peer.errors import FedchainError
    from peer.models import ModelSpec
    from peer.train import TrainConfig, centralized_baseline, configure_torch_threads

    try:
        configure_torch_threads(threads)
        data_cfg = DataConfig(dataset=dataset, n_samples=n_samples, path=path,
                              csv_label=csv_label, n_classes=n_classes, partition=partition,
                              alpha=alpha, sizes=_ints(sizes, "--sizes"),
                              test_fraction=test_fraction, seed=seed)
        train_cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                                momentum=momentum, weight_decay=weight_decay, seed=seed)
        ds = data_cfg.load()
        spec = ModelSpec(arch=model, input_shape=ds.input_shape, n_classes=ds.n_classes,
                         hidden=_ints(hidden, "--hidden"), seed=seed)
        result = centralized_baseline(data_cfg, spec, train_cfg, n_peers=peers)
    except FedchainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result, sort_keys=True))
        return
    widths = ",".join(map(str, result["hidden"]))
    arch = result["model"] + (f"({widths})" if widths else "")
    typer.echo(f"{result['dataset']} {arch}: test accuracy {result['accuracy']:.4f}, "
               f"loss {result['loss']:.4f}  (train accuracy {result['train_accuracy']:.4f}; "
               f"{result['n_train']} train / {result['n_test']} test records, "
               f"{result['n_params']} parameters, {result['epochs']} epochs of "
               f"{result['optimizer']} lr {result['lr']}, {result['train_seconds']:.2f} s)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the fedchain app."""
    app.command("baseline")(baseline)
