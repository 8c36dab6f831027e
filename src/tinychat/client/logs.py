"""Where a program built on the client library sees the library's warnings and errors."""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)


def log_warnings_to_stderr(stream: TextIO | None = None) -> None:
    """Show the library's warnings and errors (failed event handlers, lost connections) on `stream`.

    Twisted keeps log events in memory until logging begins; a bot that never
    begins it would hide them.  Call this once, at start-up.
    """
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    observer = FilteringLogObserver(textFileLogObserver(stream or sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
