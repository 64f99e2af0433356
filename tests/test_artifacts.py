"""The committed contract artifacts must match the Solidity sources they were built from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "contracts" / "build"
SOURCES = sorted((ROOT / "contracts").glob("*.sol")) + sorted((ROOT / "contracts" / "test").glob("*.sol"))


def _artifacts_of(source: Path) -> list[dict]:
    rel = source.relative_to(ROOT).as_posix()
    found = []
    for path in BUILD.glob("*.json"):
        artifact = json.loads(path.read_text())
        if artifact.get("source") == rel:
            found.append(artifact)
    return found


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_artifact_is_fresh(source: Path) -> None:
    artifacts = _artifacts_of(source)
    assert artifacts, f"no artifact in contracts/build for {source.name}: run `make compile`"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    for artifact in artifacts:
        assert artifact["sourceHash"] == digest, (
            f"contracts/build/{artifact['contractName']}.json is stale against {source.name}: run `make compile`"
        )
        assert artifact["evmVersion"] == "shanghai"
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 2


def test_every_artifact_has_a_source() -> None:
    sources = {s.relative_to(ROOT).as_posix() for s in SOURCES}
    for path in BUILD.glob("*.json"):
        artifact = json.loads(path.read_text())
        assert artifact["source"] in sources, f"{path.name} was built from a source that no longer exists"
