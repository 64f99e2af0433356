"""Shared fixtures: chains.

* ``embedded_chain``: a fresh in-process chain per test (eth-tester + py-evm, ~50 ms) with
  10 funded development accounts.
* ``ganache`` / ``anvil``: the real processes, started once per session on a free loopback
  port with their state in a temporary directory, stopped at the end (process group).
  Tests that use them are marked ``@pytest.mark.devnet``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.chain import ChainClient
from peer.devnet import Devnet


@pytest.fixture
def embedded_chain() -> ChainClient:
    """A fresh embedded chain; ``embedded_chain.dev_accounts`` holds 10 funded accounts."""
    return ChainClient.embedded(accounts=10)


def _devnet(chain: str, state_dir: Path) -> Iterator[Devnet]:
    with Devnet.start(chain, port=0, accounts=10, state_dir=state_dir, timeout=60.0) as dev:  # type: ignore[arg-type]
        yield dev


@pytest.fixture(scope="session")
def ganache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """A ganache process on 127.0.0.1 (chain id 1337, development mnemonic)."""
    yield from _devnet("ganache", tmp_path_factory.mktemp("ganache"))


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """An anvil process on 127.0.0.1 (chain id 31337, development mnemonic)."""
    yield from _devnet("anvil", tmp_path_factory.mktemp("anvil"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train on one intra-op thread, as the CLI and peers do (see peer.train), and put
    torch's setting back afterwards: two OpenMP threads on a busy 2-core machine spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
