"""Telemetry cost: mutations/s with a live debugger attached versus telemetry off.

The debugger (``am dbg --headless``) runs as its own process, as it would in use; the machine
streams every transition to it over loopback TCP. Workloads: a flat toggle (the cheapest
transition, so the worst case for relative overhead) and a relation-heavy mutation with
handlers, with logs off and at the ops level (what the example's machines look like). Note that a
machine nothing observes takes a fast path (no Transition object at all), so the flat toggle
compares telemetry against the cheapest possible mutation. Also times decoding and rendering the
Go debugger's fixture dump. Target: telemetry on >= 0.6x of off.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machines import Machine, State, telemetry

N = 100_000
REPEATS = 3
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


def rate(make, work) -> float:
    best = 0.0
    for _ in range(REPEATS):
        m = make()
        t = time.perf_counter()
        work(m)
        best = max(best, N / (time.perf_counter() - t))
    return best


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
        print(f"{'workload':<34}{'off mut/s':>12}{'on mut/s':>12}{'ratio':>8}  target >= 0.6")
        for name, schema, work, level, handlers in (
            ("flat toggle, log off", FLAT, flat, 0, None),
            ("relations + handlers, log off", RELS, rels, 0, Handlers),
            ("relations + handlers, log ops", RELS, rels, 3, Handlers),
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

            off = rate(lambda make=make: make(False), work)
            on = rate(lambda make=make: make(True), work)
            ok = "met" if on / off >= 0.6 else "MISSED"
            print(f"{name:<34}{off:>12,.0f}{on:>12,.0f}{on / off:>8.2f}  {ok}")
        outbox, sender = telemetry._process[addr]
        sender.stop(10)
        print(f"telemetry frames dropped: {outbox.dropped}")
    finally:
        dbg.kill()  # its dump of this much history is not what is measured here
        dbg.wait(10)

    if FIXTURE.exists():
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
