"""The debugger collector's CPU per transition ingested: what ``am dbg --headless`` spends
on each transition a machine sends it (TCP receive, frame decoding, checks, the history).

    python benchmarks/bench_collector.py [--code-path DIR] [--repeats 5] [--txs 200000]

Telemetry comes from real machines through the real tracer (the relations + handlers and the
flat toggle workloads of bench_telemetry.py, logs off), recorded once as the frames the
sender would send. Two figures per workload, medians of ``--repeats`` runs:

- ``headless``: a real ``am dbg --headless`` process of the code at ``--code-path`` (e.g. an
  older revision, to compare) is sent the frames over loopback TCP; its CPU time (utime +
  stime of /proc/<pid>/stat) from before the first byte to the moment it has closed the
  connection (it reads until EOF, so everything was ingested), over the transitions.
- ``in process``: the same frames fed to a ``Collector`` through the TCP path's ``_feed``
  in this process (no socket; ``time.process_time``): the part the code controls.

Where the time went (cProfile, relations workload, 100k transitions in process): before,
the decoder expanded every ``txp`` row into a 15-item transition array (a slice of the packed
rows, ``tolist`` of the clocks, the list; ~1.3 us a transition, ~0.5 s of 2.75 s profiled),
the collector checked each array field by field (``tx_problem``: ~7 ``_word`` calls, sets of
item types, min and max of the clocks; ~1.6 s of 2.75 s), then kept an ``(array, arrival)``
pair, whose lists the cycle collector walked until the next ``gc.freeze``; at log level ops
the per-entry check of the log lines doubled it. Objects were built from the arrays when read.

Now the collector's connections decode with ``FrameDecoder(packed=True)``: a ``txp`` group is
checked per group and per column (C loops: the called-states index column's min and max, the
id column's min, the called lists once, all log entries of the group in one pass) and kept as
received (``dbg.pending.Rows``: ``cols`` machine words a transition); objects are built
straight from the rows when read, without the arrays. A group with any bad transition is
expanded and checked one by one, as before (a differential fuzz test holds the two paths
equal). What is left per transition at ingest is CBOR decoding (the log lines' strings at log
ops) and the process's share of the TCP receive and trio's scheduling. Reading everything (a
dump; a UI that shows all) pauses automatic garbage collection while it builds objects: its
passes over the new objects cost more than building them.

Measured (``python benchmarks/bench_collector.py --repeats 3``, 200k transitions, the code
before with ``--code-path``; 2 shared cores, load average 4.4-4.5), us per transition,
headless / in process / then read all:

    relations + handlers   before  6.30 /  6.12 / 11.32    after 0.40 / 0.25 /  5.84
    flat toggle            before  5.40 /  5.73 / 10.19    after 0.40 / 0.28 /  8.20
    relations, log ops     before 12.95 / 13.34 / 19.67    after 6.80 / 6.65 / 12.42

The headless figure counts clock ticks (10 ms), hence its steps of 0.05 us at 200k
transitions.

Log level 3 (what ``am start --dbg`` and ``AM_DBG_ADDR`` use: 4-5 log lines a transition).
Where the time went, counted with valgrind (``python benchmarks/bench_icount.py col-ops
col-ops-read col-rels col-rels-read --n 20000``: instructions per transition, ingest alone /
ingest then read all) and split with cProfile: the decoder cut the group's joined texts
apart and built a ``[level, text]`` list per entry and a 5-item extras array per row
(``_with_logs``: 0.52 of 1.15 s profiled), then the collector checked every entry again
(``_all_log_entries`` and its generators: 0.29 s); CBOR decoding and framing were 0.05 s.
Now ``check_txp`` checks the group's logs per column (C loops: row numbers in range and
increasing, counts that add up, newline count or lengths against the text) and keeps them as
they came (``machines.telemetry.TxpLogs``: the levels' bytes, the joined text, three int32s
per logged row); a block's texts are cut apart on its first read and entry objects built
only for the rows read, a slice each of one list per read. What is left at read is one
``LogEntry`` per entry (its ``__init__`` runs in Python; building them with C-level
``setattr`` loops counted more instructions, not fewer) beside the ``DbgMsgTx`` itself
(~14k instructions of the ~27k a read transition costs).

    instructions per transition   col-ops  col-ops-read  col-rels  col-rels-read
    before                         31,062        71,382       112         26,313
    after                           3,143        43,839       107         26,501

Measured (``python benchmarks/bench_collector.py --repeats 3 --txs 60000``, the code before
with ``--code-path``; 2 shared cores, load average 5.6, other engineers' tests and valgrind
running), us per transition, headless / in process / then read all:

    relations + handlers   before 0.33 / 0.27 / 6.04    after 0.50 / 0.29 / 6.68
    flat toggle            before 0.33 / 0.22 / 6.21    after 0.33 / 0.23 / 6.48
    relations, log ops     before 7.33 / 5.53 / 9.57    after 0.83 / 0.80 / 9.69

(the workloads without logs run the same code as before: their differences are the load's)

Kept until read, the packed logs take less memory too: ``python
benchmarks/bench_collector_mem.py --txs 100000`` (logged transitions, none read) went from
35.7 to 11.8 MB of RSS per 100k transitions kept, its ingest from 272k to 1.88M transitions
a second (its parse for a dump 102k and 93k a second, within the load's noise).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the same workloads as the telemetry benchmark (this folder is first on sys.path)
from bench_telemetry import FLAT, RELS, Handlers  # noqa: E402

from machines import Machine, telemetry  # noqa: E402
from machines.telemetry import Outbox  # noqa: E402


def frames(workload: str, n: int) -> bytes:
    """The bytes a sender would stream for ``n`` mutations of ``workload``: the schema frame,
    then the transitions packed as the outbox packs them while a sender is live."""
    box = Outbox(limit=n * 4)
    if workload == "flat":
        m = Machine(FLAT, id="flat", logger=lambda *_: None)
    else:  # "rels", or "ops": the same at log level ops (a few log lines per transition)
        level = 3 if workload == "ops" else 0
        m = Machine(RELS, id=workload, handlers=Handlers(), log_level=level, logger=lambda *_: None)
    telemetry.DbgTracer(box).attach(m)
    if workload == "flat":
        for _ in range(n // 2):
            m.add("A")
            m.add("B")
    else:
        m.add(["Start", "Ready"])
        for _ in range(n // 2 - 1):
            m.add("Busy")
            m.add("Done")
    return box.take()


def count(data: bytes) -> int:
    from machines.telemetry import FrameDecoder

    return sum(len(msg) for kind, msg in FrameDecoder().feed(data) if kind == "txs")


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def headless(code: Path, data: bytes) -> float:
    """CPU seconds an ``am dbg --headless`` of ``code`` spends ingesting ``data``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "--listen-addr",
         f"127.0.0.1:{port}", "--ws-port", "0", "--dir", out],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=str(code),
        env=dict(os.environ, PYTHONPATH=str(code), PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    try:
        proc.stdout.readline()  # "collecting on ..."
        time.sleep(0.3)  # let start-up work (imports, bytecode) finish before counting
        before = _cpu(proc.pid)
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):  # EOF: the collector read (and ingested) everything
                pass
        return _cpu(proc.pid) - before
    finally:
        proc.kill()  # its dump of this much history is not what is measured here
        proc.wait(10)


IN_PROCESS = r"""
import gc, sys, time
from dbg.collector import Collector, _feed, _Session
data = open(sys.argv[1], "rb").read()
c = Collector(freeze_history=True)
s = _Session(c, "bench")
t = time.process_time()
for i in range(0, len(data), 65536):
    _feed(c, s, data[i : i + 65536])
took = time.process_time() - t
assert s.bad == 0 and c.rejected == 0, (s.bad, c.rejected)
t = time.process_time()
n = sum(len(d.txs) for d in c.dumps())  # what a dump or a UI reading everything does
parse = time.process_time() - t
assert n == c.total_txs
print(took, c.total_txs, parse)
"""


def in_process(code: Path, path: str) -> tuple[float, int, float]:
    out = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, path], capture_output=True, text=True, check=True,
        env=dict(os.environ, PYTHONPATH=str(code)), cwd=str(code),
    ).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1]), float(out[2])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code-path", type=Path, default=ROOT)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--txs", type=int, default=200_000)
    args = ap.parse_args()
    code = args.code_path.resolve()
    print(f"collector code: {code}; {args.txs:,} transitions per run, median of "
          f"{args.repeats} (load average now {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"{'workload':<24}{'headless us/tx':>16}{'in process':>12}{'then read all':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for workload, name in (
            ("rels", "relations + handlers"),
            ("flat", "flat toggle"),
            ("ops", "relations, log ops"),
        ):
            data = frames(workload, args.txs)
            n = count(data)
            path = str(Path(tmp) / f"{workload}.bin")
            Path(path).write_bytes(data)
            hl, ip, rd = [], [], []
            for _ in range(args.repeats):
                hl.append(headless(code, data) / n * 1e6)
                took, got, parse = in_process(code, path)
                assert got == n, (got, n)
                ip.append(took / n * 1e6)
                rd.append(parse / n * 1e6)
            print(
                f"{name:<24}{statistics.median(hl):>16.2f}{statistics.median(ip):>12.2f}"
                f"{statistics.median(rd):>15.2f}"
                f"   (headless runs {', '.join(f'{x:.1f}' for x in sorted(hl))})"
            )


if __name__ == "__main__":
    main()
