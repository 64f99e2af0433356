"""The exception root of the ``gossip`` package.

    GossipError
     ├── WireError        bytes from the network (or a caller) do not decode strictly;
     │                    the message names the field
     ├── ValidationError  a decoded announcement fails a federation rule
     │                    (chain, contract, round window, signature, allowed sender);
     │                    ``reason`` is the counter name of the drop
     ├── FetchError       a payload could not be fetched from any provider
     └── NetworkError     the host cannot start, listen, dial, or was used while stopped

libp2p, msgpack and eth-account exceptions are translated at the module that calls
them, with ``raise X from exc``.
"""

from __future__ import annotations

__all__ = ["GossipError", "WireError", "ValidationError", "FetchError", "NetworkError"]


class GossipError(Exception):
    """Root of every error the gossip package raises on purpose."""


class WireError(GossipError):
    """Bytes do not decode as the expected wire message; the message names the field."""


class ValidationError(GossipError):
    """An announcement breaks a federation rule; ``reason`` names the drop counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FetchError(GossipError):
    """A payload could not be obtained (no provider had it, or every copy was bad)."""


class NetworkError(GossipError):
    """The host failed to start, listen or dial, or a method needs a running network."""
