"""Logins per second of one node: resume-token logins, then password logins.

    python -m tinychat.bench logins --seconds 5
    python -m tinychat.bench logins --reuse                    # LOGOUT + login again on one connection
    python -m tinychat.bench logins --argon2 1,1024,1          # password logins with a cheap hash

Seeds `--users` users (befriended in pairs, so every login also pushes
presence to a friend) with a resume token each into a fresh SQLite database,
hashes their password with the `--argon2` parameters (by default the node's
own defaults, which are what a password check costs: argon2 verifies with the
parameters stored in the hash), and starts a node.  `--concurrency` clients
then log in over and over, each with users of its own so that no login kicks
another one's session: by default each login is a fresh connection (HELLO and
the login request in one write, wait for LOGGED_IN, close); with `--reuse`,
LOGOUT and log in again on the same connection.  It reports logins/s, login
latency (connect to LOGGED_IN, or login request to LOGGED_IN with --reuse)
and the CPU of the node and of the generator over each measurement.
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
    printed_as_json,
    seed_tokens,
    set_password_hashes,
)
from tinychat.bench.load import cpu_seconds
from tinychat.bench.seed import PASSWORD, seed_pairs
from tinychat.protocol import Login, LoginWithToken, encode
from tinychat.testing.nodes import NodeProcess, run_node

# Each login's connection lingers in TIME_WAIT for 60 s, and connect() slows down as a source address's
# ephemeral ports fill up with them: spread the logins over a few source addresses.
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]


@dataclass
class Phase:
    kind: str
    concurrency: int
    seconds: float
    logins: int
    logins_per_s: float
    p50_ms: float
    p99_ms: float
    node_cpu_percent: float
    node_cpu_us_per_login: float  # steadier than logins/s on a shared machine
    generator_cpu_percent: float
    dropped: int
    errors: dict[int, int]


@dataclass
class Result:
    users: int
    connections: str
    argon2: str
    phases: list[Phase]


def _argon2(text: str) -> tuple[int, int, int]:
    time_cost, memory_kib, parallelism = (int(part) for part in text.split(","))
    return time_cost, memory_kib, parallelism


def _measure(node: NodeProcess, kind: str, frames: list[bytes], args: argparse.Namespace, seconds: float,
             concurrency: int) -> Phase:
    """Log in over and over for `warmup` + `seconds`; slot i cycles through users i, i+C, i+2C..."""
    turns = [0] * concurrency
    per_slot = len(frames) // concurrency

    def login_frame(slot: int) -> bytes:
        turn = turns[slot]
        turns[slot] = turn + 1
        return frames[slot + (turn % per_slot) * concurrency]

    driver = LoginDriver(node.host, node.port, SOURCES, login_frame, concurrency, reuse=args.reuse)
    pid = node.process.pid
    driver.run(time.monotonic() + args.warmup)
    counts = driver.counts
    counts.measuring = True
    node_cpu, own_cpu, began = cpu_seconds(pid), cpu_seconds(), time.monotonic()
    driver.run(began + seconds)
    elapsed = time.monotonic() - began
    node_cpu = cpu_seconds(pid) - node_cpu
    own_cpu = cpu_seconds() - own_cpu
    driver.close()
    return Phase(kind=kind, concurrency=concurrency, seconds=round(elapsed, 2), logins=counts.logins,
                 logins_per_s=round(counts.logins / elapsed), p50_ms=round(counts.percentile_ms(50), 2),
                 p99_ms=round(counts.percentile_ms(99), 2), node_cpu_percent=round(100 * node_cpu / elapsed),
                 node_cpu_us_per_login=round(1e6 * node_cpu / max(1, counts.logins)),
                 generator_cpu_percent=round(100 * own_cpu / elapsed), dropped=counts.dropped,
                 errors=counts.errors)


def run(args: argparse.Namespace) -> Result:
    time_cost, memory_kib, parallelism = _argon2(args.argon2)
    if args.users < args.concurrency:
        raise SystemExit("--users must be at least --concurrency")
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinychat-bench-")))
        db = f"sqlite:///{workdir / 'bench.sqlite3'}"
        pairs = seed_pairs(db, (args.users + 1) // 2)
        users = [user for pair in pairs for user in ((pair.sender_uid, pair.sender), (pair.receiver_uid,
                                                                                      pair.receiver))]
        tokens = seed_tokens(db, [uid for uid, _ in users])
        set_password_hashes(db, PASSWORD, time_cost, memory_kib, parallelism)
        node = stack.enter_context(run_node(
            ["--listen", LISTEN, "--db", db, "--node-id", "logins1", *NODE_OPTIONS,
             "--argon2-time-cost", str(time_cost), "--argon2-memory-kib", str(memory_kib),
             "--argon2-parallelism", str(parallelism), *args.node_arg], workdir, echo_log=False))
        phases = []
        if args.seconds > 0:
            frames = [encode(LoginWithToken(request_id=2, token=token)) for token in tokens]
            phases.append(_measure(node, "token", frames, args, args.seconds, args.concurrency))
        password_seconds = args.seconds if args.password_seconds is None else args.password_seconds
        if password_seconds > 0:
            frames = [encode(Login(request_id=2, identifier=name, password=PASSWORD, totp_code=""))
                      for _, name in users]
            phases.append(_measure(node, "password", frames, args, password_seconds,
                                  args.password_concurrency))
        if node.process.poll() is not None:
            raise RuntimeError(f"the node exited:\n{node.log_text()[-3000:]}")
        return Result(users=len(users),
                      connections="reused (LOGOUT between logins)" if args.reuse else "fresh per login",
                      argon2=f"argon2id t={time_cost} m={memory_kib} KiB p={parallelism}", phases=phases)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinychat-bench logins", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5, help="measurement time of token logins (default 5; 0: skip)")
    p.add_argument("--password-seconds", type=float, default=None,
                   help="measurement time of password logins (default: --seconds; 0: skip)")
    p.add_argument("--warmup", type=float, default=1, help="seconds before each measurement (default 1)")
    p.add_argument("--users", type=int, default=2000, help="seeded users (default 2,000)")
    p.add_argument("--concurrency", type=int, default=32, help="clients logging in at once (default 32)")
    p.add_argument("--password-concurrency", type=int, default=4,
                   help="clients logging in with a password at once (default 4: the node hashes on 2 threads, "
                        "more would only queue)")
    p.add_argument("--reuse", action="store_true", help="LOGOUT and log in again on one connection")
    p.add_argument("--argon2", default="3,65536,4",
                   help="argon2id time_cost,memory_kib,parallelism of the password hashes (default 3,65536,4, "
                        "the node's defaults)")
    add_output_options(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    r = run(args)
    if printed_as_json(args, r):
        return
    print(f"sqlite, 1 node: {r.users:,} users, connections {r.connections}")
    for phase in r.phases:
        what = f"{phase.kind} logins" + (f" ({r.argon2})" if phase.kind == "password" else "")
        print(f"  {what}, {phase.concurrency} clients at once: {phase.logins_per_s:,.0f}/s over {phase.seconds:g} s")
        print(f"    latency  p50 {phase.p50_ms:.2f} ms   p99 {phase.p99_ms:.2f} ms")
        print(f"    CPU      node {phase.node_cpu_percent}% ({phase.node_cpu_us_per_login:,.0f} µs per login)   "
              f"generator {phase.generator_cpu_percent}%")
        if phase.dropped or phase.errors:
            print(f"    dropped {phase.dropped}, errors {phase.errors}")


if __name__ == "__main__":
    main()
