"""Group commit: messages that arrive while a write is in flight share the next transaction.

One write is in flight at a time per node.  While it runs, new messages
queue; when it finishes, everything queued (up to `max_batch`) goes into one
multi-row transaction.  Under load, batches grow and the per-message cost of
a commit shrinks; when idle, a message is written at once.

The hot path (`submit_call`) takes plain callbacks instead of making a
Deferred per message: at tens of thousands of messages per second the
Deferred machinery alone would cost a good part of the reactor's time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinychat.server.store.records import NewMessage

log = Logger()


class MessageWriter:
    """Queues messages and writes them in batches through `write_batch`."""

    def __init__(self, write_batch: Callable[[list[NewMessage]], defer.Deferred], max_batch: int = 1000,
                 on_batch: Callable[[int, float], Any] | None = None, clock: Any = None) -> None:
        self._write_batch = write_batch
        self.max_batch = max_batch
        # (message, callback(stored, *args), errback(failure, *args), args)
        self._queue: list[tuple[NewMessage, Callable[..., Any], Callable[..., Any], tuple]] = []
        self._in_flight = False
        self._on_batch = on_batch
        self._clock = clock
        self.batches = 0
        self.messages = 0

    def submit(self, message: NewMessage) -> defer.Deferred:
        """Queue one message; fires with its StoredMessage after the commit."""
        d: defer.Deferred = defer.Deferred()
        self.submit_call(message, d.callback, d.errback)
        return d

    def submit_call(self, message: NewMessage, callback: Callable[..., Any], errback: Callable[..., Any],
                    *args: Any) -> None:
        """Queue one message; after the commit call `callback(stored, *args)`, or `errback(failure, *args)`."""
        self._queue.append((message, callback, errback, args))
        if not self._in_flight:
            self._flush()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _flush(self) -> None:
        batch = self._queue[:self.max_batch]
        del self._queue[:self.max_batch]
        self._in_flight = True
        started = self._clock.seconds() if self._clock is not None else 0.0
        d = defer.maybeDeferred(self._write_batch, [entry[0] for entry in batch])
        d.addBoth(self._written, batch, started)

    def _written(self, result: Any, batch: list, started: float) -> None:
        self._in_flight = False
        self.batches += 1
        self.messages += len(batch)
        if self._on_batch is not None and self._clock is not None:
            self._on_batch(len(batch), self._clock.seconds() - started)
        if self._queue:
            self._flush()  # start the next commit before delivering this one's results
        if isinstance(result, Failure):
            for _, _, errback, args in batch:
                self._call(errback, result, args)
            result.trap(Exception)  # handled: every submitter got it
            return
        for (_, callback, _, args), stored in zip(batch, result, strict=True):
            self._call(callback, stored, args)

    @staticmethod
    def _call(fn: Callable[..., Any], value: Any, args: tuple) -> None:
        """One submitter's callback; its failure must not keep the others of the batch from theirs."""
        try:
            fn(value, *args)
        except Exception:
            log.failure("a message write callback failed")
