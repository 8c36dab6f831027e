"""Renders the reference part of docs/protocol.md from the message definitions.

    python -m tinychat.protocol.spec                          # print it
    python -m tinychat.protocol.spec --write docs/protocol.md  # update the doc

The message id table, one section per message and per record with its byte
layout, the error code table and the enum tables are all derived from
`REGISTRY`, the field metadata, `ErrorCode` and `ERROR_MEANINGS`.  `--write`
replaces only the text between the BEGIN/END GENERATED markers; the prose
around them is written by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from collections.abc import Iterable, Iterator
from enum import IntEnum
from pathlib import Path

from .codec import HEADER_SIZE
from .errors import ERROR_MEANINGS, ErrorCode
from .messages import Hello
from .schema import REGISTRY, Access, Kind, Message
from .wire import WireType

BEGIN_MARKER = "<!-- BEGIN GENERATED -->"
END_MARKER = "<!-- END GENERATED -->"

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def wire_name(cls: type) -> str:
    """The spec name of a message class: `SendMessage` -> `SEND_MESSAGE`."""
    return _WORD_BOUNDARY.sub("_", cls.__name__).upper()


def hex_id(msg_id: int) -> str:
    """A msg_id as written in the spec: `0x0301`."""
    return f"0x{msg_id:04X}"


def _anchor(kind: str, name: str) -> str:
    return f"{kind}-{name.lower().replace('_', '-')}"


def message_anchor(cls: type[Message]) -> str:
    """The HTML id of a message's section."""
    return _anchor("msg", wire_name(cls))


def record_anchor(cls: type) -> str:
    """The HTML id of a record's section."""
    return _anchor("record", cls.__name__)


def enum_anchor(enum: type[IntEnum]) -> str:
    """The HTML id of an enum's table."""
    return _anchor("enum", enum.__name__)


def _message_link(cls: type[Message]) -> str:
    return f"[{wire_name(cls)}](#{message_anchor(cls)})"


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _doc(obj: type) -> str:
    return inspect.cleandoc(obj.__doc__ or "")


def _messages() -> list[type[Message]]:
    return [REGISTRY[msg_id] for msg_id in sorted(REGISTRY)]


def _wires(cls: type) -> Iterator[tuple[dataclasses.Field, WireType]]:
    for f in cls.FIELDS:
        yield f, f.metadata["wire"]


def _enum_of(wire: WireType) -> type[IntEnum] | None:
    convert = wire.convert
    if isinstance(convert, type) and issubclass(convert, IntEnum):
        return convert
    return None


def records() -> list[type]:
    """Every record reachable from a registered message, sorted by name."""
    found: dict[str, type] = {}
    todo: list[type] = list(_messages())
    while todo:
        cls = todo.pop()
        for _, wire in _wires(cls):
            if wire.record is not None and wire.record.__name__ not in found:
                found[wire.record.__name__] = wire.record
                todo.append(wire.record)
    return [found[name] for name in sorted(found)]


def enums() -> list[type[IntEnum]]:
    """Every enum used by a field, except ErrorCode (which has its own table), sorted by name."""
    found: dict[str, type[IntEnum]] = {}
    for cls in [*_messages(), *records()]:
        for _, wire in _wires(cls):
            enum = _enum_of(wire)
            if enum is not None and enum is not ErrorCode:
                found[enum.__name__] = enum
    return [found[name] for name in sorted(found)]


def min_size(wire: WireType) -> int:
    """The fewest bytes a field of this type can take (empty string, empty list...)."""
    if wire.size is not None:
        return wire.size
    if wire.max_items is not None:
        return 2
    if wire.record is not None:
        return sum(min_size(w) for _, w in _wires(wire.record))
    if wire.spec.startswith("bytes"):
        return 4
    return 2


def _type_cell(wire: WireType) -> str:
    enum = _enum_of(wire)
    if enum is not None:
        base = wire.spec.split(" ", 1)[0]
        return f"{base} [{enum.__name__}](#{enum_anchor(enum)})"
    if wire.record is not None:
        link = f"[{wire.record.__name__}](#{record_anchor(wire.record)})"
        return wire.spec.replace(wire.record.__name__, link)
    return wire.spec


def layout_table(cls: type) -> list[str]:
    """The byte layout of a message body or record: field, type, offset, description."""
    lines = ["| Field | Type | Offset | Description |", "|---|---|---|---|"]
    offset: int | None = 0
    for f, wire in _wires(cls):
        where = "after previous" if offset is None else str(offset)
        lines.append(f"| `{f.name}` | {_type_cell(wire)} | {where} | {_cell(f.metadata['doc'])} |")
        offset = None if offset is None or wire.size is None else offset + wire.size
    return lines


def _size_line(cls: type, what: str) -> str:
    if cls.SIZE is not None:
        return f"{what}: {cls.SIZE} bytes, fixed."
    least = sum(min_size(wire) for _, wire in _wires(cls))
    return f"{what}: variable, at least {least} bytes."


def _answers() -> dict[type[Message], list[type[Message]]]:
    answers: dict[type[Message], list[type[Message]]] = {}
    for cls in _messages():
        if cls.REPLY is not None:
            answers.setdefault(cls.REPLY, []).append(cls)
    return answers


def render_id_table() -> list[str]:
    """The table of every msg_id."""
    lines = ["| Id | Name | Kind | Reply | Allowed when |", "|---|---|---|---|---|"]
    for cls in _messages():
        reply = _message_link(cls.REPLY) if cls.REPLY is not None else "—"
        allowed = _ALLOWED[cls.ACCESS] if cls.ACCESS is not None else "—"
        link = _message_link(cls)
        lines.append(f"| `{hex_id(cls.MSG_ID)}` | {link} | {cls.KIND.value} | {reply} | {allowed} |")
    return lines


_ALLOWED = {
    Access.ANY: "READY or LOGGED_IN",
    Access.GUEST: "READY only",
    Access.USER: "LOGGED_IN only",
}


def render_message(cls: type[Message], answers: dict[type[Message], list[type[Message]]]) -> list[str]:
    """The section of one message: heading, docstring, reply and layout."""
    lines = [
        f'<a id="{message_anchor(cls)}"></a>',
        "",
        f"### {hex_id(cls.MSG_ID)} {wire_name(cls)} ({cls.KIND.value})",
        "",
        _doc(cls),
        "",
    ]
    if cls.KIND is Kind.REQUEST:
        assert cls.REPLY is not None, f"{cls.__name__} is a request without a reply"
        lines.append(f"Reply: {_message_link(cls.REPLY)} ({hex_id(cls.REPLY.MSG_ID)}), or ERROR.")
        if cls is not Hello:
            lines.append(f"Allowed in state: {_ALLOWED[cls.ACCESS]}.")
        else:
            lines.append("Allowed in state: CONNECTED only (the first frame).")
    elif cls.KIND is Kind.RESPONSE:
        askers = answers.get(cls)
        if askers:
            lines.append("Answers: " + ", ".join(_message_link(a) for a in askers) + ".")
        else:
            lines.append("Answers: any request.")
    else:
        lines.append("Sent by the server unprompted; no request_id.")
    lines += ["", _size_line(cls, "Body") + " Offsets are from the start of the body.", ""]
    lines += layout_table(cls)
    lines.append("")
    return lines


def render_record(cls: type) -> list[str]:
    """The section of one record: heading, docstring and layout."""
    lines = [f'<a id="{record_anchor(cls)}"></a>', "", f"### {cls.__name__} (record)", "", _doc(cls), ""]
    lines += [_size_line(cls, "Size") + " Offsets are from the start of the record.", ""]
    lines += layout_table(cls)
    lines.append("")
    return lines


def render_error_table() -> list[str]:
    """Every error code with its name, whether it closes the connection, and its meaning."""
    lines = ["| Code | Name | Closes connection | Meaning |", "|---|---|---|---|"]
    for code in ErrorCode:
        closes = "yes" if code.closes_connection else "no"
        lines.append(f"| {code.value} | {code.name} | {closes} | {_cell(ERROR_MEANINGS[code])} |")
    return lines


def render_enum(enum: type[IntEnum], spec: str) -> list[str]:
    """The table of one enum's values."""
    lines = [f'<a id="{enum_anchor(enum)}"></a>', "", f"### {enum.__name__} ({spec})", "", _doc(enum), ""]
    lines += ["| Value | Name |", "|---|---|"]
    lines += [f"| {member.value} | {member.name} |" for member in enum]
    lines.append("")
    return lines


def _enum_specs() -> dict[type[IntEnum], str]:
    specs: dict[type[IntEnum], str] = {}
    for cls in [*_messages(), *records()]:
        for _, wire in _wires(cls):
            enum = _enum_of(wire)
            if enum is not None:
                specs[enum] = wire.spec.split(" ", 1)[0]
    return specs


def _join(blocks: Iterable[list[str]]) -> str:
    return "\n".join(line for block in blocks for line in block).rstrip("\n") + "\n"


def render_generated() -> str:
    """The whole generated reference, as it stands between the markers in docs/protocol.md."""
    answers = _answers()
    specs = _enum_specs()
    blocks: list[list[str]] = [
        [
            "## Message ids",
            "",
            "Requests go from client to server; responses and pushes from server to client. "
            "Any request may be answered by ERROR instead of its reply.",
            "",
            *render_id_table(),
            "",
            "## Messages",
            "",
            f"Every frame is the {HEADER_SIZE}-byte header (`msg_id` u16, `body_len` u32) followed by "
            "the body laid out below. An offset is given while it is the same in every frame; "
            'after a variable-length field the next field simply starts "after previous".',
            "",
        ],
        *(render_message(cls, answers) for cls in _messages()),
        ["## Records", "", "Records have no header of their own: they are laid out inline where used.", ""],
        *(render_record(cls) for cls in records()),
        [
            f'<a id="{enum_anchor(ErrorCode)}"></a>',
            "",
            "## Error codes",
            "",
            "ERROR carries `code` as a u16. Codes below 10 are connection-level.",
            "",
            *render_error_table(),
            "",
            "## Enums",
            "",
        ],
        *(render_enum(enum, specs[enum]) for enum in enums()),
    ]
    return _join(blocks)


def _marker_span(doc: str) -> tuple[int, int]:
    begin = doc.find(BEGIN_MARKER)
    end = doc.find(END_MARKER)
    if begin < 0 or end < 0 or end < begin or doc.count(BEGIN_MARKER) != 1 or doc.count(END_MARKER) != 1:
        raise ValueError(f"the document needs exactly one {BEGIN_MARKER} followed by one {END_MARKER}")
    return begin + len(BEGIN_MARKER), end


def extract_generated(doc: str) -> str:
    """The text between the markers, as `splice` puts it there."""
    start, stop = _marker_span(doc)
    return doc[start:stop]


def splice(doc: str, generated: str) -> str:
    """`doc` with the text between the markers replaced by `generated`, set off by blank lines."""
    start, stop = _marker_span(doc)
    return doc[:start] + "\n\n" + generated + "\n" + doc[stop:]


def main(argv: list[str] | None = None) -> int:
    """Print the generated reference, or write it into a document between its markers."""
    parser = argparse.ArgumentParser(
        prog="python -m tinychat.protocol.spec",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", metavar="PATH", type=Path,
                        help="replace the generated section of this Markdown file")
    args = parser.parse_args(argv)
    generated = render_generated()
    if args.write is None:
        sys.stdout.write(generated)
        return 0
    path: Path = args.write
    try:
        doc = path.read_text(encoding="utf-8")
        updated = splice(doc, generated)
    except (OSError, ValueError) as e:
        parser.error(f"{path}: {e}")
    if updated != doc:
        path.write_text(updated, encoding="utf-8")
        print(f"{path}: generated section updated")
    else:
        print(f"{path}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
