"""Threads and messages: send with durable ack, history pages, sync, read marks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.python.failure import Failure

from tinychat.protocol import (
    MAX_HISTORY_PAGE,
    MAX_TEXT_CHARS,
    NO_ATTACHMENT,
    Attachment,
    ChatMessage,
    ErrorCode,
    FriendRequestInfo,
    History,
    HistoryPage,
    MarkRead,
    MessageAck,
    MessageKind,
    MessagePush,
    Ok,
    ReadMarkPush,
    SendAttachment,
    SendMessage,
    Sync,
    SyncState,
    ThreadInfo,
    ThreadKind,
    encode,
)
from tinychat.server.errors import refuse
from tinychat.server.handlers.friends import request_info
from tinychat.server.router import AnsweredLater
from tinychat.server.store.records import NewMessage, StoredMessage
from tinychat.server.store.sql import NotFoundError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinychat.server.connection import ChatConnection
    from tinychat.server.node import Services
    from tinychat.server.router import Router
    from tinychat.server.session import Session


class MessageHandlers:
    def __init__(self, services: Services) -> None:
        self.s = services

    def install(self, router: Router) -> None:
        router.add(SendMessage, self.send)
        router.add(SendAttachment, self.send_attachment)
        router.add(History, self.history)
        router.add(Sync, self.sync)
        router.add(MarkRead, self.mark_read)

    def _thread_of(self, session: Session, thread_id: int) -> int:
        """The peer of a thread the session may read (0 for groups); refuses others."""
        peer = session.threads.get(thread_id)
        if peer is None:
            raise refuse(ErrorCode.THREAD_NOT_FOUND)
        return peer

    def _direct_recipients(self, session: Session, thread_id: int, to_uid: int) -> tuple[int, tuple[int, int]] | None:
        """(thread_id, (peer, sender)) of a direct send, None for a group; refuses what is not allowed."""
        if (thread_id == 0) == (to_uid == 0):
            raise refuse(ErrorCode.INVALID_ARGUMENT, "give exactly one of thread_id and to_uid")
        if to_uid:
            thread_id = session.friends.get(to_uid)
            if thread_id is None:
                raise refuse(ErrorCode.NOT_FRIENDS)
            return thread_id, (to_uid, session.uid)
        peer = self._thread_of(session, thread_id)
        if not peer:
            return None
        if peer not in session.friends:
            raise refuse(ErrorCode.NOT_FRIENDS)
        return thread_id, (peer, session.uid)

    async def _recipients(self, session: Session, thread_id: int, to_uid: int) -> tuple[int, Sequence[int]]:
        """(thread_id, members to push to) of any send; refuses senders who may not write there."""
        direct = self._direct_recipients(session, thread_id, to_uid)
        if direct is not None:
            return direct
        members = await self.s.sessions.members_of(thread_id)
        if session.uid not in members:
            session.threads.pop(thread_id, None)
            raise refuse(ErrorCode.THREAD_NOT_FOUND)
        return thread_id, members

    def _store_and_push(self, session: Session, request_id: int, message: NewMessage,
                        members: Sequence[int]) -> defer.Deferred[MessageAck]:
        """Ack after the durable write; then push the message, encoded once, to every member."""
        return self.s.writer.submit(message).addCallback(self._stored, session, request_id, message, members)

    def _stored(self, stored: StoredMessage, session: Session, request_id: int, message: NewMessage,
                members: Sequence[int]) -> MessageAck:
        if not stored.duplicate:
            self._publish(stored, session, message.client_msg_id, message.text, message.kind, message.attachment,
                          members)
        return MessageAck(request_id, stored.thread_id, stored.seq, message.client_msg_id, stored.sent_at_ms)

    def _publish(self, stored: StoredMessage, session: Session, client_msg_id: int, text: str, kind: int,
                 attachment: Attachment | None, members: Sequence[int]) -> None:
        """Push a newly stored message to the members' sessions (the sender's other ones included)."""
        push = MessagePush(ChatMessage(stored.thread_id, stored.seq, session.uid, client_msg_id, stored.sent_at_ms,
                                       text, kind, attachment or NO_ATTACHMENT))
        self.s.bus.publish(members, push.encode_frame(), skip_session=session.session_id)

    def send(self, conn: ChatConnection, req: SendMessage) -> defer.Deferred[MessageAck] | AnsweredLater:
        """The hot path: direct messages go to the writer with plain callbacks, no Deferred."""
        session = conn.session
        if not 1 <= len(req.text) <= MAX_TEXT_CHARS:
            raise refuse(ErrorCode.INVALID_ARGUMENT, f"text must have 1 to {MAX_TEXT_CHARS} characters")
        direct = self._direct_recipients(session, req.thread_id, req.to_uid)
        if direct is None:
            return defer.Deferred.fromCoroutine(self._send_to_group(session, req))
        thread_id, members = direct
        message = NewMessage(session.uid, thread_id, req.client_msg_id, req.text)
        self.s.writer.submit_call(message, self._direct_stored, self._direct_failed, conn, session, req, members)
        return conn.answer_later()

    def _direct_stored(self, stored: StoredMessage, conn: ChatConnection, session: Session, req: SendMessage,
                       members: Sequence[int]) -> None:
        """Stored: push it to the members and ack it (the ack is dropped if the client has gone)."""
        try:
            if not stored.duplicate:
                self._publish(stored, session, req.client_msg_id, req.text, MessageKind.TEXT, None, members)
            ack = MessageAck(req.request_id, stored.thread_id, stored.seq, req.client_msg_id,
                             stored.sent_at_ms).encode_frame()
        except Exception:  # the request must still end, with an error, rather than hang
            conn.answer_failed(Failure(), req, session)
            return
        conn.answer(ack)

    @staticmethod
    def _direct_failed(failure: Failure, conn: ChatConnection, session: Session, req: SendMessage,
                       members: Sequence[int]) -> None:
        """Not stored (the database is away...): the sender gets the error, nothing was acked."""
        conn.answer_failed(failure, req, session)

    async def _send_to_group(self, session: Session, req: SendMessage) -> MessageAck:
        thread_id, members = await self._recipients(session, req.thread_id, 0)
        return await self._store_and_push(
            session, req.request_id, NewMessage(session.uid, thread_id, req.client_msg_id, req.text), members)

    async def send_attachment(self, conn: ChatConnection, req: SendAttachment) -> MessageAck:
        session = conn.session
        if req.kind not in (MessageKind.IMAGE, MessageKind.FILE):
            raise refuse(ErrorCode.INVALID_ARGUMENT, "an attachment is an IMAGE or a FILE")
        if len(req.caption) > MAX_TEXT_CHARS:
            raise refuse(ErrorCode.INVALID_ARGUMENT, f"a caption has at most {MAX_TEXT_CHARS} characters")
        thread_id, members = await self._recipients(session, req.thread_id, req.to_uid)
        blob = await self.s.store.blob(req.blob_id)
        if blob is None or not blob.complete or not await self.s.store.may_read_blob(req.blob_id, session.uid):
            raise refuse(ErrorCode.BLOB_NOT_FOUND)
        attachment = Attachment(blob_id=blob.blob_id, name=await self.s.files.name_of(req.blob_id, session.uid),
                                size=blob.size, media_type=blob.media_type, width=blob.width, height=blob.height)
        message = NewMessage(session.uid, thread_id, req.client_msg_id, req.caption, int(req.kind), attachment)
        return await self._store_and_push(session, req.request_id, message, members)

    async def history(self, conn: ChatConnection, req: History) -> HistoryPage:
        # A group's membership may have ended on another node a moment ago: ask the database.
        is_group = not self._thread_of(conn.session, req.thread_id)
        if is_group and not await self.s.store.is_member(req.thread_id, conn.session.uid):
            raise refuse(ErrorCode.THREAD_NOT_FOUND)
        if not 1 <= req.limit <= MAX_HISTORY_PAGE:
            raise refuse(ErrorCode.INVALID_ARGUMENT, f"limit must be 1 to {MAX_HISTORY_PAGE}")
        messages, has_more = await self.s.store.history(req.thread_id, req.cursor_seq, req.direction, req.limit)
        return HistoryPage(request_id=req.request_id, thread_id=req.thread_id, messages=messages,
                           has_more=has_more)

    async def sync(self, conn: ChatConnection, req: Sync) -> SyncState:
        uid = conn.session.uid
        threads = await self.s.store.threads(uid)
        incoming, _ = await self.s.store.pending_friend_requests(uid)
        infos: list[FriendRequestInfo] = [request_info(r) for r in incoming]
        return SyncState(request_id=req.request_id, friend_requests=infos, threads=[
            ThreadInfo(thread_id=t.thread_id, kind=ThreadKind(t.kind), peer_uid=t.peer_uid, title=t.title,
                       last_seq=t.last_seq, read_seq=t.read_seq, unread=max(0, t.last_seq - t.read_seq))
            for t in threads])

    async def mark_read(self, conn: ChatConnection, req: MarkRead) -> Ok:
        session = conn.session
        peer = self._thread_of(session, req.thread_id)
        try:
            read_seq, _ = await self.s.store.mark_read(session.uid, req.thread_id, req.seq)
        except NotFoundError:
            raise refuse(ErrorCode.THREAD_NOT_FOUND)
        # A read receipt for the peer of a direct thread; in groups only the user's other views hear of it.
        members = (session.uid, peer) if peer else (session.uid,)
        self.s.bus.publish(members, encode(ReadMarkPush(thread_id=req.thread_id, uid=session.uid,
                                                        read_seq=read_seq)), skip_session=session.session_id)
        return Ok(request_id=req.request_id)
