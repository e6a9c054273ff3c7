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
        # new data: a machine connects, clients.txt lists it
        late = rec.attach(_mach("out-3"), full=False)
        late.add("Start")
        rec.flush()
        await _until(pilot, lambda: "out-3 connected 1 tx" in _read(clients), "clients.txt")

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


def test_outputs_never_block_a_key(tmp_path: Path, monkeypatch):
    """A long history: the log is rendered and written off the UI's thread, so keys are
    answered while a write is stuck (a slow disk): every key moved the cursor while the
    writer was still waiting, and no write ran on the UI's thread."""
    import threading

    from dbg.ui.outputs import TextOutputs

    flush, stuck, release = TextOutputs._flush, threading.Event(), threading.Event()
    threads: set[threading.Thread] = set()

    def slow_flush(self, todo):
        threads.add(threading.current_thread())
        if (self.out_dir / "log.md").exists():  # after the first write, writes hang
            stuck.set()
            release.wait(60)
        return flush(self, todo)

    monkeypatch.setattr(TextOutputs, "_flush", slow_flush)

    async def body(app, pilot):
        await _until(pilot, lambda: (tmp_path / "log.md").exists(), "log.md")
        try:
            await pilot.press("left")
            await _until(pilot, stuck.is_set, "a write stuck")
            seen = [app.session.index]
            for _ in range(10):
                await pilot.press("left")
                seen.append(app.session.index)
            assert stuck.is_set() and not release.is_set()
            assert all(b < a for a, b in zip(seen, seen[1:], strict=False)), seen
        finally:
            release.set()

    run(body, story(), out_dir=tmp_path, outputs={"tx", "log"})
    assert threads and threading.main_thread() not in threads


# ----- 4. schema tree: relation lines, groups, the group filter, Alt+E


def _grouped() -> Collector:
    """story()'s m1 with groups in its schema (as a producer with groups sends them)."""
    c = story()
    schema = c.machines["m1"].schema
    idx = schema.states_index
    schema.groups = {"Work": [idx.index("Foo"), idx.index("Bar")], "Life": [idx.index("Start")]}
    schema.groups_order = ["Work", "Life"]
    return c


def test_enter_on_a_relation_line_jumps_to_the_referenced_state():
    async def body(app, pilot):
        s = app.session
        app.query_one("#tree").focus()
        await pilot.press("down")  # the first line: Start
        assert s.state == "Start"
        # Ready's lines: Ready, then "require Start"
        await pilot.press("down", "down")
        assert s.state == "Ready"
        tree = app.query_one("#tree")
        assert tree.sub == 1
        assert "require Start" in text(app, "#tree")
        await pilot.press("enter")
        assert s.state == "Start" and tree.sub == 0
        # Foo: require Ready, remove Bar -> Enter on "remove Bar" selects Bar
        s.state = "Foo"
        await pilot.press("down", "down")
        await pilot.press("enter")
        assert s.state == "Bar"
        # Alt+E collapses every relation line: ↓ walks states only
        await pilot.press("alt+e")
        assert "require" not in text(app, "#tree")
        s.state = "Start"
        await pilot.press("down")
        assert s.state == "Ready"
        await pilot.press("alt+e")
        assert "require Start" in text(app, "#tree")

    run(body, story(), session={"tail": False})


def test_group_selector_restricts_the_tree_and_the_group_filter_navigation():
    async def body(app, pilot):
        s = app.session
        _, all_visible, _ = s.counts()
        lines = text(app, "#tree").splitlines()
        assert lines[0].startswith("group: all")
        await pilot.press("ctrl+g")
        assert s.group == "Work"
        names = [ln.split()[0] for ln in text(app, "#tree").splitlines()[1:] if ln[1:2].isalpha()]
        assert set(names) == {"Foo", "Bar"}
        assert "Work:2" in app.query_one("#tree").border_title
        # the group filter (on by default): only transitions calling Foo or Bar
        _, n, raw = s.counts()
        m1 = app.session.current
        calling = [
            i for i in s.visible() if {m1.states[k] for k in m1.infos[i].called} & {"Foo", "Bar"}
        ]
        assert n == len(calling) == 3 and raw > n  # add Foo, add Bar, the canceled add Foo
        await pilot.press("home")
        assert "Foo" in {m1.states[k] for k in s.info.called}
        await pilot.press("9")  # the group filter off: every transition again
        assert "group" not in s.filters.on and s.counts()[1] == all_visible
        # a click on the selector line cycles on: Life, then all
        await pilot.click("#tree", offset=(3, 1))
        assert s.group == "Life"
        await pilot.click("#tree", offset=(3, 1))
        assert s.group == ""
        # Enter on a relation to a state outside the group leaves the group
        await pilot.press("ctrl+g")  # Work
        app.query_one("#tree").focus()
        s.state = "Foo"
        await pilot.press("down")  # "require Ready"
        await pilot.press("enter")
        assert s.state == "Ready" and s.group == ""

    run(body, _grouped(), session={"tail": False})


def test_machines_without_groups_have_no_selector():
    async def body(app, pilot):
        assert not text(app, "#tree").startswith("group:")
        await pilot.press("ctrl+g")
        assert app.session.group == ""

    run(body, story())


# ----- 6. wheel, paging, toolbar focus


def test_wheel_on_the_timelines_moves_five_txs_or_one_step():
    rec = Recorder()
    m = rec.attach(_mach("wh", steps=True), full=False)
    for i in range(20):
        m.add("Msg", {"i": i})

    async def body(app, pilot):
        s = app.session
        await pilot.press("home")
        start = s.counts()[0]
        tl = app.query_one("#txtl")
        from textual import events

        for cls, want in ((events.MouseScrollDown, start + 5), (events.MouseScrollUp, start)):
            tl.post_message(cls(tl, 2, 0, 0, 0, 0, False, False, False, screen_x=2, screen_y=0))
            await pilot.pause()
            assert s.counts()[0] == want
        st = app.query_one("#steptl")
        st.post_message(events.MouseScrollDown(st, 2, 0, 0, 0, 0, False, False, False))
        await pilot.pause()
        assert s.step == 1 and s.counts()[0] == start

    run(body, rec.flush(), session={"tail": False})


def test_alt_n_p_page_and_alt_f_focuses_the_toolbar():
    async def body(app, pilot):
        s = app.session
        await pilot.press("home")
        app.query_one("#log").focus()
        height = app.query_one("#log").content_size.height
        await pilot.press("alt+n")
        assert s.counts()[0] == 1 + height - 1
        await pilot.press("alt+p")
        assert s.counts()[0] == 1
        # schema tree: a page of lines
        app.query_one("#tree").focus()
        s.state = "Start"
        await pilot.press("alt+n")
        assert s.state != "Start"
        # Alt+F: the toolbar; →/Enter flips the second toggle (queued)
        await pilot.press("alt+f")
        assert app.focused.id == "toolbar"
        assert "queued" not in s.filters.on
        await pilot.press("right", "enter")
        assert "queued" in s.filters.on
        await pilot.press("space")  # space flips it back, it does not play
        assert "queued" not in s.filters.on and not s.playing

    run(body, story(), size=(160, 40), session={"tail": False})


# ----- 8. relation link lines while stepping


def test_step_link_columns_while_stepping():
    rec = Recorder()
    m = rec.attach(_mach("lk", steps=True), full=True)
    m.add("Start")
    m.add("Foo")  # requires Ready: canceled, a relation step Foo require Ready
    m.add("Ready")
    m.add("Bar")  # removes Foo (inactive): relation step Bar remove Foo
    c = rec.flush()

    async def body(app, pilot):
        s = app.session
        h = s.current
        want = None
        for i in range(len(h.infos)):
            nxt = h.infos[i + 1] if i + 1 < len(h.infos) else None
            if nxt and any(st.type & 1 and st.from_state != st.to_state for st in nxt.tx.steps):
                want = i
                break
        assert want is not None, "a transition with a relation step"
        s.jump_to(want)
        app.query_one("#steptl").focus()
        steps = s.next_info.tx.steps
        k = next(n for n, st in enumerate(steps, 1) if st.type & 1)
        for _ in range(k):
            await pilot.press("right")
        rel = steps[k - 1]
        lines = text(app, "#tree").splitlines()
        src = next(ln for ln in lines if ln[1:].startswith(rel.from_state + " "))
        dst = next(ln for ln in lines if ln[1:].startswith(rel.to_state + " "))
        assert src.rstrip()[-1] in "┐┘" and dst.rstrip()[-1] in "┐┘"
        assert src.rstrip()[-1] != dst.rstrip()[-1]

    run(body, c, session={"tail": False})


def test_link_columns_draw_green_start_red_end():
    from dbg.ui.schema_tree import link_columns

    cols = link_columns(["A", None, "B", "C"], [("C", "A"), ("A", "B")])
    assert [c.plain for c in cols] == ["┐┐", "││", "│┘", "┘ "]
    assert "green" in str(cols[3].spans[0].style) and "red" in str(cols[0].spans[0].style)


# ----- 5. tags bar, 9. pipes in the log reader


def test_tags_bar_and_pipes_in_the_reader():
    from machines.pipes import pipe_add

    rec = Recorder()
    a = rec.attach(_mach("pp-a", tags=["rpc-server", "env:test"]))
    b = rec.attach(_mach("pp-b", {"Go": SCHEMA["Start"]}))
    a.add("Start")
    pipe_add(a, b, "Foo", "Go")
    a.add("Ready")
    a.add("Foo")  # piped: b gets Go
    c = rec.flush()

    async def body(app, pilot):
        s = app.session
        s.goto("mach://pp-a")
        await pilot.pause()
        assert text(app, "#tags").split() == ["#rpc-server", "#env:test"]
        reader = text(app, "#reader")
        assert "Pipe-out Foo -> mach://pp-b (add)" in reader
        await pilot.press("home")  # before the pipe was made: none
        assert "Pipe-out" not in text(app, "#reader")
        await pilot.press("end")
        # the pipe is a link: a click opens the peer
        row = (
            text(app, "#reader")
            .splitlines()
            .index(
                next(ln for ln in text(app, "#reader").splitlines() if ln.startswith("Pipe-out"))
            )
        )
        await pilot.click("#reader", offset=(3, row + 1))
        assert s.mach == "pp-b"
        # each end names its own state: pp-b's is Go (machines/pipes.py, as the reference)
        assert "Pipe-in Go <- mach://pp-a (add)" in text(app, "#reader")
        assert text(app, "#tags").strip() == "no tags"

    run(body, c, session={"tail": False})


def test_a_pipe_leaves_the_reader_when_its_peer_is_disposed():
    """The machine left logs ``[pipe:gc] <peer>`` (machines/pipes.py); from there on the
    reader shows no pipe to the peer, while earlier transitions still do."""
    from machines.pipes import pipe_add

    rec = Recorder()
    a = rec.attach(_mach("gc-a"))
    b = rec.attach(_mach("gc-b", {"Go": SCHEMA["Start"]}))
    a.add("Start")
    pipe_add(a, b, "Foo", "Go")
    a.add("Ready")
    b.dispose()
    a.add("Foo")  # carries the gc line; nothing is piped to b any more
    assert not any(h.startswith("pipe-") for h in a.handlers())
    c = rec.flush()

    async def body(app, pilot):
        s = app.session
        s.goto("mach://gc-a")
        await pilot.pause()
        await pilot.press("end")
        assert "Pipe-out" not in text(app, "#reader")
        await pilot.press("left")  # Ready: the pipe was there
        assert "Pipe-out Foo -> mach://gc-b (add)" in text(app, "#reader")

    run(body, c, session={"tail": False})


# ----- 7. the light theme


def test_light_theme_recolours_the_panes():
    from rich.text import Text

    from dbg.ui.pane import Pane
    from dbg.ui.theme import LIGHT, recolour

    t = recolour(Text.assemble(("Foo", "yellow bold"), (" |1", "grey50")), LIGHT)
    assert [str(s.style) for s in t.spans] == ["dark_goldenrod bold", "grey46"]

    async def body(app, pilot):
        assert app.theme == "textual-light" and Pane.palette is LIGHT
        tree = app.query_one("#tree")
        shown = tree.render()
        styles = {str(s.style) for s in getattr(shown, "spans", [])}
        assert styles and not any("yellow" in st or "grey70" in st for st in styles)
        return app.paints

    assert run(body, story(), theme="light") > 0

    async def dark(app, pilot):
        assert app.theme == "textual-dark" and Pane.palette is None

    run(dark, story())


RUN = """
import sys
from machines import Machine, State
m = Machine({"A": State(), "Msg": State(multi=True)}, id=sys.argv[1])
for _ in range(10):
    m.add("Msg")
"""


@pytest.mark.timeout(90)
def test_headless_clean_on_connect_saves_the_previous_run_first(tmp_path: Path):
    """The real command: run 1 exits, run 2 connects; run 1 goes to a dump of its own."""
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    dbg = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "-l", "127.0.0.1:0",
         "--dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = dbg.stdout.readline()
        assert "collecting on" in line
        addr = line.split("collecting on ", 1)[1].split(";")[0].split(",")[0]
        for run_id in ("run-1", "run-2"):
            res = subprocess.run(
                [sys.executable, "-c", RUN, run_id],
                env=dict(env, AM_DBG_ADDR=addr), timeout=30, capture_output=True, text=True,
            )  # fmt: skip
            assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not list(tmp_path.glob("am-dbg-dump-*.cbor.br")):
            time.sleep(0.05)
        dbg.send_signal(signal.SIGTERM)
        _, err = dbg.communicate(timeout=15)
    finally:
        dbg.kill()
    assert dbg.returncode == 0, err
    (saved,) = tmp_path.glob("am-dbg-dump-*.cbor.br")
    assert "a new one connected" in err and str(saved) in err
    assert [(m.id, len(m.txs)) for m in read_dump(saved)] == [("run-1", 10)]
    final = read_dump(tmp_path / "am-dbg-dump.cbor.br")
    assert [(m.id, len(m.txs)) for m in final] == [("run-2", 10)]


# ----- the real command: the new flags


def test_real_terminal_light_theme_and_text_outputs(tmp_path: Path):
    import os
    import sys

    import pexpect

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    env.pop("AM_DBG_ADDR", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cli.main", "dbg", "-i", str(root / "tests/fixtures/go-am-dbg-sim.gob.br"),
         "mach://sim", "-l", "-1", "-d", str(tmp_path), "--view-theme", "light",
         "--output-tx", "--output-clients", "--output-log"],
        env=env, cwd=str(root), dimensions=(40, 160), encoding="utf-8",
        codec_errors="replace", timeout=60,
    )  # fmt: skip
    try:
        child.expect(r"mach://sim/([0-9a-f]+)")
        tx_md = tmp_path / "tx.md"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "mach://sim/" not in _read(tx_md):
            time.sleep(0.05)
        first = _read(tx_md).splitlines()[0]
        child.send("\x1b[D")  # left: tx.md follows the cursor
        while time.monotonic() < deadline and _read(tx_md).splitlines()[0] == first:
            time.sleep(0.05)
        assert _read(tx_md).splitlines()[0] != first
        assert len(_read(tmp_path / "clients.txt").splitlines()) == 107
        assert _read(tmp_path / "log.md").startswith("# sim log")
        child.send("\x11")  # Ctrl+Q
        child.expect("Clients: 107")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_bad_theme_is_one_line_and_exit_2():
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "cli.main", "dbg", "--view-theme", "purple", "-l", "-1"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert "--view-theme" in p.stderr


def test_single_frame_without_a_transition_under_the_cursor_is_one_line(tmp_path: Path):
    c = _two_machines()

    async def body(app, pilot):
        await pilot.press("home", "left")  # before the first transition
        assert app.export("frame", single_frame=True) is None
        return text(app, "#status")

    status = run(body, c, out_dir=tmp_path, session={"tail": False})
    assert "export failed: single frame" in status and "\n" not in status
    assert not list(tmp_path.iterdir())


def test_type_to_search_in_the_schema_tree(monkeypatch):
    # keys a loaded machine delivers slowly still type one search (the pause is set below)
    monkeypatch.setattr("dbg.ui.schema_tree.SEARCH_RESET", 60.0)

    async def body(app, pilot):
        s = app.session
        app.query_one("#tree").focus()
        await pilot.press("r", "e")
        assert s.state == "Ready"
        assert app.query_one("#tree").border_subtitle == "search: re"
        await pilot.press("a", "l")  # "real": no state; the selection stays
        assert s.state == "Ready"
        app.query_one("#tree")._search_at = 0  # as after a pause
        await pilot.press("b")
        assert s.state == "Bar"
        await pilot.press("escape")  # back to the list: the search ends
        assert app.query_one("#tree").border_subtitle == ""

    run(body, story(), session={"tail": False})


def test_alt_keys_are_commands_not_search_text():
    """A terminal's Alt+G arrives as a key event carrying the character ``g`` (the pilot's
    has none): it must not also start a search in the machine list or the schema tree."""
    from textual import events

    async def alt(app, pilot, *letters):
        for ch in letters:
            app.post_message(events.Key(f"alt+{ch}", ch))  # as the terminal's parser makes it
            await pilot.pause()

    async def body(app, pilot):
        s = app.session
        app.query_one("#list").focus()
        await alt(app, pilot, "m", "m", "m", "m", "m")  # Alt+M five times: back to tree+log
        assert s.search == ""
        app.query_one("#tree").focus()
        await alt(app, pilot, "e", "e")
        assert not app.query_one("#tree").border_subtitle
        await pilot.press("r")  # a plain letter still searches
        assert app.query_one("#tree").border_subtitle == "search: r"

    run(body, story(), session={"tail": False})
