"""Awaiting Twisted Deferreds from asyncio code.

The REPL's session loop is an asyncio coroutine (prompt_toolkit needs one)
and the client library answers with Deferreds; both run on one event loop
because the Twisted reactor is the asyncio reactor.  An asyncio task cannot
await a Deferred directly, so every call goes through `wait`.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from twisted.internet import defer

T = TypeVar("T")


async def wait(d: defer.Deferred[T] | Any) -> T:
    """The result of a Deferred; cancelling the awaiting task cancels the Deferred."""
    if not isinstance(d, defer.Deferred):
        return d
    return await d.asFuture(asyncio.get_running_loop())


def background(d: defer.Deferred[Any]) -> None:
    """Let a Deferred run on its own; its failure is dropped (the caller reports what matters)."""
    d.addErrback(lambda failure: None)
