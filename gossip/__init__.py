"""fedchain's network layer on py-libp2p: hosts, gossipsub topics, the wire format,
payload transfer over streams, and message validation.

``gossip`` never imports ``peer``.
"""
