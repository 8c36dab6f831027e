"""Logged-in sessions of this node: login, logout, kick, presence and push delivery."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger

from tinychat.protocol import (
    GroupChangedPush,
    KickedPush,
    KickReason,
    LoggedIn,
    PresencePush,
    ResyncPush,
    encode,
)
from tinychat.server.bus.base import Bus
from tinychat.server.session import Session
from tinychat.server.store.records import UserRow
from tinychat.server.store.sql import SqlStore
from tinychat.server.turnlog import TurnLog

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from tinychat.server.connection import ChatConnection
    from tinychat.server.metrics import Metrics

log = Logger()
_GROUP_CHANGED = GroupChangedPush.MSG_ID
# What an older session of a user gets when the user logs in again (the same frame every time).
_KICKED_BY_NEW_LOGIN = encode(KickedPush(reason=KickReason.NEW_LOGIN, message="you logged in from another connection"))


class Sessions:
    """Tracks this node's sessions and keeps the bus and friends informed.

    One user has one session: a new login publishes a KICKED push for the
    user that every other session (on any node) obeys.
    """

    def __init__(self, store: SqlStore, bus: Bus, clock: IReactorTime, metrics: Metrics | None = None) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.local: dict[int, dict[str, ChatConnection]] = {}
        self.pushes_out = 0
        # Members of groups that this node's users write to; a GROUP_CHANGED push
        # for a group (which its members' nodes all receive) drops its entry.
        self._group_members: dict[int, list[int]] = {}
        # Every login is logged (operators expect it), but a burst of logins makes one log event.
        self.audit = TurnLog(log, clock)

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.local.values())

    async def start(self, connection: ChatConnection, user: UserRow, token: str, token_hash: str,
                    expires_at_ms: int, request_id: int,
                    state: tuple[dict[int, int], dict[int, int]] | None = None) -> LoggedIn | None:
        """Make `connection` the user's session; returns the LOGGED_IN reply.

        `state` is the user's (friends, threads) when the caller read them with its own
        queries (one database round trip instead of two); otherwise they are read here.
        """
        friends, threads = state if state is not None else await self.store.session_state(user.uid)
        if not connection.open:
            return None  # the client went away while we were checking
        session = Session(uid=user.uid, username=user.username, email=user.email, token_hash=token_hash,
                          friends=friends, threads=threads)
        # Two logins of one user racing on two nodes would each kick the other;
        # the lock makes them take turns, so the later one wins.
        release = await self.bus.lock_login(user.uid)
        try:
            if not connection.open:
                return None
            connection.logged_in(session)
            self.local.setdefault(user.uid, {})[session.session_id] = connection
            await self.bus.attach(user.uid, session.session_id)
            self.bus.publish([user.uid], _KICKED_BY_NEW_LOGIN, skip_session=session.session_id)
        finally:
            release()
        if friends:
            self.bus.publish(friends, encode(PresencePush(uid=user.uid, online=True)))
        self.audit.add(f"login uid={user.uid} session={session.session_id}")
        if self.metrics is not None:
            self.metrics.logins.inc()
        return LoggedIn(request_id=request_id, uid=user.uid, username=user.username, email=user.email,
                        resume_token=token, token_expires_at_ms=expires_at_ms,
                        totp_enabled=user.totp_enabled)

    def end(self, connection: ChatConnection) -> defer.Deferred:
        """Forget the connection's session (logout, kick, close); tell friends if now offline."""
        session = connection.logged_out()
        if session is None:
            return defer.succeed(None)
        on_node = self.local.get(session.uid)
        if on_node is not None:
            on_node.pop(session.session_id, None)
            if not on_node:
                del self.local[session.uid]
        friends = list(session.friends)

        def detached(offline: bool) -> None:
            if offline and friends:
                self.bus.publish(friends, encode(PresencePush(uid=session.uid, online=False)))

        d = self.bus.detach(session.uid, session.session_id)
        d.addCallback(detached)
        d.addErrback(lambda f: log.failure("presence update failed for uid {uid}", f, uid=session.uid))
        return d

    async def members_of(self, thread_id: int) -> list[int]:
        """The members of a group, cached until the group changes."""
        members = self._group_members.get(thread_id)
        if members is None:
            members = await self.store.thread_members(thread_id)
            self._group_members[thread_id] = members
        return members

    def deliver_local(self, uid: int, frame: bytes, skip_session: str | None) -> None:
        """Bus callback: hand a push frame to this node's sessions of `uid`."""
        if frame[0] << 8 | frame[1] == _GROUP_CHANGED:
            self._group_members.pop(int.from_bytes(frame[6:14], "big"), None)
        sessions = self.local.get(uid)
        if not sessions:
            return
        for session_id, connection in list(sessions.items()):
            if session_id != skip_session:
                self.pushes_out += 1
                connection.receive_push(frame)

    def resync_all(self, reason: str) -> None:
        """Tell every local session to catch up: pushes may have been lost."""
        frame = encode(ResyncPush(reason=reason))
        for sessions in list(self.local.values()):
            for connection in list(sessions.values()):
                connection.send_frame(frame)

    async def friends_of(self, uid: int) -> list[int]:
        """Friend uids of a user, for presence pushes about sessions no node holds any more."""
        return [row.uid for row in await self.store.friends(uid)]

    def kick_all(self, reason: KickReason, text: str) -> None:
        for sessions in list(self.local.values()):
            for connection in list(sessions.values()):
                connection.kick(reason, text)
