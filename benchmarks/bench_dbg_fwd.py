"""What ``--fwd-data`` costs the collector: ingest rate of 100k transitions with and without
forwarding them to a second debugger (the peer is the same collector without forwarding).

The mirror runs in a process of its own (as a second ``am dbg`` would) and reports when it
holds every transition; the stream is built beforehand by a real machine through the real
tracer and sent over loopback TCP in one go.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from dbg.collector import Collector, serve_collector  # noqa: E402
from dbg.forward import Forwarder  # noqa: E402
from machines import Machine, State  # noqa: E402
from machines.telemetry import DbgTracer, Outbox  # noqa: E402

N = 100_000
RUNS = 5

MIRROR = """
import sys, trio
from dbg.collector import Collector, serve_collector
N = int(sys.argv[1])
async def main():
    c = Collector()
    async with trio.open_nursery() as n:
        port, _ = await n.start(lambda task_status: serve_collector(
            c, "127.0.0.1", 0, task_status=task_status))
        print(port, flush=True)
        target = N
        while True:  # one line per run's N transitions
            await c.wait_until(lambda c: c.total_txs >= target)
            print("done", flush=True)
            target += N
trio.run(main)
"""


def _payload() -> bytes:
    box = Outbox(limit=10**7)
    m = Machine({"A": State(), "B": State()}, id="bench-fwd")
    DbgTracer(box).attach(m)
    for _ in range(N // 2):
        m.add("A")
        m.remove("A")
    return box.take()


async def _run(payload: bytes, mirror: subprocess.Popen | None, port: int) -> tuple[float, float]:
    main = Collector()
    async with trio.open_nursery() as n:
        if mirror is not None:
            main.tap = Forwarder([f"127.0.0.1:{port}"])
            await n.start(main.tap.run)
        p, _ = await n.start(
            lambda task_status: serve_collector(main, "127.0.0.1", 0, task_status=task_status)
        )
        stream = await trio.open_tcp_stream("127.0.0.1", p)
        t = time.perf_counter()
        await stream.send_all(payload)
        await main.wait_until(lambda c: c.total_txs >= N)
        ingest = time.perf_counter() - t
        mirrored = 0.0
        if mirror is not None:
            line = await trio.to_thread.run_sync(mirror.stdout.readline)
            assert line.strip() == "done", line
            mirrored = time.perf_counter() - t
            assert main.tap.dropped == 0
        await stream.aclose()
        n.cancel_scope.cancel()
    return ingest, mirrored


def main() -> None:
    payload = _payload()
    mirror = subprocess.Popen(
        [sys.executable, "-c", MIRROR, str(N)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )  # fmt: skip
    try:
        port = int(mirror.stdout.readline())
        plain, fwd, mirrored = [], [], []
        for _ in range(RUNS):  # interleaved, so that load on the machine hits both alike
            plain.append(trio.run(_run, payload, None, port)[0])
            a, b = trio.run(_run, payload, mirror, port)
            fwd.append(a)
            mirrored.append(b)
    finally:
        mirror.kill()
    p, f, m = (statistics.median(x) for x in (plain, fwd, mirrored))
    print(f"collector alone:           {N / p:10,.0f} tx/s ingested (median of {RUNS})")
    print(f"collector with --fwd-data: {N / f:10,.0f} tx/s ingested ({f / p:.2f}x the time)")
    print(f"mirror holds everything:   {N / m:10,.0f} tx/s end to end")


if __name__ == "__main__":
    main()
