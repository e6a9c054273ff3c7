"""Telemetry cost: mutations/s with a live debugger attached versus telemetry off.

The debugger (``am dbg --headless``) runs as its own process, as it would in use; the machine
streams every transition to it over loopback TCP. Workloads: a flat toggle (the cheapest
transition, so the worst case for relative overhead) and a relation-heavy mutation with
handlers, with logs off and at the ops level (what the example's machines look like). Note that a
machine nothing observes takes a fast path (no Transition object at all), so the flat toggle
compares telemetry against the cheapest possible mutation. Also times decoding and rendering the
Go debugger's fixture dump. Targets: telemetry on >= 0.8x of off with relations and handlers,
>= 0.5x for the flat toggle. On and off runs are interleaved, REPEATS times, medians shown;
besides wall time, CPU time of this process (the collector process competes for the same
cores, which a loaded machine shows as a lower wall ratio).

Where the time goes with telemetry on (profiled with cProfile and per-stage timings of
``Outbox.take``): before, the tracer's ``transition_end`` hook kept the machine off its
unobserved fast path (the flat toggle paid a Transition object and the queue claim), each
record held lists the garbage collector kept traversing, and the sender thread encoded one
CBOR array of 15 items per transition (~4 us each, holding the GIL: more than the transition).
Measured then (loaded 2-core machine): flat 0.17x, relations + handlers 0.41x, at log ops 0.31x.
Now the tracer is a sink: the machine, fast path included, hands it one tuple of atoms (no GC
tracking) and keeps its fast path; the sender packs a batch per machine into one int32/int64
array (one ``struct.pack``) plus a table of the called-state lists (``txp`` frames, ~1 us per
transition); the collector's decoder expands them. Measured after, same conditions: flat 0.49x,
relations + handlers 0.69x (CPU 0.82x), log ops 0.45x; what is left is the sender's packing and
the collector process competing for the same two cores (its decoding is in the wall ratio).

Next round, counted in instructions (``valgrind --tool=cachegrind --cache-sim=no``, the
relations workload with a sink drained as the sender would, minus telemetry off; load does not
change these counts): the machine's side of a recorded transition was 4.2k instructions per
transition on top of 41.2k (10 %); now 3.45k on top of 38.3k (9 %): the record is built inline
in ``_execute`` (a method call was ~0.9k), and the core itself got cheaper (see
bench_core.py). Packing stays ~0.55 us per transition on the sender's thread: a columnar
packer (``zip(*records)``, tuple concatenation, ``chain``) measured 2x slower than the loop and
was dropped. The TCP sender used to take the outbox again as soon as it had sent, so while
machines ran it woke, took the GIL and packed a few records at a time; it now sends one batch
per poll interval (10 ms), or at once when the outbox passes a quarter of its limit, so it
never drops earlier than before (about half the frames for the same transitions). Wall
ratios on this 2-core machine shared with other test runs (load 3-5) swung from 0.4x to 0.8x
between runs of the same code; the CPU ratio is the steadier figure.

Then where the packing runs. Timed per transition (flat toggle, 200k mutations, a discarding
TCP sink in the same process; quiet machine): off 2.34 us, on 4.71 us, of which the sender
thread's packing (``Outbox.take`` -> ``pack_txs``) was 1.1-1.3 us holding the GIL and the
machine's record and ``Outbox.put`` ~0.5-0.7 us. The same records packed on the machine's own
thread, a batch every 1,000 transitions and no second thread, cost ~1.1 us in all: packing on
another thread while the machine runs costs about twice as much (GIL hand-offs, the records
leaving the cache between threads). Appending each record's integers into ``array('q')``
columns on the machine's thread, the obvious columnar form, is slower still: ``array.extend``
and ``append`` convert item by item through argument parsing (~90 ns an integer, ~0.9 us a
row, against ~0.13 us for the row in one ``struct.pack``); a ``zip(*records)`` transposition
packed column by column (``struct.pack`` per column, interleaved by strided ``memoryview``
assignment) beat the loop only on batches of 10k records, not on a few hundred. So now the
outbox packs on the putting thread: a record is a ``list.append``; every ``Outbox.chunk``
(512) records are sealed into a ready ``txp`` frame under a short lock, and the sender only
joins ready bytes. Only while a sender is connected (``Outbox.live``): with the debugger absent
or gone, records wait unpacked and the oldest are dropped unpacked, as before. The frame
format is unchanged. Measured with ``python benchmarks/bench_telemetry.py``, the previous
outbox and this one alternating, 6 runs each in the same minutes, otherwise quiet machine,
medians (wall / CPU ratio): flat 0.52 / 0.54 -> 0.57 / 0.61, relations + handlers 0.71 / 0.73
-> 0.73 / 0.76 (within the run-to-run spread, 0.67-0.90), log ops 0.52 -> 0.60. The
relations row's overhead (~3 us a mutation) is not packing alone (not profiled further
here): packing is ~0.6 us of it.

Then the measurement itself, and the collector. Two runs minutes apart do not see the same
machine (single-thread speed here drifts by 20 % within seconds), so off and on now run as
PAIRS adjacent pairs (the order alternating), the collector settled before each run (its CPU
time no longer growing: otherwise it decodes one run's transitions during the next), and the
ratio is the median of the pairs' ratios, printed with their range. The debugger's collector
now keeps packed groups as they arrive (dbg/pending.py; ~6.3 -> ~0.4 us of its CPU per
transition, see bench_collector.py), so it no longer competes for the two cores. Counted in
instructions (valgrind, the relations workload, the machine's side with a live outbox and no
sender; off 38.1k): a sink that drops the record adds 2.75k (building the record), putting and
packing it 7.1k more: 26 % in all, which alone makes 0.79x. At log level 3 (off 74.8k) the
log entries were one CBOR ``[level, text]`` array each and cost another 19k: cbor2 6's encoder
checks every container through Python-level ``isinstance`` calls. A group's entries now travel
as four values (``logs``: row heads, levels, lengths and one string, see telemetry.pack_txs),
taken apart once per batch with C loops: 41k -> 20k on top of the transition. Measured quiet
(load < 1), two runs each of 21 pairs of 50k mutations, wall / CPU ratio: flat 0.59 / 0.57 and
0.61 / 0.60; relations + handlers 0.72 / 0.71 and 0.73 / 0.77 (two runs of 15 pairs of 20k:
0.80 / 0.83 and 0.71 / 0.72); log ops 0.66 / 0.71 and 0.65 / 0.66 (before the logs column:
0.55-0.60). Pairs still range 0.5-1.2: a 2-core virtual machine. What is left on the relations
row is the machine's own record and packing in CPython, ~10k instructions.

Then the record itself. Counted per transition (valgrind, relations workload, off 38.3k), the
10k were: building the 15-field record 2.5k, the Python call of ``Outbox.put`` 1.35k, packing
it with its batch 5.5k (``pack_txs``: a Python loop over the records, then one ``struct.pack``)
and encoding 0.25k; keeping records unpacked longer (packing on the sender's thread, every
10 ms) adds ~2k more, as the garbage collector then walks them (gc disabled, it does not).
Columnar packing of the same records (``zip(*records)``, a ``struct.pack`` per column) still
cost 3.6-4.3k. So the record is gone: the debugger's tracer hands the machine a
:class:`~machines.telemetry.Lane` (``Tracer.lane_for``), and the machine packs each transition
into its row itself, one ``Struct.pack`` call with what it has at hand, appended to the lane's
list (a row with rare fields, i.e. log entries, a source, args or steps, as ``(row, fields)``);
every ``chunk`` rows, or when the sender takes, the rows are joined into a ``txp`` group (the
wire format is the same: 32-bit rows, and from the first value that needs more, the machine
catches ``struct.error`` and its lane packs 64-bit rows from then on; always 64-bit rows
doubled the bytes, and the sender's kernel time and the debugger's receive compete for the
second core). A second debugger's tracer still gets records, packed the same way by
``Lane.record`` (a differential test keeps the two equal). Per transition:
relations 9.9k -> 5.75k over off (by instructions 0.79x -> 0.87x), flat 8.8k -> 4.8k (0.60x
-> 0.74x), log ops 20.2k -> 16.1k over 74.8k; of the 5.75k, the ``Struct.pack`` call is ~2.9k
(0.9k of it unpacking the clocks as arguments). Full logging's queued-mutation records are
rows of the same lane too (``q<tick>`` ids), no longer a ready frame per mutation that sealed
every lane into one-row frames. With the core's own round (bench_core.py: relations off 38.3k
-> 31.6k) the share is larger again: 5.4k on 31.6k (0.85x by instructions; the row's flags in
two tests unless auto or check). Rows were first 64-bit: that doubled the bytes, and the
sender's kernel time (~0.6 us a transition) with the debugger's receive outgrew the second
core (drops in the flat run); they are 32-bit until a value needs more. The outbox now holds
100k messages (rows are 40-120 bytes), as 10k filled in a burst while the sender waited for
the GIL. Measured quiet (load ~1), three runs of 21 pairs, wall / CPU: flat 0.60 / 0.61, 0.64 /
0.66, 0.65 / 0.66; relations + handlers 0.77 / 0.81, 0.79 / 0.80, 0.79 / 0.79; log ops 0.66,
0.72, 0.71. The same transitions packed without a sender thread or debugger (the machine's
share alone) measure 0.76-0.81 wall: what keeps the relations row just under 0.8 on this
machine is the machine's ~1.5 us of packing a row, not the I/O.

Then what is around the ``Struct.pack`` call, counted with ``python benchmarks/bench_icount.py
rels-off rels-on ops-off ops-on`` (the machine's thread, rows packed into an outbox taken as a
sender would). Of the row's 5.4k instructions, the pack call with its arguments is ~3.1k (the
14 integers ~1.2k, building the argument tuple from ``*clocks`` ~0.5k; ``pack_into`` a
bytearray, a bytearray of rows, a header and a clocks struct, and ``marshal`` all measured
dearer). The rest: looking up the called states' index in the lane's table, 0.63k (a tuple
hashed and compared per row), is now kept on the plan (``Plan.lane_ci``, checked against the
table it is valid for); the test for rare fields, five attributes (0.37k), is one slot
(``Transition._rare``). At log level 3 (~4.5 lines a transition) the group's packing of the log
took each ``(level, text)`` pair apart again (``itemgetter`` maps ~1.6k a row, lengths ~1.5k):
a transition's log is now two lists, levels and texts, that a group extends with as they are;
levels go as a byte each and texts joined by newlines (lengths only when a text holds one).
Instructions per mutation, off / on: relations 31.8k / 37.2k -> 31.7k / 36.6k (overhead 5.4k
-> 4.95k, 0.855x -> 0.865x), log ops 70.6k / 86.1k -> 68.6k / 80.7k (15.5k -> 12.1k, 0.82x ->
0.85x; the core got cheaper too: a log line no longer goes through a property), flat 10.9k /
15.7k -> 10.9k / 15.5k. Measured quiet (load ~1), four runs of 21 pairs, wall ratio:
relations + handlers 0.87, 0.79, 0.83, 0.77 (CPU 0.88, 0.79, 0.83, 0.76); log ops 0.71 in each
(CPU 0.70-0.74; was 0.59-0.72); flat 0.65, 0.59, 0.71, 0.65. By instructions the relations row
is 0.865x, on the wall ~0.8: cachegrind's cache model counts ~155 more L1 data misses per
transition with telemetry on, whatever the lane's chunk (64 to 512 rows).

Then log level 3, by instructions (``bench_icount.py ops-off ops-on``, and a variant with
``Outbox._group`` stubbed out): of the 12.1k telemetry added on top of 68.5k, the group's
packing of the log took 4.75k a row (a Python loop over the rows, then joining and counting
the lines; a version in C iterators, ``chain``/``itemgetter``/``compress``, measured no
faster), keeping each row's lines as lists until then 1.5k more, and the garbage collector
1k (four containers kept per row until its batch went). But a transition's 4-6 lines at this
level are those of the last time its plan ran (the mutation, its relations, handlers and
states). So a plan now keeps its lines as a log block (``Plan.lane_lb``, ``Lane.block``): the
machine compares the transition's two lists with the block's (~1k) and names the block in the
high bits of the row's flags; the row stays plain bytes, a batch is one join, and a group
carries the blocks its rows name. Lines that vary (a handler logging a counter: after one
miss the plan's rows carry their lines for good), pre-log lines and steps still travel with
their rows. The decoder folds the blocks back into the group's logs (``check_txp``), so the
debugger's readers are unchanged; its ingest costs 3.1k -> 4.0k instructions a transition
(``col-ops``). Per transition, off / on: log ops 68.6k / 80.6k -> 68.6k / 75.9k (telemetry's
share 12.1k -> 7.4k, the block checked with one comparison of the rare fields: 0.85x -> 0.90x);
relations and flat unchanged. Measured under load (~2, another job running), base and this
alternating, two runs each, wall ratio: log ops 0.65, 0.65 -> 0.77, 0.78. Then quiet (load ~1,
nothing else running), five runs of 21 pairs, wall ratio: relations + handlers 0.81, 0.81,
0.86, 0.82, 0.83 (median 0.82; was 0.77-0.87, median 0.81); log ops 0.77, 0.72, 0.83, 0.82,
0.87 (median 0.82; was 0.71 in each run); flat 0.64, 0.61, 0.61, 0.65, 0.63. The log ops row
alone in a fresh process measures 0.85 (CPU 0.85): a run's pairs still range 0.44-1.28.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machines import Machine, State, telemetry  # noqa: E402

N = 50_000  # mutations per run (a fraction of a second)
PAIRS = 21  # off/on pairs per workload
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "go-am-dbg-sim.gob.br"

FLAT = {"A": State(remove=["B"]), "B": State(remove=["A"])}
RELS = {
    "Start": State(),
    "Ready": State(require=["Start"], add=["Idle"]),
    "Idle": State(remove=["Busy"]),
    "Busy": State(require=["Ready"], remove=["Idle", "Done"]),
    "Done": State(require=["Ready"], remove=["Busy"]),
}


class Handlers:
    def BusyEnter(self, e):
        return True

    def BusyState(self, e):
        pass

    def DoneState(self, e):
        pass


def flat(m: Machine) -> None:
    for _ in range(N // 2):
        m.add("A")
        m.add("B")


def rels(m: Machine) -> None:
    m.add(["Start", "Ready"])
    for _ in range(N // 2):
        m.add("Busy")
        m.add("Done")


def settle(dbg_pid: int) -> None:
    """Wait until the collector has taken in what was sent: its CPU time stops growing.

    Without this, the collector would still be decoding one run's transitions during the next
    run, which slows that run whichever side it is on."""
    outbox, _ = next(iter(telemetry._process.values()), (None, None))
    deadline = time.monotonic() + 30
    while outbox is not None and len(outbox) and time.monotonic() < deadline:
        time.sleep(0.01)
    stat = Path(f"/proc/{dbg_pid}/stat")
    if not stat.exists():  # not Linux: a fixed pause
        time.sleep(0.3)
        return
    last = None
    while time.monotonic() < deadline:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        cpu = int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        if cpu == last:
            return
        last = cpu
        time.sleep(0.05)


def rates(make, work, dbg_pid: int) -> tuple[float, float, float, float, float, float]:
    """Mutations/s with telemetry off and on, as PAIRS adjacent runs (the order alternating).

    Returns the median rates (off, on), pair ratios (wall, CPU), the lowest and highest. The
    ratio is taken per pair, then the median: single-thread speed on a shared 2-core virtual
    machine drifts by 20 % from one second to the next, which two runs a fraction of a second
    apart share, but runs minutes apart do not."""
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for i in range(PAIRS + 1):
        for on in (False, True) if i % 2 else (True, False):
            m = make(on)
            settle(dbg_pid)
            t, c = time.perf_counter(), time.process_time()
            work(m)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            if i:  # the first pair warms up
                runs[on].append((N / wall, N / cpu))
    ratios = [b[0] / a[0] for a, b in zip(runs[False], runs[True], strict=True)]
    cpu_ratios = [b[1] / a[1] for a, b in zip(runs[False], runs[True], strict=True)]
    off, off_cpu = (statistics.median(x) for x in zip(*runs[False], strict=True))
    on, on_cpu = (statistics.median(x) for x in zip(*runs[True], strict=True))
    return (off, on, statistics.median(ratios), statistics.median(cpu_ratios), min(ratios),
            max(ratios))  # fmt: skip


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"127.0.0.1:{port}"
    out = tempfile.mkdtemp()
    dbg = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "dbg",
            "--headless",
            "--listen-addr",
            addr,
            "--ws-port",
            "0",
            "--dir",
            out,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        dbg.stdout.readline()
        print(
            f"{'workload':<34}{'off mut/s':>12}{'on mut/s':>12}{'ratio':>7}"
            f"{'range':>11}{'cpu ratio':>10}  target"
        )
        for name, schema, work, level, handlers, goal in (
            ("flat toggle, log off", FLAT, flat, 0, None, 0.5),
            ("relations + handlers, log off", RELS, rels, 0, Handlers, 0.8),
            ("relations + handlers, log ops", RELS, rels, 3, Handlers, 0.8),
        ):

            def make(on: bool, schema=schema, level=level, handlers=handlers) -> Machine:
                m = Machine(
                    schema,
                    log_level=level,
                    logger=lambda *_: None,
                    handlers=handlers() if handlers else None,
                )
                if on:
                    telemetry.attach(m, addr)
                return m

            off, on, ratio, cpu_ratio, low, high = rates(make, work, dbg.pid)
            ok = "met" if ratio >= goal else "MISSED"
            print(
                f"{name:<34}{off:>12,.0f}{on:>12,.0f}{ratio:>7.2f}{f'{low:.2f}-{high:.2f}':>11}"
                f"{cpu_ratio:>10.2f}  >= {goal} {ok}"
            )
        outbox, sender = telemetry._process[addr]
        sender.stop(10)
        print(f"telemetry frames dropped: {outbox.dropped}")
    finally:
        dbg.kill()  # its dump of this much history is not what is measured here
        dbg.wait(10)

    if FIXTURE.exists() and not os.environ.get("BENCH_NO_FIXTURE"):
        from dbg.dump import read_dump

        t = time.perf_counter()
        dumps = read_dump(FIXTURE)
        decode = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            res = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "vis",
                    "render-dump",
                    str(FIXTURE),
                    "-o",
                    str(Path(tmp) / "fixture"),
                ],
                capture_output=True,
                text=True,
            )
            render = time.perf_counter() - t
        status = "ok" if res.returncode == 0 else f"failed: {res.stderr.strip()}"
        print(
            f"Go fixture: decode {decode * 1000:.0f} ms ({len(dumps)} machines, "
            f"{sum(len(d.txs) for d in dumps)} transitions); "
            f"am vis render-dump {render * 1000:.0f} ms end to end ({status})"
        )


if __name__ == "__main__":
    main()
