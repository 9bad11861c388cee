#!/usr/bin/env python3
"""Plot Gb/s against packet size for each sender from the throughput benchmark.

Reads the runs that `cargo bench --features sink --bench throughput` writes
(target/throughput.csv by default) and writes an SVG (bench/throughput.svg
by default): the median Gb/s of UDP payload per sender and packet size, one
line per sender and heap size measured at several packet sizes, solid for
heaps of 1 MiB or more and dashed for smaller ones. It
also prints the medians as a Markdown table for README.md. Only the Python
standard library is needed.

    scripts/plot-throughput.py [CSV] [SVG]
"""

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {
    "spead-xdp AF_XDP": "#d62728",
    "spead-xdp AF_XDP, payload in the UMEM": "#e377c2",
    "spead-xdp UDP": "#1f77b4",
    "spead2_send.py": "#2ca02c",
    "raw AF_XDP ring (ceiling)": "#ff9896",
    "raw UDP sendmmsg/GSO (ceiling)": "#aec7e8",
    "spead-xdp AF_XDP, 2 queues, 2 cores": "#9467bd",
    "spead-xdp UDP, 2 workers, 2 cores": "#8c564b",
}
WIDTH, HEIGHT = 940, 480
LEFT, RIGHT, TOP, BOTTOM = 70, 350, 40, 60


def read_runs(path):
    """Runs keyed by (sender, heap size, packet size)."""
    runs = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["sender"], int(row["heap_size"]), int(row["packet"]))
            runs[key].append({k: float(row[k]) for k in ("packets_per_s", "gbps", "cpu_s_per_gb")})
    return runs


def load(runs):
    """Median Gb/s keyed by (sender, heap size) then packet size, for the
    heap sizes measured at more than one packet size (a line needs two)."""
    lines = defaultdict(dict)
    for (sender, heap, packet), values in runs.items():
        lines[(sender, heap)][packet] = statistics.median(v["gbps"] for v in values)
    return {key: points for key, points in lines.items() if len(points) > 1}


def heap_name(heap):
    return f"{heap >> 20} MiB" if heap >= 1 << 20 else f"{heap >> 10} KiB"


def markdown(runs):
    """One row per workload: median packets/s (k), Gb/s and CPU s per GB of each sender."""
    senders = list(dict.fromkeys(sender for sender, _, _ in runs))
    workloads = sorted({(heap, packet) for _, heap, packet in runs}, key=lambda w: (-w[0], w[1]))
    out = ["| heaps, packets | " + " | ".join(senders) + " |", "| --- |" + " --- |" * len(senders)]
    for heap, packet in workloads:
        cells = []
        for sender in senders:
            values = runs[(sender, heap, packet)]
            med = {k: statistics.median(v[k] for v in values) for k in values[0]}
            cells.append(f"{med['packets_per_s'] / 1e3:.0f}k, {med['gbps']:.2f} Gb/s, {med['cpu_s_per_gb']:.2f} s/GB")
        out.append(f"| {heap_name(heap)}, {packet} B | " + " | ".join(cells) + " |")
    return "\n".join(out)


def nice_ceiling(value):
    """The smallest of 1, 2, 5 times a power of ten at or above value."""
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def svg(lines):
    packets = sorted({p for points in lines.values() for p in points})
    top = nice_ceiling(max(v for points in lines.values() for v in points.values()) * 1.05)
    x0, x1 = LEFT, WIDTH - RIGHT
    y0, y1 = HEIGHT - BOTTOM, TOP
    lo, hi = min(packets), max(packets)

    def x(p):
        return x0 + (p - lo) / max(hi - lo, 1) * (x1 - x0)

    def y(v):
        return y0 - v / top * (y0 - y1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2 - 60}" y="22" font-size="14" text-anchor="middle">'
        "Unpaced sending on the veth harness (MTU 9000), medians</text>",
    ]
    for k in range(6):
        v = top * k / 5
        out.append(f'<line x1="{x0}" y1="{y(v):.1f}" x2="{x1}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for p in packets:
        out.append(f'<line x1="{x(p):.1f}" y1="{y0}" x2="{x(p):.1f}" y2="{y0 + 5}" stroke="black"/>')
        out.append(f'<text x="{x(p):.1f}" y="{y0 + 20}" text-anchor="middle">{p}</text>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>')
    out.append(f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 15}" text-anchor="middle">'
               "SPEAD packet size (bytes)</text>")
    out.append(f'<text x="18" y="{(y0 + y1) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {(y0 + y1) / 2})">Gb/s of UDP payload</text>')
    legend_y = TOP + 10
    for (sender, heap), points in sorted(lines.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        colour = COLOURS.get(sender, "black")
        dash = "" if heap >= 1 << 20 else ' stroke-dasharray="6 4"'
        coords = " ".join(f"{x(p):.1f},{y(v):.1f}" for p, v in sorted(points.items()))
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for p, v in points.items():
            out.append(f'<circle cx="{x(p):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        size = heap_name(heap)
        lx = x1 + 15
        out.append(f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 25}" y2="{legend_y}" '
                   f'stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 30}" y="{legend_y + 4}" font-size="11">{sender}, {size}</text>')
        legend_y += 18
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "throughput.csv"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "bench" / "throughput.svg"
    if not source.exists():
        sys.exit(f"{source}: no runs; run `cargo bench --features sink --bench throughput` first")
    runs = read_runs(source)
    target.write_text(svg(load(runs)))
    print(markdown(runs))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
