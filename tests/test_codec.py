"""Property tests of the wire codec: round trips, framing, and refusal of bad input.

Messages come from `strategies.messages()`, which is derived from the message
definitions, so every registered message (and any added later) is covered.
Malformed bodies are built generically too: the body is assembled field by
field from each field's own construct, and one field's bytes are replaced.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import (
    enum_of,
    frames_stream,
    instances_of,
    is_string,
    message_classes,
    messages,
    minimal_instance,
    text_exceeding,
    utf8_len,
)
from tinychat.protocol import (
    DEFAULT_MAX_FRAME,
    HEADER,
    HEADER_SIZE,
    REGISTRY,
    ErrorCode,
    FrameDecoder,
    Message,
    ProtocolError,
    WireError,
    decode_body,
    decode_frame,
    encode,
)
from tinychat.protocol import wire as w
from tinychat.protocol.messages import (
    MAX_NAME,
    MAX_SEARCH_RESULTS,
    ChatMessage,
    Error,
    Hello,
    History,
    Logout,
    MessagePush,
    Ping,
    RequestCode,
    SearchResults,
    SyncState,
    ThreadInfo,
    UserSummary,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONNECTION_ERRORS = {ErrorCode.MALFORMED_FRAME, ErrorCode.FRAME_TOO_LARGE, ErrorCode.UNKNOWN_MESSAGE}
CLASSES = message_classes()
U16 = struct.Struct(">H")


def class_id(cls: type) -> str:
    return f"{cls.MSG_ID:#06x}-{cls.__name__}"


def fields_where(predicate) -> list[Any]:
    """pytest params (cls, field) for every top-level field of every message matching `predicate`."""
    return [
        pytest.param(cls, f, id=f"{class_id(cls)}.{f.name}")
        for cls in CLASSES
        for f in dataclasses.fields(cls)
        if predicate(f.metadata["wire"])
    ]


def field_bytes(obj: Any, f: dataclasses.Field) -> bytes:
    """One field's bytes, from that field's own construct (not the message's)."""
    return f.metadata["wire"].construct.build(getattr(obj, f.name))


def body_with(msg: Message, name: str, raw: bytes) -> bytes:
    """`msg`'s body with field `name` replaced by the raw bytes `raw`."""
    return b"".join(raw if f.name == name else field_bytes(msg, f) for f in dataclasses.fields(msg))


def expect_error(code: ErrorCode, fn, *args) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        fn(*args)
    assert info.value.code is code, info.value
    return info.value


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """`data` split at arbitrary points (empty chunks included)."""
    return st.lists(st.integers(0, len(data)), max_size=min(len(data) + 1, 24)).map(
        lambda cuts: chunked(data, cuts)
    )


# ---------------------------------------------------------------- the strategy itself


def test_every_field_type_is_generated():
    """The strategy knows every wire type in use (it raises TypeError on an unknown one)."""
    for cls in CLASSES:
        instances_of(cls)  # builds the strategy eagerly enough to validate the field types
        minimal_instance(cls).encode_body()


# ---------------------------------------------------------------- round trips


@FAST
@given(messages())
def test_round_trip_compiled(msg):
    frame = encode(msg)
    msg_id, length = HEADER.unpack_from(frame)
    assert msg_id == msg.MSG_ID
    assert length == len(frame) - HEADER_SIZE
    decoded = decode_frame(frame)
    assert type(decoded) is type(msg)
    assert decoded == msg
    assert decode_body(msg.MSG_ID, frame[HEADER_SIZE:]) == msg
    assert FrameDecoder().feed(frame) == [msg]


@FAST
@given(messages())
def test_round_trip_plain_and_identical_bytes(msg):
    compiled = msg.encode_body()
    plain = msg.encode_body_plain()
    assert plain == compiled
    cls = type(msg)
    assert cls.decode_body_plain(plain) == msg
    assert cls.decode_body(plain) == msg
    assert cls.decode_body_plain(compiled) == cls.decode_body(compiled)


@FAST
@given(messages())
def test_generated_codec_matches_construct(msg):
    """The generated struct codec (the hot path) and construct's compiled and plain codecs agree byte for byte."""
    cls = type(msg)
    body = msg.encode_body()
    assert msg.encode_body_compiled() == body
    assert msg.encode_body_plain() == body
    assert encode(msg) == HEADER.pack(cls.MSG_ID, len(body)) + body
    assert cls.decode_body(body) == cls.decode_body_compiled(body) == cls.decode_body_plain(body) == msg


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
@FEW
@given(data=st.data())
def test_each_registered_message_round_trips(cls, data):
    msg = data.draw(instances_of(cls))
    assert REGISTRY[cls.MSG_ID] is cls
    frame = encode(msg)
    assert HEADER.unpack_from(frame)[0] == cls.MSG_ID
    assert decode_frame(frame) == msg
    assert cls.decode_body_plain(msg.encode_body_plain()) == msg
    assert msg.encode_body_plain() == frame[HEADER_SIZE:]


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_minimal_instance_round_trips(cls):
    msg = minimal_instance(cls)
    assert decode_frame(encode(msg)) == msg


# ---------------------------------------------------------------- framing


@FAST
@given(data=st.data(), msgs=frames_stream())
def test_any_chunking_decodes_the_same_messages(data, msgs):
    stream = b"".join(encode(m) for m in msgs)
    chunks = data.draw(chunkings(stream))
    decoder = FrameDecoder()
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
        assert decoder.buffered < HEADER_SIZE + decoder.max_body
    assert out == msgs
    assert decoder.buffered == 0


@FEW
@given(msgs=frames_stream())
def test_byte_at_a_time(msgs):
    stream = b"".join(encode(m) for m in msgs)
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i:i + 1]))
    assert out == msgs
    assert decoder.buffered == 0


@FAST
@given(data=st.data(), msgs=frames_stream())
def test_feed_frames_splits_without_decoding(data, msgs):
    stream = b"".join(encode(m) for m in msgs)
    decoder = FrameDecoder()
    frames = []
    for chunk in data.draw(chunkings(stream)):
        frames.extend(decoder.feed_frames(chunk))
    assert frames == [(m.MSG_ID, m.encode_body()) for m in msgs]


@FAST
@given(msg=messages(), extra=st.binary(min_size=1, max_size=8))
def test_decode_frame_refuses_a_length_mismatch(msg, extra):
    frame = encode(msg)
    expect_error(ErrorCode.MALFORMED_FRAME, decode_frame, frame + extra)
    expect_error(ErrorCode.MALFORMED_FRAME, decode_frame, frame[:-1] if len(frame) > HEADER_SIZE
                 else frame[:HEADER_SIZE - 1])


def test_decode_frame_shorter_than_header():
    for n in range(HEADER_SIZE):
        expect_error(ErrorCode.MALFORMED_FRAME, decode_frame, b"\x00\x03" + b"\x00" * n)


# ---------------------------------------------------------------- robustness (fuzzing)


def _feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[Message]:
    """Feed until the first ProtocolError (after which a stream is abandoned)."""
    out = []
    for chunk in chunks:
        try:
            out.extend(decoder.feed(chunk))
        except ProtocolError as e:
            assert e.code in CONNECTION_ERRORS
            assert decoder.buffered < HEADER_SIZE + decoder.max_body
            break
        for m in out:
            assert isinstance(m, Message)
        if decoder.buffered >= HEADER_SIZE:
            # A whole header is held only while its (allowed) body is incomplete.
            assert decoder.buffered < HEADER_SIZE + decoder.max_body
        else:
            assert decoder.buffered >= 0
    return out


MAX_BODIES = st.sampled_from([0, 1, 16, 300, DEFAULT_MAX_FRAME])


@FUZZ
@given(data=st.data(), raw=st.binary(max_size=400), max_body=MAX_BODIES)
def test_arbitrary_bytes_raise_only_protocol_error(data, raw, max_body):
    _feed_all(FrameDecoder(max_body), data.draw(chunkings(raw)))


def garbage_frames() -> st.SearchStrategy[bytes]:
    """Frames with plausible headers (mostly known ids, mostly true lengths) and random bodies."""
    msg_ids = st.one_of(st.sampled_from(sorted(REGISTRY)), st.integers(0, 0xFFFF))

    @st.composite
    def frame(draw):
        msg_id = draw(msg_ids)
        body = draw(st.binary(max_size=120))
        length = draw(st.one_of(st.just(len(body)), st.integers(0, 0xFFFFFFFF)))
        return HEADER.pack(msg_id, length) + body

    return st.lists(st.one_of(frame(), messages().map(encode)), min_size=1, max_size=6).map(b"".join)


@FUZZ
@given(data=st.data(), stream=garbage_frames(), max_body=MAX_BODIES)
def test_garbage_frames_raise_only_protocol_error(data, stream, max_body):
    _feed_all(FrameDecoder(max_body), data.draw(chunkings(stream)))


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=200))
def test_arbitrary_body_raises_only_protocol_error(cls, body):
    try:
        msg = decode_body(cls.MSG_ID, body)
    except ProtocolError as e:
        assert e.code is ErrorCode.MALFORMED_FRAME
    else:
        assert type(msg) is cls
        assert msg.encode_body() == body


@st.composite
def mutated_bodies(draw):
    """(msg, original body, mutated body): bytes flipped, overwritten, inserted or deleted."""
    msg = draw(messages())
    body = bytearray(msg.encode_body())
    original = bytes(body)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
        pos = draw(st.integers(0, max(len(body) - 1, 0)))
        if op == "flip" and body:
            body[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and body:
            body[pos] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xC0, 0xFE, 0xFF]))
        elif op == "insert":
            body[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and body:
            del body[pos:pos + draw(st.integers(1, 4))]
        elif op == "truncate":
            del body[pos:]
        elif op == "append":
            body += draw(st.binary(min_size=1, max_size=4))
    return msg, original, bytes(body)


@FUZZ
@given(mutated_bodies())
def test_mutated_frames_decode_or_raise_protocol_error(case):
    msg, _original, body = case
    cls = type(msg)
    try:
        decoded = decode_body(cls.MSG_ID, body)
    except ProtocolError as e:
        assert e.code is ErrorCode.MALFORMED_FRAME
        compiled_ok = False
    else:
        # The encoding is canonical: whatever decodes re-encodes to the same bytes.
        assert type(decoded) is cls
        assert decoded.encode_body() == body
        compiled_ok = True
    # construct's interpreted parser agrees with the generated one on what is valid.
    try:
        plain = cls.decode_body_plain(body)
    except Exception:
        assert not compiled_ok, "plain parser refused a body the generated parser accepted"
    else:
        assert compiled_ok, "generated parser refused a body the plain parser accepted"
        assert plain == decoded
    # And the frame decoder says the same thing about the whole frame.
    frame = HEADER.pack(cls.MSG_ID, len(body)) + body
    try:
        assert FrameDecoder().feed(frame) == [decoded]
    except ProtocolError as e:
        assert not compiled_ok
        assert e.code is ErrorCode.MALFORMED_FRAME


# ---------------------------------------------------------------- specific refusals


@FAST
@given(msg_id=st.integers(0, 0xFFFF).filter(lambda i: i not in REGISTRY), body=st.binary(max_size=16))
def test_unknown_msg_id(msg_id, body):
    expect_error(ErrorCode.UNKNOWN_MESSAGE, decode_body, msg_id, body)
    frame = HEADER.pack(msg_id, len(body)) + body
    expect_error(ErrorCode.UNKNOWN_MESSAGE, decode_frame, frame)
    expect_error(ErrorCode.UNKNOWN_MESSAGE, FrameDecoder().feed, frame)


def test_unknown_msg_id_zero_and_max():
    assert 0 not in REGISTRY
    expect_error(ErrorCode.UNKNOWN_MESSAGE, decode_body, 0, b"")
    if 0xFFFF not in REGISTRY:
        expect_error(ErrorCode.UNKNOWN_MESSAGE, FrameDecoder().feed, HEADER.pack(0xFFFF, 0))


def test_short_body():
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Ping.MSG_ID, b"\x00\x00\x00")
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Ping.MSG_ID, b"")
    expect_error(ErrorCode.MALFORMED_FRAME, FrameDecoder().feed, HEADER.pack(Ping.MSG_ID, 2) + b"\x00\x01")


@FAST
@given(data=st.data(), msg=messages())
def test_every_truncated_body_is_malformed(data, msg):
    body = msg.encode_body()
    cut = data.draw(st.integers(0, len(body) - 1))
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, msg.MSG_ID, body[:cut])


def test_trailing_bytes():
    body = Ping(7).encode_body() + b"\x00"
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Ping.MSG_ID, body)
    with pytest.raises(WireError):
        Ping.decode_body_plain(body)


@FAST
@given(msg=messages(), extra=st.binary(min_size=1, max_size=16))
def test_every_body_with_trailing_bytes_is_malformed(msg, extra):
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, msg.MSG_ID, msg.encode_body() + extra)


def test_invalid_utf8_in_a_string():
    head = struct.pack(">IHH", 1, 1, 1)
    # Invalid start byte, truncated sequence, bad continuation, surrogate, above U+10FFFF, overlong.
    bad_utf8 = [b"\xff", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                b"ok\xe2\x82"]
    for bad in bad_utf8:
        body = head + U16.pack(len(bad)) + bad
        expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Hello.MSG_ID, body)
    # The same bytes as valid UTF-8 decode.
    good = "é😀\x00".encode()
    assert decode_body(Hello.MSG_ID, head + U16.pack(len(good)) + good).client_name == "é😀\x00"


def test_string_length_prefix_over_max():
    head = struct.pack(">IHH", 1, 1, 1)
    at_max = head + U16.pack(MAX_NAME) + b"a" * MAX_NAME
    assert decode_body(Hello.MSG_ID, at_max).client_name == "a" * MAX_NAME
    over = head + U16.pack(MAX_NAME + 1) + b"a" * (MAX_NAME + 1)
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Hello.MSG_ID, over)
    # Refused on the prefix alone, whatever follows (here nothing, or the full 0xFFFF).
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Hello.MSG_ID, head + U16.pack(0xFFFF))
    huge = head + U16.pack(0xFFFF) + b"a" * 0xFFFF
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Hello.MSG_ID, huge)


def test_bool_byte_two():
    assert decode_body(Logout.MSG_ID, b"\x00\x00\x00\x01\x01") == Logout(1, True)
    for b in (2, 0x80, 0xFF):
        expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Logout.MSG_ID, b"\x00\x00\x00\x01" + bytes([b]))
        with pytest.raises(WireError):
            Logout.decode_body_plain(b"\x00\x00\x00\x01" + bytes([b]))


def test_invalid_enum_value():
    for purpose in (0, 3, 0xFF):
        body = struct.pack(">IH", 1, 0) + bytes([purpose])
        expect_error(ErrorCode.MALFORMED_FRAME, decode_body, RequestCode.MSG_ID, body)
    body = struct.pack(">IHIH", 1, 0xFFFF, 0, 0)  # Error.code is an Enum16
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, Error.MSG_ID, body)
    body = struct.pack(">IQQBH", 1, 1, 0, 2, 10)  # History.direction: 0 or 1
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, History.MSG_ID, body)


def test_invalid_enum_value_inside_a_list_record():
    thread = ThreadInfo(1, 1, 2, "t", 3, 3, 0)
    good = SyncState(1, [thread], []).encode_body()
    kind_at = 4 + 2 + 8  # request_id, count, thread_id
    assert good[kind_at] == 1
    bad = good[:kind_at] + b"\x07" + good[kind_at + 1:]
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, SyncState.MSG_ID, bad)


def test_invalid_utf8_inside_a_record():
    good = MessagePush(ChatMessage(1, 2, 3, 4, 5, "hi")).encode_body()
    at = good.index(b"\x00\x02hi") + 2  # the text, after five u64s
    assert at == 5 * 8 + 2
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, MessagePush.MSG_ID, good[:at] + b"\xffi" + good[at + 2:])


def test_list_longer_than_max_items():
    item = UserSummary.STRUCT.build(UserSummary(1, "u", False, True))
    for n, ok in ((MAX_SEARCH_RESULTS, True), (MAX_SEARCH_RESULTS + 1, False), (0xFFFF, False)):
        body = struct.pack(">IH", 1, n) + item * n
        if ok:
            assert len(decode_body(SearchResults.MSG_ID, body).users) == n
        else:
            expect_error(ErrorCode.MALFORMED_FRAME, decode_body, SearchResults.MSG_ID, body)


# Generic versions: every top-level field of every message, built from the field types.


@pytest.mark.parametrize(("cls", "f"), fields_where(is_string))
@FEW
@given(data=st.data())
def test_every_string_field_refuses_bad_utf8_and_over_max(cls, f, data):
    msg = data.draw(instances_of(cls))
    max_bytes = f.metadata["wire"].construct.max_bytes
    bad = data.draw(st.sampled_from([b"\xff", b"\x80", b"\xc3", b"\xed\xb0\x80", b"\xf8\x88\x80\x80\x80"]))
    bad = bad[:max_bytes]
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, cls.MSG_ID,
                 body_with(msg, f.name, U16.pack(len(bad)) + bad))
    over = U16.pack(max_bytes + 1) + b"a" * (max_bytes + 1) if max_bytes < 0xFFFF else None
    if over is not None:
        expect_error(ErrorCode.MALFORMED_FRAME, decode_body, cls.MSG_ID, body_with(msg, f.name, over))
    at_max = U16.pack(max_bytes) + b"a" * max_bytes
    assert getattr(decode_body(cls.MSG_ID, body_with(msg, f.name, at_max)), f.name) == "a" * max_bytes


@pytest.mark.parametrize(("cls", "f"), fields_where(lambda t: t is w.BOOL))
@FEW
@given(data=st.data(), byte=st.integers(2, 255))
def test_every_bool_field_refuses_other_bytes(cls, f, data, byte):
    msg = data.draw(instances_of(cls))
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, cls.MSG_ID, body_with(msg, f.name, bytes([byte])))


@pytest.mark.parametrize(("cls", "f"), fields_where(lambda t: enum_of(t) is not None))
@FEW
@given(data=st.data())
def test_every_enum_field_refuses_non_members(cls, f, data):
    wire_type = f.metadata["wire"]
    enum = enum_of(wire_type)
    bits = wire_type.size * 8
    members = {int(m) for m in enum}
    value = data.draw(st.integers(0, 2 ** bits - 1).filter(lambda v: v not in members))
    msg = data.draw(instances_of(cls))
    raw = value.to_bytes(wire_type.size, "big")
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, cls.MSG_ID, body_with(msg, f.name, raw))


@pytest.mark.parametrize(
    ("cls", "f"), fields_where(lambda t: t.max_items is not None and t.max_items < 0xFFFF)
)
def test_every_list_field_refuses_more_than_max_items(cls, f):
    wire_type = f.metadata["wire"]
    msg = minimal_instance(cls)
    if wire_type.record is not None:
        item = wire_type.record.STRUCT.build(minimal_instance(wire_type.record))
    else:  # a list of u64 ids
        item = (7).to_bytes(8, "big")
    n = wire_type.max_items
    at_max = decode_body(cls.MSG_ID, body_with(msg, f.name, U16.pack(n) + item * n))
    assert len(getattr(at_max, f.name)) == n
    over = body_with(msg, f.name, U16.pack(n + 1) + item * (n + 1))
    expect_error(ErrorCode.MALFORMED_FRAME, decode_body, cls.MSG_ID, over)


# ---------------------------------------------------------------- oversized frames


@FAST
@given(
    data=st.data(),
    msg_id=st.integers(0, 0xFFFF),
    max_body=st.integers(0, 2 * DEFAULT_MAX_FRAME),
    before=st.lists(messages(), max_size=3),
)
def test_oversized_body_len_refused_on_the_header(data, msg_id, max_body, before):
    length = data.draw(st.integers(max_body + 1, 0xFFFFFFFF))
    decoder = FrameDecoder(max_body)
    valid = [m for m in before if len(m.encode_body()) <= max_body]
    for m in valid:
        assert decoder.feed(encode(m)) == [m]
    header = HEADER.pack(msg_id, length)
    cut = data.draw(st.integers(0, HEADER_SIZE - 1))
    assert decoder.feed(header[:cut]) == []  # not a whole header yet: nothing to judge
    assert decoder.buffered == cut
    expect_error(ErrorCode.FRAME_TOO_LARGE, decoder.feed, header[cut:])  # no body byte fed
    assert decoder.buffered <= HEADER_SIZE


def test_oversized_body_len_byte_at_a_time():
    decoder = FrameDecoder(1024)
    header = HEADER.pack(Ping.MSG_ID, 0xFFFFFFFF)
    for i in range(HEADER_SIZE - 1):
        assert decoder.feed(header[i:i + 1]) == []
    expect_error(ErrorCode.FRAME_TOO_LARGE, decoder.feed, header[-1:])
    assert decoder.buffered <= HEADER_SIZE


def test_oversized_default_limit():
    decoder = FrameDecoder()
    header = HEADER.pack(SearchResults.MSG_ID, DEFAULT_MAX_FRAME + 1)
    expect_error(ErrorCode.FRAME_TOO_LARGE, decoder.feed, header)
    assert decoder.buffered <= HEADER_SIZE


def test_body_len_at_the_limit_is_accepted():
    body = Ping(5).encode_body()
    decoder = FrameDecoder(len(body))
    assert decoder.feed(HEADER.pack(Ping.MSG_ID, len(body))) == []
    assert decoder.feed(body) == [Ping(5)]
    assert decoder.buffered == 0


# ---------------------------------------------------------------- encoding refusals


@pytest.mark.parametrize(("cls", "f"), fields_where(is_string))
@FEW
@given(data=st.data())
def test_encoding_an_over_long_string_raises_wire_error(cls, f, data):
    max_bytes = f.metadata["wire"].construct.max_bytes
    text = data.draw(text_exceeding(max_bytes))
    assert utf8_len(text) > max_bytes
    msg = dataclasses.replace(data.draw(instances_of(cls)), **{f.name: text})
    with pytest.raises(WireError):
        encode(msg)
    with pytest.raises(WireError):
        msg.encode_body_plain()


def test_encoding_counts_bytes_not_characters():
    assert issubclass(WireError, ValueError)
    assert encode(Hello(1, 1, 1, "é" * 32))  # 64 bytes: fits
    with pytest.raises(WireError):
        encode(Hello(1, 1, 1, "é" * 33))  # 33 characters, 66 bytes
    with pytest.raises(WireError):
        encode(Hello(1, 1, 1, "😀" * 17))  # 17 characters, 68 bytes


def test_encoding_an_over_long_string_in_a_record_raises_wire_error():
    with pytest.raises(WireError):
        encode(MessagePush(ChatMessage(1, 2, 3, 4, 5, "x" * 16_001)))
    with pytest.raises(WireError):
        encode(SearchResults(1, [UserSummary(1, "u" * 33, False, False)]))


def test_encoding_an_out_of_range_int_raises_wire_error():
    for bad in (-1, 2 ** 32):
        with pytest.raises(WireError):
            encode(Ping(bad))


# ---------------------------------------------------------------- known gaps (see the report)


def test_encoding_a_list_over_max_items_raises_wire_error():
    msg = SearchResults(1, [UserSummary(1, "u", False, False)] * (MAX_SEARCH_RESULTS + 1))
    with pytest.raises(WireError):
        encode(msg)


def test_encoding_a_non_member_enum_value_raises_wire_error():
    with pytest.raises(WireError):
        encode(Error(1, 999, 0, "x"))

