// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Federation} from "fedchain/Federation.sol";
import {Merkle} from "./Merkle.sol";
import {TestBase} from "./Vm.sol";

/// @title Shared set-up for the Federation fuzz tests: deploy, register EOA peers with known
/// keys, finalise a round on a given rewards root, sign update announcements.
abstract contract FederationFixture is TestBase {
    uint128 internal constant MIN_STAKE = 1 ether;
    uint64 internal constant COMMIT_WINDOW = 100;
    uint64 internal constant VOTE_WINDOW = 100;
    uint256 internal constant BPS = 10_000;
    uint256 internal constant FIRST_KEY = 0xB0B0;

    Federation internal fed;
    address[] internal peers; // EOAs, keys FIRST_KEY + i

    function _params(uint16 slashReporterBps) internal pure returns (Federation.Params memory) {
        return Federation.Params({
            modelSpecHash: keccak256("spec"),
            genesisModelHash: keccak256("genesis"),
            commitWindow: COMMIT_WINDOW,
            voteWindow: VOTE_WINDOW,
            committeeSize: 3,
            quorumBps: 5_000,
            rewardPerRound: 1 ether,
            minStake: MIN_STAKE,
            unbondingDelay: 500,
            maxRounds: 0,
            contributorShareBps: 7_000,
            slashReporterBps: slashReporterBps
        });
    }

    /// Deploys a federation and registers `n` EOA peers with MIN_STAKE each.
    function _deploy(uint16 slashReporterBps, uint256 n) internal {
        fed = new Federation(_params(slashReporterBps));
        for (uint256 i = 0; i < n; ++i) {
            address peer = vm.addr(FIRST_KEY + i);
            vm.deal(peer, MIN_STAKE);
            vm.prank(peer);
            fed.register{value: MIN_STAKE}(bytes("/ip4/127.0.0.1/tcp/4001"));
            peers.push(peer);
        }
    }

    function _fund(uint256 amount) internal {
        if (amount == 0) return;
        address funder = address(0xF00D);
        vm.deal(funder, amount);
        vm.prank(funder);
        fed.fund{value: amount}();
    }

    /// Opens round 1 if needed, lets the commit window pass and has the peers vote for
    /// (model, root) until the round finalises; the root is then the one claims prove against.
    function _finalise(bytes32 root) internal {
        if (fed.currentRound() == 0) fed.start();
        uint64 round = fed.currentRound();
        Federation.RoundView memory rs = fed.roundState();
        if (block.timestamp < rs.commitDeadline) vm.warp(rs.commitDeadline);
        bytes32 model = keccak256(abi.encode("model", round));
        for (uint256 i = 0; i < peers.length && fed.lastFinalizedRound() != round; ++i) {
            vm.prank(peers[i]);
            fed.voteAggregate(round, model, root);
        }
        vm.assertEq(uint256(fed.lastFinalizedRound()), uint256(round), "round did not finalise");
        vm.assertEq(fed.latestRewardsRoot(), root, "rewards root not adopted");
    }

    /// Leaves of a rewards tree: accounts[i] is owed amounts[i] in total.
    function _leaves(address[] memory accounts, uint256[] memory amounts) internal pure returns (bytes32[] memory l) {
        l = new bytes32[](accounts.length);
        for (uint256 i = 0; i < accounts.length; ++i) {
            l[i] = Merkle.leaf(accounts[i], amounts[i]);
        }
    }

    /// An EIP-712 signed update announcement by the peer with private key `key`.
    function _signed(uint256 key, uint64 round, bytes32 payloadHash)
        internal
        view
        returns (Federation.Signed memory s)
    {
        s = Federation.Signed({
            round: round, payloadHash: payloadHash, payloadSize: 1234, nSamples: 60, encoding: 0, signature: ""
        });
        bytes32 digest = fed.hashUpdate(s.round, s.payloadHash, s.payloadSize, s.nSamples, s.encoding);
        (uint8 v, bytes32 r, bytes32 sig) = vm.sign(key, digest);
        s.signature = abi.encodePacked(r, sig, v);
    }

    /// Everything the contract holds must be accounted for: pool + stakes + owed, to the wei.
    function _assertBalanceAccounted(address[] memory others) internal view {
        uint256 held = fed.rewardPool();
        for (uint256 i = 0; i < peers.length; ++i) {
            held += fed.peerInfo(peers[i]).stake + fed.owed(peers[i]);
        }
        for (uint256 i = 0; i < others.length; ++i) {
            held += fed.peerInfo(others[i]).stake + fed.owed(others[i]);
        }
        vm.assertEq(address(fed).balance, held, "contract balance != pool + stakes + owed");
    }
}
