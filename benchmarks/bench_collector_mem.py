"""The debugger collector's memory: RSS per 100k transitions kept, and with --max-mem.

    python benchmarks/bench_collector_mem.py [--txs 1000000] [--max-mem-mb 0] [--code-path DIR]

Telemetry comes from a real machine (a relation-heavy mutation with handlers, logs at the ops
level, as `AM_LOG=2` sends it), encoded once into frames; every round decodes the frames anew
(fresh objects, as off the wire) and ingests them. The collector runs in a fresh process of
the code at `--code-path` (e.g. an older revision, to compare).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time
from functools import partial
from machines import Machine, State, telemetry
from machines.telemetry import FrameDecoder, Outbox
from dbg.collector import Collector

total, max_mem = int(sys.argv[1]), int(sys.argv[2])

def rss():
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * 4096

class H:
    def BState(self, e): e.machine.add("C")
    def CState(self, e): pass

schema = {"A": State(remove=["B"]), "B": State(add=["C"], remove=["A"]), "C": State(after=["B"]),
          "D": State(), "E": State(multi=True), "F": State(), "G": State(), "H": State()}
box = Outbox(limit=10**7)
m = Machine(schema, id="producer", handlers=H(), log_level=2, logger=lambda lv, text: None)
telemetry.DbgTracer(box).attach(m)
for i in range(50_000):
    m.add("A" if i % 2 else "B", {"i": i})
frames = box.take()
opts = {"max_mem": max_mem} if max_mem else {}
c = Collector(**opts)
base = rss()
ingested, report = 0, 100_000
print(f"rss at start: {base / 2**20:.0f} MB", flush=True)
t = time.perf_counter()
try:
    FrameDecoder(packed=True)  # as am dbg decodes: groups kept packed
    decoder = partial(FrameDecoder, packed=True)
except TypeError:  # older code (--code-path): arrays only
    decoder = FrameDecoder
while ingested < total:
    for kind, msg in decoder().feed(frames):
        c.ingest("conn-1", kind, msg)
        if kind == "txs":
            ingested += len(msg)
        elif kind == "txp":
            ingested += sum(len(g.rows) // g.cols for g in msg)
    if ingested >= report or ingested >= total:
        report += 100_000
        kept = sum(len(r) for r in c.machines.values())
        per = (rss() - base) / max(kept, 1) * 100_000 / 2**20
        print(f"{ingested:>9} ingested, {kept:>9} kept: rss {rss() / 2**20:6.0f} MB, "
              f"{per:5.1f} MB per 100k kept", flush=True)
took = time.perf_counter() - t
print(f"ingest: {ingested / took:,.0f} transitions/s", flush=True)
t = time.perf_counter()
n = sum(len(d.txs) for d in c.dumps())
print(f"parse for the dump: {n / (time.perf_counter() - t):,.0f} transitions/s", flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--txs", type=int, default=1_000_000)
    ap.add_argument("--max-mem-mb", type=int, default=0)
    ap.add_argument("--code-path", type=Path, default=ROOT)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.code_path.resolve()))
    print(f"collector code: {args.code_path}; --max-mem {args.max_mem_mb or 'off'} MB", flush=True)
    subprocess.run(
        [sys.executable, "-c", CHILD, str(args.txs), str(args.max_mem_mb << 20)],
        env=env,
        cwd=args.code_path,  # `-c` puts the working directory first on sys.path
        check=True,
    )


if __name__ == "__main__":
    main()
