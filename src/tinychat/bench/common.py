"""Shared pieces of the connection benchmarks (`idle`, `logins`): seeding, limits, a raw login driver.

Tens of thousands of connections cannot each carry a Twisted protocol, a
transport and Deferreds in the generator without the generator becoming what
is measured, so `LoginDriver` speaks just enough of the protocol over raw
non-blocking sockets on one epoll: prebuilt HELLO and login frames out, the
LOGGED_IN / OK / ERROR headers in.  A connection kept open afterwards costs
the generator one file descriptor (an int) and nothing else.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import resource
import secrets
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from tinychat.protocol import HEADER, Error, Hello, LoggedIn, Logout, Ok, encode
from tinychat.server.store.dialect import MYSQL, SQLITE
from tinychat.server.store.migrations import connect_sync
from tinychat.server.store.url import parse_database_url

# Options every connection benchmark starts its node with: no per-connection request limits
# (one address makes every connection), and idle connections are never timed out.
NODE_OPTIONS = [
    "--idle-timeout", "3600", "--heartbeat-interval", "1800",
    "--rate-limit", "0", "--max-connections-per-ip", "0", "--max-pending-requests", "0",
]
# A deep accept queue: the node accepts in bursts, and an overflowing queue costs a 1 s SYN retry.
LISTEN = "tcp:0:interface=127.0.0.1:backlog=4096"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
# Ephemeral ports per source address are ~28,000 (ip_local_port_range), and connect() slows down as they
# fill (the kernel searches longer for a free one): spread well below that.
CONNECTIONS_PER_SOURCE = 4_000

_HEADER = HEADER.size
_LOGGED_IN = LoggedIn.MSG_ID
_OK = Ok.MSG_ID
_ERROR = Error.MSG_ID
_U16 = struct.Struct(">H")
HELLO = encode(Hello(request_id=1, min_version=1, max_version=1, client_name="tinychat-bench"))
LOGOUT = encode(Logout(request_id=3, revoke_token=False))


def add_output_options(p: argparse.ArgumentParser) -> None:
    """--node-arg and --json: every benchmark that starts its own nodes takes them."""
    p.add_argument("--node-arg", action="append", default=[], help="extra option for the node (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def printed_as_json(args: argparse.Namespace, result: Any) -> bool:
    """With --json, print the result (a dataclass or plain data) as JSON and say so."""
    if not args.json:
        return False
    print(json.dumps(asdict(result) if is_dataclass(result) else result))
    return True


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit (soft and, as root, hard) to `wanted`; returns the soft limit.

    Child processes (the node) inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # not root: as far as the hard limit
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile_of(pid: int) -> int:
    """Soft open-file limit of a process, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 0


def rss_kib(pid: int | None = None) -> int:
    """Resident set size (VmRSS) of a process, this one by default."""
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sources(count: int) -> list[str]:
    """Loopback source addresses for `count` connections (any 127.x.y.z reaches 127.0.0.1 on Linux)."""
    return [f"127.0.0.{i + 2}" for i in range(max(1, -(-count // CONNECTIONS_PER_SOURCE)))]


def seed_tokens(db: str, uids: list[int], ttl_s: float = 86400.0) -> list[str]:
    """A live resume token per uid, written as the node stores them (SHA-256 only); returns the tokens."""
    url = parse_database_url(db)
    sql = (SQLITE if url.kind == "sqlite" else MYSQL).sql
    now = int(time.time() * 1000)
    tokens = [secrets.token_urlsafe(32) for _ in uids]
    rows = [(hashlib.sha256(t.encode()).hexdigest(), uid, now, now + int(ttl_s * 1000))
            for t, uid in zip(tokens, uids, strict=True)]
    conn = connect_sync(url)
    cursor = conn.cursor()
    for start in range(0, len(rows), 5000):
        cursor.executemany(sql("INSERT INTO tokens (token_hash, uid, created_at_ms, expires_at_ms) "
                               "VALUES (?, ?, ?, ?)"), rows[start:start + 5000])
    conn.commit()
    conn.close()
    return tokens


def set_password_hashes(db: str, password: str, time_cost: int, memory_kib: int, parallelism: int) -> str:
    """Give every user `password` hashed with these argon2id parameters (which set what a verify costs)."""
    password_hash = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism).hash(password)
    url = parse_database_url(db)
    sql = (SQLITE if url.kind == "sqlite" else MYSQL).sql
    conn = connect_sync(url)
    conn.cursor().execute(sql("UPDATE users SET password_hash = ?"), (password_hash,))
    conn.commit()
    conn.close()
    return password_hash


@dataclass
class LoginCounts:
    """What a `LoginDriver` saw; logins and latencies only while `measuring`."""

    measuring: bool = False
    logins: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    dropped: int = 0  # connections that failed or closed before LOGGED_IN

    def percentile_ms(self, p: float) -> float:
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] / 1e6


_CONNECTING, _LOGGING_IN, _LOGGING_OUT = 0, 1, 2


class _Attempt:
    """One connection between connect and LOGGED_IN (or, with reuse, for its whole life)."""

    __slots__ = ("buffer", "slot", "sock", "started", "state")

    def __init__(self, sock: socket.socket, slot: int) -> None:
        self.sock = sock
        self.slot = slot
        self.state = _CONNECTING
        self.buffer = b""
        self.started = time.monotonic_ns()


class LoginDriver:
    """Logs connections in over raw sockets, `window` at a time, on one epoll.

    `login_frame(slot)` gives the next login request of a slot (None: the slot
    is done); slots keep apart the users that concurrent logins use, so they
    do not kick each other.  After LOGGED_IN a connection is `keep`t open (its
    fd goes to `kept` and is never read again), closed and replaced by a fresh
    one, or with `reuse` logged out and logged in again on the same connection.
    """

    def __init__(self, host: str, port: int, source_addresses: list[str],
                 login_frame: Callable[[int], bytes | None], window: int, *, keep: bool = False,
                 reuse: bool = False) -> None:
        self.address = (host, port)
        self.sources = source_addresses
        self.login_frame = login_frame
        self.window = window
        self.keep = keep
        self.reuse = reuse
        self.counts = LoginCounts()
        self.kept: list[int] = []
        self.opened = 0
        self._epoll = select.epoll()
        self._attempts: dict[int, _Attempt] = {}
        self._started = False

    def _open(self, slot: int) -> None:
        """A fresh connection for `slot` (unless the slot has no more logins)."""
        frame = self.login_frame(slot)
        if frame is None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self.sources) > 1:  # the port is picked at connect time, per 4-tuple
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.sources[self.opened % len(self.sources)], 0))
        self.opened += 1
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, f"connect: {errno.errorcode.get(code, code)}")
        attempt = _Attempt(sock, slot)
        attempt.buffer = frame  # sent once connected
        fd = sock.fileno()
        self._attempts[fd] = attempt
        self._epoll.register(fd, select.EPOLLOUT)

    def _forget(self, fd: int) -> _Attempt:
        self._epoll.unregister(fd)
        return self._attempts.pop(fd)

    def _drop(self, fd: int) -> None:
        """The connection failed before logging in: count it and open another for the slot."""
        attempt = self._forget(fd)
        attempt.sock.close()
        self.counts.dropped += 1
        if self.counts.dropped > max(100, self.opened // 100):
            raise RuntimeError(f"{self.counts.dropped} of {self.opened} connections failed to log in; "
                               f"errors by code: {self.counts.errors}")
        self._open(attempt.slot)

    def _logged_in(self, fd: int, attempt: _Attempt) -> None:
        counts = self.counts
        if counts.measuring:
            counts.logins += 1
            counts.latencies_ns.append(time.monotonic_ns() - attempt.started)
        if self.keep:
            self._forget(fd)
            self.kept.append(attempt.sock.detach())
            self._open(attempt.slot)
        elif self.reuse:
            attempt.state = _LOGGING_OUT
            attempt.sock.send(LOGOUT)
        else:
            self._forget(fd)
            attempt.sock.close()
            self._open(attempt.slot)

    def _readable(self, fd: int, attempt: _Attempt) -> None:
        try:
            data = attempt.sock.recv(65536)
        except BlockingIOError:  # a stale event: the fd was closed and reused within one poll
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        buffer = attempt.buffer + data if attempt.buffer else data
        offset, end = 0, len(buffer)
        while end - offset >= _HEADER:
            msg_id, length = HEADER.unpack_from(buffer, offset)
            stop = offset + _HEADER + length
            if stop > end:
                break
            if msg_id == _LOGGED_IN and attempt.state == _LOGGING_IN:
                attempt.buffer = b""
                self._logged_in(fd, attempt)
                if self._attempts.get(fd) is not attempt:  # closed (its fd may already be a new one's)
                    return
            elif msg_id == _OK and attempt.state == _LOGGING_OUT:
                frame = self.login_frame(attempt.slot)
                if frame is None:
                    self._forget(fd).sock.close()
                    return
                attempt.state = _LOGGING_IN
                attempt.started = time.monotonic_ns()
                attempt.sock.send(frame)
            elif msg_id == _ERROR:
                code = _U16.unpack_from(buffer, offset + _HEADER + 4)[0]
                self.counts.errors[code] = self.counts.errors.get(code, 0) + 1
                self._drop(fd)
                return
            offset = stop
        attempt.buffer = buffer[offset:] if offset < end else b""

    def run(self, deadline: float | None = None) -> None:
        """Until every slot is done, or until the monotonic `deadline` (run again to go on)."""
        if not self._started:
            self._started = True
            for slot in range(self.window):
                self._open(slot)
        poll = self._epoll.poll
        attempts = self._attempts
        while attempts and (deadline is None or time.monotonic() < deadline):
            for fd, events in poll(0.1):
                attempt = attempts.get(fd)
                if attempt is None:
                    continue
                if attempt.state == _CONNECTING:
                    if events & (select.EPOLLERR | select.EPOLLHUP) or attempt.sock.getsockopt(
                            socket.SOL_SOCKET, socket.SO_ERROR):
                        self._drop(fd)
                        continue
                    if not events & select.EPOLLOUT:
                        continue  # a stale event of the fd's previous socket
                    frame, attempt.buffer = attempt.buffer, b""
                    attempt.state = _LOGGING_IN
                    self._epoll.modify(fd, select.EPOLLIN)
                    try:
                        attempt.sock.send(HELLO + frame)
                    except OSError:
                        self._drop(fd)
                else:
                    self._readable(fd, attempt)

    def close(self) -> None:
        """Close every connection: those in flight and those kept."""
        for fd in list(self._attempts):
            self._forget(fd).sock.close()
        for fd in self.kept:
            try:
                socket.socket(fileno=fd).close()
            except OSError:
                pass
        self.kept.clear()
        self._epoll.close()
