"""Stalled readers: 1,000 logged-in connections that never read, while a sender pushes to them.

    python -m tinychat.bench stalled                      # node defaults (4 MiB each, 256 MiB in all, 60 s)
    python -m tinychat.bench stalled --no-limit           # the same without the outgoing limits
    python -m tinychat.bench stalled --requests 4 --waves 3

Seeds an owner befriended with `--readers` users and puts them all in one
group.  Then, per wave, every reader logs in (from spread loopback addresses,
so the per-address cap stays at its default; with a 16 KiB receive buffer),
asks for `--requests` 100-message history pages, and never reads a byte again,
while the owner sends messages of about 16 KB to the group.  It reports the
node's RSS (VmRSS of /proc/PID/status) and the kernel's TCP buffer memory
(/proc/net/sockstat) at the start, at their peak and after each wave, how many
readers the node dropped and why (its log says), and whether it still answers.

A group message is one frame shared by every recipient's queue, so pushes
alone mostly fill the kernel's socket buffers; history pages are built per
connection, so `--requests` shows the node's own memory.  With `--waves` the
same readers come back after being dropped: a flat RSS from wave to wave shows
the memory of dropped connections is reused, not leaked.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tinychat.bench.fuzz import rss_kib
from tinychat.bench.load import database
from tinychat.bench.seed import PASSWORD, seed_star
from tinychat.protocol import (
    AddGroupMembers,
    CreateGroup,
    Direction,
    Error,
    ErrorCode,
    History,
    ListFriends,
    Ping,
    Pong,
    SendMessage,
    WhichNode,
    encode,
)
from tinychat.testing.hostile import RawClient
from tinychat.testing.nodes import run_node

ABORTED = r"aborting the connection of"
BY_BYTES = r"aborting the connection of .*bytes queued for a client"
BY_TOTAL = r"aborting the connection of .*bytes queued for all the clients"
BY_TIME = r"aborting the connection of .*read nothing for"
GROUP_INVITE = 500


def tcp_kernel_mib() -> float:
    """Memory the kernel holds in TCP socket buffers (all sockets of this network namespace), in MiB."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * 4096 / 2**20
    return 0.0


def source(index: int) -> str:
    """A loopback source address per 50 readers (any 127.x.y.z reaches 127.0.0.1 on Linux)."""
    return f"127.1.{index // 50 % 250}.{index % 50 + 2}"


def call_paced(client: RawClient, request_type: type, **fields) -> object:
    """A request, resent after retry_after_ms whenever the node's rate limit refuses it."""
    while True:
        answer = client.request(request_type, **fields)
        if isinstance(answer, Error) and answer.code is ErrorCode.RATE_LIMITED:
            time.sleep(answer.retry_after_ms / 1000)  # what the protocol tells a client to do
            continue
        if isinstance(answer, Error):
            raise RuntimeError(f"{request_type.__name__} refused: {answer.code.name}: {answer.message}")
        return answer


class Memory:
    """The node's RSS and the kernel's TCP buffers: at the start, now, and the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_start, self.kernel_start = rss_kib(pid) / 1024, tcp_kernel_mib()
        self.rss_peak, self.kernel_peak = self.rss_start, self.kernel_start

    def sample(self) -> tuple[float, float]:
        rss, kernel = rss_kib(self.pid) / 1024, tcp_kernel_mib()
        self.rss_peak, self.kernel_peak = max(self.rss_peak, rss), max(self.kernel_peak, kernel)
        return rss, kernel


def run(args: argparse.Namespace) -> dict:
    limits = (["--max-outgoing-buffer", "0", "--max-outgoing-total", "0", "--slow-reader-timeout", "0"]
              if args.no_limit else
              [*(["--max-outgoing-buffer", str(args.max_outgoing_buffer)] if args.max_outgoing_buffer else []),
               *(["--max-outgoing-total", str(args.max_outgoing_total)] if args.max_outgoing_total else []),
               *(["--slow-reader-timeout", str(args.slow_reader_timeout)] if args.slow_reader_timeout else [])])
    with tempfile.TemporaryDirectory(prefix="tinychat-stalled-") as tmp, database(args.mysql, Path(tmp)) as db:
        owner, names = seed_star(db, args.readers)
        node_args = ["--db", db, "--node-id", "stalled", "--idle-timeout", "3600", "--heartbeat-interval", "300",
                     "--login-timeout", "3600", "--max-group-members", str(args.readers + 1), *limits]
        with run_node(node_args, Path(tmp), echo_log=False) as node:
            sender = RawClient.to(node, source="127.0.0.2", timeout=60)
            sender.handshake()
            sender.login(owner, PASSWORD)
            uids = [f.uid for f in sender.call(ListFriends).friends]
            group = call_paced(sender, CreateGroup, name="stalled", member_uids=uids[:GROUP_INVITE]).group
            for start in range(GROUP_INVITE, len(uids), GROUP_INVITE):
                call_paced(sender, AddGroupMembers, thread_id=group.thread_id, uids=uids[start:start + GROUP_INVITE])
            text = "😀" * (args.text_bytes // 4)
            seeded = min(100, args.messages)  # history worth asking for
            for n in range(seeded):
                call_paced(sender, SendMessage, thread_id=group.thread_id, to_uid=0, client_msg_id=n + 1, text=text)
            memory = Memory(node.process.pid)
            waves = []
            history = encode(History(request_id=1000, thread_id=group.thread_id, cursor_seq=0,
                                     direction=Direction.BEFORE, limit=100))
            per_wave = max(0, args.messages - seeded)
            for wave in range(args.waves):
                readers = []
                for index, name in enumerate(names):
                    reader = RawClient.to(node, source=source(index + wave * len(names)), rcvbuf=16 * 1024,
                                          timeout=60)
                    reader.handshake()
                    reader.login(name, PASSWORD)
                    readers.append(reader)
                rss_logged_in, _ = memory.sample()
                before = node.count_log(ABORTED)
                began = time.monotonic()
                for index, reader in enumerate(readers):
                    reader.send(history * args.requests)  # answers it will never read
                    if index % 50 == 0:
                        memory.sample()
                for n in range(per_wave):
                    call_paced(sender, SendMessage, thread_id=group.thread_id, to_uid=0,
                               client_msg_id=(wave + 1) * 1_000_000 + n, text=text)
                    if n % 25 == 0:
                        memory.sample()
                sent_seconds = time.monotonic() - began
                memory.sample()
                dropped_while_sending = node.count_log(ABORTED) - before
                deadline = time.monotonic() + args.settle
                dropped = dropped_while_sending
                while dropped < args.readers and time.monotonic() < deadline:  # memory once a second meanwhile
                    dropped = node.wait_for_log_count(ABORTED, before + args.readers, timeout=1.0) - before
                    memory.sample()
                alive = isinstance(call_paced(sender, Ping), Pong)
                left = call_paced(sender, WhichNode).connections
                rss_end, kernel_end = memory.sample()
                waves.append({
                    "seconds_sending": round(sent_seconds, 1), "rss_mib_readers_logged_in": round(rss_logged_in),
                    "rss_mib_end": round(rss_end), "tcp_kernel_mib_end": round(kernel_end),
                    "dropped_while_sending": dropped_while_sending, "dropped": dropped,
                    "seconds_until_settled": round(time.monotonic() - began - sent_seconds, 1),
                    "connections_left": left, "node_answers": alive,
                })
                for reader in readers:
                    reader.close()
            by_bytes, by_total, by_time = node.count_log(BY_BYTES), node.count_log(BY_TOTAL), node.count_log(BY_TIME)
            sender.close()
    return {
        "readers": args.readers, "messages": args.messages, "message_bytes": len(text.encode()),
        "history_requests_per_reader": args.requests,
        "limits": "off" if args.no_limit else " ".join(limits) or "node defaults (4 MiB each, 256 MiB in all, 60 s)",
        "rss_mib_start": round(memory.rss_start), "rss_mib_peak": round(memory.rss_peak),
        "tcp_kernel_mib_start": round(memory.kernel_start), "tcp_kernel_mib_peak": round(memory.kernel_peak),
        "by_byte_limit": by_bytes, "by_total_limit": by_total, "by_slow_reader_timeout": by_time, "waves": waves,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tinychat-bench stalled", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readers", type=int, default=1000, help="stalled connections (default 1,000)")
    p.add_argument("--messages", type=int, default=600, help="group messages sent to them (default 600)")
    p.add_argument("--text-bytes", type=int, default=16000, help="bytes of UTF-8 per message (default 16,000)")
    p.add_argument("--requests", type=int, default=0,
                   help="100-message history pages each reader asks for and never reads (default 0)")
    p.add_argument("--max-outgoing-buffer", type=int, default=0, help="node option (default: the node's)")
    p.add_argument("--max-outgoing-total", type=int, default=0, help="node option (default: the node's)")
    p.add_argument("--slow-reader-timeout", type=float, default=0, help="node option (default: the node's)")
    p.add_argument("--no-limit", action="store_true", help="turn both outgoing limits off, for comparison")
    p.add_argument("--waves", type=int, default=1,
                   help="rounds of readers, one after the other: memory of a dropped wave is reused (default 1)")
    p.add_argument("--settle", type=float, default=90, help="seconds to wait for the node to drop every reader")
    p.add_argument("--mysql", default=None, help="MySQL server URL (default SQLite)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.no_limit:
        args.settle = min(args.settle, 15)  # nothing will be dropped: only let the history pages be built
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['readers']} stalled readers, {result['messages']} group messages of {result['message_bytes']} "
          f"bytes, {result['history_requests_per_reader']} unread history page(s) each; limits: {result['limits']}")
    print(f"  node RSS      {result['rss_mib_start']} MiB at the start, peak {result['rss_mib_peak']} MiB; "
          f"kernel TCP buffers {result['tcp_kernel_mib_start']} MiB at the start, peak "
          f"{result['tcp_kernel_mib_peak']} MiB (whole host)")
    for number, wave in enumerate(result["waves"], 1):
        print(f"  wave {number}: {wave['dropped_while_sending']} readers dropped while sending "
              f"({wave['seconds_sending']} s), {wave['dropped']} after {wave['seconds_until_settled']} s more; "
              f"node RSS {wave['rss_mib_readers_logged_in']} MiB with the readers logged in, {wave['rss_mib_end']} MiB "
              f"at the end, kernel TCP {wave['tcp_kernel_mib_end']} MiB; node "
              f"{'answers' if wave['node_answers'] else 'DOES NOT ANSWER'}, {wave['connections_left']} connections")
    print(f"  dropped over the per-connection limit {result['by_byte_limit']}, over the node's total "
          f"{result['by_total_limit']}, stuck too long {result['by_slow_reader_timeout']}")


if __name__ == "__main__":
    main()
