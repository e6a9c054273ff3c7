"""`am repl` against the whole example: `am start --bars 2` as a process, and a real tab in
Chromium. server-foo's REPL endpoint and every browser-side machine's (each headless peer and
each tab, over the relay's listen tunnels) appear in ``tmp/``; one REPL reaches them all."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from test_example_browser import AmStart, base_env, browser, open_tab, wait_li
from test_repl import AM, TIMEOUT, Proc, repl, repl_source_id

__all__ = ["browser"]  # the fixture, shared with the example's browser tests

pytestmark = pytest.mark.timeout(300)
REPL_CMD = [*AM, "repl"]


def wait_files(directory: Path, count: int, timeout: float = 60) -> list[Path]:
    """Until `directory` holds `count` ``.addr`` files (the relay writes the tabs' ones)."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(directory.glob("*.addr"))
        if len(files) >= count:
            return files
        assert time.monotonic() < deadline, files
        time.sleep(0.1)


def test_one_repl_reaches_server_foo_and_both_bars(tmp_path: Path) -> None:
    srv = AmStart(tmp_path, base_env(FOO_BORED_AFTER=3), "--bars", "2")
    addr_dir = tmp_path / "tmp"
    try:
        wait_files(addr_dir, 3)  # server-foo's and both bars' REPL endpoints
        out = repl("--dir", str(addr_dir), "--", "list")
        assert out.returncode == 0, out
        ids = re.findall(r"^=> \d+\. (\S+) t\d+$", out.stdout, re.M)
        assert (
            len(ids) == 3
            and ids[-1] == "server-foo"
            and all(i.startswith("browser-bar-") for i in ids[:2])
        ), out.stdout
        assert out.stdout.count("   CR: ") == 3
        bars = ids[:2]

        # foo prints the message with the REPL as its author
        out = repl("--dir", str(addr_dir), "--", "add", "server-foo", "Msg", "--arg", "Msg.Msg",
                   "--val", "hi")  # fmt: skip
        assert (out.returncode, out.stdout) == (0, "=> Executed\n")
        srv.wait_line(rf"^\[{repl_source_id()}\] hi$")

        # a bar peer gets it too: its Msg ticks. One REPL for the three commands: a browser-side
        # machine's listen tunnel serves one REPL connection, then the tab opens a new one.
        out = repl("--dir", str(addr_dir), input=f"time {bars[0]} Msg\nadd {bars[0]} Msg "
                   f"--arg Msg.Msg --val hey\ntime {bars[0]} Msg\n")  # fmt: skip
        assert out.returncode == 0, out
        before, result, after = out.stdout.splitlines()
        assert result == "=> Executed"
        assert int(after.split(":")[1]) > int(before.split(":")[1]), out.stdout

        # when / when-not return once server-foo changes: bored after 3 s of silence, then a
        # message makes it not bored
        waiting = Proc([*REPL_CMD, "--dir", str(addr_dir), "--", "when", "server-foo", "Bored"])
        assert waiting.wait(TIMEOUT) == 0, waiting.lines
        assert re.fullmatch(r"=> Bored:\d+", waiting.lines[-1])
        waiting = Proc([*REPL_CMD, "--dir", str(addr_dir), "--", "when-not", "server-foo",
                        "Bored"])  # fmt: skip
        time.sleep(1)
        assert waiting.proc.poll() is None, waiting.lines  # still bored: still waiting
        out = repl("--dir", str(addr_dir), "--", "add", "server-foo", "Msg", "--arg", "Msg.Msg",
                   "--val", "wake up")  # fmt: skip
        assert out.returncode == 0
        assert waiting.wait(TIMEOUT) == 0, waiting.lines
        assert re.fullmatch(r"=> Bored:\d+", waiting.lines[-1])
    finally:
        rc, _ = srv.stop()
    assert rc == 0
    assert not list(addr_dir.glob("*.addr"))


def test_a_repl_add_shows_in_the_tab(browser, tmp_path: Path) -> None:  # noqa: F811
    srv = AmStart(tmp_path, base_env())
    addr_dir = tmp_path / "tmp"
    try:
        page = open_tab(browser, srv.url)
        tab = [f for f in wait_files(addr_dir, 2) if f.name.startswith("repl-browser-bar-")]
        assert len(tab) == 1
        bar = tab[0].stem.removeprefix("repl-")
        # one REPL, three commands (see above); the tab's endpoint knows the argument names
        out = repl("--dir", str(addr_dir), input=f"add {bar} Msg --arg Msg.Msg --val 'from the "
                   f"repl'\nadd {bar} Msg --arg Nope --val x\nlist -p browser-bar-\n")  # fmt: skip
        lines = out.stdout.splitlines()
        assert lines[0] == "=> Executed", out
        assert lines[1] == f"err> unknown argument Nope for {bar} (known: Msg.Msg)"
        assert re.fullmatch(rf"=> 1\. {bar} t\d+", lines[2]) and lines[3].startswith("=>    CR: ")
        wait_li(page, f"[{repl_source_id()}] from the repl")
        page.screenshot(path=str(tmp_path / "tab.png"))
        page.close()
        # the tab is gone: the relay removes its address file
        deadline = time.monotonic() + 30
        while tab[0].exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        srv.stop()


def test_two_repls_reach_a_tab_at_once(browser, tmp_path: Path) -> None:  # noqa: F811
    """A REPL stays connected to a tab; a second one, meanwhile, reaches the tab too (by its
    id, connected), and both mutations show in the tab."""
    srv = AmStart(tmp_path, base_env())
    addr_dir = tmp_path / "tmp"
    first = None
    try:
        page = open_tab(browser, srv.url)
        tab = [f for f in wait_files(addr_dir, 2) if f.name.startswith("repl-browser-bar-")]
        bar = tab[0].stem.removeprefix("repl-")
        first = Proc([*REPL_CMD, "--dir", str(addr_dir)])  # stdin stays open: stays connected
        first.send(f"add {bar} Msg --arg Msg.Msg --val one")
        first.expect(r"^=> Executed$")
        out = repl("--dir", str(addr_dir), "--", "list", "-p", "browser-bar-")
        assert out.returncode == 0, out
        assert re.fullmatch(rf"=> 1\. {bar} t\d+\n=>    CR: .*\n", out.stdout), out.stdout
        out = repl("--dir", str(addr_dir), "--", "add", bar, "Msg", "--arg", "Msg.Msg",
                   "--val", "two")  # fmt: skip
        assert (out.returncode, out.stdout) == (0, "=> Executed\n"), out
        first.send(f"add {bar} Msg --arg Msg.Msg --val three")  # the first is still connected
        first.expect(r"^=> Executed$")
        for text in ("one", "two", "three"):
            wait_li(page, f"[{repl_source_id()}] {text}")
        page.screenshot(path=str(tmp_path / "two-repls.png"))
        assert first.proc.stdin is not None
        first.proc.stdin.close()
        assert first.wait(TIMEOUT) == 0, first.lines
        page.close()
    finally:
        if first is not None:
            first.stop()
        srv.stop()


def test_a_slow_dom_does_not_cancel_a_message(browser, tmp_path: Path) -> None:  # noqa: F811
    """The tab's MsgState shows the message, and a handler has 0.1 s (the reference's handler
    timeout). On a starved CPU the DOM append and its scroll (a forced layout) took longer and
    the REPL got ``Canceled (by MsgState ...)``: the display must not decide a message's fate.
    The DOM is made slow twice: by the CPU (DevTools' throttling, as a slow phone) and by a
    scroll that takes 0.3 s whatever the machine."""
    srv = AmStart(tmp_path, base_env(), "--page", "dev")
    addr_dir = tmp_path / "tmp"
    try:
        page = open_tab(browser, srv.url)
        tab = [f for f in wait_files(addr_dir, 2) if f.name.startswith("repl-browser-bar-")]
        bar = tab[0].stem.removeprefix("repl-")
        cdp = page.context.new_cdp_session(page)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 20})
        try:
            for n in range(3):
                out = repl("--dir", str(addr_dir), "--call-timeout", "20", "--", "add", bar,
                           "Msg", "--arg", "Msg.Msg", "--val", f"throttled {n}")  # fmt: skip
                assert (out.returncode, out.stdout) == (0, "=> Executed\n"), out
            wait_li(page, f"[{repl_source_id()}] throttled 2", timeout=60_000)
        finally:
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        page.evaluate("""() => {
            const scroll = Element.prototype.scrollIntoView;
            Element.prototype.scrollIntoView = function (...args) {
                const until = performance.now() + 300;
                while (performance.now() < until) {}
                return scroll.apply(this, args);
            };
        }""")
        out = repl("--dir", str(addr_dir), "--", "add", bar, "Msg", "--arg", "Msg.Msg", "--val",
                   "slow scroll")  # fmt: skip
        assert (out.returncode, out.stdout) == (0, "=> Executed\n"), out
        wait_li(page, f"[{repl_source_id()}] slow scroll")
        # nothing timed out on the way: no handler overran, no Exception
        timeouts = page.evaluate("""() => JSON.parse(amExample.py.runPython(
            "import json; from machines.example import web_io; " +
            "json.dumps([str(e) for e in web_io._app.bar.err_internal])"))""")
        assert timeouts == [], timeouts
        out = repl("--dir", str(addr_dir), "--", "mach", bar)
        assert out.returncode == 0 and "Exception" not in out.stdout, out
    finally:
        srv.stop()
