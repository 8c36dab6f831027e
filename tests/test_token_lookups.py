"""Token logins arriving together share one database round trip (handlers.accounts.TokenLookups)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock

from tinychat.server.errors import UnavailableError
from tinychat.server.handlers.accounts import TokenLookups


class SlowStore:
    """`token_logins` that answers only when the test says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[str, int]], defer.Deferred]] = []

    def token_logins(self, lookups):
        d: defer.Deferred = defer.Deferred()
        self.calls.append((lookups, d))
        return d


def _results(ds):
    out = []
    for d in ds:
        d.addBoth(out.append)
    return out


def test_a_lone_lookup_goes_at_once_and_those_arriving_meanwhile_share_the_next():
    clock = Clock()
    clock.advance(100)
    store = SlowStore()
    lookups = TokenLookups(store, clock)
    first = _results([lookups.lookup("a")])
    assert store.calls[0][0] == [("a", 100_000)]
    later = _results([lookups.lookup(name) for name in ("b", "c", "b")])
    assert len(store.calls) == 1  # waiting for the first round trip
    store.calls[0][1].callback([("user-a",)])
    assert first == [("user-a",)]
    assert [lookup for lookup, _ in store.calls[1][0]] == ["b", "c", "b"]
    store.calls[1][1].callback(["B", None, "B2"])
    assert later == ["B", None, "B2"]


def test_a_failed_round_trip_fails_every_lookup_in_it_and_the_next_batch_still_goes():
    store = SlowStore()
    lookups = TokenLookups(store, Clock())
    first = _results([lookups.lookup("a")])
    second = _results([lookups.lookup("b"), lookups.lookup("c")])
    store.calls[0][1].errback(UnavailableError("database: gone"))
    assert first[0].check(UnavailableError)
    store.calls[1][1].errback(UnavailableError("database: gone"))
    assert all(f.check(UnavailableError) for f in second)
    third = _results([lookups.lookup("d")])
    store.calls[2][1].callback(["D"])
    assert third == ["D"]


def test_with_a_pool_of_connections_as_many_lookups_go_at_once_and_batches_are_bounded():
    store = SlowStore()
    lookups = TokenLookups(store, Clock(), parallel=2, max_batch=3)
    _results([lookups.lookup(str(i)) for i in range(8)])
    assert [len(batch) for batch, _ in store.calls] == [1, 1]
    store.calls[0][1].callback([None])
    assert [len(batch) for batch, _ in store.calls] == [1, 1, 3]
    store.calls[1][1].callback([None])
    store.calls[2][1].callback([None] * 3)
    assert [len(batch) for batch, _ in store.calls] == [1, 1, 3, 3]
