"""Four OS processes (``python -m gossip.node``) exchange updates all-to-all."""

from __future__ import annotations

import hashlib
import json
import random
import sys

import pytest

from gossip.cluster import Cluster
from tests.gossip_helpers import address, eth_key

N = 4
SIZE = 1 << 20


@pytest.mark.slow
def test_four_processes_exchange_updates(tmp_path) -> None:
    cmds = [[sys.executable, "-m", "gossip.node", "--data-dir", str(tmp_path / f"p{i}"),
             "--eth-key", eth_key(i).hex(), "--size", str(SIZE), "--seed", str(i),
             "--timeout", "60"] for i in range(N)]
    with Cluster(cmds) as cluster:
        listening = cluster.expect_all("listening", 60)
        assert [x["address"] for x in listening] == [address(i) for i in range(N)]
        setup = json.dumps({"peers": [x["addrs"][0] for x in listening],
                            "allowed": [address(i) for i in range(N)]})
        cluster.send_all(setup)
        cluster.expect_all("ready", 60)
        cluster.send_all("go")
        done = cluster.expect_all("done", 60)
        cluster.send_all("stop")
        cluster.expect_all("stopped", 30)
        assert cluster.wait(30) == [0] * N
    want = {address(i): hashlib.sha256(random.Random(i).randbytes(SIZE)).hexdigest()
            for i in range(N)}
    for i, d in enumerate(done):
        assert d["received"] == {a: h for a, h in want.items() if a != address(i)}
        assert d["counters"]["bytes_fetched"] == (N - 1) * SIZE  # one copy of each
        assert d["counters"]["fetch_failed"] == 0
