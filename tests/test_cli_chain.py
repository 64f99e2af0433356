"""The chain commands: params TOML, amounts, inspect rendering (embedded chain, in process),
and the real commands through typer against an anvil process: devnet up/status/down,
deploy, inspect, account new/list."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from peer.chain import ChainClient, FederationParams
from peer.cli_chain import inspect_data, load_params, parse_amount, register, render_inspect
from peer.errors import ConfigError
from peer.merkle import MerkleTree


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Commands run in an empty directory with no chain configured."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDCHAIN_RPC", raising=False)
    monkeypatch.delenv("FEDCHAIN_PASSPHRASE", raising=False)
    return CliRunner()


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


# ---------------------------------------------------------------- params and amounts


def test_parse_amount() -> None:
    assert parse_amount(12) == 12
    assert parse_amount("0.5 ether") == 5 * 10**17
    assert parse_amount("3 gwei") == 3 * 10**9
    assert parse_amount("7") == 7 and parse_amount("1 ETH") == 10**18
    for bad in ("1.5 wei", "ten ether", "1 finney", "-1", True):
        with pytest.raises(ConfigError):
            parse_amount(bad, name="--fund")


def test_load_params_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "fed.toml"
    path.write_text(f"""
model_spec_hash = "0x{'11' * 32}"
genesis_model_hash = "0x{'22' * 32}"
commit_window = 60
committee_size = 5
quorum_bps = 5001
reward_per_round = "0.25 ether"
min_stake = 1000
""")
    params = load_params(path)
    assert params == FederationParams(model_spec_hash=b"\x11" * 32, genesis_model_hash=b"\x22" * 32,
                                      commit_window=60, committee_size=5, quorum_bps=5001,
                                      reward_per_round=25 * 10**16, min_stake=1000)
    assert not params.uses_placeholder_hashes() and load_params(None).uses_placeholder_hashes()
    for text, match in [
        ("comit_window = 5", "unknown key.*comit_window"),
        ("commit_window = -5", "commit_window must be a non-negative integer"),
        ("commit_window = 'soon'", "commit_window"),
        ("genesis_model_hash = '0x1234'", "genesis_model_hash must be '0x' followed by 64 hex"),
        ("min_stake = '1 bitcoin'", "min_stake"),
        ("commit_window = ", "not valid TOML"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_params(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "absent.toml")


# ---------------------------------------------------------------- inspect rendering


def played_round(client: ChainClient):  # noqa: ANN201 - a Federation
    operator, alice, bob, carol = client.dev_accounts[:4]
    params = FederationParams(committee_size=3, quorum_bps=6000, commit_window=100, vote_window=100)
    fed = client.deploy(params, sender=operator)
    fed.fund(10**18, sender=operator)
    for i, acct in enumerate((alice, bob, carol)):
        fed.register([f"/ip4/127.0.0.1/tcp/{5000 + i}"], sender=acct)
    fed.start(sender=operator)
    for acct in (alice, bob, carol):
        fed.commit_update(1, h(acct.address), 10 + len(acct.address), sender=acct)
    root = MerkleTree([(alice.address, 10**15)]).root
    fed.vote_aggregate(1, h("model"), root, sender=alice)
    fed.vote_aggregate(1, h("other"), root, sender=carol)
    fed.vote_aggregate(1, h("model"), root, sender=bob)  # quorum 2 of 3
    return fed


def test_inspect_data_and_rendering_on_embedded_chain(embedded_chain: ChainClient) -> None:
    fed = played_round(embedded_chain)
    alice, bob, carol = embedded_chain.dev_accounts[1:4]
    data = inspect_data(fed)
    assert json.loads(json.dumps(data)) == data  # JSON-ready
    assert data["address"] == fed.address and data["current_round"] == 2 and data["phase"] == "commit"
    assert data["params"]["committee_size"] == 3 and data["reward_pool"] == 10**18
    assert data["latest_model_hash"] == "0x" + h("model").hex()
    assert [p["address"] for p in data["peers"]] == [alice.address, bob.address, carol.address]
    assert data["peers"][0]["multiaddrs"] == ["/ip4/127.0.0.1/tcp/5000"]
    first = data["rounds"][0]
    assert first["status"] == "finalized" and first["model_hash"] == "0x" + h("model").hex()
    assert [c["peer"] for c in first["commitments"]] == sorted([alice.address, bob.address, carol.address],
                                                               key=lambda a: int(a, 16))
    assert [(v["voter"], v["votes"]) for v in first["votes"]] == [(alice.address, 1), (carol.address, 1),
                                                                  (bob.address, 2)]
    assert data["rounds"][1]["status"] == "open" and data["rounds"][1]["commitments"] == []
    only = inspect_data(fed, round=1)
    assert [r["round"] for r in only["rounds"]] == [1]
    with pytest.raises(ConfigError, match="--round 3 does not exist"):
        inspect_data(fed, round=3)

    out = io.StringIO()
    returned = render_inspect(embedded_chain, fed, console=Console(file=out, width=160))
    text = out.getvalue()
    assert returned == data | {"block": returned["block"], "timestamp": returned["timestamp"]}
    assert f"Federation {fed.address}" in text and "Round 1: finalized" in text
    assert alice.address in text and "/ip4/127.0.0.1/tcp/5000" in text and "Round 2: open" in text
    out = io.StringIO()
    render_inspect(embedded_chain, fed, round=1, as_json=True, console=Console(file=out, soft_wrap=True))
    assert json.loads(out.getvalue())["rounds"][0]["round"] == 1


# ---------------------------------------------------------------- commands


def test_deploy_without_a_chain_explains_the_embedded_chain(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["deploy"])
    assert result.exit_code == 1
    assert "no chain to talk to: pass --rpc URL" in result.output
    assert "embedded chain lives only inside one process" in result.output
    result = runner.invoke(app, ["inspect", "--contract", "0x1234"])
    assert result.exit_code == 1 and "is not an address" in result.output


def test_deploy_to_an_unreachable_rpc(app: typer.Typer, runner: CliRunner) -> None:
    from peer.devnet import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["deploy", "--rpc", url])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: cannot reach RPC at {url}: connection refused"


def test_account_new_and_list(app: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    result = runner.invoke(app, ["account", "list", "--keystore", str(keys)])
    assert result.exit_code == 0 and "no keystore files" in result.output
    result = runner.invoke(app, ["account", "new", "--keystore", str(keys)], env={"FEDCHAIN_PASSPHRASE": "s3cret"})
    assert result.exit_code == 0, result.output
    address = result.stdout.strip().splitlines()[0]
    assert address.startswith("0x") and len(address) == 42
    result = runner.invoke(app, ["account", "new", "--keystore", str(keys)], input="pw2\npw2\n")
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["account", "list", "--keystore", str(keys)])
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(address)
    assert Path(lines[0].split()[1]).parent == keys  # decryption: see test_chain's keystore test


@pytest.mark.devnet
def test_devnet_deploy_inspect_via_cli(app: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    from peer.devnet import free_port

    port = free_port()
    up = runner.invoke(app, ["devnet", "up", "--chain", "anvil", "--port", str(port), "--accounts", "3"])
    assert up.exit_code == 0, up.output
    try:
        url = f"http://127.0.0.1:{port}"
        assert f"RPC URL: {url}" in up.output and "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" in up.output
        status = runner.invoke(app, ["devnet", "status", "--json"])
        assert status.exit_code == 0 and json.loads(status.stdout)["rpc_url"] == url
        again = runner.invoke(app, ["devnet", "up", "--chain", "anvil", "--port", str(port)])
        assert again.exit_code == 1 and "already runs" in again.output

        params = tmp_path / "fed.toml"
        params.write_text(f'genesis_model_hash = "0x{"ab" * 32}"\ncommittee_size = 4\nmin_stake = "0.1 ether"\n')
        deployed = runner.invoke(app, ["deploy", "--params", str(params), "--fund", "2 ether"])  # the devnet's URL
        assert deployed.exit_code == 0, deployed.output
        address = deployed.stdout.strip()
        client = ChainClient.connect(url)
        fed = client.federation(address)
        assert fed.params().committee_size == 4 and fed.reward_pool() == 2 * 10**18
        fed.register(["/ip4/127.0.0.1/tcp/9"], sender=client.dev_accounts[1])

        shown = runner.invoke(app, ["inspect", "--contract", address, "--rpc", url, "--json"])
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.stdout)
        assert data["params"]["genesis_model_hash"] == "0x" + "ab" * 32 and data["phase"] == "not_started"
        assert data["peers"][0]["multiaddrs"] == ["/ip4/127.0.0.1/tcp/9"]
        tables = runner.invoke(app, ["inspect", "--contract", address])
        assert tables.exit_code == 0 and f"Federation {address}" in tables.stdout
        missing = runner.invoke(app, ["inspect", "--contract", client.dev_accounts[2].address])
        assert missing.exit_code == 1 and "no contract at" in missing.output
    finally:
        down = runner.invoke(app, ["devnet", "down"])
    assert down.exit_code == 0 and "stopped anvil" in down.output
    status = runner.invoke(app, ["devnet", "status"])
    assert status.exit_code == 1 and "no devnet running" in status.output


@pytest.mark.devnet
def test_deploy_with_a_keystore_signer(app: typer.Typer, runner: CliRunner, tmp_path: Path, anvil) -> None:  # noqa: ANN001
    """--keystore FILE signs the deployment (passphrase from the environment)."""
    from peer.accounts import new_keystore

    entry = new_keystore(tmp_path / "keys", "pw", kdf="pbkdf2", iterations=2)
    client = ChainClient.connect(anvil.rpc_url)
    client.transfer(entry.address, 10**18, sender=client.dev_accounts[0])
    result = runner.invoke(app, ["deploy", "--rpc", anvil.rpc_url, "--keystore", str(entry.path)],
                           env={"FEDCHAIN_PASSPHRASE": "pw"})
    assert result.exit_code == 0, result.output
    assert client.federation(result.stdout.strip()).operator() == entry.address
    bad = runner.invoke(app, ["deploy", "--rpc", anvil.rpc_url, "--keystore", str(entry.path)],
                        env={"FEDCHAIN_PASSPHRASE": "wrong"})
    assert bad.exit_code == 1 and "wrong passphrase" in bad.output
