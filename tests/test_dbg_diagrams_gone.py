"""A machine that vanished (its process killed, its tab closed) logs no ``[pipe:gc]``: the
collector marks it gone when its telemetry connection ends, and the diagrams agree with the
log reader: ``--output-diagrams``, exported and headless dumps, and ``am vis`` draw no pipe to
or from it from then on. A connection the debugger itself closes (it stops) is no vanishing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
from test_dbg_pipes_gone import _box, _recorded_pipe
from test_dbg_ui import _mach
from test_vis import parse_d2, pipe_dump, render

from dbg.collector import Collector, serve_collector
from dbg.dump import read_dump, single_frame, write_dump
from dbg.model import time_to_ns
from dbg.ui.diagrams import snapshot, write_diagrams
from dbg.ui.session import Session
from vis.graph import Graph

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parents[1]


def _gone_at(second: int) -> int:
    return time_to_ns(datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC))


def test_am_vis_draws_no_pipe_to_a_machine_gone(tmp_path: Path) -> None:
    dump = pipe_dump()  # A pipes at 0 s, B at 1 s
    assert ("A.Ready", "B.Connected", "add") in render(tmp_path, dump, "--render-start").edges
    dump[1].gone_ns = _gone_at(5)  # B's connection ended after its last transition
    assert render(tmp_path, dump, "--render-start").edges == []
    # and the other way: the source gone ends them too; the pipes stay in the grouped view
    dump[1].gone_ns, dump[0].gone_ns = 0, _gone_at(5)
    assert render(tmp_path, dump, "--no-render-detailed-pipes").edges == []


def test_gone_time_orders_with_transitions() -> None:
    """A pipe made after the peer's end (a machine by that id came back) is drawn."""
    dump = pipe_dump()
    dump[1].gone_ns = _gone_at(1) - 1  # B went just before... its own last transition
    # the end never comes before a machine's own transitions: B's pipe-in pairs, then ends
    assert Graph.from_dump(dump).pipes == {}
    a_late = pipe_dump()
    a_late[1].gone_ns = _gone_at(0) - 1
    a_late[0].txs[0].time = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)  # A pipes after
    a_late[1].txs[0].log_entries = []
    a_late[1].txs[0].time = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert list(Graph.from_dump(a_late).pipes) == [("A", "B")]


def test_dumps_keep_when_a_machine_went(tmp_path: Path) -> None:
    dump = pipe_dump()
    dump[1].gone_ns = _gone_at(5)
    back = read_dump(write_dump(tmp_path / "d.cbor.br", dump))
    assert [m.gone_ns for m in back] == [0, _gone_at(5)]
    # a single frame before the end: not gone yet; after it: gone
    assert single_frame(back, datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))[1].gone_ns == 0
    late = single_frame(back, datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC))
    assert late[1].gone_ns == _gone_at(5)
    c = Collector()
    c.load(back)  # imported, then exported again: still gone
    assert [m.gone_ns for m in c.dumps()] == [0, _gone_at(5)]


def _pipes_in_snapshot(sess: Session) -> dict:
    return Graph.from_dump(snapshot(sess)).pipes


def _mach_d2(out: dict):
    live = out["mach"][0]  # <layout>.active.svg; its layout's D2 source is <layout>.d2
    return parse_d2(live.with_name(live.name.removesuffix(".active.svg") + ".d2").read_text())


def test_output_diagrams_end_the_pipes_of_a_machine_gone(tmp_path: Path) -> None:
    rec, _, conn2 = _recorded_pipe()
    c = rec.collector
    sess = Session(c, tail=False)
    sess.goto("mach://live-s")
    sess.last()
    assert list(_pipes_in_snapshot(sess)) == [("live-s", "live-g")]
    out = write_diagrams(snapshot(sess), "live-s", 1, tmp_path)
    d2 = _mach_d2(out)
    assert ("live-s.Foo", "live-g", "add") in d2.edges
    time.sleep(0.01)
    c.disconnect(conn2)  # live-g's producer went away
    assert _pipes_in_snapshot(sess) == {}  # the newest transition stands for now
    out = write_diagrams(snapshot(sess), "live-s", 1, tmp_path)
    d2 = _mach_d2(out)
    assert d2.edges == []
    sess.move(-1)  # Ready, before the end: the pipe was there
    assert list(_pipes_in_snapshot(sess)) == [("live-s", "live-g")]


def test_the_collector_stopping_is_not_a_machine_going() -> None:
    """A producer that closes its connection is gone; one cut off because the collector
    stops is only disconnected (the dump written on exit keeps its pipes)."""

    async def main() -> Collector:
        c = Collector()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                port, _ = await nursery.start(
                    lambda task_status: serve_collector(c, "127.0.0.1", 0, task_status=task_status)
                )
                streams = {}
                for mid in ("closes", "stays"):
                    box = _box(_mach(mid))
                    streams[mid] = await trio.open_tcp_stream("127.0.0.1", port)
                    await streams[mid].send_all(box.take())
                await c.wait_until(lambda c: len(c.machines) == 2)
                await streams["closes"].aclose()
                await c.wait_until(lambda c: not c.machines["closes"].connected)
                nursery.cancel_scope.cancel()
        return c

    c = trio.run(main)
    assert c.machines["closes"].gone_ns > 0
    assert not c.machines["stays"].connected and c.machines["stays"].gone_ns == 0


PRODUCER = """
import sys
from machines import Machine, State
from machines.pipes import pipe_add
schema = {"Start": State(), "Foo": State(), "Go": State()}
me = sys.argv[1]
a = Machine(schema, id=me + "-a", log_level=3, logger=lambda *_: None)
b = Machine(schema, id=me + "-b", log_level=3, logger=lambda *_: None)
pipe_add(a, b, "Foo", "Go")
a.add("Foo")
print("ready", flush=True)
sys.stdin.read()
"""


def _await_dump(out_dir: Path, ready: Callable[[dict], object], timeout: float = 60) -> None:
    """Until the headless debugger's periodic dump (``--dump-interval``) satisfies ``ready``
    (machine id -> its dump)."""
    path = out_dir / "am-dbg-dump.cbor.br"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            machs = {m.id: m for m in read_dump(path)}
            if ready(machs):
                return
        time.sleep(0.05)
    raise AssertionError(f"the dump did not get there in {timeout} s")


def test_headless_dump_and_am_vis_after_a_producer_was_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "AM_LOG": "3"}
    dbg = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "-l", "127.0.0.1:0",
         "--ws-port", "0", "-d", str(tmp_path), "--dump-interval", "0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    procs = []
    try:
        assert dbg.stdout is not None
        line = dbg.stdout.readline()
        port = line.split("collecting on 127.0.0.1:")[1].split(",")[0].split(";")[0]
        env["AM_DBG_ADDR"] = f"127.0.0.1:{port}"
        for who in ("killed", "alive"):
            p = subprocess.Popen(
                [sys.executable, "-c", PRODUCER, who],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(p)
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        # the periodic dump shows what the collector holds: await it rather than a guess of
        # how long a loaded machine takes to send, read and notice a closed connection
        _await_dump(tmp_path, lambda ms: len(ms) == 4 and all(m.txs for m in ms.values()))
        procs[0].kill()
        procs[0].wait(10)
        _await_dump(tmp_path, lambda ms: ms["killed-a"].gone_ns and ms["killed-b"].gone_ns)
        dbg.send_signal(signal.SIGINT)
        _, err = dbg.communicate(timeout=30)
        assert dbg.returncode == 0, err
    finally:
        for p in procs + [dbg]:
            p.kill()
            p.wait(10)
    dump = read_dump(tmp_path / "am-dbg-dump.cbor.br")
    gone = {m.id: bool(m.gone_ns) for m in dump}
    assert gone == {"killed-a": True, "killed-b": True, "alive-a": False, "alive-b": False}
    edges = render(tmp_path, str(tmp_path / "am-dbg-dump.cbor.br"), "--render-start").edges
    assert [(a.split(".")[0], b.split(".")[0], k) for a, b, k in edges] == [
        ("alive-a", "alive-b", "add")
    ]
    assert not any("killed" in a or "killed" in b for a, b, _ in edges)
