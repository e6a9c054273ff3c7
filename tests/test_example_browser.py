"""The example as a user runs it: ``am start`` as a process, the page in real Chromium.

Chromium is Debian's (Playwright drives it through ``executable_path``; it cannot download
its own here). The page loads Pyodide from the relay, so the page build must exist
(``task build``; ``task test`` runs it first); ``am start`` would rebuild a stale one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
#: page open -> Python loaded -> machines connected; generous: the machine may be loaded
LOAD_MS = 90_000
#: Ctrl-C to exit: about 0.4 s when idle; the bound leaves room for a loaded CI machine, while
#: still catching a shutdown that waits out a timeout (the aRPC and relay ones are 10 s).
STOP_BOUND = 5.0

pytestmark = pytest.mark.timeout(300)


class AmStart:
    """``am start`` in a subprocess; its stdout lines are collected as they come."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        full = {**os.environ, "PYTHONPATH": str(REPO), **env}
        # a session of its own: whatever it starts keeps its session id, even once orphaned
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "start", *args],
            cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self.wait_line(r"^Open (http://\S+)", 120).group(1)

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if m := rx.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._pending()):
                    out = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no line matching {pattern!r}; output:\n{out}")
                self._cond.wait(min(left, 0.5))

    def _pending(self) -> bool:
        return self.proc.stdout is not None and not self.proc.stdout.closed

    def stop(self) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took."""
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(10)
        return rc, time.monotonic() - t


def session_processes(sid: int) -> list[str]:
    """The processes still in session `sid` (``pid command``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses
        comm_end = text.rindex(")")
        fields = text[comm_end + 2 :].split()
        if int(fields[3]) == sid:
            found.append(f"{text.split()[0]} {text[text.index('(') + 1 : comm_end]}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A port whose next port is free too (the debugger's TCP and WebSocket ports)."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two free ports in a row")


def base_env(**kw: object) -> dict[str, str]:
    env = {
        "FOO_TCP_ADDR": "127.0.0.1:0",
        "FOO_REPL_ADDR": "127.0.0.1:0",
        "BAR_REPL_ADDR": "127.0.0.1:0",
        "RELAY_HTTP_ADDR": "127.0.0.1:0",
        "FOO_BORED_AFTER": "1000",
        "FOO_HELLO_INTERVAL": "1000",
    }
    env.update({k: str(v) for k, v in kw.items()})
    return env


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(autouse=True)
def _tabs_closed_after_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every tab a test opened is closed when it ends. The module shares one browser: a tab
    left open keeps its Pyodide running (and reconnecting to a server that is gone), and a
    few of them together crashed a later test's renderer ("Target crashed")."""
    yield
    if "browser" in request.fixturenames:
        for ctx in list(request.getfixturevalue("browser").contexts):
            ctx.close()


def open_tab(browser: object, url: str, shots: Path | None = None):
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    # a clean console: no request fails (the manifest of the build not served was a 404)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url)
    page.wait_for_selector("#list li:text-is('[bar] StartState')", timeout=LOAD_MS)
    assert not errors, errors
    return page


def lines_of(page) -> list[str]:
    return page.locator("#list li").all_inner_texts()


def wait_li(page, text: str, timeout: float = 20_000) -> None:
    page.wait_for_function(
        "t => [...document.querySelectorAll('#list li')].some(li => li.textContent === t)",
        arg=text,
        timeout=timeout,
    )


def test_two_tabs_messages_boredom_and_the_panel(browser, tmp_path: Path) -> None:
    srv = AmStart(tmp_path, base_env(FOO_BORED_AFTER=3), "--page", "dev")
    try:
        one = open_tab(browser, srv.url)
        two = open_tab(browser, srv.url)
        sess_one = one.inner_text("#session")
        assert re.fullmatch(r"[0-9a-f]{4}", sess_one)
        assert sess_one != two.inner_text("#session")
        one.wait_for_function("document.getElementById('status').textContent === 'connected'")
        # an empty message is refused: nothing appended, nothing sent
        before = lines_of(one)
        one.press("#input", "Enter")
        one.fill("#input", "hi from one")
        one.press("#input", "Enter")
        author = f"browser-bar-{sess_one}"
        srv.wait_line(rf"^\[{author}\] hi from one$")
        wait_li(two, f"[{author}] hi from one")
        wait_li(one, "[bar] hi from one")
        assert lines_of(one)[len(before) :] == ["[bar] hi from one"]
        assert one.input_value("#input") == ""
        # server-foo goes bored 3 s after the last message: every tab sees it
        srv.wait_line(r"^foo is bored\.\.\.$")
        wait_li(one, "foo is bored...")
        wait_li(two, "foo is bored...")
        one.wait_for_function("document.getElementById('foo-states').textContent.includes('Bored')")
        assert "Ready" in one.inner_text("#bar-states")
        one.screenshot(path=str(tmp_path / "tab-one.png"))
        # the server prints each message exactly once, with its author
        assert sum(f"[{author}] hi from one" == x for x in srv.lines) == 1
        two_lines = lines_of(two)
        assert not any("[bar] hi from one" == x for x in two_lines)
    finally:
        rc, took = srv.stop()
    assert rc == 0
    assert took < STOP_BOUND, f"stopping took {took:.2f}s"
    assert not list((tmp_path / "tmp").glob("*.addr")), "address files left behind"


def test_hellos_and_the_page_reconnects_after_a_server_restart(browser, tmp_path: Path) -> None:
    port = free_port()
    env = base_env(FOO_HELLO_INTERVAL=1, RELAY_HTTP_ADDR=f"127.0.0.1:{port}")
    srv = AmStart(tmp_path, env)
    try:
        page = open_tab(browser, srv.url)
        wait_li(page, "[server-foo] hello")
        srv.wait_line(r"^\[server-foo\] hello$")
        assert (tmp_path / "tmp" / "server-foo-repl.addr").exists()
    finally:
        rc, _ = srv.stop()
    assert rc == 0
    page.wait_for_function(
        "document.getElementById('status').textContent === 'reconnecting'", timeout=10_000
    )
    hellos = lines_of(page).count("[server-foo] hello")
    srv = AmStart(tmp_path, env)
    try:
        page.wait_for_function(
            "document.getElementById('status').textContent === 'connected'", timeout=30_000
        )
        srv.wait_line(r"^aRPC connected via WebSocket: browser-bar-")
        page.wait_for_function(
            "n => [...document.querySelectorAll('#list li')]"
            ".filter(li => li.textContent === '[server-foo] hello').length > n",
            arg=hellos,
            timeout=20_000,
        )
        page.fill("#input", "after the restart")
        page.press("#input", "Enter")
        srv.wait_line(r"^\[browser-bar-[0-9a-f]{4}\] after the restart$")
        page.screenshot(path=str(tmp_path / "reconnected.png"))
    finally:
        rc, _ = srv.stop()
    assert rc == 0


def test_long_lines_and_a_long_chat_keep_the_page_in_the_window(browser, tmp_path: Path) -> None:
    """A pasted URL or a long word wraps inside the page (it made the page scroll sideways,
    the input and the panel a corner of it), the input fits a phone's width, and a chat longer
    than the window scrolls in the list, under the input: scrolling the page to each new line
    took the input out of sight while one typed."""
    srv = AmStart(tmp_path, base_env(), "--page", "dev")
    try:
        page = open_tab(browser, srv.url)
        page.set_viewport_size({"width": 800, "height": 600})
        word = "x" * 400
        page.fill("#input", word)
        page.press("#input", "Enter")
        wait_li(page, f"[bar] {word}")
        widths = []
        for width in (800, 375):  # a laptop's window, a phone's
            page.set_viewport_size({"width": width, "height": 600})
            widths.append(page.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth,"
                " Math.max(...[...document.querySelectorAll('#list li, #input')]"
                ".map(el => el.getBoundingClientRect().right))]"
            ))  # fmt: skip
            page.screenshot(path=str(tmp_path / f"long-message-{width}.png"))
        page.set_viewport_size({"width": 800, "height": 600})
        for i in range(40):
            page.fill("#input", f"line {i}")
            page.press("#input", "Enter")
        wait_li(page, "[bar] line 39")
        page.wait_for_timeout(300)  # the list's last scroll
        page.keyboard.type("half typed")
        seen = page.evaluate(
            "() => { const box = el => el.getBoundingClientRect();"
            " const input = box(document.getElementById('input'));"
            " const last = box(document.querySelector('#list li:last-child'));"
            " return [input.top, input.bottom, last.bottom, innerHeight, scrollY]; }"
        )
        page.screenshot(path=str(tmp_path / "long-chat.png"))
        # scrolled up to read, the list stays put as lines arrive; at the bottom it follows
        follows = []
        for top, text in ((0, "line 40"), (10**6, "line 41")):
            page.evaluate(f"() => {{ document.getElementById('list').scrollTop = {top}; }}")
            page.fill("#input", text)
            page.press("#input", "Enter")
            wait_li(page, f"[bar] {text}")
            page.wait_for_timeout(100)
            follows.append(page.evaluate(
                "() => { const l = document.getElementById('list');"
                " return [l.scrollTop, l.scrollHeight - l.scrollTop - l.clientHeight]; }"
            ))  # fmt: skip
    finally:
        rc, _ = srv.stop()
    assert rc == 0
    for scroll, inner, right in widths:
        assert scroll <= inner, f"the page scrolls sideways: {scroll}px wide in a {inner}px window"
        assert right <= inner, f"a line or the input ends at {right}px, past the {inner}px window"
    input_top, input_bottom, last_bottom, height, scroll_y = seen
    assert 0 <= input_top and input_bottom <= height, f"the input is out of sight: {seen}"
    assert last_bottom <= height + 1, f"the newest line is below the window: {seen}"
    assert scroll_y == 0, f"the page itself scrolled: {seen}"
    (up_top, _), (_, down_gap) = follows
    assert up_top == 0, f"the list jumped to a new line while scrolled up: {follows}"
    assert down_gap <= 1, f"the list did not follow a new line from its bottom: {follows}"


@pytest.mark.parametrize("var", ["FOO_TCP_ADDR", "RELAY_HTTP_ADDR", "AM_DBG_ADDR"])
def test_a_port_in_use_is_one_line_naming_the_variable(tmp_path: Path, var: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        addr = f"127.0.0.1:{busy.getsockname()[1]}"
        env = {**os.environ, "PYTHONPATH": str(REPO), **base_env(**{var: addr})}
        dbg = ["--dbg", "--dir", str(tmp_path)] if var == "AM_DBG_ADDR" else []
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", "start", *dbg],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert addr in err[0] and var in err[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    if var == "AM_DBG_ADDR":  # a running `am dbg`, most likely: how to report to it instead
        assert f"AM_DBG_ADDR={addr} am start, no --dbg" in err[0], err[0]


def test_a_closed_stdout_still_stops_cleanly_and_writes_the_dump(tmp_path: Path) -> None:
    """``am start --dbg | tee log``, then Ctrl-C: tee goes first, and the dump must not."""
    port = free_port_pair()
    env = {**os.environ, "PYTHONPATH": str(REPO), **base_env(AM_DBG_ADDR=f"127.0.0.1:{port}")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "start", "--dbg", "--dir", "out"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("REPL: "):
                break
        proc.stdout.close()  # type: ignore[union-attr]  # the reader of the pipe is gone
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert (tmp_path / "out" / "am-dbg-dump.cbor.br").exists(), err
    assert "Traceback" not in err, err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc here")
def test_ctrl_c_ends_with_a_final_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """Ctrl-C on a full ``am start`` (headless peers, the debugger's collector): after
    ``stopping...`` a last line says everything stopped; by then no process of its session is
    left, its ports are closed, the address files are gone and the dump is written."""
    port = free_port_pair()
    srv = AmStart(tmp_path, base_env(AM_DBG_ADDR=f"127.0.0.1:{port}"), "--bars", "2", "--dbg",
                  "--dir", "out")  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while sum("aRPC connected" in x for x in srv.lines) < 2:
            assert time.monotonic() < deadline, srv.lines
            time.sleep(0.1)
        relay_port = int(srv.url.rsplit(":", 1)[1])
        sid = srv.proc.pid
        assert session_processes(sid), "the session is not visible in /proc"
        took = time.monotonic()
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(STOP_BOUND * 2) == 0, srv.lines
        took = time.monotonic() - took
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    srv.wait_line(r"^stopped")  # the reader thread has every line
    stopping = srv.lines.index("stopping...")
    assert re.fullmatch(r"stopped \(\d+\.\d s\)", srv.lines[-1]), srv.lines[stopping:]
    assert "debugger: wrote" in srv.lines[-2], srv.lines[stopping:]
    assert took < STOP_BOUND, f"stopping took {took:.2f}s"
    assert session_processes(sid) == []
    for p in (relay_port, port, port + 1):
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", p))
    assert not list((tmp_path / "tmp").glob("*.addr"))
    assert (tmp_path / "out" / "am-dbg-dump.cbor.br").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_a_closed_terminal_stops_cleanly(tmp_path: Path) -> None:
    """SIGHUP (a closed terminal window or tmux session) stops as Ctrl-C does: the address
    files go and the dump is written."""
    port = free_port_pair()
    srv = AmStart(tmp_path, base_env(AM_DBG_ADDR=f"127.0.0.1:{port}"), "--dbg", "--dir", "out")
    assert list((tmp_path / "tmp").glob("*.addr"))
    srv.proc.send_signal(signal.SIGHUP)
    assert srv.proc.wait(STOP_BOUND * 2) == 0, srv.lines
    assert not list((tmp_path / "tmp").glob("*.addr"))
    assert (tmp_path / "out" / "am-dbg-dump.cbor.br").exists(), srv.lines


def test_bars_and_dbg_as_a_process(browser, tmp_path: Path) -> None:
    """Three headless peers and a page; the dump holds server-foo and every tab's bar (the
    page's machines report over the debugger's WebSocket, from Pyodide)."""
    from dbg.dump import read_dump

    port = free_port_pair()
    env = base_env(FOO_HELLO_INTERVAL=0.5, AM_DBG_ADDR=f"127.0.0.1:{port}")
    srv = AmStart(tmp_path, env, "--bars", "3", "--dbg", "--dir", "out")
    try:
        deadline = time.monotonic() + 60
        while sum("aRPC connected" in x for x in srv.lines) < 3:
            assert time.monotonic() < deadline, srv.lines
            time.sleep(0.1)
        srv.wait_line(r"^\[server-foo\] hello$")
        page = open_tab(browser, srv.url)
        wait_li(page, "[server-foo] hello")
        page_bar = f"browser-bar-{page.inner_text('#session')}"
        bars = {x.split(": ")[1] for x in srv.lines if x.startswith("aRPC connected")}
        assert page_bar in bars and len(bars) == 4
        page.close()  # its telemetry socket flushes on the way
        srv.wait_line(rf"^aRPC disconnected: {page_bar}$")
    finally:
        rc, took = srv.stop()
    assert rc == 0 and took < STOP_BOUND, (rc, took)
    dump = tmp_path / "out" / "am-dbg-dump.cbor.br"
    assert dump.exists(), srv.lines
    machines = read_dump(dump)
    ids = {d.id for d in machines}
    assert "server-foo" in ids
    assert bars <= ids, (bars, ids)
    assert not list((tmp_path / "tmp").glob("*.addr"))
    # without an AM_LOG, --dbg still carries the links: the map joins every tab to server-foo
    from vis.graph import Graph

    linked = {client for client, server in Graph.from_dump(machines).rpc if server == "server-foo"}
    assert bars <= linked, (bars, linked)


def test_a_debugger_address_defaults_am_log_to_the_links_level() -> None:
    from cli.start import DEFAULT_DBG_ADDR, debug_env

    assert debug_env({}, dbg=False) == {}  # no debugger: no log level either
    assert debug_env({}, dbg=True) == {"AM_DBG_ADDR": DEFAULT_DBG_ADDR, "AM_LOG": "3"}
    assert debug_env({"AM_DBG_ADDR": "h:1"}, dbg=False) == {"AM_DBG_ADDR": "h:1", "AM_LOG": "3"}
    assert debug_env({"AM_LOG": "0"}, dbg=True)["AM_LOG"] == "0"  # an explicit level stays
    assert debug_env({"AM_DBG_ADDR": "1"}, dbg=True)["AM_DBG_ADDR"] == DEFAULT_DBG_ADDR


def test_am_start_says_how_to_get_the_fast_page_when_it_serves_the_dev_build() -> None:
    """A first run has only the dev build: every tab boots Pyodide for several seconds. The
    line names the remedy, and nothing is said when the prod build is used or asked for."""
    from cli.start import page_note

    first_run = page_note("auto", prod_built=False, prod_fresh=False)
    assert first_run is not None and "dev build" in first_run and "task build-prod" in first_run
    assert "stale" in (page_note("auto", prod_built=True, prod_fresh=False) or "")
    assert page_note("auto", prod_built=True, prod_fresh=True) is None
    assert page_note("dev", prod_built=False, prod_fresh=False) is None
    assert page_note("prod", prod_built=False, prod_fresh=False) is None


def test_a_page_opened_before_the_build_says_to_run_task_build(browser, tmp_path: Path) -> None:
    site = tmp_path / "web"
    site.mkdir()
    for name in ("index.html", "main.mjs"):
        (site / name).write_bytes((REPO / "web" / name).read_bytes())
    with _relay_serving(site) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#error:not([hidden])", timeout=20_000)
        assert "task build" in page.inner_text("#error")
        page.close()


@contextmanager
def _relay_serving(site: Path) -> Iterator[str]:
    """``am relay`` serving ``site``; yields the URL it prints."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "relay", "--listen-addr", "127.0.0.1:0",
         "--static-dir", str(site)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = None
        for line in proc.stdout:  # type: ignore[union-attr]
            if m := re.search(r"(http://127\.0\.0\.1:\d+/?)", line):
                url = m.group(1)
                break
        assert url, "am relay printed no URL"
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.mark.timeout(1200)  # builds the prod page first when it is stale (about a minute)
def test_the_prod_build_is_served_compressed_and_works(browser, tmp_path: Path) -> None:
    """``task build-prod`` (rebuilt here when stale): the page restores the Pyodide snapshot,
    the big files come zstd-compressed, and the example works as with the dev build."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "web" / "build_page.py"), "--prod", "--if-stale"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    srv = AmStart(tmp_path, base_env(), "--page", "prod")
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        encodings: dict[str, str | None] = {}
        page.on(
            "response",
            lambda r: encodings.__setitem__(
                r.url.rsplit("/", 1)[-1], r.headers.get("content-encoding")
            ),
        )
        page.goto(srv.url)
        page.wait_for_selector("#list li:text-is('[bar] StartState')", timeout=LOAD_MS)
        assert page.evaluate("window.amExample.kind") == "prod"
        assert encodings["pyodide.asm.wasm"] == "zstd"  # Chromium takes zstd: the fastest
        snapshot = [k for k in encodings if re.fullmatch(r"snapshot-[0-9a-f]{12}\.bin", k)]
        assert snapshot and encodings[snapshot[0]] == "zstd"
        # a module the snapshot does not hold is imported from the browser zip
        where = page.evaluate(
            "window.amExample.py.runPython('import machines.pipes; machines.pipes.__file__')"
        )
        assert where.startswith("/lib/browser-site.zip/"), where
        page.fill("#input", "from the prod page")
        page.press("#input", "Enter")
        srv.wait_line(r"^\[browser-bar-[0-9a-f]{4}\] from the prod page$")
        ctx.close()
    finally:
        rc, _ = srv.stop()
    assert rc == 0


def test_a_snapshot_that_cannot_be_fetched_is_one_line_on_the_page(browser, tmp_path: Path) -> None:
    """The prod page fetches its snapshot in a worker while Pyodide starts: a 404 there ends
    the load with one line naming the file, as any other failed step does."""
    site = tmp_path / "web"
    pyodide = site / "build" / "prod" / "pyodide-0"
    pyodide.mkdir(parents=True)
    for name in ("index.html", "main.mjs"):
        (site / name).write_bytes((REPO / "web" / name).read_bytes())
    for name in ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                 "pyodide-lock.json"):  # fmt: skip
        (pyodide / name).write_bytes((REPO / "node_modules" / "pyodide" / name).read_bytes())
    manifest = {"kind": "prod", "pyodide": "build/prod/pyodide-0/",
                "snapshot": "build/prod/snapshot-gone.bin", "snapshot_size": 32 << 20}  # fmt: skip
    (site / "build" / "prod" / "manifest.json").write_text(json.dumps(manifest))
    with _relay_serving(site) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#error:not([hidden])", timeout=LOAD_MS)
        error = page.inner_text("#error")
        assert error.endswith("/build/prod/snapshot-gone.bin: HTTP 404"), error
        assert "\n" not in error and page.inner_text("#status") == "failed"
        page.close()
