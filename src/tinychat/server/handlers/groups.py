"""Groups: create, membership and roles, rename, dissolve, lists.

Members learn of every change through a GROUP_CHANGED push; the pushes also
keep each member's session (which threads it may read) and every node's
cache of group members current.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinychat.protocol import (
    MAX_GROUP_NAME,
    AddGroupMembers,
    CreateGroup,
    DissolveGroup,
    ErrorCode,
    GroupChange,
    GroupChangedPush,
    GroupCreated,
    GroupInfo,
    GroupMember,
    GroupMembers,
    Groups,
    LeaveGroup,
    ListGroupMembers,
    ListGroups,
    Ok,
    RemoveGroupMember,
    RenameGroup,
    Role,
    SetGroupRole,
    encode,
)
from tinychat.server.errors import refuse
from tinychat.server.store.groups import GroupFullError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tinychat.server.connection import ChatConnection
    from tinychat.server.node import Services
    from tinychat.server.router import Router


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name.encode()) > MAX_GROUP_NAME:
        raise refuse(ErrorCode.INVALID_ARGUMENT, "a group name has 1 to 64 bytes")
    return name


class GroupHandlers:
    def __init__(self, services: Services) -> None:
        self.s = services

    def install(self, router: Router) -> None:
        router.add(CreateGroup, self.create)
        router.add(AddGroupMembers, self.add_members)
        router.add(RemoveGroupMember, self.remove_member)
        router.add(LeaveGroup, self.leave)
        router.add(RenameGroup, self.rename)
        router.add(SetGroupRole, self.set_role)
        router.add(DissolveGroup, self.dissolve)
        router.add(ListGroups, self.list_groups)
        router.add(ListGroupMembers, self.list_members)

    def _now_ms(self) -> int:
        return int(self.s.clock.seconds() * 1000)

    async def _group(self, conn: ChatConnection, thread_id: int) -> tuple[str, int, dict[int, int]]:
        """(name, owner, roles) of a group the caller belongs to; THREAD_NOT_FOUND otherwise."""
        found = await self.s.store.group(thread_id)
        if found is None or conn.session.uid not in found[2]:
            raise refuse(ErrorCode.THREAD_NOT_FOUND)
        return found

    def _tell(self, members: Iterable[int], thread_id: int, change: GroupChange, actor: int, subject: int,
              role: Role, name: str) -> None:
        self.s.bus.publish(members, encode(GroupChangedPush(thread_id=thread_id, change=change, actor_uid=actor,
                                                            subject_uid=subject, role=role, name=name)))

    def _friends_only(self, conn: ChatConnection, uids: Iterable[int]) -> list[int]:
        session = conn.session
        wanted = [uid for uid in dict.fromkeys(uids) if uid != session.uid]
        strangers = [uid for uid in wanted if uid not in session.friends]
        if strangers:
            raise refuse(ErrorCode.NOT_FRIENDS, f"only friends can be added; not friends: {strangers[:5]}")
        return wanted

    async def create(self, conn: ChatConnection, req: CreateGroup) -> GroupCreated:
        session = conn.session
        name = check_name(req.name)
        members = self._friends_only(conn, req.member_uids)
        cap = self.s.config.max_group_members
        if len(members) + 1 > cap:
            raise refuse(ErrorCode.GROUP_FULL, f"a group has at most {cap} members")
        thread_id = await self.s.store.create_group(session.uid, name, members, self._now_ms())
        session.threads[thread_id] = 0
        for uid in members:
            self._tell([uid], thread_id, GroupChange.ADDED, session.uid, uid, Role.MEMBER, name)
        return GroupCreated(request_id=req.request_id, group=GroupInfo(
            thread_id=thread_id, name=name, owner_uid=session.uid, member_count=len(members) + 1, role=Role.OWNER))

    async def add_members(self, conn: ChatConnection, req: AddGroupMembers) -> Ok:
        session = conn.session
        name, _, roles = await self._group(conn, req.thread_id)
        if roles[session.uid] < Role.ADMIN:
            raise refuse(ErrorCode.PERMISSION_DENIED, "only the owner and admins add members")
        wanted = self._friends_only(conn, req.uids)
        try:
            added = await self.s.store.add_group_members(req.thread_id, wanted, self.s.config.max_group_members,
                                                         self._now_ms())
        except GroupFullError:
            raise refuse(ErrorCode.GROUP_FULL, f"a group has at most {self.s.config.max_group_members} members")
        for uid in added:
            self._tell([uid, *roles], req.thread_id, GroupChange.ADDED, session.uid, uid, Role.MEMBER, name)
        return Ok(request_id=req.request_id)

    async def remove_member(self, conn: ChatConnection, req: RemoveGroupMember) -> Ok:
        session = conn.session
        name, _, roles = await self._group(conn, req.thread_id)
        target = roles.get(req.uid)
        if target is None:
            raise refuse(ErrorCode.USER_NOT_FOUND, "not a member of this group")
        mine = roles[session.uid]
        if req.uid == session.uid or mine < Role.ADMIN or target >= mine:
            raise refuse(ErrorCode.PERMISSION_DENIED,
                         "the owner removes anyone else, admins remove members; to go yourself, leave")
        await self.s.store.remove_group_member(req.thread_id, req.uid)
        self._tell(roles, req.thread_id, GroupChange.REMOVED, session.uid, req.uid, Role(target), name)
        return Ok(request_id=req.request_id)

    async def leave(self, conn: ChatConnection, req: LeaveGroup) -> Ok:
        session = conn.session
        name, _, roles = await self._group(conn, req.thread_id)
        if roles[session.uid] == Role.OWNER and len(roles) > 1:
            raise refuse(ErrorCode.PERMISSION_DENIED, "the owner hands over ownership (or dissolves) first")
        await self.s.store.remove_group_member(req.thread_id, session.uid)
        session.threads.pop(req.thread_id, None)
        self._tell(roles, req.thread_id, GroupChange.LEFT, session.uid, session.uid, Role(roles[session.uid]), name)
        return Ok(request_id=req.request_id)

    async def rename(self, conn: ChatConnection, req: RenameGroup) -> Ok:
        session = conn.session
        _, _, roles = await self._group(conn, req.thread_id)
        if roles[session.uid] != Role.OWNER:
            raise refuse(ErrorCode.PERMISSION_DENIED, "only the owner renames the group")
        name = check_name(req.name)
        await self.s.store.rename_group(req.thread_id, name)
        self._tell(roles, req.thread_id, GroupChange.RENAMED, session.uid, 0, Role.OWNER, name)
        return Ok(request_id=req.request_id)

    async def set_role(self, conn: ChatConnection, req: SetGroupRole) -> Ok:
        session = conn.session
        name, _, roles = await self._group(conn, req.thread_id)
        if roles[session.uid] != Role.OWNER:
            raise refuse(ErrorCode.PERMISSION_DENIED, "only the owner changes roles")
        if req.uid not in roles or req.uid == session.uid:
            raise refuse(ErrorCode.USER_NOT_FOUND, "not another member of this group")
        await self.s.store.set_group_role(req.thread_id, req.uid, req.role, session.uid)
        self._tell(roles, req.thread_id, GroupChange.ROLE_CHANGED, session.uid, req.uid, req.role, name)
        if req.role is Role.OWNER:
            self._tell(roles, req.thread_id, GroupChange.ROLE_CHANGED, session.uid, session.uid, Role.ADMIN, name)
        return Ok(request_id=req.request_id)

    async def dissolve(self, conn: ChatConnection, req: DissolveGroup) -> Ok:
        session = conn.session
        name, _, roles = await self._group(conn, req.thread_id)
        if roles[session.uid] != Role.OWNER:
            raise refuse(ErrorCode.PERMISSION_DENIED, "only the owner dissolves the group")
        await self.s.store.dissolve_group(req.thread_id)
        session.threads.pop(req.thread_id, None)
        self._tell(roles, req.thread_id, GroupChange.DISSOLVED, session.uid, 0, Role.OWNER, name)
        return Ok(request_id=req.request_id)

    async def list_groups(self, conn: ChatConnection, req: ListGroups) -> Groups:
        rows = await self.s.store.groups_of(conn.session.uid)
        return Groups(request_id=req.request_id, groups=[
            GroupInfo(thread_id=r.thread_id, name=r.name, owner_uid=r.owner_uid, member_count=r.member_count,
                      role=Role(r.role)) for r in rows])

    async def list_members(self, conn: ChatConnection, req: ListGroupMembers) -> GroupMembers:
        await self._group(conn, req.thread_id)
        rows = await self.s.store.group_members(req.thread_id)
        online = await self.s.bus.online([r.uid for r in rows])
        return GroupMembers(request_id=req.request_id, thread_id=req.thread_id, members=[
            GroupMember(uid=r.uid, username=r.username, role=Role(r.role), online=r.uid in online) for r in rows])
