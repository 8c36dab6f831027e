"""Per-connection limits that keep one hostile or broken client from hurting the others.

Each piece is small, knows nothing about the protocol and runs on an
injectable clock, so it can be unit-tested with `twisted.internet.task.Clock`;
`tinychat.server.connection` wires them up.

- `RequestLimiter`: a token bucket of requests per connection, plus a second
  bucket that counts refusals, so a client that ignores RATE_LIMITED is cut off.
- `PeerCounter`: simultaneous connections per peer address, and a cool-down
  for addresses cut off for flooding.
- `Deadline`: a one-shot timer (handshake and login deadlines) that is not
  reset by traffic, unlike the idle timeout: that is what defeats slowloris.
- `OutgoingGuard`: a streaming producer registered with the transport, which
  learns from pause/resume when a client stops reading, and reports it once
  the data queued for that client passes a byte limit or stays stuck too long,
  or the data queued for all such clients passes the node's `OutgoingBudget`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer


class TokenBucket:
    """`rate` tokens per second accumulate up to `burst`; each admitted event takes one."""

    # One or two per connection: slots keep tens of thousands of connections small.
    __slots__ = ("_stamp", "burst", "clock", "rate", "tokens")

    def __init__(self, clock: IReactorTime, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.clock = clock
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._stamp = clock.seconds()

    def _refill(self) -> None:
        now = self.clock.seconds()
        if now > self._stamp:
            self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self, cost: float = 1.0) -> float:
        """0.0 when `cost` tokens were taken; otherwise the seconds until they will be available."""
        self._refill()
        cost = min(cost, self.burst)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one request: serve it, refuse it for `retry_after` s, or drop the client."""

    retry_after: float = 0.0
    disconnect: bool = False

    @property
    def serve(self) -> bool:
        return self.retry_after == 0.0 and not self.disconnect


SERVE = Verdict()


class RequestLimiter:
    """Requests of one connection: `rate`/s with bursts of `burst`.

    Refused requests are counted in a second bucket holding `max_refusals`
    and refilling over `refusal_window` seconds: a client that keeps sending
    after being told to wait empties it, and is disconnected, instead of
    making the server answer RATE_LIMITED forever.
    """

    __slots__ = ("refusals", "refused", "requests")

    def __init__(self, clock: IReactorTime, rate: float, burst: float, max_refusals: int,
                 refusal_window: float) -> None:
        self.requests = TokenBucket(clock, rate, max(1.0, burst))
        self.refusals = (TokenBucket(clock, max_refusals / refusal_window, max_refusals)
                         if max_refusals > 0 and refusal_window > 0 else None)
        self.refused = 0

    def admit(self, cost: float = 1.0) -> Verdict:
        """Serve a request that costs `cost` tokens (1 for the cheapest), refuse it, or drop the client."""
        wait = self.requests.take(cost)
        if wait == 0.0:
            return SERVE
        self.refused += 1
        if self.refusals is not None and self.refusals.take() > 0.0:
            return Verdict(retry_after=wait, disconnect=True)
        return Verdict(retry_after=wait)


class PeerCounter:
    """Live connections per peer address, and addresses in a cool-down after flooding.

    At most `limit` simultaneous connections per address (0: no limit).  An
    address whose connection was cut for flooding (`penalize`) may not connect
    at all for `cooldown` seconds: otherwise a flooder would reconnect at once
    and get a fresh burst of requests every time.
    """

    def __init__(self, limit: int, clock: IReactorTime | None = None, cooldown: float = 0.0) -> None:
        self.limit = limit
        self.clock = clock
        self.cooldown = cooldown
        self.counts: dict[str, int] = {}
        self._penalized: dict[str, float] = {}

    def admit(self, host: str) -> str | None:
        """Count one more connection from `host`; or, counting nothing, why it is refused."""
        if self._penalized:
            until = self._penalized.get(host)
            if until is not None:
                wait = until - self.clock.seconds()
                if wait > 0:
                    return f"your address flooded this node; connect again in {math.ceil(wait)} s"
                del self._penalized[host]
        count = self.counts.get(host, 0)
        if self.limit and count >= self.limit:
            return f"too many connections from your address (at most {self.limit})"
        self.counts[host] = count + 1
        return None

    def acquire(self, host: str) -> bool:
        return self.admit(host) is None

    def release(self, host: str) -> None:
        count = self.counts.get(host, 0) - 1
        if count > 0:
            self.counts[host] = count
        else:
            self.counts.pop(host, None)

    def penalize(self, host: str) -> None:
        """`host` was cut off for flooding: refuse its connections for the cool-down."""
        if self.cooldown > 0 and self.clock is not None:
            now = self.clock.seconds()
            self._penalized[host] = now + self.cooldown
            if len(self._penalized) > 10_000:  # forget expired entries, so the map stays small
                self._penalized = {h: t for h, t in self._penalized.items() if t > now}


class Deadline:
    """Calls `expired()` once, `seconds` after `start`, unless cancelled first.

    Traffic does not move it: a client that trickles a byte at a time still
    has to reach the next state in time.  Restarting replaces the old timer.
    """

    # Three per connection (handshake, login, stalled output): slots save ~100 bytes each.
    __slots__ = ("_call", "clock", "expired")

    def __init__(self, clock: IReactorTime, expired: Callable[[], None]) -> None:
        self.clock = clock
        self.expired = expired
        self._call: IDelayedCall | None = None

    @property
    def active(self) -> bool:
        return self._call is not None and self._call.active()

    def start(self, seconds: float) -> None:
        """(Re)arm the deadline; 0 or less disables it."""
        self.cancel()
        if seconds > 0:
            self._call = self.clock.callLater(seconds, self._fire)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        self._call = None
        self.expired()


class OutgoingBudget:
    """Bytes queued for all the clients of a node that are not reading, against one ceiling (0: none).

    The per-connection limit alone lets N stalled connections hold N times
    it; the budget bounds the sum, so a thousand of them cannot take gigabytes.
    """

    def __init__(self, max_total: int) -> None:
        self.max_total = max_total
        self.total = 0

    def exceeded(self) -> bool:
        return bool(self.max_total) and self.total > self.max_total


@implementer(IPushProducer)
class OutgoingGuard:
    """Bounds what a connection may have queued for a client that does not read.

    Registered as the transport's streaming producer: the transport pauses it
    once its own buffer passes its high-water mark (64 KiB for TCP) and resumes
    it when the buffer has drained completely.  While paused, every byte
    written is counted; past `max_bytes`, or after `stall_timeout` seconds
    paused, `exceeded(reason)` is called once, and the connection aborts,
    instead of letting the node's memory grow with the backlog.
    A limit of 0 disables that check.  `paused` and `resumed` tell the
    connection, so that it stops reading requests whose answers could not be
    sent anyway (backpressure) and finishes a close that waited for the drain.
    """

    __slots__ = ("_stall", "budget", "exceeded", "max_bytes", "on_paused", "on_resumed", "paused", "queued",
                 "stall_timeout", "tripped")

    def __init__(self, clock: IReactorTime, max_bytes: int, stall_timeout: float,
                 exceeded: Callable[[str], None], paused: Callable[[], None] | None = None,
                 resumed: Callable[[], None] | None = None, budget: OutgoingBudget | None = None) -> None:
        self.max_bytes = max_bytes
        self.budget = budget
        self.stall_timeout = stall_timeout
        self.exceeded = exceeded
        self.on_paused = paused
        self.on_resumed = resumed
        self.paused = False
        self.queued = 0  # bytes written since the transport last paused us
        self.tripped = False
        self._stall = Deadline(clock, self._stalled)

    def _forget_queue(self) -> None:
        if self.budget is not None:
            self.budget.total -= self.queued
        self.queued = 0

    # IPushProducer, called by the transport
    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self._forget_queue()
            self._stall.start(self.stall_timeout)
            if self.on_paused is not None:
                self.on_paused()

    def resumeProducing(self) -> None:
        was_paused = self.paused
        self.paused = False
        self._forget_queue()
        self._stall.cancel()
        if was_paused and self.on_resumed is not None:
            self.on_resumed()

    def stopProducing(self) -> None:
        self.paused = False
        self._forget_queue()
        self._stall.cancel()

    def wrote(self, count: int) -> None:
        """Account for `count` bytes just handed to the transport."""
        if not self.paused or self.tripped:
            return
        self.queued += count
        budget = self.budget
        if budget is not None:
            budget.total += count
        if self.max_bytes and self.queued > self.max_bytes:
            self._trip(f"over {self.max_bytes} bytes queued for a client that is not reading")
        elif budget is not None and budget.exceeded():
            self._trip(f"over {budget.max_total} bytes queued for all the clients that are not reading")

    def _stalled(self) -> None:
        self._trip(f"the client read nothing for {self.stall_timeout:g} s while data waited for it")

    def _trip(self, reason: str) -> None:
        self.tripped = True
        self._stall.cancel()
        self._forget_queue()  # the connection aborts: its queue is dropped
        self.exceeded(reason)
