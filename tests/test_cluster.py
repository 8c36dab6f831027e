"""Three real nodes sharing MariaDB and a private Redis: routing, presence, kick, assignment, failures."""

from __future__ import annotations

import signal
import time

import pytest
from twisted.internet import defer

from tests.chat import PASSWORD, SyncClient
from tests.cluster import PRESENCE_TTL, Cluster, running_cluster
from tests.databases import fresh_database
from tests.reactor_thread import call
from tinychat.protocol import (
    FriendRequestPush,
    FriendResponsePush,
    KickedPush,
    KickReason,
    MessagePush,
    PresencePush,
    ReadMarkPush,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path, redis_server, smtp_server):
    with running_cluster(tmp_path, redis_server, smtp_server.port, ("n1", "n2", "n3")) as running:
        yield running


def login(cluster: Cluster, node_id: str, name: str) -> SyncClient:
    client = cluster.client(node_id)
    client.login(name, PASSWORD)
    return client


def eventually(check, timeout: float = 10.0, interval: float = 0.05):
    """Retry `check` until it returns a truthy value (for state refreshed by heartbeats)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def test_cross_node_friend_request_chat_presence_and_read_marks(cluster, smtp_server):
    users = cluster.users(smtp_server.code_for)
    users.register("alice")
    users.register("bob")
    alice = login(cluster, "n1", "alice")
    bob = login(cluster, "n2", "bob")
    request_id = alice.add_friend(bob.uid, "from n1")
    assert bob.next_push(FriendRequestPush).request.greeting == "from n1"
    thread_id = bob.accept_friend(request_id).thread_id
    assert alice.next_push(FriendResponsePush).accepted
    ack = alice.send_text("across nodes", to_uid=bob.uid)
    push = bob.next_push(MessagePush).message
    assert (push.seq, push.text, push.thread_id) == (ack.seq, "across nodes", thread_id)
    bob.send_text("and back", thread_id=thread_id)
    assert alice.next_push(MessagePush).message.text == "and back"
    third = alice.send_text("read this", to_uid=bob.uid)
    bob.mark_read(thread_id, third.seq)
    assert alice.next_push(ReadMarkPush).read_seq == third.seq
    assert alice.friends()[0].online
    sender, receiver = cluster.metrics("n1"), cluster.metrics("n2")
    assert sender["tinychat_messages_in_total"] == 2  # alice's two messages were stored by n1
    assert sender["tinychat_bus_published_total"] >= 2
    assert receiver["tinychat_bus_received_total"] >= 2
    assert receiver["tinychat_sessions"] == 1 and sender["tinychat_logins_total"] == 1
    assert sender["tinychat_store_batch_messages_count"] >= 2
    bob.logout()
    assert alice.next_push(PresencePush, where=lambda p: not p.online).uid == bob.uid
    assert not alice.friends()[0].online


def test_login_on_another_node_kicks_the_first_session(cluster, smtp_server):
    users = cluster.users(smtp_server.code_for)
    users.register("carol")
    first = login(cluster, "n1", "carol")
    second = login(cluster, "n3", "carol")
    assert first.next_push(KickedPush).reason is KickReason.NEW_LOGIN
    first.wait_closed()
    assert second.ping()


def test_racing_logins_leave_exactly_one_session(cluster, smtp_server):
    users = cluster.users(smtp_server.code_for)
    users.register("dave")
    clients = [cluster.client(n) for n in ("n1", "n2", "n3")]

    def all_at_once():
        return defer.DeferredList([c.client.login("dave", PASSWORD) for c in clients], consumeErrors=True)

    call(all_at_once)
    survivors = eventually(lambda: [c for c in clients if c.client.connection.connected]
                           if sum(c.client.connection.connected for c in clients) == 1 else None)
    assert survivors[0].sync() is not None


def test_node_assignment_answers_the_least_loaded_node(cluster):
    idle = [cluster.client("n1") for _ in range(3)] + [cluster.client("n2") for _ in range(2)]
    probe = cluster.client("n1")

    def assigned_to_n3():
        answer = probe.which_node()
        return answer if answer.node_id == "n3" else None

    answer = eventually(assigned_to_n3)
    assert answer.address == cluster.endpoint("n3")
    for client in idle:
        client.close()


def test_killed_node_drops_out_and_its_users_go_offline(cluster, smtp_server):
    users = cluster.users(smtp_server.code_for)
    users.register("erin")
    users.register("frank")
    erin = login(cluster, "n1", "erin")
    frank = login(cluster, "n2", "frank")
    users.friends(erin, frank)
    erin.drain()
    cluster.nodes["n2"].stop(signal.SIGKILL)
    started = time.monotonic()
    offline = erin.next_push(PresencePush, timeout=PRESENCE_TTL * 5, where=lambda p: not p.online)
    assert offline.uid == frank.uid
    assert time.monotonic() - started < PRESENCE_TTL * 3
    assert not erin.friends()[0].online
    probe = cluster.client("n1")
    assert eventually(lambda: {n.node_id for n in [probe.which_node()]} <= {"n1", "n3"})
    # Frank's client moves to a surviving node with its token and catches up.
    erin.send_text("while your node was down", to_uid=frank.uid)
    moved = cluster.client("n3")
    moved.login_with_token(frank.client.user.resume_token)
    (thread,) = moved.sync().threads
    assert [m.text for m in moved.fetch_since(thread.thread_id, 0)] == ["while your node was down"]
    assert erin.next_push(PresencePush, where=lambda p: p.online).uid == frank.uid


def test_database_outage_refuses_sends_without_losing_acked_messages(tmp_path, smtp_server, node_factory):
    from tests.conftest import FAST_HASHING, smtp_args
    from tests.databases import MYSQL
    from tests.tcp_proxy import CuttableProxy
    from tinychat.client.errors import ServiceUnavailableError
    from tinychat.server.store.url import parse_database_url

    with fresh_database("mysql", tmp_path) as database:
        real = parse_database_url(database)
        proxy = CuttableProxy(real.host, real.port)
        proxied = f"{MYSQL.rsplit(':', 1)[0]}:{proxy.port}/{real.database}"
        with node_factory(*FAST_HASHING, *smtp_args(smtp_server), db=proxied) as node:
            from tests.chat import Users

            users = Users(node.endpoint, smtp_server.code_for)
            alice = users.logged_in("alice")
            bob = users.logged_in("bob")
            thread_id = users.friends(alice, bob)
            acked = [alice.send_text(f"before {i}", to_uid=bob.uid).seq for i in range(3)]
            proxy.cut()
            refused = 0
            for i in range(5):
                with pytest.raises(ServiceUnavailableError):
                    alice.send_text(f"during {i}", to_uid=bob.uid, client_msg_id=1000 + i)
                refused += 1
            assert alice.ping()  # the node itself is fine
            proxy.restore()
            # The same client_msg_ids, retried, are stored once each.
            retried = eventually(lambda: _try_send(alice, bob.uid, 1000))
            acked.append(retried.seq)
            for i in range(1, 5):
                acked.append(alice.send_text(f"during {i}", to_uid=bob.uid, client_msg_id=1000 + i).seq)
            stored = bob.fetch_since(thread_id, 0)
            assert [m.seq for m in stored] == list(range(1, len(acked) + 1)) == acked
            assert refused == 5
            users.close()
        proxy.close()


def _try_send(client: SyncClient, to_uid: int, client_msg_id: int):
    from tinychat.client.errors import ServiceUnavailableError

    try:
        return client.send_text("during 0", to_uid=to_uid, client_msg_id=client_msg_id)
    except ServiceUnavailableError:
        return None


def test_redis_restart_in_the_middle_of_a_thousand_messages_loses_nothing(cluster, smtp_server):
    """Pushes published while Redis is down are lost; RESYNC and seq gaps make the client fetch them."""
    import threading

    users = cluster.users(smtp_server.code_for)
    users.register("alice")
    users.register("bob")
    alice = login(cluster, "n1", "alice")
    bob = login(cluster, "n2", "bob")
    users.friends(alice, bob)
    received: list[int] = []
    everything = threading.Event()

    def on_message(message) -> None:
        if message.sender_uid == alice.uid:
            received.append(message.seq)
            if len(received) >= 1000:
                everything.set()

    call(bob.client.on_message, on_message)

    def send(start: int, stop: int):
        return defer.gatherResults([alice.client.send_text(f"m{i}", to_uid=bob.uid) for i in range(start, stop)])

    acked = []
    for start in range(0, 1000, 50):
        if start == 300:
            cluster.redis.stop()
        if start == 600:
            cluster.redis.start()
        acked += call(send, start, start + 50, timeout=60)
    assert sorted(a.seq for a in acked) == list(range(1, 1001))
    assert everything.wait(60), f"bob has {len(received)} of 1000"
    assert received == list(range(1, 1001))  # dense, in order, once each
