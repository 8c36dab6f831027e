"""Group commands: /group create, /groups, /invite, /kick, /members, /leave, /rename, /admin, /owner, /dissolve.

Most of them act on the open group chat; /invite, /members, /leave and
/dissolve can also name the group.  A group is named by its name (any case)
or, when two of the user's groups share a name, by `#` and its thread id as
/groups lists it.  The REPL keeps each group's roster (members and roles) as
last heard from LIST_GROUP_MEMBERS and GROUP_CHANGED pushes: it completes
member names, resolves them for /kick and friends, and names the senders of
group messages.  Changes this REPL asks for are confirmed by the command; the
server's push about them is then not shown a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from prompt_toolkit.formatted_text import FormattedText

from tinychat.client import errors
from tinychat.client.repl import render
from tinychat.client.repl.bridge import wait
from tinychat.client.repl.failures import CommandError
from tinychat.client.repl.friends import find_friend
from tinychat.client.view import ThreadState
from tinychat.protocol import GroupChange, GroupMember, Role, ThreadKind

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from tinychat.client.repl.app import ReplApp
    from tinychat.client.repl.commands import Invocation


# ------------------------------------------------------------------ finding groups and members


def my_groups(app: ReplApp) -> list[ThreadState]:
    """The user's groups as the view knows them, by name."""
    return sorted((t for t in app.client.view.threads.values() if t.kind is ThreadKind.GROUP),
                  key=lambda t: (t.title.casefold(), t.thread_id))


def find_group(app: ReplApp, name: str) -> ThreadState | None:
    """A group of the user's by name (ignoring case) or `#thread_id`; None if there is none.

    Two groups with that name: a sentence asking for the id.
    """
    groups = my_groups(app)
    if name.startswith("#") and name[1:].isdigit():
        return next((t for t in groups if t.thread_id == int(name[1:])), None)
    found = [t for t in groups if t.title.casefold() == name.casefold()]
    if len(found) > 1:
        ids = ", ".join(f"#{t.thread_id}" for t in found)
        raise CommandError(f"{len(found)} of your groups are called {name} ({ids}); "
                           f"name one by its number, like /chat #{found[0].thread_id}.")
    return found[0] if found else None


def group_named(app: ReplApp, name: str) -> ThreadState:
    group = find_group(app, name)
    if group is None:
        raise CommandError(f"You are not in a group called {name}; /groups lists yours.")
    return group


def current_group(app: ReplApp, name: str = "") -> ThreadState:
    """The group named, or else the one whose chat is open."""
    if name:
        return group_named(app, name)
    if not _in_group_chat(app):
        raise CommandError("Open a group chat first (/chat GROUP), or name the group; /groups lists yours.")
    return app.client.view.threads[app.chat.thread_id]


def _in_group_chat(app: ReplApp) -> bool:
    chat = app.chat
    thread = app.client.view.threads.get(chat.thread_id) if chat is not None and chat.thread_id else None
    return thread is not None and thread.kind is ThreadKind.GROUP


async def load_roster(app: ReplApp, thread_id: int) -> list[GroupMember]:
    """Ask the server for a group's members: their names, roles and presence (kept as its roster)."""
    try:
        members = await wait(app.client.group_members(thread_id))
    except errors.ThreadNotFoundError:
        name = app.thread_name(thread_id)
        app.forget_group(thread_id)
        raise CommandError(f"You are no longer in {name}.") from None
    for member in members:
        app.names[member.uid] = member.username
    app.rosters[thread_id] = {m.uid: m.role for m in members}
    return members


async def roster(app: ReplApp, thread_id: int) -> dict[int, Role]:
    """The group's members and roles: as last heard, else asked for."""
    if thread_id not in app.rosters:
        await load_roster(app, thread_id)
    return app.rosters[thread_id]


async def find_member(app: ReplApp, group: ThreadState, who: str) -> tuple[int, str]:
    """(uid, name) of a member of `group`, by name (any case) or uid."""

    def match(members: dict[int, Role]) -> int | None:
        return next((uid for uid in members if app.name_of(uid).casefold() == who.casefold() or who == str(uid)),
                    None)

    found = match(await roster(app, group.thread_id))
    if found is None:  # the roster may be older than the member: ask again
        found = match({m.uid: m.role for m in await load_roster(app, group.thread_id)})
    if found is None:
        raise CommandError(f"{who} is not a member of {group.title}; /members lists them.")
    return found, app.name_of(found)


def _is_open(app: ReplApp, group: ThreadState) -> bool:
    return app.chat is not None and app.chat.thread_id == group.thread_id


async def _change(app: ReplApp, thread_id: int, change: GroupChange, subjects: Sequence[int],
                  request: Callable[[], Deferred], refused: str,
                  special: Mapping[type[errors.ServerError], str] | None = None) -> None:
    """Ask for a group change that this command will confirm itself.

    Its pushes (one per subject) then need no line of their own, unless the
    request fails; a refusal becomes a CommandError: the `special` sentence of
    its error type, or `refused` (completing "Only ... can ...") via `_refusal`.
    """
    keys = [(thread_id, change, subject) for subject in subjects]
    app.quiet_changes.update(keys)
    try:
        await wait(request())
    except errors.ServerError as e:
        app.quiet_changes.difference_update(keys)
        for error_type, sentence in (special or {}).items():
            if isinstance(e, error_type):
                raise CommandError(sentence) from None
        raise _refusal(e, refused) from None
    except BaseException:
        app.quiet_changes.difference_update(keys)
        raise


def _refusal(e: errors.ServerError, what: str) -> CommandError:
    """A group refusal explained for the command at hand (`what` completes "Only ... can ...")."""
    if isinstance(e, errors.PermissionDeniedError):
        return CommandError(what)
    if isinstance(e, errors.ThreadNotFoundError):
        return CommandError("That group does not exist any more, or you are no longer in it.")
    return CommandError(render.describe_error(e))


# ------------------------------------------------------------------ commands


async def create(app: ReplApp, inv: Invocation) -> None:
    """Create a group with friends (by name or uid), then open its chat."""
    name = inv["NAME"].strip()
    if not name:
        raise CommandError("A group needs a name: /group create NAME FRIEND...")
    if len(name.encode()) > 64:
        raise CommandError(f"A group name has at most 64 bytes; {name[:20]}… is longer.")
    friends = _friends(app, inv.words("FRIEND"))
    try:
        group = await wait(app.client.create_group(name, [uid for uid, _ in friends]))
    except errors.NotFriendsError:
        raise CommandError("Only friends can be put in a group; /friends lists yours.") from None
    except errors.GroupFullError:
        raise CommandError("That is more members than a group may have on this server.") from None
    view = app.client.view
    # The creator gets no push about the new group: put it in the view, as the next sync would.
    thread = view.threads.setdefault(group.thread_id, ThreadState(group.thread_id))
    thread.kind, thread.peer_uid, thread.title = ThreadKind.GROUP, 0, group.name
    app.rosters[group.thread_id] = {view.uid: Role.OWNER, **{uid: Role.MEMBER for uid, _ in friends}}
    names = render.names_list([n for _, n in friends])
    with_whom = f" with {names}" if friends else " (just you so far: /invite FRIEND)"
    app.console.show(render.ok(f"Created the group {group.name}{with_whom}."))
    from tinychat.client.repl.chats import open_chat

    await open_chat(app, 0, group.name, group.thread_id)


def _friends(app: ReplApp, given: tuple[str, ...]) -> list[tuple[int, str]]:
    """(uid, name) of each friend named, in order, once; a sentence for anyone who is not a friend."""
    found: dict[int, str] = {}
    for who in given:
        friend = find_friend(app, who)
        if friend is None:
            raise CommandError(f"{who} is not one of your friends: only friends can be added to a group.")
        if friend.uid == app.client.view.uid:
            continue
        found[friend.uid] = friend.username
    return list(found.items())


async def list_groups(app: ReplApp, inv: Invocation) -> None:
    """Every group of the user's (asked from the server), with members, role and unread."""
    infos = await wait(app.client.groups())
    view = app.client.view
    current = {g.thread_id for g in infos}
    for thread in my_groups(app):
        if thread.thread_id not in current:
            app.forget_group(thread.thread_id)  # left on another device, or missed while away
    if not infos:
        app.console.show(render.notice("You are in no group yet: /group create NAME FRIEND... makes one."))
        return
    lines = []
    for info in infos:
        thread = view.threads.setdefault(info.thread_id, ThreadState(info.thread_id))
        thread.kind, thread.peer_uid, thread.title = ThreadKind.GROUP, 0, info.name
        unread = thread.unread
        same_name = sum(1 for g in infos if g.name.casefold() == info.name.casefold()) > 1
        handle = f"#{info.thread_id}" if same_name else render.quoted(info.name)
        extra = " · ".join(filter(None, [render.plural(info.member_count, "member"),
                                         "you own it" if info.role is Role.OWNER else
                                         ("admin" if info.role is Role.ADMIN else ""),
                                         f"{unread} unread" if unread else ""]))
        lines.append(FormattedText([("", "  "), ("class:theirs.name", info.name),
                                    ("class:warning" if unread else "class:dim", f"  {extra}"),
                                    ("class:dim", f"  (/chat {handle})")]))
    app.console.show(render.notice(f"{render.plural(len(infos), 'group')}:"), *lines)


async def invite(app: ReplApp, inv: Invocation) -> None:
    """/invite FRIEND... in a group chat, or /invite GROUP FRIEND..."""
    words = list(inv.words("FRIEND"))
    group = None
    if len(words) > 1 and find_friend(app, words[0]) is None:  # /invite GROUP FRIEND...
        group = find_group(app, words[0])
        if group is None and not _in_group_chat(app):
            raise CommandError(f"You are not in a group called {words[0]}; /groups lists yours.")
        if group is not None:
            words.pop(0)
    if group is None:
        group = current_group(app)
    friends = _friends(app, tuple(words))
    if not friends:
        raise CommandError("Name the friends to add: /invite FRIEND...")
    members = await roster(app, group.thread_id)
    there = [name for uid, name in friends if uid in members]
    if there:
        were = "is" if len(there) == 1 else "are"
        raise CommandError(f"{render.names_list(there)} {were} in {group.title} already.")
    uids = [uid for uid, _ in friends]
    await _change(app, group.thread_id, GroupChange.ADDED, uids,
                  lambda: app.client.add_group_members(group.thread_id, uids),
                  f"Only the owner and the admins of {group.title} can add members.",
                  {errors.NotFriendsError: "Only friends can be added to a group; /friends lists yours.",
                   errors.GroupFullError: f"{group.title} would have more members than the server allows."})
    for uid, _ in friends:
        members[uid] = Role.MEMBER
    app.console.show(render.ok(f"You added {render.names_list([n for _, n in friends])} to {group.title}."))


async def kick(app: ReplApp, inv: Invocation) -> None:
    group = current_group(app)
    uid, name = await find_member(app, group, inv["MEMBER"])
    if uid == app.client.view.uid:
        raise CommandError("To go yourself, /leave the group.")
    await _change(app, group.thread_id, GroupChange.REMOVED, [uid],
                  lambda: app.client.remove_group_member(group.thread_id, uid),
                  f"You cannot remove {name}: the owner removes anyone, admins only plain members.")
    app.rosters.get(group.thread_id, {}).pop(uid, None)
    app.console.show(render.ok(f"You removed {name} from {group.title}."))


async def members(app: ReplApp, inv: Invocation) -> None:
    """The members, owner and admins first, with who is online."""
    group = current_group(app, inv["GROUP"])
    people = await load_roster(app, group.thread_id)
    me = app.client.view.uid
    lines = []
    for member in people:
        dot = ("class:ok", "  ● ") if member.online else ("class:dim", "  ○ ")
        you = " (you)" if member.uid == me else ""
        role = render.ROLE_TEXT.get(member.role, "member")
        lines.append(FormattedText([dot, ("class:theirs.name", member.username), ("", you),
                                    ("class:dim", f"  {role} · {'online' if member.online else 'offline'}")]))
    online = sum(m.online for m in people)
    app.console.show(render.notice(f"{group.title}: {render.plural(len(people), 'member')}, {online} online:"),
                     *lines)


async def leave(app: ReplApp, inv: Invocation) -> None:
    group = current_group(app, inv["GROUP"])
    me = app.client.view.uid
    members = app.rosters.get(group.thread_id)
    if members is not None and members.get(me) is Role.OWNER and len(members) > 1:
        raise CommandError(f"You own {group.title}: hand it over first (/owner MEMBER), or /dissolve it.")
    was_open = _is_open(app, group)
    await _change(app, group.thread_id, GroupChange.LEFT, [me], lambda: app.client.leave_group(group.thread_id),
                  f"You own {group.title}: hand it over first (/owner MEMBER), or /dissolve it.")
    app.forget_group(group.thread_id)  # (the push may have come first)
    app.console.show(render.ok(f"You left {group.title}." + (" The chat is closed." if was_open else "")))


async def rename(app: ReplApp, inv: Invocation) -> None:
    group = current_group(app)
    name = inv["NAME"].strip()
    if len(name.encode()) > 64:
        raise CommandError("A group name has at most 64 bytes.")
    old = group.title
    await _change(app, group.thread_id, GroupChange.RENAMED, [0],
                  lambda: app.client.rename_group(group.thread_id, name), f"Only the owner of {old} can rename it.")
    app.renamed(group.thread_id, name)
    app.console.show(render.ok(f"You renamed {old} to {name}."))


async def admin(app: ReplApp, inv: Invocation) -> None:
    group = current_group(app)
    uid, name = await find_member(app, group, inv["MEMBER"])
    role = Role.MEMBER if inv["off"] else Role.ADMIN
    await _set_role(app, group, uid, role)
    if role is Role.ADMIN:
        app.console.show(render.ok(f"{name} is an admin of {group.title} now: they can add and remove members."))
    else:
        app.console.show(render.ok(f"{name} is a plain member of {group.title} again."))


async def owner(app: ReplApp, inv: Invocation) -> None:
    group = current_group(app)
    uid, name = await find_member(app, group, inv["MEMBER"])
    await _set_role(app, group, uid, Role.OWNER)
    members = app.rosters.get(group.thread_id)
    if members is not None:
        members[app.client.view.uid] = Role.ADMIN
    app.console.show(render.ok(f"{name} owns {group.title} now; you are an admin of it."))


async def _set_role(app: ReplApp, group: ThreadState, uid: int, role: Role) -> None:
    if uid == app.client.view.uid:
        raise CommandError("That is you: the owner changes the roles of the other members.")
    await _change(app, group.thread_id, GroupChange.ROLE_CHANGED, [uid],
                  lambda: app.client.set_group_role(group.thread_id, uid, role),
                  f"Only the owner of {group.title} can change roles.")
    members = app.rosters.get(group.thread_id)
    if members is not None:
        members[uid] = role


async def dissolve(app: ReplApp, inv: Invocation) -> None:
    group = current_group(app, inv["GROUP"])
    answer = await app.ask(f"Dissolve {group.title} for all its members? Type yes to confirm: ", required=False)
    if answer.casefold() not in ("yes", "y"):
        app.console.show(render.notice(f"{group.title} stays."))
        return
    was_open = _is_open(app, group)
    await _change(app, group.thread_id, GroupChange.DISSOLVED, [0], lambda: app.client.dissolve_group(group.thread_id),
                  f"Only the owner of {group.title} can dissolve it.")
    app.forget_group(group.thread_id)  # (the push may have come first)
    app.console.show(render.ok(f"You dissolved {group.title}." + (" The chat is closed." if was_open else "")))
