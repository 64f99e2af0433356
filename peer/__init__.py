"""fedchain's peer node: data and models, local training, robust aggregation,
the chain client, the round protocol and the command line.

Heavy modules (torch, web3, libp2p) are imported by the submodules that need them,
so that ``import peer`` and ``fedchain --help`` stay fast.
"""

from peer.errors import FedchainError

__all__ = ["FedchainError"]
