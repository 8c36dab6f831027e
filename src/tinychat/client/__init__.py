"""TinyChat client library: the connection core, a high-level client and its local view.

`TinyChatClient` is what bots and apps use (docs/client.md); `connect` gives
the bare protocol connection underneath it.
"""

from tinychat.client.client import Backoff, ConnectionState, TinyChatClient
from tinychat.client.connection import ClientConnection, connect
from tinychat.client.errors import (
    ConnectionClosedError,
    ProtocolViolationError,
    RequestTimeoutError,
    ServerError,
    TinyChatError,
)
from tinychat.client.logs import log_warnings_to_stderr
from tinychat.client.view import Friend, LocalView, MessageSequencer, ThreadState

__all__ = [
    "Backoff", "ClientConnection", "ConnectionClosedError", "ConnectionState", "Friend", "LocalView",
    "MessageSequencer", "ProtocolViolationError", "RequestTimeoutError", "ServerError", "ThreadState",
    "TinyChatClient", "TinyChatError", "connect", "log_warnings_to_stderr",
]
