"""Real TinyChat nodes as `twistd` subprocesses, for integration tests and benchmarks.

    with run_node(["--db", "sqlite:///x.sqlite3"], cwd=tmp) as node:
        connect(node.endpoint)

The node listens on a free port of 127.0.0.1 unless --listen says otherwise;
`run_node` returns once the node's "ready" log line names the port (of the
first listener: `tcp:HOST:PORT`, or `ssl:HOST:PORT` for a TLS one).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TWISTD = str(Path(sys.executable).with_name("twistd"))
READY = re.compile(r"tinychat node (\S+) ready: listening on (\S+)")
START_TIMEOUT = 60.0


@dataclass
class NodeProcess:
    """A running node: its address, its log lines, and how to stop it."""

    process: subprocess.Popen
    node_id: str
    host: str
    port: int
    lines: list[str] = field(default_factory=list)
    scheme: str = "tcp"

    @property
    def endpoint(self) -> str:
        """Client endpoint string of the first listener (TLS ones verified against the system CAs)."""
        if self.scheme == "ssl":
            return self.tls_endpoint()
        return f"tcp:host={self._escaped_host}:port={self.port}"

    def tls_endpoint(self, trust_roots: str | os.PathLike | None = None) -> str:
        """`tls:` client endpoint string; `trust_roots` is a directory of CA certificates (PEM) to trust."""
        endpoint = f"tls:host={self._escaped_host}:port={self.port}"
        if trust_roots is not None:
            endpoint += ":trustRoots=" + str(trust_roots).replace(":", "\\:")
        return endpoint

    @property
    def _escaped_host(self) -> str:
        return self.host.replace(":", "\\:")

    def log_text(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Block until a log line matches `pattern` (read by the reader thread)."""
        regex = re.compile(pattern)
        with self._cond:
            ok = self._cond.wait_for(lambda: any(regex.search(line) for line in self.lines), timeout)
        if not ok:
            raise AssertionError(f"no log line matching {pattern!r} within {timeout} s")
        return next(m for line in self.lines if (m := regex.search(line)))

    def count_log(self, pattern: str) -> int:
        """How many log lines so far match `pattern`."""
        regex = re.compile(pattern)
        with self._cond:
            return sum(1 for line in self.lines if regex.search(line))

    def wait_for_log_count(self, pattern: str, count: int, timeout: float = 10.0) -> int:
        """Block until `count` log lines match `pattern` (or `timeout` passes); how many did."""
        regex = re.compile(pattern)
        with self._cond:
            self._cond.wait_for(lambda: sum(1 for line in self.lines if regex.search(line)) >= count, timeout)
            return sum(1 for line in self.lines if regex.search(line))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)


def _reader(node: NodeProcess, ready: threading.Event, found: dict) -> None:
    for line in node.process.stdout:
        with node._cond:
            node.lines.append(line)
            node._cond.notify_all()
        if not ready.is_set():
            m = READY.search(line)
            if m:
                found["match"] = m
                ready.set()
    ready.set()


@contextmanager
def run_node(args: list[str], cwd: Path, env: dict | None = None, echo_log: bool = True) -> Iterator[NodeProcess]:
    """Start `twistd -n tinychat ARGS`, wait for its ready line, stop it afterwards."""
    if not any(a == "--listen" or a.startswith("--listen=") for a in args):
        args = ["--listen", "tcp:0:interface=127.0.0.1", *args]
    command = [TWISTD, "-n", "--pidfile=", "--logfile=-", "tinychat", *args]
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})},
    )
    node = NodeProcess(process, "", "", 0)
    ready = threading.Event()
    found: dict = {}
    threading.Thread(target=_reader, args=(node, ready, found), daemon=True).start()
    ready.wait(START_TIMEOUT)
    if "match" not in found:
        node.stop(signal.SIGKILL)
        raise RuntimeError(f"node did not start: {' '.join(command)}\n{node.log_text()}")
    match = found["match"]
    node.node_id = match.group(1)
    node.scheme, address = match.group(2).split(":", 1)
    host, port = address.rsplit(":", 1)
    node.host, node.port = host, int(port)
    try:
        yield node
    finally:
        node.stop()
        if echo_log:  # under pytest, shown only when the test fails
            print(f"----- log of node {node.node_id} -----\n{node.log_text()}")
