"""Benchmark: decoding and rendering the Go debugger's dump (107 machines, 7605 transitions).

Measures each stage of `am vis render-dump` and compares the hand-written gob decoder with
the peer in the same run: this project's own dump format (brotli + CBOR through cbor2's
C extension) holding the very same machines. Prints medians and ratios. Not a test.

    python benchmarks/bench_vis.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import brotli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbg.dump import decode_dump, encode_dump  # noqa: E402
from dbg.gob import loads_all  # noqa: E402
from vis.d2 import render_d2  # noqa: E402
from vis.graph import Graph  # noqa: E402
from vis.presets import preset_map, preset_single  # noqa: E402
from vis.render import render_svg  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "go-am-dbg-sim.gob.br"


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def row(name: str, seconds: float, extra: str = "") -> None:
    print(f"  {name:<46} {seconds * 1000:9.1f} ms  {extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    n = ap.parse_args().repeat

    data = FIXTURE.read_bytes()
    raw = brotli.decompress(data)
    print(f"fixture: {len(data) / 1e3:.0f} kB brotli, {len(raw) / 1e6:.2f} MB gob")

    print("decode")
    t_br, _ = timed(lambda: brotli.decompress(data), n)
    row("brotli decompress", t_br)
    t_gob, _ = timed(lambda: loads_all(raw), n)
    row("gob decode (generic values)", t_gob, f"{len(raw) / t_gob / 1e6:.1f} MB/s")
    t_go, machines = timed(lambda: decode_dump(data, "fixture"), n)
    ntx = sum(len(m.txs) for m in machines)
    row("Go dump -> model (brotli + gob + convert)", t_go, f"{ntx / t_go:,.0f} tx/s")

    ours = encode_dump(machines)
    t_ours, again = timed(lambda: decode_dump(ours, "ours"), n)
    assert again == machines
    row("peer: our dump -> model (brotli + cbor2)", t_ours, f"{len(ours) / 1e3:.0f} kB file")
    t_enc, _ = timed(lambda: encode_dump(machines), n)
    row("write our dump (model -> cbor2 -> brotli 6)", t_enc)
    print(f"  ratio Go-dump read / our-dump read: {t_go / t_ours:.2f}x")

    print("render")
    everyone = sorted(m.id for m in machines)
    single, all_machs, topo = preset_single(), preset_single(), preset_map()
    single.machs, all_machs.machs, topo.machs = ["sim-p11"], everyone, everyone
    t_graph, graph = timed(lambda: Graph.from_dump(machines), n)
    row("graph model (replay of every tx)", t_graph)
    for label, opts in (("single (sim-p11)", single), ("all 107 machines", all_machs)):
        t_d2, src = timed(lambda o=opts: render_d2(graph, o), n)
        row(f"D2 source, {label}", t_d2, f"{len(src) / 1e3:.0f} kB")
        t_svg, svg = timed(lambda s=src, o=opts: render_svg(s, elk=o.elk), max(1, n // 2))
        row(f"d2 binary -> SVG (elk), {label}", t_svg, f"{len(svg) / 1e3:.0f} kB")
        print(f"  ratio d2 layout / our D2 generation: {t_svg / max(t_d2, 1e-9):.0f}x")
    src = render_d2(graph, topo)
    t_map, _ = timed(lambda: render_svg(src, elk=topo.elk), max(1, n // 2))
    row("d2 binary -> SVG (elk), --map", t_map)

    print("end to end (am vis render-dump, new process)")
    with tempfile.TemporaryDirectory() as tmp:
        for args in (["mach://sim-p11"], []):
            cmd = [sys.executable, "-m", "cli.main", "vis", "render-dump", str(FIXTURE), *args]
            t_cli, _ = timed(
                lambda c=cmd: subprocess.run(c, cwd=tmp, check=True, capture_output=True), 1
            )
            row(" ".join(["render-dump", *args]) or "render-dump", t_cli)


if __name__ == "__main__":
    main()
