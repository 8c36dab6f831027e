"""What a node knows about one logged-in connection."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


def new_session_id() -> str:
    """Unique across nodes: tells an old session from its replacement."""
    return secrets.token_hex(8)


@dataclass(slots=True)
class Session:
    """A logged-in user on one connection.

    `friends` maps each friend's uid to the direct thread with them and
    `threads` maps every thread the user may read to its peer (0 for groups);
    both are loaded at login and kept current by the pushes the session
    receives, so sending and reading need no database round trip to check
    permissions.
    """

    uid: int
    username: str
    email: str
    token_hash: str
    session_id: str = field(default_factory=new_session_id)
    friends: dict[int, int] = field(default_factory=dict)
    threads: dict[int, int] = field(default_factory=dict)
