// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Federation} from "fedchain/Federation.sol";
import {ReentrantClaimer} from "fedchain/test/ReentrantClaimer.sol";
import {Merkle} from "./utils/Merkle.sol";
import {VM} from "./utils/Vm.sol";

/// @title Drives one Federation through random sequences of everything its users can do:
/// fund, register, commit, vote (honest or rival roots), let time pass, fail rounds,
/// claim (honestly, above the proven amount, with another's leaf), exit, withdraw stake,
/// report equivocations and withdraw reporter rewards. One of the peers is the re-entrant
/// claimer (contracts/test/ReentrantClaimer.sol).
/// @dev Ghost variables count every wei that goes in or out; the invariant test compares them
/// with the contract. Each action first checks that it is valid (and returns otherwise), so a
/// revert of a call the handler predicted valid, or success of one it predicted invalid, is a
/// finding: it is recorded in `violation` (and `fail_on_revert` catches anything else).
/// Rewards roots are solvent by construction (a round allocates at most the pool's unallocated
/// funds), as honest peers build them; insolvent roots are covered by the fuzz tests.
contract FederationHandler {
    uint256 public constant N_EOA = 7; // the first N_PRE are registered at deployment
    uint256 public constant N_PRE = 5;
    uint256 public constant N_ACTORS = N_EOA + 1; // + the re-entrant claimer, last
    uint256 public constant N_REPORTERS = 2;
    uint256 internal constant BPS = 10_000;
    uint256 internal constant FIRST_KEY = 0xA11CE;
    uint128 internal constant MIN_STAKE = 1 ether;
    uint128 internal constant REWARD_PER_ROUND = 3 ether;
    uint16 internal constant SLASH_REPORTER_BPS = 1_234; // not a round share: rounding is exercised
    uint64 internal constant UNBONDING = 100;
    uint8 internal constant PHASE_COMMIT = 1;
    uint8 internal constant PHASE_VOTE = 2;
    uint8 internal constant PHASE_EXPIRED = 3;

    Federation public immutable fed;
    ReentrantClaimer public immutable attacker;
    address[N_ACTORS] internal _actors;
    address[N_REPORTERS] internal _reporters;
    address internal constant FUNDER = address(0xF0F0);

    // ---- ghosts: every wei in and out, as the handler saw it
    uint256 public funded; // sent with fund()
    uint256 public staked; // sent with register()
    uint256 public stakeWithdrawn;
    uint256 public slashedTotal; // stakes taken by reportEquivocation
    uint256 public slashedToPool; // their share that went to the reward pool
    uint256 public reporterRewards; // their share owed to reporters
    uint256 public owedWithdrawn;
    uint256 public claimedTotal;
    mapping(address => uint256) public cumulative; // in the latest finalised rewards root
    mapping(address => uint256) public received; // ETH each actor got from claim()
    uint256 public finalisedRoots;
    uint256 public successfulClaims;
    uint256 public slashes;

    uint256 public violations;
    string public violation; // the first one

    // ---- the current round's two candidate (model, rewards root) pairs: honest and rival
    uint64 internal _candRound;
    bytes32[2] internal _candModel;
    bytes32[2] internal _candRoot;
    uint256[N_ACTORS][2] internal _candCum;

    constructor() {
        fed = new Federation(
            Federation.Params({
                modelSpecHash: keccak256("spec"),
                genesisModelHash: keccak256("genesis"),
                commitWindow: 100,
                voteWindow: 100,
                committeeSize: 3,
                quorumBps: 5_000,
                rewardPerRound: REWARD_PER_ROUND,
                minStake: MIN_STAKE,
                unbondingDelay: UNBONDING,
                maxRounds: 0,
                contributorShareBps: 7_000,
                slashReporterBps: SLASH_REPORTER_BPS
            })
        );
        attacker = new ReentrantClaimer(address(fed));
        for (uint256 i = 0; i < N_EOA; ++i) {
            _actors[i] = VM.addr(FIRST_KEY + i);
        }
        _actors[N_EOA] = address(attacker);
        _reporters[0] = address(0xBEEF01);
        _reporters[1] = address(0xBEEF02);
        for (uint256 i = 0; i < N_PRE; ++i) {
            register(i, i);
        }
        register(N_EOA, 0);
        _fund(10 ether);
        fed.start(); // the handler deployed the contract: it is the operator
    }

    // ================================================================ actions

    function fund(uint256 amountSeed) public {
        _fund(1 + (amountSeed % 5 ether));
    }

    function _fund(uint256 amount) internal {
        uint256 pool = fed.rewardPool();
        VM.deal(FUNDER, amount);
        VM.prank(FUNDER);
        fed.fund{value: amount}();
        funded += amount;
        _check(fed.rewardPool() == pool + amount, "fund: pool did not grow by the amount");
    }

    function register(uint256 actorSeed, uint256 stakeSeed) public {
        uint256 i = actorSeed % N_ACTORS;
        address a = _actors[i];
        if (fed.peerInfo(a).registered) return;
        uint256 stake = MIN_STAKE + (stakeSeed % 2 ether);
        if (a == address(attacker)) {
            VM.deal(address(this), address(this).balance + stake);
            attacker.register{value: stake}("");
        } else {
            VM.deal(a, stake);
            VM.prank(a);
            fed.register{value: stake}(bytes("/ip4/127.0.0.1/tcp/4001"));
        }
        staked += stake;
        _check(fed.peerInfo(a).stake == stake, "register: stake not recorded");
    }

    /// Commits for the first committee member, from actor `actorSeed` on, that has not yet
    /// committed this round; a non-member's commit must be refused.
    function commit(uint256 actorSeed) public {
        uint64 round = fed.currentRound();
        if (fed.roundState().phase != PHASE_COMMIT) return;
        for (uint256 k = 0; k < N_ACTORS; ++k) {
            address a = _actors[(actorSeed % N_ACTORS + k) % N_ACTORS];
            bool member = fed.isCommitteeMember(a);
            if (member && fed.peerInfo(a).lastCommitRound == round) continue;
            bool ok = _commitAs(a, round);
            _check(ok == member, member ? "commit: a member could not commit" : "commit: a non-member committed");
            if (member) return;
        }
    }

    function _commitAs(address a, uint64 round) internal returns (bool ok) {
        bytes32 payloadHash = keccak256(abi.encode(a, round));
        if (a == address(attacker)) {
            try attacker.commit(round, payloadHash, 60) {
                ok = true;
            } catch {}
        } else {
            VM.prank(a);
            try fed.commitUpdate(round, payloadHash, 60) {
                ok = true;
            } catch {}
        }
    }

    function vote(uint256 actorSeed, uint256 choiceSeed) public {
        uint64 round = fed.currentRound();
        if (round == 0) return;
        Federation.RoundView memory rs = fed.roundState();
        if (rs.phase != PHASE_VOTE) return;
        address a = _actors[actorSeed % N_ACTORS];
        Federation.PeerView memory info = fed.peerInfo(a);
        if (!info.registered || !info.active || info.index >= rs.nPeers || info.lastVoteRound == round) return;
        _ensureCandidates(round);
        uint256 c = choiceSeed % 4 == 0 ? 1 : 0; // mostly honest, sometimes the rival
        bool ok;
        if (a == address(attacker)) {
            try attacker.vote(round, _candModel[c], _candRoot[c]) {
                ok = true;
            } catch {}
        } else {
            VM.prank(a);
            try fed.voteAggregate(round, _candModel[c], _candRoot[c]) {
                ok = true;
            } catch {}
        }
        _check(ok, "vote: an eligible voter could not vote");
        if (fed.lastFinalizedRound() == round) {
            _check(fed.finalizedModel(round) == _candModel[c], "vote: finalised a model nobody reached quorum on");
            _check(fed.latestRewardsRoot() == _candRoot[c], "vote: rewards root not adopted");
            for (uint256 i = 0; i < N_ACTORS; ++i) {
                cumulative[_actors[i]] = _candCum[c][i];
            }
            finalisedRoots += 1;
        }
    }

    /// Up to N_ACTORS votes in one call (each actor in turn from `actorSeed`): a quorum often
    /// needs several votes inside one vote window, which single votes between warps rarely give.
    function voteMany(uint256 actorSeed, uint256 choiceSeed) public {
        for (uint256 k = 0; k < N_ACTORS; ++k) {
            vote((actorSeed % N_ACTORS) + k, choiceSeed >> (2 * k));
        }
    }

    function warp(uint256 secondsSeed) public {
        VM.warp(block.timestamp + 1 + (secondsSeed % 100));
        VM.roll(block.number + 1);
        VM.prevrandao(keccak256(abi.encode(secondsSeed)));
    }

    function failRound() public {
        uint64 round = fed.currentRound();
        if (round == 0 || fed.roundState().phase != PHASE_EXPIRED) return;
        fed.failRound(round);
        _check(fed.currentRound() == round + 1, "failRound: next round not opened");
    }

    /// mode 0: claim what the latest root proves; 1: claim more than that with the same proof;
    /// 2: claim with another actor's leaf. Only mode 0 with something owed may pay.
    function claim(uint256 actorSeed, uint256 modeSeed, uint256 extraSeed) public {
        uint256 i = actorSeed % N_ACTORS;
        address a = _actors[i];
        uint256 mode = modeSeed % 3;
        uint256 j = mode == 2 ? (i + 1 + extraSeed % (N_ACTORS - 1)) % N_ACTORS : i;
        uint256 amount = cumulative[_actors[j]] + (mode == 1 ? 1 + extraSeed % 1 ether : 0);
        bytes32[] memory proof = _proof(j);
        uint256 already = fed.claimed(a);
        bool payable_ = mode == 0 && amount > already && finalisedRoots > 0;
        if (payable_ && amount - already > fed.rewardPool()) {
            _fail("claim: a solvent root's claim exceeds the pool");
            return;
        }
        uint256 balance = a.balance;
        uint256 pool = fed.rewardPool();
        bool ok;
        if (a == address(attacker)) {
            try attacker.attack(amount, proof) {
                ok = true;
            } catch {}
        } else {
            VM.prank(a);
            try fed.claim(amount, proof) {
                ok = true;
            } catch {}
        }
        if (!payable_) {
            _check(!ok && fed.claimed(a) == already && a.balance == balance, "claim: an invalid claim paid");
            return;
        }
        _check(ok, "claim: a valid claim failed");
        if (!ok) return;
        uint256 paid = a.balance - balance;
        received[a] += paid;
        claimedTotal += paid;
        successfulClaims += 1;
        _check(paid == amount - already, "claim: paid != cumulative - already claimed");
        _check(fed.claimed(a) == amount, "claim: claimed != cumulative");
        _check(pool - fed.rewardPool() == paid, "claim: pool decrease != payment");
    }

    function exit(uint256 actorSeed) public {
        address a = _actors[actorSeed % N_EOA]; // the attacker contract has no exit()
        Federation.PeerView memory info = fed.peerInfo(a);
        if (!info.registered || !info.active) return;
        VM.prank(a);
        fed.exit();
    }

    function withdrawStake(uint256 actorSeed) public {
        address a = _actors[actorSeed % N_EOA];
        Federation.PeerView memory info = fed.peerInfo(a);
        if (!info.registered || info.active || info.unlockAt == 0) return;
        uint256 balance = a.balance;
        bool due = block.timestamp >= info.unlockAt && info.stake > 0;
        VM.prank(a);
        try fed.withdrawStake() {
            _check(due, "withdrawStake: paid before unlock or twice");
        } catch {
            _check(!due, "withdrawStake: an unlocked stake could not be withdrawn");
        }
        uint256 paid = a.balance - balance;
        _check(paid == (due ? info.stake : 0), "withdrawStake: paid != stake");
        stakeWithdrawn += paid;
    }

    function reportEquivocation(uint256 actorSeed, uint256 reporterSeed, uint256 hashSeed) public {
        uint256 i = actorSeed % N_EOA; // signatures need the private key
        address a = _actors[i];
        Federation.PeerView memory info = fed.peerInfo(a);
        if (!info.registered) return;
        address reporter = _reporters[reporterSeed % N_REPORTERS];
        uint64 round = uint64(hashSeed % 8);
        Federation.Signed memory x = _signed(FIRST_KEY + i, round, keccak256(abi.encode("x", hashSeed)));
        Federation.Signed memory y = _signed(FIRST_KEY + i, round, keccak256(abi.encode("y", hashSeed)));
        bool due = !info.slashed && info.stake > 0;
        uint256 pool = fed.rewardPool();
        uint256 owed = fed.owed(reporter);
        VM.prank(reporter);
        try fed.reportEquivocation(a, x, y) {
            _check(due, "report: slashed twice or slashed nothing");
        } catch {
            _check(!due, "report: valid evidence was refused");
            return;
        }
        uint256 reward = (info.stake * SLASH_REPORTER_BPS) / BPS;
        slashedTotal += info.stake;
        reporterRewards += reward;
        slashedToPool += info.stake - reward;
        slashes += 1;
        _check(fed.owed(reporter) - owed == reward, "report: reporter share != stake * bps / 10000");
        _check(fed.rewardPool() - pool == info.stake - reward, "report: pool share != stake - reporter share");
        _check(fed.peerInfo(a).stake == 0 && fed.peerInfo(a).slashed, "report: stake left after slashing");
    }

    function withdrawOwed(uint256 reporterSeed) public {
        address r = _reporters[reporterSeed % N_REPORTERS];
        uint256 owed = fed.owed(r);
        if (owed == 0) return;
        uint256 balance = r.balance;
        VM.prank(r);
        fed.withdrawOwed();
        _check(r.balance - balance == owed, "withdrawOwed: paid != owed");
        owedWithdrawn += owed;
    }

    // ================================================================ views for the invariants

    function actor(uint256 i) external view returns (address) {
        return _actors[i];
    }

    function reporter(uint256 i) external view returns (address) {
        return _reporters[i];
    }

    /// Action selectors the fuzzer calls (the views above are left out).
    function actions() external pure returns (bytes4[] memory s) {
        s = new bytes4[](12);
        s[0] = this.fund.selector;
        s[1] = this.register.selector;
        s[2] = this.commit.selector;
        s[3] = this.vote.selector;
        s[4] = this.warp.selector;
        s[5] = this.failRound.selector;
        s[6] = this.claim.selector;
        s[7] = this.exit.selector;
        s[8] = this.withdrawStake.selector;
        s[9] = this.reportEquivocation.selector;
        s[10] = this.withdrawOwed.selector;
        s[11] = this.voteMany.selector;
    }

    // ================================================================ internals

    /// The round's two candidate roots: each allocates part of the pool's unallocated funds
    /// (at most rewardPerRound; the rival half as much, split differently) on top of the
    /// latest root's cumulative amounts, so every root is solvent.
    function _ensureCandidates(uint64 round) internal {
        if (_candRound == round) return;
        _candRound = round;
        uint256 outstanding = 0;
        for (uint256 i = 0; i < N_ACTORS; ++i) {
            outstanding += cumulative[_actors[i]] - fed.claimed(_actors[i]);
        }
        uint256 pool = fed.rewardPool();
        _check(pool >= outstanding, "pool below what the latest root still owes");
        uint256 unallocated = pool >= outstanding ? pool - outstanding : 0;
        for (uint256 c = 0; c < 2; ++c) {
            uint256 budget = (unallocated < REWARD_PER_ROUND ? unallocated : REWARD_PER_ROUND) >> c;
            uint256[N_ACTORS] memory weights;
            uint256 total = 0;
            for (uint256 i = 0; i < N_ACTORS; ++i) {
                weights[i] = uint256(keccak256(abi.encode(round, c, i))) % 4;
                total += weights[i];
            }
            bytes32[] memory leaves = new bytes32[](N_ACTORS);
            for (uint256 i = 0; i < N_ACTORS; ++i) {
                uint256 share = total == 0 ? 0 : (budget * weights[i]) / total;
                _candCum[c][i] = cumulative[_actors[i]] + share;
                leaves[i] = Merkle.leaf(_actors[i], _candCum[c][i]);
            }
            _candRoot[c] = Merkle.root(leaves);
            _candModel[c] = keccak256(abi.encode("model", round, c));
        }
    }

    function _proof(uint256 index) internal view returns (bytes32[] memory) {
        bytes32[] memory leaves = new bytes32[](N_ACTORS);
        for (uint256 i = 0; i < N_ACTORS; ++i) {
            leaves[i] = Merkle.leaf(_actors[i], cumulative[_actors[i]]);
        }
        return Merkle.proof(leaves, index);
    }

    function _signed(uint256 key, uint64 round, bytes32 payloadHash)
        internal
        view
        returns (Federation.Signed memory s)
    {
        s = Federation.Signed({
            round: round, payloadHash: payloadHash, payloadSize: 1000, nSamples: 60, encoding: 2, signature: ""
        });
        bytes32 digest = fed.hashUpdate(s.round, s.payloadHash, s.payloadSize, s.nSamples, s.encoding);
        (uint8 v, bytes32 r, bytes32 sig) = VM.sign(key, digest);
        s.signature = abi.encodePacked(r, sig, v);
    }

    function _check(bool ok, string memory what) internal {
        if (!ok) _fail(what);
    }

    function _fail(string memory what) internal {
        if (violations == 0) violation = what;
        violations += 1;
    }

    receive() external payable {}
}
