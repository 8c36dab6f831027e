"""The Bus: how a push for a user reaches the node that holds the user's session.

Handlers never look up where a user is.  They hand the bus an encoded frame
and the uids it is for; the bus delivers it to every session of those users,
on this node or another, and answers who is online and which nodes are live.
The embedded node uses `LocalBus`; a cluster uses `RedisBus`, with the same
contract.  Delivery is best effort: the database is the source of truth and
clients fill gaps by seq (and resync when told to).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet import defer

# (uid, frame, session id to skip or None) -> None: delivers to this node's sessions.
LocalDelivery = Callable[[int, bytes, "str | None"], None]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A live node as the registry knows it."""

    node_id: str
    address: str
    connections: int


class Bus(Protocol):
    """Delivery of encoded push frames to users' sessions, presence, and the node registry."""

    def start(self, deliver_local: LocalDelivery, on_resync: Callable[[str], None]) -> defer.Deferred:
        """Begin.  `deliver_local` receives frames for this node's sessions; `on_resync(reason)`
        is called when pushes may have been lost (the bus link came back after an outage)."""

    def stop(self) -> defer.Deferred:
        """Stop delivering and leave the registry."""

    def lock_login(self, uid: int) -> defer.Deferred:
        """Serialise logins of one user across nodes; fires with a release() callable."""

    def attach(self, uid: int, session_id: str) -> defer.Deferred:
        """A session of `uid` is now on this node: route its pushes here, mark it online."""

    def detach(self, uid: int, session_id: str) -> defer.Deferred:
        """That session ended; fires with True if the user has no session left anywhere."""

    def publish(self, uids: Iterable[int], frame: bytes, skip_session: str | None = None) -> None:
        """Deliver `frame` to every session of `uids` except `skip_session` (best effort)."""

    def online(self, uids: Collection[int]) -> defer.Deferred:
        """The subset of `uids` with a live session somewhere."""

    def nodes(self) -> defer.Deferred:
        """[NodeInfo] of every live node."""
