"""Injection and encoding: hostile text is refused or stored byte-exact, never interpreted.

On every backend: SQL metacharacters in usernames are refused by the username
rules; greetings, remarks and messages full of quotes, comment markers, NUL,
combining marks, right-to-left text, emoji sequences and non-characters come
back exactly as sent (no normalisation, no trimming, no truncation at NUL);
text over its limits and invalid UTF-8 on the wire are refused with their
documented errors; search strings with LIKE wildcards and quotes match
nothing they should not.
"""

from __future__ import annotations

import struct

import pytest

from tests.chat import PASSWORD, Users
from tinychat.client.errors import AuthFailedError, InvalidArgumentError, InvalidUsernameError, RateLimitedError
from tinychat.protocol import (
    HEADER,
    CodePurpose,
    Error,
    ErrorCode,
    FriendRequestPush,
    History,
    HistoryPage,
    MessagePush,
    Ping,
    Pong,
    SendMessage,
    encode,
)
from tinychat.testing.hostile import RawClient

pytestmark = pytest.mark.integration

HOSTILE_TEXTS = [
    "'; DROP TABLE messages; --",
    "\" OR \"\"=\"",
    "Robert'); DELETE FROM users WHERE ('1'='1",
    "back\\slash \\' \\\" \\\\ \\0 \\n",
    "100% _wild_ [cards] ^and$ *stars*",
    "/* comment */ -- comment # comment",
    "nul\x00inside\x00",
    "\x00",
    "e\u0301 vs \u00e9",  # combining acute accent vs precomposed: must stay distinct (no normalisation)
    "\u202eRTL override\u202c and \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467 \U0001f44d\U0001f3fd \U0001f1eb\U0001f1f7",
    "\uffff\ufffe\U0010ffff\ufeff",
    "  leading and trailing spaces  ",
    "line\r\nbreaks\tand\ttabs\n",
    "\u0000\u0001\u001b[31mterminal escape\u001b[0m\u007f",
]


def _pair(users: Users):
    alice, bob = users.logged_in(), users.logged_in()
    return alice, bob


def test_sql_metacharacters_in_usernames_are_refused_by_the_rules(users: Users, smtp_server):
    client = users.connect()
    client.request_code("victim@example.com", CodePurpose.REGISTER)
    code = smtp_server.code_for("victim@example.com")
    for name in ["a'; DROP TABLE users; --", "bob\" OR 1=1", "x%", "under_score'", "nul\x00name", "éric", "ab",
                 "robert'--", "spaces here"]:  # (over 32 bytes cannot even be framed: a wire limit)
        with pytest.raises(InvalidUsernameError):
            client.register(name, "victim@example.com", PASSWORD, code)
    assert client.register("victim", "victim@example.com", PASSWORD, code)  # the table is intact
    login = users.connect()
    for identifier in ["' OR '1'='1", "victim' --", "victim\x00", "10000 OR 1=1"]:
        with pytest.raises((AuthFailedError, RateLimitedError)):
            login.login(identifier, "' OR '1'='1")
    assert users.connect().login("VICTIM", PASSWORD).username == "victim"


def test_hostile_text_comes_back_byte_exact(users: Users):
    alice, bob = _pair(users)
    greeting = "hi 👋 '; DROP TABLE friend_requests; -- \x00 e\u0301" + "g" * 150
    remark = "my \"friend\" \\ % _ \u202e\x00" + "🙂" * 10
    request_id = alice.add_friend(bob.uid, greeting)
    pushed = bob.next_push(FriendRequestPush)
    assert pushed.request.greeting == greeting
    assert [r.greeting for r in bob.friend_requests().incoming] == [greeting]
    assert [r.greeting for r in alice.friend_requests().outgoing] == [greeting]
    assert [r.greeting for r in bob.sync().friend_requests] == [greeting]
    thread_id = bob.accept_friend(request_id, remark).thread_id
    assert [f.remark for f in bob.friends()] == [remark]
    longest = "😀" * 4000  # the most a message may hold: 4,000 characters, 16,000 bytes
    texts = [*HOSTILE_TEXTS, longest]
    for text in texts:
        ack = alice.send_text(text, to_uid=bob.uid)
        push = bob.next_push(MessagePush)
        assert push.message.text.encode("utf-8") == text.encode("utf-8")
        assert push.message.seq == ack.seq
    stored: list[str] = []
    before = 0
    while True:
        page = bob.history(thread_id, before_seq=before, limit=5)
        stored[:0] = [m.text for m in page.messages]
        if not page.has_more:
            break
        before = page.messages[0].seq
    assert [t.encode("utf-8") for t in stored] == [t.encode("utf-8") for t in texts]


def test_text_over_its_limits_is_refused_and_nothing_is_stored(users: Users, chat_node):
    alice, bob = _pair(users)
    thread_id = users.friends(alice, bob)
    with pytest.raises(InvalidArgumentError):  # 4,001 characters (bytes are within the limit)
        alice.send_text("x" * 4001, to_uid=bob.uid)
    with pytest.raises(InvalidArgumentError):
        alice.send_text("", to_uid=bob.uid)
    raw = RawClient.to(chat_node)
    raw.handshake()
    raw.login(alice.client.user.username, PASSWORD)
    # A greeting declared 300 bytes long where 256 is the maximum: malformed, connection closed.
    body = struct.pack(">IQ", 41, bob.uid) + struct.pack(">H", 300) + b"g" * 300
    raw.send(HEADER.pack(0x0203, len(body)) + body)
    (error,) = [m for m in raw.until_closed() if isinstance(m, Error)]
    assert (error.code, error.request_id) == (ErrorCode.MALFORMED_FRAME, 41)
    assert bob.history(thread_id).messages == []


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82",
                                 b"\x80abc"], ids=["ff", "overlong-nul", "surrogate", "beyond-10ffff",
                                                   "truncated", "lone-continuation"])
def test_invalid_utf8_on_the_wire_is_a_malformed_frame(users: Users, chat_node, bad: bytes):
    alice, bob = _pair(users)
    thread_id = users.friends(alice, bob)
    raw = RawClient.to(chat_node)
    raw.handshake()
    raw.login(alice.client.user.username, PASSWORD)
    good = encode(SendMessage(request_id=42, thread_id=thread_id, to_uid=0, client_msg_id=7, text="x" * len(bad)))
    frame = good[:-len(bad)] + bad  # same lengths, invalid bytes where the text was
    raw.send(frame)
    answers = raw.until_closed()
    assert [(a.code, a.request_id) for a in answers if isinstance(a, Error)] == [(ErrorCode.MALFORMED_FRAME, 42)]
    assert answers[-1].code is ErrorCode.MALFORMED_FRAME
    page = bob.history(thread_id)
    assert page.messages == []  # nothing was stored
    with RawClient.to(chat_node) as again:  # and the node goes on serving
        again.handshake()
        assert isinstance(again.request(Ping), Pong)
        again.login(alice.client.user.username, PASSWORD)
        assert isinstance(again.request(History, thread_id=thread_id, cursor_seq=0, direction=0, limit=1),
                          HistoryPage)


def test_search_strings_are_matched_literally(users: Users):
    for name in ("alice_1", "alicex1", "alice", "bob"):
        users.register(name)
    searcher = users.logged_in()
    expectations = {
        "alice_": {"alice_1"},  # `_` is a literal underscore, not LIKE's any-character
        "alice": {"alice", "alice_1", "alicex1"},
        "ALICE_": {"alice_1"},
        "a_": set(),
        "%": set(), "_": set(), "'": set(), '"': set(), "\\": set(), "--": set(), "%_%": set(),
        "alice%": set(), "alice'": set(), "' OR '1'='1": set(), "alice'; --": set(), "1 OR 1=1": set(),
        "\x00": set(), "alice\x00": set(), "*": set(), "alice\\": set(),
    }
    for query, expected in expectations.items():
        found = {u.username for u in searcher.search(query)}
        assert found == expected, query
