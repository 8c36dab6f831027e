"""A driver for the terminal REPL in a subprocess, and the `start_repl` fixture (a pytest plugin).

The REPL needs Twisted's asyncio reactor, and the test process already runs
the default one in a thread, so it runs in a subprocess: `DRIVER` gives
`tinychat.client.repl.main` a prompt_toolkit pipe input fed from the
subprocess's stdin and a `DummyOutput`, and echoes every line the REPL shows,
as plain text, to its stdout.  A test types keys into stdin and waits, with a
deadline, for what it expects to read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chat import PASSWORD

TIMEOUT = 20.0

DRIVER = """
import os, sys, threading
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from tinychat.client.repl import main

def pump(pipe):
    while data := os.read(0, 4096):
        pipe.send_bytes(data)
    pipe.close()

with create_pipe_input() as pipe:
    threading.Thread(target=pump, args=(pipe,), daemon=True).start()
    sys.exit(main(sys.argv[1:], input=pipe, output=DummyOutput(), echo=sys.stdout))
"""




class Repl:
    """The REPL in a subprocess: type keys into it, wait for what it shows."""

    def __init__(self, servers: list[str], workdir: Path) -> None:
        args = [arg for server in servers for arg in ("--server", server)]
        self.workdir = workdir
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, *args, "--history-file", str(workdir / "history"),
             "--log-file", str(workdir / "repl.log")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.output = ""
        self.errors = ""
        self.seen = 0  # expect() searches from here: what was matched once is not matched again
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(self.process.stdout, "output"), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, "errors"), daemon=True).start()

    def _read(self, stream, attr: str) -> None:
        while chunk := stream.read1(4096):
            with self._cond:
                setattr(self, attr, getattr(self, attr) + chunk.decode("utf-8", "replace"))
                self._cond.notify_all()

    def type(self, keys: str) -> None:
        self.process.stdin.write(keys.encode())
        self.process.stdin.flush()

    def line(self, text: str) -> None:
        self.type(text + "\r")

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        """Wait for `pattern` (a regex, multiline) in what was shown since the last match."""
        regex = re.compile(pattern, re.M)
        with self._cond:
            match = None

            def found() -> bool:
                nonlocal match
                match = regex.search(self.output, self.seen)
                return match is not None or self.process.poll() is not None

            self._cond.wait_for(found, timeout)
            if match is None:
                raise AssertionError(f"REPL did not show {pattern!r} within {timeout} s; it showed:\n"
                                     f"{self.output[self.seen:]}\n--- stderr:\n{self.errors}")
            self.seen = match.end()
            return match

    def since(self, start: int) -> str:
        return self.output[start:self.seen]

    def quit(self, timeout: float = 15.0) -> int:
        """End the session by closing its input (like Ctrl-D); returns the exit status."""
        if not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def assert_clean(self) -> None:
        assert "Traceback" not in self.output + self.errors, self.output + self.errors
        assert "Something went wrong" not in self.output, self.output


@pytest.fixture
def start_repl(tmp_path: Path) -> Iterator:
    repls: list[Repl] = []

    def start(*servers: str) -> Repl:
        workdir = tmp_path / f"repl{len(repls)}"
        workdir.mkdir()
        repl = Repl(list(servers), workdir)
        repls.append(repl)
        repl.expect(r"TinyChat \d")
        return repl

    yield start
    for repl in repls:
        repl.quit()
        print(f"----- REPL transcript -----\n{repl.output}\n----- stderr -----\n{repl.errors}")


def login(repl: Repl, name: str, password: str = PASSWORD) -> None:
    repl.line(f"/login {name}")
    repl.line(password)
    repl.expect(f"Logged in as {name}")
