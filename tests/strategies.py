"""Hypothesis strategies for the wire protocol, derived from the message definitions.

Nothing here names a message: `messages()` walks `REGISTRY` and builds every
field's values from its wire type (`field.metadata["wire"]`), so a message or
record added to the protocol is generated, and therefore tested, automatically.
A wire type this module does not recognise fails loudly instead of being skipped.
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from functools import cache
from typing import Any

from hypothesis import strategies as st

from tinychat.protocol import REGISTRY, Message
from tinychat.protocol import wire as w

# Lists are kept short so examples stay fast; the maximum itself is covered by
# the explicit boundary tests.
MAX_GENERATED_ITEMS = 5

_INT_BITS = {w.U8.spec: 8, w.U16.spec: 16, w.U32.spec: 32, w.U64.spec: 64}
_STRING_CONSTRUCT = type(w.String(1).construct)
_BLOB_CONSTRUCT = type(w.Bytes(1).construct)

# Characters worth having in every string: NUL, 2-, 3- and 4-byte UTF-8, the
# highest code point, a zero-width joiner, a combining mark, a BOM and a right-to-left mark.
_SPECIAL_CHARS = [
    "\x00", "\x7f", "é", "ß", "€", "中", "😀", "\u200d", "\U0010ffff", "\u0301", "\ufeff", "\u200f",
]
_CHARS = st.one_of(
    st.sampled_from(_SPECIAL_CHARS),
    st.characters(codec="utf-8"),  # never a lone surrogate: those cannot be encoded
)


def _text(min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    # A list of characters rather than st.text(alphabet), which would dilute the special ones.
    return st.lists(_CHARS, min_size=min_size, max_size=max_size).map("".join)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def fit_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` (whole code points) whose UTF-8 fits `max_bytes`."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


def _fill_utf8(seed: str, max_bytes: int) -> str:
    """`seed` repeated up to the limit: strings at (or within 3 bytes of) the maximum."""
    reps = max_bytes // max(1, utf8_len(seed)) + 1
    return fit_utf8(seed * reps, max_bytes)


def text_fitting(max_bytes: int) -> st.SearchStrategy[str]:
    """Any str whose UTF-8 encoding is at most `max_bytes` bytes, from empty to full."""
    short = _text(max_size=min(max_bytes, 24)).map(lambda s: fit_utf8(s, max_bytes))
    full = _text(min_size=1, max_size=6).map(lambda s: _fill_utf8(s, max_bytes))
    return st.one_of(short, full)


def text_exceeding(max_bytes: int) -> st.SearchStrategy[str]:
    """A str whose UTF-8 is longer than `max_bytes` (possibly with fewer characters)."""
    return _text(min_size=1, max_size=6).map(
        lambda s: s * (max_bytes // utf8_len(s) + 1)
    )


def bytes_fitting(max_bytes: int) -> st.SearchStrategy[bytes]:
    short = st.binary(max_size=min(max_bytes, 32))
    full = st.binary(min_size=1, max_size=4).map(lambda b: (b * (max_bytes // len(b) + 1))[:max_bytes])
    return st.one_of(short, full)


def is_string(wire_type: w.WireType) -> bool:
    return isinstance(wire_type.construct, _STRING_CONSTRUCT)


def enum_of(wire_type: w.WireType) -> type[IntEnum] | None:
    conv = wire_type.convert
    if isinstance(conv, type) and issubclass(conv, IntEnum):
        return conv
    return None


def values(wire_type: w.WireType) -> st.SearchStrategy[Any]:
    """Every valid value of one field type."""
    if wire_type.spec in _INT_BITS and wire_type.convert is None:
        return st.integers(min_value=0, max_value=2 ** _INT_BITS[wire_type.spec] - 1)
    if wire_type is w.BOOL:
        return st.booleans()
    enum = enum_of(wire_type)
    if enum is not None:
        return st.sampled_from(list(enum))
    if is_string(wire_type):
        return text_fitting(wire_type.construct.max_bytes)
    if isinstance(wire_type.construct, _BLOB_CONSTRUCT):
        return bytes_fitting(wire_type.construct.max_bytes)
    if wire_type.record is not None and wire_type.max_items is not None:
        return st.lists(
            st.deferred(lambda: instances_of(wire_type.record)),
            max_size=min(wire_type.max_items, MAX_GENERATED_ITEMS),
        )
    if wire_type.record is not None:
        return st.deferred(lambda: instances_of(wire_type.record))
    if wire_type.max_items is not None:  # a list of u64 ids
        return st.lists(st.integers(0, 2**64 - 1), max_size=min(wire_type.max_items, MAX_GENERATED_ITEMS))
    raise TypeError(f"tests/strategies.py does not know how to generate wire type {wire_type.spec!r}")


@cache
def instances_of(cls: type) -> st.SearchStrategy[Any]:
    """Valid instances of one record or message class, every field drawn from its wire type."""
    return st.builds(cls, **{f.name: values(f.metadata["wire"]) for f in dataclasses.fields(cls)})


def message_classes() -> list[type[Message]]:
    return [REGISTRY[msg_id] for msg_id in sorted(REGISTRY)]


def messages() -> st.SearchStrategy[Message]:
    """A valid instance of any registered message."""
    return st.sampled_from(message_classes()).flatmap(instances_of)


def frames_stream(max_messages: int = 8) -> st.SearchStrategy[list[Message]]:
    """Several messages, to be sent one frame after the other on one connection."""
    return st.lists(messages(), min_size=1, max_size=max_messages)


def minimal_value(wire_type: w.WireType) -> Any:
    """The smallest valid value of a field type: 0, False, "", b"", the first member, []."""
    enum = enum_of(wire_type)
    if enum is not None:
        return next(iter(enum))
    if wire_type is w.BOOL:
        return False
    if wire_type.spec in _INT_BITS:
        return 0
    if is_string(wire_type):
        return ""
    if isinstance(wire_type.construct, _BLOB_CONSTRUCT):
        return b""
    if wire_type.max_items is not None:
        return []
    if wire_type.record is not None:
        return minimal_instance(wire_type.record)
    raise TypeError(f"tests/strategies.py does not know wire type {wire_type.spec!r}")


def minimal_instance(cls: type) -> Any:
    return cls(**{f.name: minimal_value(f.metadata["wire"]) for f in dataclasses.fields(cls)})
