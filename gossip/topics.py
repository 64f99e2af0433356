"""Topic names and the gossipsub parameters fedchain uses, with the reasons for each.

One topic family per federation, versioned and named from the chain id and the
contract address (lowercase), e.g. ``/fedchain/1/1337/0xab…cd/announce``. Only
small signed announcements travel on gossipsub; payload bytes go over the
``/fedchain/payload/1`` stream protocol (see :mod:`gossip.payload`).

Why these numbers (py-libp2p 0.8.1 defaults in brackets):

* **Mesh degree D=6, D_low=4, D_high=12** [caller must choose]: the classic
  gossipsub values. Federations are 3-200 peers; with announcements of ~220
  bytes, redundant delivery costs nothing and a degree of 6 keeps delivery alive
  when a third of the mesh is dead or malicious.
* **Heartbeat 1 s** [120 s]: meshes form within a second of joining, and
  IHAVE/IWANT repair of a missed announcement takes ~1 s instead of minutes. The
  heartbeat is cheap at our topic count (one topic).
* **gossip window 3, history 5, fanout TTL 60 s**: gossipsub's defaults; an
  announcement missed in the mesh is offered by IHAVE for 3 heartbeats.
* **Rate limit 200 announcements/s per forwarding peer** [10]: the library counts
  messages *forwarded* by a neighbour, not only its own. When a round's training
  ends, one mesh neighbour may relay every committee member's announcement within
  a second, so the limit is sized at ~2x the largest federation we target (100
  peers). A real flood (thousands/s) is still cut.
* **Peer scoring** [thresholds -inf, i.e. off]: only P4 (invalid messages) is
  weighted, 10 points per invalid message, capped at 100 messages, decaying by
  0.97 per heartbeat (half-life ~23 s). Thresholds: gossip -10 (after 2 invalid
  messages we stop gossiping to the peer) and graylist -40 (after 5 we ignore
  the peer: its messages are dropped before validation and its GRAFTs refused).
  py-libp2p applies ``publish_threshold`` to messages *received from* a peer (in
  go-libp2p it gates our own publishing), so there it is a graylist for
  messages; we set it equal to ``graylist_threshold`` so that both take effect at
  the same score (with publish above graylist, the peer's messages would stop
  being validated before its score could ever reach the graylist). Honest peers
  never forward invalid messages (validation runs before forwarding), so a score
  this low means the peer itself sent them; a peer whose view of the round lags
  by a round costs at most a few points that decay within a minute.
* **Gossipsub v1.1 only** [v1.2 and v1.1 offered]: v1.2's one addition,
  IDONTWANT, makes every peer send one control RPC to each mesh peer for every
  message it receives, so that they skip sending it a large message it already
  has. Our messages are ~220-byte announcements, and py-libp2p builds and
  checks a signed peer record for each of those RPCs: in the 10-peer benchmark
  they cost about 30% of the CPU of a round with small payloads, for nothing.
* Message ids are py-libp2p's default (origin peer id + seqno); replays of the
  same announcement under a new seqno are removed by :class:`gossip.network`'s
  own duplicate filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from eth_utils import to_checksum_address
from libp2p.custom_types import TProtocol
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams

__all__ = [
    "TOPIC_VERSION",
    "GOSSIPSUB_PROTOCOL_IDS",
    "GossipParams",
    "announce_topic",
    "score_params",
    "build_gossipsub",
]

TOPIC_VERSION = 1
GOSSIPSUB_PROTOCOL_IDS: tuple[TProtocol, ...] = (PROTOCOL_ID_V11,)


@dataclass(frozen=True, slots=True)
class GossipParams:
    """Gossipsub tunables; the defaults are explained in the module docstring."""

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval: int = 1
    gossip_window: int = 3
    gossip_history: int = 5
    fanout_ttl: int = 60
    max_announcements_per_second: float = 200.0
    invalid_message_weight: float = 10.0
    invalid_message_cap: float = 100.0
    invalid_message_decay: float = 0.97
    gossip_threshold: float = -10.0
    publish_threshold: float = -40.0
    graylist_threshold: float = -40.0

    def __post_init__(self) -> None:
        if not 0 < self.degree_low <= self.degree <= self.degree_high:
            raise ValueError(f"need 0 < degree_low <= degree <= degree_high, got "
                             f"{self.degree_low}, {self.degree}, {self.degree_high}")
        if not self.graylist_threshold <= self.publish_threshold < self.gossip_threshold <= 0:
            raise ValueError("need graylist <= publish < gossip <= 0 thresholds, got "
                             f"{self.graylist_threshold}, {self.publish_threshold}, "
                             f"{self.gossip_threshold}")
        if self.heartbeat_interval < 1:
            raise ValueError(f"heartbeat_interval must be >= 1 s, got {self.heartbeat_interval}")


def announce_topic(chain_id: int, contract: str) -> str:
    """The announcement topic of the federation (``contract`` in lowercase hex)."""
    return f"/fedchain/{TOPIC_VERSION}/{chain_id}/{to_checksum_address(contract).lower()}/announce"


def score_params(params: GossipParams) -> ScoreParams:
    """Peer-score parameters: only invalid messages count (see the module docstring)."""
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(
            weight=params.invalid_message_weight,
            cap=params.invalid_message_cap,
            decay=params.invalid_message_decay,
        ),
        publish_threshold=params.publish_threshold,
        gossip_threshold=params.gossip_threshold,
        graylist_threshold=params.graylist_threshold,
        accept_px_threshold=math.inf,  # peer exchange is off (do_px=False) anyway
    )


def build_gossipsub(params: GossipParams) -> GossipSub:
    """A GossipSub router configured from ``params``."""
    return GossipSub(
        protocols=list(GOSSIPSUB_PROTOCOL_IDS),
        degree=params.degree,
        degree_low=params.degree_low,
        degree_high=params.degree_high,
        time_to_live=params.fanout_ttl,
        gossip_window=params.gossip_window,
        gossip_history=params.gossip_history,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=params.heartbeat_interval,
        score_params=score_params(params),
        spam_protection_enabled=True,
        max_messages_per_topic_per_second=params.max_announcements_per_second,
    )
