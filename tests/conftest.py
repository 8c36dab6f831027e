"""Shared fixtures: the reactor thread, databases, SMTP, and real nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.chat import Users
from tests.databases import fresh_database
from tests.reactor_thread import start_reactor
from tests.redis_server import RedisServer
from tinychat.server.store.sql import SqlStore
from tinychat.testing.nodes import NodeProcess, run_node

if TYPE_CHECKING:
    from tests.smtp_server import SmtpServer

pytest_plugins = ["tests.smtp_server", "tests.repl_driver"]  # smtp_server(_factory) and start_repl fixtures

# Cheap argon2id for tests: the cost parameters are measured by the benchmarks, not here.
FAST_HASHING = ["--argon2-time-cost", "1", "--argon2-memory-kib", "1024", "--argon2-parallelism", "1"]


@pytest.fixture(scope="session", autouse=True)
def reactor_thread() -> None:
    start_reactor()


@pytest.fixture
def node_factory(tmp_path: Path):
    """Start nodes with extra arguments; each listens on a free port of 127.0.0.1."""

    def start(*args: str, db: str | None = None) -> Iterator[NodeProcess]:
        database = db or f"sqlite:///{tmp_path / 'tinychat.sqlite3'}"
        return run_node(["--listen", "tcp:0:interface=127.0.0.1", "--db", database, *args], tmp_path)

    return start


@pytest.fixture
def node(node_factory) -> Iterator[NodeProcess]:
    with node_factory("--node-id", "test-node") as running:
        yield running


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory) -> Iterator[RedisServer]:
    """One private redis-server for the single-node suite (each test has its own key prefix)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server this test may stop and restart."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


# Every user-feature test runs on the embedded default, on MariaDB alone, and on
# MariaDB + Redis (the cluster bus, with one node).
BACKENDS = ["sqlite", "mysql", "mysql+redis"]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend.split("+")[0], tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "mysql"])
def store(request, tmp_path: Path) -> Iterator[SqlStore]:
    """A migrated store on a fresh database, for tests of the store itself: on SQLite and on MariaDB."""
    with fresh_database(request.param, tmp_path) as url:
        store = SqlStore(url, pool_size=2)
        store.migrate()
        yield store
        store.close()


@pytest.fixture
def backend_args(backend: str, request) -> list[str]:
    """Node options for the backend under test: the cluster bus on a private Redis when asked."""
    if "redis" not in backend:
        return []
    redis = request.getfixturevalue("shared_redis")
    return ["--redis", redis.url, "--redis-prefix", f"t{uuid.uuid4().hex[:12]}"]


def smtp_args(smtp_server: SmtpServer) -> list[str]:
    return ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_server.port)]


@pytest.fixture
def chat_node(node_factory, database: str, backend_args: list[str], smtp_server: SmtpServer) -> Iterator[NodeProcess]:
    """A node with every feature, on the backend under test, mailing codes to the test's SMTP server."""
    # Functional tests pipeline thousands of requests; the request rate limit has tests of its own.
    with node_factory("--node-id", "chat-node", *FAST_HASHING, *smtp_args(smtp_server), *backend_args,
                      "--rate-limit", "0", db=database) as running:
        yield running


@pytest.fixture
def users(chat_node: NodeProcess, smtp_server: SmtpServer) -> Iterator[Users]:
    registry = Users(chat_node.endpoint, smtp_server.code_for)
    yield registry
    registry.close()
