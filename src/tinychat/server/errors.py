"""Server-side failures and how each becomes a protocol error."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure

from tinychat.protocol import ErrorCode, ProtocolError

log = Logger()


class UnavailableError(Exception):
    """A backing service (database, bus) cannot be reached; nothing was done."""


def refuse(code: ErrorCode, message: str = "", retry_after_ms: int = 0) -> ProtocolError:
    """Shorthand for handlers: `raise refuse(ErrorCode.NOT_FRIENDS)`."""
    return ProtocolError(code, message, retry_after_ms)


def to_protocol_error(failure: Failure, what: str) -> ProtocolError:
    """Map any failure of a handler to the error the client is sent."""
    if failure.check(ProtocolError):
        return failure.value
    if failure.check(UnavailableError):
        return ProtocolError(ErrorCode.UNAVAILABLE, f"service unavailable: {failure.value}")
    log.failure("unexpected failure while serving {what}", failure, what=what)
    return ProtocolError(ErrorCode.INTERNAL_ERROR, "internal error; the request may be retried")
