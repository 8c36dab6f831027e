"""History page latency at different thread depths.

    python -m tinychat.bench history [--depth 1000 --depth 1000000] [--mysql URL]

For each depth it seeds one thread with that many messages, starts a node,
logs in as one participant and asks for pages of 50 messages before random
cursors spread over the whole thread, one request at a time, and reports
p50/p99 of the round trip.  A cursor walk on the (thread_id, seq) key should
cost the same at any depth.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from twisted.internet import defer, reactor

from tinychat.bench.load import _run_reactor, database
from tinychat.bench.seed import PASSWORD, seed_history, seed_pairs
from tinychat.client.client import TinyChatClient
from tinychat.testing.nodes import run_node


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def _pages(endpoint: str, name: str, thread_id: int, depth: int, requests: int, limit: int) -> list[float]:
    client = TinyChatClient(endpoint, reactor=reactor)
    await client.connect()
    await client.login(name, PASSWORD)
    rng = random.Random(7)
    for _ in range(50):  # warm up
        await client.history(thread_id, before_seq=rng.randint(limit + 1, depth + 1), limit=limit)
    samples = []
    for _ in range(requests):
        cursor = rng.randint(limit + 1, depth + 1)
        started = time.perf_counter()
        page = await client.history(thread_id, before_seq=cursor, limit=limit)
        samples.append((time.perf_counter() - started) * 1000)
        assert len(page.messages) == limit and page.messages[-1].seq == cursor - 1
    await client.close()
    return samples


def measure(depths: list[int], mysql: str | None, requests: int, limit: int) -> list[dict]:
    """Seed and start one node per depth first, then measure them all in one reactor run."""
    with ExitStack() as stack:
        targets = []
        for depth in depths:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinychat-bench-")))
            db = stack.enter_context(database(mysql, tmp))
            (pair,) = seed_pairs(db, 1)
            seed_history(db, pair, depth)
            node = stack.enter_context(run_node(["--db", db, "--node-id", "bench", "--rate-limit", "0"], tmp,
                                                echo_log=False))
            targets.append((depth, node, pair))
        out: list[list[float]] = []

        async def all_depths() -> None:
            for depth, node, pair in targets:
                out.append(await _pages(node.endpoint, pair.sender, pair.thread_id, depth, requests, limit))

        _run_reactor(lambda: defer.Deferred.fromCoroutine(all_depths()))
    return [{"backend": "mysql" if mysql else "sqlite", "depth": depth, "limit": limit, "requests": requests,
             "p50_ms": round(_percentile(samples, 50), 3), "p99_ms": round(_percentile(samples, 99), 3)}
            for (depth, _, _), samples in zip(targets, out, strict=True)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tinychat-bench history", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, action="append", help="messages in the thread (repeatable)")
    p.add_argument("--requests", type=int, default=2000, help="pages to fetch per depth")
    p.add_argument("--limit", type=int, default=50, help="messages per page")
    p.add_argument("--mysql", default=None, help="MySQL server URL; default SQLite")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    for result in measure(args.depth or [1000, 1_000_000], args.mysql, args.requests, args.limit):
        depth = result["depth"]
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['backend']}: depth {depth:>9,}  page of {args.limit}: "
                  f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms")


if __name__ == "__main__":
    main()
