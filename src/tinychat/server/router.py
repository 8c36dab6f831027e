"""Which handler serves which request.

The state a request is allowed in is part of the protocol (`Message.ACCESS`),
so the connection checks it before looking for a handler; a request with no
handler is NOT_IMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tinychat.protocol import Kind, Message

if TYPE_CHECKING:
    from tinychat.server.connection import ChatConnection



class AnsweredLater:
    """What a handler returns when it answers by itself, through `ChatConnection.answer`.

    The message hot path uses it to avoid a Deferred per request; the
    connection counts the request as in progress until the answer.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "LATER"


LATER = AnsweredLater()
Handler = Callable[["ChatConnection", Any], "Message | Awaitable[Message] | AnsweredLater"]


class Router:
    """A table of request class -> handler."""

    def __init__(self) -> None:
        self._handlers: dict[type[Message], Handler] = {}

    def add(self, request: type[Message], handler: Handler) -> None:
        if request.KIND is not Kind.REQUEST:
            raise TypeError(f"{request.__name__} is not a request")
        if request in self._handlers:
            raise ValueError(f"{request.__name__} is routed twice")
        self._handlers[request] = handler

    def get(self, request: type[Message]) -> Handler | None:
        return self._handlers.get(request)

    def __contains__(self, request: type[Message]) -> bool:
        return request in self._handlers
