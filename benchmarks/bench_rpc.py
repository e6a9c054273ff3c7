"""aRPC on loopback TCP, against a plain trio TCP echo of the same size (the floor).

    python benchmarks/bench_rpc.py [--n 5000] [--clients 100]

(a) mutation round trip through a NetMach: p50/p99 latency and sequential throughput, beside a
    trio echo round trip carrying as many bytes as the mutation request;
(b) bytes on the wire per mutation round trip and per one-way notification (no-sync add, push);
(c) one source pushing to N clients: source mutations per second delivered to every client.
Targets: round trip <= 3x echo; <= 40 B per round trip; <= 20 B per notification.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machines import Machine, State  # noqa: E402
from machines.rpc import connect, serve  # noqa: E402
from machines.rpc.transport import CountingStream, open_tcp  # noqa: E402

SCHEMA = {
    "Exception": State(multi=True),
    "A": State(),
    "B": State(multi=True),
    "C": State(),
    "Msg": State(multi=True),
}


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def fmt_us(ns: float) -> str:
    return f"{ns / 1000:7.1f} us"


async def echo_floor(n: int, size: int) -> list[float]:
    async def echo(stream):
        while data := await stream.receive_some(65536):
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), echo, 0)
        stream = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        payload = b"x" * size
        samples = []
        for i in range(n + n // 10):
            t0 = time.perf_counter_ns()
            await stream.send_all(payload)
            got = 0
            while got < size:
                got += len(await stream.receive_some(65536))
            if i >= n // 10:  # warm-up excluded
                samples.append(time.perf_counter_ns() - t0)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return samples


async def rpc_round_trips(n: int) -> tuple[list[float], float, dict[str, float]]:
    src = Machine(SCHEMA, id="src")
    async with serve(src, "127.0.0.1:0") as mux:
        streams: list[CountingStream] = []

        async def factory():
            streams.append(CountingStream(await open_tcp(mux.addr)))
            return streams[-1]

        async with connect(mux.addr, id="bench", stream_factory=factory) as client:
            net, meter = client.netmach, streams[0]
            for _ in range(n // 10):  # warm-up
                await net.add("A")
                await net.remove("A")
            samples = []
            sent0, total0 = meter.sent, meter.total
            t_start = time.perf_counter()
            for i in range(n):
                t0 = time.perf_counter_ns()
                await (net.add("A") if i % 2 == 0 else net.remove("A"))
                samples.append(time.perf_counter_ns() - t0)
            elapsed = time.perf_counter() - t_start
            assert net.clock() == src.clock()
            bytes_ = {
                "request": (meter.sent - sent0) / n,
                "round trip": (meter.total - total0) / n,
            }
            # one-way: no-sync adds (client -> server), then a synced read-back
            sent0 = meter.sent
            for _ in range(n):
                await net.add_ns("B")
            bytes_["no-sync add"] = (meter.sent - sent0) / n
            await client.sync()
            assert net.clock() == src.clock()
            assert client.conn.syncs == 1  # only the explicit one: checksums always agreed
    bytes_["push"] = await push_bytes()
    return samples, n / elapsed, bytes_


async def push_bytes(n: int = 500) -> float:
    """One-way server -> client: a push per source change (no batching, to count each)."""
    src = Machine(SCHEMA, id="src")
    async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
        streams: list[CountingStream] = []

        async def factory():
            streams.append(CountingStream(await open_tcp(mux.addr)))
            return streams[-1]

        async with connect(mux.addr, id="bench", stream_factory=factory) as client:
            net, meter = client.netmach, streams[0]
            recv0 = meter.received
            for _ in range(n):
                src.add("Msg")
                await net.when_time(["Msg"], [src.tick("Msg")])
            pushes = mux.servers[0].pushes
            assert pushes == n and client.conn.syncs == 0
            return (meter.received - recv0) / pushes


async def fan_out(clients: int, n: int, push_interval: float) -> tuple[float, int]:
    src = Machine(SCHEMA, id="src")
    async with serve(src, "127.0.0.1:0", push_interval=push_interval) as mux:
        async with trio.open_nursery() as nursery:
            conns = []
            ready = trio.Event()

            async def client(i):
                async with connect(mux.addr, id=f"c{i}") as c:
                    conns.append(c)
                    if len(conns) == clients:
                        ready.set()
                    await trio.sleep_forever()

            for i in range(clients):
                nursery.start_soon(client, i)
            await ready.wait()
            await mux.wait_clients(clients)
            target = src.tick("Msg") + n
            t0 = time.perf_counter()
            for _ in range(n):
                src.add("Msg")
                await trio.lowlevel.checkpoint()  # let pushers and clients run between changes
            async with trio.open_nursery() as waits:
                for c in conns:
                    waits.start_soon(c.netmach.when_time, ["Msg"], [target])
            elapsed = time.perf_counter() - t0
            pushes = sum(s.pushes for s in mux.servers)
            nursery.cancel_scope.cancel()
    return n / elapsed, pushes


async def main(n: int, clients: int) -> None:
    with trio.fail_after(300):
        rtt, tput, bytes_ = await rpc_round_trips(n)
        req_size = round(bytes_["request"])
        echo = await echo_floor(n, req_size)
        fans = [(iv, await fan_out(clients, 1000, iv)) for iv in (0.0, 0.01, 0.25)]
    e50, e99 = pct(echo, 0.5), pct(echo, 0.99)
    r50, r99 = pct(rtt, 0.5), pct(rtt, 0.99)
    print("aRPC benchmark (loopback TCP, one trio process)")
    print(f"(a) mutation round trip via NetMach, {n} sequential add/remove:")
    print(f"    aRPC   p50 {fmt_us(r50)}  p99 {fmt_us(r99)}  {tput:9.0f} mutations/s")
    echo_tput = 1e9 / statistics.mean(echo)
    print(f"    echo   p50 {fmt_us(e50)}  p99 {fmt_us(e99)}  {echo_tput:9.0f} round trips/s")
    print(f"           ({req_size}-byte messages; the floor)")
    print(f"    ratio  p50 {r50 / e50:.2f}x  p99 {r99 / e99:.2f}x   (target <= 3x)")
    print("(b) bytes on the wire:")
    print(f"    mutation round trip  {bytes_['round trip']:5.1f} B  (target <= 40)")
    print(f"    no-sync add (1-way)  {bytes_['no-sync add']:5.1f} B  (target <= 20)")
    print(f"    clock push (1-way)   {bytes_['push']:5.1f} B  (target <= 20)")
    print(f"(c) one source, {clients} clients, 1000 source mutations:")
    for interval, (rate, pushes) in fans:
        print(
            f"    push_interval {interval * 1000:3.0f} ms: {rate:9.0f} mutations/s delivered to "
            f"all ({pushes} pushes, {pushes / clients:.0f} per client)"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="round trips to time")
    ap.add_argument("--clients", type=int, default=100, help="clients for the fan-out test")
    args = ap.parse_args()
    trio.run(main, args.n, args.clients)
