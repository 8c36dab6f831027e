"""Friend commands: /search, /add, /requests, /accept, /reject, /friends, /unfriend.

Users are named the way people think of them (a username, any case) or by
uid; `find_user` and `find_friend` turn either into a uid, asking the server
(SEARCH_USERS) only when the local view does not know the name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prompt_toolkit.formatted_text import FormattedText

from tinychat.client.repl import render
from tinychat.client.repl.bridge import wait
from tinychat.client.repl.failures import CommandError
from tinychat.client.view import Friend

if TYPE_CHECKING:
    from tinychat.client.repl.app import ReplApp
    from tinychat.client.repl.commands import Invocation


def find_friend(app: ReplApp, who: str) -> Friend | None:
    """A friend by username (ignoring case) or uid, from the local view."""
    view = app.client.view
    friend = view.friend_by_name(who)
    if friend is None and who.isdigit():
        friend = view.friends.get(int(who))
    return friend


async def find_user(app: ReplApp, who: str) -> tuple[int, str]:
    """(uid, username) of any user, by name or uid; asks the server when needed."""
    friend = find_friend(app, who)
    if friend is not None:
        return friend.uid, friend.username
    me = app.client.user
    if me is not None and (who.casefold() == me.username.casefold() or who == str(me.uid)):
        return me.uid, me.username  # searches leave the user out; the server explains the rest
    users = await wait(app.client.search(who))
    for user in users:
        app.names[user.uid] = user.username
    wanted = who.casefold()
    for user in users:
        if user.username.casefold() == wanted or (who.isdigit() and user.uid == int(who)):
            return user.uid, user.username
    raise CommandError(f"There is no user called {who}. (/search {who} lists similar names.)")


async def search(app: ReplApp, inv: Invocation) -> None:
    query = inv["TEXT"]
    users = await wait(app.client.search(query))
    if not users:
        app.console.show(render.notice(f"Nobody matches {query!r}."))
        return
    lines = []
    for user in users:
        app.names[user.uid] = user.username
        if user.uid == app.client.view.uid:
            status = "you"
        elif user.is_friend:
            status = "friend, " + ("online" if user.online else "offline")
        else:
            status = f"/add {user.username}"
        lines.append(FormattedText([("class:theirs.name", f"  {user.username}"),
                                    ("class:dim", f"  uid {user.uid} · {status}")]))
    app.console.show(render.notice(f"{len(users)} user{'s' if len(users) != 1 else ''} found:"), *lines)


async def add(app: ReplApp, inv: Invocation) -> None:
    uid, name = await find_user(app, inv["USER"])
    request_id = await wait(app.client.add_friend(uid, inv["greeting"]))
    app.console.show(render.ok(f"Friend request #{request_id} sent to {name}; you will see their answer here."))


async def requests(app: ReplApp, inv: Invocation) -> None:
    pending = await wait(app.client.friend_requests())
    if not pending.incoming and not pending.outgoing:
        app.console.show(render.notice("No pending friend requests."))
        return
    lines: list[FormattedText] = []
    for r in pending.incoming:
        greeting = f' "{r.greeting}"' if r.greeting else ""
        lines.append(FormattedText([
            ("class:event", f"  #{r.friend_request_id} from {r.from_username}{greeting}"),
            ("class:dim", f"  {render.clock(r.created_at_ms)} · /accept {r.friend_request_id} · "
                          f"/reject {r.friend_request_id}")]))
    for r in pending.outgoing:
        name = r.to_username or app.name_of(r.to_uid)
        lines.append(FormattedText([("", f"  #{r.friend_request_id} to {name}"),
                                    ("class:dim", f"  {render.clock(r.created_at_ms)} · waiting for an answer")]))
    app.console.show(render.notice(f"Friend requests: {len(pending.incoming)} to you, "
                                   f"{len(pending.outgoing)} from you."), *lines)


def _request_id(app: ReplApp, given: str) -> tuple[int, str]:
    """A pending incoming request by id, or by the requester's name."""
    view = app.client.view
    if given.lstrip("#").isdigit():
        rid = int(given.lstrip("#"))
        request = view.friend_requests.get(rid)
        return rid, request.from_username if request is not None else f"request #{rid}"
    wanted = given.casefold()
    for rid, request in view.friend_requests.items():
        if request.from_username.casefold() == wanted:
            return rid, request.from_username
    raise CommandError(f"No friend request from {given} is pending; /requests lists them.")


async def accept(app: ReplApp, inv: Invocation) -> None:
    rid, name = _request_id(app, inv["ID"])
    resolved = await wait(app.client.accept_friend(rid, inv["remark"]))
    name = app.name_of(resolved.peer_uid) if resolved.peer_uid else name
    app.console.show(render.ok(f"You and {name} are friends now: /chat {name} to talk."))


async def reject(app: ReplApp, inv: Invocation) -> None:
    rid, name = _request_id(app, inv["ID"])
    await wait(app.client.reject_friend(rid))
    app.console.show(render.notice(f"Declined the friend request from {name}."))


async def list_friends(app: ReplApp, inv: Invocation) -> None:
    await wait(app.client.friends())  # the view's copy, refreshed
    view = app.client.view
    if not view.friends:
        app.console.show(render.notice("No friends yet: /search NAME, then /add NAME."))
        return
    lines = []
    for friend in sorted(view.friends.values(), key=lambda f: (not f.online, f.username.casefold())):
        thread = view.thread_with(friend.uid)
        unread = thread.unread if thread is not None else 0
        dot = ("class:ok", "  ● ") if friend.online else ("class:dim", "  ○ ")
        extra = " · ".join(filter(None, [
            "online" if friend.online else "offline",
            f"{unread} unread" if unread else "",
            f"“{friend.remark}”" if friend.remark else ""]))
        lines.append(FormattedText([dot, ("class:theirs.name", friend.username),
                                    ("class:warning" if unread else "class:dim", f"  {extra}")]))
    online = sum(f.online for f in view.friends.values())
    app.console.show(render.notice(f"{len(view.friends)} friends, {online} online:"), *lines)


async def unfriend(app: ReplApp, inv: Invocation) -> None:
    friend = find_friend(app, inv["USER"])
    if friend is None:
        raise CommandError(f"{inv['USER']} is not one of your friends.")
    app.quiet_removals.add(friend.uid)  # the push about it would repeat the sentence below
    await wait(app.client.remove_friend(friend.uid))
    app.console.show(render.notice(f"You and {friend.username} are no longer friends; the history stays readable."))
