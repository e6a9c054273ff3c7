"""Relay benchmark: throughput and 64-byte ping-pong latency on loopback.

Three paths to the same TCP echo server, measured in one run with the same client:

- ``am relay``: WebSocket client -> relay ``/dial/`` -> TCP echo server;
- ``websockify`` (PyPI, the classic Python relay): WebSocket client -> websockify -> echo;
- direct TCP: client -> echo server (the floor).

Each server runs in its own process (as in real use); the client is `websockets` (asyncio)
without compression, which neither relay needs for binary data. Throughput sends a payload as
64 KiB messages while reading the echo back, so it counts both directions through the relay.
Not a test: it prints figures and ratios. Usage: ``python benchmarks/bench_relay.py [--mib N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
MSG = 1 << 16

ECHO_SERVER = r"""
import socket, sys, threading
def serve(conn):
    buf = bytearray(1 << 18)
    view = memoryview(buf)
    with conn:
        while n := conn.recv_into(buf):
            conn.sendall(view[:n])
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@contextmanager
def process(args: list[str], **kwargs):
    proc = subprocess.Popen(args, cwd=REPO, **kwargs)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def ws_throughput(url: str, total: int) -> float:
    payload = os.urandom(MSG)
    async with connect(url, compression=None, max_size=None) as ws:

        async def sender() -> None:
            for _ in range(total // MSG):
                await ws.send(payload)

        start = time.perf_counter()
        task = asyncio.create_task(sender())
        got = 0
        while got < total:
            got += len(await ws.recv())
        await task
        return total / (time.perf_counter() - start)


async def ws_latency(url: str, rounds: int) -> list[float]:
    ping = os.urandom(64)
    async with connect(url, compression=None) as ws:
        samples = []
        for i in range(rounds + 200):
            start = time.perf_counter()
            await ws.send(ping)
            got = 0
            while got < 64:
                got += len(await ws.recv())
            if i >= 200:  # warm-up rounds are not counted
                samples.append(time.perf_counter() - start)
        return samples


async def tcp_throughput(port: int, total: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = os.urandom(MSG)

    async def sender() -> None:
        for _ in range(total // MSG):
            writer.write(payload)
            await writer.drain()

    start = time.perf_counter()
    task = asyncio.create_task(sender())
    got = 0
    while got < total:
        got += len(await reader.read(1 << 18))
    await task
    elapsed = time.perf_counter() - start
    writer.close()
    return total / elapsed


async def tcp_latency(port: int, rounds: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ping = os.urandom(64)
    samples = []
    for i in range(rounds + 200):
        start = time.perf_counter()
        writer.write(ping)
        await reader.readexactly(64)
        if i >= 200:
            samples.append(time.perf_counter() - start)
    writer.close()
    return samples


def cpu_seconds(pid: int | None) -> float:
    """CPU time of a server process and its reaped children (websockify forks per client)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Path_:
    """One path under test, with the figures gathered over the interleaved repeats."""

    def __init__(self, name: str, target: str | int, pid: int | None) -> None:
        self.name, self.target, self.pid = name, target, pid
        self.rates: list[float] = []
        self.samples: list[float] = []
        self.cpu_per_mib: list[float] = []
        self.cpu_per_rt: list[float] = []

    async def run_once(self, total: int, rounds: int) -> None:
        tcp = isinstance(self.target, int)
        cpu0 = cpu_seconds(self.pid)
        if tcp:
            rate = await tcp_throughput(self.target, total)
        else:
            rate = await ws_throughput(self.target, total)
        await asyncio.sleep(0.3)  # let a forked child be reaped, so its CPU is counted
        cpu1 = cpu_seconds(self.pid)
        if tcp:
            samples = await tcp_latency(self.target, rounds)
        else:
            samples = await ws_latency(self.target, rounds)
        await asyncio.sleep(0.3)
        cpu2 = cpu_seconds(self.pid)
        self.rates.append(rate)
        self.samples += samples
        self.cpu_per_mib.append((cpu1 - cpu0) / (total >> 20))
        self.cpu_per_rt.append((cpu2 - cpu1) / (rounds + 200))

    def row(self) -> dict:
        samples = sorted(self.samples)
        return {
            "mbps": max(self.rates) / 1e6,
            "median_us": statistics.median(samples) * 1e6,
            "p99_us": samples[int(len(samples) * 0.99) - 1] * 1e6,
            "rtps": len(samples) / sum(samples),
            "cpu_ms_per_mib": statistics.median(self.cpu_per_mib) * 1e3,
            "cpu_us_per_rt": statistics.median(self.cpu_per_rt) * 1e6,
        }


async def measure(paths: list[Path_], total: int, rounds: int, repeats: int) -> None:
    # Round-robin over the paths, so a burst of load elsewhere on the machine hits all alike.
    for _ in range(repeats):
        for path in paths:
            await path.run_once(total, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128, help="MiB echoed per throughput run")
    parser.add_argument("--rounds", type=int, default=3000, help="ping-pongs per latency run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path (best rate)")
    args = parser.parse_args()
    total = args.mib << 20
    websockify = shutil.which("websockify")
    if websockify is None:
        sys.exit("websockify is not installed (pip install websockify)")

    with process([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True) as echo:
        echo_port = int(echo.stdout.readline())
        relay_args = [
            *(sys.executable, "-m", "cli.main", "relay", "--quiet"),
            "--listen-addr=127.0.0.1:0",
            f"--allow=127.0.0.1:{echo_port}",
        ]
        with process(relay_args, stdout=subprocess.PIPE, text=True) as relay:
            line = relay.stdout.readline()
            relay_addr = re.search(r"http://([^/]+)/", line).group(1)
            ws_port = free_port()
            wsfy_args = [websockify, f"127.0.0.1:{ws_port}", f"127.0.0.1:{echo_port}"]
            with process(wsfy_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as wsfy:
                wait_listening(ws_port, wsfy)
                paths = [
                    Path_(
                        "am relay", f"ws://{relay_addr}/dial/bench/127.0.0.1:{echo_port}", relay.pid
                    ),
                    Path_("websockify", f"ws://127.0.0.1:{ws_port}/", wsfy.pid),
                    Path_("direct tcp", echo_port, None),
                ]
                print(
                    f"loopback; per path: {args.repeats} x ({args.mib} MiB echoed as 64 KiB "
                    f"messages, {args.rounds} x 64-byte ping-pong), interleaved"
                )
                asyncio.run(measure(paths, total, args.rounds, args.repeats))

    print(
        f"{'path':<12}{'MB/s':>8}{'median us':>11}{'p99 us':>9}{'rt/s':>8}"
        f"{'server CPU ms/MiB':>19}{'server CPU us/rt':>18}"
    )
    rows = {p.name: p.row() for p in paths}
    for name, r in rows.items():
        cpu = (
            f"{r['cpu_ms_per_mib']:>19.2f}{r['cpu_us_per_rt']:>18.0f}"
            if name != "direct tcp"
            else ""
        )
        print(
            f"{name:<12}{r['mbps']:>8.1f}{r['median_us']:>11.1f}{r['p99_us']:>9.1f}"
            f"{r['rtps']:>8.0f}{cpu}"
        )
    ours, theirs, tcp = rows["am relay"], rows["websockify"], rows["direct tcp"]
    print(
        f"throughput am relay / websockify: {ours['mbps'] / theirs['mbps']:.2f}x (target >= 1.5x)"
    )
    print(
        f"median latency am relay / websockify: {ours['median_us'] / theirs['median_us']:.2f}x "
        "(target <= 1.0x)"
    )
    print(f"throughput am relay / direct tcp: {ours['mbps'] / tcp['mbps']:.2f}x")


if __name__ == "__main__":
    main()
