"""Chat commands: /chat, /history, /unread, /next, and sending plain lines.

Opening a chat shows its newest page and marks it read; live messages of that
chat that arrive while the page loads are held and shown after it, so nothing
appears twice or out of order.  /history more walks back a page at a time.
Sending does not block the prompt: the line is shown (as mine) once the
server has acknowledged it, or an error says it was not sent.  A group chat
is opened the same way, after asking who its members are (so that every
message line can carry its sender's name).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tinychat.client.repl import groups, render
from tinychat.client.repl.bridge import wait
from tinychat.client.repl.failures import CommandError
from tinychat.client.repl.friends import find_friend
from tinychat.protocol import ChatMessage, MessageAck

if TYPE_CHECKING:
    from tinychat.client.repl.app import ReplApp
    from tinychat.client.repl.commands import Invocation

PAGE = 20  # messages per history page on screen
USERNAME = re.compile(r"\w{3,32}", re.ASCII)

_sending: set[asyncio.Task[None]] = set()  # keeps background sends alive until they finish


@dataclass
class OpenChat:
    """The conversation on screen, and how much of its history has been shown."""

    uid: int  # the friend; 0 for a group
    name: str
    thread_id: int
    oldest_seq: int = 0  # smallest seq shown: /history more pages back from here
    newest_seq: int = 0  # largest seq shown: later copies of these are not printed again
    has_more: bool = False
    loading: bool = True  # the first page is on its way; messages wait in `held`
    held: list[ChatMessage] = field(default_factory=list)


async def open_chat(app: ReplApp, uid: int, name: str, thread_id: int) -> None:
    """Make this the chat on screen: its newest page, then whatever arrived meanwhile."""
    group = not uid
    chat = app.chat = OpenChat(uid, name, thread_id)
    app.refresh()
    friend = app.client.view.friends.get(uid)
    thread = app.client.view.threads.get(thread_id)
    try:
        messages, has_more = [], False
        members = await groups.load_roster(app, thread_id) if group and thread_id else []
        if thread_id:
            page = await wait(app.client.history(thread_id, 0, PAGE))
            messages, has_more = page.messages, page.has_more
            await app.learn_names({m.sender_uid for m in messages}, thread_id)  # former members too
        total = max([thread.last_seq if thread else 0] + [m.seq for m in messages])
        app.console.show(render.chat_heading(name, friend.online if friend else None, total,
                                             len(members) if group else None))
        if has_more:
            app.console.show(render.dim(f"… {messages[0].seq - 1} earlier (/history more)"))
        for msg in messages:
            app.show_message(msg, here=True)
        if messages:
            chat.oldest_seq, chat.newest_seq, chat.has_more = messages[0].seq, messages[-1].seq, has_more
    finally:
        _release_held(app, chat)
    if friend is None and uid:
        app.console.show(render.warning(f"{name} is not your friend (any more): you can read, not send."))
    app.mark_read(thread_id, max(chat.newest_seq, thread.last_seq if thread else 0))


def _release_held(app: ReplApp, chat: OpenChat) -> None:
    chat.loading = False
    held, chat.held = sorted(chat.held, key=lambda m: m.seq), []
    for msg in held:
        if msg.seq > chat.newest_seq:
            chat.newest_seq = msg.seq
            app.show_message(msg, here=True)


async def chat(app: ReplApp, inv: Invocation) -> None:
    """Open a chat with a friend or a group, or leave the open one."""
    who = inv["NAME"]
    if not who:
        if app.chat is None:
            app.console.show(render.notice("You are not in a chat; /chat NAME opens one."))
        else:
            app.console.show(render.notice(f"Left the chat with {app.chat.name}."))
            app.chat = None
        return
    friend = find_friend(app, who)
    if friend is None:
        group = groups.find_group(app, who)
        if group is not None:
            await open_chat(app, 0, group.title, group.thread_id)
            return
        if not USERNAME.fullmatch(who):
            raise CommandError(f"You have no friend or group called {who}; /friends and /groups list them.")
        raise CommandError(f"{who} is not one of your friends; /add {who} to ask them first.")
    thread = app.client.view.thread_with(friend.uid)
    await open_chat(app, friend.uid, friend.username, friend.thread_id or (thread.thread_id if thread else 0))


def require_chat(app: ReplApp) -> OpenChat:
    """The open chat; a sentence when there is none."""
    if app.chat is None:
        raise CommandError("You are not in a chat: /chat NAME first.")
    return app.chat


async def history(app: ReplApp, inv: Invocation) -> None:
    """The newest page again, or ('more') the page before the oldest one shown."""
    current = require_chat(app)
    if not inv["more"]:
        await open_chat(app, current.uid, current.name, current.thread_id)
        return
    if not current.has_more:
        app.console.show(render.dim(f"That is the beginning of your conversation with {current.name}."))
        return
    page = await wait(app.client.history(current.thread_id, current.oldest_seq, PAGE))
    if not page.messages:
        current.has_more = False
        app.console.show(render.dim(f"That is the beginning of your conversation with {current.name}."))
        return
    first, last = page.messages[0].seq, page.messages[-1].seq
    app.console.show(render.dim(f"── earlier messages #{first}–#{last} ──"))
    for msg in page.messages:
        app.show_message(msg, here=True)
    current.oldest_seq, current.has_more = first, page.has_more
    app.console.show(render.dim("… more: /history more" if page.has_more else "── the beginning ──"))


def _unread_threads(app: ReplApp) -> list[tuple[int, str, int, int]]:
    """(thread_id, name, peer uid, unread) of every chat with unread messages."""
    view = app.client.view
    return [(t.thread_id, app.thread_name(t.thread_id), t.peer_uid, t.unread)
            for t in sorted(view.threads.values(), key=lambda t: t.thread_id) if t.unread > 0]


async def unread(app: ReplApp, inv: Invocation) -> None:
    threads = _unread_threads(app)
    if not threads:
        app.console.show(render.notice("No unread messages."))
        return
    app.console.show(render.notice("Unread:"), *(
        render.warning(f"  {name}: {count} unread  (/chat {name})") for _, name, _, count in threads))


async def next_unread(app: ReplApp, inv: Invocation) -> None:
    """Open the next chat (after the current one, in a fixed order) that has unread messages."""
    current = app.chat.thread_id if app.chat is not None else 0
    threads = [t for t in _unread_threads(app) if t[0] != current]
    if not threads:
        app.console.show(render.notice("No other chat has unread messages."))
        return
    thread_id, name, uid, _ = next((t for t in threads if t[0] > current), threads[0])
    await open_chat(app, uid, name, thread_id)


async def say(app: ReplApp, text: str) -> None:
    """Send a line to the open chat in the background; it shows up once the server has it."""
    current = require_chat(app)
    problem = render.too_long(text)
    if problem:
        raise CommandError(problem)
    if current.thread_id:
        d = app.client.send_text(text, thread_id=current.thread_id)
    else:
        d = app.client.send_text(text, to_uid=current.uid)
    task = asyncio.ensure_future(_deliver(app, current, text, wait(d)))
    _sending.add(task)
    task.add_done_callback(_sending.discard)


async def _deliver(app: ReplApp, sent_to: OpenChat, text: str, acked: Awaitable[MessageAck]) -> None:
    try:
        ack = await acked
    except Exception as e:
        short = text if len(text) <= 40 else text[:39] + "…"
        app.console.show(render.error(f"Not sent to {sent_to.name}: “{short}” — {render.describe_error(e)}"))
        return
    if not sent_to.thread_id:
        sent_to.thread_id = ack.thread_id
    msg = ChatMessage(thread_id=ack.thread_id, seq=ack.seq, sender_uid=app.client.view.uid,
                      client_msg_id=ack.client_msg_id, sent_at_ms=ack.sent_at_ms, text=text)
    app.show_message(msg, here=app.chat is sent_to)
    app.refresh()
