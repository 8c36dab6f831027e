"""docs/protocol.md agrees with the protocol definitions and the codec.

The generated reference must be current, every worked example must be the
exact frame the codec produces for its expression, and every message and
error code must be documented.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import tinychat.protocol as protocol
from tinychat.protocol import REGISTRY, ErrorCode, decode_frame, encode, messages
from tinychat.protocol.spec import extract_generated, hex_id, render_generated, splice, wire_name

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
FIX = "run `python -m tinychat.protocol.spec --write docs/protocol.md`"

# `Example: <expression>`, optional blank lines, then a ```hex fenced block.
EXAMPLE = re.compile(r"^Example: (?P<expr>[^\n]+)\n(?:[ \t]*\n)*```hex\n(?P<hex>.*?)^```[ \t]*$", re.M | re.S)
HEX_BLOCK = re.compile(r"^```hex[ \t]*$", re.M)
HEX_LINE = re.compile(r"[0-9a-f]{2}( [0-9a-f]{2})*")


@pytest.fixture(scope="module")
def doc() -> str:
    """The text of docs/protocol.md."""
    return DOC_PATH.read_text(encoding="utf-8")


def examples(doc: str) -> list[tuple[str, str]]:
    """(expression, hex text) of every worked example, in document order."""
    return [(m["expr"].strip(), m["hex"]) for m in EXAMPLE.finditer(doc)]


def hex_bytes(text: str) -> bytes:
    """The bytes of a hex block: lowercase pairs separated by single spaces, any number of lines."""
    lines = text.strip("\n").split("\n")
    for line in lines:
        assert HEX_LINE.fullmatch(line), f"not lowercase hex pairs separated by spaces: {line!r}"
    return bytes.fromhex(" ".join(lines))


def evaluate(expr: str) -> Any:
    """An example's expression, evaluated with the names of tinychat.protocol."""
    namespace = dict(vars(protocol))
    return eval(expr, namespace)  # noqa: S307 - expressions from our own document


def test_generated_section_is_current(doc: str) -> None:
    expected = extract_generated(splice(doc, render_generated()))
    assert extract_generated(doc) == expected, f"docs/protocol.md's generated section is stale: {FIX}"


def test_at_least_ten_examples(doc: str) -> None:
    assert len(examples(doc)) >= 10


def test_every_hex_block_is_an_example(doc: str) -> None:
    count = len(examples(doc))
    assert len(HEX_BLOCK.findall(doc)) == count, "a ```hex block lacks its `Example:` line"
    assert len(re.findall(r"^Example: ", doc, re.M)) == count, "an `Example:` line lacks its ```hex block"


def _example_params() -> list[Any]:
    found = examples(DOC_PATH.read_text(encoding="utf-8")) if DOC_PATH.exists() else []
    return [
        pytest.param(expr, text, id=f"{i}-{expr.split('(', 1)[0]}") for i, (expr, text) in enumerate(found)
    ]


@pytest.mark.parametrize(("expr", "text"), _example_params())
def test_example_encodes_to_its_hex(expr: str, text: str) -> None:
    assert encode(evaluate(expr)).hex(" ") == hex_bytes(text).hex(" ")


@pytest.mark.parametrize(("expr", "text"), _example_params())
def test_example_hex_decodes_to_its_expression(expr: str, text: str) -> None:
    assert decode_frame(hex_bytes(text)) == evaluate(expr)


def test_examples_cover_the_required_messages(doc: str) -> None:
    shown = {type(evaluate(expr)).__name__ for expr, _ in examples(doc)}
    required = {
        "Hello", "Welcome", "Ping", "Pong", "Error", "Login", "LoggedIn", "SendMessage", "MessageAck",
        "MessagePush", "SearchResults", "HistoryPage", "KickedPush",
    }
    assert required <= shown, f"missing examples: {sorted(required - shown)}"


def test_send_message_example_has_non_ascii_text(doc: str) -> None:
    texts = [msg.text for msg in (evaluate(expr) for expr, _ in examples(doc))
             if isinstance(msg, protocol.SendMessage)]
    assert any(not text.isascii() for text in texts)


def test_search_results_example_has_two_users(doc: str) -> None:
    counts = [len(msg.users) for msg in (evaluate(expr) for expr, _ in examples(doc))
              if isinstance(msg, protocol.SearchResults)]
    assert 2 in counts


@pytest.mark.parametrize("cls", [REGISTRY[msg_id] for msg_id in sorted(REGISTRY)], ids=wire_name)
def test_every_message_has_a_section(doc: str, cls: type) -> None:
    heading = f"### {hex_id(cls.MSG_ID)} {wire_name(cls)} ({cls.KIND.value})"
    assert re.search(rf"^{re.escape(heading)}$", doc, re.M), f"no section {heading!r}: {FIX}"


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.name)
def test_every_error_code_is_in_the_error_table(doc: str, code: ErrorCode) -> None:
    closes = "yes" if code.closes_connection else "no"
    row = f"| {code.value} | {code.name} | {closes} |"
    assert re.search(rf"^{re.escape(row)} .+ \|$", doc, re.M), f"no error table row {row!r}: {FIX}"


def _limits() -> list[tuple[str, int]]:
    names = [name for name in vars(messages) if name.startswith("MAX_")]
    names += ["PROTOCOL_VERSION"]
    values = [(name, getattr(messages, name)) for name in names]
    return [*values, ("DEFAULT_MAX_FRAME", protocol.DEFAULT_MAX_FRAME)]


@pytest.mark.parametrize(("name", "value"), _limits(), ids=lambda v: str(v))
def test_limits_table_matches_the_constants(doc: str, name: str, value: int) -> None:
    assert f"| `{name}` | {value} |" in doc, f"docs/protocol.md must list {name} = {value} under Limits"
