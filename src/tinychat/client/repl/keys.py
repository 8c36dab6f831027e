"""Key bindings of the main prompt.

A key that runs a command ends the prompt with a `KeyCommand` instead of a
line: the session loop runs the command and then gives back the text that
was being typed, so switching chats never loses a half-written message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prompt_toolkit.filters import has_completions
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent


@dataclass(frozen=True)
class KeyCommand:
    """A command asked for by a key, and the unfinished input to restore afterwards."""

    line: str
    keep: str = ""


def _runs(line: str) -> Callable[[KeyPressEvent], None]:
    def handler(event: KeyPressEvent) -> None:
        event.app.exit(result=KeyCommand(line, event.current_buffer.text))

    return handler


def key_bindings() -> KeyBindings:
    """Ctrl-N / F2: next chat with unread messages; F1: help.

    Ctrl-N keeps its usual meaning (next completion) while the completion
    menu is open.  Ctrl-D on an empty line (quit) and Ctrl-C (clear the
    line) are prompt_toolkit's own and handled by the session loop.
    """
    bindings = KeyBindings()
    bindings.add("c-n", filter=~has_completions)(_runs("/next"))
    bindings.add("f2")(_runs("/next"))
    bindings.add("f1")(_runs("/help"))
    return bindings
