// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Federation} from "fedchain/Federation.sol";
import {ReentrantClaimer} from "fedchain/test/ReentrantClaimer.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Merkle} from "./utils/Merkle.sol";
import {FederationFixture} from "./utils/Fixture.sol";

/// @title Fuzz tests of the money paths: claims against cumulative Merkle roots, slashing, and
/// a re-entrant claimer. Each test states the property in its name and asserts it to the wei.
contract FederationFuzzTest is FederationFixture {
    address internal constant REPORTER = address(0xBEEF);

    // ------------------------------------------------------------------ claims

    /// Across two successive roots, a peer is paid exactly its cumulative amount in total:
    /// first `first`, then the increase `second`; claiming again pays nothing.
    function testFuzz_claimPaysTheCumulativeDifference(uint96 first, uint96 second, uint96 spare, uint8 who) public {
        _deploy(1_000, 3);
        uint256 idx = who % peers.length;
        address peer = peers[idx];
        _fund(uint256(first) + second + spare);
        uint256[] memory amounts = new uint256[](peers.length);

        amounts[idx] = first;
        bytes32[] memory leaves = _leaves(peers, amounts);
        _finalise(Merkle.root(leaves));
        if (first > 0) _claimAndCheck(peer, first, 0, Merkle.proof(leaves, idx));

        amounts[idx] = uint256(first) + second;
        leaves = _leaves(peers, amounts);
        _finalise(Merkle.root(leaves));
        bytes32[] memory proof = Merkle.proof(leaves, idx);
        if (second > 0) _claimAndCheck(peer, uint256(first) + second, first, proof);

        // Everything owed is paid: a repeat claim is refused with the amounts in the error.
        vm.expectRevert(abi.encodeWithSelector(Federation.NothingToClaim.selector, peer, amounts[idx], amounts[idx]));
        vm.prank(peer);
        fed.claim(amounts[idx], proof);
        vm.assertEq(fed.rewardPool(), spare, "pool != funded - claimed");
        vm.assertEq(peer.balance, amounts[idx], "peer was paid != its cumulative amount");
    }

    /// No peer can claim above its proven cumulative amount, nor with another peer's leaf.
    function testFuzz_claimAboveCumulativeIsRejected(uint96 cumulative, uint256 extra, uint8 who) public {
        _deploy(1_000, 3);
        uint256 idx = who % peers.length;
        extra = _bound(extra, 1, type(uint256).max - cumulative);
        _fund(uint256(cumulative) * 2 + 1);
        uint256[] memory amounts = new uint256[](peers.length);
        for (uint256 i = 0; i < peers.length; ++i) {
            amounts[i] = cumulative;
        }
        bytes32[] memory leaves = _leaves(peers, amounts);
        _finalise(Merkle.root(leaves));
        bytes32[] memory proof = Merkle.proof(leaves, idx);
        uint256 poolBefore = fed.rewardPool();

        vm.expectRevert(
            abi.encodeWithSelector(Federation.InvalidProof.selector, peers[idx], uint256(cumulative) + extra)
        );
        vm.prank(peers[idx]);
        fed.claim(uint256(cumulative) + extra, proof);

        // Someone who is not in the tree cannot use a member's proof.
        address outsider = address(0xCAFE);
        vm.expectRevert(abi.encodeWithSelector(Federation.InvalidProof.selector, outsider, uint256(cumulative)));
        vm.prank(outsider);
        fed.claim(cumulative, proof);

        vm.assertEq(fed.rewardPool(), poolBefore, "a rejected claim moved the pool");
        vm.assertEq(fed.claimed(peers[idx]), 0, "a rejected claim was recorded");
    }

    /// A root that promises more than the pool holds cannot drain it: the claim is refused whole.
    function testFuzz_claimBeyondThePoolIsRefused(uint96 pool, uint96 cumulative) public {
        vm.assume(cumulative > pool);
        _deploy(1_000, 3);
        _fund(pool);
        uint256[] memory amounts = new uint256[](peers.length);
        amounts[0] = cumulative;
        bytes32[] memory leaves = _leaves(peers, amounts);
        _finalise(Merkle.root(leaves));

        vm.expectRevert(
            abi.encodeWithSelector(Federation.InsufficientPool.selector, uint256(cumulative), uint256(pool))
        );
        vm.prank(peers[0]);
        fed.claim(cumulative, Merkle.proof(leaves, 0));
        vm.assertEq(fed.rewardPool(), pool, "pool changed");
        vm.assertEq(peers[0].balance, 0, "peer was paid");
    }

    // ------------------------------------------------------------------ slashing

    /// A slashed stake is split to the wei: the reporter is owed floor(stake * bps / 10000), the
    /// pool gets the rest, the peer keeps nothing; the reporter withdraws exactly its share.
    function testFuzz_slashedStakeIsAccountedToTheWei(
        uint16 reporterBps,
        uint128 extraStake,
        uint64 round,
        bytes32 hashA,
        bytes32 hashB,
        uint96 pool
    ) public {
        vm.assume(hashA != hashB);
        reporterBps = uint16(_bound(reporterBps, 0, BPS));
        _deploy(reporterBps, 2);
        _fund(pool);
        uint256 key = 0xE7E7;
        address cheat = vm.addr(key);
        uint256 stake = uint256(MIN_STAKE) + _bound(extraStake, 0, type(uint128).max - MIN_STAKE);
        vm.deal(cheat, stake);
        vm.prank(cheat);
        fed.register{value: stake}("");
        uint32 activeBefore = fed.activePeers();

        Federation.Signed memory a = _signed(key, round, hashA);
        Federation.Signed memory b = _signed(key, round, hashB);
        vm.prank(REPORTER);
        fed.reportEquivocation(cheat, a, b);

        uint256 reward = (stake * reporterBps) / BPS;
        vm.assertEq(fed.owed(REPORTER), reward, "reporter share");
        vm.assertEq(fed.rewardPool(), uint256(pool) + (stake - reward), "pool share");
        vm.assertEq(fed.owed(REPORTER) + (fed.rewardPool() - pool), stake, "shares do not add up to the stake");
        Federation.PeerView memory info = fed.peerInfo(cheat);
        vm.assertEq(info.stake, 0, "slashed peer kept stake");
        vm.assertTrue(info.slashed && !info.active, "slashed peer still active");
        vm.assertEq(uint256(fed.activePeers()), uint256(activeBefore) - 1, "activePeers");
        address[] memory others = new address[](2);
        others[0] = cheat;
        others[1] = REPORTER;
        _assertBalanceAccounted(others);

        // The same evidence (or any other) cannot slash twice.
        vm.expectRevert(abi.encodeWithSelector(Federation.AlreadySlashed.selector, cheat));
        fed.reportEquivocation(cheat, b, a);

        if (reward > 0) {
            vm.prank(REPORTER);
            fed.withdrawOwed();
            vm.assertEq(REPORTER.balance, reward, "reporter paid != its share");
            vm.assertEq(fed.owed(REPORTER), 0, "owed not cleared");
        }
        _assertBalanceAccounted(others);
    }

    /// Evidence that is not an equivocation by that peer slashes nothing.
    function testFuzz_badEvidenceSlashesNothing(uint64 round, bytes32 hashA, bytes32 hashB) public {
        vm.assume(hashA != hashB);
        _deploy(1_000, 2);
        uint256 victimKey = FIRST_KEY;
        address victim = peers[0];
        // Same payload twice: not an equivocation.
        Federation.Signed memory a = _signed(victimKey, round, hashA);
        vm.expectRevert(abi.encodeWithSelector(Federation.NotEquivocation.selector, victim));
        fed.reportEquivocation(victim, a, a);
        // Two different rounds: not an equivocation either.
        Federation.Signed memory later = _signed(victimKey, round == type(uint64).max ? 0 : round + 1, hashB);
        vm.expectRevert(abi.encodeWithSelector(Federation.NotEquivocation.selector, victim));
        fed.reportEquivocation(victim, a, later);
        // Signed by someone else.
        Federation.Signed memory forged = _signed(FIRST_KEY + 1, round, hashB);
        vm.expectRevert(abi.encodeWithSelector(Federation.BadSignature.selector, victim, peers[1]));
        fed.reportEquivocation(victim, a, forged);
        vm.assertEq(fed.peerInfo(victim).stake, MIN_STAKE, "stake moved");
        vm.assertEq(fed.rewardPool(), 0, "pool moved");
    }

    // ------------------------------------------------------------------ re-entrancy

    /// A claimer that re-enters claim() from its receive hook gets its cumulative amount once,
    /// nothing more, even when the pool could pay the amount a second time.
    function testFuzz_reentrantClaimerGetsNothingExtra(uint96 cumulative, uint96 spare, uint96 later) public {
        vm.assume(cumulative > 0);
        _deploy(1_000, 3);
        ReentrantClaimer attacker = new ReentrantClaimer(address(fed));
        vm.deal(address(this), MIN_STAKE);
        attacker.register{value: MIN_STAKE}("");
        // The pool holds the amount twice over (and more), so only the guard stands in the way.
        _fund(uint256(cumulative) * 2 + spare + later);

        address[] memory accounts = new address[](peers.length + 1);
        uint256[] memory amounts = new uint256[](accounts.length);
        for (uint256 i = 0; i < peers.length; ++i) {
            accounts[i] = peers[i];
        }
        uint256 a = peers.length;
        accounts[a] = address(attacker);
        amounts[a] = cumulative;
        bytes32[] memory leaves = _leaves(accounts, amounts);
        _finalise(Merkle.root(leaves));
        uint256 poolBefore = fed.rewardPool();

        attacker.attack(cumulative, Merkle.proof(leaves, a));

        vm.assertEq(attacker.reentries(), 1, "the attacker did not re-enter");
        vm.assertFalse(attacker.reentrySucceeded(), "re-entrant claim succeeded");
        vm.assertEq(
            bytes32(attacker.reentryError()),
            bytes32(ReentrancyGuard.ReentrancyGuardReentrantCall.selector),
            "re-entry was not stopped by the guard"
        );
        vm.assertEq(address(attacker).balance, cumulative, "attacker got more than its cumulative amount");
        vm.assertEq(fed.claimed(address(attacker)), cumulative, "claimed");
        vm.assertEq(fed.rewardPool(), poolBefore - cumulative, "pool");

        // Next root raises the attacker's total: it gets the increase, once (no second re-entry
        // attempt is armed, so this checks plain accounting after an attack).
        amounts[a] = uint256(cumulative) + later;
        leaves = _leaves(accounts, amounts);
        _finalise(Merkle.root(leaves));
        if (later > 0) attacker.attack(amounts[a], Merkle.proof(leaves, a));
        vm.assertEq(address(attacker).balance, amounts[a], "attacker total != cumulative amount");
        address[] memory others = new address[](1);
        others[0] = address(attacker);
        _assertBalanceAccounted(others);
    }

    // ------------------------------------------------------------------ helpers

    function _claimAndCheck(address peer, uint256 cumulative, uint256 already, bytes32[] memory proof) internal {
        uint256 pool = fed.rewardPool();
        uint256 balance = peer.balance;
        vm.prank(peer);
        fed.claim(cumulative, proof);
        vm.assertEq(peer.balance - balance, cumulative - already, "paid != cumulative - already claimed");
        vm.assertEq(pool - fed.rewardPool(), cumulative - already, "pool decrease != payment");
        vm.assertEq(fed.claimed(peer), cumulative, "claimed != cumulative");
    }
}
