"""The whole federation on real parts: libp2p hosts on loopback, a real chain, torch training.

In-process runs use the embedded EVM (``fedchain demo``); multi-process runs start ganache
and one ``fedchain peer run`` process per peer (``fedchain sim``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from peer.demo import DemoOptions, run_demo
from peer.export import load_model

ETHER = 10**18


def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def test_demo_cli_runs_a_federation_with_a_sign_flipper(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "peer.cli", "demo", "--json", "--peers", "4", "--rounds", "2",
         "--byzantine", "1", "--attack", "sign_flip", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("rounds", "rounds_finalized", "peers", "byzantine", "final_accuracy", "centralized_accuracy",
                "model_hash", "onchain_model_hash", "honest_hashes_agree", "rewards", "gas", "seconds"):
        assert key in s, key
    assert s["rounds_finalized"] == 2 and s["peers"] == 4 and s["byzantine"] == 1
    assert s["honest_hashes_agree"] and s["model_hash"] == s["onchain_model_hash"]
    assert 0.0 <= s["final_accuracy"] <= 1.0 and s["centralized_accuracy"] > 0.8
    rows = s["rewards"]
    assert len(rows) == 4 and sum(r["byzantine"] for r in rows) == 1
    assert sum(r["earned_wei"] for r in rows) <= 2 * ETHER
    for r in rows:  # nothing claimed yet: the chain would pay every earned wei
        assert r["claimable_wei"] == r["earned_wei"], r
        assert r["kept"] + r["rejected"] == r["committed"] == 2
    assert s["gas"]["commitUpdate"] <= 50_000 and s["gas"]["voteAggregate"] <= 55_000
    spec, vec, digest = load_model(Path(s["model_file"]))
    assert digest.hex() == s["onchain_model_hash"]
    assert Path(s["plot"]).stat().st_size > 10_000


@pytest.mark.parametrize("attack", ["nan_inf", "mismatch"])
async def test_bad_payloads_are_dropped_and_the_round_finalises(tmp_path: Path, attack: str) -> None:
    # IID data, so that every honest update is close to the aggregate and must be kept
    opts = DemoOptions(peers=4, rounds=1, byzantine=1, attack=attack, out_dir=tmp_path, fetch_timeout=4.0,
                       epochs=1, partition="iid")
    with trio.fail_after(240):
        s = await run_demo(opts, report=lambda kind, data: None)
    assert s["rounds_finalized"] == 1 and s["honest_hashes_agree"]
    by_peer = {r["peer"]: r for r in s["rewards"]}
    bad = [r for r in by_peer.values() if r["byzantine"]]
    assert len(bad) == 1
    assert bad[0]["kept"] == 0 and bad[0]["earned_wei"] == 0, bad[0]
    honest = [r for r in by_peer.values() if not r["byzantine"]]
    assert all(r["kept"] == 1 and r["earned_wei"] > 0 for r in honest), honest


async def test_equivocating_peer_is_reported_and_slashed(tmp_path: Path) -> None:
    """A peer gossips two different signed updates for one round; an honest peer that sees
    both submits them to the contract, which slashes the offender's stake."""
    opts = DemoOptions(peers=4, rounds=2, byzantine=1, attack="equivocate", out_dir=tmp_path, epochs=1)
    with trio.fail_after(240):
        s = await run_demo(opts, report=lambda kind, data: None)
    cheat = next(r["peer"] for r in s["rewards"] if r["byzantine"])
    assert s["slashed"] == [cheat]
    assert len(s["owed_to_reporters_wei"]) == 1 and cheat not in s["owed_to_reporters_wei"]
    assert list(s["owed_to_reporters_wei"].values())[0] == (ETHER // 10) * 5_000 // 10_000
    assert s["rounds_finalized"] == 2 and s["honest_hashes_agree"]


@pytest.mark.slow
@pytest.mark.devnet
def test_four_peer_processes_on_ganache_agree_with_the_chain(tmp_path: Path) -> None:
    from rich.console import Console

    from peer.sim import SimOptions, run_sim

    s = run_sim(SimOptions(peers=4, rounds=3, commit_window=30, vote_window=30, out_dir=tmp_path, timeout=400),
                console=Console(file=open(os.devnull, "w")))
    assert s["rounds_finalized"] == 3
    results = s["peer_results"]
    assert all(r is not None for r in results), [p for p in tmp_path.glob("peer*.log")]
    assert {r["model_hash"] for r in results} == {s["onchain_model_hash"]}
    assert all(r["model_round"] == 3 for r in results)


@pytest.mark.slow
@pytest.mark.devnet
def test_killed_peer_resumes_and_late_joiner_catches_up(tmp_path: Path) -> None:
    """Peer 0 is killed (SIGKILL) mid-round 2 and restarted; a fifth peer starts only after
    round 1 finalised. Both end with the chain's final model; the restarted peer never
    commits twice in a round."""
    from rich.console import Console

    from peer.sim import PeerProcess, SimOptions, run_sim

    events: dict[str, Any] = {}

    def during(fed: Any, procs: list[PeerProcess]) -> None:
        _wait(lambda: fed.last_finalized_round() >= 1, 240, "round 1 to finalise")
        victim = procs[0]
        address = fed.peer_at(0)
        _wait(lambda: fed.peer_info(address).last_commit_round >= 2 or fed.current_round() > 2, 120,
              "peer 0 to commit in round 2")
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        events["killed_in_round"] = fed.current_round()
        procs[0] = PeerProcess(victim.config, victim.log.with_name("peer0-restarted.log"))

    s = run_sim(SimOptions(peers=5, late_joiners=1, rounds=4, commit_window=20, vote_window=20,
                           out_dir=tmp_path, timeout=500, during=during),
                console=Console(file=open(os.devnull, "w")))
    assert s["rounds_finalized"] == 4
    assert events["killed_in_round"] == 2
    results = s["peer_results"]
    assert all(r is not None for r in results), "a peer did not finish: see the logs in " + str(tmp_path)
    assert {r["model_hash"] for r in results} == {s["onchain_model_hash"]}
    log = (tmp_path / "peer0" / "peer.log.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in log]
    assert not [e for e in entries if "AlreadyCommitted" in str(e.get("error", ""))]
    assert any(e["msg"] == "resumed" for e in entries), "the restarted peer did not resume from its checkpoint"
    late = [json.loads(line) for line in (tmp_path / "peer4" / "peer.log.jsonl").read_text().splitlines()]
    assert any(e["msg"] == "synced" for e in late), "the late joiner did not fetch and verify a model"
