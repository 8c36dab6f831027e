"""Prometheus metrics of a node, served over HTTP with `--metrics ENDPOINT`.

Most figures are read from counters the node keeps anyway, at scrape time, so
that the message path pays nothing for them; only store batches (a histogram
observation per batch) and errors (rare) are recorded as they happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request

if TYPE_CHECKING:
    from tinychat.server.node import Node


class Metrics:
    """The node's registry: live figures plus batch and error observations."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batch_messages = Histogram(
            "tinychat_store_batch_messages", "Messages per group-committed store batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=self.registry)
        self.batch_seconds = Histogram(
            "tinychat_store_batch_seconds", "Duration of a store batch, queue to commit",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=self.registry)
        self.errors = Counter("tinychat_errors_total", "Errors sent to clients, by code", ["code"],
                              registry=self.registry)
        self.logins = Counter("tinychat_logins_total", "Successful logins", registry=self.registry)
        self.pushes_out = 0

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_messages.observe(size)
        self.batch_seconds.observe(seconds)

    def watch(self, node: Node) -> None:
        """Read the node's own counters at scrape time."""
        self.registry.register(_NodeCollector(node, self))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _NodeCollector:
    def __init__(self, node: Node, metrics: Metrics) -> None:
        self.node = node
        self.metrics = metrics

    def collect(self) -> Iterator:
        node = self.node
        yield GaugeMetricFamily("tinychat_connections", "Open client connections", value=len(node.connections))
        services = node.services
        if services is None:
            return
        yield GaugeMetricFamily("tinychat_sessions", "Logged-in sessions on this node",
                                value=services.sessions.count)
        yield CounterMetricFamily("tinychat_messages_in", "Messages stored (acked) by this node",
                                  value=services.writer.messages)
        yield CounterMetricFamily("tinychat_store_batches", "Store batches committed", value=services.writer.batches)
        yield CounterMetricFamily("tinychat_pushes_out", "Push frames written to local sessions",
                                  value=services.sessions.pushes_out)
        bus = services.bus
        for name, help_text in (("published", "Frames published to other nodes"),
                                ("received", "Frames received from other nodes"),
                                ("publish_errors", "Publishes that failed (bus down)")):
            if hasattr(bus, name):
                yield CounterMetricFamily(f"tinychat_bus_{name}", help_text, value=getattr(bus, name))


class MetricsResource(Resource):
    """GET /metrics in Prometheus text format (rendered on the reactor: it is cheap)."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return self.metrics.render()


def metrics_site(metrics: Metrics):
    from twisted.web.server import Site

    root = Resource()
    root.putChild(b"metrics", MetricsResource(metrics))
    site = Site(root)
    site.noisy = False
    return site
