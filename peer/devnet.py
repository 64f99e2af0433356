"""Local development chains: start, stop and inspect ganache or anvil on 127.0.0.1.

Both chains are started with the development mnemonic (:data:`peer.accounts.DEV_MNEMONIC`),
so their funded accounts are :func:`peer.accounts.dev_accounts`, with the Shanghai rules the
contract is compiled for, instant mining, and their state on disk in a *state directory*
(ganache: a LevelDB in ``<dir>/ganache``; anvil: ``<dir>/anvil-state.json``, written when it
stops), so ``down`` then ``up`` loses nothing.

The state directory also holds ``devnet.json`` (what runs: chain, pid, port, URL) and
``devnet.log`` (the chain's output), so that ``fedchain devnet down`` and ``status`` work from
another process than the one that ran ``up``. The chain runs in its own process group
(session): stopping it signals the whole group, so wrapper processes (node) and their
children go together.

Binaries come from ``devnet/node_modules`` (``make setup``): ganache's CLI, and anvil's
native binary from ``@foundry-rs/anvil-linux-amd64`` (its ``.bin`` wrapper is a node process
that spawns it; calling the binary directly avoids the extra process).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from peer.accounts import DEV_MNEMONIC
from peer.errors import FedchainError

__all__ = [
    "CHAINS",
    "DEFAULT_STATE_DIR",
    "Devnet",
    "DevnetError",
    "chain_binary",
    "free_port",
    "start",
    "status",
    "stop",
    "wait_ready",
]

Chain = Literal["ganache", "anvil"]
CHAINS: tuple[Chain, ...] = ("ganache", "anvil")
CHAIN_IDS = {"ganache": 1337, "anvil": 31337}
HARDFORK = "shanghai"  # the contract's evmVersion: ganache 7.9 runs nothing later
DEFAULT_STATE_DIR = Path(".devnet")
NODE_MODULES = Path(__file__).resolve().parent.parent / "devnet" / "node_modules"
_STATE_FILE = "devnet.json"
_LOG_FILE = "devnet.log"


class DevnetError(FedchainError):
    """A devnet cannot be started, reached or stopped; the message says why (and shows the
    end of the chain's log when it died)."""


@dataclass(frozen=True)
class Devnet:
    """A running (or recorded) local chain. Also a context manager that stops it on exit::

        with Devnet.start("anvil", port=0, state_dir=tmp) as dev:
            client = ChainClient.connect(dev.rpc_url)
    """

    chain: Chain
    pid: int
    port: int
    rpc_url: str
    chain_id: int
    accounts: int
    state_dir: str
    log_file: str
    started_at: float

    @classmethod
    def start(cls, chain: Chain = "ganache", **kwargs: Any) -> Devnet:
        """:func:`start` (``port=0`` picks a free port)."""
        return start(chain, **kwargs)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop this chain (see :func:`stop`)."""
        _stop_pid(self.pid, timeout=timeout, chain=self.chain)
        _state_path(Path(self.state_dir)).unlink(missing_ok=True)

    def __enter__(self) -> Devnet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def chain_binary(chain: Chain) -> Path:
    """Path of the executable that runs ``chain``; DevnetError naming the fix if absent."""
    if chain == "ganache":
        path = NODE_MODULES / ".bin" / "ganache"
    elif chain == "anvil":
        path = NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    else:
        raise DevnetError(f"unknown chain {chain!r}: choose one of {', '.join(CHAINS)}")
    if not path.exists():
        raise DevnetError(f"{chain} is not installed at {path}: run `make setup` "
                          f"(npm ci in devnet/)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(chain: Chain, *, port: int, accounts: int, state_dir: Path, mnemonic: str) -> list[str]:
    binary = str(chain_binary(chain))
    if chain == "ganache":
        return [
            binary, "--chain.chainId", str(CHAIN_IDS[chain]), "--chain.hardfork", HARDFORK,
            "--wallet.mnemonic", mnemonic, "--wallet.totalAccounts", str(accounts),
            "--database.dbPath", str(state_dir / "ganache"),
            "--server.host", "127.0.0.1", "--server.port", str(port),
        ]
    return [
        binary, "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(CHAIN_IDS[chain]),
        "--hardfork", HARDFORK, "--mnemonic", mnemonic, "--accounts", str(accounts),
        "--state", str(state_dir / "anvil-state.json"),
    ]


def start(
    chain: Chain = "ganache",
    *,
    port: int = 8545,
    accounts: int = 10,
    state_dir: Path = DEFAULT_STATE_DIR,
    mnemonic: str = DEV_MNEMONIC,
    timeout: float = 30.0,
) -> Devnet:
    """Start ``chain`` on 127.0.0.1:``port`` (0: a free port) and return once it answers
    ``eth_chainId``.

    The process outlives the caller (own session) until :func:`stop`. One devnet per state
    directory: DevnetError if one already runs there, or if the port is taken.
    """
    if chain not in CHAINS:
        raise DevnetError(f"unknown chain {chain!r}: choose one of {', '.join(CHAINS)}")
    if port == 0:
        port = free_port()
    if accounts < 1:
        raise DevnetError(f"--accounts must be >= 1, got {accounts}")
    state_dir = Path(state_dir).resolve()
    running = status(state_dir)
    if running is not None:
        raise DevnetError(f"a {running.chain} devnet already runs from {state_dir} at {running.rpc_url} "
                          f"(pid {running.pid}): `fedchain devnet down` first")
    if not _port_free(port):
        raise DevnetError(f"port {port} on 127.0.0.1 is in use: choose another with --port")
    state_dir.mkdir(parents=True, exist_ok=True)
    command = _command(chain, port=port, accounts=accounts, state_dir=state_dir, mnemonic=mnemonic)
    log_path = state_dir / _LOG_FILE
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    devnet = Devnet(chain=chain, pid=process.pid, port=port, rpc_url=url, chain_id=CHAIN_IDS[chain],
                    accounts=accounts, state_dir=str(state_dir), log_file=str(log_path),
                    started_at=time.time())
    try:
        wait_ready(url, timeout=timeout, process=process, log_file=log_path)
    except BaseException:
        _stop_pid(process.pid, timeout=5.0, chain=chain)
        process.wait(timeout=5.0)
        raise
    _state_path(state_dir).write_text(json.dumps(asdict(devnet), indent=1) + "\n")
    return devnet


def wait_ready(
    url: str, *, timeout: float = 30.0, process: subprocess.Popen | None = None,
    log_file: Path | None = None,
) -> int:
    """Poll ``eth_chainId`` at ``url`` until it answers (returns the chain id) or ``timeout``
    seconds pass; if ``process`` exits first, DevnetError with the end of its log."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if process is not None and process.poll() is not None:
            raise DevnetError(f"the chain exited with code {process.returncode} before answering "
                              f"at {url}:\n{_tail(log_file)}")
        chain_id = rpc_chain_id(url, timeout=1.0)
        if chain_id is not None:
            return chain_id
        if time.monotonic() > deadline:
            raise DevnetError(f"no answer to eth_chainId at {url} after {timeout:.0f} s:\n{_tail(log_file)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def rpc_chain_id(url: str, *, timeout: float = 1.0) -> int | None:
    """``eth_chainId`` at ``url``, or None if nothing answers there (plain urllib: no web3)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(json.loads(response.read())["result"], 16)
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None


def status(state_dir: Path = DEFAULT_STATE_DIR) -> Devnet | None:
    """The devnet recorded in ``state_dir`` if its process still runs, else None (a stale
    record is removed)."""
    path = _state_path(Path(state_dir).resolve())
    try:
        devnet = Devnet(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError) as exc:
        raise DevnetError(f"{path} is not a devnet record ({exc}): delete it") from exc
    if not _is_chain_process(devnet.pid, devnet.chain):
        path.unlink(missing_ok=True)
        return None
    return devnet


def stop(state_dir: Path = DEFAULT_STATE_DIR, *, timeout: float = 10.0) -> Devnet | None:
    """Stop the devnet recorded in ``state_dir`` (returns it), or None if none runs. The
    chain gets SIGTERM (anvil writes its state then), SIGKILL after ``timeout``."""
    devnet = status(state_dir)
    if devnet is None:
        return None
    devnet.stop(timeout=timeout)
    return devnet


def _stop_pid(pid: int, *, timeout: float, chain: str) -> None:
    if not _is_chain_process(pid, chain):
        return
    try:
        os.killpg(pid, signal.SIGTERM)  # pid == pgid: started with start_new_session
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + timeout
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie; reaps it if it is our child."""
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    except ChildProcessError:
        pass  # not our child (another CLI invocation started it)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _is_chain_process(pid: int, chain: str) -> bool:
    """``pid`` is alive and runs ``chain`` (guards against a recycled pid)."""
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, PermissionError):
        return False
    return chain.encode() in cmdline


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT does not count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _state_path(state_dir: Path) -> Path:
    return state_dir / _STATE_FILE


def _tail(log_file: Path | None, lines: int = 15) -> str:
    if log_file is None or not log_file.exists():
        return "(no log)"
    return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
