"""Hostile frames against a live node, in every connection state, checked answer by answer.

One node (SQLite, dev mode) serves the whole module.  Hypothesis sends valid
frames of every message, the same with bytes flipped, inserted or deleted,
random bodies for every msg_id, random headers, oversized lengths and
truncated frames, one to three per example, on a fresh connection that is
before the handshake, after it, or logged in; one example in four half-closes
after sending.  `tinychat.testing.hostile.predict` says what docs/protocol.md
requires in answer (the exact ERROR code and request id, or the reply type,
and whether the connection closes); after every example a separate, already
logged-in bystander must still ping and exchange a message with its friend,
and the node process must be alive.

The number of examples is printed for each state (TINYCHAT_FUZZ_EXAMPLES per
state, default 700); `python -m tinychat.bench fuzz` runs many more.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FAST_HASHING
from tests.strategies import message_classes, messages
from tinychat.protocol import HEADER, encode
from tinychat.testing.hostile import STATES, FuzzTarget
from tinychat.testing.nodes import run_node

pytestmark = pytest.mark.integration

MAX_FRAME = 64 * 1024  # small, so that completing a truncated frame stays cheap
EXAMPLES = int(os.environ.get("TINYCHAT_FUZZ_EXAMPLES", "700"))
STATS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Iterator[FuzzTarget]:
    workdir = tmp_path_factory.mktemp("fuzz")
    args = ["--node-id", "fuzz-node", "--db", f"sqlite:///{workdir / 'fuzz.sqlite3'}", "--max-frame",
            str(MAX_FRAME), "--idle-timeout", "600", "--heartbeat-interval", "300", *FAST_HASHING,
            # The bystander checks after every example add up to more than the default 200 requests/s.
            "--rate-limit", "100000"]
    with run_node(args, workdir) as node:
        attacked = FuzzTarget(node)
        yield attacked
        attacked.close()
        assert node.process.poll() is None


# ---------------------------------------------------------------- strategies

_IDS = sorted(cls.MSG_ID for cls in message_classes())
valid_frames = messages().map(encode)


def _apply_edits(frame: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(frame)
    for op, where, value in edits:
        at = where % (len(data) + 1)
        if op == 0 and at < len(data):
            data[at] ^= value or 1
        elif op == 1:
            data.insert(at, value)
        elif at < len(data):
            del data[at]
    return bytes(data)


_edit = st.tuples(st.integers(0, 2), st.integers(0, 2**20), st.integers(0, 255))
mutated_frames = st.tuples(valid_frames, st.lists(_edit, min_size=1, max_size=4)).map(lambda t: _apply_edits(*t))
random_bodies = st.tuples(st.one_of(st.sampled_from(_IDS), st.integers(0, 0xFFFF)), st.binary(max_size=64)).map(
    lambda t: HEADER.pack(t[0], len(t[1])) + t[1])
random_headers = st.tuples(st.binary(min_size=6, max_size=6), st.binary(max_size=24)).map(lambda t: t[0] + t[1])
oversized = st.tuples(st.sampled_from(_IDS), st.integers(MAX_FRAME + 1, 2**32 - 1)).map(lambda t: HEADER.pack(*t))
truncated = valid_frames.flatmap(lambda f: st.integers(1, len(f) - 1).map(lambda n: f[:n]))
# Valid frames weigh as much as all the broken kinds together, so that requests get past the codec
# into the handlers often enough; a broken frame ends most connections.
hostile_frames = st.one_of(valid_frames, st.one_of(mutated_frames, random_bodies, random_headers, oversized,
                                                   truncated))
# Half the examples are only valid frames (random field values reach the handlers), half mix in broken ones.
cases = st.tuples(st.one_of(st.lists(valid_frames, min_size=1, max_size=3),
                            st.lists(hostile_frames, min_size=1, max_size=3)).map(b"".join),
                  st.sampled_from([False, False, False, True]))  # 1 in 4: half-close after sending


def run_case(target: FuzzTarget, state: str, data: bytes, eof: bool) -> None:
    prediction, problems = target.attack(state, data, eof, MAX_FRAME)
    STATS[f"{state} examples"] += 1
    STATS["frames"] += prediction.frames
    if prediction.closing is not None:
        STATS[f"closed with {'/'.join(sorted(c.name for c in prediction.closing.codes))}"] += 1
    elif not eof:
        STATS["stayed open"] += 1
    assert not problems, f"{state}, sent {prediction.sent[:200].hex()}: " + "; ".join(problems)
    target.still_serving()


@pytest.mark.parametrize("state", STATES)
def test_hostile_frames_get_their_documented_answers(target: FuzzTarget, state: str, capsys) -> None:
    @settings(max_examples=EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(case=cases)
    def fuzz(case: tuple[bytes, bool]) -> None:
        run_case(target, state, *case)

    before = Counter(STATS)
    fuzz()
    ran = STATS - before
    closes = ", ".join(f"{key.removeprefix('closed with ')} {n}" for key, n in sorted(ran.items())
                       if key.startswith("closed with"))
    with capsys.disabled():  # the count of cases is part of the result: show it even when output is captured
        print(f"\nfuzz [{state}]: {ran[f'{state} examples']} examples, {ran['frames']} frames, "
              f"{ran['stayed open']} answered in full with the connection open, closed by: {closes or 'none'}; "
              f"bystander served after each, node alive")
