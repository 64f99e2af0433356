"""Merkle tree of cumulative rewards, compatible with OpenZeppelin's StandardMerkleTree.

A round's ``rewardsRoot`` commits to ``(account, cumulativeAmount)`` for every peer that has
earned anything so far; the contract's ``claim`` checks one proof with OpenZeppelin's
``MerkleProof.verify``. The tree is built exactly like ``StandardMerkleTree.of(entries,
["address", "uint256"])`` of ``@openzeppelin/merkle-tree`` (default options), so a root made
here equals the JS library's root for the same entries:

* leaf      = keccak256(keccak256(abi.encode(address, uint256)))   (double hash: a leaf can
  never be mistaken for an inner node's 64-byte preimage)
* pair      = keccak256(min(a, b) ++ max(a, b))                      (sorted pairs: proofs need
  no left/right flags)
* layout    = leaves sorted by ascending hash, stored at the end of a flat array of
  ``2n - 1`` nodes in reverse order; node ``i`` has children ``2i + 1`` and ``2i + 2``.

Leaf order therefore depends only on the *set* of entries: callers may pass them in any
order and every peer computes the same root. A single entry's root is its leaf hash (empty
proof). An empty tree has no root: a round in which nobody earned anything keeps the
previous root (the caller decides).

Example::

    >>> tree = MerkleTree([("0x" + "11" * 20, 5), ("0x" + "22" * 20, 7)])
    >>> MerkleTree.verify(tree.root, "0x" + "11" * 20, 5, tree.proof("0x" + "11" * 20))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Iterable, Sequence

from eth_abi import encode as abi_encode
from eth_utils import is_address, keccak, to_checksum_address

from peer.errors import FedchainError

__all__ = ["EMPTY_ROOT", "rewards_root", "MerkleError", "MerkleTree", "hash_pair", "leaf_hash", "make_tree"]

_UINT256_MAX = 2**256 - 1


class MerkleError(FedchainError, ValueError):
    """Entries that cannot form a rewards tree (duplicate account, bad amount, empty set),
    or a proof asked for an account that is not in the tree."""


def leaf_hash(account: str, cumulative_amount: int) -> bytes:
    """keccak256(keccak256(abi.encode(address, uint256))): the contract's leaf."""
    if not is_address(account):
        raise MerkleError(f"not an address: {account!r}")
    if not 0 <= cumulative_amount <= _UINT256_MAX:
        raise MerkleError(f"amount out of uint256 range: {cumulative_amount}")
    return keccak(keccak(abi_encode(["address", "uint256"], [account, cumulative_amount])))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """keccak256 of the two nodes, smaller first (OpenZeppelin's commutative hash)."""
    return keccak(a + b) if a <= b else keccak(b + a)


def make_tree(leaves: Sequence[bytes]) -> list[bytes]:
    """The flat tree over ``leaves`` (already hashed, in leaf order): ``2n - 1`` nodes, root
    at 0, leaf ``i`` at ``2n - 2 - i``, node ``i``'s children at ``2i + 1`` and ``2i + 2``."""
    if not leaves:
        raise MerkleError("a Merkle tree needs at least one leaf")
    n = len(leaves)
    tree: list[bytes] = [b""] * (2 * n - 1)
    for i, leaf in enumerate(leaves):
        tree[len(tree) - 1 - i] = bytes(leaf)
    for i in range(len(tree) - 1 - n, -1, -1):
        tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
    return tree


class MerkleTree:
    """The rewards tree over ``(account, cumulative_amount)`` entries (any order; accounts
    unique, compared case-insensitively)."""

    def __init__(self, entries: Iterable[tuple[str, int]]) -> None:
        amounts: dict[str, int] = {}
        for account, amount in entries:
            if not is_address(account):
                raise MerkleError(f"not an address: {account!r}")
            key = to_checksum_address(account)
            if key in amounts:
                raise MerkleError(f"account {key} appears twice in the rewards entries")
            amounts[key] = int(amount)
        if not amounts:
            raise MerkleError("a rewards tree needs at least one entry")
        leaves = sorted((leaf_hash(a, v), a) for a, v in amounts.items())
        self._tree = make_tree([leaf for leaf, _ in leaves])
        last = len(self._tree) - 1
        self._position = {account: last - i for i, (_, account) in enumerate(leaves)}
        self._amounts = amounts

    @property
    def root(self) -> bytes:
        """The 32-byte root the contract stores as ``rewardsRoot``."""
        return self._tree[0]

    def __len__(self) -> int:
        return len(self._amounts)

    def amount(self, account: str) -> int:
        """The cumulative amount recorded for ``account``."""
        return self._amounts[self._key(account)]

    def entries(self) -> list[tuple[str, int]]:
        """The entries in leaf order (ascending leaf hash)."""
        by_position = sorted(self._position.items(), key=lambda kv: -kv[1])
        return [(account, self._amounts[account]) for account, _ in by_position]

    def proof(self, account: str) -> list[bytes]:
        """Sibling hashes from ``account``'s leaf up to the root (what ``claim`` takes)."""
        i = self._position[self._key(account)]
        proof = []
        while i > 0:
            sibling = i - 1 if i % 2 == 0 else i + 1
            proof.append(self._tree[sibling])
            i = (i - 1) // 2
        return proof

    @staticmethod
    def verify(root: bytes, account: str, cumulative_amount: int, proof: Sequence[bytes]) -> bool:
        """OpenZeppelin ``MerkleProof.verify`` for one leaf."""
        node = leaf_hash(account, cumulative_amount)
        for sibling in proof:
            node = hash_pair(node, bytes(sibling))
        return node == bytes(root)

    def _key(self, account: str) -> str:
        key = to_checksum_address(account) if is_address(account) else account
        if key not in self._amounts:
            raise MerkleError(f"account {account} is not in the rewards tree")
        return key


EMPTY_ROOT = b"\x00" * 32
"""The rewards root peers vote for while nobody has earned anything."""


def rewards_root(balances: Mapping[str, int]) -> bytes:
    """Merkle root of the positive cumulative balances (what peers vote for), or
    :data:`EMPTY_ROOT` when there is none."""
    entries = [(a, v) for a, v in balances.items() if v > 0]
    return MerkleTree(entries).root if entries else EMPTY_ROOT
