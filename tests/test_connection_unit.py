"""Server and client connections over in-memory transports with a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test.iosim import connectedServerAndClient

from tests.in_memory import replies, server
from tinychat.client.connection import ClientConnection
from tinychat.client.errors import (
    ConnectionClosedError,
    NotLoggedInError,
    RateLimitedError,
    RequestTimeoutError,
)
from tinychat.protocol import (
    Error,
    ErrorCode,
    FrameDecoder,
    Hello,
    KickedPush,
    KickReason,
    Ping,
    Pong,
    PresencePush,
    Sync,
    Welcome,
    encode,
)
from tinychat.server.config import NodeConfig
from tinychat.server.connection import ChatConnection
from tinychat.server.node import Node

HELLO = encode(Hello(request_id=1, min_version=1, max_version=1, client_name="unit"))


def test_handshake_then_ping():
    clock = Clock()
    conn, transport = server(clock)
    conn.dataReceived(HELLO)
    (welcome,) = replies(transport)
    assert isinstance(welcome, Welcome) and welcome.node_id == "unit"
    conn.dataReceived(encode(Ping(request_id=2)))
    assert replies(transport) == [Pong(request_id=2)]


def test_frames_split_byte_by_byte_are_served():
    clock = Clock()
    conn, transport = server(clock)
    for byte in HELLO + encode(Ping(request_id=5)):
        conn.dataReceived(bytes([byte]))
    assert [type(m) for m in replies(transport)] == [Welcome, Pong]


def test_idle_connection_times_out_on_the_clock():
    clock = Clock()
    conn, transport = server(clock, idle_timeout=5.0, heartbeat_interval=1.0)
    conn.dataReceived(HELLO)
    replies(transport)
    clock.advance(4.9)
    assert not transport.disconnecting
    conn.dataReceived(encode(Ping(request_id=2)))  # activity resets the timer
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting
    assert replies(transport)[-1].code is ErrorCode.TIMEOUT


def test_malformed_frame_closes_and_later_bytes_are_ignored():
    clock = Clock()
    conn, transport = server(clock)
    conn.dataReceived(HELLO)
    replies(transport)
    conn.dataReceived(b"\x00\x03\x00\x00\x00\x01\x00" + encode(Ping(request_id=3)))
    (error,) = replies(transport)
    assert error.code is ErrorCode.MALFORMED_FRAME
    assert transport.disconnecting
    conn.dataReceived(encode(Ping(request_id=4)))
    assert replies(transport) == []


def test_malformed_request_error_echoes_its_request_id_when_readable():
    clock = Clock()
    conn, transport = server(clock)
    conn.dataReceived(HELLO)
    replies(transport)
    # SEARCH_USERS with request id 77 and a string prefix pointing past the body.
    conn.dataReceived(b"\x02\x01\x00\x00\x00\x06" + (77).to_bytes(4, "big") + b"\x00\x09")
    (error,) = replies(transport)
    assert error.request_id == 77 and error.code is ErrorCode.MALFORMED_FRAME


def test_pushes_sent_by_a_client_are_refused_but_the_connection_stays():
    clock = Clock()
    conn, transport = server(clock)
    conn.dataReceived(HELLO)
    replies(transport)
    conn.dataReceived(encode(PresencePush(uid=1, online=True)))
    (error,) = replies(transport)
    assert error.code is ErrorCode.NOT_A_REQUEST
    assert not transport.disconnecting


def test_second_hello_is_refused_but_the_connection_stays():
    clock = Clock()
    conn, transport = server(clock)
    conn.dataReceived(HELLO)
    replies(transport)
    conn.dataReceived(encode(Hello(request_id=9, min_version=1, max_version=1, client_name="x")))
    (error,) = replies(transport)
    assert error.code is ErrorCode.INVALID_ARGUMENT and not transport.disconnecting


# ---------------------------------------------------------------- client side


def client(clock: Clock) -> tuple[ClientConnection, StringTransport]:
    conn = ClientConnection(clock, request_timeout=10)
    transport = StringTransport()
    conn.makeConnection(transport)
    return conn, transport


def test_client_matches_responses_by_request_id_out_of_order():
    clock = Clock()
    conn, transport = client(clock)
    first, second = conn.request(Ping), conn.request(Ping)
    sent = FrameDecoder().feed(transport.value())
    conn.dataReceived(encode(Pong(request_id=sent[1].request_id))
                      + encode(Pong(request_id=sent[0].request_id)))
    assert first.result.request_id == sent[0].request_id
    assert second.result.request_id == sent[1].request_id


def test_client_maps_error_frames_to_typed_exceptions():
    clock = Clock()
    conn, transport = client(clock)
    d = conn.request(Sync)
    (sent,) = FrameDecoder().feed(transport.value())
    conn.dataReceived(encode(Error(request_id=sent.request_id, code=ErrorCode.NOT_LOGGED_IN,
                                   retry_after_ms=0, message="log in first")))
    failure = d.result
    d.addErrback(lambda f: None)
    assert isinstance(failure.value, NotLoggedInError) and failure.value.message == "log in first"

    d = conn.request(Ping)
    rid = FrameDecoder().feed(transport.value())[-1].request_id
    conn.dataReceived(encode(Error(request_id=rid, code=ErrorCode.RATE_LIMITED, retry_after_ms=1500,
                                   message="slow down")))
    with pytest.raises(RateLimitedError) as info:
        d.result.raiseException()
    d.addErrback(lambda f: None)
    assert info.value.retry_after == 1.5


def test_client_request_times_out_on_the_clock():
    clock = Clock()
    conn, _ = client(clock)
    d = conn.request(Ping, timeout=3)
    errors = []
    d.addErrback(errors.append)
    clock.advance(2.9)
    assert not errors
    clock.advance(0.2)
    assert errors and errors[0].check(RequestTimeoutError)


def test_client_fails_pending_requests_when_the_connection_ends():
    clock = Clock()
    conn, _ = client(clock)
    d = conn.request(Ping)
    errors = []
    d.addErrback(errors.append)
    conn.connectionLost(None)
    assert errors[0].check(ConnectionClosedError)
    assert conn.request(Ping).addErrback(errors.append) is not None
    assert errors[1].check(ConnectionClosedError)


def test_client_dispatches_pushes_to_handlers():
    clock = Clock()
    conn, _ = client(clock)
    kicks, everything = [], []
    conn.on(KickedPush, kicks.append)
    conn.on(None, everything.append)
    conn.on(PresencePush, lambda push: 1 / 0)  # a failing handler does not stop the others
    conn.dataReceived(encode(KickedPush(reason=KickReason.NEW_LOGIN, message="bye"))
                      + encode(PresencePush(uid=5, online=True)))
    assert [k.reason for k in kicks] == [KickReason.NEW_LOGIN]
    assert [type(m) for m in everything] == [KickedPush, PresencePush]


def test_client_sends_heartbeats_at_the_announced_interval():
    clock = Clock()
    conn, transport = client(clock)
    handshake = defer.ensureDeferred(conn.handshake())
    (hello,) = FrameDecoder().feed(transport.value())
    transport.clear()
    conn.dataReceived(encode(Welcome(request_id=hello.request_id, version=1, server_name="s", node_id="n",
                                     max_frame_bytes=1000, heartbeat_interval_ms=2000,
                                     idle_timeout_ms=6000, file_chunk_bytes=1)))
    assert handshake.result.heartbeat_interval_ms == 2000
    clock.advance(2.0)
    assert [type(m) for m in FrameDecoder().feed(transport.value())] == [Ping]


def test_client_and_server_in_memory():
    clock = Clock()
    node = Node(NodeConfig(node_id="mem"), clock)
    client_proto, _server_proto, pump = connectedServerAndClient(
        lambda: ChatConnection(node), lambda: ClientConnection(clock), greet=True)
    handshake = defer.ensureDeferred(client_proto.handshake())
    pump.flush()
    assert handshake.result.node_id == "mem"
    pong = client_proto.request(Ping)
    pump.flush()
    assert isinstance(pong.result, Pong)
    assert len(node.connections) == 1


def test_a_pipelined_flood_is_served_in_turns_and_in_order():
    """A client pipelining many requests gets them served a slice per reactor turn, none lost or reordered."""
    from tinychat.server.connection import FRAMES_PER_TURN

    clock = Clock()
    conn, transport = server(clock, rate_limit=0)
    conn.dataReceived(HELLO)
    replies(transport)
    count = FRAMES_PER_TURN * 3 + 5
    conn.dataReceived(b"".join(encode(Ping(request_id=i)) for i in range(1, count + 1)))
    first = replies(transport)
    assert [p.request_id for p in first] == list(range(1, FRAMES_PER_TURN + 1))
    assert conn.transport.producerState == "paused"  # the rest waits unread meanwhile
    clock.advance(0)  # the next turns (a Clock runs them all in one advance)
    served = first + replies(transport)
    assert [p.request_id for p in served] == list(range(1, count + 1))
    assert conn.transport.producerState == "producing"
