"""Upload and download throughput of one large file on one node.

    python -m tinychat.bench files [--mib 50] [--mysql URL]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from twisted.internet import defer, reactor

from tinychat.bench.load import _run_reactor, database
from tinychat.bench.seed import PASSWORD, seed_pairs
from tinychat.client.client import TinyChatClient
from tinychat.testing.nodes import run_node


async def _run(endpoint: str, user: str, size: int) -> tuple[float, float]:
    client = TinyChatClient(endpoint, reactor=reactor)
    await client.connect()
    await client.login(user, PASSWORD)
    data = os.urandom(size)
    started = time.perf_counter()
    blob_id = await client.upload(data, name="bench.bin")
    upload = time.perf_counter() - started
    started = time.perf_counter()
    back = await client.download(blob_id)
    download = time.perf_counter() - started
    assert back == data
    await client.close()
    return upload, download


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tinychat-bench files", description=__doc__)
    p.add_argument("--mib", type=int, default=50, help="file size in MiB")
    p.add_argument("--mysql", default=None, help="MySQL server URL; default SQLite with files on disk")
    args = p.parse_args(argv)
    size = args.mib * 1024 * 1024
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinychat-bench-")))
        db = stack.enter_context(database(args.mysql, workdir))
        (pair,) = seed_pairs(db, 1)
        node = stack.enter_context(run_node(["--db", db, "--node-id", "files", "--rate-limit", "0"], workdir,
                                            echo_log=False))
        out: list[tuple[float, float]] = []
        _run_reactor(lambda: defer.Deferred.fromCoroutine(_run(node.endpoint, pair.sender, size))
                     .addCallback(out.append))
    upload, download = out[0]
    backend = "mysql (chunks in the database)" if args.mysql else "sqlite (files on disk)"
    print(f"{backend}: {args.mib} MiB upload {args.mib / upload:.1f} MiB/s ({upload:.2f} s), "
          f"download {args.mib / download:.1f} MiB/s ({download:.2f} s)")


if __name__ == "__main__":
    main()
