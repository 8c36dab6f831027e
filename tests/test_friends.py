"""Search, friend requests, friend list and presence, end to end on both backends."""

from __future__ import annotations

import pytest

from tests.chat import PASSWORD
from tinychat.client.errors import (
    AlreadyFriendsError,
    CannotFriendSelfError,
    FriendRequestNotFoundError,
    NotFriendsError,
    UserNotFoundError,
)
from tinychat.protocol import (
    FriendRemovedPush,
    FriendRequestPush,
    FriendResponsePush,
    PresencePush,
)

pytestmark = pytest.mark.integration


def test_search_by_uid_and_by_username_prefix(users):
    alice = users.logged_in("alice")
    _, _, bob_uid = users.register("Bobby")
    users.register("bobcat")
    users.register("robert")
    found = alice.search("BOB")
    assert [u.username for u in found] == ["Bobby", "bobcat"]
    assert not any(u.is_friend for u in found)
    assert [u.uid for u in alice.search(str(bob_uid))] == [bob_uid]
    assert alice.search("nobody") == []
    assert alice.search("x' OR '1'='1") == []


def test_search_returns_at_most_twenty(users):
    alice = users.logged_in("alice")
    for i in range(22):
        users.register(f"zed{i:02d}")
    assert len(alice.search("zed")) == 20


def test_friend_request_accepted_with_both_sides_told(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    request_id = alice.add_friend(bob.uid, "hello bob")
    push = bob.next_push(FriendRequestPush)
    assert push.request.from_uid == alice.uid and push.request.greeting == "hello bob"
    resolved = bob.accept_friend(request_id, remark="from work")
    assert resolved.accepted and resolved.peer_uid == alice.uid and resolved.thread_id
    answer = alice.next_push(FriendResponsePush)
    assert answer.accepted and answer.peer_uid == bob.uid and answer.thread_id == resolved.thread_id
    (bob_friend,) = bob.friends()
    assert (bob_friend.uid, bob_friend.remark, bob_friend.online) == (alice.uid, "from work", True)
    (alice_friend,) = alice.friends()
    assert alice_friend.uid == bob.uid and alice_friend.thread_id == resolved.thread_id
    assert [u.is_friend for u in alice.search("bob")] == [True]


def test_friend_request_while_offline_waits_in_the_pending_list(users):
    alice = users.logged_in("alice")
    bob_name, _, bob_uid = users.register("bob")
    request_id = alice.add_friend(bob_uid, "are you there?")
    bob = users.connect()
    bob.login(bob_name, PASSWORD)
    state = bob.sync()
    assert [r.friend_request_id for r in state.friend_requests] == [request_id]
    pending = bob.friend_requests()
    assert [r.greeting for r in pending.incoming] == ["are you there?"]
    assert [r.to_uid for r in alice.friend_requests().outgoing] == [bob_uid]


def test_reject(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    request_id = alice.add_friend(bob.uid)
    assert not bob.reject_friend(request_id).accepted
    assert not alice.next_push(FriendResponsePush).accepted
    assert alice.friends() == [] and bob.friend_requests().incoming == []
    with pytest.raises(FriendRequestNotFoundError):
        bob.accept_friend(request_id)


def test_friend_request_refusals(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    with pytest.raises(CannotFriendSelfError):
        alice.add_friend(alice.uid)
    with pytest.raises(UserNotFoundError):
        alice.add_friend(99_999_999)
    first = alice.add_friend(bob.uid, "one")
    assert alice.add_friend(bob.uid, "two") == first
    assert len(bob.friend_requests().incoming) == 1
    with pytest.raises(FriendRequestNotFoundError):
        alice.accept_friend(first)  # addressed to bob, not alice
    bob.accept_friend(first)
    alice.next_push(FriendResponsePush)
    with pytest.raises(AlreadyFriendsError):
        alice.add_friend(bob.uid)


def test_remove_friend_ends_messaging_both_ways(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    thread_id = users.friends(alice, bob)
    alice.send_text("before", to_uid=bob.uid)
    alice.remove_friend(bob.uid)
    assert bob.next_push(FriendRemovedPush).uid == alice.uid
    with pytest.raises(NotFriendsError):
        alice.send_text("after", to_uid=bob.uid)
    with pytest.raises(NotFriendsError):
        bob.send_text("after", to_uid=alice.uid)
    with pytest.raises(NotFriendsError):
        bob.send_text("after", thread_id=thread_id)
    with pytest.raises(NotFriendsError):
        alice.remove_friend(bob.uid)
    assert [m.text for m in bob.history(thread_id).messages] == ["before"]


def test_presence_pushes_on_login_logout_and_disconnect(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    users.friends(alice, bob)
    bob.logout()
    assert alice.next_push(PresencePush, where=lambda p: not p.online).uid == bob.uid
    bob.login("bob", PASSWORD)
    assert alice.next_push(PresencePush, where=lambda p: p.online).uid == bob.uid
    assert alice.friends()[0].online
    bob.close()
    assert alice.next_push(PresencePush, where=lambda p: not p.online).uid == bob.uid
    assert not alice.friends()[0].online


def test_a_kicked_session_does_not_make_its_user_look_offline(users):
    alice = users.logged_in("alice")
    bob = users.logged_in("bob")
    users.friends(alice, bob)
    alice.drain()
    again = users.connect()
    again.login("bob", PASSWORD)
    bob.wait_closed()
    assert alice.friends()[0].online
    assert all(p.online for p in alice.drain() if isinstance(p, PresencePush))
