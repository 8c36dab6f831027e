"""The REPL in a real terminal: tmux runs it, send-keys types, capture-pane reads the screen.

This is the check that the pieces work on an actual terminal: raw-mode input,
passwords without echo, Tab completion, messages printed above the prompt,
right-aligned bubbles and the bottom toolbar.  Without tmux the test skips,
except under CI (CI=true), where tmux must be installed (Debian package `tmux`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chat import PASSWORD
from tinychat.protocol import FriendRequestPush, MessagePush

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

WIDTH, HEIGHT = 100, 30


class Tmux:
    """One tmux server on a private socket, with one window running one command."""

    def __init__(self, binary: str, socket: Path) -> None:
        self.base = [binary, "-S", str(socket), "-f", os.devnull]
        self.env = {**os.environ, "TERM": os.environ.get("TERM") or "xterm-256color"}

    def run(self, *args: str) -> str:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=15, env=self.env)
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def start(self, command: list[str]) -> None:
        # The shell keeps the pane open after the REPL exits, showing its exit status.
        shell = f"{shlex.join(command)}; echo \"[exited $?]\"; sleep 600"
        self.run("new-session", "-d", "-s", "repl", "-x", str(WIDTH), "-y", str(HEIGHT), shell)

    def keys(self, text: str) -> None:
        self.run("send-keys", "-t", "repl", "-l", text)

    def press(self, *keys: str) -> None:
        self.run("send-keys", "-t", "repl", *keys)

    def line(self, text: str) -> None:
        self.keys(text)
        self.press("Enter")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "repl")

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match:
        """Poll the screen until `pattern` (regex, multiline) is on it; fail with the screen after `timeout`."""
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            match = regex.search(screen)
            if match is not None:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on screen within {timeout} s; screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=15, env=self.env)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    binary = shutil.which("tmux")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is not installed: CI must install the Debian package 'tmux'")
        pytest.skip("tmux is not installed")
    terminal = Tmux(binary, tmp_path / "tmux.sock")
    yield terminal
    try:
        print(f"----- last screen -----\n{terminal.screen()}")
    except AssertionError:
        pass
    terminal.close()


def test_register_login_and_chat_in_a_real_terminal(tmux, chat_node, users, smtp_server, tmp_path):
    bob = users.logged_in("bob")
    tmux.start([sys.executable, "-m", "tinychat.client.repl", "--server", chat_node.endpoint,
                "--history-file", str(tmp_path / "history")])
    tmux.wait_for("Connected to")
    tmux.wait_for(r"● connected, not logged in")  # the toolbar

    tmux.line("/register")
    tmux.wait_for(r"^Username \(3-32 letters, digits or _\):\s*$")
    tmux.line("alice")
    tmux.wait_for(r"^E-mail address:\s*$")
    tmux.line("alice@example.com")
    tmux.wait_for(r"^Password:\s*$")
    tmux.line(PASSWORD)
    tmux.wait_for(r"^Same password again:\s*$")
    tmux.line(PASSWORD)
    tmux.wait_for(r"^Code from the e-mail:\s*$")
    tmux.line(smtp_server.code_for("alice@example.com"))
    tmux.wait_for(r"Welcome, alice! Your account is ready")

    tmux.line("/login alice")
    tmux.wait_for(r"^Password for alice:\s*$")
    tmux.line(PASSWORD)
    tmux.wait_for(r"^Logged in as alice\.$")
    tmux.wait_for(r"● online │ alice │ 0 unread")
    assert PASSWORD not in tmux.screen()  # typed three times, never shown

    tmux.line("/add bob hello from a terminal")
    request = bob.next_push(FriendRequestPush).request
    bob.accept_friend(request.friend_request_id)
    tmux.wait_for("bob accepted your friend request")

    tmux.keys("/chat b")
    tmux.wait_for(r"^ +bob +online")  # the completion menu, offered while typing
    tmux.press("Tab")  # takes the completion
    tmux.wait_for(r"^alice> /chat bob")
    tmux.press("Enter")
    tmux.wait_for(r"── Chat with bob · online · no messages yet ──")
    tmux.wait_for(r"chat: bob")

    tmux.line("hello from tmux")
    message = bob.next_push(MessagePush).message
    assert message.text == "hello from tmux"
    line = tmux.wait_for(r"^ {20,}hello from tmux  \d\d:\d\d$").group(0)
    assert len(line) <= WIDTH  # right-aligned, a bubble of mine

    tmux.keys("half a line")  # being typed while bob's answer arrives
    bob.send_text("hi from the other side", to_uid=request.from_uid)
    tmux.wait_for(r"^\d\d:\d\d bob: hi from the other side$")
    tmux.wait_for(r"^alice → bob> half a line$")  # the prompt, redrawn below the message, kept the text
    tmux.press("C-u")  # clear it again
    tmux.press("C-d")
    tmux.wait_for(r"^\[exited 0\]$")
