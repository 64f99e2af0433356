// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Federation: one federated-learning federation's rounds, stakes and rewards.
/// @notice Peers register with a stake. Each round, a committee derived from the round's seed
/// commits update hashes; every registered peer aggregates the committed updates off chain and
/// votes for (model hash, rewards root); a quorum on one pair finalises the round and opens the
/// next one at once. Rewards are pulled with a Merkle proof of the peer's cumulative earnings.
/// @dev Gas: only the current round lives in storage (one packed slot), commitments live in
/// events, and per-peer flags are packed into the peer's record, so commit, vote and finalise
/// cost the same whatever the number of peers. Vote tallies use a fixed table of slots that is
/// initialised at deployment, so no vote pays for a fresh storage slot.
contract Federation is EIP712, ReentrancyGuard {
    // ---------------------------------------------------------------- types

    struct Params {
        bytes32 modelSpecHash;
        bytes32 genesisModelHash;
        uint64 commitWindow;
        uint64 voteWindow;
        uint32 committeeSize;
        uint16 quorumBps;
        uint128 rewardPerRound;
        uint128 minStake;
        uint64 unbondingDelay;
        uint32 maxRounds;
        uint16 contributorShareBps;
        uint16 slashReporterBps;
    }

    /// Packed state of the current round (one storage slot).
    struct Round {
        uint64 seed;
        uint40 openedAt;
        uint40 commitDeadline; // lowered to the closing block's time when every member committed
        uint32 nPeers; // peers registered at opening (indices below it take part)
        uint32 quorumVotes;
        uint16 committed;
        uint16 committeeExpected;
        uint8 status; // Status
    }

    /// Packed record of a peer (one storage slot); stake and multiaddrs are kept apart.
    struct Peer {
        uint32 index1; // 1-based index in peerList; 0 = never registered
        bool active;
        bool slashed;
        uint40 unlockAt; // set by exit(): stake withdrawable from then on
        uint64 lastCommitRound;
        uint64 lastVoteRound;
    }

    struct RoundView {
        uint64 round;
        uint64 seed;
        uint40 openedAt;
        uint40 commitDeadline;
        uint40 voteDeadline;
        uint32 nPeers;
        uint16 committeeExpected;
        uint16 committed;
        uint32 quorumVotes;
        uint8 phase; // Phase
    }

    struct PeerView {
        uint32 index;
        bool registered;
        bool active;
        bool slashed;
        uint40 unlockAt;
        uint64 lastCommitRound;
        uint64 lastVoteRound;
        uint256 stake;
        bytes multiaddrs;
    }

    /// One signed update announcement, as gossiped; used as evidence of equivocation.
    struct Signed {
        uint64 round;
        bytes32 payloadHash;
        uint64 payloadSize;
        uint64 nSamples;
        uint8 encoding;
        bytes signature;
    }

    enum Status {
        NotStarted,
        Open,
        Done
    }

    enum Phase {
        NotStarted,
        Commit,
        Vote,
        Expired,
        Done
    }

    // ---------------------------------------------------------------- errors

    error InvalidParams(string reason);
    error AlreadyRegistered(address peer);
    error NotRegistered(address peer);
    error NotActive(address peer);
    error InsufficientStake(uint256 sent, uint256 required);
    error AlreadyStarted();
    error NotEnoughPeers(uint32 active, uint32 required);
    error FederationDone();
    error WrongRound(uint64 given, uint64 current);
    error NotCommitPhase(uint64 round);
    error NotVotePhase(uint64 round);
    error NotInCommittee(address peer, uint64 round);
    error NotEligibleVoter(address peer, uint64 round);
    error AlreadyCommitted(address peer, uint64 round);
    error AlreadyVoted(address peer, uint64 round);
    error TooManyCandidates(uint64 round);
    error RoundNotExpired(uint64 round, uint40 voteDeadline);
    error InvalidProof(address account, uint256 cumulativeAmount);
    error NothingToClaim(address account, uint256 cumulativeAmount, uint256 alreadyClaimed);
    error InsufficientPool(uint256 requested, uint256 available);
    error StillBonded(address peer, uint40 unlockAt);
    error NotExited(address peer);
    error NothingToWithdraw(address account);
    error TransferFailed(address to, uint256 amount);
    error NotEquivocation(address peer);
    error BadSignature(address expected, address recovered);
    error ZeroAmount();
    error AlreadySlashed(address peer);
    error NothingToSlash(address peer);

    // ---------------------------------------------------------------- events

    event Funded(address indexed from, uint256 amount, uint256 pool);
    event Registered(address indexed peer, uint32 index, uint256 stake, bytes multiaddrs);
    event MultiaddrsUpdated(address indexed peer, bytes multiaddrs);
    event Exited(address indexed peer, uint40 unlockAt);
    event StakeWithdrawn(address indexed peer, uint256 amount);
    event RoundOpened(
        uint64 indexed round,
        uint64 seed,
        uint32 nPeers,
        uint16 committeeExpected,
        uint32 quorumVotes,
        uint40 commitDeadline
    );
    event UpdateCommitted(uint64 indexed round, address indexed peer, bytes32 payloadHash, uint64 nSamples);
    event CommitPhaseClosed(uint64 indexed round, uint16 committed);
    event VoteCast(
        uint64 indexed round, address indexed voter, bytes32 modelHash, bytes32 rewardsRoot, uint32 votes
    );
    event RoundFinalized(uint64 indexed round, bytes32 modelHash, bytes32 rewardsRoot, uint32 votes);
    event RoundFailed(uint64 indexed round);
    event Claimed(address indexed account, uint256 amount, uint256 cumulativeAmount);
    event Slashed(address indexed peer, uint64 indexed round, uint256 amount, address indexed reporter, uint256 reward);
    event OwedWithdrawn(address indexed account, uint256 amount);

    // ---------------------------------------------------------------- storage

    // Slither note (devnet/slither.sh fails on any high or medium finding; the suppressed ones):
    // - incorrect-equality: `_round` and `_peers` pack timestamps (openedAt, commitDeadline,
    //   unlockAt) with other fields, so Slither taints the whole record with block.timestamp and
    //   flags every `==` on it. The flagged comparisons are on status, index and counter fields,
    //   never on a time or a balance.
    // - weak-prng: the committee seed is keccak(prevrandao, previous blockhash, round), as the
    //   design specifies (DESIGN.md, "Selection"). Whoever sends the transaction that opens a
    //   round (the finalising vote or failRound), or builds its block, can choose among the
    //   seeds of the blocks it could land in. That picks only which stakers train in the next
    //   round; it does not decide whose votes count. A VRF or commit-reveal is out of scope.
    // - arbitrary-send-eth: _payCaller pays msg.sender only, the amount its caller (claim,
    //   withdrawStake, withdrawOwed) recorded for msg.sender and zeroed first; Slither accepts a
    //   msg.sender destination only when the same function also indexes a mapping by msg.sender.

    bytes32 private constant UPDATE_TYPEHASH = keccak256(
        "Update(uint256 round,bytes32 payloadHash,uint256 payloadSize,uint256 nSamples,uint8 encoding)"
    );
    uint256 private constant TALLY_SLOTS = 16;
    uint256 private constant BPS = 10_000;
    bytes32 public constant NO_REWARDS_ROOT = keccak256("fedchain.rewards.none");

    address public immutable operator;
    bytes32 private immutable _modelSpecHash;
    bytes32 private immutable _genesisModelHash;
    uint64 private immutable _commitWindow;
    uint64 private immutable _voteWindow;
    uint32 private immutable _committeeSize;
    uint16 private immutable _quorumBps;
    uint128 private immutable _rewardPerRound;
    uint128 private immutable _minStake;
    uint64 private immutable _unbondingDelay;
    uint32 private immutable _maxRounds;
    uint16 private immutable _contributorShareBps;
    uint16 private immutable _slashReporterBps;

    Round private _round;
    uint64 public currentRound;
    uint64 public lastFinalizedRound;
    uint32 public activePeers;
    /// Rewards root of the latest finalised round. Before any, it holds NO_REWARDS_ROOT (a value
    /// no proof can reach), so that the first finalisation updates a slot instead of creating one.
    bytes32 public latestRewardsRoot;
    uint256 public rewardPool;

    /// Tally table: each slot packs (uint192 candidate key | uint32 round | uint32 votes).
    /// Slots are never zero (initialised in the constructor), so a vote costs an update, not
    /// a new slot. A slot whose round tag is not the current round is free.
    uint256[TALLY_SLOTS] private _tally;

    address[] private _peerList;
    mapping(address => Peer) private _peers;
    mapping(address => uint256) private _stake;
    mapping(address => bytes) private _multiaddrs;
    mapping(uint64 => bytes32) public finalizedModel;
    mapping(address => uint256) public claimed;
    mapping(address => uint256) public owed;

    // ---------------------------------------------------------------- setup

    constructor(Params memory p) EIP712("fedchain", "1") {
        if (p.commitWindow == 0) revert InvalidParams("commitWindow must be > 0");
        if (p.voteWindow == 0) revert InvalidParams("voteWindow must be > 0");
        if (p.committeeSize == 0) revert InvalidParams("committeeSize must be > 0");
        if (p.committeeSize > type(uint16).max) revert InvalidParams("committeeSize must fit uint16");
        if (p.quorumBps == 0 || p.quorumBps > BPS) revert InvalidParams("quorumBps must be in 1..10000");
        if (p.contributorShareBps > BPS) revert InvalidParams("contributorShareBps must be <= 10000");
        if (p.slashReporterBps > BPS) revert InvalidParams("slashReporterBps must be <= 10000");
        if (p.genesisModelHash == bytes32(0)) revert InvalidParams("genesisModelHash must be set");
        operator = msg.sender;
        _modelSpecHash = p.modelSpecHash;
        _genesisModelHash = p.genesisModelHash;
        _commitWindow = p.commitWindow;
        _voteWindow = p.voteWindow;
        _committeeSize = p.committeeSize;
        _quorumBps = p.quorumBps;
        _rewardPerRound = p.rewardPerRound;
        _minStake = p.minStake;
        _unbondingDelay = p.unbondingDelay;
        _maxRounds = p.maxRounds;
        _contributorShareBps = p.contributorShareBps;
        _slashReporterBps = p.slashReporterBps;
        latestRewardsRoot = NO_REWARDS_ROOT;
        for (uint256 i = 0; i < TALLY_SLOTS; ++i) {
            _tally[i] = uint256(type(uint32).max) << 32; // round tag 0xffffffff: free, non-zero
        }
    }

    /// Adds to the reward pool.
    function fund() external payable {
        if (msg.value == 0) revert ZeroAmount();
        rewardPool += msg.value;
        emit Funded(msg.sender, msg.value, rewardPool);
    }

    // ---------------------------------------------------------------- membership

    /// Registers the caller as a peer with a stake of at least minStake; `multiaddrs` is the
    /// peer's libp2p addresses (newline-separated UTF-8), so the chain doubles as a directory.
    function register(bytes calldata multiaddrs) external payable {
        Peer storage p = _peers[msg.sender];
        if (p.index1 != 0) revert AlreadyRegistered(msg.sender);
        if (msg.value < _minStake) revert InsufficientStake(msg.value, _minStake);
        _peerList.push(msg.sender);
        uint32 index = uint32(_peerList.length - 1);
        p.index1 = index + 1;
        p.active = true;
        activePeers += 1;
        _stake[msg.sender] = msg.value;
        _multiaddrs[msg.sender] = multiaddrs;
        emit Registered(msg.sender, index, msg.value, multiaddrs);
    }

    function setMultiaddrs(bytes calldata multiaddrs) external {
        // slither-disable-next-line incorrect-equality (no time or balance compared: see the Slither note above the storage)
        if (_peers[msg.sender].index1 == 0) revert NotRegistered(msg.sender);
        _multiaddrs[msg.sender] = multiaddrs;
        emit MultiaddrsUpdated(msg.sender, multiaddrs);
    }

    /// Leaves the federation at once; the stake unlocks after the unbonding delay, so a peer
    /// cannot escape a slashing by leaving.
    function exit() external {
        Peer storage p = _peers[msg.sender];
        if (p.index1 == 0) revert NotRegistered(msg.sender);
        if (!p.active) revert NotActive(msg.sender);
        p.active = false;
        p.unlockAt = uint40(block.timestamp + _unbondingDelay);
        activePeers -= 1;
        emit Exited(msg.sender, p.unlockAt);
    }

    function withdrawStake() external nonReentrant {
        Peer storage p = _peers[msg.sender];
        if (p.index1 == 0) revert NotRegistered(msg.sender);
        if (p.active || p.unlockAt == 0) revert NotExited(msg.sender);
        if (block.timestamp < p.unlockAt) revert StillBonded(msg.sender, p.unlockAt);
        uint256 amount = _stake[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        _stake[msg.sender] = 0;
        emit StakeWithdrawn(msg.sender, amount);
        _payCaller(amount);
    }

    // ---------------------------------------------------------------- rounds

    /// Opens round 1: the operator at any time, anyone once committeeSize peers are active.
    function start() external {
        if (currentRound != 0) revert AlreadyStarted();
        if (msg.sender != operator && activePeers < _committeeSize) {
            revert NotEnoughPeers(activePeers, _committeeSize);
        }
        if (activePeers == 0) revert NotEnoughPeers(0, 1);
        _openRound(1);
    }

    /// Commits the hash of the caller's update for `round` (committee members only, once).
    function commitUpdate(uint64 round, bytes32 payloadHash, uint64 nSamples) external {
        Round memory r = _round;
        _checkRound(round, r);
        if (!_commitOpen(r)) revert NotCommitPhase(round);
        Peer storage p = _peers[msg.sender];
        Peer memory pm = p;
        if (!_isMember(pm, r)) revert NotInCommittee(msg.sender, round);
        if (pm.lastCommitRound == round) revert AlreadyCommitted(msg.sender, round);
        p.lastCommitRound = round;
        r.committed += 1;
        // slither-disable-next-line incorrect-equality (no time or balance compared: see the Slither note above the storage)
        bool closes = r.committed == r.committeeExpected;
        if (closes) r.commitDeadline = uint40(block.timestamp);
        _round = r;
        emit UpdateCommitted(round, msg.sender, payloadHash, nSamples);
        if (closes) emit CommitPhaseClosed(round, r.committed);
    }

    /// Votes for the aggregate of `round`. At quorum on one (modelHash, rewardsRoot) pair the
    /// round is finalised and the next one opens in the same transaction.
    function voteAggregate(uint64 round, bytes32 modelHash, bytes32 rewardsRoot) external {
        Round memory r = _round;
        _checkRound(round, r);
        if (_commitOpen(r) || block.timestamp >= uint256(r.commitDeadline) + _voteWindow) {
            revert NotVotePhase(round);
        }
        Peer storage p = _peers[msg.sender];
        Peer memory pm = p;
        if (!pm.active || pm.index1 == 0 || pm.index1 > r.nPeers) revert NotEligibleVoter(msg.sender, round);
        if (pm.lastVoteRound == round) revert AlreadyVoted(msg.sender, round);
        p.lastVoteRound = round;

        uint32 votes = _countVote(round, modelHash, rewardsRoot);
        emit VoteCast(round, msg.sender, modelHash, rewardsRoot, votes);
        if (votes >= r.quorumVotes) {
            finalizedModel[round] = modelHash;
            latestRewardsRoot = rewardsRoot;
            lastFinalizedRound = round;
            emit RoundFinalized(round, modelHash, rewardsRoot, votes);
            _advance(round);
        }
    }

    /// Marks the current round failed once its vote window closed without a quorum; the model
    /// stays M(r-1) and the next round opens at once. Anyone may call it.
    function failRound(uint64 round) external {
        Round memory r = _round;
        _checkRound(round, r);
        uint40 voteDeadline = uint40(uint256(r.commitDeadline) + _voteWindow);
        if (block.timestamp < voteDeadline) revert RoundNotExpired(round, voteDeadline);
        emit RoundFailed(round);
        _advance(round);
    }

    // ---------------------------------------------------------------- rewards and slashing

    /// Pays the caller the difference between `cumulativeAmount` (proven against the latest
    /// finalised rewards root) and what the caller already claimed.
    function claim(uint256 cumulativeAmount, bytes32[] calldata proof) external nonReentrant {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(msg.sender, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, latestRewardsRoot, leaf)) {
            revert InvalidProof(msg.sender, cumulativeAmount);
        }
        uint256 already = claimed[msg.sender];
        if (cumulativeAmount <= already) revert NothingToClaim(msg.sender, cumulativeAmount, already);
        uint256 amount = cumulativeAmount - already;
        if (amount > rewardPool) revert InsufficientPool(amount, rewardPool);
        claimed[msg.sender] = cumulativeAmount;
        rewardPool -= amount;
        emit Claimed(msg.sender, amount, cumulativeAmount);
        _payCaller(amount);
    }

    /// Slashes `peer` given two different update payload hashes it signed for one round. The
    /// reporter is owed slashReporterBps of the stake (pulled with withdrawOwed); the rest goes
    /// to the reward pool. The peer leaves every committee and vote from then on.
    function reportEquivocation(address peer, Signed calldata a, Signed calldata b) external {
        Peer storage p = _peers[peer];
        if (p.index1 == 0) revert NotRegistered(peer);
        if (a.round != b.round || a.payloadHash == b.payloadHash) revert NotEquivocation(peer);
        _checkSigner(peer, a);
        _checkSigner(peer, b);
        uint256 amount = _stake[peer];
        if (p.slashed) revert AlreadySlashed(peer);
        if (amount == 0) revert NothingToSlash(peer);
        uint256 reward = (amount * _slashReporterBps) / BPS;
        _stake[peer] = 0;
        p.slashed = true;
        if (p.active) {
            p.active = false;
            activePeers -= 1;
        }
        owed[msg.sender] += reward;
        rewardPool += amount - reward;
        emit Slashed(peer, a.round, amount, msg.sender, reward);
    }

    function withdrawOwed() external nonReentrant {
        uint256 amount = owed[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        owed[msg.sender] = 0;
        emit OwedWithdrawn(msg.sender, amount);
        _payCaller(amount);
    }

    // ---------------------------------------------------------------- views

    function params() external view returns (Params memory) {
        return Params({
            modelSpecHash: _modelSpecHash,
            genesisModelHash: _genesisModelHash,
            commitWindow: _commitWindow,
            voteWindow: _voteWindow,
            committeeSize: _committeeSize,
            quorumBps: _quorumBps,
            rewardPerRound: _rewardPerRound,
            minStake: _minStake,
            unbondingDelay: _unbondingDelay,
            maxRounds: _maxRounds,
            contributorShareBps: _contributorShareBps,
            slashReporterBps: _slashReporterBps
        });
    }

    /// Hash of the latest finalised model: M(lastFinalizedRound), or the genesis model.
    function latestModelHash() external view returns (bytes32) {
        uint64 r = lastFinalizedRound;
        return r == 0 ? _genesisModelHash : finalizedModel[r];
    }

    // slither-disable-next-line incorrect-equality (no time or balance compared: see the Slither note above the storage)
    function roundState() external view returns (RoundView memory v) {
        Round memory r = _round;
        v.round = currentRound;
        v.seed = r.seed;
        v.openedAt = r.openedAt;
        v.commitDeadline = r.commitDeadline;
        v.voteDeadline = r.status == uint8(Status.NotStarted) ? 0 : uint40(uint256(r.commitDeadline) + _voteWindow);
        v.nPeers = r.nPeers;
        v.committeeExpected = r.committeeExpected;
        v.committed = r.committed;
        v.quorumVotes = r.quorumVotes;
        if (r.status == uint8(Status.NotStarted)) v.phase = uint8(Phase.NotStarted);
        else if (r.status == uint8(Status.Done)) v.phase = uint8(Phase.Done);
        else if (_commitOpen(r)) v.phase = uint8(Phase.Commit);
        else if (block.timestamp < v.voteDeadline) v.phase = uint8(Phase.Vote);
        else v.phase = uint8(Phase.Expired);
    }

    function peerCount() external view returns (uint256) {
        return _peerList.length;
    }

    function peerAt(uint256 index) external view returns (address) {
        return _peerList[index];
    }

    function peerInfo(address peer) external view returns (PeerView memory v) {
        Peer memory p = _peers[peer];
        // slither-disable-next-line incorrect-equality (no time or balance compared: see the Slither note above the storage)
        v.index = p.index1 == 0 ? 0 : p.index1 - 1;
        v.registered = p.index1 != 0;
        v.active = p.active;
        v.slashed = p.slashed;
        v.unlockAt = p.unlockAt;
        v.lastCommitRound = p.lastCommitRound;
        v.lastVoteRound = p.lastVoteRound;
        v.stake = _stake[peer];
        v.multiaddrs = _multiaddrs[peer];
    }

    function isCommitteeMember(address peer) external view returns (bool) {
        Round memory r = _round;
        // slither-disable-next-line incorrect-equality (no time or balance compared: see the Slither note above the storage)
        return r.status == uint8(Status.Open) && _isMember(_peers[peer], r);
    }

    function candidateVotes(bytes32 modelHash, bytes32 rewardsRoot) external view returns (uint32) {
        uint192 key = _candidateKey(modelHash, rewardsRoot);
        uint256 tag = uint256(uint32(currentRound));
        for (uint256 i = 0; i < TALLY_SLOTS; ++i) {
            uint256 slot = _tally[i];
            if (uint192(slot >> 64) == key && ((slot >> 32) & 0xffffffff) == tag) return uint32(slot);
        }
        return 0;
    }

    /// The EIP-712 digest a peer signs for an update announcement.
    function hashUpdate(uint64 round, bytes32 payloadHash, uint64 payloadSize, uint64 nSamples, uint8 encoding)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(UPDATE_TYPEHASH, uint256(round), payloadHash, uint256(payloadSize), uint256(nSamples), encoding))
        );
    }

    // ---------------------------------------------------------------- internals

    function _checkRound(uint64 round, Round memory r) private view {
        // slither-disable-next-line incorrect-equality (no time or balance compared: see the Slither note above the storage)
        if (r.status == uint8(Status.Done)) revert FederationDone();
        if (round != currentRound || r.status != uint8(Status.Open)) revert WrongRound(round, currentRound);
    }

    function _commitOpen(Round memory r) private view returns (bool) {
        return block.timestamp < r.commitDeadline && r.committed < r.committeeExpected;
    }

    /// Committee rule, mirrored off chain: a window of committeeSize consecutive indices
    /// (mod nPeers) starting at seed % nPeers; inactive peers in the window are skipped.
    function _isMember(Peer memory p, Round memory r) private view returns (bool) {
        // slither-disable-next-line incorrect-equality (no time or balance compared: see the Slither note above the storage)
        if (!p.active || p.index1 == 0 || p.index1 > r.nPeers) return false;
        uint256 n = r.nPeers;
        if (_committeeSize >= n) return true;
        uint256 i = p.index1 - 1;
        // slither-disable-next-line weak-prng (by design: see the Slither note above the storage)
        return ((i + n - (uint256(r.seed) % n)) % n) < _committeeSize;
    }

    function _candidateKey(bytes32 modelHash, bytes32 rewardsRoot) private pure returns (uint192) {
        return uint192(uint256(keccak256(abi.encode(modelHash, rewardsRoot))));
    }

    function _countVote(uint64 round, bytes32 modelHash, bytes32 rewardsRoot) private returns (uint32) {
        uint192 key = _candidateKey(modelHash, rewardsRoot);
        uint256 tag = uint256(uint32(round));
        uint256 free = TALLY_SLOTS;
        for (uint256 i = 0; i < TALLY_SLOTS; ++i) {
            uint256 slot = _tally[i];
            if (((slot >> 32) & 0xffffffff) == tag) {
                if (uint192(slot >> 64) == key) {
                    uint32 votes = uint32(slot) + 1;
                    _tally[i] = (slot & ~uint256(0xffffffff)) | votes;
                    return votes;
                }
            } else if (free == TALLY_SLOTS) {
                free = i;
                break; // slots are filled in order within a round: the first free one ends the search
            }
        }
        if (free == TALLY_SLOTS) revert TooManyCandidates(round);
        _tally[free] = (uint256(key) << 64) | (tag << 32) | 1;
        return 1;
    }

    function _advance(uint64 round) private {
        if (_maxRounds != 0 && round >= _maxRounds) {
            _round.status = uint8(Status.Done);
            return;
        }
        _openRound(round + 1);
    }

    function _openRound(uint64 round) private {
        uint32 n = uint32(_peerList.length);
        uint32 active = activePeers;
        uint64 seed = uint64(uint256(keccak256(abi.encode(block.prevrandao, blockhash(block.number - 1), round))));
        uint16 expected = uint16(active < _committeeSize ? active : _committeeSize);
        uint32 quorum = uint32((uint256(active) * _quorumBps + BPS - 1) / BPS);
        if (quorum == 0) quorum = 1;
        uint40 deadline = uint40(block.timestamp + _commitWindow);
        currentRound = round;
        _round = Round({
            seed: seed,
            openedAt: uint40(block.timestamp),
            commitDeadline: deadline,
            nPeers: n,
            quorumVotes: quorum,
            committed: 0,
            committeeExpected: expected,
            status: uint8(Status.Open)
        });
        emit RoundOpened(round, seed, n, expected, quorum, deadline);
    }

    function _checkSigner(address peer, Signed calldata s) private view {
        bytes32 digest = hashUpdate(s.round, s.payloadHash, s.payloadSize, s.nSamples, s.encoding);
        // slither-disable-next-line unused-return (the third value only details `err`; any error is BadSignature)
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, s.signature);
        if (err != ECDSA.RecoverError.NoError || recovered != peer) revert BadSignature(peer, recovered);
    }

    /// Pays `amount` to the caller: every payment here is pulled by its recipient, never sent
    /// to an address given as an argument.
    function _payCaller(uint256 amount) private {
        // slither-disable-next-line arbitrary-send-eth (the caller, paid what is recorded for it)
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }
}
