"""The debugger's terminal UI, driven by Textual's headless pilot (C.6 scenarios 1, 4, 6-11,
19): real machines report through the real telemetry path, live over loopback or recorded
through the tracer's frames into the collector (the same parse as a socket)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import cbor2
import pytest

from dbg.collector import Collector
from dbg.dump import read_dump
from dbg.model import MachineDump
from dbg.ui.address import AddrError, AddrHistory, MachAddr
from dbg.ui.app import DebuggerApp
from dbg.ui.history import step_text
from dbg.ui.live import LiveServer, LockedCollector
from dbg.ui.matrix import matrix_rows, rain_cells
from dbg.ui.session import Session
from machines import Machine, State, telemetry
from machines.telemetry import TX_FIELDS, FrameDecoder, Outbox, encode_frame

pytestmark = pytest.mark.timeout(60)

FIXTURES = Path(__file__).parent / "fixtures"
GO_DUMP = FIXTURES / "go-am-dbg-sim.gob.br"

SCHEMA = {
    "Start": State(),
    "Ready": State(require=["Start"]),
    "Foo": State(require=["Ready"], remove=["Bar"]),
    "Bar": State(remove=["Foo"]),
    "Msg": State(multi=True),
    "Healthcheck": State(multi=True),
}


class Handlers:
    def FooEnter(self, e):
        return True

    def FooState(self, e):
        pass


async def bound(live: LiveServer) -> tuple:
    """The ports ``live`` listens on, once the app's guest trio run has bound them."""
    for _ in range(100):
        if live.bound:
            return live.bound
        await asyncio.sleep(0.02)
    raise AssertionError("the live server did not bind in 2 s")


def _mach(mid: str = "m1", schema=SCHEMA, steps: bool = False, **kw) -> Machine:
    m = Machine(schema, id=mid, log_level=3, logger=lambda *_: None, **kw)
    m.log_steps = steps
    return m


class Recorder:
    """Real machines -> real tracer -> frames -> a collector (as over one connection)."""

    def __init__(self) -> None:
        self.box = Outbox(limit=1_000_000)
        self.collector = Collector()
        self.conn = self.collector.connect()

    def attach(self, mach: Machine, full: bool = True) -> Machine:
        telemetry.DbgTracer(self.box, full=full).attach(mach)
        return mach

    def flush(self) -> Collector:
        for kind, msg in FrameDecoder(packed=True).feed(self.box.take()):  # as am dbg reads
            self.collector.ingest(self.conn, kind, msg)
        return self.collector


def story() -> Collector:
    """m1: 100+ transitions with Foo changing at known places, canceled and health ones."""
    rec = Recorder()
    m = rec.attach(_mach(), full=False)
    m.add("Start")
    m.add("Ready")
    for i in range(120):
        if i == 70:
            m.add("Foo")  # the first Foo change after the start
        elif i == 90:
            m.add("Bar")  # removes Foo
        elif i % 25 == 0:
            m.add("Healthcheck")
        else:
            m.add("Msg", {"i": i})
    m.remove("Start")  # Ready goes too (requires Start)
    m.add("Foo")  # canceled: Ready missing
    return rec.flush()


def run(coro_fn, collector: Collector, size=(160, 50), **kw):
    """Run ``coro_fn(app, pilot)`` inside the app; returns its result."""

    async def main():
        app = DebuggerApp(Session(collector, **kw.pop("session", {})), **kw)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            try:
                return await coro_fn(app, pilot)
            finally:
                if app.live is not None:
                    await app.live.stop()

    return asyncio.run(main())


def text(app: DebuggerApp, wid: str) -> str:
    return app.query_one(wid).content.plain


def test_a_burst_bigger_than_a_read_is_shown_whole_in_tail_mode():
    """A sync reads a slice of what arrived; after a burst (no more data coming) the next
    frames read the rest, so tail mode ends at the last transition."""
    rec = Recorder()
    m = rec.attach(_mach("burst"), full=False)
    for _ in range(3000):
        m.add("Foo")
        m.remove("Foo")
    collector = rec.flush()
    n = len(collector.machines["burst"])
    assert n == 6000

    async def body(app, pilot):
        deadline = time.monotonic() + 30
        while f"Transition {n} / {n}" not in text(app, "#txtl"):
            assert time.monotonic() < deadline, text(app, "#txtl")
            await pilot.pause(0.05)
        assert app.session.tail and app.session.counts()[0] == n

    run(body, collector)


# ----- C.6 1 and 4: live producers over loopback


def test_live_producer_listed_selected_in_tail_mode_at_its_last_tx():
    collector = LockedCollector()
    live = LiveServer(collector, "127.0.0.1", 0, ws_port=None)

    async def body(app, pilot):
        await bound(live)
        port = live.bound[0]
        m = _mach("live-m1")
        telemetry.attach(m, f"127.0.0.1:{port}")
        m.add("Start")
        m.add("Ready")
        m.add("Foo")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await pilot.pause(0.05)
            rec = collector.machines.get("live-m1")
            if rec is not None and len(rec) == 3 and app.session.counts()[1] == 3:
                break
        s = app.session
        assert s.mach == "live-m1" and s.tail
        assert s.counts() == (3, 3, 3)
        assert s.info.tx.id == collector.machines["live-m1"].txs[-1].id
        assert "Transition 3 / 3" in text(app, "#txtl")
        assert "live-m1" in text(app, "#list")
        assert text(app, "#addr").strip().endswith(str(s.addr()))
        assert text(app, "#txbar").startswith("Tail")
        # a new transition moves the cursor (tail), a manual move pauses
        m.add("Bar")
        for _ in range(200):
            await pilot.pause(0.05)
            if s.counts()[0] == 4:
                break
        assert s.counts() == (4, 4, 4)
        await pilot.press("left")
        assert not s.tail and s.counts()[0] == 3
        await app.action_quit()

    run(body, collector, live=live)
    assert live.error is None


def test_live_with_no_machine_yet_says_where_machines_report():
    """A first `am dbg` showed empty panes and no clue: the schema pane names the address
    for AM_DBG_ADDR (the bound port, also with -l HOST:0) until a machine connects."""
    collector = LockedCollector()
    live = LiveServer(collector, "127.0.0.1", 0, ws_port=None)

    async def body(app, pilot):
        await bound(live)
        port = live.bound[0]
        for _ in range(100):
            await pilot.pause(0.05)
            if f":{port}" in text(app, "#tree"):
                break
        assert f"no machine yet: run them with AM_DBG_ADDR=127.0.0.1:{port}" in text(app, "#tree")
        m = _mach("hint-m1")
        telemetry.attach(m, f"127.0.0.1:{port}")
        m.add("Start")
        for _ in range(200):
            await pilot.pause(0.05)
            if "AM_DBG_ADDR" not in text(app, "#tree"):
                break
        assert "Start" in text(app, "#tree")
        await app.action_quit()

    run(body, collector, live=live)


def _frames(*frames: bytes) -> bytes:
    return b"".join(frames)


def _tx(mid: str, tid: str, clocks: list[int]) -> list:
    arr = [None] * len(TX_FIELDS)
    arr[0], arr[1], arr[2], arr[5], arr[6] = mid, tid, clocks, [], 1
    return arr


def test_foreign_and_unknown_txs_ignored_garbage_dropped_disconnect_greys():
    collector = LockedCollector()
    live = LiveServer(collector, "127.0.0.1", 0, ws_port=None)
    schema = {"id": "raw-1", "states_index": ["A", "B"], "states": {"A": {}, "B": {}}}

    async def body(app, pilot):
        await bound(live)
        addr = ("127.0.0.1", live.bound[0])

        async def until(pred):
            for _ in range(200):
                await pilot.pause(0.05)
                if pred():
                    return
            raise AssertionError("timed out")

        owner = socket.create_connection(addr)
        owner.sendall(_frames(encode_frame("schema", schema),
                              encode_frame("txs", [_tx("raw-1", "t1", [1, 0])])))  # fmt: skip
        await until(lambda: app.session.counts()[1] == 1)
        other = socket.create_connection(addr)
        other.sendall(encode_frame("txs", [_tx("raw-1", "evil", [3, 3]), _tx("nope", "x", [1])]))
        garbage = socket.create_connection(addr)
        body_ = cbor2.dumps({"t": "bogus"})
        garbage.sendall(struct.pack(">I", len(body_)) + body_)
        await until(lambda: collector.ignored == 2)
        # the garbage connection is closed by the debugger
        garbage.settimeout(5)
        assert garbage.recv(10) == b""
        owner.sendall(encode_frame("txs", [_tx("raw-1", "t2", [1, 1])]))
        await until(lambda: app.session.counts()[1] == 2)
        assert [i.tx.id for i in app.session.current.infos] == ["t1", "t2"]
        row = app.session.rows()[0]
        assert row.connected
        owner.close()
        await until(lambda: not app.session.rows()[0].connected)
        assert app.session.counts()[1] == 2  # kept
        for s in (other, garbage):
            s.close()
        await app.action_quit()

    run(body, collector, live=live)


# ----- C.6 6: navigation and the address bar


def test_navigation_keys_move_cursor_and_address_bar():
    collector = story()
    infos_ids = [tx.id for tx in collector.machines["m1"].txs]

    async def body(app, pilot):
        s = app.session
        total = s.counts()[1]
        assert s.counts()[0] == total  # tail: at the last
        await pilot.press("home")
        assert s.counts()[0] == 1
        assert text(app, "#addr").strip().endswith(f"mach://m1/{s.info.tx.id}")
        await pilot.press("right", "right")
        assert s.counts()[0] == 3
        await pilot.press("left")
        assert s.counts()[0] == 2
        await pilot.press("alt+l")
        assert s.counts()[0] == 52
        await pilot.press("alt+h")
        assert s.counts()[0] == 2
        # with Foo selected, Alt+L goes to the next tx that changed or called Foo
        s.state = "Foo"
        await pilot.press("alt+l")
        foo = s.current.states.index("Foo")
        assert s.info.changed(foo) and foo in s.info.added
        at = s.index
        await pilot.press("alt+l")
        assert s.index > at and foo in s.info.removed  # Bar removed it
        await pilot.press("alt+h")
        assert s.index == at
        await pilot.press("end")
        assert s.counts()[0] == total
        assert str(s.addr()) == f"mach://m1/{infos_ids[-1]}"
        # the address bar's history: back to where we were before the jump
        await pilot.press("left_square_bracket")
        return s.mach

    assert run(body, collector) == "m1"


def test_open_address_and_history():
    collector = story()
    tx_id = collector.machines["m1"].txs[10].id

    async def body(app, pilot):
        s = app.session
        await pilot.press("ctrl+l")
        await pilot.pause()
        inp = app.screen.query_one("#prompt")
        inp.value = f"mach://m1/{tx_id}"
        await pilot.press("enter")
        await pilot.pause()
        assert s.info.tx.id == tx_id
        await pilot.press("left_square_bracket")
        assert s.info.tx.id != tx_id
        await pilot.press("right_square_bracket")
        assert s.info.tx.id == tx_id
        app.session.goto("mach://m1?t=3")
        assert s.info.time_sum == 3
        with pytest.raises(AddrError):
            s.goto("mach://nope")

    run(body, collector, open_addr=None)


def test_an_address_of_no_loaded_machine_says_so():
    """``am dbg -i DUMP mach://typo`` opened another machine without a word."""

    async def body(app, pilot):
        await pilot.pause(0.1)
        return text(app, "#status")

    shown = run(body, story(), open_addr=MachAddr("nope"))
    assert "no machine 'nope' in the imported data" in shown, shown


# ----- C.6 7: steps


def test_steps_timeline_walks_steps_with_marks_and_status():
    rec = Recorder()
    m = rec.attach(_mach(steps=True, handlers=Handlers()), full=False)
    m.add("Start")
    m.add(["Ready", "Foo"])  # steps: called, relations, activations, handlers
    m.add("Bar")  # removes Foo
    collector = rec.flush()

    async def body(app, pilot):
        s = app.session
        await pilot.press("home")  # on the first tx; the next one is Ready+Foo
        nxt = s.next_info
        steps = nxt.tx.steps
        assert steps, "full telemetry ships steps"
        app.query_one("#steptl").focus()
        await pilot.press("right")
        assert s.step == 1 and s.counts()[0] == 1  # stepping, not moving
        marks_seen = set()
        for _ in range(len(steps) - 1):
            await pilot.press("right")
            tree = text(app, "#tree")
            marks_seen |= {line[0] for line in tree.splitlines() if line[:1] in "+-*!"}
        assert "+" in marks_seen
        assert text(app, "#status").rstrip().endswith(step_text(steps[-1]))
        assert f"Next mutation step {len(steps)} / {len(steps)}" in text(app, "#steptl")
        await pilot.press("right")  # past the last step: onto that transition
        assert s.step == 0 and s.counts()[0] == 2
        await pilot.press("left")  # back: the previous tx's last step
        assert s.counts()[0] == 1 and s.step == len(steps)
        # Alt+J/K from anywhere
        app.query_one("#list").focus()
        await pilot.press("alt+j")
        assert s.step == len(steps) - 1
        await pilot.press("alt+k")
        assert s.step == len(steps)
        # the Bar transition deactivates Foo: a "-" mark
        await pilot.press("right")  # a manual move: onto the transition, steps reset
        assert s.counts()[0] == 2 and s.step == 0
        app.query_one("#steptl").focus()
        for _ in range(len(s.next_info.tx.steps)):
            await pilot.press("right")
        tree = text(app, "#tree").splitlines()
        assert any(line.startswith("-Foo") for line in tree)

    run(body, collector)


# ----- C.6 8: play


def test_space_plays_about_two_tx_per_second_and_stops_at_the_end():
    collector = story()

    async def body(app, pilot):
        s = app.session
        await pilot.press("end")
        await pilot.press("left", "left", "left")
        start = s.counts()[0]
        t0 = time.monotonic()
        await pilot.press("space")
        # playing, or (a loaded machine answers the key late) played on already
        assert s.playing or s.counts()[0] > start
        while s.playing and time.monotonic() - t0 < 20:
            await pilot.pause(0.05)
        elapsed = time.monotonic() - t0
        assert not s.playing and s.counts()[0] == start + 3 == s.counts()[1]
        assert elapsed >= 1.0  # 3 tx at 2/s: never faster (load only makes it slower)
        await pilot.press("home", "space")
        await pilot.pause(0.7)
        await pilot.press("right")  # any manual move pauses
        assert not s.playing
        at = s.counts()[0]
        await pilot.pause(1.1)
        assert s.counts()[0] == at

    run(body, collector)


# ----- C.6 9: filters


def test_filters_change_navigation_counts_and_log():
    collector = story()

    async def body(app, pilot):
        s = app.session
        raw = s.counts()[2]
        _, shown, _ = s.counts()
        assert "health" in s.filters.on
        healthy = sum(1 for i in s.current.infos if i.kinds & 16)
        assert healthy == 5 and shown == raw - healthy
        assert f"Transition {shown} / {shown} [{raw}]" in text(app, "#txtl")
        await pilot.press("5")  # health off
        assert s.counts()[1] == raw
        canceled = sum(1 for i in s.current.infos if not i.tx.accepted)
        assert canceled == 1
        await pilot.press("1")  # canceled on
        assert s.counts()[1] == raw - 1
        assert "[x]canceled" in text(app, "#toolbar")
        # navigation skips the hidden: End lands on the last accepted one
        await pilot.press("end")
        assert s.info.tx.accepted
        assert "[cance]" not in text(app, "#log") and "[cancel" not in text(app, "#log")
        await pilot.press("1")
        await pilot.press("end")
        assert not s.info.tx.accepted
        # the log shows the canceled transition's line
        log = text(app, "#log")
        assert log.splitlines()[-1] == "▌[cance] add Foo"
        # empty: the accepted no-op adds (Msg always ticks, so none here) -> same count
        await pilot.press("4")
        assert s.counts()[1] == raw
        # disconn hides disconnected machines from the list
        await pilot.press("7")
        assert [r.id for r in s.rows()] == ["m1"]
        collector.disconnect("conn-1")
        await pilot.pause(0.5)  # data repaints at most every 0.25 s
        assert s.rows() == [] and "m1" not in text(app, "#list")

    run(body, collector, session={"tail": True})


# ----- C.6 10: matrix and rain


def test_matrix_and_rain_symbols_for_a_canceled_call_and_a_deactivation():
    rec = Recorder()
    m = rec.attach(_mach(steps=True), full=False)
    m.add("Start")
    m.add(["Ready", "Foo"])
    m.add("Bar")  # deactivates Foo
    m.remove("Start")  # deactivates Ready too (require)
    m.add("Foo")  # canceled
    collector = rec.flush()
    h = Session(collector)
    h.sync()
    hist = h.current
    idx = {n: i for i, n in enumerate(hist.states)}

    bar = rain_cells(hist, 2)
    assert bar[idx["Foo"]][0] == "|" and bar[idx["Bar"]][0] == "2"
    assert bar[idx["Bar"]][1]  # called: underlined
    assert bar[idx["Start"]][0] == "1" and bar[idx["Msg"]][0] == "."
    canceled = rain_cells(hist, 4)
    assert canceled[idx["Foo"]][0] == "c" and canceled[idx["Bar"]][0] == "1"
    labels, rows = matrix_rows(hist, 2)
    assert labels[:2] == ["called", "ticks"]
    assert rows[0][idx["Bar"]] == 1 and rows[1][idx["Foo"]] == 1 and rows[1][idx["Bar"]] == 1
    assert sum(map(sum, rows[2:])) > 0  # steps between states

    async def body(app, pilot):
        s = app.session
        await pilot.press("end")
        await pilot.press("alt+r")  # tree + rain
        assert app.view == "tree-rain" and app.query_one("#rain").display
        rain = text(app, "#rain").splitlines()
        row = "".join(sym for sym, _, _ in rain_cells(hist, 4))
        assert rain[-1].startswith(row) and rain[-1].split()[1] == "5"
        assert any(line.startswith("".join(c[0] for c in bar)) for line in rain)
        await pilot.press("alt+m", "alt+m")  # -> matrix, -> matrix-rain
        assert app.view == "matrix-rain"
        await pilot.press("left", "left")
        assert s.counts()[0] == 3
        mat = text(app, "#matrix").splitlines()
        assert mat[1].split()[0] == "called" and "Matrix:" in app.query_one("#matrix").border_title
        assert not app.query_one("#tree").display or app.screen.has_class("no-tree")

    run(body, collector)


# ----- C.6 11: export -> import


def test_export_then_import_round_trip(tmp_path: Path):
    rec = Recorder()
    a = rec.attach(_mach("ex-a"))
    b = rec.attach(_mach("ex-b", {"Go": State()}, parent=a))
    from machines.pipes import pipe_add

    pipe_add(a, b, "Foo", "Go")
    a.add("Start")
    a.add(["Ready", "Foo"])
    collector = rec.flush()

    async def body(app, pilot):
        await pilot.press("alt+s")
        await pilot.pause()
        await pilot.press("enter")  # the default name
        await pilot.pause()
        return app.query_one("#status").content.plain

    status = run(body, collector, out_dir=tmp_path)
    path = tmp_path / "am-dbg-dump.cbor.br"
    assert path.exists() and str(path) in status
    dumps = {d.id: d for d in read_dump(path)}
    assert set(dumps) == {"ex-a", "ex-b"}
    for mid, d in dumps.items():
        orig = collector.machines[mid]
        assert len(d.txs) == len(orig.txs)
        assert d.latest_clocks() == orig.txs[-1].clocks
        assert d.schema.states_index == orig.schema.states_index
    assert dumps["ex-b"].schema.parent == "ex-a"

    again = Collector()
    again.load(list(dumps.values()))

    async def body2(app, pilot):
        s = app.session
        s.goto("mach://ex-b")
        assert s.counts()[1] == len(collector.machines["ex-b"].txs)
        # the piped transition came from ex-a: follow it there, and back
        src = s.source()
        assert src is not None and src.mach_id == "ex-a"
        await pilot.press("alt+g")
        assert s.mach == "ex-a" and s.info.tx.id == src.tx_id
        assert any(f.mach_id == "ex-b" for f in s.forks())
        await pilot.press("left_square_bracket")
        assert s.mach == "ex-b"
        # the vis renderer reads the export too
        from vis.graph import Graph

        assert set(Graph.from_dump(read_dump(path)).machines) == {"ex-a", "ex-b"}

    run(body2, again)


# ----- 19: the whole layout renders headless, narrow and tiny terminals too


@pytest.fixture(scope="module")
def go_dump():
    return read_dump(GO_DUMP)


@pytest.mark.parametrize("size", [(200, 60), (80, 24), (40, 12), (20, 5)])
def test_layouts_never_crash(size, go_dump):
    collector = Collector()
    collector.load(go_dump)

    async def body(app, pilot):
        await pilot.press("right", "alt+m", "alt+m", "alt+m", "alt+m", "alt+m", "left")
        narrow = app.screen.has_class("narrow")
        assert narrow == (size[0] < 100)
        assert app.query_one("#list").display == (not narrow) or narrow
        return app.paints

    assert run(body, collector, size=size) > 0


def test_go_dump_machine_list_search_and_mouse(go_dump):
    collector = Collector()
    collector.load(go_dump)

    async def body(app, pilot):
        s = app.session
        assert s.mach == "ps-0"  # human-sorted first
        await pilot.press("s", "i", "m")
        assert s.mach.startswith("sim")
        await pilot.press("escape", "down")
        assert s.mach != "sim" or True
        # click the third row of the machine list
        lst = app.query_one("#list")
        third = lst._ids[2]
        await pilot.click("#list", offset=(3, 3))
        assert s.mach == third
        # click a filter toggle in the toolbar
        await pilot.click("#toolbar", offset=(2, 0))
        assert "canceled" in s.filters.on
        # click on the timeline's start jumps near the first tx
        label = len(text(app, "#txtl").split("█")[0].split("░")[0])
        await pilot.click("#txtl", offset=(label + 1, 0))
        assert s.counts()[0] <= max(2, s.counts()[1] // 10)
        # help opens and closes
        await pilot.press("question_mark")
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")
        assert app.screen.__class__.__name__ != "HelpScreen"

    run(body, collector)


def test_diagram_key_renders_the_machine_at_the_cursor(tmp_path: Path):
    collector = story()

    async def body(app, pilot):
        await pilot.press("home", "right")
        await pilot.press("alt+i")
        return text(app, "#status")

    status = run(body, collector, out_dir=tmp_path)
    svg = tmp_path / "am-dbg-m1.svg"
    assert svg.exists() and str(svg) in status
    d2 = (tmp_path / "am-dbg-m1.d2").read_text()
    assert "Ready" in d2


# ----- pieces


def test_addresses_parse_and_print():
    a = MachAddr.parse("mach://m1/tx-1/3?t=5")
    assert (a.mach_id, a.tx_id, a.step, a.get("t")) == ("m1", "tx-1", 3, "5")
    assert str(a) == "mach://m1/tx-1/3?t=5"
    assert MachAddr.parse("m1") == MachAddr("m1")
    for bad in ("http://x", "", "mach:///x", "mach://m/t/x", "mach://m/a/1/2"):
        with pytest.raises(AddrError):
            MachAddr.parse(bad)
    h = AddrHistory(limit=3)
    for i in range(5):
        h.push(MachAddr(f"m{i}"))
    assert h.back() == MachAddr("m3") and h.back() == MachAddr("m2") and h.back() is None
    assert h.forward() == MachAddr("m3")


def test_trimmed_history_keeps_the_cursor_on_its_transition():
    collector = story()
    s = Session(collector, tail=False)
    s.sync()
    s.first()
    s.move(60)
    tx_id = s.info.tx.id
    rec = collector.machines["m1"]
    rec.txs = rec.txs[len(rec.txs) // 2 :]  # what --max-mem does: drop the oldest half
    s.sync()
    assert s.current.offset > 0 and s.info.tx.id == tx_id
    rec.txs = rec.txs[len(rec.txs) - 3 :]  # trimmed past the cursor: the oldest kept
    s.sync()
    assert s.info.tx.id == rec.txs[0].id


def test_select_connected_and_an_address_that_appears_later():
    rec = Recorder()
    a = rec.attach(_mach("sc-a"))
    a.add("Start")
    collector = rec.flush()
    s = Session(collector, select_connected=True)
    s.sync()
    assert s.mach == "sc-a"
    collector.disconnect(rec.conn)
    conn2 = collector.connect()
    b = _mach("sc-b")
    box = Outbox()
    telemetry.DbgTracer(box).attach(b)
    b.add(["Start", "Ready"])
    for kind, msg in FrameDecoder().feed(box.take()):
        collector.ingest(conn2, kind, msg)
    s.sync()
    assert s.mach == "sc-b"  # the only connected machine

    # MACH_URL for a machine that has not connected yet: opened once it does
    tx_id = collector.machines["sc-b"].txs[0].id
    later = Collector()

    async def body(app, pilot):
        await pilot.pause(0.1)
        assert app.session.mach is None
        later.load([MachineDump(collector.machines["sc-b"].schema, collector.machines["sc-b"].txs)])
        later._changed()
        for _ in range(50):
            await pilot.pause(0.05)
            if app.session.mach == "sc-b":
                break
        assert str(app.session.addr()) == f"mach://sc-b/{tx_id}"

    run(body, later, open_addr=MachAddr("sc-b", tx_id))


def test_browser_producer_over_the_websocket_path():
    from websockets.sync.client import connect

    collector = LockedCollector()
    live = LiveServer(collector, "127.0.0.1", 0, ws_port=0)
    schema = {"id": "ws-m1", "states_index": ["A", "B"], "states": {"A": {}, "B": {}}}

    async def body(app, pilot):
        await bound(live)
        ws_port = live.bound[1]
        with connect(f"ws://127.0.0.1:{ws_port}/dbg.ws", open_timeout=10) as ws:
            ws.send(encode_frame("schema", schema))
            txs = [_tx("ws-m1", f"t{i}", [i * 2 + 1, 0]) for i in range(3)]
            ws.send(encode_frame("txs", txs))
            for _ in range(200):
                await pilot.pause(0.05)
                if app.session.counts() == (3, 3, 3):
                    break
        s = app.session
        assert s.mach == "ws-m1" and s.tail and s.counts() == (3, 3, 3)
        assert str(s.addr()) == "mach://ws-m1/t2"

    run(body, collector, live=live)


def test_keys_under_the_help_and_data_during_a_dialog_do_not_crash(tmp_path: Path):
    collector = story()

    async def body(app, pilot):
        await pilot.press("question_mark", "1", "right", "alt+m")
        collector._changed()  # new data while the help covers the panes
        await pilot.pause(0.4)
        assert "canceled" not in app.session.filters.on
        await pilot.press("escape", "alt+s")
        collector._changed()
        await pilot.pause(0.4)
        await pilot.press("escape", "1")
        assert "canceled" in app.session.filters.on

    run(body, collector, out_dir=tmp_path)


def test_queued_records_are_not_shown_as_canceled():
    rec = Recorder()
    m = rec.attach(_mach(), full=True)  # full: a record per queued mutation too
    m.add("Start")
    s = Session(rec.flush())
    s.sync()
    h = s.current
    queued = [i for i, f in enumerate(h.infos) if f.tx.is_queued]
    assert queued
    assert all(sym != "c" for sym, _, _ in rain_cells(h, queued[0]))
    assert not h.infos[queued[0]].kinds & 1  # not counted by the canceled filter
