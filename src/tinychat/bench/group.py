"""Group fan-out: messages/s delivered to every member of a large group, and latency to the last one.

    python -m tinychat.bench group --members 200 --nodes 2 --mysql mysql://root@127.0.0.1:3306

Seeds an owner befriended with the members, starts the nodes, logs every
member in (spread over the nodes) with prebuilt frames, creates the group,
then the owner keeps `--window` messages in flight, a message counting as
done once every member has it.  Reports messages/s, deliveries/s and the
p50/p99 latency from send to the last member's push.
"""

from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tinychat.bench.load import (
    _HEADER,
    _PUSH,
    Peer,
    Stats,
    _run_reactor,
    _sleep,
    cpu_seconds,
    database,
    elapsed_ns,
    private_redis,
)
from tinychat.bench.seed import PASSWORD, seed_star
from tinychat.client.client import TinyChatClient
from tinychat.protocol import Login, encode
from tinychat.testing.nodes import run_node

_U64 = struct.Struct(">Q")
_CMID = _HEADER + 24


class Member(Peer):
    """Counts deliveries per message; the last one completes it."""

    tracker: FanOut

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        offset, end = 0, len(buffer)
        while end - offset >= _HEADER:
            msg_id, length = struct.unpack_from(">HI", buffer, offset)
            stop = offset + _HEADER + length
            if stop > end:
                break
            if msg_id == _PUSH:
                self.tracker.delivered(_U64.unpack_from(buffer, offset + _CMID)[0])
            elif not self.logged_in.called and msg_id == 0x0107:
                self.logged_in.callback(self)
            offset = stop
        self.buffer = buffer[offset:] if offset < end else b""


class FanOut:
    def __init__(self, members: int) -> None:
        self.members = members
        self.pending: dict[int, int] = {}
        self.sender: Peer | None = None
        self.measuring = False
        self.done = 0
        self.deliveries = 0
        self.latencies: list[int] = []

    def delivered(self, cmid: int) -> None:
        self.deliveries += self.measuring
        left = self.pending.get(cmid)
        if left is None:
            return
        if left > 1:
            self.pending[cmid] = left - 1
            return
        del self.pending[cmid]
        if self.measuring:
            self.done += 1
            self.latencies.append(elapsed_ns(cmid))
        sender = self.sender
        if sender.sending:
            self.send()

    def send(self) -> None:
        sender = self.sender
        sender.send_one()
        cmid = _U64.unpack_from(sender.template, _HEADER + 20)[0]
        self.pending[cmid] = self.members


async def _run(nodes, owner: str, names: list[str], args) -> dict:
    owner_client = TinyChatClient(nodes[0].endpoint, reactor=reactor)
    await owner_client.connect()
    await owner_client.login(owner, PASSWORD)
    tracker = FanOut(len(names))
    endpoints = [TCP4ClientEndpoint(reactor, n.host, n.port) for n in nodes]
    members = []
    for index, name in enumerate(names):
        peer = Member(encode(Login(request_id=2, identifier=name, password=PASSWORD, totp_code="")), Stats())
        peer.tracker = tracker
        members.append(await connectProtocol(endpoints[index % len(endpoints)], peer))
        await peer.logged_in
    uids = [f.uid for f in await owner_client.friends()]
    group = await owner_client.create_group("bench", uids)
    sender = Peer(encode(Login(request_id=2, identifier=owner, password=PASSWORD, totp_code="")), Stats())
    await owner_client.close()
    sender = await connectProtocol(endpoints[0], sender)
    await sender.logged_in
    sender.prepare_sends(group.thread_id)
    tracker.sender = sender
    sender.sending = True
    for _ in range(args.window):
        tracker.send()
    await _sleep(args.warmup)
    tracker.measuring = True
    pids = [n.process.pid for n in nodes]
    cpu, began = sum(map(cpu_seconds, pids)), time.monotonic()
    await _sleep(args.seconds)
    tracker.measuring = False
    elapsed = time.monotonic() - began
    cpu = sum(map(cpu_seconds, pids)) - cpu
    sender.sending = False
    ordered = sorted(tracker.latencies) or [0]
    return {"members": len(names) + 1, "nodes": len(nodes), "messages_per_s": round(tracker.done / elapsed),
            "deliveries_per_s": round(tracker.deliveries / elapsed),
            "p50_ms_last_member": round(ordered[len(ordered) // 2] / 1e6, 1),
            "p99_ms_last_member": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6, 1),
            "node_cpu_percent": round(100 * cpu / elapsed)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tinychat-bench group", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=200, help="group size, owner included")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--window", type=int, default=10, help="messages in flight (until the last member has them)")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--mysql", default=None, help="MySQL server URL (needed for --nodes > 1)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinychat-bench-")))
        db = stack.enter_context(database(args.mysql, workdir))
        owner, names = seed_star(db, args.members - 1)
        cluster = []
        if args.nodes > 1:
            cluster = ["--redis", stack.enter_context(private_redis(workdir)),
                       "--redis-prefix", f"bench{uuid.uuid4().hex[:8]}"]
        nodes = [stack.enter_context(run_node(
            ["--db", db, "--node-id", f"g{i + 1}", "--idle-timeout", "600", "--heartbeat-interval", "300",
             "--max-connections-per-ip", "0", "--rate-limit", "0", *cluster], workdir, echo_log=False))
            for i in range(args.nodes)]
        out: list[dict] = []
        _run_reactor(lambda: defer.Deferred.fromCoroutine(_run(nodes, owner, names, args)).addCallback(out.append))
    result = out[0]
    if args.json:
        print(json.dumps(result))
    else:
        print(f"group of {result['members']} on {result['nodes']} node(s): {result['messages_per_s']:,} msg/s, "
              f"{result['deliveries_per_s']:,} deliveries/s, last member p50 {result['p50_ms_last_member']} ms "
              f"p99 {result['p99_ms_last_member']} ms, node CPU {result['node_cpu_percent']}%")


if __name__ == "__main__":
    main()
