"""Foundry fuzz and invariant tests of contracts/Federation.sol, run through forge.

The Solidity tests live in contracts/foundry (see foundry.toml there for runs, depth and the
fixed fuzz seed); this module runs them and fails on any failing or missing test. forge comes
from the npm package @foundry-rs/forge (devnet/package.json) and compiles with solc-js through
devnet/solc, the compiler of the deployed artifacts; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUNDRY = ROOT / "contracts" / "foundry"
FORGE = ROOT / "devnet" / "node_modules" / ".bin" / "forge"
SOLC = ROOT / "devnet" / "solc"
ARTIFACT = ROOT / "contracts" / "build" / "Federation.json"

# Every test the suite must run: a renamed or deleted test fails here instead of vanishing.
EXPECTED = {
    "test/FederationFuzz.t.sol:FederationFuzzTest": {
        "testFuzz_badEvidenceSlashesNothing",
        "testFuzz_claimAboveCumulativeIsRejected",
        "testFuzz_claimBeyondThePoolIsRefused",
        "testFuzz_claimPaysTheCumulativeDifference",
        "testFuzz_reentrantClaimerGetsNothingExtra",
        "testFuzz_slashedStakeIsAccountedToTheWei",
    },
    "test/FederationInvariant.t.sol:FederationInvariantTest": {"invariant_federationMoney"},
}
FUZZ_RUNS = 256
INVARIANT_CALLS = 128 * 64  # runs x depth, foundry.toml


def _require_tools() -> None:
    if not FORGE.exists():
        pytest.fail(f"forge not found at {FORGE}: run `make setup` (installs devnet's npm packages, "
                    "@foundry-rs/forge among them)")
    if shutil.which("node") is None:
        pytest.fail("node not on PATH: devnet/solc (the compiler forge uses) is a node script")


def _run_forge() -> dict:
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run(
        [str(FORGE), "test", "--json"],
        cwd=FOUNDRY,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    detail = f"(exit {proc.returncode}):\n{proc.stderr}\n{proc.stdout[-4000:]}"
    assert proc.returncode in (0, 1), f"forge test crashed {detail}"
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"forge printed no JSON {detail}") from exc


@pytest.fixture(scope="module")
def forge_results() -> dict:
    _require_tools()
    return _run_forge()


def test_every_fuzz_and_invariant_test_passes(forge_results: dict) -> None:
    failures = []
    for suite, result in forge_results.items():
        for name, test in result["test_results"].items():
            if test["status"] != "Success":
                failures.append(f"{suite} {name}: {test['reason']} (counterexample: {test['counterexample']})")
    assert not failures, "forge tests failed:\n" + "\n".join(failures)


def test_the_expected_tests_ran_with_their_budgets(forge_results: dict) -> None:
    ran = {suite: {name.split("(")[0] for name in r["test_results"]} for suite, r in forge_results.items()}
    for suite, names in EXPECTED.items():
        missing = names - ran.get(suite, set())
        assert not missing, f"{suite}: tests did not run: {sorted(missing)}"
    for suite, result in forge_results.items():
        for name, test in result["test_results"].items():
            kind = test["kind"]
            if "Fuzz" in kind:
                assert kind["Fuzz"]["runs"] == FUZZ_RUNS, f"{name}: {kind['Fuzz']['runs']} fuzz runs"
            elif "Invariant" in kind:
                assert kind["Invariant"]["calls"] == INVARIANT_CALLS, f"{name}: {kind['Invariant']['calls']} calls"
                assert kind["Invariant"]["reverts"] == 0, f"{name}: handler calls reverted"


def test_solc_wrapper_builds_the_deployed_bytecode() -> None:
    """devnet/solc (what forge and Slither compile with) gives the artifact's exact bytecode, so
    the fuzzed and analysed contract is the deployed one."""
    _require_tools()
    version = subprocess.run([str(SOLC), "--version"], capture_output=True, text=True, check=True, timeout=120)
    artifact = json.loads(ARTIFACT.read_text())
    assert version.stdout.splitlines()[-1] == f"Version: {artifact['solcVersion']}"
    source = "contracts/Federation.sol"
    request = {
        "language": "Solidity",
        "sources": {source: {"urls": [source]}},
        "settings": {
            "evmVersion": artifact["evmVersion"],
            "optimizer": {"enabled": True, "runs": artifact["optimizerRuns"]},
            "outputSelection": {"*": {"*": ["evm.deployedBytecode.object"]}},
        },
    }
    proc = subprocess.run(
        [str(SOLC), "--standard-json", "--base-path", str(ROOT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    output = json.loads(proc.stdout)
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    assert not errors, "\n".join(errors)
    built = output["contracts"][source]["Federation"]["evm"]["deployedBytecode"]["object"]
    assert "0x" + built == artifact["deployedBytecode"], (
        "devnet/solc and devnet/compile.js build different bytecode: run `make compile`"
    )


def test_solc_wrapper_refuses_unknown_flags() -> None:
    """An unsupported solc flag is an error naming the flag, never silently ignored."""
    _require_tools()
    proc = subprocess.run([str(SOLC), "--combined-json", "abi"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert '"--combined-json"' in proc.stderr
