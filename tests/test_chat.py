"""One-to-one chat: durable acks, dense seqs, offline delivery, history, read marks."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from tests.chat import PASSWORD
from tests.reactor_thread import call
from tinychat.client.errors import InvalidArgumentError, NotFriendsError, ThreadNotFoundError
from tinychat.protocol import MessagePush, ReadMarkPush

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    thread_id = users.friends(alice, bob)
    return alice, bob, thread_id


def test_register_login_search_befriend_chat_history(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    (found,) = alice.search("bo")
    request_id = alice.add_friend(found.uid, "hi, it's alice")
    thread_id = bob.accept_friend(request_id).thread_id
    ack = alice.send_text("hello bob", to_uid=bob.uid)
    assert (ack.thread_id, ack.seq) == (thread_id, 1)
    push = bob.next_push(MessagePush).message
    assert (push.text, push.sender_uid, push.seq, push.thread_id) == ("hello bob", alice.uid, 1, thread_id)
    assert push.sent_at_ms == ack.sent_at_ms
    reply = bob.send_text("hi alice", thread_id=thread_id)
    assert reply.seq == 2
    assert alice.next_push(MessagePush).message.text == "hi alice"
    page = alice.history(thread_id)
    assert [(m.seq, m.text) for m in page.messages] == [(1, "hello bob"), (2, "hi alice")]
    assert not page.has_more


def test_only_friends_can_message(users):
    alice = users.logged_in("alice")
    mallory = users.logged_in("mallory")
    with pytest.raises(NotFriendsError):
        alice.send_text("hi", to_uid=mallory.uid)


def test_text_length_rules(pair):
    alice, bob, thread_id = pair
    with pytest.raises(InvalidArgumentError):
        alice.send_text("", to_uid=bob.uid)
    with pytest.raises(InvalidArgumentError):
        alice.send_text("x" * 4001, to_uid=bob.uid)
    assert alice.send_text("é" * 4000, to_uid=bob.uid).seq == 1
    assert alice.send_text("🙂" * 4000, to_uid=bob.uid).seq == 2
    with pytest.raises(InvalidArgumentError):
        alice.send_text("both", to_uid=bob.uid, thread_id=thread_id)


def test_resend_with_the_same_client_msg_id_returns_the_first_ack(pair):
    alice, bob, thread_id = pair
    first = alice.send_text("once", to_uid=bob.uid, client_msg_id=424242)
    again = alice.send_text("once", to_uid=bob.uid, client_msg_id=424242)
    assert (again.thread_id, again.seq, again.sent_at_ms) == (first.thread_id, first.seq, first.sent_at_ms)
    assert [m.text for m in bob.history(thread_id).messages] == ["once"]
    big = alice.send_text("u64 key", to_uid=bob.uid, client_msg_id=2**64 - 1)
    assert alice.send_text("u64 key", to_uid=bob.uid, client_msg_id=2**64 - 1).seq == big.seq
    assert bob.history(thread_id).messages[-1].client_msg_id == 2**64 - 1


def test_offline_messages_arrive_through_sync(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    thread_id = users.friends(alice, bob)
    bob.logout()
    for i in range(5):
        alice.send_text(f"while you were away {i}", to_uid=bob.uid)
    bob.login("bob", PASSWORD)
    (thread,) = bob.sync().threads
    assert (thread.thread_id, thread.last_seq, thread.read_seq, thread.unread) == (thread_id, 5, 0, 5)
    assert thread.peer_uid == alice.uid and thread.title == "alice"
    missed = bob.fetch_since(thread_id, 0)
    assert [m.seq for m in missed] == [1, 2, 3, 4, 5]
    bob.mark_read(thread_id, 5)
    assert bob.sync().threads[0].unread == 0
    # The sender has read what it sent.
    assert alice.sync().threads[0].unread == 0


def test_mark_read_moves_forward_only_and_tells_the_peer(pair):
    alice, bob, thread_id = pair
    for i in range(3):
        alice.send_text(f"m{i}", to_uid=bob.uid)
    bob.mark_read(thread_id, 2)
    receipt = alice.next_push(ReadMarkPush)
    assert (receipt.thread_id, receipt.uid, receipt.read_seq) == (thread_id, bob.uid, 2)
    bob.mark_read(thread_id, 1)
    assert bob.sync().threads[0].unread == 1
    bob.mark_read(thread_id, 99)
    assert bob.sync().threads[0].read_seq == 3


def test_history_pages_walk_back_with_a_cursor(pair):
    alice, bob, thread_id = pair

    def send_all():
        return defer.gatherResults([alice.client.send_text(f"n{i}", to_uid=bob.uid) for i in range(250)])

    call(send_all, timeout=60)
    seen = []
    cursor = 0
    while True:
        page = bob.history(thread_id, before_seq=cursor, limit=100)
        seen = [m.seq for m in page.messages] + seen
        if not page.has_more:
            break
        cursor = page.messages[0].seq
    assert seen == list(range(1, 251))
    assert [m.seq for m in bob.history_after(thread_id, 240, limit=5).messages] == [241, 242, 243, 244, 245]
    with pytest.raises(InvalidArgumentError):
        bob.history(thread_id, limit=101)


def test_only_participants_read_history_or_mark_read(users, pair):
    alice, bob, thread_id = pair
    alice.send_text("private", to_uid=bob.uid)
    eve = users.logged_in("eve")
    with pytest.raises(ThreadNotFoundError):
        eve.history(thread_id)
    with pytest.raises(ThreadNotFoundError):
        eve.mark_read(thread_id, 1)
    with pytest.raises(ThreadNotFoundError):
        eve.send_text("hi", thread_id=thread_id)


def test_concurrent_senders_get_dense_seqs(pair):
    """20 concurrent streams x 500 messages into one thread: seqs 1..10,000, none lost or doubled."""
    alice, bob, thread_id = pair

    def stream(client, target, count):
        @defer.inlineCallbacks
        def run():
            acks = []
            for _ in range(count):
                acks.append((yield client.send_text("x", to_uid=target)))
            return acks

        return run()

    def everything():
        streams = [stream(alice.client, bob.uid, 500) for _ in range(10)]
        streams += [stream(bob.client, alice.uid, 500) for _ in range(10)]
        return defer.gatherResults(streams)

    results = call(everything, timeout=300)
    seqs = sorted(ack.seq for acks in results for ack in acks)
    assert seqs == list(range(1, 10_001))
    for acks in results:  # each stream's own messages are in order
        assert [a.seq for a in acks] == sorted(a.seq for a in acks)
    stored = bob.fetch_since(thread_id, 0)
    assert [m.seq for m in stored] == list(range(1, 10_001))
