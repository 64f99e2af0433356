"""``fedchain rewards`` and ``fedchain claim`` through typer's CliRunner on a federation played
by hand: on the embedded chain (the commands' chain seam, ``_open_client``, returns it) and,
end to end over JSON-RPC, on an anvil process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from peer import cli_rewards
from peer.accounts import new_keystore
from peer.chain import ChainClient
from tests.ledger_helpers import Played, h, play, shared_played, write_checkpoint


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    cli_rewards.register(app)
    return app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDCHAIN_RPC", raising=False)
    monkeypatch.delenv("FEDCHAIN_PASSPHRASE", raising=False)
    return CliRunner()


def on_chain(monkeypatch: pytest.MonkeyPatch, client: ChainClient) -> None:
    """Point the commands at ``client`` (an embedded chain lives in this process only)."""
    monkeypatch.setattr(cli_rewards, "_open_client", lambda rpc, account=None, dev_accounts=10: client)


@pytest.fixture(scope="module")
def played() -> Played:
    """A played federation for the tests that only read (no claim through the CLI)."""
    return shared_played()


def test_rewards_json_and_tables(app: typer.Typer, runner: CliRunner, played: Played, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    on_chain(monkeypatch, played.client)
    data_dir = played.write_data_dir(tmp_path / "peer0")
    result = runner.invoke(app, ["rewards", "--contract", played.fed.address, "--data-dir", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["contract"] == played.fed.address and data["rounds_finalized"] == 2
    assert data["rewards_root"] == "0x" + played.fed.latest_rewards_root().hex()
    assert data["root_verified"] is True and data["reconciled"] is True
    assert all(c["ok"] is True for c in data["checks"].values())
    alice = data["participants"][0]
    assert set(alice) >= {"address", "committee_rounds", "committed", "kept", "rejected", "votes_with_majority",
                          "earned_wei", "claimed_wei", "claimable_wei", "stake_wei", "slashed"}
    assert alice["address"] == played.peers[0].address and alice["votes_with_majority"] == 2
    assert alice["earned_wei"] == played.balances[2][alice["address"]] == alice["claimed_wei"]
    assert [p["earned_wei"] for p in data["participants"]] == [played.balances[2].get(a.address, 0)
                                                               for a in played.peers]
    assert data["participants"][3]["slashed"] is True

    tables = runner.invoke(app, ["rewards", "--contract", played.fed.address, "--data-dir", str(data_dir)])
    assert tables.exit_code == 0, tables.output
    text = tables.stdout
    assert f"Rewards of {played.fed.address}: 2 round(s) finalised" in text
    assert all(a.address in text for a in played.peers)
    assert "verified against the chain's rewards root" in text and "reconciled: yes" in text

    bare = runner.invoke(app, ["rewards", "--contract", played.fed.address])
    assert bare.exit_code == 0 and "pass --data-dir of a peer" in bare.stdout and "reconciled: yes" in bare.stdout
    bad = runner.invoke(app, ["rewards", "--contract", "nope"])
    assert bad.exit_code == 1 and "error: --contract 'nope' is not an address" in bad.output


def test_rewards_that_do_not_reconcile_exit_3(app: typer.Typer, runner: CliRunner, played: Played,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_chain(monkeypatch, played.client)
    data_dir = played.write_data_dir(tmp_path / "peer0")
    bob = played.peers[1].address
    write_checkpoint(data_dir, contract=played.fed.address, model_round=2, model_hash=h("model-2"),
                     balances={**played.balances[2], bob: 10**17})
    result = runner.invoke(app, ["rewards", "--contract", played.fed.address, "--data-dir", str(data_dir)])
    assert result.exit_code == cli_rewards.NOT_RECONCILED_EXIT == 3
    assert "MISMATCH" in result.stdout and "reconciled: no (failed: rewards_root" in result.stdout
    as_json = runner.invoke(app, ["rewards", "--contract", played.fed.address, "--data-dir", str(data_dir), "--json"])
    assert as_json.exit_code == 3 and json.loads(as_json.stdout)["failed_checks"][0] == "rewards_root"


def test_claim_refusals(app: typer.Typer, runner: CliRunner, played: Played, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    on_chain(monkeypatch, played.client)
    address = played.fed.address
    stale = played.write_data_dir(tmp_path / "stale", upto=1)
    result = runner.invoke(app, ["claim", "--contract", address, "--data-dir", str(stale), "--dev-account", "2"])
    assert result.exit_code == 1
    assert "error: the checkpoint's balances (round 1" in result.output
    assert "wait for this peer to sync" in result.output
    assert played.fed.claimed(played.peers[1].address) == 0
    current = played.write_data_dir(tmp_path / "current")
    for args, message in [
        ([], "pass exactly one of --dev-account I and --keystore FILE"),
        (["--dev-account", "1", "--keystore", "k.json"], "pass exactly one of"),
        (["--dev-account", "-1"], "--dev-account must be >= 0"),
        (["--dev-account", "1", "--contract", "0x1234"], "--contract '0x1234' is not an address"),
    ]:
        result = runner.invoke(app, ["claim", "--contract", address, "--data-dir", str(current), *args])
        assert result.exit_code == 1 and message in result.output, result.output
    other = tmp_path / "other"
    write_checkpoint(other, contract=played.peers[0].address, model_round=1, model_hash=h("x"), balances={})
    result = runner.invoke(app, ["claim", "--contract", address, "--data-dir", str(other), "--dev-account", "1"])
    assert result.exit_code == 1 and f"is a checkpoint of contract {played.peers[0].address}, not {address}" in \
        result.output
    result = runner.invoke(app, ["claim", "--contract", address, "--data-dir", str(tmp_path / "none"),
                                 "--dev-account", "1"])
    assert result.exit_code == 1 and "no checkpoint.npz in" in result.output


def test_claim_end_to_end(app: typer.Typer, runner: CliRunner, embedded_chain: ChainClient, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    p = play(embedded_chain, claim=False)
    on_chain(monkeypatch, embedded_chain)
    data_dir = p.write_data_dir(tmp_path / "peer2")  # any peer's directory serves every account
    address = p.fed.address
    alice, bob = p.peers[0], p.peers[1]  # both voted with round 1's majority: paid in round 2
    pool = p.fed.reward_pool()

    earned = p.balances[2][bob.address]
    result = runner.invoke(app, ["claim", "--contract", address, "--data-dir", str(data_dir), "--dev-account", "2"])
    assert result.exit_code == 0, result.output
    assert f"({earned} wei) for {bob.address}" in result.stdout and "gas used " in result.stdout
    assert p.fed.claimed(bob.address) == earned and p.fed.reward_pool() == pool - earned
    again = runner.invoke(app, ["claim", "--contract", address, "--data-dir", str(data_dir), "--dev-account", "2"])
    assert again.exit_code == 0
    assert again.stdout.strip() == (f"nothing to claim for {bob.address}: it earned {earned} wei as of round 2 "
                                    f"and claimed {earned} wei")
    idle = runner.invoke(app, ["claim", "--contract", address, "--data-dir", str(data_dir), "--dev-account", "0"])
    assert idle.exit_code == 0 and "nothing to claim for" in idle.stdout and "earned nothing" in idle.stdout

    key = new_keystore(tmp_path / "keys", "pw", private_key=bytes(alice.key), kdf="pbkdf2", iterations=2)
    result = runner.invoke(app, ["claim", "--contract", address, "--data-dir", str(data_dir),
                                 "--keystore", str(key.path)], env={"FEDCHAIN_PASSPHRASE": "pw"})
    assert result.exit_code == 0, result.output
    assert p.fed.claimed(alice.address) == p.balances[2][alice.address] > 0

    ledger = runner.invoke(app, ["rewards", "--contract", address, "--data-dir", str(data_dir), "--json"])
    assert ledger.exit_code == 0, ledger.output
    data = json.loads(ledger.stdout)
    rows = {r["address"]: r for r in data["participants"]}
    assert rows[bob.address]["claimed_wei"] == earned and rows[bob.address]["claimable_wei"] == 0
    for other in p.peers[2:]:
        assert rows[other.address]["claimable_wei"] == p.balances[2].get(other.address, 0)
    assert data["claimed_total"] == earned + p.balances[2][alice.address] and data["reconciled"]


@pytest.mark.devnet
def test_rewards_and_claim_over_rpc(app: typer.Typer, runner: CliRunner, anvil, tmp_path: Path) -> None:  # noqa: ANN001
    """The same commands with --rpc against an anvil process: nothing replaced."""
    client = ChainClient.connect(anvil.rpc_url)
    p = play(client, claim=False)
    data_dir = p.write_data_dir(tmp_path / "peer")
    base = ["--contract", p.fed.address, "--rpc", anvil.rpc_url, "--data-dir", str(data_dir)]
    claim = runner.invoke(app, ["claim", *base, "--dev-account", "1"])
    assert claim.exit_code == 0, claim.output
    alice = p.peers[0].address
    assert p.fed.claimed(alice) == p.balances[2][alice]
    shown = runner.invoke(app, ["rewards", *base, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["reconciled"] and data["root_verified"]
    assert data["participants"][0]["claimed_wei"] == p.balances[2][alice]
