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


def tick(addr_dir: Path, mach: str, state: str) -> int:
    out = repl("--dir", str(addr_dir), "--", "time", mach, state)
    assert out.returncode == 0, out
    return int(re.fullmatch(rf"=> {state}:(\d+)\n", out.stdout).group(1))


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

        # a bar peer gets it too: its Msg ticks
        before = tick(addr_dir, bars[0], "Msg")
        out = repl("--dir", str(addr_dir), "--", "add", bars[0], "Msg", "--arg", "Msg.Msg",
                   "--val", "hey")  # fmt: skip
        assert (out.returncode, out.stdout) == (0, "=> Executed\n")
        assert tick(addr_dir, bars[0], "Msg") > before

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
        out = repl("--dir", str(addr_dir), "--", "add", bar, "Msg", "--arg", "Msg.Msg",
                   "--val", "from the repl")  # fmt: skip
        assert (out.returncode, out.stdout) == (0, "=> Executed\n"), out
        wait_li(page, f"[{repl_source_id()}] from the repl")
        page.screenshot(path=str(tmp_path / "tab.png"))
        # and the REPL lists the tab's machine, connected and ready
        out = repl("--dir", str(addr_dir), "--", "list", "-p", "browser-bar-")
        assert re.search(rf"^=> 1\. {bar} t\d+\n=>    CR: ", out.stdout, re.M), out.stdout
        page.close()
        # the tab is gone: the relay removes its address file
        deadline = time.monotonic() + 30
        while tab[0].exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        srv.stop()
