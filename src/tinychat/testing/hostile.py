"""Tools for attacking a node on purpose: a raw blocking client and a model of the answers.

`RawClient` speaks frames over a plain socket (optionally from another
loopback source address, with a tiny receive buffer, half-closed...), which
the well-behaved client library cannot do.  `predict` is an executable
reading of docs/protocol.md: given the bytes a client sends in a connection
state, it says which answers the server must give (and whether it must close),
so fuzzers can check every answer instead of only "it did not crash".
`random_frame` makes mutated and random frames without Hypothesis, for
`tinychat.bench fuzz`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import re
import socket
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from tinychat.protocol import (
    HEADER,
    HEADER_SIZE,
    REGISTRY,
    Access,
    CodePurpose,
    Error,
    ErrorCode,
    FrameDecoder,
    Hello,
    Kind,
    LoggedIn,
    Login,
    Logout,
    Message,
    MessagePush,
    Ping,
    Pong,
    ProtocolError,
    Register,
    RequestCode,
    RespondFriendRequest,
    SendFriendRequest,
    SendMessage,
    Welcome,
    decode_body,
    encode,
)
from tinychat.protocol import wire as w

CONNECTED, READY, LOGGED_IN = "connected", "ready", "logged-in"
STATES = (CONNECTED, READY, LOGGED_IN)
_REQUEST_ID = struct.Struct(">I")

# Request-level refusals any served request may meet, whatever its fields: everything
# but the codes that would reveal a bug (INTERNAL_ERROR), a mixed-up dispatcher
# (NOT_A_REQUEST, NOT/ALREADY_LOGGED_IN outside their state) or a broken backend.
SERVED_REFUSALS = frozenset(code for code in ErrorCode if not code.closes_connection) - {
    ErrorCode.INTERNAL_ERROR, ErrorCode.NOT_A_REQUEST, ErrorCode.UNAVAILABLE,
    ErrorCode.NOT_LOGGED_IN, ErrorCode.ALREADY_LOGGED_IN,
}


class ServerClosedError(Exception):
    """The server closed the connection while an answer was awaited."""


class RawClient:
    """A blocking frame-level client for hostile tests; not for applications.

    `source` binds the local address first (any 127.x.y.z reaches a node on
    127.0.0.1), so per-address limits and login-failure counters can be kept
    apart between parts of a test; `rcvbuf` shrinks the kernel receive buffer
    so a client that never reads is noticed by the server sooner.
    """

    def __init__(self, host: str, port: int, *, source: str | None = None, timeout: float = 10.0,
                 rcvbuf: int | None = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.decoder = FrameDecoder(max_body=64 * 1024 * 1024)
        self.inbox: deque[Message] = deque()
        self.pushes: list[Message] = []
        self.closed = False
        self._ids = itertools.count(1)

    @classmethod
    def to(cls, node: Any, **kwargs: Any) -> RawClient:
        """Connect to a `NodeProcess` (or anything with host and port)."""
        return cls(node.host, node.port, **kwargs)

    def next_id(self) -> int:
        return next(self._ids)

    # ------------------------------------------------------------ bytes

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_message(self, message: Message) -> None:
        self.sock.sendall(encode(message))

    def shutdown_write(self) -> None:
        """Half-close: the server sees end of stream after what was sent."""
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self) -> bool:
        """Read once into the inbox; False when the server has closed."""
        if self.closed:
            return False
        try:
            chunk = self.sock.recv(1 << 16)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.inbox.extend(self.decoder.feed(chunk))
        return True

    def receive(self) -> Message | None:
        """The next message from the server, or None once it has closed (socket timeout raises)."""
        while not self.inbox:
            if not self._fill():
                return None
        return self.inbox.popleft()

    def until_closed(self) -> list[Message]:
        """Every message until the server closes the connection."""
        messages = []
        while (message := self.receive()) is not None:
            messages.append(message)
        return messages

    # ------------------------------------------------------------ requests

    def request(self, request_type: type[Message], **fields: Any) -> Message:
        """Send a request; its response (reply or ERROR).  Pushes meanwhile go to `pushes`."""
        request_id = fields.pop("request_id", None) or self.next_id()
        self.send_message(request_type(request_id=request_id, **fields))
        return self.response_to(request_id)

    def response_to(self, request_id: int) -> Message:
        while True:
            message = self.receive()
            if message is None:
                raise ServerClosedError(f"connection closed while waiting for the answer to request {request_id}")
            if message.KIND is Kind.PUSH:
                self.pushes.append(message)
            elif message.request_id == request_id:
                return message
            elif isinstance(message, Error) and message.code.closes_connection:
                raise ServerClosedError(f"connection error {message.code.name}: {message.message}")

    def call(self, request_type: type[Message], **fields: Any) -> Message:
        """`request`, raising AssertionError when the answer is an ERROR."""
        answer = self.request(request_type, **fields)
        if isinstance(answer, Error):
            raise AssertionError(f"{request_type.__name__} refused: {answer.code.name}: {answer.message}")
        return answer

    def next_push(self, push_type: type[Message]) -> Message:
        """The next push of `push_type` (earlier ones of other types are kept in `pushes`)."""
        for index, push in enumerate(self.pushes):
            if isinstance(push, push_type):
                return self.pushes.pop(index)
        while True:
            message = self.receive()
            if message is None:
                raise ServerClosedError(f"connection closed while waiting for {push_type.__name__}")
            if isinstance(message, push_type):
                return message
            if message.KIND is Kind.PUSH:
                self.pushes.append(message)

    def handshake(self) -> Welcome:
        welcome = self.call(Hello, min_version=1, max_version=1, client_name="hostile")
        assert isinstance(welcome, Welcome)
        return welcome

    def login(self, identifier: str, password: str) -> LoggedIn:
        logged_in = self.call(Login, identifier=identifier, password=password, totp_code="")
        assert isinstance(logged_in, LoggedIn)
        return logged_in

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class Expected:
    """One answer the server owes: a success reply of `replies`, or an ERROR with a code in `codes`."""

    request_id: int
    replies: tuple[type[Message], ...] = ()
    codes: frozenset[ErrorCode] = frozenset()
    closes: bool = False
    what: str = ""

    def accepts(self, message: Message) -> bool:
        if getattr(message, "request_id", None) != self.request_id:
            return False
        if isinstance(message, Error):
            return message.code in self.codes
        return isinstance(message, self.replies)


@dataclass
class Prediction:
    """What a connection in some state must answer to `sent` (the bytes actually to send).

    Without `closing`, every answer in `answers` must arrive and the connection
    stays open.  With it, the connection ends with that ERROR, and the answers
    before it may be missing (the server drops answers still being worked out
    when it closes, and frames read together with a bad header), but any that
    arrives must be right.
    """

    sent: bytes
    answers: list[Expected] = field(default_factory=list)
    closing: Expected | None = None
    eof: bool = False
    frames: int = 0


def request_id_of(msg_id: int, body: bytes) -> int:
    """The request id the server echoes in the error for an undecodable frame."""
    cls = REGISTRY.get(msg_id)
    if cls is not None and cls.KIND is Kind.REQUEST and len(body) >= 4:
        return _REQUEST_ID.unpack_from(body)[0]
    return 0


def _answer_in(state: str, message: Message) -> tuple[Expected, set[str]]:
    """The answer to one decoded frame in one state, and the states it may leave behind."""
    name = type(message).__name__
    request_id = getattr(message, "request_id", 0)
    if state == CONNECTED:
        if not isinstance(message, Hello):
            return Expected(0, codes=frozenset({ErrorCode.HANDSHAKE_REQUIRED}), closes=True,
                            what=f"{name} before HELLO"), {CONNECTED}
        if message.min_version <= 1 <= message.max_version:
            return Expected(request_id, replies=(Welcome,), what="HELLO"), {READY}
        return Expected(request_id, codes=frozenset({ErrorCode.UNSUPPORTED_VERSION}), closes=True,
                        what="HELLO without version 1"), {CONNECTED}
    if message.KIND is not Kind.REQUEST:
        return Expected(request_id, codes=frozenset({ErrorCode.NOT_A_REQUEST}), what=f"{name} from a client"), {state}
    if isinstance(message, Hello):
        return Expected(request_id, codes=frozenset({ErrorCode.INVALID_ARGUMENT}), what="second HELLO"), {state}
    if message.ACCESS is Access.USER and state == READY:
        return Expected(request_id, codes=frozenset({ErrorCode.NOT_LOGGED_IN}), what=f"{name} before login"), {state}
    if message.ACCESS is Access.GUEST and state == LOGGED_IN:
        return Expected(request_id, codes=frozenset({ErrorCode.ALREADY_LOGGED_IN}),
                        what=f"{name} after login"), {state}
    after = {LOGGED_IN, READY} if isinstance(message, Logout) else {state}
    replies = (message.REPLY,) if message.REPLY is not None else ()
    return Expected(request_id, replies=replies, codes=SERVED_REFUSALS, what=name), after


def _merge(options: list[Expected]) -> Expected:
    """One expectation accepting what any of the possible states would answer."""
    first = options[0]
    if len(options) == 1:
        return first
    return Expected(first.request_id, replies=tuple({r for o in options for r in o.replies}),
                    codes=frozenset().union(*(o.codes for o in options)), closes=any(o.closes for o in options),
                    what=" or ".join(sorted({o.what for o in options})))


def split_frames(data: bytes, max_frame: int) -> tuple[list[tuple[int, bytes]], ProtocolError | None, bytes]:
    """(complete frames, the header error that stops the stream if any, incomplete tail bytes)."""
    frames = []
    offset = 0
    while len(data) - offset >= HEADER_SIZE:
        msg_id, length = HEADER.unpack_from(data, offset)
        if length > max_frame:
            return frames, ProtocolError(ErrorCode.FRAME_TOO_LARGE), b""
        stop = offset + HEADER_SIZE + length
        if stop > len(data):
            break
        frames.append((msg_id, data[offset + HEADER_SIZE:stop]))
        offset = stop
    return frames, None, data[offset:]


def completion(tail: bytes, max_frame: int) -> bytes:
    """Zero bytes that complete a partial frame (or just its header, if that declares too much)."""
    if not tail:
        return b""
    header = tail[:HEADER_SIZE] + bytes(max(0, HEADER_SIZE - len(tail)))
    _, length = HEADER.unpack(header)
    if length > max_frame:
        return header[len(tail):] if len(tail) < HEADER_SIZE else b""
    return bytes(HEADER_SIZE + length - len(tail))


def predict(fuzz: bytes, state: str, max_frame: int, sentinel_id: int, eof: bool = False) -> Prediction:
    """The answers a node owes to `fuzz` sent in `state`.

    Unless `eof` (send, then half-close), a partial frame at the end is
    completed with zero bytes and a PING with `sentinel_id` follows, so that
    every outcome is observable without waiting for silence.
    """
    sent = fuzz
    if not eof:
        _, error, tail = split_frames(fuzz, max_frame)
        if error is None:
            sent += completion(tail, max_frame)
            if not split_frames(sent, max_frame)[2]:
                sent += encode(Ping(request_id=sentinel_id))
    frames, error, _ = split_frames(sent, max_frame)
    prediction = Prediction(sent=sent, eof=eof)
    states = {state}
    for msg_id, body in frames:
        prediction.frames += 1
        try:
            message = decode_body(msg_id, body)
        except ProtocolError as e:
            prediction.closing = Expected(request_id_of(msg_id, body), codes=frozenset({e.code}), closes=True,
                                          what=f"undecodable frame 0x{msg_id:04x}")
            return prediction
        options = []
        next_states: set[str] = set()
        for possible in sorted(states):
            expected, after = _answer_in(possible, message)
            options.append(expected)
            next_states |= after
        expected = _merge(options)
        if expected.closes:
            prediction.closing = expected
            return prediction
        prediction.answers.append(expected)
        states = next_states
    if error is not None:
        prediction.closing = Expected(0, codes=frozenset({error.code}), closes=True, what="oversized header")
    return prediction


def _unmatched(expected: list[Expected], received: list[Message]) -> list[Message]:
    """The fewest received answers left over when each is paired with a distinct expectation accepting it.

    Answers may come in any order and fuzzed request ids repeat, so a greedy
    pairing could blame the wrong one; the lists are short, so try them all.
    """
    if not received:
        return []
    first, rest = received[0], received[1:]
    best = [first, *_unmatched(expected, rest)]
    for index, candidate in enumerate(expected):
        if candidate.accepts(first):
            left = _unmatched(expected[:index] + expected[index + 1:], rest)
            if len(left) < len(best):
                best = left
                if not best:
                    break
    return best


def check(client: RawClient, prediction: Prediction) -> list[str]:
    """Read the answers to `prediction.sent` (already sent) and list every way they break it."""
    expected = list(prediction.answers)
    if prediction.closing is None and not prediction.eof:
        owed = {e.request_id for e in expected}
        received: list[Message] = []
        while len(received) < len(expected):
            message = client.receive()
            if message is None:
                return [f"closed after {len(received)} of {len(expected)} answers: {received!r}, "
                        f"owed {[(e.request_id, e.what) for e in expected]}"]
            if message.KIND is Kind.PUSH:
                continue
            if message.request_id not in owed or (isinstance(message, Error) and message.code.closes_connection):
                return [f"unexpected {message!r}; owed {[(e.request_id, e.what) for e in expected]}"]
            received.append(message)
        return [f"unexpected {m!r}; owed {[(e.request_id, e.what) for e in expected]}"
                for m in _unmatched(expected, received)]
    problems: list[str] = []
    received = [m for m in client.until_closed() if m.KIND is not Kind.PUSH]
    closing = prediction.closing
    if closing is not None:
        if not received or not closing.accepts(received[-1]):
            last = received[-1] if received else None
            problems.append(f"expected {closing.what} to end with {sorted(c.name for c in closing.codes)} "
                            f"(request_id {closing.request_id}), got {last!r}")
        else:
            received.pop()
    problems += [f"unexpected {m!r} before the close" for m in _unmatched(expected, received)]
    return problems


# ---------------------------------------------------------------- random frames (no Hypothesis)

_INT_BITS = {w.U8.spec: 8, w.U16.spec: 16, w.U32.spec: 32, w.U64.spec: 64}
_STRING_TYPE = type(w.String(1).construct)
_BLOB_TYPE = type(w.Bytes(1).construct)
_ODD_TEXT = ["", "\x00", "'; DROP TABLE users; --", "%_\\\"'", "é", "😀", "\u202e", "\u0301", "\uffff",
             "\U0010ffff", "a" * 40]


def random_value(rng: random.Random, wire_type: w.WireType) -> Any:
    """A valid value of one field type, skewed towards edge cases."""
    enum = wire_type.convert if isinstance(wire_type.convert, type) and issubclass(wire_type.convert, IntEnum) \
        else None
    if enum is not None:
        return rng.choice(list(enum))
    if wire_type is w.BOOL:
        return rng.random() < 0.5
    if wire_type.spec in _INT_BITS:
        bits = _INT_BITS[wire_type.spec]
        return rng.choice([0, 1, 2**bits - 1, rng.randrange(2**bits), rng.randrange(10000, 10100) % 2**bits])
    if isinstance(wire_type.construct, _STRING_TYPE):
        text = "".join(rng.choice(_ODD_TEXT) for _ in range(rng.randrange(4)))
        data = text.encode()[:wire_type.construct.max_bytes]
        return data.decode("utf-8", errors="ignore")
    if isinstance(wire_type.construct, _BLOB_TYPE):
        return rng.randbytes(min(wire_type.construct.max_bytes, rng.randrange(64)))
    if wire_type.record is not None and wire_type.max_items is not None:
        return [random_instance(rng, wire_type.record) for _ in range(min(wire_type.max_items, rng.randrange(3)))]
    if wire_type.record is not None:
        return random_instance(rng, wire_type.record)
    if wire_type.max_items is not None:
        return [rng.randrange(2**64) for _ in range(min(wire_type.max_items, rng.randrange(3)))]
    raise TypeError(f"no random values for wire type {wire_type.spec!r}")


def random_instance(rng: random.Random, cls: type) -> Any:
    return cls(**{f.name: random_value(rng, f.metadata["wire"]) for f in dataclasses.fields(cls)})


def mutate(rng: random.Random, data: bytes, count: int) -> bytes:
    """Flip, insert or delete `count` random bytes."""
    buffer = bytearray(data)
    for _ in range(count):
        op = rng.randrange(3)
        at = rng.randrange(len(buffer) + 1)
        if op == 0 and at < len(buffer):
            buffer[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            buffer.insert(at, rng.randrange(256))
        elif at < len(buffer):
            del buffer[at]
    return bytes(buffer)


def random_frame(rng: random.Random, max_frame: int, classes: Iterable[type[Message]] | None = None) -> bytes:
    """One hostile frame: valid, mutated, random body, random header, oversized or truncated."""
    pool = list(classes) if classes is not None else [REGISTRY[i] for i in sorted(REGISTRY)]
    kind = rng.randrange(6)
    if kind == 4:
        return HEADER.pack(rng.choice(pool).MSG_ID, rng.randrange(max_frame + 1, 2**32))
    if kind == 3:
        return rng.randbytes(HEADER_SIZE) + rng.randbytes(rng.randrange(16))
    if kind == 2:
        msg_id = rng.choice([rng.choice(pool).MSG_ID, rng.randrange(2**16)])
        body = rng.randbytes(rng.randrange(48))
        return HEADER.pack(msg_id, len(body)) + body
    frame = encode(random_instance(rng, rng.choice(pool)))
    if kind == 1:
        return mutate(rng, frame, rng.randrange(1, 4))
    if kind == 5:
        return frame[:rng.randrange(1, len(frame))]
    return frame



# ---------------------------------------------------------------- a fuzzing session


def code_from_log(node: Any, email: str, purpose: str = "REGISTER") -> str:
    """A verification code from the log of a node in dev mode (no SMTP host)."""
    pattern = rf"verification code for {re.escape(email)} \({purpose}\): (\d{{6}})"
    return node.wait_for_log(pattern).group(1)


def register(node: Any, name: str, password: str, **client_args: Any) -> int:
    """Register `name` (e-mail name@example.com) on a dev-mode node through the protocol; its uid."""
    email = f"{name}@example.com"
    with RawClient.to(node, **client_args) as client:
        client.handshake()
        client.call(RequestCode, email=email, purpose=CodePurpose.REGISTER)
        registered = client.call(Register, username=name, email=email, password=password,
                                 code=code_from_log(node, email))
        return registered.uid


class FuzzTarget:
    """A dev-mode node under attack, a user for logged-in cases, and two bystanders.

    The bystanders are logged in once and befriended; `still_serving` makes
    one ping and one message round trip between them, which must work after
    whatever the attacker sent (run the node with a --rate-limit above what
    the bystanders' checks add up to).  Attack connections come from rotating
    loopback addresses per state, so that the login failures they provoke
    (counted per address) never lock out the logins the target itself needs.
    """

    SOURCES = {CONNECTED: "127.0.1.{}", READY: "127.0.2.{}", LOGGED_IN: "127.0.3.{}"}
    PASSWORD = "fuzzing password"  # noqa: S105 - a throw-away test account

    def __init__(self, node: Any) -> None:
        self.node = node
        self.attacker = "fuzzer"
        register(node, self.attacker, self.PASSWORD)
        uids = {name: register(node, name, self.PASSWORD) for name in ("bystander", "partner")}
        self.bystander, self.partner = RawClient.to(node), RawClient.to(node)
        for client, name in ((self.bystander, "bystander"), (self.partner, "partner")):
            client.handshake()
            client.login(name, self.PASSWORD)
        sent = self.bystander.call(SendFriendRequest, to_uid=uids["partner"], greeting="hi")
        resolved = self.partner.call(RespondFriendRequest, friend_request_id=sent.friend_request_id, accept=True,
                                     remark="")
        self.thread_id = resolved.thread_id
        self.rounds = 0
        self._rotation = itertools.count()
        # Not the global `random`: Hypothesis reseeds that for every example, and a
        # repeated client_msg_id is (rightly) deduplicated without a push.
        self.rng = random.Random(os.urandom(16))

    def connect(self, state: str) -> RawClient:
        """A fresh connection brought to `state`."""
        source = self.SOURCES[state].format(next(self._rotation) % 250 + 1)
        client = RawClient.to(self.node, source=source)
        if state != CONNECTED:
            client.handshake()
        if state == LOGGED_IN:
            client.login(self.attacker, self.PASSWORD)
        return client

    def attack(self, state: str, data: bytes, eof: bool, max_frame: int) -> tuple[Prediction, list[str]]:
        """Send `data` in `state` on a fresh connection; the prediction and every deviation from it."""
        client = self.connect(state)
        try:
            prediction = predict(data, state, max_frame, sentinel_id=self.rng.getrandbits(31) | 1 << 31, eof=eof)
            try:
                client.send(prediction.sent)
                if eof:
                    client.shutdown_write()
            except OSError as e:  # the server may close before reading everything, when it must close
                if prediction.closing is None and not eof:
                    return prediction, [f"sending failed: {e}"]
            return prediction, check(client, prediction)
        finally:
            client.close()

    def still_serving(self) -> None:
        """The node is alive and the bystanders' sessions work end to end (AssertionError if not)."""
        process = getattr(self.node, "process", None)
        assert process is None or process.poll() is None, "the node process died"
        self.rounds += 1
        answer = self.bystander.request(Ping)
        assert isinstance(answer, Pong), f"the bystander's PING got {answer!r}"
        cmid = self.rng.getrandbits(64)
        ack = self.bystander.call(SendMessage, thread_id=self.thread_id, to_uid=0, client_msg_id=cmid,
                                  text=f"still here {self.rounds}")
        push = self.partner.next_push(MessagePush)
        assert (push.message.client_msg_id, push.message.seq) == (cmid, ack.seq), "the message push went astray"
        answer = self.partner.request(Ping)
        assert isinstance(answer, Pong), f"the partner's PING got {answer!r}"

    def close(self) -> None:
        self.bystander.close()
        self.partner.close()
