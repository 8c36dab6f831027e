"""The Twisted reactor in a background thread, and blocking calls into it.

Integration tests are plain synchronous pytest functions: each call into the
client library runs in the reactor thread and the test blocks on its result
(with a timeout), which keeps fixtures and tracebacks simple.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.threads import blockingCallFromThread

from tinychat.client.connection import ClientConnection, connect
from tinychat.protocol import Message

_thread: threading.Thread | None = None
CALL_TIMEOUT = 30.0


def start_reactor() -> None:
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                   name="reactor", daemon=True)
        _thread.start()


def call(fn: Callable[..., Any], *args: Any, timeout: float = CALL_TIMEOUT, **kwargs: Any) -> Any:
    """Run fn in the reactor thread; wait for its (Deferred or coroutine) result."""

    def run() -> Any:
        result = fn(*args, **kwargs)
        if isinstance(result, Coroutine):
            result = defer.Deferred.fromCoroutine(result)
        if isinstance(result, defer.Deferred):
            result.addTimeout(timeout, reactor)
        return result

    return blockingCallFromThread(reactor, run)


class SyncConnection:
    """Blocking facade over a ClientConnection, recording every push it gets."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.pushes: queue.Queue[Message] = queue.Queue()
        call(conn.on, None, self.pushes.put)

    @classmethod
    def open(cls, endpoint: str, **kwargs: Any) -> SyncConnection:
        return cls(call(connect, endpoint, reactor=reactor, **kwargs))

    def request(self, request_type: type, **fields: Any) -> Any:
        return call(self.conn.request, request_type, **fields)

    def next_push(self, push_type: type | None = None, timeout: float = 10.0) -> Message:
        """The next push (of `push_type`, skipping others); fails after `timeout`."""
        while True:
            push = self.pushes.get(timeout=timeout)
            if push_type is None or isinstance(push, push_type):
                return push

    def wait_closed(self, timeout: float = 10.0) -> None:
        call(self.conn.when_closed, timeout=timeout)

    def close(self) -> None:
        call(self.conn.close)
