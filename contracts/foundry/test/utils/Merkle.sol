// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Reward trees as the peers build them: OpenZeppelin StandardMerkleTree leaves over
/// (address account, uint256 cumulativeAmount), sorted-pair keccak hashing (what
/// OZ MerkleProof.verify checks). Written from the spec, independently of the contract.
library Merkle {
    function leaf(address account, uint256 cumulativeAmount) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
    }

    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encodePacked(a, b)) : keccak256(abi.encodePacked(b, a));
    }

    /// Root of the tree whose bottom layer is `leaves` (pairs left to right; an odd last node
    /// moves up unchanged).
    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        require(leaves.length > 0, "Merkle: no leaves");
        bytes32[] memory layer = leaves;
        while (layer.length > 1) layer = _up(layer);
        return layer[0];
    }

    /// Sibling hashes from leaf `index` up to the root.
    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory out) {
        require(index < leaves.length, "Merkle: index out of range");
        bytes32[] memory path = new bytes32[](256);
        uint256 depth = 0;
        bytes32[] memory layer = leaves;
        while (layer.length > 1) {
            uint256 sibling = index ^ 1;
            if (sibling < layer.length) path[depth++] = layer[sibling];
            layer = _up(layer);
            index /= 2;
        }
        out = new bytes32[](depth);
        for (uint256 i = 0; i < depth; ++i) {
            out[i] = path[i];
        }
    }

    function _up(bytes32[] memory layer) private pure returns (bytes32[] memory next) {
        next = new bytes32[]((layer.length + 1) / 2);
        for (uint256 i = 0; i < next.length; ++i) {
            uint256 l = 2 * i;
            next[i] = l + 1 < layer.length ? hashPair(layer[l], layer[l + 1]) : layer[l];
        }
    }
}
