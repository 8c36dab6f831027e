"""The terminal REPL: its parts in-process, and the real app end to end against a real node.

The end-to-end tests run the REPL in a subprocess through `tests.repl_driver`:
they type keys into it and wait, with a deadline, for what it shows; the other
user is a client-library user in this process (`tests.chat`).
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime

import pyotp
import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from twisted.internet import error as net_error

from tests.chat import PASSWORD, Users
from tests.conftest import FAST_HASHING, smtp_args
from tests.repl_driver import login
from tinychat.client import errors
from tinychat.client.client import ConnectionState
from tinychat.client.repl import render
from tinychat.client.repl.commands import COMMANDS, ChatText, Invocation, lookup, parse
from tinychat.client.repl.completion import ChatCompleter, CompletionData
from tinychat.client.repl.failures import UsageError
from tinychat.client.view import Friend, LocalView, ThreadState
from tinychat.protocol import (
    Attachment,
    ChatMessage,
    FriendRequestInfo,
    FriendRequestPush,
    FriendResponsePush,
    MessageKind,
    MessagePush,
    ReadMarkPush,
)
from tinychat.testing.nodes import run_node

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
CTRL_N = "\x0e"

# ---------------------------------------------------------------------------------------------- parts


def test_parse_commands_arguments_and_chat_text():
    inv = parse("/add bob hello there, it's me")
    assert isinstance(inv, Invocation)
    assert inv.command.name == "add" and inv["USER"] == "bob" and inv["greeting"] == "hello there, it's me"
    assert parse("/ADD bob").command is lookup("add")
    assert parse("/history more")["more"] == "more"
    assert parse("/2fa ON")["switch"] == "on"
    assert parse("/exit").command.name == "quit"
    assert parse("hello /add") == ChatText("hello /add")
    assert parse("//shrug") == ChatText("/shrug")
    assert parse("   ") is None
    for bad, message in [("/frob", "Unknown command /frob"), ("/add", "Usage: /add USER [greeting]"),
                         ("/reject 1 2", "Usage: /reject ID"), ("/2fa maybe", "Usage: /2fa [on|off]")]:
        with pytest.raises(UsageError, match=re.escape(message)):
            parse(bad)


def test_every_command_has_a_one_line_summary():
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    for wanted in ["help", "register", "login", "logout", "reset", "2fa", "search", "add", "requests", "accept",
                   "reject", "friends", "chat", "history", "unread", "whoami", "quit", "group", "groups", "invite",
                   "kick", "members", "leave", "send-file", "download"]:
        assert wanted in names
    for command in COMMANDS:
        assert command.summary and "\n" not in command.summary and command.summary.endswith(".")


def _view() -> LocalView:
    view = LocalView(uid=1)
    view.friends = {2: Friend(2, "bob", online=True, thread_id=7), 3: Friend(3, "carol", thread_id=8)}
    view.threads = {7: ThreadState(7, peer_uid=2, last_seq=5, read_seq=2), 8: ThreadState(8, peer_uid=3)}
    view.friend_requests = {41: FriendRequestInfo(friend_request_id=41, from_uid=4, from_username="dave", to_uid=1,
                                                  to_username="alice", greeting="", created_at_ms=0)}
    return view


def _complete(completer: ChatCompleter, text: str) -> list[tuple[str, str]]:
    completions = completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
    return [(c.text, c.display_meta_text) for c in completions]


def test_completion_of_commands_friends_uids_requests_and_choices():
    completer = ChatCompleter()
    assert ("/history", lookup("history").summary) in _complete(completer, "/hi")
    assert [t for t, _ in _complete(completer, "/h")] == ["/help", "/history"]
    assert _complete(completer, "/chat b") == []  # nothing known yet
    completer.data = CompletionData.from_view(_view(), {5: "erin", 2: "bob"})  # rebuilt: the view changed
    assert _complete(completer, "/chat b") == [("bob", "online · 3 unread")]
    assert [t for t, _ in _complete(completer, "/chat ")] == ["bob", "carol", "2", "3"]
    assert [t for t, _ in _complete(completer, "/add ")] == ["bob", "carol", "dave", "erin", "2", "3"]
    assert _complete(completer, "/accept ") == [("41", "from dave")]
    assert [t for t, _ in _complete(completer, "/2fa o")] == ["on", "off"]
    assert [t for t, _ in _complete(completer, "/help hi")] == ["history"]
    assert _complete(completer, "/add bob hel") == []  # the greeting is free text
    assert _complete(completer, "hello b") == []  # chat text is never completed


def test_messages_look_like_bubbles_mine_right_theirs_left():
    now = datetime(2026, 1, 2, 12, 0)
    sent = int(datetime(2026, 1, 2, 9, 5).timestamp() * 1000)
    msg = ChatMessage(thread_id=7, seq=1, sender_uid=2, client_msg_id=1, sent_at_ms=sent, text="hi there")
    theirs = render.message(msg, sender="bob", mine=False, width=60, now=now)
    assert render.to_plain(theirs) == "09:05 bob: hi there"
    assert ("class:theirs.name", "bob") in theirs
    mine = render.message(msg, sender="alice", mine=True, width=60, now=now)
    assert render.to_plain(mine) == " " * 44 + "hi there  09:05"  # ends one column short of the edge
    assert ("class:mine", "hi there") in mine
    elsewhere = render.message(msg, sender="bob", mine=False, width=60, here=False, now=now)
    assert ("class:elsewhere.name", "bob") in elsewhere
    yesterday = render.message(msg, sender="bob", mine=False, width=60, now=datetime(2026, 1, 3, 8, 0))
    assert render.to_plain(yesterday).startswith("2026-01-02 09:05 bob: ")
    two_lines = ChatMessage(thread_id=7, seq=2, sender_uid=2, client_msg_id=2, sent_at_ms=sent, text="one\ntwo")
    assert render.to_plain(render.message(two_lines, sender="bob", mine=False, width=60, now=now)) == \
        "09:05 bob: one\n           two"
    image = ChatMessage(thread_id=7, seq=3, sender_uid=2, client_msg_id=3, sent_at_ms=sent, text="look",
                        kind=MessageKind.IMAGE, attachment=Attachment(name="cat.png", size=123_456))
    assert render.to_plain(render.message(image, sender="bob", mine=False, width=60, now=now)) == \
        "09:05 bob: [image cat.png, 121 KB] look"


def test_every_server_error_is_a_sentence():
    assert render.describe_error(errors.RateLimitedError("slow down", 2500)) == \
        "Too many attempts; try again in 3 s."
    assert render.describe_error(errors.AuthFailedError("x")) == "Wrong username or password."
    for cls in errors.ERROR_CLASSES.values():
        text = render.describe_error(cls("raw server text", 1000))
        assert text.endswith(".") and "Traceback" not in text
    assert "down" in render.describe_error(errors.ConnectionClosedError("connection closed"))
    assert render.describe_error(net_error.ConnectionRefusedError()) == \
        "Cannot reach the server: the connection was refused (is the server running?)."
    assert render.describe_error(KeyError("x")).startswith("Something went wrong")


def test_toolbar_shows_state_user_chat_unread_and_requests():
    status = render.Status(ConnectionState.LOGGED_IN, username="alice", chat="bob", unread=3, requests=1)
    text = render.to_plain(render.toolbar(status))
    for part in ["online", "alice", "chat: bob", "3 unread", "1 friend request"]:
        assert part in text
    down = render.to_plain(render.toolbar(render.Status(ConnectionState.RECONNECTING, username="alice")))
    assert "reconnecting" in down


def test_importing_the_repl_installs_no_reactor_and_main_installs_asyncio():
    code = ("import sys, tinychat.client.repl, tinychat.client.repl.app\n"
            "assert 'twisted.internet.reactor' not in sys.modules, 'a reactor was installed on import'\n"
            "assert 'txredisapi' not in sys.modules and 'tinychat.server' not in sys.modules\n"
            "from tinychat.client.repl.cli import install_asyncio_reactor\n"
            "install_asyncio_reactor()\n"
            "from twisted.internet import reactor\n"
            "print(type(reactor).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "AsyncioSelectorReactor"


# ---------------------------------------------------------------------------------------------- end to end


@SQLITE
def test_register_login_befriend_and_chat_with_a_library_user(chat_node, users, smtp_server, start_repl):
    bob = users.logged_in("bob")
    repl = start_repl(chat_node.endpoint)
    repl.expect("Connected to")
    for answer in ["/register", "alice", "alice@example.com", PASSWORD, PASSWORD]:
        repl.line(answer)
    repl.expect("A code was mailed to alice@example.com")
    repl.line(smtp_server.code_for("alice@example.com"))
    alice_uid = int(repl.expect(r"Welcome, alice! Your account is ready \(uid (\d+)\)").group(1))
    login(repl, "alice")
    repl.expect("0 of 0 friends online")

    repl.line("/add bob hello from the terminal")
    repl.expect(r"Friend request #\d+ sent to bob")
    request = bob.next_push(FriendRequestPush).request
    assert (request.from_uid, request.greeting) == (alice_uid, "hello from the terminal")
    bob.accept_friend(request.friend_request_id)
    repl.expect("bob accepted your friend request")

    repl.line("/chat bob")
    repl.expect("Chat with bob · online · no messages yet")
    repl.line("hi bob, typed in the REPL")
    message = bob.next_push(MessagePush).message
    assert (message.text, message.sender_uid) == ("hi bob, typed in the REPL", alice_uid)
    repl.expect(r"^ +hi bob, typed in the REPL  \d\d:\d\d$")  # mine: right-aligned, once acknowledged
    bob.send_text("hi alice, from the library", to_uid=alice_uid)
    repl.expect(r"^\d\d:\d\d bob: hi alice, from the library$")
    # The chat is on screen, so the REPL marks bob's message read: bob gets the receipt.
    bob.next_push(ReadMarkPush, where=lambda p: p.uid == alice_uid and p.read_seq == 2)

    repl.line("/friends")
    repl.expect(r"● bob  online$")
    repl.line("/whoami")
    repl.expect(rf"alice \(uid {alice_uid}, alice@example.com\); two-factor login off")
    repl.line("/quit")
    repl.expect("Bye.")
    assert repl.quit() == 0
    repl.assert_clean()
    history = (repl.workdir / "history").read_text()
    assert "/login alice" in history and "hi bob, typed in the REPL" in history
    assert PASSWORD not in history and "alice@example.com" not in history  # answers to questions are not kept


@SQLITE
def test_a_friend_request_arriving_while_typing_is_shown_and_the_line_survives(chat_node, users, start_repl):
    _, _, alice_uid = users.register("alice")
    repl = start_repl(chat_node.endpoint)
    login(repl, "alice")
    repl.type("/search bo")  # half a line, not sent yet
    bob = users.logged_in("bob")
    request_id = bob.add_friend(alice_uid, "are you there?")
    repl.expect(rf'Friend request #{request_id} from bob: "are you there\?" — /accept {request_id}')
    repl.type("b\r")  # finishes the line typed before the request came in
    repl.expect(r"alice> /search bob$")
    repl.expect(rf"bob  uid {bob.uid} · /add bob")
    repl.line("/requests")
    repl.expect(rf'#{request_id} from bob "are you there\?"')
    repl.line(f"/accept {request_id} from work")
    repl.expect("You and bob are friends now: /chat bob to talk.")
    push = bob.next_push(FriendResponsePush)
    assert push.accepted and push.peer_uid == alice_uid
    repl.line("/friends")
    repl.expect(r"● bob  online · “from work”$")
    repl.assert_clean()


@SQLITE
def test_unread_ctrl_n_and_history_paging(users, chat_node, start_repl):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    thread_id = users.friends(alice, bob)
    for i in range(1, 46):
        bob.send_text(f"message number {i}", thread_id=thread_id)
    alice.close()
    repl = start_repl(chat_node.endpoint)
    login(repl, "alice")
    repl.expect(r"1 of 1 friends online · 45 unread messages \(/unread, Ctrl-N\)")
    repl.line("/unread")
    repl.expect(r"bob: 45 unread  \(/chat bob\)")

    repl.type(CTRL_N)  # the next chat with unread messages
    start = repl.expect("Chat with bob · online · 45 messages").end()
    repl.expect(r"… 25 earlier \(/history more\)")
    repl.expect(r"bob: message number 45$")
    newest_page = repl.since(start)
    assert "message number 26\n" in newest_page and "message number 25\n" not in newest_page
    bob.next_push(ReadMarkPush, where=lambda p: p.uid == alice.uid and p.read_seq == 45)

    repl.line("/history more")
    start = repl.expect("earlier messages #6–#25").end()
    repl.expect(r"bob: message number 25$")
    repl.expect(r"… more: /history more")
    assert "message number 5\n" not in repl.since(start) and "message number 6\n" in repl.since(start)
    repl.line("/history more")
    repl.expect("earlier messages #1–#5")
    repl.expect(r"bob: message number 5$")
    repl.expect("── the beginning ──")
    repl.line("/history more")
    repl.expect("That is the beginning of your conversation with bob.")
    repl.line("/unread")
    repl.expect("No unread messages.")
    repl.type(CTRL_N)
    repl.expect("No other chat has unread messages.")
    repl.assert_clean()


@SQLITE
def test_refusals_and_mistakes_are_sentences(users, chat_node, start_repl):
    users.register("alice")
    users.register("carol")
    repl = start_repl(chat_node.endpoint)
    repl.line("/login alice")
    repl.line("not the password")
    repl.expect("Wrong username or password.")
    repl.line("/friends")
    repl.expect("Log in first: /login NAME, or /register for a new account.")
    repl.line("/frobnicate now")
    repl.expect("Unknown command /frobnicate; /help lists the commands.")
    repl.line("hello?")
    repl.expect("You are not in a chat")
    login(repl, "alice")
    repl.line("/add")
    repl.expect(r"Usage: /add USER \[greeting\]")
    repl.line("/add nosuchuser")
    repl.expect("There is no user called nosuchuser.")
    repl.line("/add alice")
    repl.expect("You cannot send a friend request to yourself.")
    repl.line("/accept 999")
    repl.expect("There is no pending friend request with that id for you")
    repl.line("/chat carol")
    repl.expect("carol is not one of your friends; /add carol to ask them first.")
    repl.line("/history")
    repl.expect("You are not in a chat: /chat NAME first.")
    repl.line("/register")
    repl.expect("You are logged in as alice; /logout first.")
    repl.line("/logout")
    repl.line("/register")
    repl.type("ali\x03")  # Ctrl-C at a question cancels the command, not the session
    repl.expect("Cancelled.")
    repl.type("some words\x03")  # Ctrl-C at the prompt clears the line
    repl.line("/help")
    repl.expect(r"^/accept ID \[remark\] +Accept friend request ID")
    repl.assert_clean()


@SQLITE
def test_two_factor_login_and_password_reset(users, chat_node, smtp_server, start_repl):
    users.register("alice")
    repl = start_repl(chat_node.endpoint)
    login(repl, "alice")
    repl.line("/2fa on")
    repl.expect(r"otpauth://totp/")
    secret = repl.expect(r"Secret: ([A-Z2-7]+)$").group(1)
    repl.line(pyotp.TOTP(secret).now())
    repl.expect("Two-factor login is on")
    repl.line("/logout")
    repl.expect("Logged out alice.")
    repl.line("/login alice")
    repl.line(PASSWORD)
    repl.line("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")  # asked for: the server wants a code
    repl.expect("That authenticator code is not right")
    repl.line("/login alice")
    repl.line(PASSWORD)
    repl.line(pyotp.TOTP(secret).now())
    repl.expect("Logged in as alice.")
    repl.line("/2fa off")
    repl.line(pyotp.TOTP(secret).now())
    repl.expect("Two-factor login is off.")

    repl.line("/reset")
    repl.expect("You are logged in as alice; /logout first.")
    repl.line("/logout")
    repl.line("/reset")
    repl.line("")  # accepts the default: the address of the last login
    repl.expect("A code was mailed to alice@example.com")
    repl.line(smtp_server.code_for("alice@example.com"))
    repl.line("a brand new password")
    repl.line("a brand new password")
    repl.expect("Your password is changed")
    repl.line("/login alice")
    repl.line(PASSWORD)
    repl.expect("Wrong username or password.")
    login(repl, "alice", "a brand new password")
    repl.assert_clean()


@SQLITE
def test_too_many_failed_logins_say_when_to_try_again(users, chat_node, start_repl):
    users.register("alice")
    repl = start_repl(chat_node.endpoint)
    for _ in range(5):
        repl.line("/login alice")
        repl.line("wrong password")
        repl.expect("Wrong username or password.")
    repl.line("/login alice")
    repl.line("wrong password")
    repl.expect(r"Too many attempts; try again in \d+ s\.")
    repl.assert_clean()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_loss_is_shown_and_the_session_comes_back(tmp_path, smtp_server, start_repl):
    port = _free_port()
    args = ["--listen", f"tcp:{port}:interface=127.0.0.1", "--db", f"sqlite:///{tmp_path / 'chat.sqlite3'}",
            "--node-id", "restartable", *FAST_HASHING, *smtp_args(smtp_server)]
    endpoint = f"tcp:host=127.0.0.1:port={port}"
    with run_node(args, tmp_path) as node:
        users = Users(node.endpoint, smtp_server.code_for)
        alice = users.logged_in("alice")
        bob = users.logged_in("bob")
        users.friends(alice, bob)
        alice.close()
        repl = start_repl(endpoint)
        login(repl, "alice")
        users.close()
        node.stop(signal.SIGKILL)  # no goodbye: the connection just breaks
        repl.expect("Connection to the server lost; reconnecting…")
    time.sleep(0.5)
    with run_node(args, tmp_path) as node:
        repl.expect(f"Reconnected to {re.escape(endpoint)}. Resuming the session…", timeout=60)
        repl.expect("Back online as alice.")
        users = Users(node.endpoint, smtp_server.code_for)
        bob = users.connect()
        bob.login("bob", PASSWORD)
        bob.send_text("are you back?", to_uid=alice.uid)
        repl.expect(r"bob: are you back\?$")
        users.close()
    repl.expect("The server is shutting down; reconnecting to the service…")  # a clean stop says so
    repl.assert_clean()
