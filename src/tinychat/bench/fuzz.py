"""Protocol fuzzer: many hostile cases against a real node, each answer checked, crashes counted.

    python -m tinychat.bench fuzz                    # 20,000 cases, SQLite
    python -m tinychat.bench fuzz --cases 100000 --seed 7

The same checks as tests/test_fuzz.py, without Hypothesis and at volume: each
case opens a connection in one of the three states (before HELLO, after it,
logged in), sends one to three frames (valid ones of every message with random
field values, mutated, random bodies, random headers, oversized lengths,
truncated), half-closing one time in four, and compares every answer with
`tinychat.testing.hostile.predict`.  After every case two logged-in bystanders
must still exchange a ping and a message, and the node must be alive.  It
reports cases/s, how connections ended, protocol violations (with the first
few cases, in hex) and crashes.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from tinychat.protocol import REGISTRY, encode
from tinychat.testing.hostile import STATES, FuzzTarget, random_frame, random_instance
from tinychat.testing.nodes import run_node

MAX_FRAME = 64 * 1024
FAST_HASHING = ["--argon2-time-cost", "1", "--argon2-memory-kib", "1024", "--argon2-parallelism", "1"]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _failures_logged(lines: list[str]) -> list[str]:
    """Each unexpected failure the node logged (critical level, or an unhandled error), with its traceback."""
    found: list[str] = []
    current: list[str] | None = None
    for line in lines:
        if line[:4].isdigit():  # a new log event starts with its timestamp
            if current is not None:
                found.append("".join(current))
            current = [line] if ("#critical]" in line or "Unhandled error" in line) else None
        elif current is not None:
            current.append(line)
    if current is not None:
        found.append("".join(current))
    return found


def make_case(rng: random.Random) -> tuple[bytes, bool]:
    """One to three frames (half the time all valid), and whether to half-close after them."""
    count = rng.randint(1, 3)
    if rng.random() < 0.5:
        classes = [REGISTRY[i] for i in sorted(REGISTRY)]
        data = b"".join(encode(random_instance(rng, rng.choice(classes))) for _ in range(count))
    else:
        data = b"".join(random_frame(rng, MAX_FRAME) for _ in range(count))
    return data, rng.random() < 0.25


def run(cases: int, seed: int, show: int) -> dict:
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    violations: list[str] = []
    crashes = 0
    frames = 0
    with tempfile.TemporaryDirectory(prefix="tinychat-fuzz-") as tmp:
        workdir = Path(tmp)
        args = ["--node-id", "fuzz", "--db", f"sqlite:///{workdir / 'fuzz.sqlite3'}", "--max-frame", str(MAX_FRAME),
                "--idle-timeout", "600", "--heartbeat-interval", "300", "--rate-limit", "100000", *FAST_HASHING]
        with run_node(args, workdir, echo_log=False) as node:
            target = FuzzTarget(node)
            rss_before = rss_kib(node.process.pid)
            began = time.monotonic()
            done = 0
            for done in range(1, cases + 1):
                state = STATES[done % len(STATES)]
                data, eof = make_case(rng)
                try:
                    prediction, problems = target.attack(state, data, eof, MAX_FRAME)
                except Exception as e:  # a hang or a reset where an answer was owed
                    prediction, problems = None, [f"{type(e).__name__}: {e}"]
                if prediction is not None:
                    frames += prediction.frames
                    if prediction.closing is not None:
                        outcomes["closed: " + "/".join(sorted(c.name for c in prediction.closing.codes))] += 1
                    elif eof:
                        outcomes["half-closed by the client"] += 1
                    else:
                        outcomes["answered, still open"] += 1
                if problems:
                    violations.append(f"{state} {data.hex()} eof={eof}: {'; '.join(problems)}")
                try:
                    target.still_serving()
                except Exception as e:  # the bystanders' sessions are unusable from here on: stop
                    crashes += 1
                    violations.append(f"after {state} {data.hex()}: node no longer serving: {e}")
                    break
            elapsed = time.monotonic() - began
            rss_after = rss_kib(node.process.pid) if node.process.poll() is None else 0
            alive = node.process.poll() is None
            critical = _failures_logged(node.lines)
            target.close()
    return {
        "cases": done, "frames": frames, "seconds": round(elapsed, 1), "cases_per_s": round(done / elapsed),
        "outcomes": dict(outcomes.most_common()), "violations": len(violations),
        "first_violations": violations[:show], "crashes": crashes, "node_alive": alive,
        "unexpected_failures_logged": len(critical), "first_failures_logged": critical[:show],
        "rss_kib_before": rss_before, "rss_kib_after": rss_after,
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tinychat-bench fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20000, help="cases to run (default 20,000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--show", type=int, default=5, help="violations to print in full (default 5)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    result = run(args.cases, seed, args.show)
    if args.json:
        print(json.dumps(result))
        return
    print(f"fuzz: {result['cases']:,} cases ({result['frames']:,} frames) in {result['seconds']} s, "
          f"{result['cases_per_s']:,}/s, seed {seed}")
    for outcome, count in result["outcomes"].items():
        print(f"  {outcome:<45} {count:>8,}")
    print(f"  protocol violations  {result['violations']}")
    print(f"  crashes              {result['crashes']} (node alive at the end: {result['node_alive']})")
    print(f"  unexpected failures in the node log: {result['unexpected_failures_logged']}")
    print(f"  node RSS             {result['rss_kib_before'] / 1024:.1f} MiB before, "
          f"{result['rss_kib_after'] / 1024:.1f} MiB after")
    for line in result["first_violations"]:
        print("  !", line[:2000])
    for text in result["first_failures_logged"]:
        print("  node log:", text[:4000])


if __name__ == "__main__":
    main()
