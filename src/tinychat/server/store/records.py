"""Plain rows the store hands to handlers."""

from __future__ import annotations

from dataclasses import dataclass

from tinychat.protocol import Attachment


@dataclass(slots=True)
class UserRow:
    uid: int
    username: str
    email: str
    password_hash: str
    totp_secret: str | None
    totp_enabled: bool
    created_at_ms: int


@dataclass(slots=True)
class CodeRow:
    """A verification code as stored: only its hash, with its counters."""

    email: str
    purpose: int
    code_hash: str
    attempts: int
    sent_at_ms: int
    expires_at_ms: int


@dataclass(slots=True)
class FriendRequestRow:
    id: int
    from_uid: int
    from_username: str
    to_uid: int
    to_username: str
    greeting: str
    status: int
    created_at_ms: int


@dataclass(slots=True)
class FriendRow:
    uid: int
    username: str
    remark: str
    thread_id: int


@dataclass(slots=True)
class ThreadRow:
    """A thread as one member sees it."""

    thread_id: int
    kind: int
    peer_uid: int
    title: str
    last_seq: int
    read_seq: int


@dataclass(slots=True)
class NewMessage:
    """A message waiting for its durable write."""

    sender_uid: int
    thread_id: int
    client_msg_id: int
    text: str
    kind: int = 1
    attachment: Attachment | None = None


@dataclass(slots=True)
class GroupRow:
    thread_id: int
    name: str
    owner_uid: int
    member_count: int
    role: int


@dataclass(slots=True)
class MemberRow:
    uid: int
    username: str
    role: int


@dataclass(slots=True)
class BlobRow:
    blob_id: str
    size: int
    media_type: str
    complete: bool
    width: int
    height: int


@dataclass(slots=True)
class StoredMessage:
    """The outcome of a write: where the message landed, and whether it was a resend."""

    thread_id: int
    seq: int
    sent_at_ms: int
    duplicate: bool
    text: str


class FriendRequestStatus:
    PENDING = 0
    ACCEPTED = 1
    REJECTED = 2
