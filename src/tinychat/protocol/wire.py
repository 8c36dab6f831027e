"""Wire primitives: the field types every message definition is made of.

Each type couples a `construct` definition (the single source of truth for the
bytes) with what the docs say about it and how a parsed value becomes a typed
Python value.  Strings and byte strings are custom constructs because the
stock `PascalString` compiles to a read that silently truncates on a short
body and cannot refuse an over-long prefix before reading it; ours emit calls
to the strict readers below in compiled and in plain mode alike.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from construct import (
    Construct,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    PrefixedArray,
)

_U16 = struct.Struct(">H")


class WireError(ValueError):
    """A field's bytes (or value, when encoding) break the field's declared rules."""


def read_exact(io: Any, n: int) -> bytes:
    data = io.read(n)
    if len(data) != n:
        raise WireError(f"body ends {n - len(data)} bytes early")
    return data


def read_string(io: Any, max_bytes: int) -> str:
    (n,) = _U16.unpack(read_exact(io, 2))
    if n > max_bytes:
        raise WireError(f"string of {n} bytes exceeds its maximum of {max_bytes}")
    return read_exact(io, n).decode("utf-8")


def pack_string(value: str, max_bytes: int) -> bytes:
    if not isinstance(value, str):
        raise WireError(f"expected str, got {type(value).__name__}")
    data = value.encode("utf-8")
    if len(data) > max_bytes:
        raise WireError(f"string of {len(data)} bytes exceeds its maximum of {max_bytes}")
    return _U16.pack(len(data)) + data


_U32 = struct.Struct(">I")


def read_blob(io: Any, max_bytes: int) -> bytes:
    (n,) = _U32.unpack(read_exact(io, 4))
    if n > max_bytes:
        raise WireError(f"byte string of {n} bytes exceeds its maximum of {max_bytes}")
    return read_exact(io, n)


def pack_blob(value: bytes, max_bytes: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise WireError(f"expected bytes, got {type(value).__name__}")
    if len(value) > max_bytes:
        raise WireError(f"byte string of {len(value)} bytes exceeds its maximum of {max_bytes}")
    return _U32.pack(len(value)) + bytes(value)


def read_bool(io: Any) -> bool:
    b = read_exact(io, 1)
    if b == b"\x00":
        return False
    if b == b"\x01":
        return True
    raise WireError(f"bool byte must be 0 or 1, got {b[0]}")


def pack_bool(value: bool) -> bytes:
    if value is True:
        return b"\x01"
    if value is False:
        return b"\x00"
    raise WireError(f"expected bool, got {type(value).__name__}")


_IMPORT = "from tinychat.protocol import wire as _wire"


class _StrictString(Construct):
    """u16 byte length, then that many bytes of UTF-8; the prefix is checked first."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def _parse(self, stream, context, path):
        return read_string(stream, self.max_bytes)

    def _build(self, obj, stream, context, path):
        stream.write(pack_string(obj, self.max_bytes))
        return obj

    def _emitparse(self, code):
        code.append(_IMPORT)
        return f"_wire.read_string(io, {self.max_bytes})"

    def _emitbuild(self, code):
        code.append(_IMPORT)
        return f"(io.write(_wire.pack_string(obj, {self.max_bytes})), obj)[1]"


class _StrictBlob(Construct):
    """u32 byte length, then that many raw bytes."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def _parse(self, stream, context, path):
        return read_blob(stream, self.max_bytes)

    def _build(self, obj, stream, context, path):
        stream.write(pack_blob(obj, self.max_bytes))
        return obj

    def _emitparse(self, code):
        code.append(_IMPORT)
        return f"_wire.read_blob(io, {self.max_bytes})"

    def _emitbuild(self, code):
        code.append(_IMPORT)
        return f"(io.write(_wire.pack_blob(obj, {self.max_bytes})), obj)[1]"


class _StrictBool(Construct):
    """One byte, 0 or 1; anything else (or nothing) is malformed."""

    def _parse(self, stream, context, path):
        return read_bool(stream)

    def _build(self, obj, stream, context, path):
        stream.write(pack_bool(obj))
        return obj

    def _emitparse(self, code):
        code.append(_IMPORT)
        return "_wire.read_bool(io)"

    def _emitbuild(self, code):
        code.append(_IMPORT)
        return "(io.write(_wire.pack_bool(obj)), obj)[1]"


@dataclass(frozen=True)
class WireType:
    """A field type: its construct, its name in the spec, and its value conversion.

    `convert` turns the parsed value into the typed Python value (an IntEnum, a
    record, a list of records) and raises on values the type does not admit.
    `size` is the fixed byte size, or None when variable.  `check` validates a
    value before encoding what the builder itself cannot (enum membership,
    list lengths), so that we never send a frame the peer must refuse.
    """

    construct: Construct
    spec: str
    size: int | None = None
    convert: Callable[[Any], Any] | None = None
    record: type | None = None
    max_items: int | None = None
    check: Callable[[Any], None] | None = None
    # How tinychat.protocol.fastcodec lays the field out: ("int", struct code), ("bool",),
    # ("string", max bytes), ("bytes", max bytes), ("enum", struct code, enum), ("record", class),
    # ("records", class, max items) or ("ids", max items).  It must say what `construct` says;
    # the codec tests check the two against each other.
    layout: tuple = ()


U8 = WireType(Int8ub, "u8", 1, layout=("int", "B"))
U16 = WireType(Int16ub, "u16", 2, layout=("int", "H"))
U32 = WireType(Int32ub, "u32", 4, layout=("int", "I"))
U64 = WireType(Int64ub, "u64", 8, layout=("int", "Q"))
BOOL = WireType(_StrictBool(), "bool", 1, layout=("bool",))


def String(max_bytes: int) -> WireType:
    """UTF-8 text of at most `max_bytes` bytes, prefixed by its u16 byte length."""
    if not 0 < max_bytes <= 0xFFFF:
        raise ValueError("string maximum must fit a u16 length prefix")
    return WireType(_StrictString(max_bytes), f"string(≤{max_bytes})", layout=("string", max_bytes))


def Bytes(max_bytes: int) -> WireType:
    """Raw bytes of at most `max_bytes`, prefixed by their u32 length."""
    return WireType(_StrictBlob(max_bytes), f"bytes(≤{max_bytes})", layout=("bytes", max_bytes))


def _member_check(enum: type[IntEnum]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        try:
            enum(value)
        except ValueError:
            raise WireError(f"{value!r} is not a {enum.__name__}") from None

    return check


def Enum8(enum: type[IntEnum]) -> WireType:
    """A u8 whose value must be a member of `enum`."""
    return WireType(Int8ub, f"u8 {enum.__name__}", 1, convert=enum, check=_member_check(enum),
                    layout=("enum", "B", enum))


def Enum16(enum: type[IntEnum]) -> WireType:
    """A u16 whose value must be a member of `enum`."""
    return WireType(Int16ub, f"u16 {enum.__name__}", 2, convert=enum, check=_member_check(enum),
                    layout=("enum", "H", enum))


def Record(record: type) -> WireType:
    """A nested record, laid out inline."""
    return WireType(record.STRUCT, record.__name__, record.SIZE, convert=record.from_container,
                    record=record, check=record.validate, layout=("record", record))


def U64List(max_items: int) -> WireType:
    """A u16 item count, then that many u64 values (a list of ids)."""

    def convert(items: Any) -> list[int]:
        if len(items) > max_items:
            raise WireError(f"list of {len(items)} items exceeds its maximum of {max_items}")
        return list(items)

    def check(items: Any) -> None:
        if len(items) > max_items:
            raise WireError(f"list of {len(items)} items exceeds its maximum of {max_items}")

    return WireType(PrefixedArray(Int16ub, Int64ub), f"list(≤{max_items}) of u64", convert=convert,
                    max_items=max_items, check=check, layout=("ids", max_items))


def ListOf(record: type, max_items: int) -> WireType:
    """A u16 item count, then that many records laid out one after the other."""
    from_container = record.from_container

    def convert(items: Any) -> list:
        if len(items) > max_items:
            raise WireError(f"list of {len(items)} items exceeds its maximum of {max_items}")
        return [from_container(item) for item in items]

    validate_item = record.validate

    def check(items: Any) -> None:
        if len(items) > max_items:
            raise WireError(f"list of {len(items)} items exceeds its maximum of {max_items}")
        if validate_item is not None:
            for item in items:
                validate_item(item)

    return WireType(
        PrefixedArray(Int16ub, record.STRUCT),
        f"list(≤{max_items}) of {record.__name__}",
        convert=convert,
        record=record,
        max_items=max_items,
        check=check,
        layout=("records", record, max_items),
    )
