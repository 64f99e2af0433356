"""Slither finds no high- or medium-impact issue in contracts/Federation.sol.

Runs devnet/slither.sh (Slither 0.11.6 from .venv-slither, compiling offline through
devnet/solc). Each finding the contract suppresses carries its reason in the contract's
"Slither note"; OpenZeppelin's code is filtered out.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "devnet" / "slither.sh"
SLITHER = ROOT / ".venv-slither" / "bin" / "slither"
SOURCE = "contracts/Federation.sol"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not SLITHER.exists():
        pytest.fail(f"Slither not installed at {SLITHER}: run `make slither-setup` (its own venv: it needs web3<8)")
    out = tmp_path_factory.mktemp("slither") / "report.json"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--json", str(out)], capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    assert out.exists(), f"Slither wrote no report (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    data = json.loads(out.read_text())
    assert data["success"], f"Slither failed: {data['error']}\n{proc.stderr[-4000:]}"
    data["exit_code"] = proc.returncode
    return data


def _findings(report: dict) -> list[dict]:
    return report.get("results", {}).get("detectors", [])


def test_no_high_or_medium_finding(report: dict) -> None:
    serious = [f for f in _findings(report) if f["impact"] in ("High", "Medium")]
    assert not serious, "Slither high/medium findings:\n" + "\n".join(
        f"[{f['impact']}/{f['confidence']}] {f['check']}: {f['description'].strip()}" for f in serious
    )
    assert report["exit_code"] == 0, "devnet/slither.sh failed although no high/medium finding was reported"


def test_the_federation_contract_was_analysed(report: dict) -> None:
    """Guards against a vacuous pass: the report must hold findings located in our contract
    (low/informational ones, such as the payment's low-level call, are always there)."""
    files = {
        element["source_mapping"]["filename_relative"]
        for f in _findings(report)
        for element in f["elements"]
        if "source_mapping" in element
    }
    assert SOURCE in files, f"no finding located in {SOURCE}: was it compiled? files seen: {sorted(files)}"
    assert not any("node_modules" in name for name in files), "OpenZeppelin findings were not filtered out"
