"""Throughput and latency against offered load, as a table, JSON and an SVG plot.

    python -m tinychat.bench sweep                            # SQLite, one node
    python -m tinychat.bench sweep --mysql mysql://root@127.0.0.1:3306 --nodes 2
    python -m tinychat.bench sweep --rates 1000,5000,20000 --svg docs/bench/sqlite.svg

Runs `tinychat-bench load` once per offered rate (each in its own process,
against a fresh node and database), then once with the default window (the
most the node can do), and plots delivered messages/s and p50/p99 latency
against the offered rate.  The plot is plain SVG, so no plotting library is
needed.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

DEFAULT_RATES = "1000,2000,5000,10000,20000,30000"


def run_load(extra: list[str]) -> dict:
    """One `load` run in a child process (a Twisted reactor runs once per process)."""
    out = subprocess.run([sys.executable, "-m", "tinychat.bench", "load", "--json", *extra],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _ticks(top: float, count: int = 5) -> list[float]:
    step = 10 ** math.floor(math.log10(top / count)) if top > 0 else 1
    for factor in (1, 2, 5, 10):
        if top / (step * factor) <= count:
            step *= factor
            break
    return [step * i for i in range(int(top / step) + 1)]


def svg_plot(title: str, results: list[dict]) -> str:
    """Two panels: delivered vs offered messages/s, and p50/p99 latency (ms, log scale) vs offered."""
    width, height, pad = 860, 360, 60
    panel = (width - 3 * pad) / 2
    points = [(r["offered_rate"] or r["delivered_per_s"], r) for r in results]
    x_max = max(x for x, _ in points) * 1.05
    y_max = max(r["delivered_per_s"] for r in results) * 1.1
    lat_min = max(0.1, min(r["p50_ms"] for r in results) / 2)
    lat_max = max(r["p99_ms"] for r in results) * 2

    def px(x: float, left: float) -> float:
        return left + x / x_max * panel

    def py_lin(y: float) -> float:
        return height - pad - y / y_max * (height - 2 * pad)

    def py_log(y: float) -> float:
        span = math.log10(lat_max) - math.log10(lat_min)
        return height - pad - (math.log10(max(y, lat_min)) - math.log10(lat_min)) / span * (height - 2 * pad)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
    for left, label in ((pad, "delivered messages/s"), (2 * pad + panel, "latency ms (log)")):
        out.append(f'<line x1="{left}" y1="{height - pad}" x2="{left + panel}" y2="{height - pad}" stroke="black"/>')
        out.append(f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{height - pad}" stroke="black"/>')
        out.append(f'<text x="{left + panel / 2}" y="{height - 20}" text-anchor="middle">offered messages/s '
                   '(rightmost: window of 20 per sender)</text>')
        out.append(f'<text x="{left}" y="{pad - 10}">{label}</text>')
        for tick in _ticks(x_max):
            x = px(tick, left)
            out.append(f'<text x="{x}" y="{height - pad + 14}" text-anchor="middle">{tick / 1000:g}k</text>')
    left = pad
    for tick in _ticks(y_max):
        y = py_lin(tick)
        out.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{tick / 1000:g}k</text>')
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + panel}" y2="{y}" stroke="#ddd"/>')
    right = 2 * pad + panel
    decade = 10 ** math.floor(math.log10(lat_min))
    while decade <= lat_max:
        for tick in (decade, 2 * decade, 5 * decade):
            if lat_min <= tick <= lat_max:
                y = py_log(tick)
                out.append(f'<text x="{right - 4}" y="{y + 4}" text-anchor="end">{tick:g}</text>')
                out.append(f'<line x1="{right}" y1="{y}" x2="{right + panel}" y2="{y}" stroke="#ddd"/>')
        decade *= 10

    def polyline(coords: list[tuple[float, float]], colour: str) -> None:
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
        out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in coords)

    polyline([(px(x, left), py_lin(r["delivered_per_s"])) for x, r in points], "#1f77b4")
    polyline([(px(x, right), py_log(r["p50_ms"])) for x, r in points], "#2ca02c")
    polyline([(px(x, right), py_log(r["p99_ms"])) for x, r in points], "#d62728")
    out.append(f'<text x="{right + 10}" y="{pad + 10}" fill="#2ca02c">p50</text>')
    out.append(f'<text x="{right + 10}" y="{pad + 24}" fill="#d62728">p99</text>')
    out.append("</svg>")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tinychat-bench sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default=DEFAULT_RATES, help=f"offered rates, comma-separated (default {DEFAULT_RATES})")
    p.add_argument("--seconds", type=float, default=6, help="measurement time per point (default 6)")
    p.add_argument("--mysql", default=None, help="MySQL server URL; default SQLite")
    p.add_argument("--nodes", type=int, default=1, help="nodes (2 or more: every message crosses nodes)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--svg", type=Path, default=None, help="write the plot here")
    p.add_argument("--replot", type=Path, default=None, metavar="JSON",
                   help="only redraw the plot from a JSON file written by --json")
    args = p.parse_args(argv)
    if args.replot:
        results = json.loads(args.replot.read_text())
        title = f"TinyChat, {results[0]['backend']}, {results[0]['nodes']} node(s): {results[0]['pairs']} pairs"
        (args.svg or args.replot.with_suffix(".svg")).write_text(svg_plot(title, results) + "\n")
        return
    common = ["--seconds", str(args.seconds), "--nodes", str(args.nodes)]
    if args.mysql:
        common += ["--mysql", args.mysql]
    results = []
    for rate in [float(r) for r in args.rates.split(",") if r] + [0.0]:
        result = run_load(common + (["--rate", f"{rate:g}"] if rate else []))
        results.append(result)
        offered = f"{rate:>8,.0f}" if rate else "  window"
        print(f"offered {offered}/s  delivered {result['delivered_per_s']:>8,.0f}/s  "
              f"p50 {result['p50_ms']:>7.2f} ms  p99 {result['p99_ms']:>7.2f} ms  "
              f"node CPU {result['node_cpu_percent']}%  generator CPU {result['generator_cpu_percent']}%",
              flush=True)
    backend = results[0]["backend"]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.svg:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg_plot(f"TinyChat, {backend}, {args.nodes} node(s): 50 pairs", results) + "\n")


if __name__ == "__main__":
    main()
