"""The debugger's view toggles the reference has (C.5 #5, #7 and the toolbar rows): the log's
timestamps, stack traces and wrap, and timelines 0-2. A real machine whose handler raises
reports through the real tracer; the UI runs under Textual's pilot; the toggles are flipped
by a mouse click on the toolbar, by Alt+F and the arrows, by keys and by MCP's ToggleTool."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_dbg_ui import Recorder, _mach, run, story, text
from test_dbg_ui_cli import _am

from dbg.collector import Collector
from dbg.ui import remote
from dbg.ui.app import DebuggerApp
from dbg.ui.bars import Toolbar
from dbg.ui.help import help_text

pytestmark = pytest.mark.timeout(60)

BOOM = "boom " * 40  # an error message longer than the log pane is wide


class Raises:
    def FooState(self, e):
        raise ValueError(BOOM)


def erring() -> Collector:
    """t1: Start, Ready, then Foo whose handler raises: an ``[error:add]`` line whose entry
    carries the Python stack trace on its later lines. The transitions' wall-clock times are
    set apart by 1.5 s each from the 3rd on (the tracer stamps one batch with one time)."""
    rec = Recorder()
    m = rec.attach(_mach("t1", handlers=Raises()))
    m.add("Start")
    m.add("Ready")
    m.add("Foo")
    collector = rec.flush()
    txs = collector.machines["t1"].txs
    base = txs[0].time
    assert base is not None
    for i, tx in enumerate(txs):
        tx.time = base + timedelta(seconds=1.5 * max(0, i - 1))
    return collector


async def click_toolbar(app: DebuggerApp, pilot, action: str) -> None:
    """Click the toolbar button whose action is ``action``, where it is painted."""
    bar = app.query_one(Toolbar)
    row, a, _, _ = next(s for s in bar._spans if s[3] == action)
    await pilot.click("#toolbar", offset=(a + 1, row))
    await pilot.pause()


def log_lines(app: DebuggerApp) -> list[str]:
    return text(app, "#log").splitlines()


def test_traces_toggle_hides_the_stack_trace_under_an_error_line():
    async def body(app, pilot):
        await pilot.press("end")
        assert app.session.log_traces  # the reference shows them by default
        lines = log_lines(app)
        err = next(i for i, line in enumerate(lines) if "[error:add] Foo" in line)
        assert lines[err + 1].startswith("▌Traceback (most recent call last)")
        assert any("raise ValueError(BOOM)" in line for line in lines)
        assert "▌" not in lines  # the trace's final newline makes no empty row
        assert "[x]traces" in text(app, "#toolbar")
        await click_toolbar(app, pilot, "log_traces")
        assert not app.session.log_traces and "[ ]traces" in text(app, "#toolbar")
        lines = log_lines(app)
        assert any("[error:add] Foo" in line for line in lines)
        assert not any("Traceback" in line or "raise ValueError" in line for line in lines)
        # the other lines stay
        assert any("[state] +Ready" in line for line in lines)
        await click_toolbar(app, pilot, "log_traces")
        assert any("Traceback" in line for line in log_lines(app))

    run(body, erring(), size=(160, 60), session={"tail": False})


def test_wrap_toggle_wraps_long_lines_instead_of_cutting_them():
    async def body(app, pilot):
        await pilot.press("end")
        await click_toolbar(app, pilot, "log_traces")  # the error's first line only
        assert not app.session.log_wrap and "[ ]wrap" in text(app, "#toolbar")
        # what the screen shows: one row, cut with an ellipsis
        cut = [row for row in (await remote.screen_text(app)).splitlines() if "boom" in row]
        assert len(cut) == 1 and "…" in cut[0]
        await click_toolbar(app, pilot, "log_wrap")
        assert app.session.log_wrap and "[x]wrap" in text(app, "#toolbar")
        rows = [row for row in (await remote.screen_text(app)).splitlines() if "boom" in row]
        assert len(rows) >= 2 and not any("…" in row for row in rows)
        # the whole message is on screen, a margin mark on every row of it
        assert "".join(rows).count("boom") == BOOM.count("boom")
        wrapped = [line for line in log_lines(app) if "boom" in line]
        assert len(wrapped) == len(rows) and all(line.startswith("▌") for line in wrapped)
        # a click on a wrapped row still jumps to its transition
        await pilot.press("home")
        row = log_lines(app).index(wrapped[-1])
        await pilot.click("#log", offset=(3, row))
        await pilot.pause()
        info = app.session.info
        assert info is not None and any("boom" in e.text for e in info.tx.log_entries)
        await pilot.press("alt+w")
        assert not app.session.log_wrap

    run(body, erring(), size=(120, 60), session={"tail": False})


def test_times_toggle_labels_each_new_second_and_is_on_by_default():
    async def body(app, pilot):
        await pilot.press("end")
        s = app.session
        assert s.log_times and "[x]times" in text(app, "#toolbar")
        h = s.current
        assert h is not None
        # every transition from the 3rd on starts a new second: a label after its lines
        labels = [line for line in log_lines(app) if " t" in line and line[3:4] == ":"]
        want = [f" {f.tx.time:%H:%M:%S.%f} t{f.time_sum}" for f in h.infos[2:] if f.tx.time]
        shown = [w for w in want if w in labels]
        assert shown and len(labels) == len(shown)  # none for the 2nd (same second as 1st)
        await click_toolbar(app, pilot, "log_times")
        assert not s.log_times and "[ ]times" in text(app, "#toolbar")
        assert not any(w in log_lines(app) for w in want)

    run(body, erring(), size=(160, 60), session={"tail": False})


def test_timelines_cycle_two_none_one_and_the_panes_get_the_rows():
    async def body(app, pilot):
        log = app.query_one("#log")
        ids = ("#txbar", "#txtl", "#nextbar", "#steptl")

        def shown() -> tuple[bool, ...]:
            return tuple(app.query_one(w).display for w in ids)

        assert app.timelines == 2 and shown() == (True,) * 4
        assert "[2]timelines" in text(app, "#toolbar")
        height = log.size.height
        app.query_one("#steptl").focus()
        await pilot.press("alt+t")
        await pilot.pause()
        assert app.timelines == 0 and shown() == (False,) * 4
        assert "[ ]timelines" in text(app, "#toolbar")
        assert log.size.height == height + 4
        assert app.focused is not None and app.focused.id == "list"  # not a hidden timeline
        await click_toolbar(app, pilot, "timelines")
        assert app.timelines == 1 and shown() == (True, True, False, False)
        assert log.size.height == height + 2 and "[1]timelines" in text(app, "#toolbar")
        # the keyboard way: Alt+F, then → up to the button, Enter. A terminal sends Alt+F
        # as ESC f, which Textual reads as ctrl+right: that focuses the toolbar too
        await pilot.press("ctrl+right")
        assert app.focused is not None and app.focused.id == "toolbar"
        await pilot.press("escape", "alt+f")
        bar = app.query_one(Toolbar)
        target = next(i for i, sp in enumerate(bar._spans) if sp[3] == "timelines")
        await pilot.press(*["right"] * ((target - bar.picked) % len(bar._spans)), "enter")
        await pilot.pause()
        assert app.timelines == 2 and shown() == (True,) * 4 and log.size.height == height

    run(body, story(), size=(160, 50))


def test_timelines_option_and_mcp_toggle_tool():
    async def body(app, pilot):
        assert app.timelines == 1
        assert not app.query_one("#steptl").display and app.query_one("#txtl").display
        assert app.session.log_wrap
        assert await remote.toggle(app, "timelines") == "timelines 2\n"
        assert app.query_one("#steptl").display
        assert await remote.toggle(app, "wrap") == "wrap off\n"
        assert await remote.toggle(app, "traces") == "traces off\n"
        assert await remote.toggle(app, "times") == "times off\n"
        assert not (app.session.log_wrap or app.session.log_traces or app.session.log_times)
        with pytest.raises(remote.Refused, match="toggles: .*times, traces, wrap, timelines"):
            await remote.toggle(app, "nope")

    run(body, story(), timelines=1, log_wrap=True)
    with pytest.raises(ValueError, match="timelines is 0, 1 or 2"):
        DebuggerApp(_session(), timelines=3)


def _session():
    from dbg.ui.session import Session

    return Session(Collector())


def test_help_lists_the_toggles():
    plain = help_text("").plain
    for word in ("Alt+T", "Alt+W", "'times'", "'traces'", "'timelines N'", "'wrap'"):
        assert word in plain


def test_cli_view_timelines_out_of_range_is_one_line_exit_2():
    p = _am("--view-timelines", "3", "-l", "-1")
    assert p.returncode == 2
    assert p.stderr.strip() == "am dbg: --view-timelines is 0, 1 or 2, not 3"
    p = _am("--help")
    assert "--view-timelines" in p.stdout and "--view-log-wrap" in p.stdout
