"""Benchmark: N peers (OS processes) exchange one update of S bytes each, all-to-all.

Three transports in the same run, so the ratios hold on a noisy shared machine:

* **gossip** - fedchain's network (``python -m gossip.node``): signed announcement on
  gossipsub, payload pulled over the ``/fedchain/payload/1`` libp2p stream;
* **baseline** - the same bytes pushed through plain gossipsub publish (py-libp2p
  0.8.1 on fedchain's host, so with :mod:`gossip.tuning`), cut into 512 KiB
  messages because larger ones are dropped silently;
* **raw TCP** - each peer writes its payload to every other peer over plain TCP on
  loopback (no encryption, no muxer): the floor.

Time = from the moment the parent sends ``go`` to all children until the last peer
holds every other peer's payload. ``cpu_seconds`` = CPU time (user + system) all N
processes used in that interval, read from /proc: unlike the time, it hardly
depends on how busy the machine is (the N children share one scheduler autogroup,
so under load they get a share of the CPU, not all of it).
``bytes_received_per_peer_over_needed`` is the worst peer's payload bytes read
from providers, complete transfers or not (counter ``bytes_received``), divided
by (N-1)*S. With ``--repeat K`` gossip and raw TCP run K times, alternating, and
medians are reported (for received/needed, the worst run); ``*_over_raw_tcp`` are
medians of the per-run ratios.

    .venv/bin/python bench/gossip.py --peers 10 --size-mb 4 --json
    .venv/bin/python bench/gossip.py --peers 10 --size-mb 4 --repeat 3 --no-baseline --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip.cluster import Cluster, ClusterError  # noqa: E402

CHUNK = 512 * 1024
BASELINE_TOPIC = "/fedchain-bench/baseline"


def _key(i: int) -> str:
    return hashlib.sha256(f"fedchain-bench-key-{i}".encode()).hexdigest()


# ------------------------------------------------------------------ children


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _readline() -> str:
    import trio

    return (await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)).strip()


async def _child_baseline(index: int, n: int, size: int, data_dir: str) -> None:
    """Plain gossipsub: publish the payload in CHUNK-sized messages."""
    import multiaddr
    import trio
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.tools.anyio_service import background_trio_service

    from gossip.host import build_host, load_or_create_identity, parse_peer_multiaddr
    from gossip.topics import GossipParams, build_gossipsub

    data = random.Random(index).randbytes(size)
    host = build_host(load_or_create_identity(Path(data_dir)), ["/ip4/127.0.0.1/tcp/0"])
    router = build_gossipsub(GossipParams())
    pubsub = Pubsub(host, router, max_inbound_rpc_size=4 * CHUNK)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            sub = await pubsub.subscribe(BASELINE_TOPIC)
            _emit({"event": "listening", "addrs": [str(a) for a in host.get_addrs()]})
            setup = json.loads(await _readline())
            for addr in setup["peers"]:
                info = parse_peer_multiaddr(addr)
                if info.peer_id != host.get_id():
                    await host.connect(info)
            with trio.fail_after(60):
                while len(pubsub.peer_topics.get(BASELINE_TOPIC, ())) < n - 1 or \
                        not router.mesh.get(BASELINE_TOPIC):
                    await trio.sleep(0.05)
            _emit({"event": "ready"})
            await _readline()  # go
            n_chunks = -(-size // CHUNK)
            need = (n - 1) * n_chunks
            got: set[tuple[int, int]] = set()
            received = 0

            async def receive() -> None:
                nonlocal received
                async for msg in sub:
                    sender, idx = int.from_bytes(msg.data[:4], "big"), int.from_bytes(msg.data[4:8], "big")
                    if sender != index:
                        got.add((sender, idx))
                        received += len(msg.data) - 8
                    if len(got) == need:
                        return

            ok = True
            with trio.move_on_after(float(setup["timeout"])) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(receive)
                    for c in range(n_chunks):
                        await pubsub.publish(BASELINE_TOPIC, index.to_bytes(4, "big") + c.to_bytes(4, "big")
                                             + data[c * CHUNK:(c + 1) * CHUNK])
            if scope.cancelled_caught:
                ok = False
            _emit({"event": "done", "t_done": time.time(), "complete": ok,
                   "chunks": len(got), "need": need})
            await _readline()  # stop
    _emit({"event": "stopped"})


async def _child_tcp(index: int, n: int, size: int) -> None:
    """Raw TCP floor: connect to every peer and write the payload."""
    import trio

    data = random.Random(index).randbytes(size)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    done = trio.Event()
    got: dict[int, int] = {}

    async def handle(stream: trio.SocketStream) -> None:
        header = b""
        while len(header) < 4:
            header += await stream.receive_some(4 - len(header))
        sender, count = int.from_bytes(header, "big"), 0
        while count < size:
            chunk = await stream.receive_some(1 << 20)
            if not chunk:
                break
            count += len(chunk)
        got[sender] = count
        if len(got) == n - 1 and all(v == size for v in got.values()):
            done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        _emit({"event": "listening", "addrs": [f"127.0.0.1:{port}"]})
        setup = json.loads(await _readline())
        _emit({"event": "ready"})
        await _readline()  # go

        async def send(addr: str) -> None:
            host, p = addr.split(":")
            stream = await trio.open_tcp_stream(host, int(p))
            await stream.send_all(index.to_bytes(4, "big") + data)
            await stream.aclose()

        async with trio.open_nursery() as senders:
            for addr in setup["peers"]:
                if addr != f"127.0.0.1:{port}":
                    senders.start_soon(send, addr)
        with trio.move_on_after(float(setup["timeout"])):
            await done.wait()
        _emit({"event": "done", "t_done": time.time(), "complete": done.is_set()})
        await _readline()  # stop
        nursery.cancel_scope.cancel()
    _emit({"event": "stopped"})


# ------------------------------------------------------------------ parent


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loadavg() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def _run_cluster(cmds: list[list[str]], setup: dict[str, Any],
                 timeout: float) -> tuple[list[dict[str, Any]], float] | None:
    """Start children, exchange; their 'done' objects and the CPU seconds all of them
    used from 'go' until the last was done (None if it timed out)."""
    with Cluster(cmds) as cluster:
        listening = cluster.expect_all("listening", 120)
        cluster.send_all(json.dumps({**setup, "peers": [x["addrs"][0] for x in listening],
                                     "timeout": timeout}))
        cluster.expect_all("ready", 120)
        cpu0 = sum(_cpu_seconds(p.pid) for p in cluster.procs)
        t0 = time.time()
        cluster.send_all("go")
        try:
            done = cluster.expect_all("done", timeout + 30)
        except ClusterError as exc:
            print(f"  ({exc})".splitlines()[0], file=sys.stderr)
            return None
        cpu = sum(_cpu_seconds(p.pid) for p in cluster.procs) - cpu0
        cluster.send_all("stop")
        for d in done:
            d["seconds"] = d["t_done"] - t0
        return done, cpu


def _gossip_once(peers: int, size: int, timeout: float, tmp: Path, *, fetch_concurrency: int,
                 serve_concurrency: int) -> dict[str, Any]:
    from eth_account import Account

    allowed = [Account.from_key(bytes.fromhex(_key(i))).address for i in range(peers)]
    cmds = [[sys.executable, "-m", "gossip.node", "--data-dir", str(tmp / f"g{i}"),
             "--eth-key", _key(i), "--size", str(size), "--seed", str(i),
             "--timeout", str(timeout), "--fetch-concurrency", str(fetch_concurrency),
             "--serve-concurrency", str(serve_concurrency), "--no-hash-report"]
            for i in range(peers)]
    run = _run_cluster(cmds, {"allowed": allowed}, timeout)
    if run is None:
        return {"seconds": None, "cpu_seconds": None, "received_over_needed": None}
    done, cpu = run
    needed = (peers - 1) * size
    return {"seconds": round(max(d["seconds"] for d in done), 3), "cpu_seconds": round(cpu, 2),
            # worst peer: payload bytes read from providers (complete or not) / bytes it needed
            "received_over_needed": round(max(d["counters"]["bytes_received"] for d in done)
                                          / needed, 4)}


def _tcp_once(peers: int, size: int, timeout: float) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    run = _run_cluster([[sys.executable, me, "--child", "tcp", "--index", str(i), "--peers",
                         str(peers), "--size", str(size)] for i in range(peers)], {}, timeout)
    if run is None or not all(d["complete"] for d in run[0]):
        return {"seconds": None, "cpu_seconds": None}
    done, cpu = run
    return {"seconds": round(max(d["seconds"] for d in done), 3), "cpu_seconds": round(cpu, 2)}


def _baseline_once(peers: int, size: int, timeout: float, tmp: Path) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    run = _run_cluster([[sys.executable, me, "--child", "baseline", "--index", str(i),
                         "--data-dir", str(tmp / f"b{i}"), "--peers", str(peers), "--size",
                         str(size)] for i in range(peers)], {}, timeout)
    if run is None:
        return {"seconds": None}
    done, _ = run
    if not all(d["complete"] for d in done):
        return {"seconds": None, "chunks_received": [f"{d['chunks']}/{d['need']}" for d in done]}
    return {"seconds": round(max(d["seconds"] for d in done), 3)}


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return None if len(known) < len(values) or not known else known[len(known) // 2]


def bench(peers: int, size: int, timeout: float, *, fetch_concurrency: int = 4,
          serve_concurrency: int = 8, repeat: int = 1, only_gossip: bool = False,
          baseline: bool = True) -> dict[str, Any]:
    """Run the transports ``repeat`` times, gossip and raw TCP alternating, and
    report medians (the received/needed ratio: the worst run); ratios to raw TCP
    are the medians of the per-run ratios."""
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        load_before = _loadavg()
        runs: list[dict[str, Any]] = []
        for k in range(repeat):
            run: dict[str, Any] = {"gossip": _gossip_once(
                peers, size, timeout, tmp / f"r{k}", fetch_concurrency=fetch_concurrency,
                serve_concurrency=serve_concurrency)}
            if not only_gossip:
                run["tcp"] = _tcp_once(peers, size, timeout)
            runs.append(run)
        base = None
        if baseline and not only_gossip:
            base = _baseline_once(peers, size, timeout, tmp / "base")
    gossip = [r["gossip"] for r in runs]
    ratios = [g["received_over_needed"] for g in gossip]
    result: dict[str, Any] = {
        "peers": peers, "size_bytes": size, "repeat": repeat,
        "fetch_concurrency": fetch_concurrency, "serve_concurrency": serve_concurrency,
        "seconds_all_have_all": _median([g["seconds"] for g in gossip]),
        "cpu_seconds": _median([g["cpu_seconds"] for g in gossip]),
        "bytes_received_per_peer_over_needed": None if None in ratios else max(ratios),
    }
    if repeat > 1:
        result["seconds_each_run"] = [g["seconds"] for g in gossip]
        result["cpu_seconds_each_run"] = [g["cpu_seconds"] for g in gossip]
    if not only_gossip:
        tcp = [r["tcp"] for r in runs]
        result["raw_tcp_seconds"] = _median([t["seconds"] for t in tcp])
        result["raw_tcp_cpu_seconds"] = _median([t["cpu_seconds"] for t in tcp])
        result["seconds_over_raw_tcp"] = _ratio(gossip, tcp, "seconds")
        result["cpu_over_raw_tcp"] = _ratio(gossip, tcp, "cpu_seconds")
    if base is not None:
        result["baseline_gossipsub_seconds"] = base["seconds"]
        if "chunks_received" in base:
            result["baseline_gossipsub_chunks_received"] = base["chunks_received"]
    result["loadavg_1min_before_after"] = [load_before, _loadavg()]
    return result


def _ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> float | None:
    ratios = [None if x[key] is None or not y[key] else x[key] / y[key]
              for x, y in zip(a, b, strict=True)]
    median = _median(ratios)
    return None if median is None else round(median, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, default=10)
    parser.add_argument("--size-mb", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=0, help="bytes (overrides --size-mb)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per transport, seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--fetch-concurrency", type=int, default=4)
    parser.add_argument("--serve-concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of gossip and raw TCP, alternating; medians are reported")
    parser.add_argument("--only-gossip", action="store_true", help="skip baseline and raw TCP")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip plain gossipsub (slow: up to --timeout)")
    parser.add_argument("--child", choices=["baseline", "tcp"], help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size or int(args.size_mb * (1 << 20))
    if args.child:
        import trio

        if args.child == "baseline":
            trio.run(_child_baseline, args.index, args.peers, size, args.data_dir)
        else:
            trio.run(_child_tcp, args.index, args.peers, size)
        return
    result = bench(args.peers, size, args.timeout, fetch_concurrency=args.fetch_concurrency,
                   serve_concurrency=args.serve_concurrency, repeat=args.repeat,
                   only_gossip=args.only_gossip, baseline=not args.no_baseline)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:40s} {value}")


if __name__ == "__main__":
    main()
