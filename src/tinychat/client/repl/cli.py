"""The `tinychat` command: options, the asyncio reactor, and the process around the session.

Twisted's asyncio reactor must be installed before anything imports the
default reactor (the client library asks for `twisted.internet.reactor` when
it is created, and txredisapi installs a reactor on import), so `main`
installs it first and imports the session code only afterwards.  Nothing in
this package imports the server or txredisapi.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, TextIO

import tinychat

DEFAULT_SERVER = "tcp:host=127.0.0.1:port=7420"


def default_history_file() -> Path:
    """~/.local/share/tinychat/history, or under $XDG_DATA_HOME when it is set."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "tinychat" / "history"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tinychat", description="Chat on a TinyChat server from the terminal.",
        epilog="Inside, /help lists the commands.")
    parser.add_argument("--server", action="append", metavar="ENDPOINT", dest="servers",
                        help=f"Twisted client endpoint of a node, e.g. {DEFAULT_SERVER} (the default) or "
                             "tls:host=chat.example.com:port=7421; repeat for failover, tried in order")
    parser.add_argument("--history-file", type=Path, metavar="PATH", default=None,
                        help=f"where typed lines are remembered (default {default_history_file()})")
    parser.add_argument("--log-file", type=Path, metavar="PATH", default=None,
                        help="write the client library's log here (default: no log)")
    parser.add_argument("--version", action="version", version=f"tinychat {tinychat.__version__}")
    options = parser.parse_args(argv)
    options.servers = options.servers or [DEFAULT_SERVER]
    options.history_file = options.history_file or default_history_file()
    return options


def install_asyncio_reactor() -> asyncio.AbstractEventLoop:
    """Install Twisted's asyncio reactor on a fresh loop; returns the loop.

    Fails with a clear message if another reactor got installed first.
    """
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        if isinstance(reactor, AsyncioSelectorReactor):
            return reactor._asyncioEventloop
        raise RuntimeError(f"a {type(reactor).__name__} is already installed; the REPL needs the asyncio reactor")
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    return loop


def start_logging(path: Path | None) -> None:
    """Send Twisted's log to `path`, or nowhere: log lines must not tear the prompt apart."""
    from twisted.logger import globalLogBeginner, textFileLogObserver

    observers = []
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        observers.append(textFileLogObserver(path.open("a", encoding="utf-8")))
    globalLogBeginner.beginLoggingTo(observers or [lambda event: None], discardBuffer=True,
                                     redirectStandardIO=False)


def run_on_reactor(reactor: Any, loop: asyncio.AbstractEventLoop, session: Coroutine[Any, Any, int]) -> int:
    """Run `session` as a task with the reactor running; stop the reactor when it ends.

    SIGTERM and SIGHUP (the terminal went away) cancel the session, which
    closes the connection and restores the terminal before the process ends.
    """
    outcome: dict[str, Any] = {"code": 1}

    def start() -> None:
        task = loop.create_task(session)

        def stop(sig: int) -> None:
            outcome["signal"] = sig
            task.cancel()

        for sig in (signal.SIGTERM, signal.SIGHUP):
            with suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, stop, sig)

        def finished(done: asyncio.Task[int]) -> None:
            if done.cancelled():
                outcome["code"] = 128 + outcome.get("signal", signal.SIGTERM)
            elif done.exception() is not None:
                outcome["error"] = done.exception()
            else:
                outcome["code"] = done.result()
            reactor.stop()

        task.add_done_callback(finished)

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["code"]


def main(argv: Sequence[str] | None = None, *, input: Any = None, output: Any = None,
         echo: TextIO | None = None) -> int:
    """Run the REPL until /quit or Ctrl-D; returns the exit status.

    `input`/`output` (prompt_toolkit Input/Output) run it somewhere other
    than the terminal, and `echo` receives a plain-text copy of every line it
    shows: that is how the tests drive it through a pipe.
    """
    options = parse_args(argv)
    loop = install_asyncio_reactor()
    start_logging(options.log_file)
    from twisted.internet import reactor

    from tinychat.client.repl.app import ReplApp

    app = ReplApp(options.servers, history_file=options.history_file, reactor=reactor, input=input,
                  output=output, echo=echo)
    return run_on_reactor(reactor, loop, app.run())
