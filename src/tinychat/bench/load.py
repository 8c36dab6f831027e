"""Load generator: acked-and-delivered message throughput and latency of real nodes.

    python -m tinychat.bench load                       # one node, SQLite
    python -m tinychat.bench load --mysql mysql://root@127.0.0.1:3306
    python -m tinychat.bench load --rate 5000           # latency at a fixed offered rate

It seeds sender/receiver pairs straight into a fresh database, starts a node
as a `twistd` subprocess, and drives it from this process with prebuilt
frames: each sender keeps `--window` messages in flight, sent but not yet
delivered to its receiver (or, with --rate, the pairs share a fixed offered
rate), each receiver times the push of every message against the send time
carried in the low bits of its client_msg_id (the high bits are random per
sender, as real clients' ids are).  It reports
messages/s acked and delivered, p50/p99 latency, and the CPU used by the
node and by the generator.
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall

from tinychat.bench.common import add_output_options, printed_as_json
from tinychat.bench.seed import PASSWORD, Pair, seed_pairs
from tinychat.protocol import (
    HEADER,
    Error,
    Hello,
    LoggedIn,
    Login,
    MessageAck,
    MessagePush,
    Ping,
    SendMessage,
    encode,
)
from tinychat.testing.nodes import NodeProcess, run_node

_HEADER = HEADER.size
_ACK = MessageAck.MSG_ID
_PUSH = MessagePush.MSG_ID
_ERROR = Error.MSG_ID
_LOGGED_IN = LoggedIn.MSG_ID
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_CMID_IN_PUSH = _HEADER + 24  # thread_id, seq, sender_uid, then client_msg_id
_CMID_IN_SEND = _HEADER + 20  # request_id, thread_id, to_uid, then client_msg_id
TEXT = "benchmark message, about forty bytes!!!"
# client_msg_id = 24 random bits per sender (real clients pick random ids) + 40 bits of send time in ns,
# which the receiver subtracts from its own clock (modulo 2**40 ns, about 18 minutes).
_TIME_BITS = 40
_TIME_MASK = (1 << _TIME_BITS) - 1


def elapsed_ns(client_msg_id: int) -> int:
    """Nanoseconds since a message with this client_msg_id (made by `Peer.send_one`) was sent."""
    return (time.monotonic_ns() - client_msg_id) & _TIME_MASK


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU time of a process (this one by default)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stats:
    """Counters and latency samples of one measurement."""

    def __init__(self) -> None:
        self.measuring = False
        self.acked = 0
        self.delivered = 0
        self.errors: dict[int, int] = {}
        self.latencies_ns: list[int] = []

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds."""
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] / 1e6


class Peer(Protocol):
    """A client speaking the protocol with prebuilt frames and struct-level parsing."""

    def __init__(self, login: bytes, stats: Stats) -> None:
        self.login_frame = login
        self.stats = stats
        self.logged_in: defer.Deferred = defer.Deferred()
        self.buffer = b""
        self.in_flight = 0
        self.sending = False
        self.template: bytearray | None = None
        self.request_id = 0
        self.partner: Peer | None = None  # a receiver's sender: each delivery lets it send the next
        self.id_prefix = random.getrandbits(64 - _TIME_BITS) << _TIME_BITS

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        hello = encode(Hello(request_id=1, min_version=1, max_version=1, client_name="tinychat-bench"))
        self.transport.write(hello + self.login_frame)

    def prepare_sends(self, thread_id: int) -> None:
        self.template = bytearray(encode(SendMessage(request_id=0, thread_id=thread_id, to_uid=0,
                                                     client_msg_id=0, text=TEXT)))

    def send_one(self) -> None:
        template = self.template
        self.request_id = (self.request_id + 1) & 0xFFFFFFFF
        struct.pack_into(">I", template, _HEADER, self.request_id)
        _U64.pack_into(template, _CMID_IN_SEND, self.id_prefix | (time.monotonic_ns() & _TIME_MASK))
        self.in_flight += 1
        self.transport.write(bytes(template))

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        offset, end = 0, len(buffer)
        stats = self.stats
        while end - offset >= _HEADER:
            msg_id, length = HEADER.unpack_from(buffer, offset)
            stop = offset + _HEADER + length
            if stop > end:
                break
            if msg_id == _PUSH:
                if stats.measuring:
                    stats.delivered += 1
                    stats.latencies_ns.append(elapsed_ns(_U64.unpack_from(buffer, offset + _CMID_IN_PUSH)[0]))
                sender = self.partner
                if sender is not None:
                    sender.in_flight -= 1
                    if sender.sending:
                        sender.send_one()
            elif msg_id == _ACK:
                if stats.measuring:
                    stats.acked += 1
            elif msg_id == _LOGGED_IN:
                self.logged_in.callback(self)
            elif msg_id == _ERROR:
                code = _U16.unpack_from(buffer, offset + _HEADER + 4)[0]
                stats.errors[code] = stats.errors.get(code, 0) + 1
                self.in_flight -= 1
                if not self.logged_in.called:
                    self.logged_in.errback(RuntimeError(f"login refused with error {code}"))
            offset = stop
        self.buffer = buffer[offset:] if offset < end else b""


@dataclass
class Result:
    backend: str
    nodes: int
    mode: str
    pairs: int
    window: int
    offered_rate: float
    seconds: float
    acked_per_s: float
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    node_cpu_percent: float
    generator_cpu_percent: float
    errors: dict[int, int]


async def _connect_all(nodes: list[NodeProcess], pairs: list[Pair], stats: Stats,
                       same_node: bool = False) -> list[tuple[Peer, Peer]]:
    """Log every pair in; with several nodes the receiver is on the next node (so every message crosses)
    unless `same_node`."""
    endpoints = [TCP4ClientEndpoint(reactor, node.host, node.port) for node in nodes]
    peers = []
    for index, pair in enumerate(pairs):
        couple = []
        for offset, name in enumerate((pair.sender, pair.receiver)):
            login = encode(Login(request_id=2, identifier=name, password=PASSWORD, totp_code=""))
            endpoint = endpoints[(index + (0 if same_node else offset)) % len(endpoints)]
            peer = await connectProtocol(endpoint, Peer(login, stats))
            await peer.logged_in
            couple.append(peer)
        couple[0].prepare_sends(pair.thread_id)
        couple[1].partner = couple[0]
        peers.append((couple[0], couple[1]))
    return peers


async def _measure(nodes: list[NodeProcess], pairs: list[Pair], args: argparse.Namespace, backend: str) -> Result:
    stats = Stats()
    peers = await _connect_all(nodes, pairs, stats, args.same_node)
    everyone = [p for couple in peers for p in couple]
    keepalive = LoopingCall(lambda: [p.transport.write(encode(Ping(request_id=0))) for p in everyone])
    keepalive.start(20, now=False)
    senders = [sender for sender, _ in peers]
    ticker = None
    if args.rate:
        ticker = paced_sends(senders, args.rate)
    else:
        for sender in senders:
            sender.sending = True
            for _ in range(args.window):
                sender.send_one()
    await _sleep(args.warmup)
    stats.measuring = True
    pids = [node.process.pid for node in nodes]
    node_cpu, own_cpu, began = sum(map(cpu_seconds, pids)), cpu_seconds(), time.monotonic()
    await _sleep(args.seconds)
    stats.measuring = False
    elapsed = time.monotonic() - began
    node_cpu = sum(map(cpu_seconds, pids)) - node_cpu
    own_cpu = cpu_seconds() - own_cpu
    if ticker is not None:
        ticker.stop()
    for sender in senders:
        sender.sending = False
    keepalive.stop()
    for peer in everyone:
        peer.transport.loseConnection()
    return Result(
        backend=backend, nodes=len(nodes), mode="rate" if args.rate else "window", pairs=len(pairs),
        window=args.window,
        offered_rate=args.rate or 0, seconds=round(elapsed, 2),
        acked_per_s=round(stats.acked / elapsed), delivered_per_s=round(stats.delivered / elapsed),
        p50_ms=round(stats.percentile(50), 2), p99_ms=round(stats.percentile(99), 2),
        node_cpu_percent=round(100 * node_cpu / elapsed), generator_cpu_percent=round(100 * own_cpu / elapsed),
        errors=stats.errors,
    )


def paced_sends(senders: list[Peer], rate: float) -> LoopingCall:
    """Send `rate` messages/s in total, round-robin over `senders`, topped up every millisecond; stop() ends it."""
    start = time.monotonic()
    sent = 0

    def tick() -> None:
        nonlocal sent
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            senders[sent % len(senders)].send_one()
            sent += 1

    ticker = LoopingCall(tick)
    ticker.start(0.001)
    return ticker


def _sleep(seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


@contextmanager
def database(mysql: str | None, workdir: Path):
    """A fresh SQLite file, or a fresh MySQL database dropped afterwards."""
    if not mysql:
        yield f"sqlite:///{workdir / 'bench.sqlite3'}"
        return
    import pymysql

    from tinychat.server.store.url import parse_database_url

    server = parse_database_url(mysql.rstrip("/") + "/mysql")
    name = f"tinychat_bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(host=server.host, port=server.port, user=server.user, password=server.password,
                            autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield f"{mysql.rstrip('/')}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@contextmanager
def private_redis(workdir: Path):
    """A throw-away redis-server on a free port, for a cluster benchmark."""
    import shutil
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed for --nodes > 1 (or pass --redis URL)")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


def run(args: argparse.Namespace) -> Result:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinychat-bench-")))
        if args.nodes > 1 and not args.mysql:
            raise SystemExit("--nodes > 1 needs a shared database: pass --mysql URL")
        db = stack.enter_context(database(args.mysql, workdir))
        pairs = seed_pairs(db, args.pairs, extra_users=args.extra_users, friends=args.friends)
        cluster: list[str] = []
        if args.nodes > 1 or args.redis:
            redis = args.redis or stack.enter_context(private_redis(workdir))
            cluster = ["--redis", redis, "--redis-prefix", f"bench{uuid.uuid4().hex[:8]}"]
        nodes = [stack.enter_context(run_node(
            ["--db", db, "--node-id", f"bench{i + 1}", "--idle-timeout", "600", "--heartbeat-interval", "300",
             "--rate-limit", "0", "--max-connections-per-ip", "0",
             *cluster, *args.node_arg], workdir, echo_log=False)) for i in range(args.nodes)]
        backend = ("mysql" if args.mysql else "sqlite") + ("+redis" if cluster else "")
        result: list[Result] = []

        def main() -> defer.Deferred:
            d = defer.Deferred.fromCoroutine(_measure(nodes, pairs, args, backend))
            d.addCallback(result.append)
            return d

        _run_reactor(main)
        return result[0]


def _run_reactor(main) -> None:
    failures = []

    def start() -> None:
        d = main()
        d.addErrback(failures.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    if failures:
        failures[0].raiseException()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinychat-bench load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=50, help="sender/receiver pairs (default 50)")
    p.add_argument("--window", type=int, default=20, help="messages in flight per sender (default 20)")
    p.add_argument("--rate", type=float, default=0, help="fixed offered rate in messages/s instead of windows")
    p.add_argument("--seconds", type=float, default=10, help="measurement time (default 10)")
    p.add_argument("--warmup", type=float, default=2, help="seconds before measuring (default 2)")
    p.add_argument("--mysql", default=None, help="MySQL server URL (mysql://root@127.0.0.1:3306); default SQLite")
    p.add_argument("--nodes", type=int, default=1, help="nodes; with 2 or more every message crosses nodes")
    p.add_argument("--same-node", action="store_true",
                   help="with several nodes, put each receiver on its sender's node (nothing crosses)")
    p.add_argument("--redis", default=None, help="Redis URL for the cluster bus (default: a private redis-server)")
    p.add_argument("--extra-users", type=int, default=0, help="registered users beyond the pairs")
    p.add_argument("--friends", type=int, default=0,
                   help="friends (from the extra users) of every pair member, beyond its partner")
    add_output_options(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    result = run(args)
    if printed_as_json(args, result):
        return
    what = f"offered {result.offered_rate:,.0f}/s" if result.mode == "rate" else f"window {result.window}"
    print(f"{result.backend}, {result.nodes} node(s): {result.pairs} pairs, {what}, {result.seconds:g} s")
    print(f"  acked      {result.acked_per_s:>10,.0f} msg/s")
    print(f"  delivered  {result.delivered_per_s:>10,.0f} msg/s")
    print(f"  latency    p50 {result.p50_ms:.2f} ms   p99 {result.p99_ms:.2f} ms")
    print(f"  CPU        node {result.node_cpu_percent}%   generator {result.generator_cpu_percent}%")
    if result.errors:
        print(f"  errors     {result.errors}")


if __name__ == "__main__":
    main()
