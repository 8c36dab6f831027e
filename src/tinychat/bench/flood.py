"""Request flood: one connection floods the node while other users chat; their latency, with and without it.

    python -m tinychat.bench flood                          # node defaults: 200/s per connection
    python -m tinychat.bench flood --kind ping --seconds 20
    python -m tinychat.bench flood --node-arg=--rate-limit --node-arg=0     # no limiter, for comparison

Seeds `--pairs` befriended sender/receiver pairs plus one for the flooder (its
thread holding `--history` messages), starts a node with its default limits
and logs the pairs in from spread loopback addresses.  The pairs exchange
messages at a fixed offered rate (`--rate` in total) and each receiver times
every push against the send time carried in its client_msg_id: first with
nothing else going on, then while a separate process floods the node from one
connection with pipelined requests (`--kind`: HISTORY pages of 100 messages,
SEARCH_USERS or PING) as fast as its socket takes them, trying to reconnect
and log in again a second after the node cuts it off.  It reports the pairs' p50/p99
latency in both phases and their ratio, and what became of the flood's
requests: served, refused with RATE_LIMITED, connections closed with
LIMIT_EXCEEDED.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from twisted.internet import defer, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import LoopingCall

from tinychat.bench.common import add_output_options, printed_as_json
from tinychat.bench.load import Peer, Stats, _run_reactor, _sleep, cpu_seconds, database, paced_sends
from tinychat.bench.seed import PASSWORD, seed_history, seed_pairs
from tinychat.protocol import (
    Direction,
    Error,
    ErrorCode,
    FrameDecoder,
    History,
    Login,
    Ping,
    SearchUsers,
    encode,
)
from tinychat.testing.hostile import RawClient, ServerClosedError
from tinychat.testing.nodes import NodeProcess, run_node

FLOODER_SOURCE = "127.0.9.9"
RECONNECT_PAUSE = 1.0
_ERROR = Error.MSG_ID


def source(index: int) -> str:
    """Chatting pairs come from many loopback addresses, as users would from many hosts."""
    return f"127.2.{index // 50}.{index % 50 + 2}"


# ---------------------------------------------------------------- the flooder (a separate process)


def flood_frame(kind: str, thread_id: int) -> bytes:
    if kind == "history":
        return encode(History(request_id=1, thread_id=thread_id, cursor_seq=0, direction=Direction.BEFORE, limit=100))
    if kind == "search":
        return encode(SearchUsers(request_id=1, query="bench"))
    return encode(Ping(request_id=1))


def flood(host: str, port: int, user: str, seconds: float, kind: str, thread_id: int) -> dict:
    """Send `kind` requests as fast as the socket takes them for `seconds`; count what comes back."""
    counts: Counter[str] = Counter()
    frame = flood_frame(kind, thread_id)
    batch = frame * max(1, 65536 // len(frame))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if counts["connections"] or counts["refused at connect"]:
            time.sleep(RECONNECT_PAUSE)  # a flood from one connection at a time, not a connection storm
        client = RawClient(host, port, source=FLOODER_SOURCE, timeout=10)
        try:
            client.handshake()
            login = client.request(Login, identifier=user, password=PASSWORD, totp_code="")
        except (AssertionError, ServerClosedError, OSError):  # refused at once: the address is cooling down
            counts["refused at connect"] += 1
            client.close()
            continue
        if isinstance(login, Error):
            counts["refused at connect"] += 1
            client.close()
            continue
        counts["connections"] += 1
        sock = client.sock
        sock.setblocking(False)
        decoder = FrameDecoder(max_body=64 * 1024 * 1024)
        out = bytearray()
        sent_bytes = 0
        open_ = True
        while open_ and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if open_ else [], [], 0.2)
            if writable:
                if len(out) < len(batch):
                    out += batch
                try:
                    n = sock.send(out)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    open_ = False
                    n = 0
                sent_bytes += n
                del out[:n]
            if readable:
                try:
                    chunk = sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    open_ = False
                    break
                for msg_id, body in decoder.feed_frames(chunk):
                    if msg_id == _ERROR:
                        counts[ErrorCode(int.from_bytes(body[4:6], "big")).name] += 1
                    else:
                        counts["served"] += 1
        counts["requests sent"] += sent_bytes // len(frame)
        if not open_:
            counts["closed by the node"] += 1
        sock.close()
    return dict(counts)


# ---------------------------------------------------------------- the chatting pairs


async def _connect_pairs(node: NodeProcess, pairs: list) -> list[tuple[Peer, Peer]]:
    couples = []
    for index, pair in enumerate(pairs):
        couple = []
        for offset, name in enumerate((pair.sender, pair.receiver)):
            endpoint = TCP4ClientEndpoint(reactor, node.host, node.port, bindAddress=(source(2 * index + offset), 0))
            peer = await connectProtocol(endpoint, Peer(encode(Login(request_id=2, identifier=name,
                                                                     password=PASSWORD, totp_code="")), Stats()))
            await peer.logged_in
            couple.append(peer)
        couple[0].prepare_sends(pair.thread_id)
        couples.append((couple[0], couple[1]))
    return couples


def _phase(stats: Stats, elapsed: float, cpu: float) -> dict:
    return {"p50_ms": round(stats.percentile(50), 2), "p99_ms": round(stats.percentile(99), 2),
            "delivered_per_s": round(stats.delivered / elapsed), "errors": stats.errors,
            "node_cpu_percent": round(100 * cpu / elapsed)}


async def _measure(node: NodeProcess, pairs: list, flooder, args: argparse.Namespace) -> dict:
    couples = await _connect_pairs(node, pairs)
    everyone = [p for couple in couples for p in couple]
    keepalive = LoopingCall(lambda: [p.transport.write(encode(Ping(request_id=0))) for p in everyone])
    keepalive.start(20, now=False)
    ticker = paced_sends([sender for sender, _ in couples], args.rate)
    phases = {}
    for phase in ("idle", "flood"):
        stats = Stats()
        for peer in everyone:
            peer.stats = stats
        if phase == "flood":
            worker = subprocess.Popen(
                [sys.executable, "-m", "tinychat.bench.flood", "--worker", node.host, str(node.port), flooder.sender,
                 str(args.seconds + args.warmup + 1), args.kind, str(flooder.thread_id)],
                stdout=subprocess.PIPE, text=True)
        await _sleep(args.warmup)
        stats.measuring = True
        cpu, began = cpu_seconds(node.process.pid), time.monotonic()
        await _sleep(args.seconds)
        stats.measuring = False
        elapsed = time.monotonic() - began
        phases[phase] = _phase(stats, elapsed, cpu_seconds(node.process.pid) - cpu)
    output, _ = await threads.deferToThread(worker.communicate)
    ticker.stop()
    keepalive.stop()
    for peer in everyone:
        peer.transport.loseConnection()
    flood_counts = json.loads(output)
    idle, flooded = phases["idle"], phases["flood"]
    return {
        "pairs": len(pairs), "offered_rate": args.rate, "seconds": args.seconds, "flood_kind": args.kind,
        "idle": idle, "flood": flooded, "flood_counts": flood_counts,
        "p50_ratio": round(flooded["p50_ms"] / idle["p50_ms"], 2) if idle["p50_ms"] else None,
        "p99_ratio": round(flooded["p99_ms"] / idle["p99_ms"], 2) if idle["p99_ms"] else None,
    }


def run(args: argparse.Namespace) -> dict:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinychat-flood-")))
        db = stack.enter_context(database(args.mysql, workdir))
        pairs = seed_pairs(db, args.pairs + 1)
        flooder = pairs.pop()
        seed_history(db, flooder, args.history)
        node = stack.enter_context(run_node(
            ["--db", db, "--node-id", "flood", "--idle-timeout", "600", "--heartbeat-interval", "300",
             *args.node_arg], workdir, echo_log=False))
        result: list[dict] = []
        _run_reactor(lambda: defer.Deferred.fromCoroutine(_measure(node, pairs, flooder, args))
                     .addCallback(result.append))
        result[0]["node_args"] = " ".join(args.node_arg) or "defaults"
        return result[0]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        host, port, user, seconds, kind, thread_id = argv[1:7]
        socket.setdefaulttimeout(10)
        print(json.dumps(flood(host, int(port), user, float(seconds), kind, int(thread_id))))
        return
    p = argparse.ArgumentParser(prog="tinychat-bench flood", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=50, help="chatting sender/receiver pairs (default 50)")
    p.add_argument("--rate", type=float, default=1000, help="messages/s offered by all pairs together (default 1,000)")
    p.add_argument("--kind", choices=["history", "search", "ping"], default="history",
                   help="what the flooder asks for (default history: 100-message pages)")
    p.add_argument("--history", type=int, default=500, help="messages in the flooder's thread (default 500)")
    p.add_argument("--seconds", type=float, default=20, help="measurement per phase (default 20)")
    p.add_argument("--warmup", type=float, default=5, help="seconds before measuring each phase (default 5)")
    p.add_argument("--mysql", default=None, help="MySQL server URL (default SQLite)")
    add_output_options(p)
    args = p.parse_args(argv)
    result = run(args)
    if printed_as_json(args, result):
        return
    idle, flooded, counts = result["idle"], result["flood"], result["flood_counts"]
    print(f"{result['pairs']} pairs at {result['offered_rate']:,.0f} msg/s, a {result['flood_kind']} flood from "
          f"one connection; node: {result['node_args']}")
    print(f"  idle     p50 {idle['p50_ms']:.2f} ms  p99 {idle['p99_ms']:.2f} ms  delivered "
          f"{idle['delivered_per_s']:,}/s  node CPU {idle['node_cpu_percent']}%")
    print(f"  flooded  p50 {flooded['p50_ms']:.2f} ms  p99 {flooded['p99_ms']:.2f} ms  delivered "
          f"{flooded['delivered_per_s']:,}/s  node CPU {flooded['node_cpu_percent']}%")
    print(f"  ratio    p50 x{result['p50_ratio']}  p99 x{result['p99_ratio']}")
    print(f"  flood    {counts.get('requests sent', 0):,} requests sent, {counts.get('served', 0):,} served, "
          f"{counts.get('RATE_LIMITED', 0):,} refused (RATE_LIMITED), {counts.get('LIMIT_EXCEEDED', 0):,} "
          f"connections cut (LIMIT_EXCEEDED), {counts.get('connections', 0):,} logins, "
          f"{counts.get('refused at connect', 0):,} reconnections refused (cooling down)")
    if flooded["errors"] or idle["errors"]:
        print(f"  pairs' errors: idle {idle['errors']}, flooded {flooded['errors']}")


if __name__ == "__main__":
    main()
