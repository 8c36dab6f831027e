"""Group chat: life cycle, roles, fan-out, on one node and across three."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from tests.chat import PASSWORD, SyncClient
from tests.cluster import running_cluster
from tests.reactor_thread import call
from tinychat.bench.seed import PASSWORD as SEEDED_PASSWORD
from tinychat.bench.seed import seed_star
from tinychat.client.errors import (
    GroupFullError,
    NotFriendsError,
    PermissionDeniedError,
    ThreadNotFoundError,
)
from tinychat.protocol import GroupChange, GroupChangedPush, MessagePush, Role

pytestmark = pytest.mark.integration


@pytest.fixture
def trio(users):
    alice, bob, carol = users.logged_in("alice"), users.logged_in("bob"), users.logged_in("carol")
    users.friends(alice, bob)
    users.friends(alice, carol)
    return alice, bob, carol


def test_group_life_cycle_on_one_node(users, trio):
    alice, bob, carol = trio
    group = alice.create_group("weekend", [bob.uid])
    assert (group.name, group.owner_uid, group.member_count, group.role) == ("weekend", alice.uid, 2, Role.OWNER)
    added = bob.next_push(GroupChangedPush)
    assert (added.change, added.subject_uid, added.thread_id) == (GroupChange.ADDED, bob.uid, group.thread_id)
    ack = alice.send_text("hello group", thread_id=group.thread_id)
    assert ack.seq == 1
    assert bob.next_push(MessagePush).message.text == "hello group"
    alice.add_group_members(group.thread_id, [carol.uid])
    assert carol.next_push(GroupChangedPush).change is GroupChange.ADDED
    assert bob.next_push(GroupChangedPush, where=lambda p: p.subject_uid == carol.uid).change is GroupChange.ADDED
    bob.send_text("hi all", thread_id=group.thread_id)
    assert carol.next_push(MessagePush, where=lambda p: p.message.seq == 2).message.text == "hi all"
    assert [m.uid for m in carol.group_members(group.thread_id)] == [alice.uid, bob.uid, carol.uid]
    # bob is a member: he may not add or remove anyone.
    with pytest.raises(PermissionDeniedError):
        bob.remove_group_member(group.thread_id, carol.uid)
    alice.set_group_role(group.thread_id, bob.uid, Role.ADMIN)
    alice.rename_group(group.thread_id, "long weekend")
    assert carol.next_push(GroupChangedPush, where=lambda p: p.change is GroupChange.RENAMED).name == "long weekend"
    bob.remove_group_member(group.thread_id, carol.uid)  # admins remove members
    removed = carol.next_push(GroupChangedPush, where=lambda p: p.change is GroupChange.REMOVED)
    assert removed.subject_uid == carol.uid
    with pytest.raises(ThreadNotFoundError):
        carol.send_text("still here?", thread_id=group.thread_id)
    with pytest.raises(ThreadNotFoundError):
        carol.history(group.thread_id)
    alice.send_text("carol is gone", thread_id=group.thread_id)
    assert all(not isinstance(p, MessagePush) or p.message.text != "carol is gone"
               for p in carol.drain())
    with pytest.raises(PermissionDeniedError):
        alice.leave_group(group.thread_id)  # the owner hands over first
    alice.set_group_role(group.thread_id, bob.uid, Role.OWNER)
    assert [g.role for g in bob.groups()] == [Role.OWNER]
    alice.leave_group(group.thread_id)
    assert alice.groups() == []
    bob.dissolve_group(group.thread_id)
    assert bob.groups() == []
    state = bob.sync()
    assert group.thread_id not in [t.thread_id for t in state.threads]


def test_group_rules(users, trio):
    alice, bob, _ = trio
    stranger = users.logged_in("mallory")
    with pytest.raises(NotFriendsError):
        alice.create_group("no strangers", [stranger.uid])
    group = alice.create_group("g", [bob.uid])
    with pytest.raises(ThreadNotFoundError):
        stranger.group_members(group.thread_id)
    with pytest.raises(ThreadNotFoundError):
        stranger.send_text("hi", thread_id=group.thread_id)
    with pytest.raises(PermissionDeniedError):
        bob.rename_group(group.thread_id, "mine now")


def test_group_cap(node_factory, smtp_server, tmp_path):
    from tests.chat import Users
    from tests.conftest import FAST_HASHING, smtp_args

    with node_factory(*FAST_HASHING, *smtp_args(smtp_server), "--max-group-members", "2") as node:
        users = Users(node.endpoint, smtp_server.code_for)
        alice, bob, carol = users.logged_in("alice"), users.logged_in("bob"), users.logged_in("carol")
        users.friends(alice, bob)
        users.friends(alice, carol)
        with pytest.raises(GroupFullError):
            alice.create_group("three", [bob.uid, carol.uid])
        group = alice.create_group("two", [bob.uid])
        with pytest.raises(GroupFullError):
            alice.add_group_members(group.thread_id, [carol.uid])
        users.close()


@pytest.fixture
def cluster(tmp_path, redis_server, smtp_server):
    with running_cluster(tmp_path, redis_server, smtp_server.port, ("n1", "n2", "n3")) as running:
        yield running


def test_group_life_cycle_across_three_nodes(cluster, smtp_server):
    users = cluster.users(smtp_server.code_for)
    for name in ("alice", "bob", "carol"):
        users.register(name)
    alice, bob, carol = (SyncClient(cluster.endpoint(n)) for n in ("n1", "n2", "n3"))
    for client, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        client.login(name, PASSWORD)
    users.friends(alice, bob)
    users.friends(alice, carol)
    group = alice.create_group("across", [bob.uid, carol.uid])
    bob.next_push(GroupChangedPush)
    carol.next_push(GroupChangedPush)
    for i in range(5):
        alice.send_text(f"m{i}", thread_id=group.thread_id)
    for member in (bob, carol):
        assert [member.next_push(MessagePush).message.seq for _ in range(5)] == [1, 2, 3, 4, 5]
    alice.remove_group_member(group.thread_id, carol.uid)
    carol.next_push(GroupChangedPush, where=lambda p: p.change is GroupChange.REMOVED)
    with pytest.raises(ThreadNotFoundError):
        carol.send_text("let me back", thread_id=group.thread_id)
    bob.send_text("after carol", thread_id=group.thread_id)
    assert alice.next_push(MessagePush).message.text == "after carol"
    assert [m.uid for m in bob.group_members(group.thread_id)] == [alice.uid, bob.uid]
    alice.dissolve_group(group.thread_id)
    assert bob.next_push(GroupChangedPush, where=lambda p: p.change is GroupChange.DISSOLVED)
    with pytest.raises(ThreadNotFoundError):
        bob.send_text("anyone?", thread_id=group.thread_id)


def test_two_hundred_member_fan_out(cluster):
    owner_name, member_names = seed_star(cluster.database, 199)
    nodes = list(cluster.nodes)
    owner = SyncClient(cluster.endpoint("n1"))
    owner.login(owner_name, SEEDED_PASSWORD)
    members = []
    for index, name in enumerate(member_names):
        client = SyncClient(cluster.endpoint(nodes[index % len(nodes)]))
        client.login(name, SEEDED_PASSWORD)
        members.append(client)
    group = owner.create_group("everyone", [m.uid for m in members])
    assert group.member_count == 200

    def send_all():
        return defer.gatherResults([owner.client.send_text(f"news {i}", thread_id=group.thread_id)
                                    for i in range(20)])

    acks = call(send_all, timeout=60)
    assert sorted(a.seq for a in acks) == list(range(1, 21))
    for member in members:
        seqs = [member.next_push(MessagePush, timeout=30).message.seq for _ in range(20)]
        assert seqs == list(range(1, 21))
        assert not [p for p in member.drain() if isinstance(p, MessagePush)]  # once each
