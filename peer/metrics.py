"""Prometheus metrics of a peer node (prometheus-client), served on ``[node] metrics_port``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

__all__ = ["PeerMetrics"]


class PeerMetrics:
    """Gauges and counters fed by the node's events; one registry per node."""

    def __init__(self, *, port: int, addr: str = "127.0.0.1") -> None:
        self.registry = CollectorRegistry()
        self.round = Gauge("fedchain_round", "Round the peer is working on", registry=self.registry)
        self.finalized = Gauge("fedchain_finalized_round", "Last finalised round held", registry=self.registry)
        self.accuracy = Gauge("fedchain_accuracy", "Test accuracy of the held model", registry=self.registry)
        self.events = Counter("fedchain_events", "Node events by kind", ["kind"], registry=self.registry)
        self.gas = Counter("fedchain_gas_used", "Gas used by this peer's transactions", registry=self.registry)
        if port:
            start_http_server(port, addr=addr, registry=self.registry)

    def observe(self, kind: str, data: dict[str, Any]) -> None:
        self.events.labels(kind=kind).inc()
        if kind == "decision":
            self.round.set(data["round"])
        elif kind in ("finalized", "synced"):
            self.finalized.set(data["round"])
            if data.get("accuracy") is not None:
                self.accuracy.set(data["accuracy"])
        elif kind == "voted" and data.get("gas"):
            self.gas.inc(data["gas"])
