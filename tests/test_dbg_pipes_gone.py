"""A machine that vanishes without being disposed (its process killed, its tab closed) logs no
``[pipe:gc]``: when its telemetry connection ends, the log reader ends its pipes and its peers'
pipes to it (dbg/ui/pipes.py), as the reference does on a disconnect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_dbg_ui import SCHEMA, Recorder, _mach, run, text

from dbg.collector import Collector
from dbg.ui.live import LiveServer, LockedCollector
from machines import Machine, telemetry
from machines.pipes import pipe_add
from machines.telemetry import FrameDecoder, Outbox

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parents[1]

PRODUCER = """
import sys
from machines import Machine, State
from machines.pipes import pipe_add
schema = {"Start": State(), "Foo": State(), "Bar": State(), "Go": State()}
a = Machine(schema, id="gone-a", log_level=3, logger=lambda *_: None)
b = Machine(schema, id="gone-b", log_level=3, logger=lambda *_: None)
a.add("Start")
pipe_add(a, b, "Foo", "Go")
a.add("Foo")  # piped: b gets Go
a.add("Bar")
print("ready", flush=True)
sys.stdin.read()  # until killed
"""


def _wait(pred, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_killed_producer_ends_its_pipes_in_the_reader():
    collector = LockedCollector()
    bound: list[tuple[int, int | None]] = []
    ready = threading.Event()
    live = LiveServer(collector, "127.0.0.1", 0, None)
    live.start(on_ready=lambda b: (bound.append(b), ready.set()))
    assert ready.wait(15), live.error
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AM_DBG_ADDR": f"127.0.0.1:{bound[0][0]}",
        "AM_LOG": "3",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"

        def both_piped() -> bool:
            with collector.lock:
                a, b = collector.machines.get("gone-a"), collector.machines.get("gone-b")
                return a is not None and b is not None and len(a) >= 3 and len(b) >= 1

        _wait(both_piped, "the producer's transitions")

        async def body(app, pilot):
            await _newest(app, pilot, "mach://gone-a")
            assert "Pipe-out Foo -> mach://gone-b (add)" in text(app, "#reader")
            proc.send_signal(signal.SIGKILL)  # no dispose, no [pipe:gc]
            # the newest transition stands for now: the machine is gone, so are its pipes
            deadline = time.monotonic() + 30
            while "Pipe-out" in text(app, "#reader"):
                assert time.monotonic() < deadline, "the pipe stayed in the reader"
                await pilot.pause(0.05)
            assert not collector.machines["gone-a"].connected
            assert collector.machines["gone-a"].gone_ns
            await _newest(app, pilot, "mach://gone-b")
            assert "Pipe-in" not in text(app, "#reader")
            # history keeps them: a's transition that made the pipe still shows it
            await _newest(app, pilot, "mach://gone-a")
            await pilot.press("left")  # Foo, which the pipe passed on
            assert "Pipe-out Foo -> mach://gone-b (add)" in text(app, "#reader")

        run(body, collector, session={"tail": False})
    finally:
        proc.kill()
        proc.wait(10)


async def _newest(app, pilot, addr: str) -> None:
    """Open a machine in the reader at its newest transition."""
    app.session.goto(addr)
    await pilot.pause()
    await pilot.press("end")


def _box(*machs) -> Outbox:
    box = Outbox(limit=100_000)
    for m in machs:
        telemetry.DbgTracer(box, full=True).attach(m)
    return box


def _ingest(c: Collector, conn: str, box: Outbox) -> None:
    for kind, msg in FrameDecoder(packed=True).feed(box.take()):
        c.ingest(conn, kind, msg)


def _recorded_pipe() -> tuple[Recorder, Machine, str]:
    """live-s (the recorder's conn-1, returned with it) pipes Foo into live-g (its own
    connection, returned)."""
    rec = Recorder()
    c = rec.collector
    s = rec.attach(_mach("live-s"), full=False)
    g = _mach("live-g", {"Go": SCHEMA["Start"]})
    conn2 = c.connect()
    gbox = _box(g)
    s.add("Start")
    pipe_add(s, g, "Foo", "Go")
    s.add("Ready")  # carries the pipe line
    s.add("Bar")
    rec.flush()
    _ingest(c, conn2, gbox)
    return rec, s, conn2


def test_a_live_machine_pipe_to_a_gone_peer_ends_from_the_disconnect_on():
    """The peer reported over another connection, which ended: the survivor's reader shows
    the pipe at its transitions before the end, not at its newest nor at later ones."""
    rec, s, conn2 = _recorded_pipe()
    c = rec.collector

    async def body(app, pilot):
        sess = app.session
        await _newest(app, pilot, "mach://live-s")
        assert "Pipe-out Foo -> mach://live-g (add)" in text(app, "#reader")
        c.disconnect(conn2)
        await pilot.press("left")
        await pilot.press("end")  # Bar, the newest: now, and g is gone
        assert "Pipe-out" not in text(app, "#reader")
        await pilot.press("left")  # Ready, before the end: the pipe was there
        assert "Pipe-out Foo -> mach://live-g (add)" in text(app, "#reader")
        time.sleep(0.01)
        s.add("Msg")  # after the end: no pipe to g there either
        rec.flush()
        sess.sync()
        await pilot.press("end")
        assert "Msg" in text(app, "#reader") and "Pipe-out" not in text(app, "#reader")
        await pilot.press("left")  # Bar: before the end, no longer the newest
        assert "Pipe-out Foo -> mach://live-g (add)" in text(app, "#reader")

    run(body, c, session={"tail": False})
