"""Limits against floods, slowloris, connection hoarding and clients that never read.

The pieces of tinychat.server.limits and their wiring in ChatConnection are
checked on a fake clock with in-memory transports; then each limit once more
against a real node, over sockets.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from tests.conftest import FAST_HASHING
from tests.in_memory import replies, server
from tinychat.protocol import (
    Error,
    ErrorCode,
    Hello,
    ListFriends,
    MessageAck,
    NodeAssignment,
    Ok,
    Ping,
    Pong,
    PresencePush,
    RespondFriendRequest,
    SendFriendRequest,
    SendMessage,
    WhichNode,
    encode,
)
from tinychat.server.config import NodeConfig
from tinychat.server.connection import ChatConnection, ChatFactory
from tinychat.server.limits import (
    Deadline,
    OutgoingBudget,
    OutgoingGuard,
    PeerCounter,
    RequestLimiter,
    TokenBucket,
)
from tinychat.server.node import Node
from tinychat.server.session import Session
from tinychat.server.tap import Options
from tinychat.testing.hostile import RawClient, register

HELLO = encode(Hello(request_id=1, min_version=1, max_version=1, client_name="limits"))
PASSWORD = "limits password"




def pings(first: int, count: int) -> bytes:
    return b"".join(encode(Ping(request_id=first + i)) for i in range(count))


# ---------------------------------------------------------------- the pieces


def test_token_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(clock, rate=10, burst=3)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)
    clock.advance(0.05)
    assert bucket.take() == pytest.approx(0.05)
    clock.advance(0.05)
    assert bucket.take() == 0.0
    clock.advance(100)  # never more than the burst
    assert [bucket.take() for _ in range(4)].count(0.0) == 3


def test_request_limiter_refuses_then_disconnects_after_too_many_refusals():
    clock = Clock()
    limiter = RequestLimiter(clock, rate=10, burst=2, max_refusals=3, refusal_window=10)
    assert limiter.admit().serve and limiter.admit().serve
    verdicts = [limiter.admit() for _ in range(4)]
    assert [v.disconnect for v in verdicts] == [False, False, False, True]
    assert all(v.retry_after > 0 for v in verdicts)
    clock.advance(10)  # the refusal budget refills over its window
    limiter.admit(), limiter.admit()
    assert not limiter.admit().disconnect


def test_peer_counter_caps_each_address_separately():
    peers = PeerCounter(2)
    assert peers.acquire("a") and peers.acquire("a") and not peers.acquire("a")
    assert peers.acquire("b")
    peers.release("a")
    assert peers.acquire("a")
    assert PeerCounter(0).acquire("a")  # 0: no limit


def test_an_address_cut_off_for_flooding_cools_down_before_it_may_connect_again():
    clock = Clock()
    peers = PeerCounter(0, clock, cooldown=10)
    peers.penalize("a")
    assert "flooded" in peers.admit("a") and peers.admit("b") is None
    clock.advance(9.5)
    assert "connect again in 1 s" in peers.admit("a")
    clock.advance(0.5)
    assert peers.admit("a") is None
    assert PeerCounter(0, clock, cooldown=0).admit("a") is None


def test_deadline_fires_once_unless_cancelled_and_restarts_from_now():
    clock = Clock()
    fired = []
    deadline = Deadline(clock, lambda: fired.append(clock.seconds()))
    deadline.start(5)
    clock.advance(3)
    deadline.start(5)  # restarting counts from now
    clock.advance(4)
    assert fired == []
    clock.advance(1)
    assert fired == [8]
    deadline.start(5)
    deadline.cancel()
    clock.advance(10)
    assert fired == [8] and not deadline.active


def test_outgoing_guard_trips_past_its_byte_limit_only_while_paused():
    clock = Clock()
    reasons = []
    guard = OutgoingGuard(clock, max_bytes=1000, stall_timeout=0, exceeded=reasons.append)
    guard.wrote(10_000)  # flowing: the transport is keeping up
    guard.pauseProducing()
    guard.wrote(600)
    guard.resumeProducing()  # the client read everything: the count starts over
    guard.pauseProducing()
    guard.wrote(600)
    assert reasons == []
    guard.wrote(600)
    guard.wrote(600)
    assert len(reasons) == 1 and "1000 bytes" in reasons[0]


def test_outgoing_budget_bounds_what_all_stalled_clients_hold_together():
    clock = Clock()
    budget = OutgoingBudget(1000)
    tripped = []
    first, second = (OutgoingGuard(clock, max_bytes=800, stall_timeout=0, exceeded=tripped.append, budget=budget)
                     for _ in range(2))
    first.pauseProducing()
    second.pauseProducing()
    first.wrote(600)
    assert budget.total == 600 and not tripped
    second.wrote(600)  # each is under its own 800, together over 1000: the one adding to it goes
    assert len(tripped) == 1 and "all the clients" in tripped[0] and budget.total == 600
    first.resumeProducing()  # its client read everything
    assert budget.total == 0


def test_outgoing_guard_trips_when_paused_too_long():
    clock = Clock()
    reasons = []
    guard = OutgoingGuard(clock, max_bytes=0, stall_timeout=30, exceeded=reasons.append)
    guard.pauseProducing()
    clock.advance(29)
    guard.resumeProducing()
    clock.advance(100)
    assert reasons == []
    guard.pauseProducing()
    clock.advance(30)
    assert len(reasons) == 1 and "30 s" in reasons[0]


# ---------------------------------------------------------------- wired into the connection


def test_requests_over_the_rate_are_refused_with_retry_after_and_not_served():
    clock = Clock()
    conn, transport = server(clock, rate_limit=10, rate_burst=5)
    conn.dataReceived(HELLO + pings(2, 7))  # HELLO takes one token: 4 pings fit the burst
    answers = replies(transport)[1:]
    assert [type(a) for a in answers] == [Pong] * 4 + [Error] * 3
    for refusal, request_id in zip(answers[4:], (6, 7, 8), strict=True):
        assert refusal.code is ErrorCode.RATE_LIMITED and refusal.request_id == request_id
        assert 0 < refusal.retry_after_ms <= 300
    clock.advance(answers[4].retry_after_ms / 1000)
    conn.dataReceived(pings(20, 1))
    assert replies(transport) == [Pong(request_id=20)]
    assert not transport.disconnecting


def test_sustained_flooding_closes_the_connection():
    clock = Clock()
    conn, transport = server(clock, rate_limit=10, rate_burst=2, max_refusals=5, refusal_window=10)
    conn.dataReceived(HELLO + pings(2, 50))
    answers = replies(transport)
    codes = [a.code for a in answers if isinstance(a, Error)]
    assert codes == [ErrorCode.RATE_LIMITED] * 5 + [ErrorCode.LIMIT_EXCEEDED]
    assert answers[-1].request_id == 0 and transport.disconnecting


def test_a_flooder_cut_off_cannot_reconnect_at_once():
    clock = Clock()
    factory = ChatFactory(Node(NodeConfig(node_id="unit", rate_limit=10, rate_burst=2, max_refusals=5,
                                          flood_cooldown=10), clock))
    conn, transport = server(clock, "192.0.2.9", factory)
    conn.dataReceived(HELLO + pings(2, 50))
    assert replies(transport)[-1].code is ErrorCode.LIMIT_EXCEEDED
    conn.connectionLost(None)
    _, again_transport = server(clock, "192.0.2.9", factory)
    (error,) = replies(again_transport)
    assert error.code is ErrorCode.LIMIT_EXCEEDED and "flooded" in error.message and again_transport.disconnecting
    _, other_transport = server(clock, "192.0.2.10", factory)  # other addresses are not affected
    assert not other_transport.disconnecting
    clock.advance(10)
    _, later_transport = server(clock, "192.0.2.9", factory)
    assert not later_transport.disconnecting


def test_a_client_that_honours_retry_after_is_never_cut_off():
    clock = Clock()
    # The refusal budget drains as fast as requests are allowed (5 per 0.05 s = 100/s), as by default.
    conn, transport = server(clock, rate_limit=100, rate_burst=10, max_refusals=5, refusal_window=0.05)
    conn.dataReceived(HELLO)
    replies(transport)
    served = 0
    for n in range(2000):  # 2,000 requests as fast as allowed, each resent after retry_after when refused
        conn.dataReceived(pings(2 + n, 1))
        (answer,) = replies(transport)
        while isinstance(answer, Error):
            clock.advance(answer.retry_after_ms / 1000)
            conn.dataReceived(pings(2 + n, 1))
            (answer,) = replies(transport)
        served += 1
    assert served == 2000 and not transport.disconnecting


def test_no_rate_limit_when_it_is_zero():
    clock = Clock()
    conn, transport = server(clock, rate_limit=0, rate_burst=1)
    conn.dataReceived(HELLO + pings(2, 1000))
    assert all(isinstance(a, Pong) for a in replies(transport)[1:])


def test_the_handshake_deadline_is_not_reset_by_trickled_bytes():
    clock = Clock()
    conn, transport = server(clock, handshake_timeout=10, idle_timeout=5, heartbeat_interval=1)
    for byte in HELLO[:-1]:  # slowloris: one byte every 4 s keeps the idle timer happy
        conn.dataReceived(bytes([byte]))
        clock.advance(4)
        if transport.disconnecting:
            break
    assert clock.seconds() <= 12
    (error,) = replies(transport)
    assert error.code is ErrorCode.TIMEOUT and "HELLO" in error.message and transport.disconnecting


def test_a_silent_connection_gets_the_handshake_deadline_before_the_idle_timeout():
    clock = Clock()
    _conn, transport = server(clock, handshake_timeout=10, idle_timeout=90)
    clock.advance(10)
    (error,) = replies(transport)
    assert error.code is ErrorCode.TIMEOUT and transport.disconnecting


def test_the_login_deadline_is_not_extended_by_guest_requests():
    clock = Clock()
    conn, transport = server(clock, login_timeout=60, idle_timeout=90)
    conn.dataReceived(HELLO)
    for n in range(11):  # WHICH_NODE every 5 s for 55 s: the connection stays busy
        clock.advance(5)
        conn.dataReceived(encode(WhichNode(request_id=10 + n)))
    assert all(isinstance(a, NodeAssignment) for a in replies(transport)[1:])
    clock.advance(5)
    (error,) = replies(transport)
    assert error.code is ErrorCode.TIMEOUT and "logged in" in error.message and transport.disconnecting


def test_a_login_in_progress_at_the_deadline_gets_a_short_grace_once():
    clock = Clock()
    conn, transport = server(clock, login_timeout=60, idle_timeout=600)
    conn.dataReceived(HELLO)
    replies(transport)
    conn.begin_login()  # as the LOGIN handler does while the password is checked
    clock.advance(60)
    assert not transport.disconnecting
    conn.end_login()
    clock.advance(10)
    assert replies(transport)[-1].code is ErrorCode.TIMEOUT and transport.disconnecting


def test_the_per_address_cap_refuses_the_excess_connection_with_an_error():
    clock = Clock()
    factory = ChatFactory(Node(NodeConfig(node_id="unit", max_connections_per_ip=2), clock))
    first = [server(clock, "192.0.2.7", factory) for _ in range(2)]
    conn, transport = server(clock, "192.0.2.7", factory)
    (error,) = replies(transport)
    assert error.code is ErrorCode.LIMIT_EXCEEDED and transport.disconnecting
    conn.connectionLost(None)
    _other, other_transport = server(clock, "192.0.2.8", factory)
    assert not other_transport.disconnecting
    first[0][0].connectionLost(None)  # a slot is free again
    _again, again_transport = server(clock, "192.0.2.7", factory)
    assert not again_transport.disconnecting
    assert factory.peers.counts == {"192.0.2.7": 2, "192.0.2.8": 1}


def test_a_reader_that_stops_reading_is_aborted_past_the_outgoing_limit():
    clock = Clock()
    conn, transport = server(clock, max_outgoing_buffer=10_000, slow_reader_timeout=0)
    assert transport.producer is conn.outgoing and transport.streaming
    conn.dataReceived(HELLO)
    push = encode(PresencePush(uid=1, online=True))
    transport.producer.pauseProducing()  # what the TCP transport does when its buffer is full
    for _ in range(10_000 // len(push)):
        conn.send_frame(push)
    assert not transport.disconnected
    conn.send_frame(push)
    assert transport.disconnected  # aborted, not closed politely: nothing would ever flush
    before = len(transport.value())
    conn.send_frame(push)
    assert len(transport.value()) == before


def test_a_reader_stuck_for_too_long_is_aborted_even_under_the_byte_limit():
    clock = Clock()
    conn, transport = server(clock, max_outgoing_buffer=0, slow_reader_timeout=60, idle_timeout=600)
    conn.dataReceived(HELLO)
    transport.producer.pauseProducing()
    clock.advance(59)
    transport.producer.resumeProducing()  # it read, slowly
    clock.advance(120)
    assert not transport.disconnected
    transport.producer.pauseProducing()
    clock.advance(60)
    assert transport.disconnected


def test_requests_wait_while_the_client_does_not_read_its_answers():
    clock = Clock()
    conn, transport = server(clock, idle_timeout=600)
    conn.dataReceived(HELLO)
    replies(transport)
    transport.producer.pauseProducing()  # the transport's buffer is full: the client is not reading
    assert transport.producerState == "paused"  # so the node stops reading from it too
    conn.dataReceived(pings(2, 3))
    assert replies(transport) == []
    transport.producer.resumeProducing()  # it read everything
    assert transport.producerState == "producing"
    assert replies(transport) == [Pong(request_id=2), Pong(request_id=3), Pong(request_id=4)]


def test_one_connection_has_at_most_its_cap_of_requests_in_the_works():
    clock = Clock()
    conn, transport = server(clock, max_pending_requests=2, idle_timeout=600)
    started: list = []

    def slow_which_node(connection, request):  # stands for a request served from the database
        d = defer.Deferred()
        started.append((request.request_id, d))
        return d

    conn.node.router._handlers[WhichNode] = slow_which_node
    conn.dataReceived(HELLO)
    replies(transport)
    conn.dataReceived(b"".join(encode(WhichNode(request_id=10 + n)) for n in range(4)) + pings(20, 1))
    assert [rid for rid, _ in started] == [10, 11] and replies(transport) == []
    assert transport.producerState == "paused"  # the rest waits, unread beyond what was already read
    started[0][1].callback(NodeAssignment(request_id=10, node_id="n", address="", connections=1))
    assert [rid for rid, _ in started] == [10, 11, 12]
    started[1][1].callback(NodeAssignment(request_id=11, node_id="n", address="", connections=1))
    assert [rid for rid, _ in started] == [10, 11, 12, 13]
    started[2][1].callback(NodeAssignment(request_id=12, node_id="n", address="", connections=1))
    started[3][1].callback(NodeAssignment(request_id=13, node_id="n", address="", connections=1))
    answers = replies(transport)
    assert sorted(getattr(m, "request_id", 0) for m in answers) == [10, 11, 12, 13, 20]  # the PING waited too
    assert transport.producerState == "producing" and conn._in_flight == 0


def test_the_idle_timeout_waits_while_the_node_itself_holds_requests_back():
    clock = Clock()
    conn, transport = server(clock, max_pending_requests=1, idle_timeout=5, heartbeat_interval=1)
    database = _session_reading_handler(conn)
    conn.dataReceived(HELLO)
    conn.logged_in(Session(uid=10_000, username="u", email="u@example.com", token_hash=""))
    conn.dataReceived(encode(ListFriends(request_id=5)) + pings(6, 1))  # the PING waits behind the cap
    clock.advance(30)  # the database is slow: the client is not to blame for the node not reading
    assert not transport.disconnecting
    database.callback(None)
    assert sorted(m.request_id for m in replies(transport)[1:]) == [5, 6]
    clock.advance(5)  # reading again: silence counts again
    assert transport.disconnecting and replies(transport)[-1].code is ErrorCode.TIMEOUT


def test_a_close_waiting_for_a_paused_client_completes_once_it_drains():
    clock = Clock()
    conn, transport = server(clock, idle_timeout=600)
    conn.dataReceived(HELLO)
    transport.producer.pauseProducing()
    conn.close()
    assert transport.disconnecting and transport.producer is conn.outgoing
    # A transport whose streaming producer is paused does not finish a close after draining,
    # so the connection lets go of it then.
    conn.outgoing.resumeProducing()
    assert transport.producer is None


def _session_reading_handler(conn: ChatConnection) -> defer.Deferred:
    """A ListFriends handler that, like the real ones, reads conn.session after awaiting the database."""
    database: defer.Deferred = defer.Deferred()

    async def handler(connection, request):
        await database
        _ = connection.session.uid  # AttributeError once the session is gone
        return Ok(request_id=request.request_id)

    conn.node.router._handlers[ListFriends] = handler
    return database


def test_a_request_outliving_its_session_is_answered_not_logged_in():
    clock = Clock()
    conn, transport = server(clock, idle_timeout=600)
    database = _session_reading_handler(conn)
    conn.dataReceived(HELLO)
    conn.logged_in(Session(uid=10_000, username="u", email="u@example.com", token_hash=""))
    replies(transport)
    conn.dataReceived(encode(ListFriends(request_id=5)))
    conn.logged_out()  # a LOGOUT (or a kick) finished first
    with capturedLogs() as events:
        database.callback(None)
    (answer,) = replies(transport)
    assert (answer.request_id, answer.code) == (5, ErrorCode.NOT_LOGGED_IN)
    assert not [e for e in events if e["log_level"] is LogLevel.critical]


def test_a_request_outliving_its_connection_is_no_unexpected_failure():
    clock = Clock()
    conn, _ = server(clock, idle_timeout=600)
    database = _session_reading_handler(conn)
    conn.dataReceived(HELLO)
    conn.logged_in(Session(uid=10_000, username="u", email="u@example.com", token_hash=""))
    conn.dataReceived(encode(ListFriends(request_id=5)))
    conn.connectionLost(None)
    conn.session = None
    with capturedLogs() as events:
        database.callback(None)
    assert not [e for e in events if e["log_level"] is LogLevel.critical]
    assert [e for e in events if "failed after the connection closed" in e.get("log_format", "")]


def test_error_text_is_cut_to_the_field_limit_in_bytes_not_characters():
    from tinychat.protocol import ProtocolError

    clock = Clock()
    conn, transport = server(clock)
    conn.send_error(5, ProtocolError(ErrorCode.INVALID_ARGUMENT, "€" * 400))  # 1,200 bytes of UTF-8
    (error,) = replies(transport)
    assert error.request_id == 5 and len(error.message.encode()) <= 512 and set(error.message) == {"€"}


def test_frames_before_an_oversized_header_are_served_first():
    clock = Clock()
    conn, transport = server(clock)
    conn.dataReceived(HELLO + pings(2, 2) + struct.pack(">HI", Ping.MSG_ID, 2**31))
    answers = replies(transport)
    assert [type(a) for a in answers] == [type(answers[0]), Pong, Pong, Error]
    assert answers[-1].code is ErrorCode.FRAME_TOO_LARGE and transport.disconnecting


def test_a_push_frame_before_hello_needs_the_handshake():
    clock = Clock()
    conn, transport = server(clock)
    conn.dataReceived(encode(PresencePush(uid=1, online=True)))
    (error,) = replies(transport)
    assert error.code is ErrorCode.HANDSHAKE_REQUIRED and transport.disconnecting


# ---------------------------------------------------------------- options and documentation

LIMIT_OPTIONS = {
    "rate-limit": ("rate_limit", 200.0), "rate-burst": ("rate_burst", 400), "max-refusals": ("max_refusals", 1000),
    "refusal-window": ("refusal_window", 5.0), "max-connections-per-ip": ("max_connections_per_ip", 64),
    "flood-cooldown": ("flood_cooldown", 10.0),
    "max-pending-requests": ("max_pending_requests", 32),
    "handshake-timeout": ("handshake_timeout", 10.0), "login-timeout": ("login_timeout", 60.0),
    "max-outgoing-buffer": ("max_outgoing_buffer", 4 * 1024 * 1024),
    "max-outgoing-total": ("max_outgoing_total", 256 * 1024 * 1024),
    "slow-reader-timeout": ("slow_reader_timeout", 60.0), "max-frame": ("max_frame", 1024 * 1024),
    "idle-timeout": ("idle_timeout", 90.0), "max-group-members": ("max_group_members", 500),
    "max-upload-bytes": ("max_upload_bytes", 104857600), "blob-dir": ("blob_dir", "blobs"),
}


@pytest.mark.parametrize("option", sorted(LIMIT_OPTIONS))
def test_every_limit_is_an_option_with_its_documented_default(option: str):
    field, default = LIMIT_OPTIONS[option]
    options = Options()
    options.parseOptions([])
    config = options.to_config()
    assert getattr(config, field) == default == getattr(NodeConfig(), field)
    doc = (Path(__file__).parents[1] / "docs" / "security.md").read_text()
    row = re.search(rf"^\| `--{option}` \| ([^|]+) \|", doc, re.MULTILINE)
    assert row is not None, f"docs/security.md has no row for --{option}"
    assert row.group(1).strip().replace(",", "").split()[0] in {str(default), f"{default:g}" if
                                                                 isinstance(default, float) else str(default)}


def test_limit_options_are_parsed_and_zero_turns_a_limit_off():
    options = Options()
    options.parseOptions(["--rate-limit", "0", "--max-connections-per-ip", "0", "--max-outgoing-buffer", "0",
                          "--handshake-timeout", "2.5", "--blob-dir", "/var/lib/tinychat/blobs"])
    config = options.to_config()
    assert (config.rate_limit, config.max_connections_per_ip, config.max_outgoing_buffer) == (0, 0, 0)
    assert config.handshake_timeout == 2.5 and config.blob_dir == "/var/lib/tinychat/blobs"
    with pytest.raises(Exception, match="0 \\(off\\) or positive"):
        Options().parseOptions(["--rate-limit", "-1"])


# ---------------------------------------------------------------- against a real node


@pytest.mark.integration
def test_a_real_node_refuses_a_flood_then_closes_it(node_factory):
    with node_factory("--rate-limit", "5", "--rate-burst", "5", "--max-refusals", "10") as node:
        with RawClient.to(node) as flooder:
            flooder.handshake()
            flooder.send(pings(2, 100))
            answers = flooder.until_closed()
        assert [type(a) for a in answers[:4]] == [Pong] * 4
        refusals = [a for a in answers if isinstance(a, Error) and a.code is ErrorCode.RATE_LIMITED]
        assert len(refusals) == 10 and all(r.retry_after_ms > 0 for r in refusals)
        assert answers[-1].code is ErrorCode.LIMIT_EXCEEDED
        with RawClient.to(node) as again:  # its address cools down before it may connect again
            (refused,) = again.until_closed()
        assert refused.code is ErrorCode.LIMIT_EXCEEDED and "flooded" in refused.message
        with RawClient.to(node, source="127.0.0.7") as polite:  # others are served, with a full bucket
            polite.handshake()
            assert isinstance(polite.request(Ping), Pong)


@pytest.mark.integration
def test_a_real_node_caps_connections_per_address(node_factory):
    with node_factory("--max-connections-per-ip", "2") as node:
        first, second = RawClient.to(node, source="127.0.0.5"), RawClient.to(node, source="127.0.0.5")
        for client in (first, second):
            client.handshake()
        with RawClient.to(node, source="127.0.0.5") as third:
            (error,) = third.until_closed()
        assert error.code is ErrorCode.LIMIT_EXCEEDED and "at most 2" in error.message
        with RawClient.to(node, source="127.0.0.6") as elsewhere:
            elsewhere.handshake()
        first.shutdown_write()
        assert first.until_closed() == []  # the node has closed it, and freed its slot
        with RawClient.to(node, source="127.0.0.5") as again:
            again.handshake()
        assert isinstance(second.request(Ping), Pong)
        first.close()
        second.close()


@pytest.mark.integration
def test_a_real_node_closes_a_slowloris_at_the_handshake_deadline(node_factory):
    with node_factory("--handshake-timeout", "0.5", "--idle-timeout", "60") as node:
        with RawClient.to(node) as slow:
            slow.send(HELLO[:9])  # half a frame, then nothing
            (error,) = slow.until_closed()
        assert error.code is ErrorCode.TIMEOUT and error.request_id == 0
        with RawClient.to(node) as silent:
            assert silent.until_closed()[0].code is ErrorCode.TIMEOUT


@pytest.mark.integration
def test_a_real_node_closes_a_guest_at_the_login_deadline(node_factory):
    with node_factory("--login-timeout", "1", "--idle-timeout", "60") as node:
        with RawClient.to(node) as guest:
            guest.handshake()
            for _ in range(3):
                assert isinstance(guest.request(WhichNode), NodeAssignment)
            answers = guest.until_closed()
        assert answers[-1].code is ErrorCode.TIMEOUT and "logged in" in answers[-1].message


def _stalled_pair(node) -> tuple[RawClient, RawClient, int]:
    """A sender and a logged-in friend that will never read (tiny receive buffer); their thread."""
    uids = {name: register(node, name, PASSWORD) for name in ("sender", "stalled")}
    sender = RawClient.to(node)
    stalled = RawClient.to(node, rcvbuf=4096)
    sender.handshake()
    stalled.handshake()
    sender.login("sender", PASSWORD)
    stalled.login("stalled", PASSWORD)
    sent = sender.call(SendFriendRequest, to_uid=uids["stalled"], greeting="")
    thread_id = stalled.call(RespondFriendRequest, friend_request_id=sent.friend_request_id, accept=True,
                             remark="").thread_id
    return sender, stalled, thread_id


def _flood_until_aborted(node, sender: RawClient, thread_id: int) -> int:
    """Big messages to the stalled friend until the node reports dropping it; how many were sent."""
    text = "😀" * 4000  # 16,000 bytes per push
    for n in range(1, 10_000):
        ack = sender.call(SendMessage, thread_id=thread_id, to_uid=0, client_msg_id=n, text=text)
        assert isinstance(ack, MessageAck)
        if any("aborting the connection" in line for line in node.lines):
            return n
    raise AssertionError("the stalled reader was never disconnected")


@pytest.mark.integration
def test_a_real_node_drops_a_reader_that_never_reads(node_factory):
    with node_factory("--max-outgoing-buffer", "65536", "--slow-reader-timeout", "0", "--rate-limit", "0",
                      *FAST_HASHING) as node:
        sender, stalled, thread_id = _stalled_pair(node)
        sent = _flood_until_aborted(node, sender, thread_id)
        assert "queued for a client that is not reading" in node.log_text()
        # 64 KiB beyond the transport's own 64 KiB, after the kernel's socket buffers (autotuned to about 2 MB
        # on loopback) filled up: a bounded number of 16 KB pushes, not an ever-growing queue.
        assert sent < 500
        stalled.until_closed()  # reset by the node (what the kernel still held for it is lost)
        assert stalled.closed
        assert isinstance(sender.request(Ping), Pong)
        sender.close()


@pytest.mark.integration
def test_a_real_node_drops_a_reader_stuck_for_too_long(node_factory):
    with node_factory("--max-outgoing-buffer", "0", "--slow-reader-timeout", "1", "--rate-limit", "0",
                      *FAST_HASHING) as node:
        sender, stalled, thread_id = _stalled_pair(node)
        _flood_until_aborted(node, sender, thread_id)  # no byte limit: only the time paused counts
        assert "the client read nothing for 1 s while data waited for it" in node.log_text()
        stalled.until_closed()  # reset by the node (what the kernel still held for it is lost)
        assert stalled.closed
        assert isinstance(sender.request(Ping), Pong)
        sender.close()
