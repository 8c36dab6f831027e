"""Unit tests of server parts on a fake clock: group commit, codes, rate limits."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent

from tinychat.protocol import CodePurpose, ErrorCode, ProtocolError
from tinychat.server.bus.local import LocalBus
from tinychat.server.ratelimit import FailureLimiter
from tinychat.server.store.records import CodeRow, NewMessage, StoredMessage
from tinychat.server.turnlog import TurnLog
from tinychat.server.verify import VerificationCodes, normalize_email
from tinychat.server.writer import MessageWriter


class RecordingStore:
    """Just the verification-code part of the store, in memory."""

    def __init__(self) -> None:
        self.codes: dict[tuple[str, int], CodeRow] = {}

    def get_code(self, email, purpose):
        return defer.succeed(self.codes.get((email, int(purpose))))

    def put_code(self, row):
        self.codes[(row.email, row.purpose)] = row
        return defer.succeed(None)

    def count_code_attempt(self, email, purpose):
        self.codes[(email, int(purpose))].attempts += 1
        return defer.succeed(None)

    def delete_code(self, email, purpose):
        self.codes.pop((email, int(purpose)), None)
        return defer.succeed(None)


class RecordingMailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send_code(self, email, code, purpose, valid_minutes):
        self.sent.append((email, code))
        return defer.succeed(None)


def run(coroutine):
    """Run a coroutine whose awaits all complete synchronously; return or raise its result."""
    d = defer.ensureDeferred(coroutine)
    results = []
    d.addBoth(results.append)
    (result,) = results
    if isinstance(result, Exception) or hasattr(result, "raiseException"):
        result.raiseException()
    return result


def codes(clock):
    store, mailer = RecordingStore(), RecordingMailer()
    return VerificationCodes(store, mailer, clock), store, mailer


def test_code_is_six_digits_and_valid_for_five_minutes():
    clock = Clock()
    verifier, store, mailer = codes(clock)
    run(verifier.send("a@example.com", CodePurpose.REGISTER))
    ((_, code),) = mailer.sent
    assert len(code) == 6 and code.isdigit()
    assert code not in repr(store.codes)  # only a hash is kept
    clock.advance(299)
    run(verifier.check("a@example.com", CodePurpose.REGISTER, code))
    clock.advance(2)
    with pytest.raises(ProtocolError) as info:
        run(verifier.check("a@example.com", CodePurpose.REGISTER, code))
    assert info.value.code is ErrorCode.CODE_INVALID


def test_code_dies_after_five_wrong_tries():
    clock = Clock()
    verifier, _, mailer = codes(clock)
    run(verifier.send("a@example.com", CodePurpose.REGISTER))
    code = mailer.sent[0][1]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(ProtocolError):
            run(verifier.check("a@example.com", CodePurpose.REGISTER, wrong))
    with pytest.raises(ProtocolError):
        run(verifier.check("a@example.com", CodePurpose.REGISTER, code))


def test_one_new_code_per_address_per_minute():
    clock = Clock()
    verifier, _, mailer = codes(clock)
    run(verifier.send("a@example.com", CodePurpose.REGISTER))
    clock.advance(59)
    with pytest.raises(ProtocolError) as info:
        run(verifier.send("a@example.com", CodePurpose.REGISTER))
    assert info.value.code is ErrorCode.RATE_LIMITED and info.value.retry_after_ms == 1000
    run(verifier.send("b@example.com", CodePurpose.REGISTER))  # other addresses are not held up
    clock.advance(1)
    run(verifier.send("a@example.com", CodePurpose.REGISTER))
    assert [e for e, _ in mailer.sent] == ["a@example.com", "b@example.com", "a@example.com"]


def test_email_normalisation():
    assert normalize_email("  Bob@Example.COM ") == "bob@example.com"
    for bad in ["", "bob", "bob@", "@example.com", "bob@example", "a b@example.com", "x" * 250 + "@e.com"]:
        with pytest.raises(ProtocolError):
            normalize_email(bad)


def test_failure_limiter_window():
    clock = Clock()
    limiter = FailureLimiter(clock, limit=5, window=300)
    for _ in range(4):
        limiter.failed("k")
        clock.advance(10)
    assert limiter.retry_after("k") == 0
    limiter.failed("k")
    assert limiter.retry_after("k") == pytest.approx(260)
    assert limiter.retry_after("other") == 0
    clock.advance(260)
    assert limiter.retry_after("k") == 0
    limiter.reset("k")
    assert limiter.retry_after("k") == 0


class FakeStore:
    """write_batch whose commits the test completes by hand."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[NewMessage], defer.Deferred]] = []

    def write(self, batch):
        d: defer.Deferred = defer.Deferred()
        self.batches.append((batch, d))
        return d

    def commit(self, index: int = -1) -> None:
        batch, d = self.batches[index]
        d.callback([StoredMessage(m.thread_id, i + 1, 0, False, m.text) for i, m in enumerate(batch)])


def message(i: int) -> NewMessage:
    return NewMessage(1, 7, i, f"m{i}")


def test_group_commit_batches_what_arrives_during_a_write():
    store = FakeStore()
    writer = MessageWriter(store.write)
    first = writer.submit(message(1))
    assert [len(b) for b, _ in store.batches] == [1]
    waiting = [writer.submit(message(i)) for i in range(2, 12)]
    assert len(store.batches) == 1 and writer.queued == 10
    store.commit(0)
    assert first.result.seq == 1
    assert [len(b) for b, _ in store.batches] == [1, 10]
    store.commit(1)
    assert [d.result.text for d in waiting] == [f"m{i}" for i in range(2, 12)]


def test_submit_call_passes_results_and_failures_to_plain_callbacks():
    """The hot path's callbacks get (result, *args); one raising does not keep the rest of the batch waiting."""
    store = FakeStore()
    writer = MessageWriter(store.write)
    seen: list = []

    def stored(result, tag):
        if tag == "boom":
            raise RuntimeError("a broken callback")
        seen.append((tag, result.seq))

    writer.submit_call(message(1), stored, lambda f, tag: seen.append((tag, "failed")), "first")
    writer.submit_call(message(2), stored, lambda f, tag: seen.append((tag, "failed")), "boom")
    writer.submit_call(message(3), stored, lambda f, tag: seen.append((tag, "failed")), "third")
    store.commit(0)
    store.commit(1)
    assert seen == [("first", 1), ("third", 2)]
    writer.submit_call(message(4), stored, lambda f, tag: seen.append((tag, f.check(RuntimeError))), "gone")
    store.batches[2][1].errback(RuntimeError("database gone"))
    assert seen[-1] == ("gone", RuntimeError)


def test_group_commit_respects_the_batch_limit_and_reports_failures():
    store = FakeStore()
    writer = MessageWriter(store.write, max_batch=3)
    results = [writer.submit(message(i)) for i in range(7)]
    store.commit(0)
    assert [len(b) for b, _ in store.batches] == [1, 3]
    store.batches[1][1].errback(RuntimeError("database gone"))
    errors = []
    for d in results[1:4]:
        d.addErrback(errors.append)
    assert len(errors) == 3 and all(e.check(RuntimeError) for e in errors)
    assert [len(b) for b, _ in store.batches] == [1, 3, 3]


def test_local_bus_delivers_to_attached_sessions_except_the_skipped_one():
    bus = LocalBus()
    delivered = []
    bus.start(lambda uid, frame, skip: delivered.append((uid, frame, skip)))
    bus.attach(1, "s1")
    bus.publish([1, 2], b"frame", skip_session="s9")
    assert delivered == [(1, b"frame", "s9")]
    assert bus.online([1, 2]).result == {1}
    assert bus.detach(1, "s1").result is True
    assert bus.online([1]).result == set()


def test_reads_in_flight_are_bounded_node_wide(tmp_path):
    """A burst of history pages runs READS_IN_FLIGHT at a time: rows cannot pile up faster than they are sent."""
    from tinychat.protocol import Direction
    from tinychat.server.store.sql import READS_IN_FLIGHT, SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'reads.sqlite3'}")
    started: list[defer.Deferred] = []

    def fake_run(fn, *args, pool=None):
        assert pool is store.read_pool
        started.append(defer.Deferred())
        return started[-1]

    store._run = fake_run
    try:
        pages = [store.history(7, 0, Direction.BEFORE, 100) for _ in range(READS_IN_FLIGHT * 3)]
        assert len(started) == READS_IN_FLIGHT
        started[0].callback(([], False))
        assert pages[0].result == ([], False)
        assert len(started) == READS_IN_FLIGHT + 1
        for d in started[1:]:
            d.callback(([], False))
        for d in started[READS_IN_FLIGHT + 1:]:
            d.callback(([], False))
        assert len(started) == len(pages)
    finally:
        store.close()


def test_login_lines_of_one_reactor_turn_make_one_log_event():
    events: list[dict] = []
    clock = Clock()
    audit = TurnLog(Logger(observer=events.append), clock)
    for uid in (1, 2, 3):
        audit.add(f"login uid={uid}")
    assert events == []  # written at the end of the turn
    clock.advance(0)
    assert [formatEvent(event) for event in events] == ["login uid=1\nlogin uid=2\nlogin uid=3"]
    audit.add("login uid=4")
    audit.flush()  # the node stopping: nothing waits for another turn
    assert formatEvent(events[-1]) == "login uid=4" and clock.getDelayedCalls() == []
    clock.advance(0)
    assert len(events) == 2
