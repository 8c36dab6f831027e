"""The TinyChat terminal client: `tinychat [--server ENDPOINT ...] [--history-file PATH]`.

A prompt_toolkit REPL on Twisted's asyncio reactor (docs/repl.md).  Importing
this package installs no reactor; `main` installs the asyncio one first.
"""

from tinychat.client.repl.cli import main

__all__ = ["main"]
