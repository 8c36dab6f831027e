"""Groups and files for the client: the methods TinyChatClient gains from `MediaMixin`.

Uploads are resumable: `upload` asks the server how much it already holds
(BEGIN_UPLOAD answers with an offset) and sends only the rest, so calling it
again after a broken connection, on any node of the cluster, continues where
the last attempt stopped.  Chunks are pipelined a few at a time.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import random
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads

from tinychat.client.errors import OffsetMismatchError
from tinychat.protocol import (
    AddGroupMembers,
    BeginUpload,
    CreateGroup,
    DissolveGroup,
    Download,
    GroupInfo,
    GroupMember,
    LeaveGroup,
    ListGroupMembers,
    ListGroups,
    MessageAck,
    MessageKind,
    RemoveGroupMember,
    RenameGroup,
    Role,
    SendAttachment,
    SetGroupRole,
    UploadChunk,
)

Progress = Callable[[int, int], Any]  # (bytes done, total)
PIPELINE = 4


def _deferred(fn: Callable[..., Any]) -> Callable[..., defer.Deferred]:
    """Expose a coroutine method as a Deferred-returning one (usable with await too)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(fn(*args, **kwargs))

    return wrapper


class MediaMixin:
    """Group and file operations; relies on the host class's `_request` and `new_client_msg_id`."""

    _request: Callable[..., defer.Deferred]

    # ------------------------------------------------------------ groups

    @_deferred
    async def create_group(self, name: str, member_uids: list[int]) -> GroupInfo:
        """Create a group with some of your friends; you are its owner."""
        return (await self._request(CreateGroup, name=name, member_uids=list(member_uids))).group

    @_deferred
    async def add_group_members(self, thread_id: int, uids: list[int]) -> None:
        await self._request(AddGroupMembers, thread_id=thread_id, uids=list(uids))

    @_deferred
    async def remove_group_member(self, thread_id: int, uid: int) -> None:
        await self._request(RemoveGroupMember, thread_id=thread_id, uid=uid)

    @_deferred
    async def leave_group(self, thread_id: int) -> None:
        await self._request(LeaveGroup, thread_id=thread_id)

    @_deferred
    async def rename_group(self, thread_id: int, name: str) -> None:
        await self._request(RenameGroup, thread_id=thread_id, name=name)

    @_deferred
    async def set_group_role(self, thread_id: int, uid: int, role: Role) -> None:
        """ADMIN or MEMBER; OWNER hands the group over."""
        await self._request(SetGroupRole, thread_id=thread_id, uid=uid, role=role)

    @_deferred
    async def dissolve_group(self, thread_id: int) -> None:
        await self._request(DissolveGroup, thread_id=thread_id)

    @_deferred
    async def groups(self) -> list[GroupInfo]:
        return (await self._request(ListGroups)).groups

    @_deferred
    async def group_members(self, thread_id: int) -> list[GroupMember]:
        return (await self._request(ListGroupMembers, thread_id=thread_id)).members

    # ------------------------------------------------------------ files

    @_deferred
    async def upload(self, source: str | os.PathLike | bytes, name: str | None = None, media_type: str | None = None,
                     progress: Progress | None = None, chunk_limit: int | None = None) -> str:
        """Upload a file (a path or bytes), resuming a partial upload; returns its blob id.

        `chunk_limit` stops after that many chunks (to test or pace resumption); call again to go on.
        """
        data = source if isinstance(source, bytes) else await threads.deferToThread(Path(source).read_bytes)
        if name is None:
            name = "file" if isinstance(source, bytes) else Path(source).name
        if media_type is None:
            media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        digest = await threads.deferToThread(lambda: hashlib.sha256(data).hexdigest())
        state = await self._request(BeginUpload, name=name, size=len(data), media_type=media_type, sha256=digest)
        chunk = state.chunk_bytes
        offset = state.offset
        if progress is not None:
            progress(offset, len(data))
        sent = 0
        while not state.complete and (chunk_limit is None or sent < chunk_limit):
            window = []
            at = offset
            room = PIPELINE if chunk_limit is None else min(PIPELINE, chunk_limit - sent)
            while at < len(data) and len(window) < room:
                window.append(self._request(UploadChunk, blob_id=digest, offset=at, data=data[at:at + chunk]))
                at += chunk
            try:
                while window:
                    state = await window.pop(0)
                    sent += 1
                    if progress is not None:
                        progress(state.offset, len(data))
            except OffsetMismatchError:
                # Another attempt is appending too (or a chunk was lost): ask where to resume.
                for later in window:
                    later.addErrback(lambda failure: None)  # refused as well
                state = await self._request(BeginUpload, name=name, size=len(data), media_type=media_type,
                                            sha256=digest)
            offset = state.offset
        return digest

    @_deferred
    async def download(self, blob_id: str, destination: str | os.PathLike | None = None, offset: int = 0,
                       progress: Progress | None = None) -> bytes | Path:
        """Fetch a file (from `offset`): its bytes, or the path written when `destination` is given."""
        chunk = (self.welcome.file_chunk_bytes if self.welcome else 0) or 64 * 1024
        parts: list[bytes] = []
        first = await self._request(Download, blob_id=blob_id, offset=offset, length=chunk)
        total = first.size
        parts.append(first.data)
        at = offset + len(first.data)
        if progress is not None:
            progress(at, total)
        while at < total:
            window = [self._request(Download, blob_id=blob_id, offset=position, length=chunk)
                      for position in range(at, min(total, at + chunk * PIPELINE), chunk)]
            for d in window:
                part = await d
                parts.append(part.data)
                at += len(part.data)
                if progress is not None:
                    progress(at, total)
        data = b"".join(parts)
        if destination is None:
            return data
        path = Path(destination)
        mode = "ab" if offset else "wb"

        def write() -> None:
            with open(path, mode) as f:
                f.write(data)

        await threads.deferToThread(write)
        return path

    def send_file(self, blob_id: str, *, to_uid: int = 0, thread_id: int = 0, image: bool = False,
                  caption: str = "", client_msg_id: int | None = None) -> defer.Deferred[MessageAck]:
        """Send an uploaded file as a FILE message (or IMAGE); acked like any message."""
        return self._request(SendAttachment, thread_id=thread_id, to_uid=to_uid,
                             client_msg_id=client_msg_id or random.getrandbits(64) or 1,
                             kind=MessageKind.IMAGE if image else MessageKind.FILE, blob_id=blob_id, caption=caption)
