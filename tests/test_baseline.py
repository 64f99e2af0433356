"""The centralised baseline: the function the demo calls and the ``fedchain baseline``
command, on real data and the real training path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from peer.data import DataConfig, load_peer_data
from peer.models import ModelSpec, build_model, get_flat, model_hash
from peer.train import TrainConfig, centralized_baseline, evaluate, train_local


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The real ``fedchain`` app (peer.cli), where cli_learn registers ``baseline``."""
    from peer.cli import app

    return app


def test_baseline_is_the_peer_training_path_on_pooled_data() -> None:
    data = DataConfig(dataset="digits", partition="dirichlet", alpha=0.5, seed=1)
    spec = ModelSpec("logreg", input_shape=(1, 8, 8), n_classes=10, seed=2)
    cfg = TrainConfig(epochs=5, optimizer="adam", lr=0.01, seed=3)
    result = centralized_baseline(data, spec, cfg, n_peers=3)

    shares = [load_peer_data(data, i, 3) for i in range(3)]
    assert result["n_train"] == sum(len(t) for t, _ in shares)
    assert result["n_test"] == sum(len(t) for _, t in shares)
    assert result["n_train"] + result["n_test"] == 1797
    assert result["accuracy"] > 0.9 and result["train_accuracy"] > 0.9
    # reproducible: the same config gives the same final model hash
    again = centralized_baseline(data, spec, cfg, n_peers=3)
    assert again["model_hash"] == result["model_hash"]

    # and it is exactly train_local + evaluate on the pooled sets
    from peer.data import pooled_data

    train, test = pooled_data(data, 3)
    genesis = get_flat(build_model(spec))
    final = genesis + train_local(spec, genesis, train, cfg, round=0, peer_seed=0).update
    assert "0x" + model_hash(final).hex() == result["model_hash"]
    assert evaluate(spec, final, test)[0] == result["accuracy"]


def test_cli_prints_accuracy(app: typer.Typer) -> None:
    out = CliRunner().invoke(app, ["baseline", "--dataset", "breast_cancer", "--model", "logreg",
                                   "--epochs", "5"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("breast_cancer logreg: test accuracy 0.9")
    assert "455 train / 114 test records" in out.output


def test_cli_json(app: typer.Typer) -> None:
    out = CliRunner().invoke(app, ["baseline", "--dataset", "digits", "--model", "mlp",
                                   "--hidden", "32", "--epochs", "3", "--optimizer", "adam",
                                   "--lr", "0.01", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["model"] == "mlp" and result["hidden"] == [32]
    assert result["n_params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert result["accuracy"] > 0.85
    assert len(bytes.fromhex(result["spec_hash"][2:])) == 32


def test_cli_hospitals_on_synthetic_data(app: typer.Typer) -> None:
    out = CliRunner().invoke(app, ["baseline", "--dataset", "synthetic", "--n-samples", "3300",
                                   "--peers", "3", "--partition", "sizes",
                                   "--sizes", "1000,1500,800", "--model", "logreg",
                                   "--epochs", "2", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["n_train"] + result["n_test"] == 3300
    assert result["n_test"] == 200 + 300 + 160


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "transformer"], "'transformer'"),
        (["--partition", "sizes", "--peers", "3", "--sizes", "1000,1500,800"], "need 3300"),
        (["--sizes", "1,x"], "--sizes"),
        (["--lr", "-1"], "lr"),
    ],
)
def test_cli_errors_name_the_value(app: typer.Typer, args: list[str], message: str) -> None:
    out = CliRunner().invoke(app, ["baseline", *args])
    assert out.exit_code == 2
    assert "error:" in out.output and message in out.output


def test_baseline_figures_reasonable_for_each_model() -> None:
    """Digits, 10 epochs of Adam: every built-in model far above chance (0.1)."""
    data = DataConfig(dataset="digits")
    accs = {}
    for arch in ("logreg", "mlp", "cnn"):
        spec = ModelSpec(arch, input_shape=(1, 8, 8), n_classes=10)
        accs[arch] = centralized_baseline(data, spec, TrainConfig(epochs=10, optimizer="adam",
                                                                   lr=0.01))["accuracy"]
    assert min(accs.values()) > 0.9, accs
    assert np.isfinite(list(accs.values())).all()
