"""Group-committed message batches on SQLite and MariaDB: resends among fresh messages."""

from __future__ import annotations

import pytest

from tests.reactor_thread import call
from tinychat.protocol import Direction
from tinychat.server.store.records import NewMessage
from tinychat.server.store.sql import SqlStore

pytestmark = pytest.mark.integration

NOW = 1_700_000_000_000


def test_a_resend_late_in_a_big_batch_gets_its_first_outcome_and_the_rest_are_stored_once(store: SqlStore):
    alice, bob = (call(store.create_user, name, f"{name}@example.org", "x", NOW) for name in ("alice", "bob"))
    request, _ = call(store.create_friend_request, alice, bob, "hi", NOW)
    _, thread = call(store.resolve_friend_request, request.id, bob, True, "", NOW)
    first = call(store.append_messages, [NewMessage(alice, thread, 7, "sent before")], NOW)
    assert [(m.seq, m.duplicate) for m in first] == [(1, False)]

    # 450 fresh messages with the resend at 301: the first 200-row inserts went through before it met the key.
    batch = [NewMessage(bob, thread, 1000 + i, f"m{i}") for i in range(450)]
    batch.insert(301, NewMessage(alice, thread, 7, "sent again"))
    batch.append(NewMessage(bob, thread, 1000, "m0 twice in one batch"))
    stored = call(store.append_messages, batch, NOW + 1)

    resend = stored[301]
    assert (resend.seq, resend.duplicate, resend.text) == (1, True, "sent before")
    fresh = stored[:301] + stored[302:-1]
    assert [m.seq for m in fresh] == list(range(2, 452)) and not any(m.duplicate for m in fresh)
    assert (stored[-1].seq, stored[-1].duplicate) == (2, True)
    page, _ = call(store.history, thread, 0, Direction.AFTER, 1000)
    assert [m.seq for m in page] == list(range(1, 452))
    assert [m.text for m in page][:3] == ["sent before", "m0", "m1"]
