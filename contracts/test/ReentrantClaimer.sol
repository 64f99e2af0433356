// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// Test-only attacker: claims its rewards and, when paid, tries to claim again from inside
/// the payment (reentrancy). Used by the tests to show the guard holds.
interface IFederationClaim {
    function claim(uint256 cumulativeAmount, bytes32[] calldata proof) external;
    function register(bytes calldata multiaddrs) external payable;
    function voteAggregate(uint64 round, bytes32 modelHash, bytes32 rewardsRoot) external;
    function commitUpdate(uint64 round, bytes32 payloadHash, uint64 nSamples) external;
}

contract ReentrantClaimer {
    IFederationClaim public immutable target;
    uint256 private _cumulative;
    bytes32[] private _proof;
    uint256 public reentries;
    bool public reentrySucceeded;
    bytes4 public reentryError; // selector of the error the re-entrant claim reverted with

    constructor(address federation) {
        target = IFederationClaim(federation);
    }

    function register(bytes calldata multiaddrs) external payable {
        target.register{value: msg.value}(multiaddrs);
    }

    function commit(uint64 round, bytes32 payloadHash, uint64 nSamples) external {
        target.commitUpdate(round, payloadHash, nSamples);
    }

    function vote(uint64 round, bytes32 modelHash, bytes32 rewardsRoot) external {
        target.voteAggregate(round, modelHash, rewardsRoot);
    }

    function attack(uint256 cumulativeAmount, bytes32[] calldata proof) external {
        _cumulative = cumulativeAmount;
        _proof = proof;
        target.claim(cumulativeAmount, proof);
    }

    receive() external payable {
        if (reentries == 0) {
            reentries = 1;
            try target.claim(_cumulative, _proof) {
                reentrySucceeded = true;
            } catch (bytes memory reason) {
                reentrySucceeded = false;
                reentryError = bytes4(reason);
            }
        }
    }
}
