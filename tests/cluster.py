"""Several real nodes sharing one MariaDB database and one private Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.chat import SyncClient, Users
from tests.conftest import FAST_HASHING
from tests.databases import fresh_database
from tests.redis_server import RedisServer
from tinychat.testing.nodes import NodeProcess, run_node

PRESENCE_TTL = 2.0


@dataclass
class Cluster:
    database: str
    redis: RedisServer
    workdir: Path
    smtp_port: int
    nodes: dict[str, NodeProcess] = field(default_factory=dict)
    stack: ExitStack = field(default_factory=ExitStack)

    def args(self, node_id: str) -> list[str]:
        return ["--db", self.database, "--redis", self.redis.url, "--node-id", node_id,
                "--presence-ttl", str(PRESENCE_TTL), "--smtp-host", "127.0.0.1", "--smtp-port",
                str(self.smtp_port), "--heartbeat-interval", "1", "--idle-timeout", "5",
                "--metrics", "tcp:0:interface=127.0.0.1", "--max-connections-per-ip", "1000",
                "--rate-limit", "0", "--max-pending-requests", "0", *FAST_HASHING]

    def metrics(self, node_id: str) -> dict[str, float]:
        """The node's Prometheus metrics, by sample name (with labels)."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        match = self.nodes[node_id].wait_for_log(r"metrics on http tcp:([\d.]+):(\d+)/metrics")
        with urllib.request.urlopen(f"http://{match.group(1)}:{match.group(2)}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def start(self, node_id: str) -> NodeProcess:
        node = self.stack.enter_context(run_node(self.args(node_id), self.workdir))
        self.nodes[node_id] = node
        return node

    def endpoint(self, node_id: str) -> str:
        return self.nodes[node_id].endpoint

    def client(self, node_id: str) -> SyncClient:
        return SyncClient(self.endpoint(node_id))

    def users(self, code_for) -> Users:
        return Users(self.endpoint(next(iter(self.nodes))), code_for)


@contextmanager
def running_cluster(tmp_path: Path, redis: RedisServer, smtp_port: int, node_ids: tuple[str, ...]) -> Iterator[Cluster]:
    """Nodes `node_ids` on a fresh MariaDB database and `redis`, stopped and dropped afterwards."""
    with fresh_database("mysql", tmp_path) as database:
        running = Cluster(database, redis, tmp_path, smtp_port)
        with running.stack:
            for node_id in node_ids:
                running.start(node_id)
            yield running
