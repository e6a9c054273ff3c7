"""Idle aRPC connections: what they cost the server, and whether a legit client still gets in.

    python benchmarks/bench_idle_conns.py [--idle 2000] [--max-conns N] [--server-path DIR]

The server runs in its own process (`--server-path`: the checkout whose code it runs, e.g. an
older revision to compare against). The benchmark opens `--idle` TCP connections that never
say hello and times a legit client's connect + handshake + one mutation.
The server's CPU time tells when it has taken them all (`idle / that time` is the rate);
a legit client is timed during the flood, once they are all held, and right after they close.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machines.rpc import connect  # noqa: E402

SERVER = """
import sys, trio
from machines import Machine, State
from machines.rpc import serve

async def main():
    opts = {"max_conns": int(sys.argv[1])} if sys.argv[1] != "0" else {}
    m = Machine({"Exception": State(multi=True), "A": State(multi=True)}, id="src")
    async with serve(m, "127.0.0.1:0", **opts) as mux:
        print(mux.addr, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def legit(addr: str, timeout: float) -> float:
    start = time.perf_counter()
    with trio.fail_after(timeout):
        async with connect(
            addr, id=f"legit-{time.monotonic_ns()}", connect_timeout=timeout, ready_timeout=timeout
        ) as c:
            await c.wait_connected(timeout)
            await c.netmach.add("A")
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, quiet: float = 0.6) -> float:
    """Until the process has used no CPU for `quiet` seconds; returns when it last did."""
    last_cpu, last_change = cpu_seconds(pid), time.perf_counter()
    while time.perf_counter() - last_change < quiet:
        time.sleep(0.1)
        cpu = cpu_seconds(pid)
        if cpu - last_cpu > 0.02:
            last_cpu, last_change = cpu, time.perf_counter()
    return last_change


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--max-conns", type=int, default=0, help="0: the server's default")
    ap.add_argument("--server-path", type=Path, default=ROOT)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.server_path.resolve()))
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.max_conns)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=args.server_path,  # `-c` puts the working directory first on sys.path
    )
    try:
        addr = server.stdout.readline().strip()
        host, port = addr.rsplit(":", 1)
        warm = trio.run(legit, addr, args.timeout)
        wait_quiet(server.pid)
        cpu0, start = cpu_seconds(server.pid), time.perf_counter()
        idle = [socket.create_connection((host, int(port))) for _ in range(args.idle)]
        opened = time.perf_counter() - start
        during = trio.run(legit, addr, args.timeout)
        absorbed = wait_quiet(server.pid) - start
        cpu = cpu_seconds(server.pid) - cpu0
        held = trio.run(legit, addr, args.timeout)
        for s in idle:
            s.close()
        after = trio.run(legit, addr, args.timeout)
    finally:
        server.kill()
        server.wait()
    print(f"server code: {args.server_path}; max_conns: {args.max_conns or 'default'}")
    print(f"legit client, no idle connections: {warm * 1000:.1f} ms")
    print(f"{args.idle} idle connections opened in {opened:.2f} s")
    print(f"legit client during the flood: {during * 1000:.1f} ms")
    print(
        f"server busy {absorbed:.2f} s ({cpu:.2f} s CPU) taking them: "
        f"{args.idle / absorbed:.0f} idle connections accepted per second"
    )
    print(f"legit client while {args.idle} idle connections are held: {held * 1000:.1f} ms")
    print(f"legit client right after they closed: {after * 1000:.1f} ms")


if __name__ == "__main__":
    main()
