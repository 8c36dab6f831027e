"""Straight-line encoders and decoders generated from the message definitions.

The `construct` definitions are the protocol's source of truth, and their
compiled form is correct but spends most of its time in generic machinery
(streams, containers, per-field calls).  Every field type also states its
layout (`WireType.layout`), so for each message this module writes one Python
function that packs or unpacks all consecutive fixed-size fields with a single
`struct` call and slices strings straight out of the body: several times
faster, which is what a node serving tens of thousands of messages per second
needs.  The codec tests check these functions against construct's parser and
builder on random and on mutated input, so the two cannot drift apart.

Decoders raise `WireError` (or ValueError/struct.error) on anything malformed;
encoders raise `WireError` on values the peer would have to refuse.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .wire import WireError

_U16 = struct.Struct(">H")
_HEADER_CODES = ">HI"


def _short(missing: int) -> WireError:
    return WireError(f"body ends {missing} bytes early")


def _too_long(what: str, n: int, limit: int) -> WireError:
    return WireError(f"{what} of {n} bytes exceeds its maximum of {limit}")


def _too_many(n: int, limit: int) -> WireError:
    return WireError(f"list of {n} items exceeds its maximum of {limit}")


def _not_type(expected: str, value: Any) -> WireError:
    return WireError(f"expected {expected}, got {type(value).__name__}")


def _bad_bool(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    raise _not_type("bool", value)


def _enum_table(enum: Any) -> dict[int, Any]:
    return {int(member): member for member in enum}


class _Source:
    """Lines of generated code plus the names they refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "WireError": WireError, "_short": _short, "_too_long": _too_long, "_too_many": _too_many,
            "_not_type": _not_type, "_bad_bool": _bad_bool, "_U16": _U16, "str": str,
            "isinstance": isinstance, "bytes": bytes, "bytearray": bytearray, "memoryview": memoryview,
            "sum": sum, "map": map, "len": len,
        }
        self._counter = 0

    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}{self._counter}"

    def bind(self, stem: str, value: Any) -> str:
        name = self.fresh(stem)
        self.names[name] = value
        return name

    def add(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def build(self, name: str) -> Callable:
        exec("\n".join(self.lines), self.names)  # noqa: S102 - generated from our own definitions
        return self.names[name]


# ---------------------------------------------------------------------- decoding


class _Reader:
    """Emits code reading fields at `pos` of `b` (length `n`), merging fixed runs."""

    def __init__(self, src: _Source, indent: int) -> None:
        self.src = src
        self.indent = indent
        self.run: list[tuple[str, str]] = []  # (struct code, target local)
        self.after_run: list[str] = []  # conversions to apply once the run is read

    def flush(self) -> None:
        if not self.run:
            return
        codes = ">" + "".join(code for code, _ in self.run)
        unpack = self.src.bind("_unpack", struct.Struct(codes).unpack_from)
        size = struct.calcsize(codes)
        targets = ", ".join(target for _, target in self.run)
        add, i = self.src.add, self.indent
        add(i, f"if pos + {size} > n: raise _short(pos + {size} - n)")
        add(i, f"{targets}{',' if len(self.run) == 1 else ''} = {unpack}(b, pos)")
        add(i, f"pos += {size}")
        for line in self.after_run:
            add(i, line)
        self.run, self.after_run = [], []

    def field(self, wire: Any) -> str:
        """Emit the reading of one field; return the expression of its value."""
        layout = wire.layout
        kind = layout[0]
        src = self.src
        if kind == "int":
            target = src.fresh("v")
            self.run.append((layout[1], target))
            return target
        if kind == "bool":
            raw = src.fresh("v")
            self.run.append(("B", raw))
            self.after_run.append(f"if {raw} > 1: raise WireError(f'bool byte must be 0 or 1, got {{{raw}}}')")
            return f"({raw} == 1)"
        if kind == "enum":
            raw, value = src.fresh("v"), src.fresh("e")
            table = src.bind("_members", _enum_table(layout[2]))
            self.run.append((layout[1], raw))
            self.after_run.append(f"{value} = {table}.get({raw})")
            self.after_run.append(f"if {value} is None: raise WireError(f'{{{raw}}} is not a {layout[2].__name__}')")
            return value
        if kind in ("string", "bytes"):
            length, value = src.fresh("n"), src.fresh("s")
            self.run.append(("H" if kind == "string" else "I", length))
            self.flush()
            add, i = src.add, self.indent
            what = "string" if kind == "string" else "byte string"
            add(i, f"if {length} > {layout[1]}: raise _too_long({what!r}, {length}, {layout[1]})")
            add(i, f"if pos + {length} > n: raise _short(pos + {length} - n)")
            if kind == "string":
                add(i, f"{value} = str(b[pos:pos + {length}], 'utf-8')")
            else:
                add(i, f"{value} = bytes(b[pos:pos + {length}])")
            add(i, f"pos += {length}")
            return value
        if kind == "record":
            record = layout[1]
            values = [self.field(f.metadata["wire"]) for f in record.FIELDS]
            cls = src.bind("_cls", record)
            value = src.fresh("r")
            self.flush()
            src.add(self.indent, f"{value} = {cls}({', '.join(values)})")
            return value
        if kind in ("records", "ids"):
            count, items = src.fresh("n"), src.fresh("items")
            limit = layout[2] if kind == "records" else layout[1]
            self.run.append(("H", count))
            self.flush()
            add, i = src.add, self.indent
            add(i, f"if {count} > {limit}: raise _too_many({count}, {limit})")
            if kind == "ids":
                add(i, f"if pos + 8 * {count} > n: raise _short(pos + 8 * {count} - n)")
                add(i, f"{items} = list(struct.unpack_from(f'>{{{count}}}Q', b, pos))")
                add(i, f"pos += 8 * {count}")
                src.names["struct"] = struct
                return items
            read_item = src.bind("_read", reader(layout[1]))
            add(i, f"{items} = []")
            add(i, f"for _ in range({count}):")
            add(i + 1, f"item, pos = {read_item}(b, pos, n)")
            add(i + 1, f"{items}.append(item)")
            return items
        raise TypeError(f"no fast layout for {wire.spec}")


def reader(cls: type) -> Callable[[Any, int, int], tuple[Any, int]]:
    """`read(b, pos, n) -> (instance, new pos)` for a record or message class."""
    src = _Source()
    src.add(0, "def read(b, pos, n):")
    emit = _Reader(src, 1)
    values = [emit.field(f.metadata["wire"]) for f in cls.FIELDS]
    emit.flush()
    src.add(1, f"return {src.bind('_cls', cls)}({', '.join(values)}), pos")
    return src.build("read")


def body_decoder(cls: type) -> Callable[[Any], Any]:
    """`decode(body) -> instance`, refusing short bodies and trailing bytes."""
    read = reader(cls)
    name = cls.__name__

    def decode(body: Any) -> Any:
        n = len(body)
        value, pos = read(body, 0, n)
        if pos != n:
            raise WireError(f"{n - pos} trailing bytes after {name}")
        return value

    return decode


# ---------------------------------------------------------------------- encoding


class _Writer:
    """Emits code appending the fields of `obj` to the parts list through `put`."""

    def __init__(self, src: _Source, indent: int, first_codes: str = ">", first_values: list[str] | None = None):
        self.src = src
        self.indent = indent
        self.codes = first_codes
        self.values: list[str] = list(first_values or [])

    def flush(self) -> None:
        if self.codes == ">":
            return
        pack = self.src.bind("_pack", struct.Struct(self.codes).pack)
        self.src.add(self.indent, f"put({pack}({', '.join(self.values)}))")
        self.codes, self.values = ">", []

    def field(self, wire: Any, expr: str) -> None:
        layout = wire.layout
        kind = layout[0]
        src, add, i = self.src, self.src.add, self.indent
        if kind == "int":
            self.codes += layout[1]
            self.values.append(expr)
        elif kind == "bool":
            value = src.fresh("v")
            add(i, f"{value} = {expr}")
            self.codes += "B"
            self.values.append(f"(1 if {value} is True else 0 if {value} is False else _bad_bool({value}))")
        elif kind == "enum":
            value = src.fresh("v")
            table = src.bind("_members", _enum_table(layout[2]))
            add(i, f"{value} = {expr}")
            add(i, f"if {value} not in {table}: raise WireError(f'{{{value}!r}} is not a {layout[2].__name__}')")
            self.codes += layout[1]
            self.values.append(value)
        elif kind in ("string", "bytes"):
            value, data = src.fresh("v"), src.fresh("d")
            add(i, f"{value} = {expr}")
            if kind == "string":
                add(i, f"if not isinstance({value}, str): raise _not_type('str', {value})")
                add(i, f"{data} = {value}.encode('utf-8')")
                what = "string"
            else:
                add(i, f"if not isinstance({value}, (bytes, bytearray, memoryview)): "
                       f"raise _not_type('bytes', {value})")
                add(i, f"{data} = bytes({value})")
                what = "byte string"
            add(i, f"if len({data}) > {layout[1]}: raise _too_long({what!r}, len({data}), {layout[1]})")
            self.codes += "H" if kind == "string" else "I"
            self.values.append(f"len({data})")
            self.flush()
            add(i, f"put({data})")
        elif kind == "record":
            record = src.fresh("r")
            add(i, f"{record} = {expr}")
            for f in layout[1].FIELDS:
                self.field(f.metadata["wire"], f"{record}.{f.name}")
        elif kind in ("records", "ids"):
            items = src.fresh("items")
            limit = layout[2] if kind == "records" else layout[1]
            add(i, f"{items} = {expr}")
            add(i, f"if len({items}) > {limit}: raise _too_many(len({items}), {limit})")
            self.codes += "H"
            self.values.append(f"len({items})")
            self.flush()
            if kind == "ids":
                src.names["struct"] = struct
                add(i, f"put(struct.pack(f'>{{len({items})}}Q', *{items}))")
            else:
                write_item = src.bind("_write", writer(layout[1]))
                add(i, f"for item in {items}:")
                add(i + 1, f"{write_item}(item, put)")
        else:
            raise TypeError(f"no fast layout for {wire.spec}")


def writer(cls: type) -> Callable[[Any, Callable[[bytes], None]], None]:
    """`write(obj, put)`: hands the bytes of a record to `put`, piece by piece."""
    src = _Source()
    src.add(0, "def write(obj, put):")
    emit = _Writer(src, 1)
    for f in cls.FIELDS:
        emit.field(f.metadata["wire"], f"obj.{f.name}")
    emit.flush()
    src.add(1, "return None")
    return src.build("write")


def frame_encoder(cls: type) -> Callable[[Any], bytes]:
    """`encode(message) -> frame`: header and body in one `join`.

    The body length is not known until the strings are encoded, so the first
    piece is a placeholder that becomes the header at the end.
    """
    src = _Source()
    name = cls.__name__
    src.add(0, "def encode(obj):")
    src.add(1, "parts = [b'']")
    src.add(1, "put = parts.append")
    src.add(1, "try:")
    emit = _Writer(src, 2)
    for f in cls.FIELDS:
        emit.field(f.metadata["wire"], f"obj.{f.name}")
    emit.flush()
    src.add(1, "except (struct.error, TypeError) as e:  # a value of the wrong type or out of range")
    src.add(2, f"raise WireError(f'cannot encode {name}: {{e}}') from e")
    header = src.bind("_header", struct.Struct(_HEADER_CODES).pack)
    src.names["struct"] = struct
    src.add(1, f"parts[0] = {header}({cls.MSG_ID}, sum(map(len, parts)))")
    src.add(1, "return b''.join(parts)")
    return src.build("encode")
