"""Eight real hosts in one process exchange updates all-to-all; each receives one copy."""

from __future__ import annotations

import contextlib

import pytest
import trio

from tests.gossip_helpers import address, connect_all, payload, signed, start_networks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N = 8
SIZE = 256 * 1024


async def test_eight_hosts_all_to_all(tmp_path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        nets = await start_networks(stack, tmp_path, N)
        for net in nets:
            net.set_allowed_senders({address(i) for i in range(N)})
            net.set_round_window(1, 1)
        await connect_all(nets)
        payloads = [payload(100 + i, SIZE) for i in range(N)]
        received: list[dict[str, bytes]] = [{} for _ in range(N)]

        async def collect(i: int) -> None:
            async for ann, data in nets[i].updates():
                received[i][ann.sender] = data
                if len(received[i]) == N - 1:
                    return

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(N):
                    nursery.start_soon(collect, i)
                for i, net in enumerate(nets):
                    await net.publish_update(signed(i, payloads[i]), payloads[i])
        for i, net in enumerate(nets):
            assert received[i] == {address(j): payloads[j] for j in range(N) if j != i}
            c = net.counters()
            # exactly one copy of each needed payload crossed the wire to this peer
            assert c["bytes_fetched"] == (N - 1) * SIZE
            assert c["fetch_ok"] == N - 1 and c["fetch_failed"] == 0
            assert sum(v for k, v in c.items() if k.startswith("drop_") and k != "drop_duplicate") == 0
