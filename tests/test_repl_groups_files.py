"""The REPL's group and file commands: their parts in-process, and the real app against a real node.

The end-to-end tests drive the REPL in a subprocess through
`tests.repl_driver`, while the other users are client-library users in this
process.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from tests.repl_driver import login
from tests.test_files import png
from tests.test_repl import SQLITE
from tinychat.client.repl import render
from tinychat.client.repl.commands import Invocation, parse
from tinychat.client.repl.completion import ChatCompleter, CompletionData, lex
from tinychat.client.repl.failures import UsageError
from tinychat.client.view import Friend, LocalView, ThreadState
from tinychat.protocol import (
    Attachment,
    ChatMessage,
    GroupChange,
    GroupChangedPush,
    MessageKind,
    MessagePush,
    Role,
    ThreadKind,
)

# ---------------------------------------------------------------------------------------------- parts


def test_parse_group_and_file_commands_with_quoted_arguments():
    inv = parse('/group create "book club" bob 3')
    assert isinstance(inv, Invocation)
    assert (inv["create"], inv["NAME"], inv.words("FRIEND")) == ("create", "book club", ("bob", "3"))
    assert parse("/group create solo").words("FRIEND") == ()
    assert parse('/invite "book club" carol dave').words("FRIEND") == ("book club", "carol", "dave")
    assert parse('/chat "book club"')["NAME"] == "book club"
    assert parse("/rename the new name")["NAME"] == "the new name"
    assert parse("/admin bob OFF")["off"] == "off"
    inv = parse('/send-file "~/my photos/cat.png" look at this')
    assert (inv["PATH"], inv["caption"]) == ("~/my photos/cat.png", "look at this")
    inv = parse("/download 3fa9c1d2 /tmp/x.bin")
    assert (inv["ID"], inv["PATH"]) == ("3fa9c1d2", "/tmp/x.bin")
    for bad, message in [("/group", "Usage: /group create NAME [FRIEND...]"),
                         ("/group make x", "Usage: /group create NAME [FRIEND...]"),
                         ("/invite", "Usage: /invite [GROUP] FRIEND..."),
                         ('/chat "book club', "A quote is not closed"),
                         ("/kick bob carol", "Usage: /kick MEMBER")]:
        with pytest.raises(UsageError, match=re.escape(message)):
            parse(bad)


def test_lexing_for_completion_tolerates_an_open_quote():
    assert lex("bob ") == ([("bob", "bob")], False)
    assert lex('"book cl') == ([("book cl", '"book cl')], True)
    assert lex('"book club" ca') == ([("book club", '"book club"'), ("ca", "ca")], True)


def _view() -> LocalView:
    view = LocalView(uid=1)
    view.friends = {2: Friend(2, "bob", online=True, thread_id=7), 3: Friend(3, "carol", thread_id=8)}
    view.threads = {7: ThreadState(7, peer_uid=2), 8: ThreadState(8, peer_uid=3),
                    20: ThreadState(20, kind=ThreadKind.GROUP, title="book club", last_seq=4, read_seq=1),
                    21: ThreadState(21, kind=ThreadKind.GROUP, title="weekend")}
    return view


def _complete(completer: ChatCompleter, text: str) -> list[tuple[str, str]]:
    completions = completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
    return [(c.text, c.display_meta_text) for c in completions]


def test_completion_of_groups_members_friends_files_and_paths(tmp_path: Path):
    files = [Attachment(blob_id="ab" * 32, name="old.txt", size=10),
             Attachment(blob_id="cd" * 32, name="new.png", size=2048)]
    completer = ChatCompleter(CompletionData.from_view(
        _view(), {4: "dave"}, roster={1: Role.OWNER, 2: Role.ADMIN, 4: Role.MEMBER}, files=files))
    assert [t for t, _ in _complete(completer, "/chat ")] == ["bob", "carol", '"book club"', "weekend", "2", "3"]
    assert _complete(completer, '/chat "boo') == [('"book club"', "group · 3 unread")]
    assert [t for t, _ in _complete(completer, "/invite ")][:3] == ['"book club"', "weekend", "bob"]
    assert [t for t, _ in _complete(completer, "/invite weekend ")] == ["bob", "carol", "2", "3"]
    assert [t for t, _ in _complete(completer, "/group create trip bob ")] == ["carol", "2", "3"]  # not bob again
    assert _complete(completer, "/kick ") == [("bob", "admin"), ("dave", "member")]  # not me
    assert _complete(completer, "/admin d") == [("dave", "member")]
    assert _complete(completer, "/members w") == [("weekend", "group")]
    assert _complete(completer, "/download ") == [("cdcdcdcd", "new.png, 2.0 KB"), ("abababab", "old.txt, 10 B")]
    (tmp_path / "my notes.txt").write_text("x")
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "sub dir").mkdir()
    found = [t for t, _ in _complete(completer, f"/send-file {tmp_path}/")]
    assert found == [f'"{tmp_path}/my notes.txt"', f"{tmp_path}/plain.txt", f'"{tmp_path}/sub dir']  # quoted if spaced
    assert [t for t, _ in _complete(completer, f"/download abababab {tmp_path}/pl")] == [f"{tmp_path}/plain.txt"]


def test_file_messages_show_name_size_and_the_id_to_download():
    now = datetime(2026, 1, 2, 12, 0)
    sent = int(datetime(2026, 1, 2, 9, 5).timestamp() * 1000)
    blob_id = hashlib.sha256(b"x").hexdigest()
    msg = ChatMessage(thread_id=7, seq=3, sender_uid=2, client_msg_id=3, sent_at_ms=sent, text="the notes",
                      kind=MessageKind.FILE, attachment=Attachment(blob_id=blob_id, name="notes.bin", size=300_000))
    assert render.to_plain(render.message(msg, sender="bob", mine=False, width=80, now=now)) == \
        f"09:05 bob: [file notes.bin, 293 KB · /download {blob_id[:8]}] the notes"
    elsewhere = render.message(msg, sender="bob", mine=False, width=80, here=False, chat="weekend", group=True,
                               now=now)
    assert render.to_plain(elsewhere).startswith("09:05 bob in weekend: [file notes.bin")
    bar = render.to_plain(render.progress("notes.bin", 150_000, 300_000, width=80))
    assert bar == "notes.bin [" + "█" * 12 + "░" * 12 + "]  50%  146 KB of 293 KB"
    assert len(render.to_plain(render.progress("x" * 200, 1, 2, width=60))) < 60  # cut to one line


def test_group_changes_are_sentences():
    def say(change: GroupChange, **kw) -> str | None:
        args = {"actor": "bob", "subject": "carol", "group": "weekend"} | kw
        return render.group_change(change, **args)

    assert say(GroupChange.ADDED) == "bob added carol to weekend"
    assert say(GroupChange.ADDED, me_subject=True) == "bob added you to weekend — /chat weekend to join in"
    assert say(GroupChange.ADDED, group="book club", me_subject=True).endswith('/chat "book club" to join in')
    assert say(GroupChange.REMOVED) == "bob removed carol from weekend"
    assert say(GroupChange.REMOVED, me_subject=True) == "You were removed from weekend by bob"
    assert say(GroupChange.LEFT, subject="carol") == "carol left weekend"
    assert say(GroupChange.RENAMED, new_name="trip") == "bob renamed weekend to trip"
    assert say(GroupChange.ROLE_CHANGED, role=Role.ADMIN) == "bob made carol an admin of weekend"
    assert say(GroupChange.ROLE_CHANGED, role=Role.MEMBER) == "bob made carol a plain member of weekend"
    assert say(GroupChange.ROLE_CHANGED, role=Role.OWNER) == "bob handed weekend over to carol (bob is an admin now)"
    assert say(GroupChange.ROLE_CHANGED, role=Role.OWNER, me_subject=True) == \
        "bob handed weekend over to you: you own it now"
    assert say(GroupChange.ROLE_CHANGED, subject="bob", role=Role.ADMIN) is None  # the handover's second push
    assert say(GroupChange.DISSOLVED) == "weekend was dissolved by bob"
    assert say(GroupChange.DISSOLVED, me_actor=True) == "weekend was dissolved by you"


# ---------------------------------------------------------------------------------------------- end to end


@SQLITE
def test_a_group_is_created_chatted_in_and_its_members_change(users, chat_node, start_repl):
    alice, bob, carol, dave = (users.logged_in(name) for name in ("alice", "bob", "carol", "dave"))
    users.friends(alice, bob)
    users.friends(alice, carol)
    users.friends(bob, dave)  # dave is no friend of alice's: the REPL learns his name from the group
    alice.close()
    repl = start_repl(chat_node.endpoint)
    login(repl, "alice")

    repl.line("/group create weekend bob carol")
    repl.expect("Created the group weekend with bob and carol.")
    repl.expect("── Group weekend · 3 members · no messages yet ──")
    added = bob.next_push(GroupChangedPush)
    assert (added.change, added.subject_uid, added.name) == (GroupChange.ADDED, bob.uid, "weekend")
    thread_id = added.thread_id
    carol.next_push(GroupChangedPush)

    repl.line("hello, group")
    assert bob.next_push(MessagePush).message.text == "hello, group"
    repl.expect(r"^ +hello, group  \d\d:\d\d$")
    bob.send_text("hi from bob", thread_id=thread_id)
    repl.expect(r"^\d\d:\d\d bob: hi from bob$")
    carol.send_text("hi from carol", thread_id=thread_id)
    repl.expect(r"^\d\d:\d\d carol: hi from carol$")

    repl.line("/admin bob")
    repl.expect("bob is an admin of weekend now")
    bob.add_group_members(thread_id, [dave.uid])
    repl.expect(r"★ bob added dave to weekend$")
    dave.send_text("dave here", thread_id=thread_id)
    repl.expect(r"^\d\d:\d\d dave: dave here$")

    repl.line("/kick carol")
    repl.expect("You removed carol from weekend.")
    removed = carol.next_push(GroupChangedPush, where=lambda p: p.change is GroupChange.REMOVED)
    assert (removed.subject_uid, removed.actor_uid) == (carol.uid, alice.uid)
    bob.remove_group_member(thread_id, dave.uid)
    repl.expect(r"★ bob removed dave from weekend$")
    repl.line("/members")
    repl.expect(r"weekend: 2 members, 2 online:")
    repl.expect(r"● alice \(you\)  owner · online$")
    repl.expect(r"● bob  admin · online$")
    repl.line("/invite dave")
    repl.expect("dave is not one of your friends: only friends can be added to a group.")
    repl.line("/leave")
    repl.expect(r"You own weekend: hand it over first \(/owner MEMBER\), or /dissolve it\.")

    club = bob.create_group("book club", [alice.uid]).thread_id
    repl.expect(r'★ bob added you to book club — /chat "book club" to join in$')
    repl.line("/groups")
    repl.expect(r"2 groups:")
    repl.expect(r'book club  2 members  \(/chat "book club"\)$')
    repl.expect(r"weekend  2 members · you own it  \(/chat weekend\)$")
    repl.line('/chat "book club"')
    repl.expect("── Group book club · 2 members · no messages yet ──")
    repl.line("/kick bob")
    repl.expect(r"You cannot remove bob: the owner removes anyone, admins only plain members\.")
    bob.remove_group_member(club, alice.uid)
    repl.expect(r"★ You were removed from book club by bob$")
    repl.expect("The chat with book club is closed.")
    repl.line('/chat "book club"')
    repl.expect("You have no friend or group called book club; /friends and /groups list them.")

    repl.line("/chat weekend")
    repl.expect(r"── Group weekend · 2 members · 4 messages ──")
    repl.expect(r"^\d\d:\d\d dave: dave here$")  # a former member: still named
    repl.line("/dissolve")
    repl.line("yes")
    repl.expect("You dissolved weekend. The chat is closed.")
    assert bob.next_push(GroupChangedPush, where=lambda p: p.change is GroupChange.DISSOLVED).thread_id == thread_id
    repl.assert_clean()


@SQLITE
def test_send_files_to_a_friend_and_download_what_they_send(users, chat_node, start_repl, tmp_path):
    alice, bob = users.logged_in("alice"), users.logged_in("bob")
    users.friends(alice, bob)
    notes = os.urandom(200_000)
    (tmp_path / "notes.bin").write_bytes(notes)
    alice.upload(tmp_path / "notes.bin", chunk_limit=1)  # an upload cut short: the REPL resumes it
    alice.close()
    picture = png(32, 16)
    (tmp_path / "holiday pic.png").write_bytes(picture)
    repl = start_repl(chat_node.endpoint)
    login(repl, "alice")
    repl.line(f"/send-file {tmp_path / 'notes.bin'}")
    repl.expect("You are not in a chat: /chat NAME first.")
    repl.line("/chat bob")
    repl.expect("Chat with bob · online · no messages yet")

    repl.line(f"/send-file {tmp_path / 'notes.bin'} the notes")
    repl.expect(r"Resumed the upload of notes\.bin at 32% \(64 KB were on the server already\)\.")
    repl.expect(r"^notes\.bin \[█{24}\] 100%  195 KB of 195 KB$")
    message = bob.next_push(MessagePush).message
    blob_id = message.attachment.blob_id
    assert (message.kind, message.text, message.attachment.name) == (MessageKind.FILE, "the notes", "notes.bin")
    repl.expect(rf"^ +\[file notes\.bin, 195 KB · /download {blob_id[:8]}\] the notes  \d\d:\d\d$")
    assert bob.download(blob_id) == notes

    repl.line(f'/send-file "{tmp_path / "holiday pic.png"}"')
    message = bob.next_push(MessagePush).message
    assert (message.kind, message.attachment.name, message.attachment.media_type) == \
        (MessageKind.IMAGE, "holiday pic.png", "image/png")
    repl.expect(r"\[image holiday pic\.png, \d+ B · /download [0-9a-f]{8}\]  \d\d:\d\d$")
    assert bob.download(message.attachment.blob_id) == picture

    report = b"the quarterly report\n" * 500
    report_id = bob.upload(report, name="report.txt")
    bob.send_file(report_id, to_uid=alice.uid, caption="read this")
    short = repl.expect(r"^\d\d:\d\d bob: \[file report\.txt, 10 KB · /download ([0-9a-f]{8})\] read this$").group(1)
    assert short == report_id[:8]
    repl.line(f"/download {short[:6]}")
    repl.expect(r"^report\.txt \[█{24}\] 100%  10 KB of 10 KB$")
    repl.expect(rf"Saved report\.txt \(10 KB\) to {re.escape(str(repl.workdir / 'report.txt'))}\.")
    assert (repl.workdir / "report.txt").read_bytes() == report
    repl.line(f"/download {short}")  # never over an existing file
    repl.expect(re.escape(f"to {repl.workdir / 'report (2).txt'}."))
    assert (repl.workdir / "report (2).txt").read_bytes() == report
    repl.line(f"/download {report_id} {tmp_path}")  # the whole id; into a folder
    repl.expect(re.escape(f"to {tmp_path / 'report.txt'}."))
    assert (tmp_path / "report.txt").read_bytes() == report

    repl.line("/download 0000")
    repl.expect("No file with id 0000 was shown in a chat")
    repl.line("/download report.txt")
    repl.expect("report.txt is not a file id")
    repl.line("/send-file no-such-file.bin")
    repl.expect("There is no file no-such-file.bin.")
    repl.line(f"/send-file {tmp_path}")
    repl.expect(r"is a folder; /send-file sends one file\.")
    repl.assert_clean()
