"""The debugger's C.5/C.6 features beyond the first UI: clean-on-connect, the "Single Frame"
export, text outputs into --dir, schema groups, wheel and paging keys, the light theme.
Real machines report through the real tracer; the UI runs under Textual's pilot."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from test_dbg_ui import SCHEMA, Recorder, _mach, run, story, text

from dbg.collector import Collector
from dbg.dump import read_dump, single_frame
from dbg.model import MachineDump
from dbg.ui.live import LiveServer, LockedCollector
from dbg.ui.session import Session
from machines import telemetry
from machines.telemetry import FrameDecoder, Outbox, TcpSender

pytestmark = pytest.mark.timeout(60)


def _send(*machs) -> Outbox:
    """Trace ``machs`` into an outbox (ingested later over one connection)."""
    box = Outbox(limit=100_000)
    for m in machs:
        telemetry.DbgTracer(box).attach(m)
    return box


def _ingest(collector: Collector, conn: str, box: Outbox) -> None:
    for kind, msg in FrameDecoder().feed(box.take()):
        collector.ingest(conn, kind, msg)


# ----- 1. clean-on-connect (C.4, C.6 #5)


@pytest.mark.parametrize("clean", [True, False])
def test_clean_on_connect_drops_disconnected_machines_for_a_new_connection(clean):
    cleaned: list[list[MachineDump]] = []
    c = Collector(clean_on_connect=clean, on_clean=cleaned.append)
    conn1 = c.connect()
    a, b = _mach("cc-a"), _mach("cc-b")
    box = _send(a, b)
    a.add("Start")
    b.add("Start")
    _ingest(c, conn1, box)
    # a second connection while conn1's machines are connected: nothing is dropped
    conn2 = c.connect()
    x = _mach("cc-x")
    box2 = _send(x)
    x.add("Start")
    _ingest(c, conn2, box2)
    assert set(c.machines) == {"cc-a", "cc-b", "cc-x"}
    c.disconnect(conn1)
    assert set(c.machines) == {"cc-a", "cc-b", "cc-x"}  # cc-x still connected
    c.disconnect(conn2)
    # every machine is disconnected: a new connection starts a fresh list
    conn3 = c.connect()
    d = _mach("cc-d")
    box3 = _send(d)
    d.add("Start")
    _ingest(c, conn3, box3)
    if clean:
        assert set(c.machines) == {"cc-d"}
        assert c.cleaned == 3
        assert [sorted(m.id for m in dumps) for dumps in cleaned] == [["cc-a", "cc-b", "cc-x"]]
        assert all(len(m.txs) == 1 for m in cleaned[0])  # their history went to on_clean
    else:
        assert set(c.machines) == {"cc-a", "cc-b", "cc-x", "cc-d"}
        assert not cleaned and c.cleaned == 0
    assert len(c.machines["cc-d"].txs) == 1


def test_clean_on_connect_same_id_reconnecting_and_imported_data():
    c = Collector(clean_on_connect=True)
    rec = Recorder()
    m = rec.attach(_mach("re-1"))
    m.add("Start")
    imported = rec.flush().dumps()
    c.load(imported)  # imported machines are disconnected
    conn = c.connect()
    m2 = _mach("re-1")
    box = _send(m2)
    m2.add(["Start", "Ready"])
    _ingest(c, conn, box)
    # the imported record was dropped first: re-1 is the new run's only
    assert list(c.machines) == ["re-1"]
    assert c.machines["re-1"].connected and len(c.machines["re-1"].txs) == 1


def test_clean_on_connect_live_in_the_ui():
    """Two runs of a program over real sockets: the second replaces the first in the list."""
    collector = LockedCollector(clean_on_connect=True)
    live = LiveServer(collector, "127.0.0.1", 0, ws_port=None)

    async def wait(pilot, cond, what: str):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await pilot.pause(0.05)
            if cond():
                return
        raise AssertionError(f"timed out waiting for {what}")

    async def body(app, pilot):
        await wait(pilot, lambda: live.bound, "the port")
        addr = f"127.0.0.1:{live.bound[0]}"
        first = _mach("run-1")
        sender = TcpSender(_send(first), addr).start()
        first.add("Start")
        await wait(pilot, lambda: app.session.mach == "run-1", "run-1 selected")
        await asyncio.get_running_loop().run_in_executor(None, sender.stop)
        await wait(
            pilot,
            lambda: not collector.machines["run-1"].connected,
            "run-1 disconnected",
        )
        second = _mach("run-2")
        sender = TcpSender(_send(second), addr).start()
        second.add("Start")
        await wait(pilot, lambda: app.session.mach == "run-2", "run-2 selected")
        await asyncio.get_running_loop().run_in_executor(None, sender.stop)
        assert list(collector.machines) == ["run-2"]
        assert "run-1" not in text(app, "#list")

    run(body, collector, live=live)


# ----- 2. export "Single Frame" (C.4)


def _two_machines() -> Collector:
    rec = Recorder()
    a = rec.attach(_mach("sf-a"), full=False)
    b = rec.attach(_mach("sf-b"), full=False)
    for i in range(5):  # the collector stamps arrival: a, b, a, b... a few ms apart
        a.add("Msg", {"i": i})
        rec.flush()
        time.sleep(0.002)
        b.add("Msg", {"i": i})
        rec.flush()
        time.sleep(0.002)
    return rec.collector


def test_single_frame_keeps_the_first_tx_at_or_after_the_cursor_time():
    c = _two_machines()
    a, b = c.machines["sf-a"].txs, c.machines["sf-b"].txs
    frame = {m.id: m for m in single_frame(c.dumps(), a[2].time)}
    assert [t.id for t in frame["sf-a"].txs] == [a[2].id]
    assert [t.id for t in frame["sf-b"].txs] == [b[2].id]  # b's 3rd came after a's 3rd
    # after every transition: each machine's last one (its state then)
    late = single_frame(c.dumps(), b[-1].time.replace(year=2100))
    assert [m.txs[0].id for m in late] == [a[-1].id, b[-1].id]


def test_single_frame_export_from_the_dialog_and_reimport(tmp_path: Path):
    c = _two_machines()
    a = c.machines["sf-a"].txs

    async def body(app, pilot):
        app.session.goto(f"mach://sf-a/{a[1].id}")
        await pilot.press("alt+s")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#prompt").value = "frame"
        await pilot.click("#single")
        assert dialog.query_one("#single").value
        await pilot.click("#save")
        await pilot.pause()
        return text(app, "#status")

    status = run(body, c, out_dir=tmp_path)
    path = tmp_path / "frame.cbor.br"
    assert str(path) in status
    dumps = {d.id: d for d in read_dump(path)}
    assert [t.id for t in dumps["sf-a"].txs] == [a[1].id]
    assert len(dumps["sf-b"].txs) == 1
    # re-importable: a session opens it
    again = Collector()
    again.load(list(dumps.values()))
    s = Session(again, tail=False)
    s.goto(f"mach://sf-a/{a[1].id}")
    assert s.counts()[1] == 1 and s.info.tx.clocks == a[1].clocks


def test_export_dialog_without_single_frame_writes_everything(tmp_path: Path):
    c = _two_machines()

    async def body(app, pilot):
        await pilot.press("alt+s")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()

    run(body, c, out_dir=tmp_path)
    dumps = {d.id: d for d in read_dump(tmp_path / "am-dbg-dump.cbor.br")}
    assert len(dumps["sf-a"].txs) == 5 and len(dumps["sf-b"].txs) == 5


# ----- 3. text outputs into --dir (C.5 #20, C.6 #13)


async def _until(pilot, cond, what: str, limit: float = 10):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {what}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_outputs_follow_the_cursor(tmp_path: Path):
    rec = Recorder()
    m = rec.attach(_mach("out-1", steps=True), full=False)
    m.add("Start")
    m.add(["Ready", "Foo"])
    kid = rec.attach(_mach("out-2", {"Go": SCHEMA["Start"]}, parent=m), full=False)
    kid.add("Go")
    c = rec.flush()
    txs = c.machines["out-1"].txs
    tx_md, log_md, clients = (tmp_path / n for n in ("tx.md", "log.md", "clients.txt"))

    async def body(app, pilot):
        app.session.goto(f"mach://out-1/{txs[1].id}")
        app.paint()
        await _until(pilot, lambda: f"mach://out-1/{txs[1].id}" in _read(tx_md), "tx.md")
        body = _read(tx_md).splitlines()
        assert body[0] == f"# mach://out-1/{txs[1].id}"
        assert body[2] == txs[1].time.isoformat(timespec="microseconds")  # RFC3339
        assert body[3] == "[add] Ready Foo"
        steps = [ln for ln in body if ln.startswith("- ")]
        assert len(steps) == len(txs[1].steps) > 0
        assert "- activate Foo" in steps
        # a key moves the cursor: tx.md follows
        await pilot.press("left")
        await _until(pilot, lambda: f"mach://out-1/{txs[0].id}" in _read(tx_md), "tx.md moved")
        assert "[add] Start" in _read(tx_md)
        await _until(pilot, lambda: f"## {txs[0].id}" in _read(log_md), "log.md")
        log = _read(log_md)
        assert log.startswith("# out-1 log")
        assert f"## {txs[0].id} t1 (current)" in log and f"## {txs[1].id}" in log
        lines = _read(clients).splitlines()
        assert lines[0].startswith("out-1 disconnected") or lines[0].startswith("out-1 ")
        assert lines[1].startswith("  out-2 ") and "parent:out-1" in lines[1]
        assert app.outputs.writes >= 4

    run(body, c, out_dir=tmp_path, outputs={"tx", "log", "clients"})


def test_outputs_into_an_unwritable_dir_one_line_and_the_ui_keeps_going(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    c = story()

    async def body(app, pilot):
        s = app.session
        await _until(pilot, lambda: "cannot write into" in text(app, "#status"), "the error")
        status = text(app, "#status")
        assert str(blocker) in status and "\n" not in status
        before = s.index
        await pilot.press("left")
        assert s.index < before  # keys still work

    run(body, c, out_dir=blocker / "out", outputs={"tx"})


def test_outputs_never_block_a_key(tmp_path: Path):
    """A long history: the log is rendered and written off the UI's thread."""
    c = story()

    async def body(app, pilot):
        await _until(pilot, lambda: (tmp_path / "log.md").exists(), "log.md")
        worst = 0.0
        for _ in range(10):
            t0 = time.perf_counter()
            await pilot.press("left")
            worst = max(worst, time.perf_counter() - t0)
        assert worst < 1.0  # generous: the machine is shared

    run(body, c, out_dir=tmp_path, outputs={"tx", "log"})
