"""Gas used by the Federation contract's transactions, against the design targets.

    python bench/gas.py                  # table, embedded EVM (Shanghai rules)
    python bench/gas.py --json           # {function: gas}
    python bench/gas.py --rpc URL        # the same on a devnet (needs >= 70 dev accounts:
                                         #   fedchain devnet up --chain anvil --accounts 70)

Measured: register, commitUpdate (plain, and the one that closes the commit phase), a vote,
the vote that finalises (with 4, 16 and 64 registered peers: it must not grow), failRound,
and a first claim with 8, 64, 256 and 1024 leaves in the rewards tree. Gas is deterministic
for a given fork, so the embedded chain gives the same figures as ganache or anvil.

Targets (Federation.sol's design): commitUpdate <= 50k, vote <= 55k, finalising vote <= 90k
whatever the number of peers, claim <= 80k at 1024 leaves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peer.chain import ChainClient, Federation, FederationParams  # noqa: E402
from peer.merkle import MerkleTree  # noqa: E402

TARGETS = {
    "commitUpdate": 50_000,
    "commitUpdate (closes phase)": 50_000,
    "voteAggregate": 55_000,
    "voteAggregate (finalises, 4 peers)": 90_000,
    "voteAggregate (finalises, 16 peers)": 90_000,
    "voteAggregate (finalises, 64 peers)": 90_000,
    "claim (1024 leaves)": 80_000,
}
MULTIADDR = "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"
PEER_COUNTS = (4, 16, 64)
CLAIM_LEAVES = (8, 64, 256, 1024)


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def params(**overrides: int) -> FederationParams:
    base = FederationParams(model_spec_hash=h("spec"), genesis_model_hash=h("genesis"), commit_window=600,
                            vote_window=600, committee_size=4, quorum_bps=5000, min_stake=10**16)
    return FederationParams(**{**base.__dict__, **overrides})


def federation(client: ChainClient, n_peers: int, gas: dict[str, int], **overrides: int) -> Federation:
    operator, *peers = client.dev_accounts
    fed = client.deploy(params(**overrides), sender=operator)
    fed.fund(10**20, sender=operator)
    for i, acct in enumerate(peers[:n_peers]):
        receipt = fed.register([MULTIADDR], sender=acct)
        if i == 1:  # the second: the first also pays for the peer list's length slot
            gas["register"] = receipt.gas_used
    fed.start(sender=operator)
    return fed


def commit_all(client: ChainClient, fed: Federation, r: int, gas: dict[str, int]) -> None:
    members = [next(a for a in client.dev_accounts if a.address == m) for m in fed.committee()]
    for i, acct in enumerate(members):
        receipt = fed.commit_update(r, h(f"update {r} {i}"), 1000, sender=acct)
        key = "commitUpdate (closes phase)" if i == len(members) - 1 else "commitUpdate"
        gas[key] = max(gas.get(key, 0), receipt.gas_used)


def finalise(client: ChainClient, fed: Federation, r: int, root: bytes, gas: dict[str, int], label: str) -> None:
    """Commit, then vote until the round finalises; record a plain vote and the final one."""
    commit_all(client, fed, r, gas)
    voters = [client.dev_accounts[1 + p.index] for p in fed.peers() if p.active]
    for acct in voters:
        receipt = fed.vote_aggregate(r, h(f"model {r}"), root, sender=acct)
        if any(e.name == "RoundFinalized" for e in receipt.events):
            gas[label] = receipt.gas_used
            return
        gas["voteAggregate"] = max(gas.get("voteAggregate", 0), receipt.gas_used)
    raise RuntimeError(f"round {r} did not finalise")


def measure(client: ChainClient) -> dict[str, int]:
    gas: dict[str, int] = {}
    for n in PEER_COUNTS:
        fed = federation(client, n, gas)
        finalise(client, fed, 1, h("root"), gas, f"voteAggregate (finalises, {n} peers)")

    # claims: one federation, a round per tree size, a fresh claimer each time
    fed = federation(client, 4, gas)
    rng = random.Random(0)
    claimers = client.dev_accounts[-len(CLAIM_LEAVES):]
    for r, (leaves, claimer) in enumerate(zip(CLAIM_LEAVES, claimers, strict=True), start=1):
        entries = [(claimer.address, 10**15)] + [("0x" + rng.randbytes(20).hex(), rng.randrange(1, 10**18))
                                                 for _ in range(leaves - 1)]
        tree = MerkleTree(entries)
        finalise(client, fed, r, tree.root, gas, "voteAggregate (finalises, 4 peers)")
        gas[f"claim ({leaves} leaves)"] = fed.claim(10**15, tree.proof(claimer.address), sender=claimer).gas_used

    r = fed.current_round()
    client.time_travel(1200)
    gas["failRound"] = fed.fail_round(r, sender=client.dev_accounts[0]).gas_used
    gas["fund"] = fed.fund(10**15, sender=client.dev_accounts[0]).gas_used
    return gas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print {function: gas}")
    parser.add_argument("--rpc", help="measure on this JSON-RPC devnet instead of the embedded EVM")
    args = parser.parse_args()
    needed = 1 + max(PEER_COUNTS) + len(CLAIM_LEAVES)
    client = ChainClient.connect(args.rpc, dev_account_count=needed) if args.rpc else ChainClient.embedded(accounts=needed)
    gas = measure(client)
    if args.json:
        print(json.dumps(gas, indent=1))
        return
    print(f"Federation gas ({'embedded EVM, shanghai' if not args.rpc else args.rpc})\n")
    print("| function | gas | target |")
    print("| --- | ---: | ---: |")
    for name, used in gas.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"<= {target:,} {'ok' if used <= target else 'OVER'}"
        print(f"| {name} | {used:,} | {verdict} |")


if __name__ == "__main__":
    main()
