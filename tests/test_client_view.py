"""Unit tests of the client library without a node: the local view, delivery order, backoff,
and TinyChatClient against a scripted in-memory server on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from tinychat.client import Backoff, ConnectionState, LocalView, MessageSequencer, TinyChatClient
from tinychat.client.client import same_endpoint
from tinychat.client.connection import ClientConnection
from tinychat.protocol import (
    ChatMessage,
    Direction,
    Error,
    ErrorCode,
    FrameDecoder,
    FriendInfo,
    FriendRemovedPush,
    FriendRequestInfo,
    FriendRequestPush,
    FriendRequestResolved,
    FriendRequests,
    FriendResponsePush,
    Friends,
    GroupChange,
    GroupChangedPush,
    Hello,
    History,
    HistoryPage,
    KickedPush,
    KickReason,
    ListFriendRequests,
    ListFriends,
    LoggedIn,
    Login,
    LoginWithToken,
    Logout,
    MarkRead,
    Message,
    MessageAck,
    MessagePush,
    NodeAssignment,
    Ok,
    Ping,
    Pong,
    PresencePush,
    ReadMarkPush,
    ResyncPush,
    Role,
    SendAttachment,
    SendMessage,
    Sync,
    SyncState,
    ThreadInfo,
    ThreadKind,
    Welcome,
    WhichNode,
    encode,
)

ME, PEER, THREAD = 1, 2, 7


def msg(seq: int, thread_id: int = THREAD, sender: int = PEER, text: str | None = None,
        client_msg_id: int = 0) -> ChatMessage:
    return ChatMessage(thread_id=thread_id, seq=seq, sender_uid=sender, client_msg_id=client_msg_id or 1000 + seq,
                       sent_at_ms=seq, text=text or f"m{seq}")


def request(rid: int, from_uid: int = PEER, to_uid: int = ME, name: str = "peer") -> FriendRequestInfo:
    return FriendRequestInfo(friend_request_id=rid, from_uid=from_uid, from_username=name, to_uid=to_uid,
                             to_username="me", greeting="hi", created_at_ms=0)


# ---------------------------------------------------------------- the view


def synced_view() -> LocalView:
    view = LocalView(uid=ME)
    new = view.apply_sync(SyncState(request_id=1, threads=[
        ThreadInfo(thread_id=THREAD, kind=ThreadKind.DIRECT, peer_uid=PEER, title="peer", last_seq=5, read_seq=2,
                   unread=3)], friend_requests=[request(40, from_uid=3, name="carol")]))
    assert [r.friend_request_id for r in new] == [40]
    view.apply_friends([FriendInfo(uid=PEER, username="Peer", remark="work", online=False, thread_id=THREAD)])
    return view


def test_view_from_sync_and_friend_list():
    view = synced_view()
    thread = view.threads[THREAD]
    assert (thread.last_seq, thread.read_seq, thread.unread, thread.peer_uid, thread.title) == (5, 2, 3, PEER, "peer")
    assert view.friends[PEER].remark == "work" and not view.friends[PEER].online
    assert view.friend_by_name("PEER") is view.friends[PEER]
    assert view.thread_with(PEER) is thread
    assert list(view.friend_requests) == [40]
    assert view.unread_total == 3
    # A second sync with the same requests reports nothing new, and never moves marks back.
    assert view.apply_sync(SyncState(request_id=2, threads=[
        ThreadInfo(thread_id=THREAD, kind=ThreadKind.DIRECT, peer_uid=PEER, title="peer", last_seq=4, read_seq=1,
                   unread=3)], friend_requests=[request(40, from_uid=3)])) == []
    assert (thread.last_seq, thread.read_seq) == (5, 2)


def test_view_follows_messages_acks_and_read_marks():
    view = synced_view()
    view.apply_message(msg(6))
    assert view.threads[THREAD].unread == 4
    view.apply_ack(MessageAck(request_id=1, thread_id=THREAD, seq=7, client_msg_id=1, sent_at_ms=0), PEER)
    assert (view.threads[THREAD].last_seq, view.threads[THREAD].unread) == (7, 0)  # sending reads the thread
    view.apply_message(msg(8))
    view.apply_read(THREAD, 99)  # the server clamps a mark to the last seq
    assert view.threads[THREAD].read_seq == 8
    view.apply_push(ReadMarkPush(thread_id=THREAD, uid=PEER, read_seq=7))
    assert view.threads[THREAD].peer_read_seq == 7 and view.threads[THREAD].read_seq == 8
    view.apply_push(ReadMarkPush(thread_id=THREAD, uid=ME, read_seq=3))  # marks never move back
    assert view.threads[THREAD].read_seq == 8
    # A message in a thread the view has never seen creates it (the client then syncs its kind and title).
    view.apply_message(msg(1, thread_id=70, sender=PEER))
    assert view.threads[70].last_seq == 1 and view.threads[70].peer_uid == 0


def test_view_follows_friend_pushes_and_answers():
    view = synced_view()
    view.apply_push(PresencePush(uid=PEER, online=True))
    assert view.friends[PEER].online
    view.apply_push(FriendRequestPush(request=request(41, from_uid=4, name="dave")))
    assert set(view.friend_requests) == {40, 41}
    view.apply_resolved(FriendRequestResolved(request_id=1, friend_request_id=41, accepted=True, peer_uid=4,
                                              thread_id=71), remark="met at work")
    assert set(view.friend_requests) == {40}
    assert (view.friends[4].username, view.friends[4].remark, view.friends[4].thread_id) == ("dave", "met at work",
                                                                                             71)
    assert view.threads[71].title == "dave"
    view.apply_resolved(FriendRequestResolved(request_id=1, friend_request_id=40, accepted=False, peer_uid=3,
                                              thread_id=0))
    assert view.friend_requests == {} and 3 not in view.friends
    view.apply_request_sent(50, 5, "hello", "me")
    assert view.outgoing_requests[50].to_uid == 5
    view.apply_push(FriendResponsePush(friend_request_id=50, peer_uid=5, peer_username="erin", accepted=True,
                                       thread_id=72))
    assert 50 not in view.outgoing_requests
    assert view.friends[5].online and view.friends[5].thread_id == 72 and view.threads[72].peer_uid == 5
    view.apply_push(FriendRemovedPush(uid=5))
    assert 5 not in view.friends and 72 in view.threads  # the history stays readable


def test_view_follows_group_changes():
    view = synced_view()
    view.apply_push(GroupChangedPush(thread_id=80, change=GroupChange.ADDED, actor_uid=PEER, subject_uid=ME,
                                     role=Role.MEMBER, name="team"))
    assert (view.threads[80].kind, view.threads[80].title, view.threads[80].peer_uid) == (ThreadKind.GROUP, "team", 0)
    view.apply_push(GroupChangedPush(thread_id=80, change=GroupChange.RENAMED, actor_uid=PEER, subject_uid=0,
                                     role=Role.MEMBER, name="the team"))
    assert view.threads[80].title == "the team"
    # Another member joining a group the view does not know (yet) creates nothing.
    view.apply_push(GroupChangedPush(thread_id=81, change=GroupChange.ADDED, actor_uid=PEER, subject_uid=PEER,
                                     role=Role.MEMBER, name="x"))
    assert 81 not in view.threads


def test_view_journal_replays_pushes_over_an_older_snapshot():
    view = synced_view()
    view.start_journal()
    view.apply_push(PresencePush(uid=PEER, online=True))  # arrives before the (older) friend list
    view.apply_friends([FriendInfo(uid=PEER, username="Peer", remark="", online=False, thread_id=THREAD)])
    view.replay_journal()
    assert view.friends[PEER].online


# ---------------------------------------------------------------- delivery order


def seqs(messages: list[ChatMessage]) -> list[int]:
    return [m.seq for m in messages]


def test_sequencer_holds_everything_until_primed_then_starts_at_the_mark():
    s = MessageSequencer()
    assert s.offer(msg(11)) == [] and not s.has_gap(THREAD)
    # Primed at last_seq 10 (no replay): the held push 11 follows directly.
    assert seqs(s.prime({THREAD: 10})) == [11]
    assert seqs(s.offer(msg(12))) == [12]
    assert s.mark(THREAD) == 12


def test_sequencer_prime_keeps_live_pushes_that_the_snapshot_already_counts():
    s = MessageSequencer()
    s.offer(msg(10))
    s.offer(msg(11))
    # SYNC_STATE (answered after the pushes) says last_seq 11: the pushes were live, keep them.
    assert seqs(s.prime({THREAD: 11})) == [10, 11]


def test_sequencer_drops_duplicates_and_orders_out_of_order_arrivals():
    s = MessageSequencer()
    s.prime({THREAD: 0})
    assert seqs(s.offer(msg(1))) == [1]
    assert s.offer(msg(1)) == []
    assert s.offer(msg(3)) == [] and s.has_gap(THREAD) and s.gaps() == [THREAD]
    assert s.offer(msg(3)) == []
    assert seqs(s.offer(msg(2))) == [2, 3]
    assert not s.has_gap(THREAD)
    assert s.offer(msg(2)) == []


def test_sequencer_counts_own_acked_messages_without_handing_them_out():
    s = MessageSequencer()
    s.prime({THREAD: 4})
    assert s.skip(THREAD, 6) == []  # own message 6 acked before peer message 5 arrived
    assert seqs(s.offer(msg(7))) == []
    assert seqs(s.offer(msg(5))) == [5, 7]
    assert s.mark(THREAD) == 7
    assert s.offer(msg(6)) == []  # a page that contains the own message again
    assert s.skip(THREAD, 3) == []  # an old ack changes nothing


def test_sequencer_unknown_threads_start_at_seq_1_and_reset_forgets():
    s = MessageSequencer()
    s.prime({})
    assert seqs(s.offer(msg(1, thread_id=9))) == [1]
    assert s.offer(msg(3, thread_id=9)) == [] and s.has_gap(9)
    s.reset()
    assert not s.primed and s.mark(9) == 0


# ---------------------------------------------------------------- backoff


def test_backoff_ceiling_doubles_to_the_cap():
    backoff = Backoff(rng=lambda: 1.0)
    assert [backoff.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(10_000) == 30


def test_backoff_full_jitter_stays_within_the_ceiling():
    backoff = Backoff()
    for attempt in range(10):
        for _ in range(50):
            assert 0 <= backoff.delay(attempt) <= backoff.ceiling(attempt)
    assert Backoff(jitter=False).delay(3) == 4


def test_same_endpoint_ignores_parameter_order():
    assert same_endpoint("tcp:host=a:port=1", "tcp:port=1:host=a")
    assert not same_endpoint("tcp:host=a:port=1", "tcp:host=a:port=2")


# ---------------------------------------------------------------- the client against a scripted server


class FakeTransport(StringTransport):
    """Hands each request frame to the fake server and feeds its answer back at once."""

    def __init__(self, server: FakeServer, endpoint: str) -> None:
        super().__init__()
        self.server = server
        self.endpoint = endpoint
        self.decoder = FrameDecoder()
        self.conn: ClientConnection | None = None

    def write(self, data: bytes) -> None:
        for message in self.decoder.feed(data):
            reply = self.server.answer(self, message)
            if reply is not None and not self.disconnecting:
                self.conn.dataReceived(encode(reply))

    def push(self, message: Message) -> None:
        self.conn.dataReceived(encode(message))

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.conn.connectionLost(Failure(ConnectionDone("closed")))

    abortConnection = loseConnection


class FakeServer:
    """One user (uid 1, "me") with one friend (uid 2) and their direct thread 7."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.thread: list[ChatMessage] = []
        self.read_seq = 0
        self.pending: list[FriendRequestInfo] = []
        self.requests: list[Message] = []
        self.links: list[FakeTransport] = []
        self.down: set[str] = set()
        self.attempts: list[tuple[float, str]] = []
        self.token_valid = True
        self.assign = ""
        self.silent = False  # a half-open link: pings go unanswered

    @property
    def link(self) -> FakeTransport:
        return self.links[-1]

    def sent(self, kind: type[Message]) -> list[Message]:
        return [r for r in self.requests if isinstance(r, kind)]

    def connector(self, endpoint: str) -> defer.Deferred[ClientConnection]:
        self.attempts.append((self.clock.seconds(), endpoint))
        if endpoint in self.down:
            return defer.fail(ConnectionRefusedError(endpoint))
        conn = ClientConnection(self.clock)
        transport = FakeTransport(self, endpoint)
        transport.conn = conn
        conn.makeConnection(transport)
        self.links.append(transport)

        async def handshake() -> ClientConnection:
            await conn.handshake("unit")
            return conn

        return defer.ensureDeferred(handshake())

    def add(self, text: str = "", sender: int = PEER, push: bool = True) -> ChatMessage:
        """A message stored in thread 7, pushed to the client's live connection unless push=False."""
        message = msg(len(self.thread) + 1, sender=sender, text=text or None)
        self.thread.append(message)
        if push and self.links and not self.link.disconnecting:
            self.link.push(MessagePush(message=message))
        return message

    def answer(self, link: FakeTransport, req: Message) -> Message | None:
        self.requests.append(req)
        rid = req.request_id
        if isinstance(req, Hello):
            return Welcome(request_id=rid, version=1, server_name="fake", node_id=link.endpoint,
                           max_frame_bytes=1 << 20, heartbeat_interval_ms=30_000, idle_timeout_ms=90_000,
                           file_chunk_bytes=1)
        if isinstance(req, Ping):
            return None if self.silent else Pong(request_id=rid)
        if isinstance(req, LoginWithToken) and not self.token_valid:
            return Error(request_id=rid, code=ErrorCode.TOKEN_INVALID, retry_after_ms=0, message="no")
        if isinstance(req, (Login, LoginWithToken)):
            return LoggedIn(request_id=rid, uid=ME, username="me", email="me@example.com", resume_token="tok",
                            token_expires_at_ms=0, totp_enabled=False)
        if isinstance(req, Sync):
            last = len(self.thread)
            return SyncState(request_id=rid, friend_requests=list(self.pending), threads=[ThreadInfo(
                thread_id=THREAD, kind=ThreadKind.DIRECT, peer_uid=PEER, title="peer", last_seq=last,
                read_seq=self.read_seq, unread=last - self.read_seq)])
        if isinstance(req, ListFriends):
            return Friends(request_id=rid, friends=[FriendInfo(uid=PEER, username="peer", remark="", online=True,
                                                               thread_id=THREAD)])
        if isinstance(req, ListFriendRequests):
            return FriendRequests(request_id=rid, incoming=list(self.pending), outgoing=[])
        if isinstance(req, History):
            assert req.direction is Direction.AFTER
            page = [m for m in self.thread if m.seq > req.cursor_seq][:req.limit]
            return HistoryPage(request_id=rid, thread_id=req.thread_id, messages=page,
                               has_more=bool(page) and page[-1].seq < len(self.thread))
        if isinstance(req, (SendMessage, SendAttachment)):
            text = req.text if isinstance(req, SendMessage) else req.caption
            stored = msg(len(self.thread) + 1, sender=ME, text=text or "file", client_msg_id=req.client_msg_id)
            self.thread.append(stored)
            self.read_seq = stored.seq
            return MessageAck(request_id=rid, thread_id=THREAD, seq=stored.seq, client_msg_id=req.client_msg_id,
                              sent_at_ms=0)
        if isinstance(req, MarkRead):
            self.read_seq = max(self.read_seq, min(req.seq, len(self.thread)))
            return Ok(request_id=rid)
        if isinstance(req, Logout):
            return Ok(request_id=rid)
        if isinstance(req, WhichNode):
            return NodeAssignment(request_id=rid, node_id="assigned", address=self.assign or link.endpoint,
                                  connections=0)
        raise AssertionError(f"unexpected request {req!r}")


class Harness:
    """A TinyChatClient wired to a FakeServer, recording what its handlers see."""

    def __init__(self, endpoints: list[str] | None = None, **options: Any) -> None:
        self.clock = Clock()
        self.server = FakeServer(self.clock)
        options.setdefault("backoff", Backoff(rng=lambda: 1.0))
        self.client = TinyChatClient(endpoints or ["a"], reactor=self.clock, connector=self.server.connector,
                                     **options)
        self.messages: list[ChatMessage] = []
        self.states: list[tuple[ConnectionState, ConnectionState]] = []
        self.client.on_message(self.messages.append)
        self.client.on_state(lambda old, new: self.states.append((old, new)))

    def login(self) -> LoggedIn:
        self.client.connect().result  # noqa: B018 - fires synchronously against the fake
        user = self.client.login("me", "pw")
        return user.result

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


def test_first_login_does_not_replay_history_and_fills_the_view():
    h = Harness()
    for i in range(3):
        h.server.add(f"old {i}", push=False)
    h.server.read_seq = 1
    h.server.pending = [request(40)]
    requests: list[FriendRequestInfo] = []
    h.client.on_friend_request(requests.append)
    assert h.login().uid == ME
    assert h.client.state is ConnectionState.LOGGED_IN
    assert h.messages == [] and requests == []
    assert h.server.sent(History) == []
    assert h.client.view.threads[THREAD].unread == 2 and h.client.view.friends[PEER].online
    assert list(h.client.view.friend_requests) == [40]
    h.server.add("live")
    assert h.texts() == ["live"]


def test_replay_unread_hands_out_what_is_after_the_read_mark():
    h = Harness(replay_unread=True)
    for i in range(1, 5):
        h.server.add(f"m{i}", push=False)
    h.server.read_seq = 2
    h.server.pending = [request(40)]
    requests: list[FriendRequestInfo] = []
    h.client.on_friend_request(requests.append)
    h.login()
    assert h.texts() == ["m3", "m4"]
    assert [r.friend_request_id for r in requests] == [40]


def test_live_duplicates_are_dropped_and_gaps_fetched_first():
    h = Harness()
    h.login()
    first = h.server.add("one")
    h.client.connection.dataReceived(encode(MessagePush(message=first)))  # the same push again
    h.server.add("two", push=False)  # its push is lost
    h.server.add("three")  # ... so this one reveals a gap
    assert h.texts() == ["one", "two", "three"]
    (history,) = h.server.sent(History)
    assert history.cursor_seq == 1


def test_a_gap_waits_for_own_sends_in_flight_and_own_messages_are_not_handed_back():
    h = Harness()
    h.login()
    h.server.add("one")
    # The own send is stored as seq 2; the peer's seq 3 is pushed before the ack comes back.
    held: list[defer.Deferred] = []
    answer = h.server.answer

    def slow_ack(link: FakeTransport, req: Message) -> Message | None:
        reply = answer(link, req)
        if isinstance(req, SendMessage):
            held.append(reply)
            return None
        return reply

    h.server.answer = slow_ack
    d = h.client.send_text("mine", to_uid=PEER)
    h.server.add("three")
    assert h.texts() == ["one"] and h.server.sent(History) == []  # waits for the ack instead of fetching
    h.client.connection.dataReceived(encode(held[0]))
    assert d.result.seq == 2
    assert h.texts() == ["one", "three"]
    assert h.server.sent(History) == []
    assert h.client.view.threads[THREAD].last_seq == 3


def test_resync_push_runs_sync_and_delivers_what_was_missed():
    h = Harness()
    h.login()
    resyncs: list[ResyncPush] = []
    synced: list[SyncState] = []
    h.client.on_resync(resyncs.append)
    h.client.on_sync(synced.append)
    h.server.add("missed 1", push=False)
    h.server.add("missed 2", push=False)
    h.server.link.push(ResyncPush(reason="bus hiccup"))
    assert [r.reason for r in resyncs] == ["bus hiccup"]
    assert h.texts() == ["missed 1", "missed 2"]
    assert len(h.server.sent(Sync)) == 2 and len(synced) == 1


def test_reconnect_backs_off_cycles_endpoints_resumes_and_resyncs():
    h = Harness(["a", "b"])
    h.login()
    h.server.add("before")
    h.server.down = {"a", "b"}
    h.server.link.loseConnection()
    assert h.client.state is ConnectionState.RECONNECTING
    h.server.add("while away 1", push=False)
    h.server.add("while away 2", push=False)
    h.clock.pump([0.5, 1, 2, 4])  # four failed attempts: a, b, a, b
    assert [(t, e) for t, e in h.server.attempts[1:]] == [(0.5, "a"), (1.5, "b"), (3.5, "a"), (7.5, "b")]
    h.server.down = set()
    h.clock.advance(7.9)
    assert len(h.server.attempts) == 5
    h.clock.advance(0.1)  # the fifth waits 8 s
    assert h.server.attempts[-1] == (15.5, "a")
    assert h.client.state is ConnectionState.LOGGED_IN
    assert len(h.server.sent(LoginWithToken)) == 1
    assert h.texts() == ["before", "while away 1", "while away 2"]
    assert [new for _, new in h.states] == [
        ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.LOGGED_IN,
        ConnectionState.RECONNECTING, ConnectionState.CONNECTED, ConnectionState.LOGGED_IN]
    # The schedule starts over after a success.
    h.server.link.loseConnection()
    h.clock.advance(0.5)
    assert h.server.attempts[-1] == (16.0, "a") and h.client.state is ConnectionState.LOGGED_IN


@pytest.mark.parametrize("how", ["close", "logout", "NEW_LOGIN", "PASSWORD_RESET"])
def test_no_reconnect_after_close_logout_or_terminal_kicks(how):
    h = Harness()
    h.login()
    if how == "close":
        h.client.close()
    elif how == "logout":
        h.client.logout().result  # noqa: B018
        assert h.client.state is ConnectionState.CONNECTED and h.client.user is None
        h.server.link.loseConnection()
    else:
        kicks: list[KickedPush] = []
        h.client.on_kicked(kicks.append)
        h.server.link.push(KickedPush(reason=KickReason[how], message="bye"))
        h.server.link.loseConnection()
        assert kicks[0].reason is KickReason[how]
    assert h.client.state is ConnectionState.DISCONNECTED
    h.clock.advance(60)
    assert len(h.server.attempts) == 1
    assert h.clock.getDelayedCalls() == []


def test_server_shutdown_kick_reconnects():
    h = Harness()
    h.login()
    h.server.link.push(KickedPush(reason=KickReason.SERVER_SHUTDOWN, message="restart"))
    h.server.link.loseConnection()
    assert h.client.state is ConnectionState.RECONNECTING
    h.clock.advance(0.5)
    assert h.client.state is ConnectionState.LOGGED_IN


def test_close_while_reconnecting_cancels_the_timer():
    h = Harness()
    h.login()
    h.server.down = {"a"}
    h.server.link.loseConnection()
    h.clock.advance(0.5)
    assert h.client.state is ConnectionState.RECONNECTING
    h.client.close()
    assert h.client.state is ConnectionState.DISCONNECTED
    assert h.clock.getDelayedCalls() == []


def test_a_refused_token_ends_reconnecting():
    h = Harness()
    h.login()
    h.server.token_valid = False
    h.server.link.loseConnection()
    h.clock.advance(0.5)
    assert h.client.state is ConnectionState.DISCONNECTED and h.server.link.disconnecting
    h.clock.advance(60)
    assert len(h.server.attempts) == 2 and len(h.server.sent(LoginWithToken)) == 1
    assert h.client.connect().result is not None  # the app connects and logs in again itself
    assert h.login().uid == ME


def test_a_connection_that_never_logged_in_is_not_reopened():
    h = Harness()
    h.client.connect()
    h.server.link.loseConnection()
    assert h.client.state is ConnectionState.DISCONNECTED
    h.clock.advance(60)
    assert len(h.server.attempts) == 1


def test_follow_assignment_moves_to_the_named_node():
    h = Harness(["a"], follow_assignment=True)
    h.server.assign = "b"
    welcome = h.client.connect().result
    assert welcome.node_id == "b" and h.client.endpoint == "b"
    assert h.server.links[0].disconnecting and not h.server.link.disconnecting
    h.server.assign = ""  # already where it should be: stays
    h2 = Harness(["a"], follow_assignment=True)
    assert h2.client.connect().result.node_id == "a" and len(h2.server.links) == 1


def test_connect_tries_each_endpoint_and_fails_with_the_last_error():
    h = Harness(["a", "b"])
    h.server.down = {"a"}
    assert h.client.connect().result.node_id == "b"
    h2 = Harness(["a", "b"])
    h2.server.down = {"a", "b"}
    failure = h2.client.connect()
    errors: list[Failure] = []
    failure.addErrback(errors.append)
    assert errors[0].check(ConnectionRefusedError)
    assert h2.client.state is ConnectionState.DISCONNECTED


def test_failing_handlers_are_logged_and_do_not_stop_the_others():
    h = Harness()
    h.login()
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        h.client.on_message(lambda m: 1 / 0)
        h.client.on_message(lambda m: defer.fail(ValueError("async failure")))

        async def coroutine_handler(m: ChatMessage) -> None:
            raise KeyError("in a coroutine")

        h.client.on_message(coroutine_handler)
        everything: list[Message] = []
        h.client.on(None, everything.append)
        h.server.add("hello")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert h.texts() == ["hello"]
    assert [type(p) for p in everything] == [MessagePush]
    failures = [e["log_failure"] for e in logged if "log_failure" in e]
    assert {type(f.value) for f in failures} >= {ZeroDivisionError, ValueError, KeyError}


def test_aliases_off_and_when_state():
    h = Harness()
    presence: list[PresencePush] = []
    marks: list[ReadMarkPush] = []
    removed: list[FriendRemovedPush] = []
    responses: list[FriendResponsePush] = []
    h.client.on_presence(presence.append)
    h.client.on_read_mark(marks.append)
    h.client.on_friend_removed(removed.append)
    h.client.on_friend_response(responses.append)
    waiting = h.client.when_state(ConnectionState.LOGGED_IN)
    assert not waiting.called
    h.login()
    assert waiting.result is ConnectionState.LOGGED_IN
    h.server.link.push(PresencePush(uid=PEER, online=False))
    h.server.link.push(ReadMarkPush(thread_id=THREAD, uid=PEER, read_seq=0))
    h.server.link.push(FriendResponsePush(friend_request_id=5, peer_uid=9, peer_username="z", accepted=True,
                                          thread_id=90))
    h.server.link.push(FriendRemovedPush(uid=PEER))
    assert len(presence) == len(marks) == len(removed) == len(responses) == 1
    assert PEER not in h.client.view.friends and 9 in h.client.view.friends
    h.client.off(presence.append)
    h.server.link.push(PresencePush(uid=9, online=False))
    assert len(presence) == 1 and not h.client.view.friends[9].online


def test_mark_read_and_sends_update_the_view():
    h = Harness()
    h.login()
    h.server.add("a")
    h.server.add("b")
    assert h.client.view.threads[THREAD].unread == 2
    h.client.mark_read(THREAD, 1).result  # noqa: B018
    assert h.client.view.threads[THREAD].unread == 1
    ack = h.client.send_text("reply", thread_id=THREAD).result
    assert ack.seq == 3 and h.client.view.threads[THREAD].unread == 0
    assert h.texts() == ["a", "b"]


def test_a_silent_link_is_dropped_after_an_unanswered_heartbeat_and_reconnected():
    h = Harness()
    h.login()
    h.server.silent = True
    h.clock.advance(30)  # the heartbeat PING goes out (WELCOME: every 30 s, idle timeout 90 s)
    assert h.client.state is ConnectionState.LOGGED_IN
    h.clock.advance(89)
    assert h.client.state is ConnectionState.LOGGED_IN
    h.server.silent = False
    h.clock.advance(1)  # no PONG within the idle timeout: the link is presumed dead
    assert h.client.state is ConnectionState.RECONNECTING
    h.clock.advance(0.5)
    assert h.client.state is ConnectionState.LOGGED_IN and len(h.server.links) == 2


def test_a_message_in_a_thread_new_to_the_view_refreshes_the_threads():
    h = Harness()
    h.login()
    syncs = len(h.server.sent(Sync))
    h.server.link.push(MessagePush(message=msg(1, thread_id=70, sender=3)))
    assert [m.thread_id for m in h.messages] == [70]
    assert len(h.server.sent(Sync)) == syncs + 1  # its kind and title come from SYNC (a group, say)


def test_files_sent_by_the_client_count_as_its_own_messages():
    h = Harness()
    h.login()
    h.server.add("one")
    ack = h.client.send_file("ab" * 32, to_uid=PEER, caption="a picture").result
    assert ack.seq == 2 and h.client.view.threads[THREAD].unread == 0
    h.server.add("three")
    h.client.resync().result  # noqa: B018
    assert h.texts() == ["one", "three"] and h.server.sent(History) == []
