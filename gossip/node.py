"""A standalone gossip node process, for multi-process tests and ``bench/gossip.py``.

Run as ``python -m gossip.node --data-dir D --eth-key HEX --size S --seed N``. It
speaks JSON lines, one object per line, so a parent can drive several of them:

1. prints ``{"event": "listening", "addrs": [...], "peer_id": ..., "address": ...}``;
2. reads ``{"peers": [multiaddr, ...], "allowed": [address, ...]}`` from stdin,
   connects to every peer and prints ``{"event": "ready"}`` once all of them are
   subscribed to the federation's topic;
3. reads ``go``: publishes one signed update of S random bytes (round 1), waits
   for one update from each peer, and prints ``{"event": "done", "t_done": unix
   time, "received": {sender: sha256 hex}, "counters": {...}}``; ``t_done`` is
   taken when the last update arrived, before the sha256 of what was received
   is computed for the caller (the network has already checked each payload
   against its announced hash); with ``--no-hash-report`` (benchmarks) the
   hashes are not computed and are reported as "";
4. keeps serving payloads until it reads ``stop`` (or stdin closes), then stops
   the network cleanly and prints ``{"event": "stopped"}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import trio

from gossip.network import Libp2pNetwork, NetworkConfig
from gossip.wire import ENCODING_FLOAT32, sign_update

__all__ = ["main"]

DEFAULT_CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _readline() -> str:
    line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    return line.strip()


async def _wait_for(cond: Any, timeout: float, what: str) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.02)


async def run(args: argparse.Namespace) -> None:
    from eth_account import Account

    cfg = NetworkConfig(data_dir=Path(args.data_dir), chain_id=args.chain_id,
                        contract=args.contract, listen_addrs=(args.listen,),
                        max_payload_bytes=max(args.size, 1) * 2,
                        fetch_concurrency=args.fetch_concurrency,
                        serve_concurrency=args.serve_concurrency)
    data = random.Random(args.seed).randbytes(args.size)
    account = Account.from_key(bytes.fromhex(args.eth_key))
    async with Libp2pNetwork(config=cfg).running() as net:
        _emit({"event": "listening", "addrs": net.listen_multiaddrs(),
               "peer_id": net.peer_id(), "address": account.address})
        setup = json.loads(await _readline())
        peers: list[str] = [p for p in setup["peers"] if net.peer_id() not in p]
        net.set_allowed_senders(set(setup["allowed"]))
        net.set_round_window(1, 1)
        for addr in peers:
            if addr.split("/p2p/")[-1] not in net.connected_peers():
                await net.connect(addr)
        await _wait_for(lambda: len(net.topic_peers()) >= len(peers) and bool(net.mesh_peers()),
                        args.timeout, "topic peers")
        _emit({"event": "ready"})
        if await _readline() != "go":
            return
        ann = sign_update(account.key, chain_id=args.chain_id, contract=args.contract, round=1,
                          payload_hash=hashlib.sha256(data).digest(), payload_size=len(data),
                          n_samples=1, encoding=ENCODING_FLOAT32)
        received: dict[str, bytes] = {}
        with trio.fail_after(args.timeout):
            await net.publish_update(ann, data)
            if peers:
                async for got, payload in net.updates():
                    received[got.sender] = payload
                    if len(received) == len(peers):
                        break
        t_done = time.time()
        _emit({"event": "done", "t_done": t_done, "counters": net.counters(),
               "received": {s: "" if args.no_hash_report else hashlib.sha256(p).hexdigest()
                            for s, p in received.items()}})
        while (await _readline()) not in ("stop", ""):
            pass
    _emit({"event": "stopped"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gossip.node", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--eth-key", required=True, help="hex private key (no 0x)")
    parser.add_argument("--size", type=int, default=1 << 20, help="payload bytes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random payload")
    parser.add_argument("--chain-id", type=int, default=1337)
    parser.add_argument("--contract", default=DEFAULT_CONTRACT)
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--fetch-concurrency", type=int, default=4)
    parser.add_argument("--serve-concurrency", type=int, default=8)
    parser.add_argument("--no-hash-report", action="store_true",
                        help="report received senders without the sha256 of their payload")
    trio.run(run, parser.parse_args(argv))


if __name__ == "__main__":
    main()
