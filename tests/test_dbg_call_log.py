"""``--output-call-log`` (C.3, C.5 #20): every machine's executed handlers as Python calls in
``call-log/<machine>/``: negotiation as the condition, final handlers as its body, canceled
transitions marked, active states every 100 lines, a new file after 5000 calls."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_dbg_ui import Recorder, _mach, run

from dbg.ui.call_log import ROTATE_CALLS, SEPARATOR_EVERY, MachineCallLog, tx_block
from machines import Machine, State

pytestmark = pytest.mark.timeout(60)

SCHEMA = {"Foo": State(remove=["Bar"]), "Bar": State(), "Msg": State(multi=True)}


class H:
    def FooEnter(self, e):
        return e.args.get("ok", True)

    def FooState(self, e):
        pass

    def AnyEnter(self, e):
        return True

    def BarExit(self, e):
        return True

    def MsgState(self, e):
        pass


class Piped:
    def FooState(self, e):
        pass


def recorded(n_msgs: int = 0):
    rec = Recorder()
    m = Machine(SCHEMA, id="cl", handlers=H(), log_level=3, logger=lambda *_: None)
    m.handlers_bind(Piped())
    rec.attach(m, full=False)
    m.add("Bar")
    m.add("Foo", {"ok": False})  # canceled by FooEnter
    m.add("Foo")
    for _ in range(n_msgs):
        m.add("Msg")
    return rec.flush(), m


def test_blocks_read_as_the_handlers_ran() -> None:
    c, _ = recorded()
    states = c.machines["cl"].schema.states_index
    blocks = [tx_block(tx, states) for tx in c.machines["cl"].txs]
    bar, canceled, foo = blocks
    assert bar[1] == 1 and bar[0][1:] == ["if h0.AnyEnter(e):", "    pass", ""]
    head, *body = canceled[0]
    assert head.startswith("# t1 [add] Foo  (tx ") and head.endswith(" canceled")
    assert body == ["if h0.BarExit(e) and h0.FooEnter(e):  # canceled by FooEnter", "    pass", ""]
    assert foo[0][1:] == [
        "if h0.BarExit(e) and h0.FooEnter(e) and h0.AnyEnter(e):",
        "    h0.FooState(e)",
        "    h1.FooState(e)",  # the group bound second
        "",
    ]
    assert foo[1] == 5


def test_long_negotiation_goes_one_call_a_line() -> None:
    c, _ = recorded()
    tx = c.machines["cl"].txs[-1]
    for e in tx.log_entries:
        e.text = e.text.replace("BarExit", "B" * 60 + "Exit")
    lines, _ = tx_block(tx, c.machines["cl"].schema.states_index)
    assert lines[1:5] == ["if (", f"    h0.{'B' * 60}Exit(e)", "    and h0.FooEnter(e)",
                          "    and h0.AnyEnter(e)"]  # fmt: skip
    assert lines[5] == "):"


def test_separators_rotation_and_valid_python(tmp_path: Path) -> None:
    n = ROTATE_CALLS // 2 + 50  # Msg: AnyEnter + MsgState, 2 calls each
    c, m = recorded(n)
    rec = c.machines["cl"]
    log = MachineCallLog(tmp_path / "cl", rec.schema.states_index)
    files = log.feed(rec.txs)
    assert list(files) == ["init.py", "0.py", f"{files and _second(files)}"]
    first = files["0.py"]
    seps = [ln for ln in first if ln.startswith("# ---- t")]
    assert len(seps) >= len(first) // (SEPARATOR_EVERY + 10)
    assert "active: Foo" in seps[0] or "active: Foo, Msg" in seps[0]
    assert sum(ln.count("(e)") for ln in first) >= ROTATE_CALLS
    second = _second(files)
    assert int(second.removesuffix(".py")) > 0  # named after the machine time it starts at
    for name, lines in files.items():
        compile("\n".join(lines), name, "exec")  # reads as Python, and is Python


def _second(files: dict) -> str:
    return [f for f in files if f not in ("init.py", "0.py")][0]


def test_the_ui_keeps_the_files(tmp_path: Path) -> None:
    c, m = recorded()

    async def body(app, pilot):
        folder = tmp_path / "call-log" / "cl"
        deadline = time.monotonic() + 20
        while not (folder / "0.py").is_file():
            assert time.monotonic() < deadline, "no call log"
            await pilot.pause(0.1)
        assert "h1.FooState(e)" in (folder / "0.py").read_text()
        assert "states = ['Foo', 'Bar', 'Msg'" in (folder / "init.py").read_text()
        m.add("Msg")  # new data: appended
        rec.flush()
        app.session.sync()
        app.paint()
        while "h0.MsgState(e)" not in (folder / "0.py").read_text():
            assert time.monotonic() < deadline, "not appended"
            await pilot.pause(0.1)
        text = (folder / "0.py").read_text()
        assert text.count("h1.FooState(e)") == 1  # nothing written twice

    rec = Recorder()
    c = rec.collector
    m = Machine(SCHEMA, id="cl", handlers=H(), log_level=3, logger=lambda *_: None)
    m.handlers_bind(Piped())
    rec.attach(m, full=False)
    m.add("Bar")
    m.add("Foo")
    rec.flush()
    run(body, c, out_dir=tmp_path, call_log=True)


def test_machines_without_handler_lines_write_no_calls(tmp_path: Path) -> None:
    rec = Recorder()
    m = rec.attach(_mach("quiet"), full=False)
    m.log_level = 2  # no ops lines: nothing to read
    m.add("Start")
    c = rec.flush()
    log = MachineCallLog(tmp_path, c.machines["quiet"].schema.states_index)
    assert list(log.feed(c.machines["quiet"].txs)) == ["init.py"]
