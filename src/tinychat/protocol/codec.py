"""Framing: `msg_id: u16` + `body_len: u32` (big-endian), then the body.

`encode` turns a message into one frame.  `FrameDecoder` takes bytes in any
chunking and returns whole frames; it reads the fixed header with `struct`,
refuses a declared length over the limit before buffering any of the body,
and turns every failure of the body parser into `ProtocolError`.
"""

from __future__ import annotations

import struct

from .errors import ErrorCode, ProtocolError
from .schema import REGISTRY, Message

HEADER = struct.Struct(">HI")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_FRAME = 1024 * 1024
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from


def encode(message: Message) -> bytes:
    """One complete frame for `message`."""
    return message.encode_frame()


def decode_body(msg_id: int, body: bytes) -> Message:
    """Decode one body; any failure becomes a MALFORMED_FRAME or UNKNOWN_MESSAGE error."""
    cls = REGISTRY.get(msg_id)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"unknown msg_id 0x{msg_id:04x}")
    try:
        return cls.decode_body(body)
    except Exception as e:  # construct and the readers raise many types; all mean "malformed"
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, f"bad {cls.__name__} body: {e}") from None


def decode_frame(frame: bytes) -> Message:
    """Decode exactly one whole frame (header included)."""
    if len(frame) < HEADER_SIZE:
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, "frame shorter than its header")
    msg_id, length = _unpack_header(frame)
    if len(frame) - HEADER_SIZE != length:
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, "body length does not match the header")
    return decode_body(msg_id, frame[HEADER_SIZE:])


class FrameDecoder:
    """Incremental decoder: feed it bytes, get back the messages they complete.

    After a ProtocolError the stream is out of step and must be abandoned; the
    server answers with the error and closes.
    """

    __slots__ = ("_buffer", "max_body")

    def __init__(self, max_body: int = DEFAULT_MAX_FRAME) -> None:
        self.max_body = max_body
        self._buffer = b""

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buffer)

    def split(self, data: bytes) -> tuple[list[tuple[int, bytes]], ProtocolError | None]:
        """(msg_id, body) pairs completed by `data`, and the header error that ends the stream, if any.

        The frames before an oversized header are kept: a server serves them
        first, so what it answers does not depend on how TCP cut the stream.
        """
        buffer = self._buffer + data if self._buffer else data
        frames = []
        offset = 0
        end = len(buffer)
        max_body = self.max_body
        while end - offset >= HEADER_SIZE:
            msg_id, length = _unpack_header(buffer, offset)
            if length > max_body:
                self._buffer = b""
                return frames, ProtocolError(
                    ErrorCode.FRAME_TOO_LARGE, f"body_len {length} exceeds the maximum of {max_body} bytes")
            stop = offset + HEADER_SIZE + length
            if stop > end:
                break
            frames.append((msg_id, buffer[offset + HEADER_SIZE:stop]))
            offset = stop
        self._buffer = buffer[offset:] if offset < end else b""
        return frames, None

    def feed_frames(self, data: bytes) -> list[tuple[int, bytes]]:
        """Split into (msg_id, body) pairs without decoding the bodies; raise at a bad header."""
        frames, error = self.split(data)
        if error is not None:
            raise error
        return frames

    def feed(self, data: bytes) -> list[Message]:
        """Decode every frame that `data` completes."""
        return [decode_body(msg_id, body) for msg_id, body in self.feed_frames(data)]
