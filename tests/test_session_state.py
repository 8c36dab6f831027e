"""A session's starting state (friends and threads) as the store reads it at login, on SQLite and MariaDB."""

from __future__ import annotations

import pytest

from tests.reactor_thread import call
from tinychat.server.store.sql import SqlStore

pytestmark = pytest.mark.integration

NOW = 1_700_000_000_000


def _befriend(store: SqlStore, a: int, b: int) -> int:
    request, _ = call(store.create_friend_request, a, b, "hi", NOW)
    _, thread_id = call(store.resolve_friend_request, request.id, b, True, "", NOW)
    return thread_id


def _listed_state(store: SqlStore, uid: int) -> tuple[dict[int, int], dict[int, int]]:
    """The same state from the list queries that FRIENDS and THREADS answer with."""
    friends = {row.uid: row.thread_id for row in call(store.friends, uid)}
    threads = {row.thread_id: row.peer_uid for row in call(store.threads, uid)}
    return friends, threads


def test_login_state_matches_the_friend_and_thread_lists(store: SqlStore):
    alice, bob, carol, dave, erin = (call(store.create_user, name, f"{name}@example.org", "x", NOW)
                                     for name in ("alice", "bob", "carol", "dave", "erin"))
    with_bob = _befriend(store, alice, bob)
    with_carol = _befriend(store, carol, alice)
    group = call(store.create_group, alice, "team", [bob, dave], NOW)
    call(store.add_token, "t-alice", alice, NOW, NOW + 60_000)

    expected = ({bob: with_bob, carol: with_carol}, {with_bob: bob, with_carol: carol, group: 0})
    assert call(store.session_state, alice) == expected
    assert _listed_state(store, alice) == expected
    user, expires_at_ms, *state = call(store.token_login, "t-alice", NOW)
    assert (user.uid, user.username, expires_at_ms) == (alice, "alice", NOW + 60_000)
    assert tuple(state) == expected
    assert call(store.token_logins, [("t-alice", NOW), ("unknown", NOW), ("t-alice", NOW + 60_000)]) == [
        (user, NOW + 60_000, *expected), None, None]  # an unknown and an expired token find nobody

    assert call(store.session_state, dave) == ({}, {group: 0})  # in a group, no friends
    assert call(store.session_state, erin) == ({}, {})  # nothing at all
    call(store.remove_friend, alice, bob)  # friendship gone, the conversation stays
    assert call(store.session_state, alice) == ({carol: with_carol}, expected[1])



@pytest.mark.parametrize("store", ["mysql"], indirect=True)
def test_mariadb_aggregates_a_state_as_long_as_a_row_may_be(store: SqlStore):
    """MariaDB cuts JSON_ARRAYAGG at group_concat_max_len (1 MiB by default, about 50,000 friends)."""
    limit, packet = call(store.run, lambda tx: tx.one("SELECT @@group_concat_max_len, @@max_allowed_packet"))
    assert limit == packet >= 16 << 20
