"""The session loop: one prompt at a time, commands in between, events any time.

`ReplApp` owns the client, the prompts and the open chat.  The loop awaits a
line (or a key command), parses it and runs the command as its own task so
that Ctrl-C can cancel a slow request without leaving the REPL.  Client
events (messages, friend requests, presence, group changes, connection
state) are printed above the prompt as they come, and every one of them
refreshes the toolbar and the completer, which read the client's local view.

Lines that name users are `announce`d: when a name is not known yet (a
group member who is not a friend), it is asked for first, and lines behind
it wait their turn, so that events keep their order and every message line
carries its sender's name.
"""

from __future__ import annotations

import asyncio
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.formatted_text import AnyFormattedText, FormattedText, fragment_list_to_text
from prompt_toolkit.history import DummyHistory, FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

import tinychat
from tinychat.client.client import ConnectionState, TinyChatClient
from tinychat.client.repl import groups, render
from tinychat.client.repl.bridge import background, wait
from tinychat.client.repl.chats import OpenChat, say
from tinychat.client.repl.commands import ChatText, Invocation, Need, parse
from tinychat.client.repl.completion import ChatCompleter, CompletionData
from tinychat.client.repl.console import Console
from tinychat.client.repl.failures import Cancelled, CommandError, Quit, UsageError
from tinychat.client.repl.keys import KeyCommand, key_bindings
from tinychat.protocol import (
    Attachment,
    ChatMessage,
    FriendRemovedPush,
    FriendRequestInfo,
    FriendResponsePush,
    GroupChange,
    GroupChangedPush,
    KickedPush,
    KickReason,
    LoggedIn,
    Message,
    MessageKind,
    PresencePush,
    Role,
    SyncState,
    ThreadKind,
)

RECONNECT_PATIENCE = 10.0  # seconds a command waits for a reconnection in progress
NAME_PATIENCE = 5.0  # seconds a line waits for the names in it; then it shows uids
FILES_KEPT = 1000  # files shown, remembered for /download by short id

Lines = Callable[[], Sequence[AnyFormattedText]]


def open_history(path: Path | None) -> History:
    """The input history file, created with its folder; in memory if that is impossible."""
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


class ReplApp:
    """One interactive TinyChat session on a terminal (or on the given input/output)."""

    def __init__(self, servers: Sequence[str], *, history_file: Path | None = None, reactor: Any = None,
                 input: Input | None = None, output: Output | None = None, echo: TextIO | None = None,
                 client: TinyChatClient | None = None) -> None:
        self.servers = list(servers)
        self.client = client or TinyChatClient(self.servers, reactor=reactor)
        self.console = Console(output, echo)
        self.chat: OpenChat | None = None
        self.names: dict[int, str] = {}  # every user seen by name: friends, search results, requesters
        self.quiet_removals: set[int] = set()  # friendships this REPL ended: their push needs no line
        self.quiet_changes: set[tuple[int, GroupChange, int]] = set()  # group changes made here: ditto
        self.rosters: dict[int, dict[int, Role]] = {}  # group members and roles, as last heard
        self.group_titles: dict[int, str] = {}  # group names as of the last refresh (a rename needs the old one)
        self.files: dict[str, Attachment] = {}  # files shown in chats by blob id, oldest first
        self._waiting: deque[tuple[asyncio.Future[None] | None, Lines]] = deque()  # announced, not shown yet
        self._lookups: dict[int, tuple[set[int], asyncio.Future[None]]] = {}  # the last name lookup of each thread
        self.last_login = ""  # offered again by /login
        self.last_email = ""  # offered again by /reset
        self.totp_enabled = False
        self._uid = 0  # the user of the last login
        self.completer = ChatCompleter()
        self.session: PromptSession[Any] = PromptSession(
            message=self._prompt_message, history=open_history(history_file), auto_suggest=AutoSuggestFromHistory(),
            completer=self.completer, complete_while_typing=True, bottom_toolbar=self._toolbar,
            key_bindings=key_bindings(), style=render.STYLE, input=input, output=output, erase_when_done=True)
        # Questions (passwords above all) are never written to the history file.
        self.asker: PromptSession[str] = PromptSession(
            history=DummyHistory(), bottom_toolbar=self._toolbar, style=render.STYLE, input=input, output=output)
        self._connecting: asyncio.Future[bool] | None = None
        self._sigint: Callable[[], object] = lambda: None  # what Ctrl-C does outside prompts
        self._resuming = False  # the connection dropped while logged in: the client logs in again
        self._drop_announced = False  # a shutdown kick already told the user the connection goes
        self._quitting = False
        self._subscribe()

    # ------------------------------------------------------------ the loop

    async def run(self) -> int:
        """Prompt, run, repeat, until /quit or Ctrl-D; then close the connection."""
        with patch_stdout(raw=True):
            self.console.show(render.notice(
                f"TinyChat {tinychat.__version__}. /help lists the commands, Tab completes, Ctrl-D quits."))
            self._on_sigint(lambda: None)
            self._connecting = asyncio.ensure_future(self._connect())
            keep = ""
            try:
                while True:
                    self.refresh()
                    try:
                        answer = await self.session.prompt_async(default=keep)
                    except KeyboardInterrupt:
                        keep = ""
                        continue
                    except EOFError:
                        break
                    finally:
                        self._on_sigint(lambda: None)
                    keep, line = (answer.keep, answer.line) if isinstance(answer, KeyCommand) else ("", answer)
                    try:
                        await self.run_line(line)
                    except Quit:
                        break
            finally:
                await self._close()
        return 0

    async def run_line(self, line: str) -> None:
        """Run one input line: a command, or text for the open chat.

        The prompt erases itself when a line is accepted: chat text comes
        back as a bubble once sent, and a command is echoed here, dimmed,
        above its output.
        """
        try:
            parsed = parse(line)
        except UsageError as e:
            self.console.show(render.command_echo(self._prompt_text(), line))
            self.console.show(render.error(str(e)))
            return
        if parsed is None:
            return
        if isinstance(parsed, ChatText) and self.chat is not None:
            await self._guarded(say(self, parsed.text))
            return
        self.console.show(render.command_echo(self._prompt_text(), line))
        if isinstance(parsed, ChatText):
            self.console.show(render.error("You are not in a chat: /chat NAME opens one (/help lists commands)."))
            return
        await self._guarded(self._run_command(parsed))

    async def _run_command(self, inv: Invocation) -> None:
        if await self._ready_for(inv.command.needs):
            await inv.command.handler(self, inv)

    async def _guarded(self, work: Any) -> None:
        """Run a command's coroutine as a task that Ctrl-C cancels; report its failure as a sentence."""
        task = asyncio.ensure_future(self._contained(work))
        try:
            with self._interrupt_cancels(task):
                await task
        except Quit:
            raise
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the whole session is being stopped
            self.console.show(render.warning("Cancelled."))
        except Cancelled:
            self.console.show(render.warning("Cancelled."))
        except (UsageError, CommandError) as e:
            self.console.show(render.error(str(e)))
        except Exception as e:
            self.console.show(render.error(render.describe_error(e)))
        finally:
            self.refresh()

    def _on_sigint(self, handler: Callable[[], object] | None = None) -> None:
        """Route SIGINT to `handler` (default: the current one), where signals can be had."""
        if handler is not None:
            self._sigint = handler
        with suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread of a Unix process
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._sigint)

    @staticmethod
    async def _contained(work: Awaitable[None]) -> None:
        """KeyboardInterrupt escaping a task would stop the event loop itself: make it a Cancelled."""
        try:
            await work
        except (KeyboardInterrupt, EOFError):
            raise Cancelled from None

    @contextmanager
    def _interrupt_cancels(self, task: asyncio.Future[Any]) -> Iterator[None]:
        """While a command runs the terminal is not raw, so Ctrl-C is SIGINT: cancel the command.

        Outside commands and prompts SIGINT is ignored: Python's default would
        raise KeyboardInterrupt out of the event loop, with a traceback.
        (Each prompt handles SIGINT itself, then removes every handler.)
        """
        self._on_sigint(task.cancel)
        try:
            yield
        finally:
            self._on_sigint(lambda: None)

    async def _close(self) -> None:
        self._quitting = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        for _, lookup in self._lookups.values():
            lookup.cancel()
        with suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(wait(self.client.close()), 3)
        self.console.show(render.dim("Bye."))

    # ------------------------------------------------------------ what commands use

    async def ask(self, question: str, *, password: bool = False, default: str = "", required: bool = True) -> str:
        """Ask the user one question (without echo for passwords); empty answers cancel if required.

        Ctrl-C or Ctrl-D at a question cancels the command, not the session.
        """
        try:
            answer = await self.asker.prompt_async(question, is_password=password, default=default)
        except (KeyboardInterrupt, EOFError):
            raise Cancelled from None
        finally:
            self._on_sigint()  # the prompt removed the command's handler
        answer = answer if password else answer.strip()
        if required and not answer:
            raise CommandError("Cancelled: nothing entered.")
        return answer

    async def ensure_connected(self) -> bool:
        """Connected (logged in or not), connecting first if need be; says why not otherwise."""
        state = self.client.state
        if state in (ConnectionState.CONNECTED, ConnectionState.LOGGED_IN):
            return True
        if state is ConnectionState.RECONNECTING:
            back = self.client.when_state(ConnectionState.CONNECTED)
            try:
                await asyncio.wait_for(wait(back), RECONNECT_PATIENCE)
                return True
            except TimeoutError:
                self.console.show(render.warning("The connection is down; reconnecting… try again in a moment."))
                return False
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self._connecting)

    async def connected(self) -> None:
        """Make sure of a connection right before a request of a guest flow (raise if there is none).

        The server closes connections that stay logged out for a while, and
        typing a registration (or fetching the mailed code) can take longer.
        """
        if not await self.ensure_connected():
            raise CommandError("Nothing was sent: there is no connection to the server.")

    async def _connect(self) -> bool:
        try:
            welcome = await wait(self.client.connect())
        except Exception as e:
            where = ", ".join(self.servers)
            self.console.show(render.error(f"{render.describe_error(e)} ({where})"),
                              render.dim("Commands that need the server will try again."))
            return False
        self.console.show(render.notice(
            f"Connected to {self.client.endpoint} (node {welcome.node_id}). /login NAME, or /register to begin."))
        return True

    async def _ready_for(self, need: Need) -> bool:
        state = self.client.state
        if need is Need.NOTHING:
            return True
        if need is Need.LOGIN:
            if state is ConnectionState.LOGGED_IN:
                return True
            resuming = state in (ConnectionState.RECONNECTING, ConnectionState.CONNECTING) or self._resuming
            if resuming and self.client.user:
                back = self.client.when_state(ConnectionState.LOGGED_IN)
                with suppress(TimeoutError):
                    await asyncio.wait_for(wait(back), RECONNECT_PATIENCE)
                    return True
                self.console.show(render.warning("The connection is down; reconnecting… try again in a moment."))
            else:
                self.console.show(render.error("Log in first: /login NAME, or /register for a new account."))
            return False
        if need is Need.LOGGED_OUT and state is ConnectionState.LOGGED_IN:
            self.console.show(render.error(f"You are logged in as {self.username}; /logout first."))
            return False
        return await self.ensure_connected()

    def logged_in(self, user: LoggedIn) -> None:
        """A login succeeded: forget another user's chat, greet with what is waiting."""
        if self._uid != user.uid:  # another user's conversations, groups and files
            self.chat = None
            self.rosters.clear()
            self.files.clear()
            self.quiet_changes.clear()
        self._uid = user.uid
        self.last_login, self.last_email = user.username, user.email
        self.totp_enabled = user.totp_enabled
        self._resuming = False
        view = self.client.view
        online = sum(f.online for f in view.friends.values())
        parts = [f"{online} of {len(view.friends)} friends online"]
        unread = view.unread_total
        parts.append(f"{unread} unread message{'s' if unread != 1 else ''}" + (" (/unread, Ctrl-N)" if unread else ""))
        if view.friend_requests:
            n = len(view.friend_requests)
            parts.append(f"{n} friend request{'s' if n != 1 else ''} (/requests)")
        self.console.show(render.ok(f"Logged in as {user.username}."), render.notice(" · ".join(parts)))
        self.refresh()

    @property
    def username(self) -> str:
        return self.client.user.username if self.client.user is not None else ""

    def name_of(self, uid: int) -> str:
        """A user's name as the REPL knows it (the view, then anyone seen), else their uid."""
        view = self.client.view
        if uid == view.uid and self.client.user is not None:
            return self.client.user.username
        friend = view.friends.get(uid)
        if friend is not None:
            return friend.username
        return self.names.get(uid) or f"user {uid}"

    def thread_name(self, thread_id: int) -> str:
        thread = self.client.view.threads.get(thread_id)
        if thread is None:
            return f"thread {thread_id}"
        if thread.peer_uid:
            return self.name_of(thread.peer_uid)
        return thread.title or f"thread {thread_id}"

    def knows(self, uid: int) -> bool:
        """Whether the REPL can name this user."""
        view = self.client.view
        return uid == view.uid or uid in view.friends or uid in self.names

    def show_message(self, msg: ChatMessage, here: bool) -> None:
        """Show a message (with its sender's name, asked for first if need be); remember its file."""
        if msg.kind != MessageKind.TEXT and msg.attachment.blob_id:
            self.files.pop(msg.attachment.blob_id, None)
            self.files[msg.attachment.blob_id] = msg.attachment
            while len(self.files) > FILES_KEPT:
                del self.files[next(iter(self.files))]
        mine = msg.sender_uid == self.client.view.uid
        group = self.is_group(msg.thread_id)

        def lines() -> list[AnyFormattedText]:
            return [render.message(msg, sender=self.name_of(msg.sender_uid), mine=mine, width=self.console.width,
                                   here=here, chat=self.thread_name(msg.thread_id), group=group)]

        self.announce(lines, [msg.sender_uid], msg.thread_id)

    def announce(self, lines: Lines, uids: Iterable[int] = (), thread_id: int = 0) -> None:
        """Show `lines()` once the users in them can be named, after every line announced before.

        Unknown users are looked up (the group's members, else a search by
        uid); a failed or slow lookup leaves them as `user 123`.
        """
        missing = {uid for uid in uids if uid and not self.knows(uid)}
        ready = self._lookup(missing, thread_id) if missing else None
        if ready is None and not self._waiting:
            self.console.show(*lines())
            return
        self._waiting.append((ready, lines))
        if ready is not None:
            ready.add_done_callback(lambda _: self._show_waiting())

    def _show_waiting(self) -> None:
        while self._waiting and (self._waiting[0][0] is None or self._waiting[0][0].done()):
            _, lines = self._waiting.popleft()
            self.console.show(*lines())
        self.refresh()

    def _lookup(self, uids: set[int], thread_id: int) -> asyncio.Future[None]:
        """A lookup of these users: one under way that covers them, else a new one."""
        running = self._lookups.get(thread_id)
        if running is not None and not running[1].done() and uids <= running[0]:
            return running[1]
        lookup = asyncio.ensure_future(self.learn_names(uids, thread_id))
        self._lookups[thread_id] = (uids, lookup)
        return lookup

    async def learn_names(self, uids: Iterable[int], thread_id: int = 0) -> None:
        """Find out the names of these users (never fails; gives up after a few seconds)."""
        missing = {uid for uid in uids if uid and not self.knows(uid)}
        if missing:
            with suppress(Exception):
                await asyncio.wait_for(self._learn(missing, thread_id), NAME_PATIENCE)

    async def _learn(self, missing: set[int], thread_id: int) -> None:
        if thread_id and self.is_group(thread_id):
            with suppress(Exception):
                await groups.load_roster(self, thread_id)
        for uid in sorted(u for u in missing if not self.knows(u)):
            with suppress(Exception):
                for user in await wait(self.client.search(str(uid))):
                    self.names[user.uid] = user.username

    def is_group(self, thread_id: int) -> bool:
        thread = self.client.view.threads.get(thread_id)
        return thread is not None and thread.kind is ThreadKind.GROUP

    def forget_group(self, thread_id: int) -> bool:
        """The user is no longer in this group; returns whether its chat was open (it is closed).

        The view keeps every thread it has heard of; one the user has left is
        taken out of it, so that it is no longer listed, completed or counted.
        """
        self.client.view.threads.pop(thread_id, None)
        self.rosters.pop(thread_id, None)
        self.group_titles.pop(thread_id, None)
        if self.chat is not None and self.chat.thread_id == thread_id:
            self.chat = None
            return True
        return False

    def renamed(self, thread_id: int, name: str) -> None:
        thread = self.client.view.threads.get(thread_id)
        if thread is not None:
            thread.title = name
        self.group_titles[thread_id] = name
        if self.chat is not None and self.chat.thread_id == thread_id:
            self.chat.name = name

    def mark_read(self, thread_id: int, seq: int) -> None:
        """Move the read mark in the background; the toolbar follows when it is done."""
        thread = self.client.view.threads.get(thread_id)
        if seq <= 0 or (thread is not None and thread.read_seq >= seq):
            return
        d = self.client.mark_read(thread_id, seq)
        d.addCallback(lambda _: self.refresh())
        background(d)

    def refresh(self) -> None:
        """The view may have changed: rebuild completion, redraw the toolbar and prompt."""
        view = self.client.view
        for friend in view.friends.values():
            self.names[friend.uid] = friend.username
        for request in view.friend_requests.values():
            self.names[request.from_uid] = request.from_username
        self.group_titles = {t.thread_id: t.title for t in view.threads.values() if t.kind is ThreadKind.GROUP}
        roster = self.rosters.get(self.chat.thread_id) if self.chat is not None else None
        self.completer.data = CompletionData.from_view(view, self.names, roster=roster,
                                                       files=list(self.files.values()))
        self.session.app.invalidate()
        self.asker.app.invalidate()

    # ------------------------------------------------------------ prompt and toolbar

    def _prompt_text(self) -> str:
        return fragment_list_to_text(self._prompt_message())

    def _prompt_message(self) -> FormattedText:
        if self.chat is not None:
            return FormattedText([("class:dim", f"{self.username} → "), ("class:theirs.name", self.chat.name),
                                  ("", "> ")])
        return FormattedText([("", f"{self.username or 'tinychat'}> ")])

    def status(self) -> render.Status:
        view = self.client.view
        state = self.client.state
        logged = self.client.user is not None and state is not ConnectionState.CONNECTED
        return render.Status(state, username=self.username if logged else "",
                             chat=self.chat.name if self.chat is not None else "", unread=view.unread_total,
                             requests=len(view.friend_requests), server=self.client.endpoint)

    def _toolbar(self) -> FormattedText:
        return render.toolbar(self.status())

    # ------------------------------------------------------------ client events

    def _subscribe(self) -> None:
        client = self.client
        client.on_state(self._on_state)
        client.on_message(self._on_message)
        client.on_friend_request(self._on_friend_request)
        client.on_friend_response(self._on_friend_response)
        client.on_friend_removed(self._on_friend_removed)
        client.on_presence(self._on_presence)
        client.on_kicked(self._on_kicked)
        client.on_group_changed(self._on_group_changed)
        client.on_sync(self._on_sync)
        client.on(None, self._on_any_push)

    def _on_state(self, old: ConnectionState, new: ConnectionState) -> None:
        self.refresh()
        if self._quitting:
            return
        if new is ConnectionState.RECONNECTING:
            self._resuming = self._resuming or old is ConnectionState.LOGGED_IN
            if not self._drop_announced:
                self.console.show(render.warning("Connection to the server lost; reconnecting…"))
            self._drop_announced = False
        elif new is ConnectionState.DISCONNECTED and old is ConnectionState.CONNECTED and self._resuming:
            self._resuming = False  # the resume token was refused (expired, revoked)
            self.console.show(render.warning("Reconnected, but the session could not be resumed: /login again."))
        elif new is ConnectionState.DISCONNECTED and old is ConnectionState.CONNECTED:
            # Nobody was logged in: the server may close such connections after a while.
            self.console.show(render.dim("The server closed the connection; the next command reconnects."))
        elif new is ConnectionState.DISCONNECTED and old is not ConnectionState.CONNECTING:
            self._resuming = self._drop_announced = False
            self.console.show(render.warning("Disconnected from the server. /login to connect again."))
        elif new is ConnectionState.CONNECTED and old is ConnectionState.RECONNECTING:
            more = " Resuming the session…" if self._resuming else ""
            self.console.show(render.notice(f"Reconnected to {self.client.endpoint}.{more}"))
        elif new is ConnectionState.LOGGED_IN and self._resuming:
            self._resuming = False
            self.console.show(render.ok(f"Back online as {self.username}."))

    def _on_message(self, msg: ChatMessage) -> None:
        chat = self.chat
        here = chat is not None and msg.thread_id == chat.thread_id
        if chat is not None and here:
            if chat.loading:
                chat.held.append(msg)
                return
            if msg.seq <= chat.newest_seq:
                return  # already on screen from a history page
            chat.newest_seq = msg.seq
            self.mark_read(msg.thread_id, msg.seq)
        self.show_message(msg, here)
        self.refresh()

    def _on_friend_request(self, request: FriendRequestInfo) -> None:
        self.names[request.from_uid] = request.from_username
        self.console.show(render.friend_request(request))

    def _on_friend_response(self, push: FriendResponsePush) -> None:
        self.names[push.peer_uid] = push.peer_username
        self.console.show(render.friend_response(push.peer_username, push.accepted))

    def _on_friend_removed(self, push: FriendRemovedPush) -> None:
        if push.uid in self.quiet_removals:
            self.quiet_removals.discard(push.uid)
            return
        self.console.show(render.friend_removed(self.name_of(push.uid)))

    def _on_presence(self, push: PresencePush) -> None:
        if push.uid in self.client.view.friends:
            self.console.show(render.presence(self.name_of(push.uid), push.online))

    def _on_kicked(self, push: KickedPush) -> None:
        if push.reason is KickReason.SERVER_SHUTDOWN:
            self._drop_announced = True  # the kick said it all; the client reconnects by itself
        else:
            self._resuming = False
        self.console.show(render.kicked(push))

    def _on_group_changed(self, push: GroupChangedPush) -> None:
        """Keep the roster, forget groups the user is out of, and say what happened (unless said already)."""
        me = self.client.view.uid
        thread_id, change, subject = push.thread_id, push.change, push.subject_uid
        title = self.group_titles.get(thread_id) or push.name or f"group {thread_id}"
        roster = self.rosters.get(thread_id)
        if roster is not None:
            if change is GroupChange.ADDED:
                roster[subject] = Role.MEMBER
            elif change in (GroupChange.REMOVED, GroupChange.LEFT):
                roster.pop(subject, None)
            elif change is GroupChange.ROLE_CHANGED:
                roster[subject] = push.role
        if change is GroupChange.RENAMED:
            self.renamed(thread_id, push.name)
        gone = change is GroupChange.DISSOLVED or (change in (GroupChange.REMOVED, GroupChange.LEFT) and subject == me)
        closed = self.forget_group(thread_id) if gone else False
        key = (thread_id, change, subject)
        if key in self.quiet_changes:
            self.quiet_changes.discard(key)
            return

        def lines() -> list[AnyFormattedText]:
            text = render.group_change(change, actor=self.name_of(push.actor_uid), subject=self.name_of(subject),
                                       group=title, role=push.role, new_name=push.name,
                                       me_actor=push.actor_uid == me, me_subject=subject == me)
            out: list[AnyFormattedText] = [render.event(text)] if text else []
            if closed:
                out.append(render.dim(f"The chat with {title} is closed."))
            return out

        self.announce(lines, [push.actor_uid, subject], 0 if gone else thread_id)

    def _on_sync(self, state: SyncState) -> None:
        """A resync lists every thread the user is in: groups missing from it were left while away."""
        present = {t.thread_id for t in state.threads}
        for thread in list(self.client.view.threads.values()):
            gone = thread.kind is ThreadKind.GROUP and thread.thread_id not in present
            if gone and self.forget_group(thread.thread_id):
                self.console.show(render.warning(f"You are no longer in {thread.title}; the chat is closed."))
        self.refresh()

    def _on_any_push(self, push: Message) -> None:
        self.refresh()
