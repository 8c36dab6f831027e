"""The client core: one protocol connection with request/response matching.

    conn = await connect("tcp:host=127.0.0.1:port=7420")
    pong = await conn.request(Ping)
    conn.on(MessagePush, lambda push: print(push.message.text))

`request` assigns the request id, writes the frame and returns a Deferred
that fires with the typed response, or fails with a `ServerError` subclass,
`RequestTimeoutError` or `ConnectionClosedError`.  Pushes go to the handlers
registered with `on`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

import tinychat
from tinychat.client.errors import (
    ConnectionClosedError,
    ProtocolViolationError,
    RequestTimeoutError,
    error_from_frame,
)
from tinychat.protocol import (
    PROTOCOL_VERSION,
    Error,
    FrameDecoder,
    Hello,
    Kind,
    Message,
    Ping,
    ProtocolError,
    Welcome,
    encode,
)

log = Logger()
M = TypeVar("M", bound=Message)
PushHandler = Callable[[Message], Any]
DEFAULT_REQUEST_TIMEOUT = 30.0
CLIENT_NAME = f"tinychat-python/{tinychat.__version__}"


class ClientConnection(Protocol):
    """Client side of one connection.  Create it with `connect`."""

    def __init__(self, clock: IReactorTime, request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.clock = clock
        self.request_timeout = request_timeout
        self.decoder = FrameDecoder(max_body=64 * 1024 * 1024)
        self.welcome: Welcome | None = None
        self.connection_error: Error | None = None
        self.connected = False
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[defer.Deferred, type[Message] | None]] = {}
        self._handlers: dict[type[Message] | None, list[PushHandler]] = {}
        self._close_waiters: list[defer.Deferred] = []
        self.close_reason: Failure | None = None
        self._heartbeat: LoopingCall | None = None
        self._lost_handlers: list[Callable[[Failure], Any]] = []

    # ------------------------------------------------------------ public API

    def request(
        self, request_type: type[M], /, timeout: float | None = None, **fields: Any
    ) -> defer.Deferred:
        """Send a request built from `fields`; the Deferred fires with its response."""
        if not self.connected:
            return defer.fail(ConnectionClosedError("not connected"))
        request_id = next(self._ids) & 0xFFFFFFFF or next(self._ids)
        try:
            frame = encode(request_type(request_id=request_id, **fields))
        except Exception as e:  # a bad value: report it on the Deferred, like any failure
            return defer.fail(e)
        d: defer.Deferred = defer.Deferred(canceller=lambda _: self._pending.pop(request_id, None))
        self._pending[request_id] = (d, request_type.REPLY)
        seconds = self.request_timeout if timeout is None else timeout

        def timed_out(failure: Failure, elapsed: float) -> Failure:
            if failure.check(defer.CancelledError):
                raise RequestTimeoutError(f"{request_type.__name__}: no response within {elapsed:g} s")
            return failure

        d.addTimeout(seconds, self.clock, onTimeoutCancel=lambda result, elapsed: result)
        d.addErrback(timed_out, seconds)
        self.transport.write(frame)
        return d

    def on(self, push_type: type[Message] | None, handler: PushHandler) -> PushHandler:
        """Call `handler(push)` for every push of `push_type` (None: every push)."""
        self._handlers.setdefault(push_type, []).append(handler)
        return handler

    def off(self, push_type: type[Message] | None, handler: PushHandler) -> None:
        """Stop calling `handler`."""
        handlers = self._handlers.get(push_type, [])
        if handler in handlers:
            handlers.remove(handler)

    def on_lost(self, handler: Callable[[Failure], Any]) -> None:
        """Call `handler(reason)` when the connection ends (before pending requests fail)."""
        self._lost_handlers.append(handler)

    def when_closed(self) -> defer.Deferred:
        """A Deferred that fires with None once the connection has ended (see close_reason)."""
        if self.close_reason is not None:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._close_waiters.append(d)
        return d

    def close(self) -> defer.Deferred:
        """Close the connection; fires when it is closed."""
        d = self.when_closed()
        if self.connected:
            self.transport.loseConnection()
        return d

    async def handshake(self, client_name: str = CLIENT_NAME) -> Welcome:
        """Send HELLO, keep the WELCOME, and start heartbeats at the announced interval."""
        welcome = await self.request(Hello, min_version=PROTOCOL_VERSION, max_version=PROTOCOL_VERSION,
                                     client_name=client_name)
        self.welcome = welcome
        self.decoder.max_body = max(welcome.max_frame_bytes, self.decoder.max_body)
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(welcome.heartbeat_interval_ms / 1000, now=False)
        return welcome

    # ------------------------------------------------------------ Twisted events

    def connectionMade(self) -> None:
        self.connected = True
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:  # requests are small frames: no Nagle delay
            set_no_delay(True)

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as e:
            log.error("undecodable data from server: {error}", error=e)
            self.transport.loseConnection()
            return
        for message in messages:
            self._received(message)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        reason = reason or Failure(ConnectionClosedError("connection closed"))
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        text = "connection closed"
        if self.connection_error is not None:
            text += f": {self.connection_error.code.name}: {self.connection_error.message}"
        # Lost handlers first: whoever sees a request fail then finds the owner already told.
        for handler in self._lost_handlers:
            self._call(handler, reason)
        pending, self._pending = self._pending, {}
        for d, _ in pending.values():
            d.errback(ConnectionClosedError(text))
        self.close_reason = reason
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(None)

    # ------------------------------------------------------------ internals

    def _beat(self) -> None:
        # A PING unanswered for idle_timeout means the link is dead without the OS noticing
        # (a half-open TCP connection): drop it, so that its owner can reconnect.
        timeout = self.welcome.idle_timeout_ms / 1000 if self.welcome and self.welcome.idle_timeout_ms else None
        self.request(Ping, timeout=timeout).addErrback(self._beat_failed)

    def _beat_failed(self, failure: Failure) -> None:
        if failure.check(RequestTimeoutError) and self.connected:
            log.warn("no answer to a heartbeat PING: dropping the connection")
            self.transport.abortConnection()

    def _received(self, message: Message) -> None:
        if message.KIND is Kind.PUSH:
            for handler in self._handlers.get(type(message), []) + self._handlers.get(None, []):
                self._call(handler, message)
            return
        entry = self._pending.pop(message.request_id, None)
        if entry is None:
            if isinstance(message, Error) and message.request_id == 0:
                self.connection_error = message
            else:
                log.warn("response to unknown request {id}: {message!r}", id=message.request_id,
                         message=message)
            return
        d, expected = entry
        if isinstance(message, Error):
            d.errback(error_from_frame(message))
        elif expected is not None and not isinstance(message, expected):
            d.errback(ProtocolViolationError(f"expected {expected.__name__}, got {type(message).__name__}"))
        else:
            d.callback(message)

    def _call(self, handler: Callable[..., Any], arg: Any) -> None:
        """Run a handler; a failure (or failed Deferred) is logged, never propagated."""
        try:
            result = defer.maybeDeferred(handler, arg)
        except Exception:
            log.failure("push handler failed")
            return
        result.addErrback(lambda f: log.failure("push handler failed", f))


async def connect(
    endpoint: str,
    *,
    reactor: Any = None,
    client_name: str = CLIENT_NAME,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> ClientConnection:
    """Connect to a node by Twisted client endpoint string and complete the handshake."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    protocol = ClientConnection(reactor, request_timeout)
    await connectProtocol(clientFromString(reactor, endpoint), protocol)
    try:
        await protocol.handshake(client_name)
    except BaseException:
        protocol.transport.loseConnection()
        raise
    return protocol
