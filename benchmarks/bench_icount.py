"""Instructions per operation of bench_core.py's workloads, counted by valgrind.

On a machine shared with other work, wall-clock ratios swing by tens of percent between runs of
the same code; instruction counts do not depend on load, so they tell whether a change to the
core made it cheaper. Each workload runs twice under ``valgrind --tool=cachegrind
--cache-sim=no`` (after the same warm-up): once with ``n`` timed operations and once without;
the difference over ``n`` is the cost of one operation, start-up excluded. ``PYTHONHASHSEED``
is pinned so dictionary layouts (and so the counts) repeat. Keys: ``a`` flat toggle, ``b``
relations + handlers, ``c`` 100 states random, ``ta`` / ``tb`` the same as ``a`` / ``b`` in
``transitions``; ``rpc`` an aRPC mutation round trip (client, server and the served machine in
one process, as in bench_rpc.py) and ``echo`` its floor, a trio TCP echo of the same 13 bytes,
both with both connections open; ``sansio`` the part of ``rpc`` done without trio or sockets;
``rels-off`` / ``rels-on``, ``ops-off`` / ``ops-on`` (relations at log level 3) and
``flat-off`` / ``flat-on`` bench_telemetry.py's workloads with telemetry off / on (the
machine's side: rows packed into a debugger's outbox, no socket); ``col-ops``, ``col-rels``
the debugger's side of the same (bench_collector.py's frames ingested by a collector, no
socket), ``col-ops-read`` / ``col-rels-read`` ingested and then every transition read.
Needs ``valgrind`` on the PATH (about a minute per workload).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

HERE = Path(__file__).resolve().parent

#: runs one workload: argv = key, n, timed (1 or 0)
DRIVER = """
import sys
sys.path.insert(0, {here!r})
import bench_core as bc
key, n, timed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
ops = bc.random_ops(max(n, 4000))
make = {{"a": bc.toggle_ours, "b": bc.relations_ours, "c": lambda: bc.random_ours(ops),
        "ta": bc.toggle_theirs, "tb": bc.relations_theirs}}[key]
run, _ = make()
run(4000)
if timed:
    run(n)
"""

#: the same for bench_rpc.py's round trips (both connections open in either workload)
RTT_DRIVER = """
import sys
sys.path.insert(0, {here!r})
import trio
import bench_rpc as br
key, n, timed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
trio._core._run._r.seed(0)  # trio orders each scheduling batch at random: the same order

async def main():
    async with br.round_trip_pair(13) as (rpc, echo):
        await rpc(1000, None)
        await echo(1000, None)
        if timed:
            await (rpc if key == "rpc" else echo)(n, None)

trio.run(main)
"""
#: the sans-IO part of an aRPC round trip: the client's protocol and core, the server's core
#: and its source's mutation, bytes handed over by hand (no trio, no sockets, no NetMach)
SANSIO_DRIVER = """
import sys
sys.path.insert(0, {here!r})
import bench_rpc as br
from machines import Machine
from machines.rpc.endpoint import ClientEndpoint, ServerEndpoint
from machines.rpc.protocol import MUT_ADD, MUT_REMOVE
key, n, timed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
src = Machine(br.SCHEMA, id="src")
to_server, to_client = [], []
client = ClientEndpoint("bench", to_server.append)
server = ServerEndpoint(src, to_client.append, call_later=lambda delay, fn: None)
server.connection_made()
client.connection_made()
server.receive(to_server.pop())
client.receive(to_client.pop())
conn = client.conn

def round_trip(i):
    seq = conn.mutate(MUT_REMOVE if i % 2 else MUT_ADD, ["A"], None, None)
    client._start_call(seq, "bench", None)
    server.receive(conn.data_to_send())
    client._feed(conn, to_client.pop())
    client._calls.pop(seq).outcome()

for i in range(2000):
    round_trip(i)
if timed:
    for i in range(n):
        round_trip(i)
"""
#: bench_telemetry.py's workloads, telemetry off or on: with it on, the machine packs its rows
#: into the lane of a debugger's outbox, taken every 2,000 mutations as a sender would (no
#: socket: what telemetry costs the machine's own thread)
TELEMETRY_DRIVER = """
import sys
sys.path.insert(0, {here!r})
import bench_telemetry as bt
from machines import Machine, telemetry
key, n, timed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
rels = not key.startswith("flat")
level = 3 if key.startswith("ops") else 0  # "ops": relations at log level 3 (logger discards)
m = Machine(bt.RELS if rels else bt.FLAT, handlers=bt.Handlers() if rels else None,
            log_level=level, logger=lambda *_: None)
outbox = telemetry.Outbox()
if key.endswith("-on"):
    telemetry.DbgTracer(outbox).attach(m)
if rels:
    m.add(["Start", "Ready"])
a, b = ("Busy", "Done") if rels else ("A", "B")

def run(k):
    for i in range(k // 2):
        m.add(a)
        m.add(b)
        if i % 1000 == 999:
            outbox.take()
    outbox.take()

run(4000)
if timed:
    run(n)
"""
TELEMETRY_KEYS = ("rels-off", "rels-on", "ops-off", "ops-on", "flat-off", "flat-on")
#: the debugger's side: bench_collector.py's frames (recorded before counting starts, in both
#: runs) fed to a collector as its TCP path does (``_feed``), then, for ``-read``, every
#: transition read as a dump or a UI showing all does; a warm-up batch goes to another
#: collector first
COLLECTOR_DRIVER = """
import sys
sys.path.insert(0, {here!r})
from bench_collector import frames
from dbg.collector import Collector, _Session, _feed
key, n, timed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
workload = key.split("-")[1]  # col-ops, col-rels, col-flat (and their -read)

def ingest(data, read):
    c = Collector(freeze_history=True)
    s = _Session(c, "bench")
    for i in range(0, len(data), 65536):
        _feed(c, s, data[i : i + 65536])
    assert s.bad == 0 and c.rejected == 0
    if read:
        assert sum(len(d.txs) for d in c.dumps()) == c.total_txs

warm, data = frames(workload, 2000), frames(workload, n)
ingest(warm, True)
if timed:
    ingest(data, key.endswith("-read"))
"""
COLLECTOR_KEYS = ("col-ops", "col-ops-read", "col-rels", "col-rels-read")
#: round trips are ~50x the instructions of a core transition
DEFAULT_N = {"rpc": 2000, "echo": 2000, "sansio": 5000}
DRIVERS = {
    "rpc": RTT_DRIVER,
    "echo": RTT_DRIVER,
    "sansio": SANSIO_DRIVER,
    **dict.fromkeys(TELEMETRY_KEYS, TELEMETRY_DRIVER),
    **dict.fromkeys(COLLECTOR_KEYS, COLLECTOR_DRIVER),
}


def _instructions(key: str, n: int, timed: bool) -> int:
    code = DRIVERS.get(key, DRIVER).format(here=str(HERE))
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
           sys.executable, "-c", code, key, str(n), "1" if timed else "0"]  # fmt: skip
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode or not found:
        raise SystemExit(f"bench_icount: workload {key} failed: {proc.stderr.strip()[-300:]}")
    return int(found.group(1).replace(",", ""))


def main(
    workloads: Annotated[
        list[str] | None,
        typer.Argument(
            help="keys: a b c ta tb rpc echo sansio rels-off rels-on ops-off ops-on flat-off "
            "flat-on col-ops col-ops-read col-rels col-rels-read (default: a b tb)"
        ),
    ] = None,
    n: int | None = typer.Option(
        None, help="timed operations (default 20,000; rpc, echo 2,000; sansio 5,000)"
    ),
) -> None:
    """Instructions per operation of bench_core.py's workloads (valgrind)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_icount: valgrind is not installed (apt-get install valgrind)")
    for key in workloads or ["a", "b", "tb"]:
        count = n or DEFAULT_N.get(key, 20_000)
        per_op = (_instructions(key, count, True) - _instructions(key, count, False)) / count
        print(f"({key}) {per_op:,.0f} instructions per operation", flush=True)


if __name__ == "__main__":
    typer.run(main)
