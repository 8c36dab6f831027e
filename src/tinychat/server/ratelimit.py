"""Sliding-window failure counting: slow down password guessing per account and per address."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from twisted.internet.interfaces import IReactorTime


class FailureLimiter:
    """At most `limit` failures per key within `window` seconds, then refuse until the oldest expires."""

    def __init__(self, clock: IReactorTime, limit: int = 5, window: float = 300.0) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self._failures: dict[Hashable, deque[float]] = {}

    def _recent(self, key: Hashable) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self.clock.seconds() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, *keys: Hashable) -> float:
        """Seconds until another attempt is allowed for all `keys` (0: allowed now)."""
        wait = 0.0
        now = self.clock.seconds()
        for key in keys:
            failures = self._recent(key)
            if failures is not None and len(failures) >= self.limit:
                wait = max(wait, failures[-self.limit] + self.window - now)
        return wait

    def failed(self, *keys: Hashable) -> None:
        now = self.clock.seconds()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def reset(self, key: Hashable) -> None:
        self._failures.pop(key, None)
