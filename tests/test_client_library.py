"""The client library against real nodes: methods, events, the local view, reconnection and
resync across node restarts and failures, node lists and assignment, and the examples."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from twisted.internet import reactor
from twisted.internet.task import Clock

from tests.chat import PASSWORD, Users
from tests.conftest import FAST_HASHING, smtp_args
from tests.reactor_thread import call
from tinychat.client import ConnectionState, TinyChatClient
from tinychat.client.errors import (
    AuthFailedError,
    CodeInvalidError,
    FriendRequestNotFoundError,
    NotFriendsError,
    ThreadNotFoundError,
    TokenInvalidError,
    TotpInvalidError,
    TotpRequiredError,
)
from tinychat.protocol import (
    ChatMessage,
    CodePurpose,
    FriendResponsePush,
    KickReason,
    Message,
    ResyncPush,
)
from tinychat.testing.nodes import run_node

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
S = ConnectionState


class Events:
    """What a handler was called with, collected in the reactor thread, awaited in the test thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()

    def __call__(self, *args: Any) -> None:
        self.queue.put(args[0] if len(args) == 1 else args)

    def next(self, timeout: float = 10.0, where: Callable[[Any], bool] | None = None) -> Any:
        while True:
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no event within {timeout} s") from None
            if where is None or where(item):
                return item

    def take(self, count: int, timeout: float = 10.0) -> list[Any]:
        return [self.next(timeout) for _ in range(count)]

    def drain(self) -> list[Any]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


class Client:
    """A TinyChatClient driven from the test thread, with its events recorded from the start."""

    def __init__(self, endpoint: str | list[str], *, connect: bool = True, **options: Any) -> None:
        self.client: TinyChatClient = call(TinyChatClient, endpoint, reactor=reactor, **options)
        self.messages, self.states, self.pushes = Events(), Events(), Events()
        call(self._subscribe)
        if connect:
            self.connect()

    def _subscribe(self) -> None:
        self.client.on_message(self.messages)
        self.client.on_state(self.states)
        self.client.on(None, self.pushes)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if callable(attr):
            return lambda *args, **kwargs: call(attr, *args, **kwargs)
        return attr

    @property
    def uid(self) -> int:
        return self.client.view.uid

    @property
    def view(self):
        return self.client.view

    def subscribe(self, event: str) -> Events:
        """Record an alias event, e.g. subscribe("on_presence")."""
        events = Events()
        call(getattr(self.client, event), events)
        return events

    def next_push(self, push_type: type[Message] | None = None, timeout: float = 10.0,
                  where: Callable[[Any], bool] | None = None) -> Any:
        return self.pushes.next(timeout, lambda p: (push_type is None or isinstance(p, push_type))
                                and (where is None or where(p)))

    def wait_state(self, state: ConnectionState, timeout: float = 20.0) -> None:
        call(self.client.when_state, state, timeout=timeout)

    def texts(self, count: int, timeout: float = 10.0) -> list[str]:
        return [m.text for m in self.messages.take(count, timeout)]


@pytest.fixture
def clients(request) -> Iterator[Callable[..., Client]]:
    """Make Clients (by default on the chat node); all are closed at the end, reconnecting or not."""
    made: list[Client] = []

    def make(endpoint: str | list[str] | None = None, **options: Any) -> Client:
        client = Client(endpoint or request.getfixturevalue("chat_node").endpoint, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        call(client.client.close)


def log_in(clients, users: Users, name: str, **options: Any) -> Client:
    username, _, _ = users.register(name)
    client = clients(**options)
    client.login(username, PASSWORD)
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- methods, events, view


def test_friend_requests_presence_and_removal_with_events_and_view(users, clients):
    alice = log_in(clients, users, "alice")
    bob = log_in(clients, users, "bob")
    requests_to_bob = bob.subscribe("on_friend_request")
    answers_to_alice = alice.subscribe("on_friend_response")
    request_id = alice.add_friend(bob.uid, "hi bob")
    assert alice.view.outgoing_requests[request_id].to_uid == bob.uid
    info = requests_to_bob.next()
    assert (info.friend_request_id, info.from_uid, info.from_username, info.greeting) == (
        request_id, alice.uid, "alice", "hi bob")
    assert request_id in bob.view.friend_requests
    assert [r.friend_request_id for r in bob.friend_requests().incoming] == [request_id]
    resolved = bob.accept_friend(request_id, remark="met in a test")
    assert resolved.accepted and resolved.peer_uid == alice.uid
    answer = answers_to_alice.next()
    assert answer.accepted and answer.thread_id == resolved.thread_id and answer.peer_username == "bob"
    friend = bob.view.friends[alice.uid]
    assert (friend.username, friend.remark, friend.online, friend.thread_id) == (
        "alice", "met in a test", True, resolved.thread_id)
    assert bob.view.friend_requests == {}
    assert alice.view.friends[bob.uid].online and alice.view.thread_with(bob.uid).thread_id == resolved.thread_id
    assert alice.view.outgoing_requests == {}
    assert [f.uid for f in alice.friends()] == [bob.uid]

    presence = alice.subscribe("on_presence")
    bob.logout()
    assert bob.state is S.CONNECTED and bob.user is None
    assert (presence.next().uid, alice.view.friends[bob.uid].online) == (bob.uid, False)
    bob.login("bob", PASSWORD)
    assert presence.next().online and alice.view.friends[bob.uid].online

    removed = bob.subscribe("on_friend_removed")
    alice.remove_friend(bob.uid)
    assert removed.next().uid == alice.uid
    assert bob.uid not in alice.view.friends and alice.uid not in bob.view.friends
    assert resolved.thread_id in alice.view.threads  # the history stays readable
    with pytest.raises(NotFriendsError):
        alice.send_text("still there?", to_uid=bob.uid)

    carol = log_in(clients, users, "carol")
    answers_to_carol = carol.subscribe("on_friend_response")
    rejected = carol.add_friend(alice.uid)
    assert not alice.reject_friend(rejected).accepted
    assert not answers_to_carol.next().accepted
    assert alice.view.friend_requests == {}
    with pytest.raises(FriendRequestNotFoundError):
        alice.accept_friend(rejected)
    assert [u.username for u in alice.search("car")] == ["carol"]


def test_messages_read_marks_and_what_was_missed_while_logged_out(users, clients):
    alice = log_in(clients, users, "alice")
    bob = log_in(clients, users, "bob")
    thread_id = users.friends(alice, bob)
    ack = alice.send_text("one", to_uid=bob.uid)
    assert (ack.thread_id, ack.seq) == (thread_id, 1)
    message = bob.messages.next()
    assert isinstance(message, ChatMessage) and (message.text, message.seq, message.sender_uid) == (
        "one", 1, alice.uid)
    assert bob.view.threads[thread_id].unread == 1
    assert alice.view.threads[thread_id].last_seq == 1 and alice.view.threads[thread_id].unread == 0

    receipts = alice.subscribe("on_read_mark")
    bob.mark_read(thread_id, 1)
    receipt = receipts.next()
    assert (receipt.uid, receipt.read_seq) == (bob.uid, 1)
    assert alice.view.threads[thread_id].peer_read_seq == 1 and bob.view.threads[thread_id].unread == 0

    bob.logout()
    for i in range(3):
        alice.send_text(f"away {i}", to_uid=bob.uid)
    bob.login("bob", PASSWORD)  # the login's resync hands over what came meanwhile
    assert [(m.seq, m.text) for m in bob.messages.take(3)] == [(2, "away 0"), (3, "away 1"), (4, "away 2")]
    assert bob.view.threads[thread_id].unread == 3
    reply = bob.send_text("back", thread_id=thread_id)
    assert reply.seq == 5 and bob.view.threads[thread_id].unread == 0
    assert alice.texts(1) == ["back"]
    alice.send_text("live", to_uid=bob.uid)
    assert bob.texts(1) == ["live"]  # nothing twice in between
    assert alice.messages.drain() == [] and bob.messages.drain() == []  # own sends are not handed back

    state = bob.resync()
    assert state.threads[0].last_seq == 6 and bob.messages.drain() == []
    assert bob.sync().threads[0].unread == 1
    assert [m.seq for m in bob.history(thread_id, before_seq=3).messages] == [1, 2]
    assert [m.seq for m in bob.history_after(thread_id, 4, limit=1).messages] == [5]
    assert [m.text for m in bob.fetch_since(thread_id, 4)] == ["back", "live"]
    with pytest.raises(ThreadNotFoundError):
        bob.history(thread_id + 1000)


def test_first_login_replays_only_when_asked(users, clients):
    alice = log_in(clients, users, "alice")
    bob = log_in(clients, users, "bob")
    thread_id = users.friends(alice, bob)
    for i in range(4):
        alice.send_text(f"m{i}", to_uid=bob.uid)
    bob.messages.take(4)
    bob.mark_read(thread_id, 2)
    bob.close()
    quiet = clients()
    quiet.login("bob", PASSWORD)
    assert quiet.view.threads[thread_id].unread == 2 and quiet.messages.drain() == []
    quiet.close()
    replay = clients(replay_unread=True)
    replay.login("bob", PASSWORD)
    assert [(m.seq, m.text) for m in replay.messages.take(2)] == [(3, "m2"), (4, "m3")]
    alice.send_text("new", to_uid=bob.uid)
    assert replay.texts(1) == ["new"]


def test_states_kicks_and_errors(users, clients):
    name, email, uid = users.register("kim")
    kim = clients(connect=False)
    assert kim.state is S.DISCONNECTED
    assert kim.connect().node_id == "chat-node"
    with pytest.raises(AuthFailedError):
        kim.login(name, "not the password")
    user = kim.login(name, PASSWORD)
    assert user.uid == uid and kim.ping() and kim.which_node().node_id == "chat-node"
    kim.logout()
    kim.login(email, PASSWORD)
    kicked = kim.subscribe("on_kicked")
    other = clients()
    other.login(str(uid), PASSWORD)
    assert kicked.next().reason is KickReason.NEW_LOGIN
    kim.wait_state(S.DISCONNECTED)
    assert [new for _, new in kim.states.drain()] == [
        S.CONNECTING, S.CONNECTED, S.LOGGED_IN, S.CONNECTED, S.LOGGED_IN, S.DISCONNECTED]
    assert kim.last_kick.reason is KickReason.NEW_LOGIN  # and no attempt to log in again
    assert other.ping()
    other.close()
    assert other.state is S.DISCONNECTED


@pytest.mark.parametrize("backend", ["sqlite"])
def test_account_methods(users, clients, smtp_server):
    fresh = clients()
    fresh.request_code("zoe@example.com", CodePurpose.REGISTER)
    with pytest.raises(CodeInvalidError):
        fresh.register("zoe", "zoe@example.com", PASSWORD, "000000")
    uid = fresh.register("zoe", "zoe@example.com", PASSWORD, smtp_server.code_for("zoe@example.com"))
    token = fresh.login("zoe", PASSWORD).resume_token
    secret = fresh.totp_setup().secret
    with pytest.raises(TotpInvalidError):
        fresh.totp_confirm("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    fresh.totp_confirm(pyotp.TOTP(secret).now())
    fresh.close()
    again = clients()
    assert again.login_with_token(token).uid == uid
    again.logout()
    with pytest.raises(TotpRequiredError):
        again.login("zoe", PASSWORD)
    again.login("zoe", PASSWORD, pyotp.TOTP(secret).now())
    again.totp_disable(pyotp.TOTP(secret).now())
    kicked = again.subscribe("on_kicked")
    helper = clients()
    helper.request_code("zoe@example.com", CodePurpose.RESET_PASSWORD)
    helper.reset_password("zoe@example.com", smtp_server.code_for("zoe@example.com"), "another good password")
    assert kicked.next().reason is KickReason.PASSWORD_RESET
    again.wait_state(S.DISCONNECTED)
    with pytest.raises(TokenInvalidError):
        helper.login_with_token(token)
    assert helper.login("zoe", "another good password").uid == uid


# ---------------------------------------------------------------- reconnection and resync


def test_reconnect_after_the_node_restarts_delivers_what_was_missed_once_in_order(
        users, clients, chat_node, database, backend_args, smtp_server, tmp_path):
    away = Clock()  # alice's reconnection timer: she stays away until the test moves it
    alice = log_in(clients, users, "alice", clock=away)
    bob = log_in(clients, users, "bob")  # reconnects on the real clock
    thread_id = users.friends(alice, bob)
    bob.send_text("before", thread_id=thread_id)
    assert alice.texts(1) == ["before"]
    port = chat_node.port
    chat_node.stop()
    alice.wait_state(S.RECONNECTING)
    bob.wait_state(S.RECONNECTING)
    assert alice.last_kick.reason is KickReason.SERVER_SHUTDOWN
    restart = ["--listen", f"tcp:{port}:interface=127.0.0.1", "--db", database, "--node-id", "chat-node",
               *FAST_HASHING, *smtp_args(smtp_server), *backend_args]
    with run_node(restart, tmp_path) as node:
        bob.wait_state(S.LOGGED_IN, timeout=40)
        assert bob.which_node().node_id == node.node_id
        for i in range(3):
            assert bob.send_text(f"while away {i}", thread_id=thread_id).seq == i + 2
        assert alice.state is S.RECONNECTING
        call(away.advance, 60)  # alice's next attempt is due: reconnect, token login, resync
        alice.wait_state(S.LOGGED_IN)
        assert [(m.seq, m.text) for m in alice.messages.take(3)] == [
            (2, "while away 0"), (3, "while away 1"), (4, "while away 2")]
        bob.send_text("after", thread_id=thread_id)
        assert [(m.seq, m.text) for m in alice.messages.take(1)] == [(5, "after")]
        assert alice.messages.drain() == []
        assert alice.view.threads[thread_id].last_seq == 5 and alice.view.friends[bob.uid].online
        states = [new for _, new in alice.states.drain()]
        assert states[-3:] == [S.RECONNECTING, S.CONNECTED, S.LOGGED_IN]
        alice.close()
        bob.close()


@pytest.mark.parametrize("backend", ["mysql+redis"])
def test_reconnect_cycles_to_another_node_of_the_cluster(users, clients, chat_node, node_factory, database,
                                                         backend_args, smtp_server):
    with node_factory("--node-id", "second", *FAST_HASHING, *smtp_args(smtp_server), *backend_args,
                      db=database) as second:
        alice = log_in(clients, users, "alice", endpoint=[chat_node.endpoint, second.endpoint])
        bob = log_in(clients, users, "bob", endpoint=second.endpoint)
        thread_id = users.friends(alice, bob)
        chat_node.stop()
        # Bob writes on while alice moves over: whatever reaches her live or through the resync,
        # she sees every message once, in order.
        sent = [bob.send_text(f"n{i}", thread_id=thread_id).seq for i in range(20)]
        alice.wait_state(S.LOGGED_IN)
        assert alice.client.endpoint == second.endpoint
        assert [m.seq for m in alice.messages.take(20)] == sent == list(range(1, 21))
        bob.send_text("last", thread_id=thread_id)
        assert alice.texts(1) == ["last"] and alice.messages.drain() == []
        alice.close()
        bob.close()


@pytest.mark.parametrize("backend", ["mysql"])
def test_resync_push_after_a_redis_outage_delivers_what_the_bus_lost(clients, node_factory, database, smtp_server,
                                                                       redis_server):
    args = ["--redis", redis_server.url, *FAST_HASHING, *smtp_args(smtp_server)]
    with node_factory("--node-id", "n1", *args, db=database) as n1, \
            node_factory("--node-id", "n2", *args, db=database) as n2:
        users = Users(n1.endpoint, smtp_server.code_for)
        alice = log_in(clients, users, "alice", endpoint=n1.endpoint)
        bob = log_in(clients, users, "bob", endpoint=n2.endpoint)
        thread_id = users.friends(alice, bob)
        resyncs = alice.subscribe("on_resync")
        redis_server.stop()
        bob.send_text("lost by the bus", thread_id=thread_id)  # stored; its push cannot cross
        redis_server.start()
        assert isinstance(resyncs.next(timeout=30), ResyncPush)
        assert [(m.seq, m.text) for m in alice.messages.take(1)] == [(1, "lost by the bus")]
        alice.resync()  # once more: nothing is handed out twice
        assert alice.messages.drain() == [] and alice.view.threads[thread_id].unread == 1
        alice.close()
        bob.close()
        users.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_endpoint_list_and_following_the_node_assignment(users, clients, chat_node, node_factory, tmp_path):
    dead = f"tcp:host=127.0.0.1:port={free_port()}"
    listed = clients([dead, chat_node.endpoint])
    assert listed.client.endpoint == chat_node.endpoint and listed.welcome.node_id == "chat-node"
    with node_factory("--node-id", "front", "--public-address", chat_node.endpoint,
                      db=f"sqlite:///{tmp_path / 'front.sqlite3'}") as front:
        moved = clients(front.endpoint, follow_assignment=True)
        assert moved.welcome.node_id == "chat-node" and moved.client.endpoint == chat_node.endpoint
        name, _, uid = users.register("mover")
        assert moved.login(name, PASSWORD).uid == uid
        stays = clients(front.endpoint)
        assert stays.welcome.node_id == "front"
    home = clients(chat_node.endpoint, follow_assignment=True)
    assert home.welcome.node_id == "chat-node"


# ---------------------------------------------------------------- the examples, as programs


class Program:
    """An example run as a subprocess, its output lines readable with a timeout."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, text: str, timeout: float = 20.0) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout} s; output:\n{''.join(self.output)}") from None
            if line is None:
                raise AssertionError(f"exited before {text!r}; output:\n{''.join(self.output)}")
            if text in line:
                return line

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"still running; output:\n{''.join(self.output)}") from None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # SIGINT may be ignored when run in the background
        return self.wait()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_asyncio_example_sends_prints_the_ack_and_reads_the_reply(users, clients, chat_node):
    asyncer = log_in(clients, users, "asyncer")
    bob = log_in(clients, users, "bob")
    thread_id = users.friends(bob, asyncer)
    asyncer.close()
    program = Program("examples/asyncio_client.py", "--server", chat_node.endpoint, "--user", "asyncer",
                      "--password", PASSWORD, "--to", "bob", "--text", "hello from asyncio", "--wait-reply", "20")
    try:
        assert f"ack thread_id={thread_id} seq=1 " in program.expect("ack thread_id=")
        message = bob.messages.next(timeout=20)
        assert (message.text, message.seq, message.sender_uid) == ("hello from asyncio", 1, asyncer.uid)
        bob.send_text("hello back", thread_id=thread_id)
        assert "reply seq=2 from bob: hello back" in program.expect("reply")
        assert program.wait() == 0
    finally:
        program.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_echo_bot_accepts_requests_and_echoes_each_message_once_across_restarts(users, clients, chat_node):
    bot_name, _, bot_uid = users.register("echobot")
    carol = log_in(clients, users, "carol")
    early = carol.add_friend(bot_uid, "are you up?")  # pending before the bot starts
    command = ["examples/echo_bot.py", "--server", chat_node.endpoint, "--user", bot_name, "--password", PASSWORD]
    bot = Program(*command)
    try:
        bot.expect("logged in")
        answer = carol.next_push(FriendResponsePush, timeout=20)
        assert answer.accepted and answer.friend_request_id == early and answer.peer_uid == bot_uid
        alice = log_in(clients, users, "alice")
        alice.add_friend(bot_uid, "hello bot")
        thread_id = alice.next_push(FriendResponsePush, timeout=20).thread_id
        alice.send_text("ping 1", to_uid=bot_uid)
        echo = alice.messages.next(timeout=20)
        assert (echo.text, echo.sender_uid, echo.seq, echo.thread_id) == ("ping 1", bot_uid, 2, thread_id)
        assert bot.stop() == 0
        alice.send_text("while you were down", to_uid=bot_uid)
        bot = Program(*command)
        bot.expect("logged in")
        echo = alice.messages.next(timeout=20)
        assert (echo.text, echo.seq) == ("while you were down", 4)
        carol.send_text("hi", to_uid=bot_uid)
        assert carol.texts(1, timeout=20) == ["hi"]
        alice.send_text("ping 2", to_uid=bot_uid)
        assert alice.texts(1, timeout=20) == ["ping 2"]
        assert bot.stop() == 0
        assert alice.messages.drain() == []  # every message echoed exactly once
    finally:
        bot.stop()
