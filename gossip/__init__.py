"""fedchain's network layer on py-libp2p: hosts, gossipsub topics, the wire format,
payload transfer over streams, and message validation.

``gossip`` never imports ``peer``. The public surface:

* wire format (:mod:`gossip.wire`): ``UpdateAnnouncement``, ``sign_update``,
  ``recover_update_signer``, ``eip712_digest``, ``encode_arrays``, ``decode_arrays``;
* the interface ``Network`` and its implementations ``Libp2pNetwork`` (with
  ``NetworkConfig``, ``open_network``) and ``MemoryHub``/``MemoryNetwork``;
* errors rooted at ``GossipError``.

Importing the package imports libp2p (about 1.5 s).
"""

from gossip.errors import FetchError, GossipError, NetworkError, ValidationError, WireError
from gossip.interface import Network
from gossip.memory import MemoryHub, MemoryNetwork
from gossip.network import Libp2pNetwork, NetworkConfig, open_network
from gossip.topics import GossipParams, announce_topic
from gossip.wire import (
    UpdateAnnouncement,
    decode_arrays,
    eip712_digest,
    encode_arrays,
    recover_update_signer,
    sign_update,
    update_digest,
    update_struct_hash,
)

__all__ = [
    "GossipError",
    "WireError",
    "ValidationError",
    "FetchError",
    "NetworkError",
    "Network",
    "Libp2pNetwork",
    "NetworkConfig",
    "open_network",
    "GossipParams",
    "announce_topic",
    "MemoryHub",
    "MemoryNetwork",
    "UpdateAnnouncement",
    "sign_update",
    "recover_update_signer",
    "eip712_digest",
    "update_digest",
    "update_struct_hash",
    "encode_arrays",
    "decode_arrays",
]
