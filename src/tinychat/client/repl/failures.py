"""How a command ends early: exceptions carrying the sentence to show.

Handlers raise these instead of printing and returning, so that the session
loop shows every refusal the same way (and tests can tell them apart).
"""

from __future__ import annotations


class UsageError(Exception):
    """The line cannot be run as typed; the message says how to type it."""


class CommandError(Exception):
    """A command gave up for a reason the user can act on; the message is the sentence shown."""


class Cancelled(Exception):  # noqa: N818 - the user's choice, not an error
    """The user pressed Ctrl-C (or Ctrl-D) at a question: drop the command."""


class Quit(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Leave the session loop."""
