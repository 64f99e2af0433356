// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title The few Foundry cheatcodes these tests use, and a minimal test base.
/// @notice forge-std is not on the npm registry in an official build, so the tests declare the
/// cheatcodes they call themselves; signatures are Foundry's (forge 1.7). Assertions are the
/// cheatcode ones (`vm.assertEq(..., "why")`), which revert with the message on failure.
interface Vm {
    function deal(address account, uint256 newBalance) external;
    function prank(address msgSender) external;
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function prevrandao(bytes32 newPrevrandao) external;
    function addr(uint256 privateKey) external pure returns (address keyAddr);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function expectRevert(bytes calldata revertData) external;
    function label(address account, string calldata newLabel) external;
    function assume(bool condition) external pure;
    function assertEq(uint256 left, uint256 right, string calldata message) external pure;
    function assertEq(address left, address right, string calldata message) external pure;
    function assertEq(bytes32 left, bytes32 right, string calldata message) external pure;
    function assertTrue(bool condition, string calldata message) external pure;
    function assertFalse(bool condition, string calldata message) external pure;
    function assertLe(uint256 left, uint256 right, string calldata message) external pure;
}

// The cheatcode address: address(uint160(uint256(keccak256("hevm cheat code")))).
Vm constant VM = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

/// Target selection for invariant tests, as forge reads it from the test contract.
struct FuzzSelector {
    address addr;
    bytes4[] selectors;
}

abstract contract TestBase {
    Vm internal constant vm = VM;

    /// Maps `x` into [lo, hi] (inclusive); for fuzz inputs.
    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (lo == 0 && hi == type(uint256).max) return x;
        return lo + (x % (hi - lo + 1));
    }
}
