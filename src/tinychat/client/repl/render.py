"""How the REPL looks: messages, events, errors and the toolbar as formatted text.

Everything here is a pure function from data to prompt_toolkit `FormattedText`
(or a plain sentence), so the look can be tested without a terminal and the
session loop never builds strings itself.  Style classes are resolved by
`STYLE`; a plain-text copy of any result is `to_plain(...)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from prompt_toolkit.formatted_text import FormattedText, StyleAndTextTuples, fragment_list_to_text
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth
from twisted.internet import error as net

from tinychat.client import errors
from tinychat.client.client import ConnectionState
from tinychat.protocol import (
    MAX_TEXT_CHARS,
    ChatMessage,
    FriendRequestInfo,
    GroupChange,
    KickedPush,
    KickReason,
    MessageKind,
    Role,
    WireError,
)

SHORT_ID = 8  # hex digits of a file's id shown in chats; /download takes any unambiguous prefix

STYLE = Style.from_dict({
    "time": "#8a8a8a",
    "mine": "ansigreen",
    "theirs": "",
    "theirs.name": "ansicyan bold",
    "elsewhere.name": "ansiyellow bold",
    "elsewhere": "ansiyellow",
    "event": "ansimagenta",
    "notice": "ansiblue",
    "ok": "ansigreen",
    "warning": "ansiyellow",
    "error": "ansired bold",
    "dim": "#8a8a8a",
    "heading": "bold",
    "command": "bold",
    "bottom-toolbar": "noreverse bg:#262626 #d0d0d0",
    "bottom-toolbar.good": "bg:#262626 ansigreen bold",
    "bottom-toolbar.busy": "bg:#262626 ansiyellow bold",
    "bottom-toolbar.bad": "bg:#262626 ansired bold",
    "bottom-toolbar.unread": "bg:#262626 ansiyellow bold",
    "bottom-toolbar.key": "bg:#262626 #8a8a8a",
})


def to_plain(text: StyleAndTextTuples) -> str:
    """The text of formatted text without its styles (for transcripts and tests)."""
    return fragment_list_to_text(text)


# ------------------------------------------------------------------ time


def clock(ms: int, now: datetime | None = None) -> str:
    """Local time of a server timestamp: HH:MM today, with the date before that."""
    when = datetime.fromtimestamp(ms / 1000)
    now = now or datetime.now()
    return when.strftime("%H:%M") if when.date() == now.date() else when.strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------ messages


def message(msg: ChatMessage, *, sender: str, mine: bool, width: int, here: bool = True, chat: str = "",
            group: bool = False, now: datetime | None = None) -> FormattedText:
    """One chat message, bubble-like: mine right-aligned in green, theirs left with the name.

    `here` says whether the message belongs to the chat on screen; one from
    another chat is shown in another colour with who it is from (or, for my
    own from another device, whom it went to), and for a `group` in which
    group (`carol in weekend: ...`).
    """
    if group and not here and not mine:
        sender = f"{sender} in {chat}"
    when = clock(msg.sent_at_ms, now)
    lines = message_text(msg).splitlines() or [""]
    out: StyleAndTextTuples = []
    if mine:
        prefix = "" if here else f"→ {chat}: "
        for i, line in enumerate(lines):
            body = (prefix if i == 0 else "") + line
            suffix = f"  {when}" if i == len(lines) - 1 else ""
            pad = width - 1 - get_cwidth(body) - get_cwidth(suffix)
            # Right-align when it fits in the right two thirds; long text stays left.
            indent = " " * pad if pad > 0 and get_cwidth(body) <= width * 2 // 3 else "  "
            out += [("", indent), ("class:mine", body), ("class:time", suffix), ("", "\n")]
    else:
        name_style, text_style = ("class:theirs.name", "class:theirs") if here else (
            "class:elsewhere.name", "class:elsewhere")
        out += [("class:time", when + " "), (name_style, sender), ("", ": ")]
        hang = " " * (get_cwidth(when) + 1 + get_cwidth(sender) + 2)
        for i, line in enumerate(lines):
            out += [("", hang if i else ""), (text_style, line), ("", "\n")]
    out.pop()  # the last newline: the console ends the block
    return FormattedText(out)


def size_text(size: int) -> str:
    """1.5 MB, 12 KB, 300 B: a file size the way people read it."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


def short_id(blob_id: str) -> str:
    """The beginning of a file's id that chats show and /download takes."""
    return blob_id[:SHORT_ID]


def message_text(msg: ChatMessage) -> str:
    """The text of a message; an image or file is shown by name, size and id, before its caption."""
    kind = getattr(msg, "kind", MessageKind.TEXT)
    if kind == MessageKind.TEXT:
        return msg.text
    att = msg.attachment
    label = "image" if kind == MessageKind.IMAGE else "file"
    caption = f" {msg.text}" if msg.text else ""
    fetch = f" · /download {short_id(att.blob_id)}" if att.blob_id else ""
    return f"[{label} {att.name or short_id(att.blob_id)}, {size_text(att.size)}{fetch}]{caption}"


def chat_heading(name: str, online: bool | None, total: int, members: int | None = None) -> FormattedText:
    """`── Chat with bob · online · 3 messages ──`, or for a group `── Group weekend · 4 members · ... ──`."""
    count = f" · {total} message{'s' if total != 1 else ''}" if total else " · no messages yet"
    if members is not None:
        return FormattedText([("class:heading", f"── Group {name}"),
                              ("class:dim", f" · {plural(members, 'member')}{count} ──")])
    presence = "" if online is None else (" · online" if online else " · offline")
    return FormattedText([("class:heading", f"── Chat with {name}"), ("class:dim", f"{presence}{count} ──")])


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def names_list(names: list[str]) -> str:
    """`bob`, `bob and carol`, `bob, carol and dave`."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def capitalized(text: str) -> str:
    """A sentence starting with "you" gets its capital; one starting with a username keeps it as it is."""
    return "Y" + text[1:] if text.startswith("you") else text


# ------------------------------------------------------------------ events


def event(text: str, ms: int | None = None, now: datetime | None = None) -> FormattedText:
    """A friend or session event, marked with a star."""
    stamp = clock(ms, now) + " " if ms else ""
    return FormattedText([("class:time", stamp), ("class:event", f"★ {text}")])


def friend_request(req: FriendRequestInfo, now: datetime | None = None) -> FormattedText:
    greeting = f': "{req.greeting}"' if req.greeting else ""
    rid = req.friend_request_id
    return event(f"Friend request #{rid} from {req.from_username}{greeting} — /accept {rid} or /reject {rid}",
                 req.created_at_ms or None, now)


def friend_response(name: str, accepted: bool) -> FormattedText:
    if accepted:
        return event(f"{name} accepted your friend request — /chat {name} to say hello")
    return event(f"{name} declined your friend request")


def friend_removed(name: str) -> FormattedText:
    return event(f"You and {name} are no longer friends")


def presence(name: str, online: bool) -> FormattedText:
    if online:
        return FormattedText([("class:ok", "● "), ("class:dim", f"{name} is online")])
    return FormattedText([("class:dim", f"○ {name} went offline")])


ROLE_TEXT = {Role.OWNER: "owner", Role.ADMIN: "admin", Role.MEMBER: "member"}


def group_change(change: GroupChange, *, actor: str, subject: str, group: str, role: Role = Role.MEMBER,
                 new_name: str = "", me_actor: bool = False, me_subject: bool = False) -> str | None:
    """A GROUP_CHANGED push as a sentence: `bob added carol to weekend`, `You were removed from weekend by bob`.

    `actor` and `subject` are names; `me_*` say which of them is the user
    (then written "you").  None for a change that needs no line of its own.
    """
    who = "you" if me_actor else actor
    whom = "you" if me_subject else subject
    if change is GroupChange.ADDED:
        if me_subject:
            text = f"{who} added you to {group} — /chat {quoted(group)} to join in"
        else:
            text = f"{who} added {whom} to {group}"
    elif change is GroupChange.REMOVED:
        text = f"you were removed from {group} by {who}" if me_subject else f"{who} removed {whom} from {group}"
    elif change is GroupChange.LEFT:
        text = f"{whom} left {group}"
    elif change is GroupChange.RENAMED:
        text = f"{who} renamed {group} to {new_name}"
    elif change is GroupChange.ROLE_CHANGED:
        if me_actor == me_subject and actor == subject:
            return None  # the old owner becoming an admin: the handover's own line says so
        if role is Role.OWNER:
            text = f"{who} handed {group} over to {whom}" + ("" if me_actor else f" ({who} is an admin now)")
            if me_subject:
                text = f"{who} handed {group} over to you: you own it now"
        elif role is Role.ADMIN:
            text = f"{who} made {whom} an admin of {group}"
        else:
            text = f"{who} made {whom} a plain member of {group}"
    elif change is GroupChange.DISSOLVED:
        text = f"{group} was dissolved by {who}"
    else:
        return None
    return capitalized(text)


def quoted(name: str) -> str:
    """An argument as it is typed: in quotes when it has spaces (or is empty)."""
    return f'"{name}"' if not name or " " in name else name


KICK_TEXT = {
    KickReason.NEW_LOGIN: "You logged in from somewhere else, so this session ended. /login to take it back.",
    KickReason.PASSWORD_RESET: "Your password was reset, so this session ended. /login with the new password.",
    KickReason.SERVER_SHUTDOWN: "The server is shutting down; reconnecting to the service…",
    KickReason.LOGGED_OUT: "You were logged out.",
}


def kicked(push: KickedPush) -> FormattedText:
    return FormattedText([("class:warning", KICK_TEXT.get(push.reason, f"Your session ended: {push.message}"))])


def command_echo(prompt: str, line: str) -> FormattedText:
    """A command as typed, kept on screen above its output (the prompt itself is erased)."""
    return FormattedText([("class:dim", prompt), ("class:command", line.strip())])


def notice(text: str) -> FormattedText:
    return FormattedText([("class:notice", text)])


def ok(text: str) -> FormattedText:
    return FormattedText([("class:ok", text)])


def warning(text: str) -> FormattedText:
    return FormattedText([("class:warning", text)])


def error(text: str) -> FormattedText:
    return FormattedText([("class:error", text)])


def dim(text: str) -> FormattedText:
    return FormattedText([("class:dim", text)])


# ------------------------------------------------------------------ errors

ERROR_TEXT: dict[type[errors.ServerError], str] = {
    errors.AuthFailedError: "Wrong username or password.",
    errors.TotpRequiredError: "This account has two-factor login: the authenticator code is needed.",
    errors.TotpInvalidError: "That authenticator code is not right; use the current code from your app.",
    errors.TokenInvalidError: "The saved session has expired; log in again with /login.",
    errors.CodeInvalidError: "That code is wrong, expired or already used; start over to get a new one.",
    errors.UsernameTakenError: "That username is taken; pick another one.",
    errors.EmailTakenError: "An account with that e-mail address exists already (/reset if the password is lost).",
    errors.InvalidUsernameError: "A username has 3 to 32 letters, digits or underscores.",
    errors.InvalidEmailError: "That is not an e-mail address the server accepts.",
    errors.WeakPasswordError: "That password is too weak: use at least 8 characters.",
    errors.TotpStateError: "Two-factor login is not in the state this needs (already on, or not on).",
    errors.UserNotFoundError: "There is no such user.",
    errors.AlreadyFriendsError: "You are friends already.",
    errors.CannotFriendSelfError: "You cannot send a friend request to yourself.",
    errors.FriendRequestNotFoundError: "There is no pending friend request with that id for you (see /requests).",
    errors.NotFriendsError: "You are not friends, so you cannot do that (use /add first).",
    errors.ThreadNotFoundError: "That conversation does not exist, or you are not in it.",
    errors.NotLoggedInError: "You are not logged in: /login first (or /register).",
    errors.AlreadyLoggedInError: "You are logged in already; /logout first.",
    errors.InternalServerError: "The server failed to do that; please try again.",
    errors.ServiceUnavailableError: "The service is briefly unavailable and nothing was stored; try again soon.",
    errors.NotImplementedByServerError: "This server does not offer that.",
    errors.IdleTimeoutError: "The server closed the connection after a long silence.",
    errors.LimitExceededError: "The server closed the connection: too many connections or requests from here; "
                               "wait a little before reconnecting.",
    errors.UnsupportedVersionError: "The server speaks another protocol version; update TinyChat.",
    errors.PermissionDeniedError: "Your role in that group does not allow it (the owner or an admin can).",
    errors.GroupFullError: "That would make the group bigger than the server allows.",
    errors.BlobNotFoundError: "There is no such file, or you may not download it.",
    errors.HashMismatchError: "The file arrived damaged or changed while it was sent; nothing was kept. Try again.",
    errors.OffsetMismatchError: "The upload got out of step with the server; send the file again to resume it.",
    errors.TooLargeError: "That file is larger than the server accepts.",
}


def describe_error(exc: BaseException) -> str:
    """A clear sentence for anything a command can fail with (never a traceback)."""
    if isinstance(exc, errors.RateLimitedError):
        wait = max(1, math.ceil(exc.retry_after))
        return f"Too many attempts; try again in {wait} s." if exc.retry_after_ms else \
            "Too many attempts; wait a little and try again."
    if isinstance(exc, errors.InvalidArgumentError):
        return f"The server refused a value: {exc.message.rstrip('.')}."
    if isinstance(exc, errors.ServerError):
        return ERROR_TEXT.get(type(exc), f"The server refused: {exc.message.rstrip('.')}.")
    if isinstance(exc, errors.ConnectionClosedError):
        return "The connection to the server is down; try again once it is back."
    if isinstance(exc, errors.RequestTimeoutError):
        return "The server did not answer in time; try again."
    if isinstance(exc, errors.ProtocolViolationError):
        return f"The server answered something unexpected ({exc})."
    if isinstance(exc, net.ConnectionRefusedError):
        return "Cannot reach the server: the connection was refused (is the server running?)."
    if isinstance(exc, net.DNSLookupError):
        return "Cannot reach the server: its host name does not resolve."
    if isinstance(exc, net.TimeoutError):
        return "Cannot reach the server: connecting timed out."
    if isinstance(exc, net.ConnectError):
        return f"Cannot reach the server ({str(exc).rstrip('.')})."
    if isinstance(exc, WireError):
        return f"That cannot be sent: {exc}."
    return f"Something went wrong: {type(exc).__name__}: {exc}"


def too_long(text: str) -> str | None:
    """Why a message cannot be sent as it is, checked before bothering the server."""
    if len(text) > MAX_TEXT_CHARS:
        return f"That message has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}."
    return None


# ------------------------------------------------------------------ progress

BAR_CELLS = 24


def progress(label: str, done: int, total: int, width: int = 80) -> FormattedText:
    """`notes.bin [██████░░░░░░] 45%  130 KB of 293 KB`, cut to fit on one line of `width`."""
    fraction = min(1.0, done / total) if total else 1.0
    filled = int(fraction * BAR_CELLS)
    tail = f" {int(fraction * 100):3d}%  {size_text(done)} of {size_text(total)}"
    room = max(8, width - 1 - BAR_CELLS - 3 - len(tail))
    name = label if get_cwidth(label) <= room else label[:room - 1] + "…"
    return FormattedText([("", f"{name} "), ("class:dim", "["), ("class:ok", "█" * filled),
                          ("class:dim", "░" * (BAR_CELLS - filled) + "]"), ("", tail)])


# ------------------------------------------------------------------ toolbar


@dataclass(frozen=True)
class Status:
    """What the bottom toolbar shows; the app fills it in from the client."""

    state: ConnectionState
    username: str = ""
    chat: str = ""
    unread: int = 0
    requests: int = 0
    server: str = ""


STATE_TEXT = {
    ConnectionState.DISCONNECTED: ("bad", "● disconnected"),
    ConnectionState.CONNECTING: ("busy", "● connecting…"),
    ConnectionState.CONNECTED: ("busy", "● connected, not logged in"),
    ConnectionState.LOGGED_IN: ("good", "● online"),
    ConnectionState.RECONNECTING: ("busy", "● reconnecting…"),
}


def toolbar(status: Status) -> FormattedText:
    """` ● online │ alice │ chat: bob │ 3 unread │ 1 request │ Ctrl-N next unread · F1 help`."""
    kind, text = STATE_TEXT[status.state]
    out: StyleAndTextTuples = [(f"class:bottom-toolbar.{kind}", f" {text}")]
    sep = ("class:bottom-toolbar", " │ ")
    if status.username:
        out += [sep, ("class:bottom-toolbar", status.username)]
    if status.chat:
        out += [sep, ("class:bottom-toolbar", f"chat: {status.chat}")]
    if status.state is ConnectionState.LOGGED_IN:
        style = "class:bottom-toolbar.unread" if status.unread else "class:bottom-toolbar"
        out += [sep, (style, f"{status.unread} unread")]
        if status.requests:
            out += [sep, ("class:bottom-toolbar.unread",
                          f"{status.requests} friend request{'s' if status.requests != 1 else ''}")]
    elif status.server:
        out += [sep, ("class:bottom-toolbar", status.server)]
    out += [sep, ("class:bottom-toolbar.key", "F1 help · Ctrl-N next unread ")]
    return FormattedText(out)
