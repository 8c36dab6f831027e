"""Blocking TinyChat clients for integration tests, and user set-up helpers."""

from __future__ import annotations

import contextlib
import itertools
import queue
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor

from tests.reactor_thread import call
from tinychat.client.client import TinyChatClient
from tinychat.protocol import CodePurpose, Message

PASSWORD = "correct horse battery"
_counter = itertools.count(1)


class SyncClient:
    """A TinyChatClient driven from the test thread; every push is recorded in order."""

    def __init__(self, endpoint: str, **kwargs: Any) -> None:
        # Server tests watch one connection at a time: no silent reconnects unless a test asks.
        kwargs.setdefault("auto_reconnect", False)
        self.client = TinyChatClient(endpoint, reactor=reactor, **kwargs)
        self.pushes: queue.Queue[Message] = queue.Queue()
        self._uid = 0
        self.client.on(None, self.pushes.put)
        call(self.client.connect)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if callable(attr):
            return lambda *args, **kwargs: call(attr, *args, **kwargs)
        return attr

    def request_raw(self, request_type: type, **fields: Any) -> Any:
        """Send any request through the connection core (for protocol-level tests)."""
        return call(self.client.connection.request, request_type, **fields)

    @property
    def uid(self) -> int:
        """The uid of the last login (kept after logout)."""
        if self.client.user is not None:
            self._uid = self.client.user.uid
        return self._uid

    def next_push(self, push_type: type | None = None, timeout: float = 10.0,
                  where: Callable[[Any], bool] | None = None) -> Any:
        """The next push of `push_type` (others are skipped), waiting up to `timeout`."""
        while True:
            try:
                push = self.pushes.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {getattr(push_type, '__name__', 'push')} within {timeout} s") from None
            if (push_type is None or isinstance(push, push_type)) and (where is None or where(push)):
                return push

    def drain(self) -> list[Message]:
        """Every push received so far."""
        items = []
        while True:
            try:
                items.append(self.pushes.get_nowait())
            except queue.Empty:
                return items

    def wait_closed(self, timeout: float = 10.0) -> None:
        call(self.client.connection.when_closed, timeout=timeout)


class Users:
    """Registers users through the real flow: code by e-mail, then register, then login."""

    def __init__(self, endpoint: str, code_for: Callable[[str], str]) -> None:
        self.endpoint = endpoint
        self.code_for = code_for
        self.clients: list[SyncClient] = []

    def connect(self) -> SyncClient:
        client = SyncClient(self.endpoint)
        self.clients.append(client)
        return client

    def register(self, name: str | None = None, password: str = PASSWORD) -> tuple[str, str, int]:
        """(username, email, uid) of a new account."""
        name = name or f"user{next(_counter)}"
        email = f"{name.lower()}@example.com"
        client = self.connect()
        client.request_code(email, CodePurpose.REGISTER)
        uid = client.register(name, email, password, self.code_for(email))
        client.close()
        return name, email, uid

    def logged_in(self, name: str | None = None) -> SyncClient:
        username, _, _ = self.register(name)
        client = self.connect()
        client.login(username, PASSWORD)
        return client

    def friends(self, a: SyncClient, b: SyncClient) -> int:
        """Make a and b friends; returns their direct thread id."""
        request_id = a.add_friend(b.uid, "hi")
        resolved = b.accept_friend(request_id)
        a.next_push(where=lambda p: getattr(p, "friend_request_id", None) == request_id and
                    hasattr(p, "accepted"))
        return resolved.thread_id

    def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):  # already closed by the server
                client.close()
