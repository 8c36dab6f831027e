"""In-process bus for a single node: delivery is a dictionary lookup."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from twisted.internet import defer

from tinychat.server.bus.base import LocalDelivery, NodeInfo


class LocalBus:
    """Every session is on this node, so publishing is local delivery."""

    def __init__(self, node_id: str = "", address: Callable[[], str] = str,
                 connections: Callable[[], int] = int) -> None:
        self._node_id = node_id
        self._address = address
        self._connections = connections
        self._deliver: LocalDelivery | None = None
        self._sessions: dict[int, set[str]] = {}

    def start(self, deliver_local: LocalDelivery, on_resync: Callable[[str], None] | None = None) -> defer.Deferred:
        self._deliver = deliver_local
        return defer.succeed(None)

    def stop(self) -> defer.Deferred:
        self._sessions.clear()
        return defer.succeed(None)

    def lock_login(self, uid: int) -> defer.Deferred:
        # One reactor thread: logins of a user on this node are already serialised.
        return defer.succeed(lambda: None)

    def attach(self, uid: int, session_id: str) -> defer.Deferred:
        self._sessions.setdefault(uid, set()).add(session_id)
        return defer.succeed(None)

    def detach(self, uid: int, session_id: str) -> defer.Deferred:
        sessions = self._sessions.get(uid)
        if sessions is not None:
            sessions.discard(session_id)
            if not sessions:
                del self._sessions[uid]
        return defer.succeed(uid not in self._sessions)

    def publish(self, uids: Iterable[int], frame: bytes, skip_session: str | None = None) -> None:
        deliver = self._deliver
        if deliver is None:
            return
        sessions = self._sessions
        for uid in uids:
            if uid in sessions:
                deliver(uid, frame, skip_session)

    def online(self, uids: Collection[int]) -> defer.Deferred:
        sessions = self._sessions
        return defer.succeed({uid for uid in uids if uid in sessions})

    def nodes(self) -> defer.Deferred:
        return defer.succeed([NodeInfo(self._node_id, self._address(), self._connections())])
