// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Federation} from "fedchain/Federation.sol";
import {ReentrantClaimer} from "fedchain/test/ReentrantClaimer.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {FederationHandler} from "./FederationHandler.sol";
import {FuzzSelector, TestBase} from "./utils/Vm.sol";

/// @title Invariants of the Federation's money, checked after every call of random sequences
/// of user actions (FederationHandler). Runs and depth: contracts/foundry/foundry.toml.
contract FederationInvariantTest is TestBase {
    FederationHandler internal handler;
    Federation internal fed;

    function setUp() public {
        handler = new FederationHandler();
        fed = handler.fed();
    }

    // ---- what forge fuzzes: the handler's actions only
    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory t) {
        t = new FuzzSelector[](1);
        t[0] = FuzzSelector({addr: address(handler), selectors: handler.actions()});
    }

    // ---- invariants: one campaign checks them all after every call (forge runs a separate
    // campaign per invariant_ function, so six of them would cost six times the time)

    function invariant_federationMoney() public view {
        _rewardMoneyIsConserved();
        _noPeerClaimsMoreThanItsCumulativeAmount();
        _slashedStakeIsAccountedToTheWei();
        _balanceIsFullyAccounted();
        _reentrantClaimerGetsNothingExtra();
        _handlerChecksHeld();
    }

    /// Reward money is conserved: what was funded (fund() plus the pool's share of slashed
    /// stakes) = the pool's unallocated funds + everything claimed + everything still claimable
    /// under the latest root, where the unallocated part is never negative (every proof the
    /// latest root holds can be paid).
    function _rewardMoneyIsConserved() internal view {
        uint256 claimed = 0;
        uint256 claimable = 0;
        for (uint256 i = 0; i < handler.N_ACTORS(); ++i) {
            address a = handler.actor(i);
            claimed += fed.claimed(a);
            claimable += handler.cumulative(a) - fed.claimed(a);
        }
        uint256 pool = fed.rewardPool();
        vm.assertLe(claimable, pool, "the latest root owes more than the pool holds");
        uint256 unallocated = pool - claimable;
        vm.assertEq(
            handler.funded() + handler.slashedToPool(),
            unallocated + claimed + claimable,
            "funded != unallocated pool + claimed + claimable"
        );
        vm.assertEq(claimed, handler.claimedTotal(), "claimed on chain != ETH paid out by claim()");
    }

    /// No peer ever claims more than its cumulative amount, and what it was paid is what the
    /// contract recorded as claimed.
    function _noPeerClaimsMoreThanItsCumulativeAmount() internal view {
        for (uint256 i = 0; i < handler.N_ACTORS(); ++i) {
            address a = handler.actor(i);
            vm.assertLe(fed.claimed(a), handler.cumulative(a), "claimed above the cumulative amount");
            vm.assertEq(handler.received(a), fed.claimed(a), "paid != claimed");
        }
    }

    /// Slashed stake is accounted to the wei: each slash splits into the reporter's share and
    /// the pool's share with nothing lost or created, reporters' shares are owed or withdrawn,
    /// and every staked wei is still staked, withdrawn or slashed.
    function _slashedStakeIsAccountedToTheWei() internal view {
        vm.assertEq(handler.slashedTotal(), handler.slashedToPool() + handler.reporterRewards(), "slash split lost wei");
        uint256 owed = 0;
        for (uint256 i = 0; i < handler.N_REPORTERS(); ++i) {
            owed += fed.owed(handler.reporter(i));
        }
        vm.assertEq(owed + handler.owedWithdrawn(), handler.reporterRewards(), "reporter shares: owed + paid");
        uint256 stakes = 0;
        for (uint256 i = 0; i < handler.N_ACTORS(); ++i) {
            stakes += fed.peerInfo(handler.actor(i)).stake;
        }
        vm.assertEq(
            stakes + handler.stakeWithdrawn() + handler.slashedTotal(), handler.staked(), "stake: held + paid + slashed"
        );
    }

    /// The contract's balance is exactly the pool plus the stakes plus what reporters are owed.
    function _balanceIsFullyAccounted() internal view {
        uint256 held = fed.rewardPool();
        for (uint256 i = 0; i < handler.N_ACTORS(); ++i) {
            held += fed.peerInfo(handler.actor(i)).stake;
        }
        for (uint256 i = 0; i < handler.N_REPORTERS(); ++i) {
            held += fed.owed(handler.reporter(i));
        }
        vm.assertEq(address(fed).balance, held, "balance != pool + stakes + owed");
    }

    /// The re-entrant claimer holds exactly what it claimed (its only income), and its
    /// re-entry, once tried, was stopped by the guard.
    function _reentrantClaimerGetsNothingExtra() internal view {
        ReentrantClaimer attacker = handler.attacker();
        vm.assertEq(address(attacker).balance, fed.claimed(address(attacker)), "attacker balance != its claims");
        vm.assertFalse(attacker.reentrySucceeded(), "a re-entrant claim succeeded");
        if (attacker.reentries() > 0) {
            vm.assertEq(
                bytes32(attacker.reentryError()),
                bytes32(ReentrancyGuard.ReentrancyGuardReentrantCall.selector),
                "re-entry not stopped by the guard"
            );
        }
    }

    /// Every per-action check in the handler held (valid calls succeeded with the exact
    /// amounts, invalid ones failed and moved nothing).
    function _handlerChecksHeld() internal view {
        vm.assertEq(handler.violations(), 0, handler.violation());
    }
}
