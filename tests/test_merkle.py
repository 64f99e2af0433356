"""The Python rewards tree: its own invariants, and against the contract's verification
(``claim`` as a static call and as a real transaction on the embedded EVM)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from peer.chain import ChainClient, ContractRevert, FederationParams
from peer.merkle import MerkleError, MerkleTree, hash_pair, leaf_hash, make_tree


def random_entries(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(to_checksum_address(rng.randbytes(20)), rng.randrange(1, 10**21)) for _ in range(n)]


def test_leaf_is_double_keccak_of_abi_encoding() -> None:
    account, amount = "0x" + "ab" * 20, 123456789
    expected = keccak(keccak(abi_encode(["address", "uint256"], [account, amount])))
    assert leaf_hash(account, amount) == expected
    assert hash_pair(b"\x02" * 32, b"\x01" * 32) == keccak(b"\x01" * 32 + b"\x02" * 32)
    assert hash_pair(b"\x01" * 32, b"\x02" * 32) == hash_pair(b"\x02" * 32, b"\x01" * 32)


def test_single_entry_root_is_its_leaf() -> None:
    tree = MerkleTree([("0x" + "11" * 20, 5)])
    assert tree.root == leaf_hash("0x" + "11" * 20, 5)
    assert tree.proof("0x" + "11" * 20) == []
    assert MerkleTree.verify(tree.root, "0x" + "11" * 20, 5, [])


def test_two_entries_root_is_their_sorted_pair() -> None:
    a, b = ("0x" + "11" * 20, 5), ("0x" + "22" * 20, 7)
    tree = MerkleTree([a, b])
    assert tree.root == hash_pair(leaf_hash(*a), leaf_hash(*b))
    assert tree.proof(a[0]) == [leaf_hash(*b)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100])
def test_every_proof_verifies_and_order_does_not_matter(n: int) -> None:
    entries = random_entries(n, seed=n)
    tree = MerkleTree(entries)
    shuffled = entries[:]
    random.Random(1).shuffle(shuffled)
    assert MerkleTree(shuffled).root == tree.root
    for account, amount in entries:
        proof = tree.proof(account)
        assert len(proof) <= (n - 1).bit_length()
        assert MerkleTree.verify(tree.root, account, amount, proof)
        assert not MerkleTree.verify(tree.root, account, amount + 1, proof)
    assert sorted(tree.entries()) == sorted(entries)
    assert [leaf_hash(a, v) for a, v in tree.entries()] == sorted(leaf_hash(a, v) for a, v in entries)


def test_known_answers_of_openzeppelin_standard_merkle_tree() -> None:
    """Published outputs of @openzeppelin/merkle-tree's StandardMerkleTree.of (its README
    example, and a 3-leaf tree of strings that pins the layout of an odd tree)."""
    tree = MerkleTree([("0x1111111111111111111111111111111111111111", 5 * 10**18),
                       ("0x2222222222222222222222222222222222222222", 25 * 10**17)])
    assert tree.root.hex() == "d4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77"
    assert [p.hex() for p in tree.proof("0x1111111111111111111111111111111111111111")] == [
        "b92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc"]
    leaves = sorted(keccak(keccak(abi_encode(["string"], [c]))) for c in "abc")
    assert make_tree(leaves)[0].hex() == "f2129b5a697531ef818f644564a6552b35c549722385bc52aa7fe46c0b5f46b1"


def test_root_is_pinned() -> None:
    """Regression: the root of a fixed 5-entry example never changes (consensus-critical)."""
    tree = MerkleTree([("0x" + f"{i:02x}" * 20, 10**18 * i) for i in range(1, 6)])
    assert tree.root.hex() == "fa0a862875ee76743dd0249c5103a1749eb91ba697f1588dcc64bb72aa834c5e"


def test_invalid_entries() -> None:
    with pytest.raises(MerkleError, match="at least one entry"):
        MerkleTree([])
    with pytest.raises(MerkleError, match="appears twice"):
        MerkleTree([("0x" + "ab" * 20, 1), ("0x" + "AB" * 20, 2)])
    with pytest.raises(MerkleError, match="not an address"):
        MerkleTree([("0x1234", 1)])
    with pytest.raises(MerkleError, match="uint256"):
        MerkleTree([("0x" + "ab" * 20, -1)])
    tree = MerkleTree([("0x" + "ab" * 20, 1)])
    with pytest.raises(MerkleError, match="not in the rewards tree"):
        tree.proof("0x" + "cd" * 20)
    assert tree.amount("0x" + "AB" * 20) == 1


def test_trees_against_contract_claim() -> None:
    """For trees of several sizes, the contract accepts every member's proof (static call of
    claim) and rejects a wrong amount; one member then claims for real."""
    client = ChainClient.embedded(accounts=3)
    operator, voter, member = client.dev_accounts
    params = replace(FederationParams(), committee_size=1, quorum_bps=1, commit_window=10, vote_window=10,
                     min_stake=1)
    fed = client.deploy(params, sender=operator)
    fed.register([], sender=voter)
    fed.fund(10**21, sender=operator)
    fed.start(sender=operator)
    for r, n in enumerate([1, 2, 3, 8, 13, 64], start=1):
        entries = random_entries(n - 1, seed=100 + n) + [(member.address, 10**15 * r)]
        tree = MerkleTree(entries)
        fed.commit_update(r, keccak(text=f"u{r}"), 1, sender=voter)  # closes the commit phase
        fed.vote_aggregate(r, keccak(text=f"m{r}"), tree.root, sender=voter)  # quorum of 1
        assert fed.latest_rewards_root() == tree.root
        for account, amount in random.Random(r).sample(entries, min(n, 6)):
            client.call(fed.contract.functions.claim(amount, tree.proof(account)), sender=account)
        with pytest.raises(ContractRevert, match="InvalidProof"):
            client.call(fed.contract.functions.claim(10**15 * r + 1, tree.proof(member.address)), sender=member)
    receipt = fed.claim(10**15 * r, tree.proof(member.address), sender=member)
    assert receipt.event("Claimed").args["amount"] == 10**15 * r
