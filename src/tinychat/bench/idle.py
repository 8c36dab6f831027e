"""Idle connections: the node's memory per logged-in connection that does nothing.

    python -m tinychat.bench idle --connections 50000
    python -m tinychat.bench idle --connections 5000 --hold 30

Seeds `--connections` users (befriended in pairs, so every session has a
friend and a thread, as a real one would) with a resume token each, written
straight into a fresh SQLite database, and starts a node.  Then it opens
the connections from a few loopback source addresses (one address has only
~28,000 ephemeral ports), `--window` at a time, each sending HELLO and
LOGIN_WITH_TOKEN in one write and never reading again after LOGGED_IN.  It
reports the node's RSS before and after, the difference per connection, how
long connecting and logging in all of them took, and the CPU used meanwhile.
The generator keeps one file descriptor per open connection and nothing else.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tinychat.bench.common import (
    LISTEN,
    NODE_OPTIONS,
    LoginDriver,
    add_output_options,
    nofile_of,
    printed_as_json,
    raise_nofile,
    rss_kib,
    seed_tokens,
    sources,
)
from tinychat.bench.load import cpu_seconds
from tinychat.bench.seed import seed_pairs
from tinychat.protocol import LoginWithToken, encode
from tinychat.testing.nodes import run_node


@dataclass
class Result:
    connections: int
    sources: int
    window: int
    connect_seconds: float
    logins_per_s: float
    login_p50_ms: float
    login_p99_ms: float
    node_rss_before_mib: float
    node_rss_after_mib: float
    node_rss_held_mib: float
    kib_per_connection: float
    node_cpu_percent: float
    node_cpu_us_per_login: float
    generator_cpu_percent: float
    generator_rss_mib: float
    node_nofile: int
    dropped: int
    errors: dict[int, int]


def run(args: argparse.Namespace) -> Result:
    count = args.connections
    limit = raise_nofile(count + 10_000)  # the node inherits it
    if limit < count + 100:
        raise SystemExit(f"the open-file limit is {limit} and cannot be raised to {count + 10_000} here (the hard "
                         "limit needs CAP_SYS_RESOURCE: raise `ulimit -Hn` first), so the node cannot hold "
                         f"{count} connections; pass --connections {max(0, limit - 1000)} or fewer")
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinychat-bench-")))
        db = f"sqlite:///{workdir / 'bench.sqlite3'}"
        pairs = seed_pairs(db, (count + 1) // 2)
        uids = [uid for pair in pairs for uid in (pair.sender_uid, pair.receiver_uid)][:count]
        frames = [encode(LoginWithToken(request_id=2, token=token)) for token in seed_tokens(db, uids)]
        node = stack.enter_context(run_node(["--listen", LISTEN, "--db", db, "--node-id", "idle1", *NODE_OPTIONS,
                                             *args.node_arg], workdir, echo_log=False))
        pid = node.process.pid
        node_nofile = nofile_of(pid)
        if node_nofile < count + 100:
            raise SystemExit(f"the node may open only {node_nofile} files")
        time.sleep(0.5)
        before = rss_kib(pid)
        addresses = sources(count)
        next_index = iter(range(count))

        def login_frame(slot: int) -> bytes | None:
            index = next(next_index, None)
            return None if index is None else frames[index]

        driver = LoginDriver(node.host, node.port, addresses, login_frame, args.window, keep=True)
        driver.counts.measuring = True
        node_cpu, own_cpu, began = cpu_seconds(pid), cpu_seconds(), time.monotonic()
        try:
            driver.run()
            elapsed = time.monotonic() - began
            node_cpu = cpu_seconds(pid) - node_cpu
            own_cpu = cpu_seconds() - own_cpu
            frames.clear()
            time.sleep(args.settle)  # the node finishes the presence pushes of the last logins
            after = rss_kib(pid)
            if args.hold:
                time.sleep(args.hold)
            held = rss_kib(pid)
            if node.process.poll() is not None:
                raise RuntimeError(f"the node exited:\n{node.log_text()[-3000:]}")
            counts = driver.counts
            return Result(
                connections=len(driver.kept), sources=len(addresses), window=args.window,
                connect_seconds=round(elapsed, 2), logins_per_s=round(counts.logins / elapsed),
                login_p50_ms=round(counts.percentile_ms(50), 2), login_p99_ms=round(counts.percentile_ms(99), 2),
                node_rss_before_mib=round(before / 1024, 1), node_rss_after_mib=round(after / 1024, 1),
                node_rss_held_mib=round(held / 1024, 1),
                kib_per_connection=round((after - before) / max(1, len(driver.kept)), 2),
                node_cpu_percent=round(100 * node_cpu / elapsed),
                node_cpu_us_per_login=round(1e6 * node_cpu / max(1, counts.logins)),
                generator_cpu_percent=round(100 * own_cpu / elapsed),
                generator_rss_mib=round(rss_kib() / 1024, 1), node_nofile=node_nofile,
                dropped=counts.dropped, errors=counts.errors,
            )
        finally:
            driver.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinychat-bench idle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=50_000, help="idle logged-in connections (default 50,000)")
    p.add_argument("--window", type=int, default=256, help="connections being logged in at once (default 256)")
    p.add_argument("--settle", type=float, default=2, help="seconds to wait before the second RSS (default 2)")
    p.add_argument("--hold", type=float, default=0, help="seconds to hold them open, then RSS again (default 0)")
    add_output_options(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    r = run(args)
    if printed_as_json(args, r):
        return
    print(f"sqlite, 1 node: {r.connections:,} idle logged-in connections from {r.sources} source address(es), "
          f"window {r.window}, token logins")
    print(f"  connect+login  {r.connect_seconds:g} s  ({r.logins_per_s:,.0f}/s, p50 {r.login_p50_ms:.2f} ms, "
          f"p99 {r.login_p99_ms:.2f} ms)")
    print(f"  node RSS       {r.node_rss_before_mib:,.1f} MiB before, {r.node_rss_after_mib:,.1f} MiB after"
          + (f", {r.node_rss_held_mib:,.1f} MiB after holding" if args.hold else ""))
    print(f"  per connection {r.kib_per_connection:.2f} KiB")
    print(f"  CPU            node {r.node_cpu_percent}% ({r.node_cpu_us_per_login:,.0f} µs per login)   "
          f"generator {r.generator_cpu_percent}% "
          f"(generator RSS {r.generator_rss_mib:,.1f} MiB; node open-file limit {r.node_nofile:,})")
    if r.dropped or r.errors:
        print(f"  dropped {r.dropped}, errors {r.errors}")


if __name__ == "__main__":
    main()
