"""Printing above the prompt, and one live line (a progress bar) while a command runs.

`print_formatted_text` erases the prompt, prints and redraws it when a prompt
is running (and prints directly otherwise), so pushes can appear while the
user types.  The console also keeps an optional plain-text echo of everything
it shows: that is how tests running the REPL on a `DummyOutput` read it.

A live line is drawn in place (carriage return, erase, redraw) on the
terminal only, never echoed: commands run while no prompt is on screen, so
the line is the last one of the terminal, and everything shown meanwhile is
printed above it (the line is erased, the block printed, the line redrawn),
the way prompt_toolkit keeps a prompt below printed text.
"""

from __future__ import annotations

import os
from contextlib import suppress
from typing import TextIO

from prompt_toolkit.application.current import get_app_or_none, get_app_session
from prompt_toolkit.formatted_text import AnyFormattedText, FormattedText, to_formatted_text
from prompt_toolkit.output import Output
from prompt_toolkit.renderer import print_formatted_text as render_fragments
from prompt_toolkit.shortcuts import print_formatted_text

from tinychat.client.repl.render import STYLE, to_plain

DEFAULT_WIDTH = 80


class Console:
    """Where the REPL's lines go: the prompt's output, and an optional plain echo."""

    def __init__(self, output: Output | None = None, echo: TextIO | None = None) -> None:
        self.output = output
        self.echo = echo
        self._live: FormattedText | None = None  # the live line on screen, if any

    @property
    def width(self) -> int:
        """Columns of the terminal, for right-aligned bubbles."""
        try:
            return self._output().get_size().columns or DEFAULT_WIDTH
        except Exception:  # not a terminal (closed, or a pipe without a size)
            return DEFAULT_WIDTH

    def _output(self) -> Output:
        return self.output or get_app_session().output

    def show(self, *blocks: AnyFormattedText) -> None:
        """Print each block on its own line(s), above the prompt (or the live line) if one is there."""
        live = self._live
        if live is not None:
            self._erase_live()
        for block in blocks:
            fragments = to_formatted_text(block)
            print_formatted_text(fragments, style=STYLE, output=self.output)
            if self.echo is not None:
                self.echo.write(to_plain(fragments) + "\n")
                self.echo.flush()
        if live is not None:
            self._draw_live(live)

    def live(self, line: AnyFormattedText | None) -> None:
        """Put `line` in place of the live line (None: remove it); the terminal only, not the echo."""
        if self._live is not None:
            self._erase_live()
        self._live = FormattedText(to_formatted_text(line)) if line is not None else None
        if self._live is not None:
            self._draw_live(self._live)

    def _drawable(self) -> bool:
        """On a terminal, between prompts (a running prompt owns the screen; commands never draw under one)."""
        app = get_app_or_none()
        if app is not None and app.is_running:
            return False
        try:
            return os.isatty(self._output().fileno())
        except Exception:  # a DummyOutput, or a closed stream: nothing to draw on
            return False

    def _draw_live(self, line: FormattedText) -> None:
        if not self._drawable():
            return
        output = self._output()
        with suppress(Exception):  # the terminal is gone: the bar does not matter any more
            output.write_raw("\r")
            output.erase_end_of_line()
            render_fragments(output, line, STYLE)
            output.flush()

    def _erase_live(self) -> None:
        if not self._drawable():
            return
        output = self._output()
        with suppress(Exception):
            output.write_raw("\r")
            output.erase_end_of_line()
            output.flush()
