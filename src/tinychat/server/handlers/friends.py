"""Users and friends: search, friend requests, the friend list, removal."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tinychat.protocol import (
    MAX_SEARCH_RESULTS,
    ErrorCode,
    FriendInfo,
    FriendRemovedPush,
    FriendRequestInfo,
    FriendRequestPush,
    FriendRequestResolved,
    FriendRequests,
    FriendRequestSent,
    FriendResponsePush,
    Friends,
    ListFriendRequests,
    ListFriends,
    Ok,
    PresencePush,
    RemoveFriend,
    RespondFriendRequest,
    SearchResults,
    SearchUsers,
    SendFriendRequest,
    UserSummary,
    encode,
)
from tinychat.server.errors import refuse
from tinychat.server.store.records import FriendRequestRow
from tinychat.server.store.sql import NotFoundError

if TYPE_CHECKING:
    from tinychat.server.connection import ChatConnection
    from tinychat.server.node import Services
    from tinychat.server.router import Router

USERNAME_PREFIX = re.compile(r"^[a-z0-9_]{1,32}$")


def request_info(row: FriendRequestRow) -> FriendRequestInfo:
    return FriendRequestInfo(friend_request_id=row.id, from_uid=row.from_uid, from_username=row.from_username,
                             to_uid=row.to_uid, to_username=row.to_username, greeting=row.greeting,
                             created_at_ms=row.created_at_ms)


class FriendHandlers:
    def __init__(self, services: Services) -> None:
        self.s = services

    def install(self, router: Router) -> None:
        router.add(SearchUsers, self.search)
        router.add(SendFriendRequest, self.send_request)
        router.add(RespondFriendRequest, self.respond)
        router.add(ListFriendRequests, self.list_requests)
        router.add(ListFriends, self.list_friends)
        router.add(RemoveFriend, self.remove)

    def _now_ms(self) -> int:
        return int(self.s.clock.seconds() * 1000)

    async def search(self, conn: ChatConnection, req: SearchUsers) -> SearchResults:
        session = conn.session
        query = req.query.strip()
        uid = int(query) if query.isascii() and query.isdigit() and len(query) < 19 else None
        prefix = query.lower() if USERNAME_PREFIX.match(query.lower()) else None
        rows = []
        if uid is not None or prefix is not None:
            rows = await self.s.store.search_users(prefix, uid, MAX_SEARCH_RESULTS + 1)
        rows = [(u, name) for u, name in rows if u != session.uid][:MAX_SEARCH_RESULTS]
        online = await self.s.bus.online([u for u, _ in rows if u in session.friends])
        return SearchResults(request_id=req.request_id, users=[
            UserSummary(uid=u, username=name, is_friend=u in session.friends, online=u in online)
            for u, name in rows])

    async def send_request(self, conn: ChatConnection, req: SendFriendRequest) -> FriendRequestSent:
        session = conn.session
        if req.to_uid == session.uid:
            raise refuse(ErrorCode.CANNOT_FRIEND_SELF)
        if req.to_uid in session.friends:
            raise refuse(ErrorCode.ALREADY_FRIENDS)
        found = await self.s.store.create_friend_request(session.uid, req.to_uid, req.greeting, self._now_ms())
        if found is None:
            raise refuse(ErrorCode.USER_NOT_FOUND)
        row, created = found
        if created:
            self.s.bus.publish([req.to_uid], encode(FriendRequestPush(request=request_info(row))))
        return FriendRequestSent(request_id=req.request_id, friend_request_id=row.id)

    async def respond(self, conn: ChatConnection, req: RespondFriendRequest) -> FriendRequestResolved:
        session = conn.session
        try:
            row, thread_id = await self.s.store.resolve_friend_request(
                req.friend_request_id, session.uid, req.accept, req.remark, self._now_ms())
        except NotFoundError:
            raise refuse(ErrorCode.FRIEND_REQUEST_NOT_FOUND)
        peer = row.from_uid
        self.s.bus.publish([peer], encode(FriendResponsePush(
            friend_request_id=row.id, peer_uid=session.uid, peer_username=session.username,
            accepted=req.accept, thread_id=thread_id)))
        if req.accept:
            session.friends[peer] = thread_id
            session.threads[thread_id] = peer
            # Each new friend learns the other is online, as after any login.
            self.s.bus.publish([peer], encode(PresencePush(uid=session.uid, online=True)))
            if peer in await self.s.bus.online([peer]):
                conn.send(PresencePush(uid=peer, online=True))
        return FriendRequestResolved(request_id=req.request_id, friend_request_id=row.id,
                                     accepted=req.accept, peer_uid=peer, thread_id=thread_id)

    async def list_requests(self, conn: ChatConnection, req: ListFriendRequests) -> FriendRequests:
        incoming, outgoing = await self.s.store.pending_friend_requests(conn.session.uid)
        return FriendRequests(request_id=req.request_id, incoming=[request_info(r) for r in incoming],
                              outgoing=[request_info(r) for r in outgoing])

    async def list_friends(self, conn: ChatConnection, req: ListFriends) -> Friends:
        rows = await self.s.store.friends(conn.session.uid)
        online = await self.s.bus.online([r.uid for r in rows])
        return Friends(request_id=req.request_id, friends=[
            FriendInfo(uid=r.uid, username=r.username, remark=r.remark, online=r.uid in online,
                       thread_id=r.thread_id) for r in rows])

    async def remove(self, conn: ChatConnection, req: RemoveFriend) -> Ok:
        session = conn.session
        if req.uid not in session.friends:
            raise refuse(ErrorCode.NOT_FRIENDS)
        await self.s.store.remove_friend(session.uid, req.uid)
        session.friends.pop(req.uid, None)
        self.s.bus.publish([req.uid], encode(FriendRemovedPush(uid=session.uid)))
        # The remover's other sessions (a moment before a kick, say) learn it too.
        self.s.bus.publish([session.uid], encode(FriendRemovedPush(uid=req.uid)), skip_session=session.session_id)
        return Ok(request_id=req.request_id)
