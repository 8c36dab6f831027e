"""The command table and the parsing of input lines.

Each command is declared once, with its parameters, a one-line summary, what
it needs (a connection, a login...) and its handler; `/help`, completion and
the usage errors are all derived from this table.  A line that does not start
with a slash is chat text (a leading `//` sends a literal slash).

Arguments are separated by spaces; one with spaces in it (a group name, a
path) is written in double quotes: `/group create "book club" bob`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from prompt_toolkit.formatted_text import FormattedText

from tinychat.client.repl import accounts, chats, files, friends, groups
from tinychat.client.repl.failures import Quit, UsageError
from tinychat.client.repl.render import dim

if TYPE_CHECKING:
    from tinychat.client.repl.app import ReplApp


class Need(Enum):
    """What must hold before a command runs; the app checks it and explains."""

    NOTHING = "nothing"
    CONNECTION = "a connection"  # connected, logged in or not
    LOGGED_OUT = "a connection without login"
    LOGIN = "a login"


class Complete(Enum):
    """What the completer offers for a parameter."""

    NONE = "none"
    COMMAND = "command"
    FRIEND = "friend"  # friends' names and uids
    USER = "user"  # friends, search results, requesters
    REQUEST = "request"  # ids of pending incoming friend requests
    CHOICE = "choice"  # the parameter's fixed choices
    CHAT = "chat"  # friends and groups
    GROUP = "group"  # the user's groups
    GROUP_OR_FRIEND = "group or friend"  # groups first, then friends
    MEMBER = "member"  # the other members of the open group chat
    FILE = "file"  # ids of the files shown so far
    PATH = "path"  # local files and folders


@dataclass(frozen=True)
class Param:
    name: str
    complete: Complete = Complete.NONE
    optional: bool = False
    rest: bool = False  # takes the rest of the line, spaces included
    choices: tuple[str, ...] = ()
    many: bool = False  # takes every remaining word (the last parameter); `Invocation.words` has them
    lead: Complete | None = None  # how the first word of a `many` parameter completes, if not like the others
    shown: str = ""  # how /help writes it, when not derived from the name

    def usage(self) -> str:
        if self.shown:
            return self.shown
        text = "|".join(self.choices) if self.choices else self.name + ("..." if self.many else "")
        return f"[{text}]" if self.optional else text


Handler = Callable[["ReplApp", "Invocation"], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    handler: Handler
    needs: Need = Need.LOGIN
    params: tuple[Param, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        return " ".join([f"/{self.name}", *(p.usage() for p in self.params)])


@dataclass(frozen=True)
class Invocation:
    """A parsed command line: the command and its arguments by parameter name."""

    command: Command
    args: dict[str, str] = field(default_factory=dict)
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)  # the words of `many` parameters

    def __getitem__(self, name: str) -> str:
        return self.args.get(name, "")

    def words(self, name: str) -> tuple[str, ...]:
        return self.lists.get(name, ())


@dataclass(frozen=True)
class ChatText:
    """A line to send to the open chat."""

    text: str


# ------------------------------------------------------------------ built-in handlers


async def show_help(app: ReplApp, inv: Invocation) -> None:
    """List every command with its summary, or explain one."""
    name = inv["command"].lstrip("/")
    if name:
        command = lookup(name)
        if command is None:
            raise UsageError(f"There is no command /{name}; /help lists them.")
        aliases = f" (also /{', /'.join(command.aliases)})" if command.aliases else ""
        app.console.show(FormattedText([("class:heading", command.usage), ("", f"{aliases}\n  {command.summary}")]))
        return
    width = max(len(c.usage) for c in COMMANDS)
    lines = [FormattedText([("class:heading", c.usage.ljust(width)), ("", f"  {c.summary}")]) for c in COMMANDS]
    app.console.show(*lines, dim(
        "In a chat, lines without a slash are sent to your friend or group (start with // to send a slash).\n"
        'Quote an argument with spaces in it: /chat "book club".\n'
        "Keys: Tab completes, Up/Down browse input history, Ctrl-N or F2 opens the next chat with unread "
        "messages, F1 shows this help, Ctrl-C clears the line, Ctrl-D quits."))


async def quit_session(app: ReplApp, inv: Invocation) -> None:
    raise Quit


COMMANDS: tuple[Command, ...] = (
    Command("help", "Show the commands, or how to use one.", show_help, Need.NOTHING,
            (Param("command", Complete.COMMAND, optional=True),)),
    Command("register", "Create an account: asks username, e-mail and password, then the mailed code.",
            accounts.register, Need.LOGGED_OUT),
    Command("login", "Log in by username, e-mail or uid (asks for the password).", accounts.login,
            Need.LOGGED_OUT, (Param("name", Complete.USER, optional=True),)),
    Command("logout", "End the session (the connection stays open).", accounts.logout),
    Command("reset", "Set a new password with a code mailed to your address.", accounts.reset, Need.LOGGED_OUT),
    Command("2fa", "Two-factor login: 'on' shows a secret for your authenticator app, 'off' removes it.",
            accounts.two_factor, Need.LOGIN, (Param("switch", Complete.CHOICE, optional=True, choices=("on", "off")),)),
    Command("whoami", "Who you are logged in as, and where you are connected.", accounts.whoami, Need.NOTHING),
    Command("search", "Find users by the start of their name, or by uid.", friends.search, Need.LOGIN,
            (Param("TEXT", rest=True),)),
    Command("add", "Ask USER (a name or uid) to be your friend, with an optional greeting.", friends.add,
            Need.LOGIN, (Param("USER", Complete.USER), Param("greeting", optional=True, rest=True))),
    Command("requests", "Pending friend requests, to you and from you.", friends.requests),
    Command("accept", "Accept friend request ID; the remark is a private note about them.", friends.accept,
            Need.LOGIN, (Param("ID", Complete.REQUEST), Param("remark", optional=True, rest=True))),
    Command("reject", "Decline friend request ID.", friends.reject, Need.LOGIN, (Param("ID", Complete.REQUEST),)),
    Command("friends", "Your friends: who is online, and unread messages from each.", friends.list_friends),
    Command("unfriend", "End the friendship with USER (the history stays readable).", friends.unfriend,
            Need.LOGIN, (Param("USER", Complete.FRIEND),)),
    Command("chat", "Talk to a friend or a group; without a name, leave the chat.", chats.chat,
            Need.LOGIN, (Param("NAME", Complete.CHAT, optional=True, shown="[FRIEND|GROUP]"),)),
    Command("history", "Show the latest page of this chat again, or older pages with 'more'.", chats.history,
            Need.LOGIN, (Param("more", Complete.CHOICE, optional=True, choices=("more",)),)),
    Command("unread", "Chats with unread messages.", chats.unread),
    Command("next", "Open the next chat with unread messages (Ctrl-N, F2).", chats.next_unread),
    Command("group", "Create a group with some of your friends (you own it) and open its chat.", groups.create,
            Need.LOGIN, (Param("create", Complete.CHOICE, choices=("create",)), Param("NAME"),
                         Param("FRIEND", Complete.FRIEND, optional=True, many=True))),
    Command("groups", "Your groups, with their members and unread messages.", groups.list_groups),
    Command("invite", "Add friends to the open group chat (or to GROUP).", groups.invite, Need.LOGIN,
            (Param("FRIEND", Complete.FRIEND, many=True, lead=Complete.GROUP_OR_FRIEND, shown="[GROUP] FRIEND..."),)),
    Command("kick", "Remove MEMBER from the open group chat.", groups.kick, Need.LOGIN,
            (Param("MEMBER", Complete.MEMBER),)),
    Command("members", "Who is in the open group chat (or GROUP), with roles and who is online.", groups.members,
            Need.LOGIN, (Param("GROUP", Complete.GROUP, optional=True),)),
    Command("leave", "Leave the open group chat (or GROUP).", groups.leave, Need.LOGIN,
            (Param("GROUP", Complete.GROUP, optional=True),)),
    Command("rename", "Owner: give the open group chat a new name.", groups.rename, Need.LOGIN,
            (Param("NAME", rest=True),)),
    Command("admin", "Owner: make MEMBER an admin of the group ('off': a plain member again).", groups.admin,
            Need.LOGIN, (Param("MEMBER", Complete.MEMBER), Param("off", Complete.CHOICE, optional=True,
                                                                choices=("off",)))),
    Command("owner", "Owner: hand the open group over to MEMBER (you stay an admin).", groups.owner, Need.LOGIN,
            (Param("MEMBER", Complete.MEMBER),)),
    Command("dissolve", "Owner: end the open group chat (or GROUP) for everyone.", groups.dissolve, Need.LOGIN,
            (Param("GROUP", Complete.GROUP, optional=True),)),
    Command("send-file", "Send a file (images as images) to the open chat, with a progress bar; resumes.",
            files.send_file, Need.LOGIN, (Param("PATH", Complete.PATH), Param("caption", optional=True, rest=True))),
    Command("download", "Save a file shown in a chat (by its id) to PATH, or under its name here.",
            files.download, Need.LOGIN, (Param("ID", Complete.FILE), Param("PATH", Complete.PATH, optional=True))),
    Command("quit", "Leave TinyChat (Ctrl-D).", quit_session, Need.NOTHING, aliases=("exit",)),
)

_BY_NAME: dict[str, Command] = {name: c for c in COMMANDS for name in (c.name, *c.aliases)}


def lookup(name: str) -> Command | None:
    """The command called `name` (without the slash, any case), aliases included."""
    return _BY_NAME.get(name.lower())


def command_names() -> list[str]:
    return sorted(_BY_NAME)


def next_word(text: str) -> tuple[str, str]:
    """The first word of `text` (a "quoted" one may have spaces) and the text after it."""
    text = text.lstrip()
    if text.startswith('"'):
        end = text.find('"', 1)
        if end < 0:
            raise UsageError('A quote is not closed: put a " at the end of the argument too.')
        return text[1:end], text[end + 1:].strip()
    word, _, after = text.partition(" ")
    return word, after.strip()


def parse(line: str) -> Invocation | ChatText | None:
    """What a line asks for: a command, text for the open chat, or nothing (blank line)."""
    stripped = line.strip()
    if not stripped:
        return None
    if stripped.startswith("//"):
        return ChatText(line.strip()[1:])
    if not stripped.startswith("/"):
        return ChatText(line.strip())
    name, _, rest = stripped[1:].partition(" ")
    command = lookup(name)
    if command is None:
        raise UsageError(f"Unknown command /{name}; /help lists the commands.")
    args: dict[str, str] = {}
    lists: dict[str, tuple[str, ...]] = {}
    rest = rest.strip()
    for param in command.params:
        if not rest:
            if not param.optional:
                raise UsageError(f"Usage: {command.usage}")
            break
        if param.rest:
            value, rest = rest, ""
        elif param.many:
            words: list[str] = []
            while rest:
                word, rest = next_word(rest)
                words.append(word)
            lists[param.name] = tuple(w for w in words if w)
            value = " ".join(lists[param.name])
        else:
            value, rest = next_word(rest)
        if param.choices and value.lower() not in param.choices:
            raise UsageError(f"Usage: {command.usage}")
        args[param.name] = value.lower() if param.choices else value
    if rest:
        raise UsageError(f"Usage: {command.usage}")
    return Invocation(command, args, lists)
