"""Tab completion: command names, then each parameter from what the client knows.

The completer reads an immutable `CompletionData` snapshot that the app
rebuilds whenever the local view changes (a push, a sync, a command), so
completing never waits for the server and never sees a half-updated view.
Local paths (`/send-file`, `/download`) are completed from the file system.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from tinychat.client.repl.commands import Complete, Param, command_names, lookup
from tinychat.client.repl.render import ROLE_TEXT, quoted, short_id, size_text
from tinychat.client.view import LocalView
from tinychat.protocol import Attachment, Role, ThreadKind


@dataclass(frozen=True)
class Candidate:
    text: str
    meta: str = ""


@dataclass(frozen=True)
class CompletionData:
    """What can be completed right now."""

    friends: tuple[Candidate, ...] = ()  # friends' names, then their uids
    users: tuple[Candidate, ...] = ()  # friends and every other user seen (search, requests)
    requests: tuple[Candidate, ...] = ()  # pending incoming friend request ids
    groups: tuple[Candidate, ...] = ()  # the user's groups, by name
    chats: tuple[Candidate, ...] = ()  # friends' names, groups, friends' uids
    members: tuple[Candidate, ...] = ()  # the other members of the open group chat
    files: tuple[Candidate, ...] = ()  # short ids of the files shown, newest first

    @classmethod
    def from_view(cls, view: LocalView, names: Mapping[int, str], *, roster: Mapping[int, Role] | None = None,
                  files: Sequence[Attachment] = ()) -> CompletionData:
        """Build from the client's view plus other users the REPL has seen by name.

        `roster` is the open group chat's members with their roles; `files` the
        attachments shown so far, oldest first.
        """
        friend_names, friend_uids = [], []
        for friend in sorted(view.friends.values(), key=lambda f: f.username.casefold()):
            thread = view.thread_with(friend.uid)
            unread = thread.unread if thread is not None else 0
            meta = ("online" if friend.online else "offline") + (f" · {unread} unread" if unread else "")
            friend_names.append(Candidate(friend.username, meta))
            friend_uids.append(Candidate(str(friend.uid), friend.username))
        known = dict(names)
        known.update({r.from_uid: r.from_username for r in view.friend_requests.values()})
        others = [Candidate(name, f"uid {uid}") for uid, name in sorted(known.items(), key=lambda kv: kv[1].casefold())
                  if uid not in view.friends and uid != view.uid and name]
        requests = [Candidate(str(r.friend_request_id), f"from {r.from_username}")
                    for r in sorted(view.friend_requests.values(), key=lambda r: r.friend_request_id)]
        groups = [Candidate(t.title, "group" + (f" · {t.unread} unread" if t.unread else ""))
                  for t in sorted(view.threads.values(), key=lambda t: t.title.casefold())
                  if t.kind is ThreadKind.GROUP and t.title]
        members = [Candidate(known.get(uid) or (view.friends[uid].username if uid in view.friends else str(uid)),
                             ROLE_TEXT.get(role, ""))
                   for uid, role in (roster or {}).items() if uid != view.uid]
        members.sort(key=lambda c: c.text.casefold())
        shown = [Candidate(short_id(a.blob_id), f"{a.name or 'file'}, {size_text(a.size)}")
                 for a in reversed(files) if a.blob_id]
        return cls(tuple(friend_names + friend_uids), tuple(friend_names + others + friend_uids), tuple(requests),
                   tuple(groups), tuple(friend_names + groups + friend_uids), tuple(members), tuple(shown))


def lex(text: str) -> tuple[list[tuple[str, str]], bool]:
    """The words of an argument line as (value, as typed), and whether the last one is still being typed.

    Tolerant where `commands.parse` is strict: an unclosed quote is a word in progress.
    """
    words: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            return words, False
        start = i
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                words.append((text[i + 1:], text[i:]))
                return words, True
            value, i = text[i + 1:end], end + 1
        else:
            end = text.find(" ", i)
            i = n if end < 0 else end
            value = text[start:i]
        words.append((value, text[start:i]))
        if i >= n:
            return words, True


def _matching(candidates: Iterable[Candidate], value: str, typed: str,
              exclude: frozenset[str] = frozenset()) -> Iterator[Completion]:
    prefix = value.casefold()
    for c in candidates:
        if c.text.casefold().startswith(prefix) and c.text.casefold() not in exclude:
            yield Completion(quoted(c.text) if " " in c.text else c.text, start_position=-len(typed),
                             display=c.text, display_meta=c.meta)


class ChatCompleter(Completer):
    """Completes `/command` names and their arguments; chat text is left alone."""

    def __init__(self, data: CompletionData | None = None) -> None:
        self.data = data or CompletionData()
        self._paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or text.startswith("//"):
            return
        if " " not in text:
            for name in command_names():
                if name.startswith(text[1:].lower()):
                    command = lookup(name)
                    yield Completion("/" + name, start_position=-len(text),
                                     display_meta=command.summary if command else "")
            return
        name, _, rest = text[1:].partition(" ")
        command = lookup(name)
        if command is None:
            return
        words, typing = lex(rest)
        index = len(words) - 1 if typing else len(words)
        value, typed = words[index] if typing else ("", "")
        params = command.params
        if not params or any(p.rest for p in params[:index]):
            return
        if index >= len(params):
            if not params[-1].many:
                return
            param, position = params[-1], index - len(params) + 1
        else:
            param, position = params[index], 0
        kind = param.lead if param.many and position == 0 and param.lead is not None else param.complete
        earlier = frozenset(w.casefold() for w, _ in words[len(params) - 1:index]) if param.many else frozenset()
        yield from self._complete(kind, param, value, typed, earlier, complete_event)

    def _complete(self, kind: Complete, param: Param, value: str, typed: str, earlier: frozenset[str],
                  event: CompleteEvent) -> Iterator[Completion]:
        data = self.data
        if kind is Complete.COMMAND:
            yield from _matching((Candidate(n) for n in command_names()), value, typed)
        elif kind is Complete.FRIEND:
            yield from _matching(data.friends, value, typed, earlier)
        elif kind is Complete.USER:
            yield from _matching(data.users, value, typed)
        elif kind is Complete.REQUEST:
            yield from _matching(data.requests, value, typed)
        elif kind is Complete.CHOICE:
            yield from _matching((Candidate(c) for c in param.choices), value, typed)
        elif kind is Complete.CHAT:
            yield from _matching(data.chats, value, typed)
        elif kind is Complete.GROUP:
            yield from _matching(data.groups, value, typed)
        elif kind is Complete.GROUP_OR_FRIEND:
            yield from _matching([*data.groups, *data.friends], value, typed)
        elif kind is Complete.MEMBER:
            yield from _matching(data.members, value, typed)
        elif kind is Complete.FILE:
            yield from _matching(data.files, value, typed)
        elif kind is Complete.PATH:
            yield from self._complete_path(value, typed, event)

    def _complete_path(self, value: str, typed: str, event: CompleteEvent) -> Iterator[Completion]:
        if typed.startswith('"') and typed.endswith('"') and len(typed) > 1:
            return  # a closed quote: the path is finished
        for c in self._paths.get_completions(Document(value), event):
            path = value[:len(value) + c.start_position] + c.text
            if typed.startswith('"') or " " in path:
                closed = os.path.isfile(os.path.expanduser(path))
                text = f'"{path}"' if closed else f'"{path}'
            else:
                text = path
            yield Completion(text, start_position=-len(typed), display=c.display, display_meta=c.display_meta)
