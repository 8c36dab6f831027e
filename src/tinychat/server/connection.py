"""One client connection: framing, the state machine, dispatch and replies.

States: CONNECTED (only HELLO) -> READY (guest requests) -> LOGGED_IN, and
CLOSING once the connection is being torn down.  Frames after a
connection-level error are ignored; request-level errors keep it open.

The limits of `tinychat.server.limits` are applied here (docs/security.md):
connections per peer address (and a cool-down after flooding), a handshake and
a login deadline, a request rate per connection weighted by what requests
cost, a cap on requests being worked on at once, and bounds on what may queue
for clients that do not read; while a client does not read its answers, its
requests are not read either.  None of them lets one client slow down or crash
the node for the others.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Coroutine
from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from tinychat.protocol import (
    MAX_HISTORY_PAGE,
    Access,
    Error,
    ErrorCode,
    FrameDecoder,
    FriendRemovedPush,
    FriendResponsePush,
    GroupChange,
    GroupChangedPush,
    Hello,
    History,
    KickedPush,
    KickReason,
    Kind,
    ListFriendRequests,
    ListFriends,
    ListGroupMembers,
    ListGroups,
    Login,
    LoginWithToken,
    Message,
    ProtocolError,
    Register,
    RequestCode,
    ResetPassword,
    SearchUsers,
    Sync,
    decode_body,
    decode_frame,
    encode,
)
from tinychat.protocol.schema import REGISTRY
from tinychat.server.errors import to_protocol_error
from tinychat.server.limits import Deadline, OutgoingBudget, OutgoingGuard, PeerCounter, RequestLimiter
from tinychat.server.router import LATER, AnsweredLater

if TYPE_CHECKING:
    from tinychat.server.node import Node
    from tinychat.server.session import Session

log = Logger()
_REQUEST_ID = struct.Struct(">I")
_MAX_ERROR_TEXT_BYTES = 500
# What a request costs in the rate limiter's tokens, when more than 1: reads that scan the
# database and build large answers, and password hashing (about 50 ms of CPU with the default
# argon2id parameters).  A HISTORY page costs 1 token per 10 messages asked for, so by default a
# client gets 200 PINGs, or 18 pages of 100 messages, per second: measured, a page of 100 costs
# the node about 100 times what a PING does (docs/security.md, flood benchmark).
REQUEST_COSTS: dict[type[Message], int] = {
    Sync: 10, SearchUsers: 4, ListFriends: 4, ListFriendRequests: 4, ListGroups: 4, ListGroupMembers: 4,
    LoginWithToken: 4, Login: 20, Register: 20, ResetPassword: 20, RequestCode: 20,
}


def request_cost(message: Message) -> int:
    """Tokens a request takes from its connection's rate limit."""
    if isinstance(message, History):
        return 1 + min(message.limit, MAX_HISTORY_PAGE) // 10
    return REQUEST_COSTS.get(type(message), 1)


# Frames of one connection served in one go: a client that pipelines thousands of requests
# gets the rest served on the reactor's next turns, after everyone else's work of this one.
FRAMES_PER_TURN = 64

# A login still running when the login deadline passes gets this much longer, once.
LOGIN_GRACE = 10.0


class State(Enum):
    CONNECTED = "connected"
    READY = "ready"
    LOGGED_IN = "logged-in"
    CLOSING = "closing"


def _request_id_of(msg_id: int, body: bytes) -> int:
    """Best-effort request id of an undecodable request, so its error can be matched."""
    cls = REGISTRY.get(msg_id)
    if cls is not None and cls.KIND is Kind.REQUEST and len(body) >= 4:
        return _REQUEST_ID.unpack_from(body)[0]
    return 0


def _truncate_utf8(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8, cut at a character boundary (ERROR text is bounded in bytes)."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


class ChatConnection(Protocol, TimeoutMixin):
    """Server side of one client connection.

    `peers` counts connections per address across the listeners and `budget`
    the bytes queued for all stalled clients (both the factory's); without
    them, as in unit tests, there is no per-address cap and no global budget.
    """

    def __init__(self, node: Node, peers: PeerCounter | None = None, budget: OutgoingBudget | None = None) -> None:
        self.node = node
        self.callLater = node.clock.callLater  # TimeoutMixin schedules on the node's clock
        self.decoder = FrameDecoder(node.config.max_frame)
        self.state = State.CONNECTED
        self.session: Session | None = None
        self.peer_host = ""
        self._logging_in = False
        self._peers = peers
        self._counted = False  # holds a slot in `peers`
        config = node.config
        self.limiter = (RequestLimiter(node.clock, config.rate_limit, config.rate_burst, config.max_refusals,
                                       config.refusal_window) if config.rate_limit > 0 else None)
        self.outgoing = OutgoingGuard(node.clock, config.max_outgoing_buffer, config.slow_reader_timeout,
                                      self._stalled, paused=self._output_paused, resumed=self._output_resumed,
                                      budget=budget)
        # Frames read but not yet served: while the client is not reading its answers
        # (the transport paused us) no more requests are served, and none are read.
        self._backlog: deque[tuple[int, bytes]] = deque()
        self._backlog_error: ProtocolError | None = None
        self._reading_paused = False
        self._serving = False
        self._turn_scheduled = False
        # Requests being worked on (database, password hashing...): past the cap, the next
        # ones wait, so one connection cannot queue unbounded work ahead of everyone else's.
        self._in_flight = 0
        self._max_in_flight = config.max_pending_requests
        self._handshake_deadline = Deadline(node.clock, self._handshake_expired)
        self._login_deadline = Deadline(node.clock, self._login_expired)
        self._login_extended = False

    # ------------------------------------------------------------ Twisted events

    def connectionMade(self) -> None:
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:  # pushes are small frames: send them now, not after an ACK
            set_no_delay(True)
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", str(peer))
        config = self.node.config
        if self._peers is not None:
            refused = self._peers.admit(self.peer_host)
            if refused is not None:
                log.debug("refused a connection from {peer}: {why}", peer=self.peer_host, why=refused)
                self.fail(ProtocolError(ErrorCode.LIMIT_EXCEEDED, refused))
                return
            self._counted = True
        self.transport.registerProducer(self.outgoing, True)
        self.setTimeout(config.idle_timeout)
        self._handshake_deadline.start(config.handshake_timeout)
        self.node.connection_made(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.setTimeout(None)
        self._handshake_deadline.cancel()
        self._login_deadline.cancel()
        self.outgoing.stopProducing()
        self.state = State.CLOSING
        if self._counted and self._peers is not None:
            self._counted = False
            self._peers.release(self.peer_host)
        self.node.connection_lost(self)

    def timeoutConnection(self) -> None:
        seconds = self.node.config.idle_timeout
        self.fail(ProtocolError(ErrorCode.TIMEOUT, f"no frame received for {seconds:g} s"))

    def _handshake_expired(self) -> None:
        if self.state is State.CONNECTED:
            seconds = self.node.config.handshake_timeout
            self.fail(ProtocolError(ErrorCode.TIMEOUT, f"no HELLO completed within {seconds:g} s"))

    def _login_expired(self) -> None:
        if self.state is not State.READY:
            return
        if self._logging_in and not self._login_extended:
            self._login_extended = True  # let a login that is being checked finish
            self._login_deadline.start(LOGIN_GRACE)
            return
        seconds = self.node.config.login_timeout
        self.fail(ProtocolError(ErrorCode.TIMEOUT, f"not logged in within {seconds:g} s"))

    def _stalled(self, reason: str) -> None:
        """The client stopped reading: drop it (nothing more can be written to it anyway)."""
        log.info("aborting the connection of {peer}: {reason}", peer=self.peer_host, reason=reason)
        self.state = State.CLOSING
        self.setTimeout(None)
        self.transport.abortConnection()

    def _output_paused(self) -> None:
        """The client is not keeping up with its answers: read and serve nothing more until it does."""
        self._set_reading(False)

    def _output_resumed(self) -> None:
        if self.state is State.CLOSING:
            # A close waits for the buffer to drain, but with a paused producer the transport
            # would keep the connection open after draining: let it go.
            self.transport.unregisterProducer()
            return
        self._serve_backlog()

    def _set_reading(self, reading: bool) -> None:
        """Read from the client or not (TCP then pushes back on it): the input side of backpressure.

        While the node holds back because its own work is slow (the cap on requests in the works),
        the client's silence is the node's doing: the idle timeout waits.  While the client is not
        reading, it runs (and the slow-reader timeout too).
        """
        if self.state is State.CLOSING or reading != self._reading_paused:
            return
        self._reading_paused = not reading
        if reading:
            self.transport.resumeProducing()
            self.setTimeout(self.node.config.idle_timeout)
        else:
            self.transport.pauseProducing()
            if not self.outgoing.paused:
                self.setTimeout(None)

    def dataReceived(self, data: bytes) -> None:
        if self.state is State.CLOSING:
            return
        self.resetTimeout()
        frames, error = self.decoder.split(data)
        self._backlog.extend(frames)
        if error is not None:
            self._backlog_error = error
        self._serve_backlog()

    def _serve_backlog(self) -> None:
        """Decode, rate-limit and dispatch the frames read, in order, as far as the client and the cap allow."""
        if self._serving:  # re-entered from a request that completed at once: the loop below goes on
            return
        self._serving = True
        try:
            self._serve_frames()
        finally:
            self._serving = False
        if self.state is not State.CLOSING:
            self._set_reading(not self._backlog and not self.outgoing.paused)

    def _serve_frames(self) -> None:
        backlog = self._backlog
        limiter = self.limiter
        outgoing = self.outgoing
        cap = self._max_in_flight
        budget = FRAMES_PER_TURN
        while backlog:
            if self.state is State.CLOSING:
                backlog.clear()
                return
            if outgoing.paused or (cap and self._in_flight >= cap):
                return  # served again when the client reads (_output_resumed) or a request ends
            if not budget:
                self._next_turn()
                return
            budget -= 1
            msg_id, body = backlog.popleft()
            try:
                message = decode_body(msg_id, body)
            except ProtocolError as e:
                self.fail(e, _request_id_of(msg_id, body))
                return
            if limiter is not None:
                verdict = limiter.admit(request_cost(message))
                if not verdict.serve:
                    self._refuse(message, verdict.retry_after, verdict.disconnect)
                    continue
            self.dispatch(message)
        if self._backlog_error is not None and self.state is not State.CLOSING:
            error, self._backlog_error = self._backlog_error, None
            self.fail(error)

    def _next_turn(self) -> None:
        """Serve the rest of the backlog on the reactor's next turn, after the other connections' work."""
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self.node.clock.callLater(0, self._turn)

    def _turn(self) -> None:
        self._turn_scheduled = False
        if self.state is not State.CLOSING:
            self._serve_backlog()

    def answer_later(self) -> AnsweredLater:
        """Called by a handler that will answer by itself; what it returns to the connection."""
        self._in_flight += 1
        return LATER

    def answer(self, frame: bytes) -> None:
        """The encoded reply of a request whose handler returned `answer_later()`."""
        self.send_frame(frame)
        self._request_done(None)

    def answer_failed(self, failure: Failure, message: Message, session: Session | None) -> None:
        """The failure of a request whose handler returned `answer_later()`."""
        self._request_failed(failure, message, session)
        self._request_done(None)

    def _request_done(self, result: object) -> object:
        self._in_flight -= 1
        if self._backlog and self.state is not State.CLOSING:
            self._serve_backlog()
        return result

    def _refuse(self, message: Message, retry_after: float, disconnect: bool) -> None:
        """Over the request rate: refuse without serving, or close once refusals pile up."""
        if disconnect:
            log.info("closing the connection of {peer}: {n} requests refused for the rate limit",
                     peer=self.peer_host, n=self.limiter.refused)
            if self._peers is not None:
                self._peers.penalize(self.peer_host)
            cooldown = self._peers.cooldown if self._peers is not None else 0
            self.fail(ProtocolError(ErrorCode.LIMIT_EXCEEDED, "too many requests after RATE_LIMITED refusals; "
                                    f"reconnect in {cooldown:g} s at the earliest, and slower"))
            return
        retry_ms = max(1, math.ceil(retry_after * 1000))
        self.send_error(getattr(message, "request_id", 0),
                        ProtocolError(ErrorCode.RATE_LIMITED, f"over {self.node.config.rate_limit:g} requests/s; "
                                      f"retry in {retry_ms} ms", retry_after_ms=retry_ms))

    # ------------------------------------------------------------ dispatch

    def dispatch(self, message: Message) -> None:
        """Route one decoded frame according to the connection's state."""
        if self.state is State.CONNECTED and not isinstance(message, Hello):
            self.fail(ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, "the first frame must be HELLO"))
            return
        if message.KIND is not Kind.REQUEST:
            request_id = getattr(message, "request_id", 0)
            self.send_error(request_id, ProtocolError(ErrorCode.NOT_A_REQUEST,
                            f"{type(message).__name__} is sent by servers, not clients"))
            return
        if self.state is State.CONNECTED:
            if isinstance(message, Hello):
                self._handshake(message)
            else:
                self.fail(ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, "the first frame must be HELLO"))
            return
        request_id = message.request_id
        access = message.ACCESS
        if access is Access.USER and self.state is not State.LOGGED_IN:
            self.send_error(request_id, ProtocolError(ErrorCode.NOT_LOGGED_IN))
            return
        if access is Access.GUEST and self.state is State.LOGGED_IN:
            self.send_error(request_id, ProtocolError(ErrorCode.ALREADY_LOGGED_IN))
            return
        handler = self.node.router.get(type(message))
        if handler is None:
            if isinstance(message, Hello):
                error = ProtocolError(ErrorCode.INVALID_ARGUMENT, "the handshake is already done")
            else:
                error = ProtocolError(ErrorCode.NOT_IMPLEMENTED,
                                      f"{type(message).__name__} is not served by this node")
            self.send_error(request_id, error)
            return
        try:
            result = handler(self, message)
        except Exception:
            self._request_failed(Failure(), message)
            return
        if isinstance(result, Message):
            self.send(result)
            return
        if result is LATER:
            return
        if isinstance(result, Coroutine):
            result = defer.Deferred.fromCoroutine(result)
        self._in_flight += 1
        result.addCallbacks(self.send, self._request_failed, errbackArgs=(message, self.session))
        result.addBoth(self._request_done)

    def _handshake(self, hello: Hello) -> None:
        try:
            welcome = self.node.welcome(hello)
        except ProtocolError as e:
            self.fail(e, hello.request_id)
            return
        self.state = State.READY
        self._handshake_deadline.cancel()
        self._login_deadline.start(self.node.config.login_timeout)
        self.send(welcome)

    def _request_failed(self, failure: Failure, message: Message, session: Session | None = None) -> None:
        """Answer a failed request; `session` is the one it was dispatched for, if any."""
        if not failure.check(ProtocolError):
            if self.state is State.CLOSING:
                # The client went away while its request was served (a handler may then find no
                # session): there is no one to answer, and nothing unexpected about it.
                log.info("{what} of {peer} failed after the connection closed: {error}",
                         what=type(message).__name__, peer=self.peer_host, error=failure.getErrorMessage())
                return
            if session is not None and self.session is not session:
                self.send_error(message.request_id, ProtocolError(
                    ErrorCode.NOT_LOGGED_IN, "the session ended while the request was being served"))
                return
        error = to_protocol_error(failure, type(message).__name__)
        if error.code.closes_connection:
            self.fail(error, message.request_id)
        else:
            self.send_error(message.request_id, error)

    # ------------------------------------------------------------ session

    @property
    def open(self) -> bool:
        return self.state is not State.CLOSING

    def begin_login(self) -> None:
        """One login at a time per connection: pipelined logins would kick each other."""
        if self._logging_in:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, "a login is already in progress")
        self._logging_in = True

    def end_login(self) -> None:
        self._logging_in = False

    def logged_in(self, session: Session) -> None:
        self.session = session
        self.state = State.LOGGED_IN
        self._login_deadline.cancel()

    def logged_out(self) -> Session | None:
        """Drop the session (the connection stays, logged out, unless it is closing)."""
        session, self.session = self.session, None
        if self.state is State.LOGGED_IN:
            self.state = State.READY
            self._login_extended = False
            self._login_deadline.start(self.node.config.login_timeout)  # a guest again: same deadline
        return session

    def receive_push(self, frame: bytes) -> None:
        """A push from the bus: keep the session's view current, then pass it on."""
        session = self.session
        if session is None or self.state is State.CLOSING:
            return
        msg_id = frame[0] << 8 | frame[1]
        if msg_id in _STATEFUL_PUSHES:
            push = decode_frame(frame)
            if isinstance(push, KickedPush):
                self.send_frame(frame)
                self.close()
                return
            if isinstance(push, FriendResponsePush) and push.accepted:
                session.friends[push.peer_uid] = push.thread_id
                session.threads[push.thread_id] = push.peer_uid
            elif isinstance(push, FriendRemovedPush):
                session.friends.pop(push.uid, None)
            elif isinstance(push, GroupChangedPush):
                if push.change is GroupChange.DISSOLVED or (
                        push.subject_uid == session.uid and push.change in (GroupChange.REMOVED, GroupChange.LEFT)):
                    session.threads.pop(push.thread_id, None)
                elif push.change is GroupChange.ADDED and push.subject_uid == session.uid:
                    session.threads[push.thread_id] = 0
        self.send_frame(frame)

    # ------------------------------------------------------------ output

    def send(self, message: Message | None) -> None:
        """Encode and write one message (None: nothing to send)."""
        if message is not None and self.state is not State.CLOSING:
            self._write(encode(message))

    def send_frame(self, frame: bytes) -> None:
        """Write an already encoded frame (pushes are encoded once for all recipients)."""
        if self.state is not State.CLOSING:
            self._write(frame)

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        self.outgoing.wrote(len(data))

    def send_error(self, request_id: int, error: ProtocolError) -> None:
        if self.node.services is not None:
            self.node.services.metrics.errors.labels(error.code.name).inc()
        self.send(Error(request_id=request_id, code=error.code, retry_after_ms=min(error.retry_after_ms, 2**32 - 1),
                        message=_truncate_utf8(error.message, _MAX_ERROR_TEXT_BYTES)))

    def fail(self, error: ProtocolError, request_id: int = 0) -> None:
        """Send a connection-level error and close."""
        if self.state is State.CLOSING:
            return
        self.send_error(request_id, error)
        self.close()

    def kick(self, reason: KickReason, text: str) -> None:
        """End the session with a KICKED push, then close."""
        if self.state is State.CLOSING:
            return
        self.send(KickedPush(reason=reason, message=text))
        self.close()

    def close(self) -> None:
        self.state = State.CLOSING
        self.setTimeout(None)
        self._handshake_deadline.cancel()
        self._login_deadline.cancel()
        self.transport.loseConnection()


# Pushes that change what a session may do, so its connection must read them.
_STATEFUL_PUSHES = frozenset({KickedPush.MSG_ID, FriendResponsePush.MSG_ID, FriendRemovedPush.MSG_ID,
                              GroupChangedPush.MSG_ID})


class ChatFactory(Factory):
    """Makes a ChatConnection per accepted client, all sharing one Node.

    One factory serves every listener of a node, so the per-address
    connection count covers plain and TLS listeners together.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.peers = PeerCounter(node.config.max_connections_per_ip, node.clock, node.config.flood_cooldown)
        self.budget = OutgoingBudget(node.config.max_outgoing_total)

    def buildProtocol(self, addr: Any) -> ChatConnection:
        return ChatConnection(self.node, self.peers, self.budget)
