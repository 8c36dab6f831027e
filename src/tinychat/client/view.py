"""The client's local picture of the user's world, and the per-thread delivery order.

`LocalView` keeps friends (with presence), pending friend requests and threads
(last seq, read mark, unread count) so that apps and the REPL can read them
without asking the server again.  `TinyChatClient` keeps it current from the
login sync, LIST_FRIENDS, the acks of its own sends, pushes and mark_read;
it never does I/O itself, so it can be tested and reused on its own.

`MessageSequencer` decides which messages reach the application, and when:
each thread is handed out densely (1, 2, 3, ... from where the app started)
and in seq order, each message once.  Duplicates are dropped, a message that
skips seqs waits until the gap is filled (the client fetches it with HISTORY
AFTER), and the client's own acked sends count as seen without being handed
out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tinychat.protocol import (
    ChatMessage,
    FriendInfo,
    FriendRemovedPush,
    FriendRequestInfo,
    FriendRequestPush,
    FriendRequestResolved,
    FriendResponsePush,
    GroupChange,
    GroupChangedPush,
    Message,
    MessageAck,
    PresencePush,
    ReadMarkPush,
    SyncState,
    ThreadInfo,
    ThreadKind,
)

__all__ = ["Friend", "LocalView", "MessageSequencer", "ThreadState"]


@dataclass
class Friend:
    """A friend as the client knows them now (FriendInfo plus live presence)."""

    uid: int
    username: str
    remark: str = ""
    online: bool = False
    thread_id: int = 0

    @classmethod
    def from_info(cls, info: FriendInfo) -> Friend:
        return cls(info.uid, info.username, info.remark, info.online, info.thread_id)


@dataclass
class ThreadState:
    """A thread as the client knows it now.

    `last_seq` is the newest seq the client has heard of (sync, delivered
    messages, its own acks); `read_seq` is the user's read mark and
    `peer_read_seq` the other member's (read receipts; in a group, the
    furthest any other member has read).
    """

    thread_id: int
    kind: ThreadKind = ThreadKind.DIRECT
    peer_uid: int = 0
    title: str = ""
    last_seq: int = 0
    read_seq: int = 0
    peer_read_seq: int = 0

    @property
    def unread(self) -> int:
        """Messages after the read mark, counted the way SYNC_STATE counts them."""
        return max(0, self.last_seq - self.read_seq)


@dataclass
class LocalView:
    """Friends, pending friend requests and threads of the logged-in user.

    Every `apply_*` method takes what the server said (a response or a push)
    and folds it in; marks and seqs only move forward, so applying something
    twice, or late, does no harm.
    """

    uid: int = 0
    friends: dict[int, Friend] = field(default_factory=dict)
    friend_requests: dict[int, FriendRequestInfo] = field(default_factory=dict)
    outgoing_requests: dict[int, FriendRequestInfo] = field(default_factory=dict)
    threads: dict[int, ThreadState] = field(default_factory=dict)
    _journal: list[Message] | None = field(default=None, repr=False)

    # ------------------------------------------------------------ queries

    def friend_by_name(self, username: str) -> Friend | None:
        """The friend with this username, ignoring case (usernames are unique that way)."""
        wanted = username.casefold()
        return next((f for f in self.friends.values() if f.username.casefold() == wanted), None)

    def thread_with(self, uid: int) -> ThreadState | None:
        """The direct thread shared with `uid`, if known."""
        friend = self.friends.get(uid)
        if friend is not None and friend.thread_id in self.threads:
            return self.threads[friend.thread_id]
        return next((t for t in self.threads.values() if t.peer_uid == uid), None)

    @property
    def unread_total(self) -> int:
        return sum(t.unread for t in self.threads.values())

    # ------------------------------------------------------------ whole snapshots

    def reset(self, uid: int) -> None:
        """Forget everything: a different user logged in."""
        self.uid = uid
        self.friends.clear()
        self.friend_requests.clear()
        self.outgoing_requests.clear()
        self.threads.clear()
        self._journal = None

    def start_journal(self) -> None:
        """Record pushes from now on, to replay them over snapshots answered later.

        A snapshot (SYNC_STATE, FRIENDS) may have been taken before a push that
        arrives ahead of it; replaying the pushes keeps the newer facts.
        """
        self._journal = []

    def replay_journal(self) -> None:
        journal, self._journal = self._journal or [], None
        for push in journal:
            self.apply_push(push)

    def apply_sync(self, state: SyncState) -> list[FriendRequestInfo]:
        """Fold in SYNC_STATE; returns the incoming friend requests the view did not know."""
        for info in state.threads:
            self._apply_thread_info(info)
        new = [r for r in state.friend_requests if r.friend_request_id not in self.friend_requests]
        self.friend_requests = {r.friend_request_id: r for r in state.friend_requests}
        return new

    def _apply_thread_info(self, info: ThreadInfo) -> None:
        thread = self.threads.get(info.thread_id)
        if thread is None:
            thread = self.threads[info.thread_id] = ThreadState(info.thread_id)
        thread.kind = info.kind
        thread.peer_uid = info.peer_uid
        thread.title = info.title
        thread.last_seq = max(thread.last_seq, info.last_seq)
        thread.read_seq = max(thread.read_seq, info.read_seq)

    def apply_friends(self, friends: Iterable[FriendInfo]) -> None:
        """Replace the friend list with a FRIENDS answer."""
        self.friends = {f.uid: Friend.from_info(f) for f in friends}
        for f in self.friends.values():
            thread = self._thread(f.thread_id, f.uid)
            if thread is not None and not thread.title:
                thread.title = f.username

    def apply_friend_requests(self, incoming: Iterable[FriendRequestInfo],
                              outgoing: Iterable[FriendRequestInfo]) -> None:
        """Replace the pending requests with a FRIEND_REQUESTS answer."""
        self.friend_requests = {r.friend_request_id: r for r in incoming}
        self.outgoing_requests = {r.friend_request_id: r for r in outgoing}

    # ------------------------------------------------------------ messages and marks

    def _thread(self, thread_id: int, peer_uid: int = 0, title: str = "") -> ThreadState | None:
        if not thread_id:
            return None
        thread = self.threads.get(thread_id)
        if thread is None:
            friend = self.friends.get(peer_uid)
            thread = self.threads[thread_id] = ThreadState(
                thread_id, peer_uid=peer_uid, title=title or (friend.username if friend else ""))
        return thread

    def apply_message(self, message: ChatMessage) -> None:
        """A message the app now has (pushed, fetched, or its own)."""
        own = message.sender_uid == self.uid
        thread = self.threads.get(message.thread_id)
        if thread is None:  # a friend's direct thread, or one the next sync describes (a group)
            friend = self.friends.get(message.sender_uid)
            direct = friend is not None and friend.thread_id == message.thread_id
            thread = self._thread(message.thread_id, message.sender_uid if direct else 0)
        thread.last_seq = max(thread.last_seq, message.seq)
        if own:  # the server moves a sender's read mark over what they send
            thread.read_seq = max(thread.read_seq, message.seq)

    def apply_ack(self, ack: MessageAck, to_uid: int = 0) -> None:
        """The user's own message is stored as (thread_id, seq)."""
        thread = self._thread(ack.thread_id, to_uid)
        thread.last_seq = max(thread.last_seq, ack.seq)
        thread.read_seq = max(thread.read_seq, ack.seq)
        if to_uid and to_uid in self.friends and not self.friends[to_uid].thread_id:
            self.friends[to_uid].thread_id = ack.thread_id

    def apply_read(self, thread_id: int, seq: int) -> None:
        """The user's MARK_READ succeeded (the server clamps the mark to last_seq)."""
        thread = self.threads.get(thread_id)
        if thread is not None:
            thread.read_seq = max(thread.read_seq, min(seq, thread.last_seq) if thread.last_seq else seq)

    # ------------------------------------------------------------ friends

    def apply_request_sent(self, friend_request_id: int, to_uid: int, greeting: str,
                           my_username: str = "") -> None:
        self.outgoing_requests.setdefault(friend_request_id, FriendRequestInfo(
            friend_request_id=friend_request_id, from_uid=self.uid, from_username=my_username, to_uid=to_uid,
            to_username="", greeting=greeting, created_at_ms=0))

    def apply_resolved(self, resolved: FriendRequestResolved, remark: str = "") -> None:
        """The user answered a friend request."""
        request = self.friend_requests.pop(resolved.friend_request_id, None)
        if not resolved.accepted:
            return
        username = request.from_username if request is not None else ""
        known = self.friends.get(resolved.peer_uid)
        self.friends[resolved.peer_uid] = Friend(resolved.peer_uid, username or (known.username if known else ""),
                                                 remark, known.online if known else False, resolved.thread_id)
        self._thread(resolved.thread_id, resolved.peer_uid, username)

    def apply_removed(self, uid: int) -> None:
        """The friendship with `uid` ended; the thread and its history stay."""
        self.friends.pop(uid, None)

    def apply_push(self, push: Message) -> None:
        """Fold in a push (MESSAGE_PUSH goes through `apply_message` once delivered)."""
        if self._journal is not None:
            self._journal.append(push)
        if isinstance(push, PresencePush):
            friend = self.friends.get(push.uid)
            if friend is not None:
                friend.online = push.online
        elif isinstance(push, FriendRequestPush):
            self.friend_requests[push.request.friend_request_id] = push.request
        elif isinstance(push, FriendResponsePush):
            self.outgoing_requests.pop(push.friend_request_id, None)
            if push.accepted:
                known = self.friends.get(push.peer_uid)
                # They just answered, so they are logged in; PRESENCE_PUSH corrects it later.
                self.friends[push.peer_uid] = Friend(push.peer_uid, push.peer_username,
                                                     known.remark if known else "", True, push.thread_id)
                self._thread(push.thread_id, push.peer_uid, push.peer_username)
        elif isinstance(push, FriendRemovedPush):
            self.apply_removed(push.uid)
        elif isinstance(push, ReadMarkPush):
            thread = self._thread(push.thread_id)
            if push.uid == self.uid:
                thread.read_seq = max(thread.read_seq, push.read_seq)
                thread.last_seq = max(thread.last_seq, push.read_seq)
            else:  # in a group: the furthest any other member has read
                thread.peer_read_seq = max(thread.peer_read_seq, push.read_seq)
        elif isinstance(push, GroupChangedPush) and (
                push.thread_id in self.threads or (push.change is GroupChange.ADDED and push.subject_uid == self.uid)):
            thread = self._thread(push.thread_id)
            thread.kind = ThreadKind.GROUP
            thread.peer_uid = 0
            if push.name:
                thread.title = push.name


@dataclass
class _Track:
    mark: int = 0  # every seq up to here has been handed out (or was the client's own)
    pending: dict[int, ChatMessage] = field(default_factory=dict)  # received beyond a gap
    seen: set[int] = field(default_factory=set)  # beyond the mark, accounted for without delivery


class MessageSequencer:
    """Hands out each thread's messages once, densely and in seq order.

    Until `prime` is called (after the first SYNC of a session, which says
    where each thread starts) everything is held back, so that the first
    login does not replay the whole history as new messages.
    """

    def __init__(self) -> None:
        self.primed = False
        self._tracks: dict[int, _Track] = {}

    def reset(self) -> None:
        self.primed = False
        self._tracks.clear()

    def _track(self, thread_id: int) -> _Track:
        track = self._tracks.get(thread_id)
        if track is None:
            track = self._tracks[thread_id] = _Track()
        return track

    def mark(self, thread_id: int) -> int:
        """The highest seq of `thread_id` up to which the app has everything."""
        track = self._tracks.get(thread_id)
        return track.mark if track is not None else 0

    def has_gap(self, thread_id: int) -> bool:
        """Messages are waiting for a missing seq (fetch HISTORY AFTER the mark)."""
        track = self._tracks.get(thread_id)
        return self.primed and track is not None and bool(track.pending)

    def gaps(self) -> list[int]:
        return [thread_id for thread_id in self._tracks if self.has_gap(thread_id)]

    def offer(self, message: ChatMessage) -> list[ChatMessage]:
        """A message arrived (push or page); returns what may be handed out now, in order."""
        track = self._track(message.thread_id)
        seq = message.seq
        if seq <= track.mark or seq in track.seen or seq in track.pending:
            return []  # a duplicate
        track.pending[seq] = message
        return self._advance(track)

    def skip(self, thread_id: int, seq: int) -> list[ChatMessage]:
        """The client's own message (acked): counts as seen, is not handed out."""
        track = self._track(thread_id)
        if seq > track.mark:
            track.pending.pop(seq, None)
            track.seen.add(seq)
        return self._advance(track)

    def prime(self, marks: Mapping[int, int]) -> list[ChatMessage]:
        """Start each thread after `marks[thread_id]`; returns what may be handed out.

        Messages held back since login were pushed live, so they are handed out
        even when the mark is past them: a thread starts at
        min(mark, lowest held seq - 1).
        """
        for thread_id, start in marks.items():
            track = self._track(thread_id)
            if track.pending:
                start = min(start, min(track.pending) - 1)
            track.mark = max(track.mark, start)
            track.pending = {s: m for s, m in track.pending.items() if s > track.mark}
            track.seen = {s for s in track.seen if s > track.mark}
        self.primed = True
        out: list[ChatMessage] = []
        for track in self._tracks.values():
            out.extend(self._advance(track))
        return out

    def _advance(self, track: _Track) -> list[ChatMessage]:
        if not self.primed:
            return []
        out = []
        while True:
            following = track.mark + 1
            if following in track.pending:
                out.append(track.pending.pop(following))
            elif following in track.seen:
                track.seen.remove(following)
            else:
                return out
            track.mark = following
