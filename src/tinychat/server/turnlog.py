"""Log lines that come in bursts (one per login), written as one log event per reactor turn."""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class TurnLog:
    """Collects the lines of one reactor turn and logs them as one event.

    Each log event costs the node's log observer a timestamp, a format, a write
    and a flush; one event per login took about a sixth of a node's rate of
    token logins.  Lines of one turn happened within the same moment, so they
    share one timestamp: the first line follows it and the others come on
    continuation lines (a tab-indented line each in twistd's text log), so a
    search for a line's text still finds every one.
    """

    def __init__(self, logger: Logger, clock: IReactorTime) -> None:
        self._log = logger
        self._clock = clock
        self._lines: list[str] = []
        self._pending: IDelayedCall | None = None

    def add(self, line: str) -> None:
        self._lines.append(line)
        if self._pending is None:
            self._pending = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write the lines collected so far (at the end of the turn, and when the node stops)."""
        if self._pending is not None:
            if self._pending.active():
                self._pending.cancel()
            self._pending = None
        if self._lines:
            lines, self._lines = self._lines, []
            self._log.info("{lines}", lines="\n".join(lines))
