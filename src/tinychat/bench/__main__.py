"""`python -m tinychat.bench` / `tinychat-bench`: run one of the benchmarks.

    tinychat-bench codec [--seconds 2]
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "codec": "tinychat.bench.codec",
    "load": "tinychat.bench.load",
    "history": "tinychat.bench.history",
    "group": "tinychat.bench.group",
    "files": "tinychat.bench.files",
    "fuzz": "tinychat.bench.fuzz",
    "flood": "tinychat.bench.flood",
    "stalled": "tinychat.bench.stalled",
    "idle": "tinychat.bench.idle",
    "logins": "tinychat.bench.logins",
    "sweep": "tinychat.bench.sweep",
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHMARKS:
        print(__doc__.strip())
        print("benchmarks:", ", ".join(BENCHMARKS))
        raise SystemExit(2)
    importlib.import_module(BENCHMARKS[args[0]]).main(args[1:])


if __name__ == "__main__":
    main()
