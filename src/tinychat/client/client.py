"""The high-level client: a method per operation, events, a local view, reconnection.

    client = TinyChatClient(["tcp:host=chat1:port=7420", "tcp:host=chat2:port=7420"])

    @client.on_message
    def show(message): print(message.sender_uid, message.text)

    await client.connect()
    await client.login("alice", "correct horse")
    ack = await client.send_text("hello", to_uid=10001)

Every method returns a Deferred (await it from `async def` code, or add
callbacks); refusals raise the `ServerError` subclass of their error code
(`tinychat.client.errors`).  See docs/client.md for the whole API and for the
guarantees of reconnection and resync:

- When the connection drops, the client reconnects with jittered exponential
  backoff, cycling through its endpoints, logs in again with the resume token
  and resyncs; it stays down after `close()`, after `logout()`, and after a
  KICKED push for NEW_LOGIN, PASSWORD_RESET or LOGGED_OUT.
- Message handlers see each thread densely, in seq order, each message once:
  duplicates are dropped, gaps are fetched with HISTORY AFTER before what
  follows them is handed out, and what was missed while away arrives through
  the resync.  The client's own sends are not handed back (their ack is the
  app's copy).  The first login of a client starts at each thread's newest
  message, or at its read mark with `replay_unread=True`.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinychat.client.connection import CLIENT_NAME, DEFAULT_REQUEST_TIMEOUT, ClientConnection, connect
from tinychat.client.errors import (
    AuthFailedError,
    ConnectionClosedError,
    InternalServerError,
    RateLimitedError,
    RequestTimeoutError,
    ServiceUnavailableError,
    TokenInvalidError,
)
from tinychat.client.media import MediaMixin
from tinychat.client.view import LocalView, MessageSequencer
from tinychat.protocol import (
    MAX_HISTORY_PAGE,
    ChatMessage,
    CodePurpose,
    CodeSent,
    Direction,
    FriendInfo,
    FriendRemovedPush,
    FriendRequestPush,
    FriendRequestResolved,
    FriendRequests,
    FriendResponsePush,
    GroupChangedPush,
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
    Ping,
    Pong,
    PresencePush,
    ReadMarkPush,
    Register,
    RemoveFriend,
    RequestCode,
    ResetPassword,
    RespondFriendRequest,
    ResyncPush,
    SearchUsers,
    SendFriendRequest,
    SendMessage,
    Sync,
    SyncState,
    TotpConfirm,
    TotpDisable,
    TotpSecret,
    TotpSetup,
    UserSummary,
    Welcome,
    WhichNode,
)

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=Callable[..., Any])
log = Logger()

# Kicks after which logging in again by itself would be wrong (see the protocol's login section).
TERMINAL_KICKS = frozenset({KickReason.NEW_LOGIN, KickReason.PASSWORD_RESET, KickReason.LOGGED_OUT})
# Failures of the token login after a reconnect that are worth another connection later.
RETRYABLE = (RateLimitedError, InternalServerError, ServiceUnavailableError, RequestTimeoutError)
OWN_IDS_KEPT = 10_000  # client_msg_ids of this client's sends, to recognise them in history
_UNKNOWN_THREAD = 0  # in-flight sends whose thread is not known yet (by to_uid, friend not in the view)

Connector = Callable[[str], Awaitable[ClientConnection]]


def deferred(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, defer.Deferred[R]]:
    """Expose a coroutine method as a Deferred-returning one (usable with await too)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> defer.Deferred[R]:
        return defer.Deferred.fromCoroutine(fn(*args, **kwargs))

    return wrapper


def new_client_msg_id() -> int:
    """A random 64-bit idempotency key."""
    return random.getrandbits(64) or 1


async def gather(*ds: defer.Deferred) -> list[Any]:
    """Wait for every Deferred; raise the first failure itself (not FirstError)."""
    try:
        return await defer.gatherResults(list(ds), consumeErrors=True)
    except defer.FirstError as e:
        e.subFailure.raiseException()
        raise  # not reached


def same_endpoint(a: str, b: str) -> bool:
    """Whether two client endpoint strings name the same place (parameter order aside)."""

    def key(description: str) -> tuple[str, ...]:
        kind, *params = re.split(r"(?<!\\):", description.strip())
        return (kind.lower(), *sorted(params))

    return key(a) == key(b)


class ConnectionState(StrEnum):
    """Where the client is; `on_state` handlers get (old, new) on every change."""

    DISCONNECTED = "disconnected"  # not connected, and not trying to be
    CONNECTING = "connecting"  # connect() in progress
    CONNECTED = "connected"  # handshake done, not logged in
    LOGGED_IN = "logged_in"  # a session is live
    RECONNECTING = "reconnecting"  # the connection dropped; waiting for or making the next attempt


@dataclass
class Backoff:
    """Delays between reconnection attempts: exponential with full jitter.

    Attempt n waits a uniformly random time in [0, min(cap, initial * factor**n)],
    so that many clients cut off by one node failure do not come back in step.
    """

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: bool = True
    rng: Callable[[], float] = random.random

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.initial * self.factor ** min(attempt, 64))

    def delay(self, attempt: int) -> float:
        ceiling = self.ceiling(attempt)
        return self.rng() * ceiling if self.jitter else ceiling


class TinyChatClient(MediaMixin):
    """A TinyChat user's connection, with a method for each operation.

    `endpoint` is one Twisted client endpoint string or a list of them (the
    nodes to cycle through when reconnecting).  `clock` (default: the reactor)
    times the reconnection backoff; `connector` replaces how a connection is
    opened and handshaken, for tests.
    """

    def __init__(self, endpoint: str | Sequence[str], *, reactor: Any = None, client_name: str = CLIENT_NAME,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT, auto_reconnect: bool = True,
                 follow_assignment: bool = False, replay_unread: bool = False, backoff: Backoff | None = None,
                 clock: IReactorTime | None = None, connector: Connector | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.endpoints: list[str] = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        if not self.endpoints:
            raise ValueError("give at least one endpoint")
        self.endpoint = self.endpoints[0]  # the one in use (or last used)
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.client_name = client_name
        self.request_timeout = request_timeout
        self.auto_reconnect = auto_reconnect
        self.follow_assignment = follow_assignment
        self.replay_unread = replay_unread
        self.backoff = backoff or Backoff()
        self._connector = connector or self._connect_endpoint
        self.connection: ClientConnection | None = None
        self.user: LoggedIn | None = None
        self.view = LocalView()
        self.last_kick: KickedPush | None = None
        self._state = ConnectionState.DISCONNECTED
        self._handlers: list[tuple[type[Message] | None, Callable[..., Any], Callable[[Any], Any] | None]] = []
        self._state_handlers: list[Callable[[ConnectionState, ConnectionState], Any]] = []
        self._sync_handlers: list[Callable[[SyncState], Any]] = []
        self._state_waiters: list[tuple[ConnectionState, defer.Deferred]] = []
        self._sequencer = MessageSequencer()
        self._closing = False  # close() was called
        self._kicked: KickReason | None = None  # the last terminal kick
        self._resume_session = False  # a session to restore: reconnect and log in with the token
        self._attempt = 0  # reconnection attempts since the last success
        self._reconnect_task: defer.Deferred | None = None
        self._own_ids: OrderedDict[int, None] = OrderedDict()
        self._in_flight: dict[int, int] = {}
        self._fill_locks: dict[int, defer.DeferredLock] = {}
        self._resync_lock = defer.DeferredLock()
        self._refreshing = False

    # ------------------------------------------------------------ state

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def welcome(self) -> Welcome | None:
        return self.connection.welcome if self.connection else None

    def on_state(self, handler: Callable[[ConnectionState, ConnectionState], Any]) -> Callable[..., Any]:
        """Call `handler(old, new)` on every state change; usable as a decorator."""
        self._state_handlers.append(handler)
        return handler

    def when_state(self, state: ConnectionState) -> defer.Deferred[ConnectionState]:
        """A Deferred that fires once the client is in `state` (at once if it is)."""
        if self._state is state:
            return defer.succeed(state)
        d: defer.Deferred[ConnectionState] = defer.Deferred(
            canceller=lambda d: self._state_waiters.remove((state, d)) if (state, d) in self._state_waiters else None)
        self._state_waiters.append((state, d))
        return d

    def _set_state(self, new: ConnectionState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        log.debug("client state {old} -> {new}", old=old.value, new=new.value)
        for handler in list(self._state_handlers):
            self._call(handler, old, new)
        ready = [d for state, d in self._state_waiters if state is new]
        self._state_waiters = [(state, d) for state, d in self._state_waiters if state is not new]
        for d in ready:
            d.callback(new)

    # ------------------------------------------------------------ events

    def on(self, push_type: type[Message] | None = None, handler: Callable[[Message], Any] | None = None) -> Any:
        """Subscribe `handler` to a push type (None: all pushes); usable as a decorator.

        MESSAGE_PUSH handlers get the de-duplicated, gap-free stream, including
        messages fetched by a resync (as MessagePush objects).
        """

        def register(fn: Callable[[Message], Any]) -> Callable[[Message], Any]:
            self._handlers.append((push_type, fn, None))
            return fn

        return register(handler) if handler is not None else register

    def _alias(self, push_type: type[Message], handler: H, adapt: Callable[[Any], Any] | None = None) -> H:
        self._handlers.append((push_type, handler, adapt))
        return handler

    def on_message(self, handler: H) -> H:
        """handler(ChatMessage) for each message of each thread: once, in seq order, without gaps."""
        return self._alias(MessagePush, handler, lambda push: push.message)

    def on_friend_request(self, handler: H) -> H:
        """handler(FriendRequestInfo) for each friend request addressed to the user."""
        return self._alias(FriendRequestPush, handler, lambda push: push.request)

    def on_friend_response(self, handler: H) -> H:
        """handler(FriendResponsePush) when a friend request of the user's is answered."""
        return self._alias(FriendResponsePush, handler)

    def on_friend_removed(self, handler: H) -> H:
        """handler(FriendRemovedPush) when a friend ends the friendship."""
        return self._alias(FriendRemovedPush, handler)

    def on_presence(self, handler: H) -> H:
        """handler(PresencePush) when a friend comes online or goes offline."""
        return self._alias(PresencePush, handler)

    def on_kicked(self, handler: H) -> H:
        """handler(KickedPush) when the server ends the session."""
        return self._alias(KickedPush, handler)

    def on_resync(self, handler: H) -> H:
        """handler(ResyncPush) when the server asks for a resync (the client runs it by itself)."""
        return self._alias(ResyncPush, handler)

    def on_read_mark(self, handler: H) -> H:
        """handler(ReadMarkPush) when a read mark moves: the user's own, or a peer's (read receipt)."""
        return self._alias(ReadMarkPush, handler)

    def on_group_changed(self, handler: H) -> H:
        """handler(GroupChangedPush) when a group of the user's changes (members, roles, name, dissolved)."""
        return self._alias(GroupChangedPush, handler)

    def on_sync(self, handler: H) -> H:
        """handler(SyncState) after every completed resync (login, reconnect, RESYNC push)."""
        self._sync_handlers.append(handler)
        return handler

    def off(self, handler: Callable[..., Any]) -> None:
        """Remove `handler` from every event it was registered for."""
        self._handlers = [entry for entry in self._handlers if entry[1] != handler]
        self._state_handlers = [h for h in self._state_handlers if h != handler]
        self._sync_handlers = [h for h in self._sync_handlers if h != handler]

    def _emit(self, push: Message) -> None:
        """Hand a push to its handlers: typed and aliases first, then catch-all ones."""
        handlers = list(self._handlers)
        for push_type, handler, adapt in handlers:
            if push_type is not None and isinstance(push, push_type):
                self._call(handler, adapt(push) if adapt is not None else push)
        for push_type, handler, _ in handlers:
            if push_type is None:
                self._call(handler, push)

    def _call(self, handler: Callable[..., Any], *args: Any) -> None:
        """Run an application handler; a failure (or failed Deferred) is logged, never propagated."""
        result = defer.maybeDeferred(handler, *args)
        result.addErrback(lambda f: log.failure("event handler {handler!r} failed", f, handler=handler))

    # ------------------------------------------------------------ connection

    async def _connect_endpoint(self, endpoint: str) -> ClientConnection:
        return await connect(endpoint, reactor=self.reactor, client_name=self.client_name,
                             request_timeout=self.request_timeout)

    async def _open(self, endpoint: str) -> tuple[ClientConnection, str]:
        """Connect and handshake; with follow_assignment, move to the node WHICH_NODE names."""
        conn = await defer.ensureDeferred(self._connector(endpoint))
        if not self.follow_assignment:
            return conn, endpoint
        try:
            assignment = await conn.request(WhichNode)
        except Exception as e:
            if not conn.connected:
                raise
            log.info("WHICH_NODE failed on {endpoint}, staying: {error}", endpoint=endpoint, error=e)
            return conn, endpoint
        address = assignment.address
        if not address or same_endpoint(address, endpoint):
            return conn, endpoint
        try:
            moved = await defer.ensureDeferred(self._connector(address))
        except Exception as e:
            log.warn("cannot reach assigned node {node} at {address}, staying on {endpoint}: {error}",
                     node=assignment.node_id, address=address, endpoint=endpoint, error=e)
            return conn, endpoint
        conn.close()
        log.info("moved to assigned node {node} at {address}", node=assignment.node_id, address=address)
        return moved, address

    def _attach(self, conn: ClientConnection, endpoint: str) -> None:
        self.connection = conn
        self.endpoint = endpoint
        conn.on(None, lambda push: self._on_push(conn, push))
        conn.on_lost(lambda reason: self._lost(conn, reason))

    @deferred
    async def connect(self) -> Welcome:
        """Connect to the first endpoint that answers (in order); returns its WELCOME.

        Fails with the last endpoint's error when none answers.
        """
        if self.connection is not None and self.connection.connected:
            return self.connection.welcome
        self._stop_reconnecting()
        self._closing = False
        self._kicked = None
        self._resume_session = False
        self._set_state(ConnectionState.CONNECTING)
        error: BaseException = ConnectionClosedError("no endpoint")
        for endpoint in self.endpoints:
            try:
                conn, where = await self._open(endpoint)
            except defer.CancelledError:
                self._set_state(ConnectionState.DISCONNECTED)
                raise
            except Exception as e:
                log.info("cannot connect to {endpoint}: {error}", endpoint=endpoint, error=e)
                error = e
                continue
            if self._closing:
                conn.close()
                break
            self._attach(conn, where)
            self._attempt = 0
            self._set_state(ConnectionState.CONNECTED)
            return conn.welcome
        self._set_state(ConnectionState.DISCONNECTED)
        raise error

    def close(self) -> defer.Deferred:
        """Close the connection (without logging out) and stop reconnecting."""
        self._closing = True
        self._stop_reconnecting()
        if self.connection is None or not self.connection.connected:
            self._set_state(ConnectionState.DISCONNECTED)
            return defer.succeed(None)
        return self.connection.close()

    def _lost(self, conn: ClientConnection, reason: Failure) -> None:
        if conn is not self.connection:
            return
        # Only a session is worth restoring: not after close(), logout(), a terminal kick or a
        # refused token, nor a connection that never logged in.
        if self._closing or not self.auto_reconnect or not self._resume_session:
            self._set_state(ConnectionState.DISCONNECTED)
            return
        log.info("connection to {endpoint} lost ({reason}); reconnecting", endpoint=self.endpoint,
                 reason=reason.getErrorMessage())
        self._set_state(ConnectionState.RECONNECTING)
        self._start_reconnecting()

    def _start_reconnecting(self) -> None:
        if self._reconnect_task is not None:
            return
        d = defer.Deferred.fromCoroutine(self._reconnect())
        if not d.called:
            self._reconnect_task = d
        d.addBoth(self._reconnect_done, d)

    def _reconnect_done(self, result: Any, d: defer.Deferred) -> None:
        if self._reconnect_task is d:
            self._reconnect_task = None
        if isinstance(result, Failure) and not result.check(defer.CancelledError):
            log.failure("reconnecting failed", result)

    def _stop_reconnecting(self) -> None:
        running, self._reconnect_task = self._reconnect_task, None
        if running is not None:
            running.cancel()

    def _reconnect_order(self) -> list[str]:
        """The endpoints to try, starting with the one just lost (a restart often brings it back)."""
        if self.endpoint in self.endpoints:
            start = self.endpoints.index(self.endpoint)
            return self.endpoints[start:] + self.endpoints[:start]
        return [self.endpoint, *self.endpoints]

    async def _reconnect(self) -> None:
        order = self._reconnect_order()
        for index in range(1 << 62):
            delay = self.backoff.delay(self._attempt)
            self._attempt += 1
            await task.deferLater(self.clock, delay)
            endpoint = order[index % len(order)]
            try:
                conn, where = await self._open(endpoint)
            except defer.CancelledError:
                raise
            except Exception as e:
                log.info("reconnecting to {endpoint} failed: {error}", endpoint=endpoint, error=e)
                continue
            if self._closing:
                conn.close()
                return
            self._reconnect_task = None  # a loss from here on starts a new round
            self._attach(conn, where)
            self._set_state(ConnectionState.CONNECTED)
            if self._resume_session and self.user is not None:
                defer.Deferred.fromCoroutine(self._resume(conn))
            else:
                self._attempt = 0
            return

    async def _resume(self, conn: ClientConnection) -> None:
        """Log in again with the resume token after a reconnect (which also resyncs)."""
        assert self.user is not None
        try:
            await self.login_with_token(self.user.resume_token)
        except ConnectionClosedError:
            return  # _lost has started the next round
        except (TokenInvalidError, AuthFailedError) as e:
            log.warn("cannot resume the session ({error}); connect and log in again", error=e)
            self._resume_session = False
            self._attempt = 0
            conn.close()
            return
        except RETRYABLE as e:
            log.info("resuming the session failed ({error}); will reconnect", error=e)
            if conn.connected:
                conn.transport.loseConnection()
            return
        except Exception:
            log.failure("resuming the session failed")
            return
        self._attempt = 0

    def _request(self, request_type: type[Message], **fields: Any) -> defer.Deferred:
        if self.connection is None:
            return defer.fail(ConnectionClosedError("not connected: call connect() first"))
        if request_type.REPLY is MessageAck and fields.get("client_msg_id"):
            return self._send(request_type, fields)
        return self.connection.request(request_type, **fields)

    def _send(self, request_type: type[Message], fields: dict[str, Any]) -> defer.Deferred[MessageAck]:
        """Any request answered by MESSAGE_ACK: remember it as the client's own, follow its ack.

        Its ack moves the view and the delivery mark; its client_msg_id lets a
        later page recognise the message as the client's own (not handed back).
        """
        client_msg_id, to_uid = fields["client_msg_id"], fields.get("to_uid", 0)
        self._own_ids[client_msg_id] = None
        self._own_ids.move_to_end(client_msg_id)
        while len(self._own_ids) > OWN_IDS_KEPT:
            self._own_ids.popitem(last=False)
        friend = self.view.friends.get(to_uid)
        key = fields.get("thread_id") or (friend.thread_id if friend is not None else _UNKNOWN_THREAD)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        d = self.connection.request(request_type, **fields)
        d.addBoth(self._sent, key, to_uid)
        return d

    def ping(self) -> defer.Deferred[Pong]:
        return self._request(Ping)

    def which_node(self) -> defer.Deferred[NodeAssignment]:
        """The least-loaded live node of the cluster."""
        return self._request(WhichNode)

    # ------------------------------------------------------------ accounts

    def request_code(self, email: str, purpose: CodePurpose = CodePurpose.REGISTER) -> defer.Deferred[CodeSent]:
        """Have a verification code mailed to `email`."""
        return self._request(RequestCode, email=email, purpose=purpose)

    @deferred
    async def register(self, username: str, email: str, password: str, code: str) -> int:
        """Create an account; returns its uid."""
        return (await self._request(Register, username=username, email=email, password=password,
                                    code=code)).uid

    @deferred
    async def login(self, identifier: str | int, password: str, totp_code: str = "") -> LoggedIn:
        """Log in by username, e-mail or uid, then resync; keeps the resume token in `self.user`."""
        user = await self._request(Login, identifier=str(identifier), password=password, totp_code=totp_code)
        await self._logged_in(user)
        return user

    @deferred
    async def login_with_token(self, token: str | None = None) -> LoggedIn:
        """Log in with a resume token (by default the one from the last login), then resync."""
        if token is None:
            if self.user is None:
                raise ValueError("no resume token: log in with a password first")
            token = self.user.resume_token
        user = await self._request(LoginWithToken, token=token)
        await self._logged_in(user)
        return user

    async def _logged_in(self, user: LoggedIn) -> None:
        if user.uid != self.view.uid:  # a different user: nothing known applies
            self.view.reset(user.uid)
            self._sequencer.reset()
            self._own_ids.clear()
        self.user = user
        self._kicked = None
        self._resume_session = True
        self._set_state(ConnectionState.LOGGED_IN)
        try:
            await self.resync()
        except Exception as e:
            log.warn("resync after login failed: {error}", error=e)

    @deferred
    async def logout(self, revoke_token: bool = False) -> None:
        """End the session; the connection stays open (and is not reopened if it drops)."""
        self._resume_session = False  # first: a drop while logging out must not log back in
        await self._request(Logout, revoke_token=revoke_token)
        self.user = None
        if self.connection is not None and self.connection.connected:
            self._set_state(ConnectionState.CONNECTED)

    @deferred
    async def reset_password(self, email: str, code: str, new_password: str) -> None:
        await self._request(ResetPassword, email=email, code=code, new_password=new_password)

    def totp_setup(self) -> defer.Deferred[TotpSecret]:
        """Start two-factor login: returns the secret and its otpauth:// URI."""
        return self._request(TotpSetup)

    @deferred
    async def totp_confirm(self, code: str) -> None:
        await self._request(TotpConfirm, code=code)

    @deferred
    async def totp_disable(self, code: str) -> None:
        await self._request(TotpDisable, code=code)

    # ------------------------------------------------------------ friends

    @deferred
    async def search(self, query: str | int) -> list[UserSummary]:
        return (await self._request(SearchUsers, query=str(query))).users

    @deferred
    async def add_friend(self, uid: int, greeting: str = "") -> int:
        """Send a friend request; returns its id."""
        request_id = (await self._request(SendFriendRequest, to_uid=uid, greeting=greeting)).friend_request_id
        self.view.apply_request_sent(request_id, uid, greeting, self.user.username if self.user else "")
        return request_id

    @deferred
    async def accept_friend(self, friend_request_id: int, remark: str = "") -> FriendRequestResolved:
        """Accept a friend request; the view then lists the new friend with their presence."""
        resolved = await self._request(RespondFriendRequest, friend_request_id=friend_request_id, accept=True,
                                       remark=remark)
        self.view.apply_resolved(resolved, remark)
        if resolved.accepted:
            try:  # the answer does not say whether the new friend is online; the list does
                await self.friends()
            except Exception as e:
                log.info("refreshing the friend list failed: {error}", error=e)
        return resolved

    @deferred
    async def reject_friend(self, friend_request_id: int) -> FriendRequestResolved:
        resolved = await self._request(RespondFriendRequest, friend_request_id=friend_request_id, accept=False,
                                       remark="")
        self.view.apply_resolved(resolved)
        return resolved

    @deferred
    async def friend_requests(self) -> FriendRequests:
        """Pending friend requests to (`incoming`) and from (`outgoing`) the user."""
        requests = await self._request(ListFriendRequests)
        self.view.apply_friend_requests(requests.incoming, requests.outgoing)
        return requests

    @deferred
    async def friends(self) -> list[FriendInfo]:
        friends = (await self._request(ListFriends)).friends
        self.view.apply_friends(friends)
        return friends

    @deferred
    async def remove_friend(self, uid: int) -> None:
        await self._request(RemoveFriend, uid=uid)
        self.view.apply_removed(uid)

    # ------------------------------------------------------------ messages

    def send_text(self, text: str, *, to_uid: int = 0, thread_id: int = 0,
                  client_msg_id: int | None = None) -> defer.Deferred[MessageAck]:
        """Send text to a friend (to_uid) or a thread; the ack means it is stored.

        After ConnectionClosedError, send again with the same `client_msg_id`
        once logged in: the server stores a message once per key.
        """
        return self._request(SendMessage, thread_id=thread_id, to_uid=to_uid,
                             client_msg_id=client_msg_id or new_client_msg_id(), text=text)

    def _sent(self, result: Any, key: int, to_uid: int) -> Any:
        left = self._in_flight.get(key, 1) - 1
        if left:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)
        if isinstance(result, MessageAck):
            self.view.apply_ack(result, to_uid)
            self._deliver(self._sequencer.skip(result.thread_id, result.seq))
        for thread_id in self._sequencer.gaps():  # a gap may have waited for this ack
            self._maybe_fill(thread_id)
        return result

    def history(self, thread_id: int, before_seq: int = 0, limit: int = 50) -> defer.Deferred[HistoryPage]:
        """The `limit` messages before `before_seq` (0: the newest), ascending."""
        return self._request(History, thread_id=thread_id, cursor_seq=before_seq, direction=Direction.BEFORE,
                             limit=limit)

    def history_after(self, thread_id: int, after_seq: int, limit: int = 100) -> defer.Deferred[HistoryPage]:
        """Up to `limit` messages after `after_seq`, ascending (catching up)."""
        return self._request(History, thread_id=thread_id, cursor_seq=after_seq, direction=Direction.AFTER,
                             limit=limit)

    @deferred
    async def fetch_since(self, thread_id: int, after_seq: int) -> list[ChatMessage]:
        """Every message after `after_seq`, page by page."""
        messages: list[ChatMessage] = []
        while True:
            page = await self.history_after(thread_id, after_seq)
            messages.extend(page.messages)
            if not page.has_more or not page.messages:
                return messages
            after_seq = page.messages[-1].seq

    @deferred
    async def sync(self) -> SyncState:
        """Every thread with its last seq and unread count, and pending friend requests.

        Only asks and updates the view; `resync` also delivers what is missing.
        """
        state = await self._request(Sync)
        self.view.apply_sync(state)
        return state

    @deferred
    async def mark_read(self, thread_id: int, seq: int) -> None:
        await self._request(MarkRead, thread_id=thread_id, seq=seq)
        self.view.apply_read(thread_id, seq)

    # ------------------------------------------------------------ resync and delivery

    @deferred
    async def resync(self) -> SyncState:
        """SYNC, refresh the view, and hand the message handlers every message they lack.

        Runs by itself after each login and reconnect and on RESYNC_PUSH; one at a time.
        """
        await self._resync_lock.acquire()
        try:
            return await self._resync()
        finally:
            self._resync_lock.release()

    async def _resync(self) -> SyncState:
        self.view.start_journal()
        try:
            state, friends, requests = await gather(
                self._request(Sync), self._request(ListFriends), self._request(ListFriendRequests))
        except BaseException:
            self.view.replay_journal()
            raise
        new_requests = self.view.apply_sync(state)
        self.view.apply_friends(friends.friends)
        self.view.apply_friend_requests(requests.incoming, requests.outgoing)
        self.view.replay_journal()
        first = not self._sequencer.primed
        if first:
            self._deliver(self._sequencer.prime(
                {t.thread_id: t.read_seq if self.replay_unread else t.last_seq for t in state.threads}))
        if not first or self.replay_unread:
            for request in new_requests:
                self._emit(FriendRequestPush(request=request))
        behind = {t.thread_id: t.last_seq for t in state.threads if t.last_seq > self._sequencer.mark(t.thread_id)}
        for thread_id in self._sequencer.gaps():
            behind.setdefault(thread_id, 0)
        results = await defer.DeferredList(
            [defer.Deferred.fromCoroutine(self._catch_up(thread_id, target)) for thread_id, target in behind.items()],
            consumeErrors=True)
        for ok, result in results:
            if not ok:
                log.warn("catching up a thread failed: {error}", error=result.getErrorMessage())
        for handler in list(self._sync_handlers):
            self._call(handler, state)
        return state

    async def _catch_up(self, thread_id: int, target: int = 0) -> None:
        """Fetch HISTORY AFTER the delivery mark until `target` is reached and no gap is left."""
        lock = self._fill_locks.setdefault(thread_id, defer.DeferredLock())
        await lock.acquire()
        try:
            while self._state is ConnectionState.LOGGED_IN:
                mark = self._sequencer.mark(thread_id)
                if mark >= target and not self._sequencer.has_gap(thread_id):
                    return
                page = await self.history_after(thread_id, mark, limit=MAX_HISTORY_PAGE)
                self._take(page.messages, fill=False)
                if self._sequencer.mark(thread_id) <= mark:
                    if page.messages:
                        log.warn("history of thread {thread_id} after seq {mark} does not continue it",
                                 thread_id=thread_id, mark=mark)
                    return
        finally:
            lock.release()

    def _maybe_fill(self, thread_id: int) -> None:
        """Fetch a gap now, unless an own send in flight may fill it (its ack will tell)."""
        if (self._state is not ConnectionState.LOGGED_IN or not self._sequencer.has_gap(thread_id)
                or self._in_flight.get(thread_id) or self._in_flight.get(_UNKNOWN_THREAD)):
            return
        lock = self._fill_locks.get(thread_id)
        if lock is not None and lock.locked:
            return  # the running fetch looks at the gap again before it ends
        d = defer.Deferred.fromCoroutine(self._catch_up(thread_id))
        d.addErrback(lambda f: log.warn("fetching missed messages of thread {thread_id} failed: {error}",
                                        thread_id=thread_id, error=f.getErrorMessage()))

    def _take(self, messages: Sequence[ChatMessage], fill: bool = True) -> None:
        """Messages from a push or a page: hand out what is next in line, hold the rest."""
        out: list[ChatMessage] = []
        for message in messages:
            if message.sender_uid == self.view.uid and message.client_msg_id in self._own_ids:
                self.view.apply_message(message)
                out.extend(self._sequencer.skip(message.thread_id, message.seq))
            else:
                out.extend(self._sequencer.offer(message))
        self._deliver(out)
        if fill:
            for thread_id in {m.thread_id for m in messages}:
                self._maybe_fill(thread_id)

    def _deliver(self, messages: Sequence[ChatMessage]) -> None:
        for message in messages:
            if message.thread_id not in self.view.threads:
                self._refresh_threads()  # a thread new to the view (a group joined, say): learn its kind and title
            self.view.apply_message(message)
            self._emit(MessagePush(message=message))

    def _refresh_threads(self) -> None:
        if self._refreshing or self._state is not ConnectionState.LOGGED_IN:
            return
        self._refreshing = True

        def done(result: Any) -> None:
            self._refreshing = False
            if isinstance(result, Failure):
                log.info("refreshing the threads failed: {error}", error=result.getErrorMessage())

        self.sync().addBoth(done)

    def _on_push(self, conn: ClientConnection, push: Message) -> None:
        if conn is not self.connection:
            return
        if isinstance(push, MessagePush):
            self._take([push.message])
            return
        if isinstance(push, KickedPush):
            self.last_kick = push
            if push.reason in TERMINAL_KICKS:
                self._kicked = push.reason
                self._resume_session = False
        self.view.apply_push(push)
        self._emit(push)
        if isinstance(push, ResyncPush) and self._state is ConnectionState.LOGGED_IN:
            self.resync().addErrback(lambda f: log.warn("resync failed: {error}", error=f.getErrorMessage()))


__all__ = ["Backoff", "ConnectionState", "TinyChatClient", "same_endpoint"]
