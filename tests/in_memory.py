"""A node's connection on an in-memory transport, driven by a Clock: for unit tests of the connection."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tinychat.protocol import FrameDecoder
from tinychat.server.config import NodeConfig
from tinychat.server.connection import ChatConnection, ChatFactory
from tinychat.server.node import Node


def server(clock: Clock, peer: str = "192.0.2.1", factory: ChatFactory | None = None,
           **config) -> tuple[ChatConnection, StringTransport]:
    """A connection from `peer` to a node without services (or `factory`'s node), configured by `config`."""
    node = factory.node if factory is not None else Node(NodeConfig(node_id="unit", **config), clock)
    conn = factory.buildProtocol(None) if factory is not None else ChatConnection(node)
    transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
    conn.makeConnection(transport)
    return conn, transport


def replies(transport: StringTransport) -> list:
    """The frames the connection has written since the last call, decoded."""
    data = transport.value()
    transport.clear()
    return FrameDecoder().feed(data)
