"""The node: shared state of one server process and the handlers it routes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

import tinychat
from tinychat.protocol import (
    SUPPORTED_VERSIONS,
    ErrorCode,
    Hello,
    KickReason,
    NodeAssignment,
    Ping,
    Pong,
    ProtocolError,
    Welcome,
    WhichNode,
)
from tinychat.server.config import NodeConfig
from tinychat.server.router import Router

if TYPE_CHECKING:
    from tinychat.server.bus.base import Bus
    from tinychat.server.connection import ChatConnection
    from tinychat.server.handlers.files import FileHandlers
    from tinychat.server.metrics import Metrics
    from tinychat.server.passwords import Passwords
    from tinychat.server.ratelimit import FailureLimiter
    from tinychat.server.sessions import Sessions
    from tinychat.server.store.blobs import BlobStore
    from tinychat.server.store.sql import SqlStore
    from tinychat.server.verify import VerificationCodes
    from tinychat.server.writer import MessageWriter

log = Logger()


@dataclass
class Services:
    """What the feature handlers work with; built once per node by the service."""

    config: NodeConfig
    clock: IReactorTime
    store: SqlStore
    bus: Bus
    passwords: Passwords
    codes: VerificationCodes
    sessions: Sessions
    writer: MessageWriter
    limiter: FailureLimiter
    metrics: Metrics
    blobs: BlobStore
    files: FileHandlers | None = None


class Node:
    """Holds the config, the live connections and the request routes of one node.

    Without `services` a node serves only the connection-level requests
    (handshake, ping, node assignment); with them, every user feature.
    """

    def __init__(self, config: NodeConfig, clock: IReactorTime | None = None,
                 services: Services | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.config = config
        self.clock: IReactorTime = clock
        self.services = services
        self.connections: set[ChatConnection] = set()
        self.public_address = config.public_address or ""
        self.router = Router()
        self.router.add(Ping, self.ping)
        self.router.add(WhichNode, self.which_node)
        if services is not None:
            from tinychat.server.handlers.accounts import Accounts
            from tinychat.server.handlers.files import FileHandlers
            from tinychat.server.handlers.friends import FriendHandlers
            from tinychat.server.handlers.groups import GroupHandlers
            from tinychat.server.handlers.messaging import MessageHandlers

            services.files = FileHandlers(services, services.blobs)
            for handlers in (Accounts(services), FriendHandlers(services), MessageHandlers(services),
                             GroupHandlers(services), services.files):
                handlers.install(self.router)

    # ------------------------------------------------------------ connections

    def welcome(self, hello: Hello) -> Welcome:
        """Pick the highest common protocol version and announce the limits."""
        common = [v for v in SUPPORTED_VERSIONS if hello.min_version <= v <= hello.max_version]
        if not common:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"client speaks {hello.min_version}-{hello.max_version}, server speaks "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))}",
            )
        config = self.config
        return Welcome(
            request_id=hello.request_id,
            version=max(common),
            server_name=f"tinychat/{tinychat.__version__}",
            node_id=config.node_id,
            max_frame_bytes=config.max_frame,
            heartbeat_interval_ms=int(config.heartbeat_interval * 1000),
            idle_timeout_ms=int(config.idle_timeout * 1000),
            file_chunk_bytes=config.file_chunk,
        )

    def connection_made(self, connection: ChatConnection) -> None:
        self.connections.add(connection)

    def connection_lost(self, connection: ChatConnection) -> None:
        self.connections.discard(connection)
        if self.services is not None and connection.session is not None:
            self.services.sessions.end(connection)

    def shutdown(self) -> None:
        """Tell logged-in clients the node is going away, then close every connection."""
        if self.services is not None:
            self.services.sessions.kick_all(KickReason.SERVER_SHUTDOWN, "the server is shutting down")
        for connection in list(self.connections):
            connection.close()

    # ------------------------------------------------------------ handlers

    def ping(self, connection: ChatConnection, request: Ping) -> Pong:
        return Pong(request_id=request.request_id)

    async def which_node(self, connection: ChatConnection, request: WhichNode) -> NodeAssignment:
        """The least-loaded live node (the StatusServer's job in the seeds)."""
        live = await self.services.bus.nodes() if self.services is not None else []
        if not live:
            return NodeAssignment(request_id=request.request_id, node_id=self.config.node_id,
                                  address=self.public_address, connections=len(self.connections))
        best = min(live, key=lambda n: (n.connections, n.node_id))
        return NodeAssignment(request_id=request.request_id, node_id=best.node_id, address=best.address,
                              connections=best.connections)
