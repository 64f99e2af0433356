"""Real ganache and anvil processes: the same smoke test of the client and the contract on
both, state kept on disk across a restart, and the start/stop/status bookkeeping."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from peer import devnet
from peer.chain import ChainClient, ChainError, ContractRevert, FederationParams, Phase
from peer.devnet import Devnet, DevnetError
from peer.merkle import MerkleTree

pytestmark = pytest.mark.devnet

PARAMS = FederationParams(committee_size=2, quorum_bps=10_000, commit_window=600, vote_window=600,
                          min_stake=10**16, unbonding_delay=60)


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture(params=["ganache", "anvil"])
def chain(request: pytest.FixtureRequest) -> Devnet:
    return request.getfixturevalue(request.param)


def test_smoke_round_on_real_chain(chain: Devnet) -> None:
    """deploy, register, start, commit, vote to finalisation, claim, reverts, events, time."""
    client = ChainClient.connect(chain.rpc_url)
    assert client.chain_id == chain.chain_id and client.is_devnet
    operator, alice, bob = client.dev_accounts[:3]
    fed = client.deploy(PARAMS, sender=operator)
    assert fed.params() == PARAMS and fed.operator() == operator.address
    fed.fund(10**17, sender=operator)
    for i, acct in enumerate((alice, bob)):
        fed.register([f"/ip4/127.0.0.1/tcp/{4100 + i}"], sender=acct)
    with pytest.raises(ContractRevert) as excinfo:
        fed.register([], sender=alice)
    assert excinfo.value.error_name == "AlreadyRegistered" and excinfo.value.args_dict == {"peer": alice.address}
    fed.start(sender=operator)
    assert set(fed.committee()) == {alice.address, bob.address}
    gas = {}
    for acct in (alice, bob):
        gas["commitUpdate"] = fed.commit_update(1, h(acct.address), 10, sender=acct).gas_used
    assert fed.round_state().phase is Phase.VOTE
    tree = MerkleTree([(alice.address, 10**15), (bob.address, 2 * 10**15)])
    fed.vote_aggregate(1, h("model"), tree.root, sender=alice)
    final = fed.vote_aggregate(1, h("model"), tree.root, sender=bob)
    assert [e.name for e in final.events] == ["VoteCast", "RoundFinalized", "RoundOpened"]
    assert fed.finalized_model(1) == h("model") and fed.current_round() == 2
    claim = fed.claim(10**15, tree.proof(alice.address), sender=alice)
    assert claim.event("Claimed").args["amount"] == 10**15
    with pytest.raises(ContractRevert, match=r"NothingToClaim\(account="):
        fed.claim(10**15, tree.proof(alice.address), sender=alice)
    assert [c.peer for c in fed.commitments(1)] == sorted([alice.address, bob.address], key=lambda a: int(a, 16))
    assert [v.votes for v in fed.votes(1)] == [1, 2]
    assert 30_000 < gas["commitUpdate"] < 60_000 and 50_000 < final.gas_used < 120_000
    # time moves on request: round 2 expires without votes, anyone fails it
    before = client.timestamp()
    client.time_travel(PARAMS.commit_window + PARAMS.vote_window)
    assert client.timestamp() >= before + PARAMS.commit_window + PARAMS.vote_window
    assert fed.round_state().phase is Phase.EXPIRED
    assert fed.fail_round(2, sender=operator).event("RoundFailed").args == {"round": 2}


def test_rpc_that_goes_down_mid_session(tmp_path: Path) -> None:
    dev = Devnet.start("anvil", port=0, accounts=2, state_dir=tmp_path)
    client = ChainClient.connect(dev.rpc_url)
    assert client.block_number() >= 0
    dev.stop()
    with pytest.raises(ChainError, match=f"cannot reach RPC at {dev.rpc_url}: connection refused"):
        client.block_number()
    with pytest.raises(ChainError, match="cannot reach RPC"):
        client.transfer(client.dev_accounts[1].address, 1)


@pytest.mark.parametrize("kind", ["anvil", pytest.param("ganache", marks=pytest.mark.slow)])
def test_state_survives_restart(kind: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Devnet.start(kind, port=0, accounts=3, state_dir=state) as dev:  # type: ignore[arg-type]
        client = ChainClient.connect(dev.rpc_url)
        fed = client.deploy(PARAMS, sender=client.dev_accounts[0])
        fed.register(["/ip4/127.0.0.1/tcp/7"], sender=client.dev_accounts[1])
        height = client.block_number()
    assert devnet.status(state) is None
    with Devnet.start(kind, port=0, accounts=3, state_dir=state) as dev:  # type: ignore[arg-type]
        client = ChainClient.connect(dev.rpc_url)
        assert client.block_number() >= height
        again = client.federation(fed.address)
        assert again.peer_info(client.dev_accounts[1].address).multiaddrs == ("/ip4/127.0.0.1/tcp/7",)
        # nonces continue where they were
        again.register([], sender=client.dev_accounts[2])
        assert again.peer_count() == 2


@pytest.mark.slow
def test_status_and_stop_work_from_another_process(tmp_path: Path) -> None:
    """`up` in one process, `status`/`down` in others: the record in the state directory."""
    code = ("import sys; from pathlib import Path; from peer import devnet; "
            "d = devnet.start('anvil', port=0, accounts=1, state_dir=Path(sys.argv[1])); print(d.pid)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    pid = int(out.stdout.strip())
    running = devnet.status(tmp_path)
    assert running is not None and running.pid == pid and running.chain == "anvil"
    assert devnet.rpc_chain_id(running.rpc_url) == 31337
    with pytest.raises(DevnetError, match="already runs"):
        devnet.start("anvil", port=0, state_dir=tmp_path)
    stopped = devnet.stop(tmp_path)
    assert stopped is not None and stopped.pid == pid
    assert devnet.status(tmp_path) is None and devnet.rpc_chain_id(running.rpc_url) is None
    assert not running_or_sleeping(pid)  # gone (or a zombie waiting for init to reap it)
    assert devnet.stop(tmp_path) is None


def running_or_sleeping(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_stale_record_is_dropped(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    record = Devnet(chain="anvil", pid=sleeper.pid, port=1, rpc_url="http://127.0.0.1:1", chain_id=31337,
                    accounts=1, state_dir=str(tmp_path), log_file=str(tmp_path / "devnet.log"), started_at=0.0)
    (tmp_path / "devnet.json").write_text(__import__("json").dumps(record.__dict__))
    try:
        # a live pid that is not a chain (a recycled pid) is not ours to stop
        assert devnet.status(tmp_path) is None and not (tmp_path / "devnet.json").exists()
        assert sleeper.poll() is None
    finally:
        os.killpg(sleeper.pid, signal.SIGKILL)
        sleeper.wait()


def test_start_errors(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DevnetError, match=f"port {port} on 127.0.0.1 is in use"):
            devnet.start("anvil", port=port, state_dir=tmp_path)
    with pytest.raises(DevnetError, match="unknown chain 'geth'"):
        devnet.start("geth", port=0, state_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DevnetError, match="no answer to eth_chainId"):
        devnet.wait_ready(f"http://127.0.0.1:{devnet.free_port()}", timeout=0.3)
    # a chain that dies at once: its log is shown
    with pytest.raises(DevnetError, match="exited with code"):
        devnet.start("anvil", port=0, state_dir=tmp_path, mnemonic="not a valid mnemonic")
    assert devnet.status(tmp_path) is None
