"""``am dbg``'s MCP endpoint (``--ui-mcp``, ``/mcp`` on the web port): the SDK's own
Streamable HTTP client against the real command in a pty (C.6 #18), and the endpoint's
guards in-process."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import threading
from pathlib import Path

import pytest
import trio
from conftest import GO_DUMP, ROOT, free_port_pair, running_dbg
from conftest import dbg_env as _env
from mcp import Client

pytestmark = pytest.mark.timeout(180)

TOOLS = {
    "TextScreen", "TextLog", "TextLogReader", "TextClients", "TextHelp", "NetworkGraph",
    "TransitionSteps", "GoToMachAddr", "PressKey", "ToggleTool",
}  # fmt: skip


async def _call(client: Client, name: str, /, **args: object) -> tuple[bool, str]:
    """(is_error, text) of one call of the tool ``name``."""
    result = await client.call_tool(name, args)
    text = "".join(c.text for c in result.content if c.type == "text")
    return bool(result.is_error), text


async def _drive(url: str) -> None:
    with trio.fail_after(90):
        async with Client(url) as client:
            listed = await client.list_tools()
            assert {t.name for t in listed.tools} == TOOLS
            assert all(t.description for t in listed.tools)

            err, screen = await _call(client, "TextScreen")
            assert not err and "mach://sim-p11/" in screen and "Machines:107" in screen
            assert len(screen.splitlines()) == 40  # the terminal's rows

            # scenario 18: GoToMachAddr moves the cursor; the screen says so
            err, steps = await _call(client, "GoToMachAddr", url="mach://sim-p2")
            assert not err and steps.startswith("# mach://sim-p2/"), steps
            # TextLog: the last 200 lines by default (sim-p2 has no more), a window on request
            err, log = await _call(client, "TextLog")
            assert not err and log.startswith("# sim-p2 log")
            total = len(log.splitlines())
            err, tail = await _call(client, "TextLog", lines=50)
            assert not err and tail.startswith(f"[lines {total - 49}-{total} of {total}; ")
            assert "the current transition at line " in tail.splitlines()[0]
            assert tail.splitlines()[1:] == log.splitlines()[-50:]
            tx_ids = re.findall(r"^## ([0-9a-f]+) t\d+", log, re.M)
            assert not err and len(tx_ids) > 3, log[:500]
            err, head = await _call(client, "TextLog", lines=3, offset=total - 3)
            assert head.splitlines()[1:] == log.splitlines()[:3]
            assert head.splitlines()[0].startswith(f"[lines 1-3 of {total}; ")
            err, text = await _call(client, "TextLog", lines=0)
            assert err and text == "TextLog: 'lines' is an integer of at least 1, not 0"
            err, text = await _call(client, "TextLog", offset="2")
            assert err and text == "TextLog: 'offset' is an integer of at least 0, not '2'"
            first, second = tx_ids[0], tx_ids[1]
            err, steps = await _call(client, "GoToMachAddr", url=f"mach://sim-p2/{first}")
            assert not err and steps.startswith(f"# mach://sim-p2/{first}\n"), steps
            err, screen = await _call(client, "TextScreen")
            assert f"mach://sim-p2/{first}" in screen and "Transition 1 /" in screen, screen

            # PressKey: → is the next transition, as from the keyboard
            err, pressed = await _call(client, "PressKey", key="right")
            assert not err and f"address: mach://sim-p2/{second}" in pressed, pressed
            err, steps = await _call(client, "TransitionSteps")
            assert steps.startswith(f"# mach://sim-p2/{second}\n")
            err, pressed = await _call(client, "PressKey", key="?")
            err, screen = await _call(client, "TextScreen")
            assert "Keys" in screen and "Legend" in screen  # the help, over the panes
            err, pressed = await _call(client, "PressKey", key="escape")
            err, screen = await _call(client, "TextScreen")
            assert "Legend" not in screen and f"mach://sim-p2/{second}" in screen

            # bad input: a clear error each, and the server goes on serving
            err, text = await _call(client, "GoToMachAddr", url="mach://nope/1")
            assert err and text == "no machine 'nope'"
            err, text = await _call(client, "GoToMachAddr", url=f"mach://sim-p2/{first}x")
            assert err and text == f"no transition '{first}x' in sim-p2"
            err, text = await _call(client, "GoToMachAddr", url="http://example.com/")
            assert err and text.startswith("not a machine address")
            err, text = await _call(client, "PressKey", key="ctrl+nope")
            assert err and text.startswith("unknown key 'ctrl+nope'; keys: ") and "tab" in text
            err, text = await _call(client, "GoToMachAddr")
            assert err and "needs 'url'" in text
            err, text = await _call(client, "NoSuchTool")
            assert err and "unknown tool" in text
            err, steps = await _call(client, "TransitionSteps")
            assert not err and steps.startswith(f"# mach://sim-p2/{second}\n")

            # the other texts
            err, text = await _call(client, "TextLogReader")
            assert not err and text.startswith(f"Tx {second} ")
            err, text = await _call(client, "TextClients")
            assert not err and "sim-p2 disconnected" in text and len(text.splitlines()) == 107
            err, text = await _call(client, "TextHelp")
            assert not err and "Ctrl+Q" in text and "MCP: http://127.0.0.1:" in text
            err, text = await _call(client, "NetworkGraph")
            assert not err and text.startswith("<graph>") and 'id="sim-p2"' in text

            # ToggleTool: the filters and switches, as their keys (tail moves to the end)
            err, text = await _call(client, "ToggleTool", tool="tail")
            assert (err, text) == (False, "tail on\n")
            err, text = await _call(client, "ToggleTool", tool="tail")
            assert (err, text) == (False, "tail off\n")
            err, text = await _call(client, "ToggleTool", tool="canceled")
            assert (err, text) == (False, "canceled on\n")
            err, screen = await _call(client, "TextScreen")
            assert "1:[x]canceled" in screen
            err, text = await _call(client, "ToggleTool", tool="canceled")
            assert (err, text) == (False, "canceled off\n")
            err, text = await _call(client, "ToggleTool", tool="nope")
            assert err and text.startswith("unknown toggle 'nope'; toggles: canceled, ")


def test_real_command_is_driven_over_mcp(tmp_path: Path):
    """C.6 #18 with the real command in a pty: the SDK's client lists the tools, moves the
    cursor with GoToMachAddr and PressKey, reads the screen, gets one-line errors."""
    import pexpect

    port = free_port_pair()
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cli.main", "dbg", "-i", str(GO_DUMP), "mach://sim-p11", "-l",
         f"127.0.0.1:{port}", "-d", str(tmp_path)],
        env=_env(), cwd=str(ROOT), dimensions=(40, 160), encoding="utf-8",
        codec_errors="replace", timeout=60,
    )  # fmt: skip
    stop = threading.Event()

    def drain() -> None:  # the UI blocks on a full pty otherwise
        while not stop.is_set():
            try:
                child.read_nonblocking(1 << 16, timeout=0.2)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return

    reader = threading.Thread(target=drain, daemon=True)
    try:
        child.expect(r"am dbg: MCP (http://127\.0\.0\.1:\d+/mcp)")
        url = child.match.group(1)
        assert url == f"http://127.0.0.1:{port + 1}/mcp"
        child.expect(r"mach://sim-p11/[0-9a-f]+")  # the UI is up
        reader.start()
        trio.run(_drive, url)
        stop.set()
        reader.join(5)
        child.send("\x11")  # Ctrl+Q
        child.expect("Clients: 107")
        child.expect(pexpect.EOF)
    finally:
        stop.set()
        child.close()
    assert child.exitstatus == 0


def _request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.trio
async def test_endpoint_refuses_other_hosts_and_origins_and_keeps_the_other_paths(
    tmp_path, monkeypatch
):
    import trio_websocket

    from dbg.collector import Collector
    from dbg.mcp import DbgMcp
    from dbg.web import WebServer
    from machines import Machine, State
    from machines.telemetry import DbgTracer, Outbox

    (tmp_path / "tx.md").write_text("# mach://x\n")
    collector = Collector()
    server = WebServer(collector, tmp_path, "127.0.0.1", 0, diagrams=False, mcp=DbgMcp())
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'

            def post(*extra: str) -> tuple[int, bytes]:
                head = (
                    "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\n"
                    "Accept: application/json, text/event-stream\r\n"
                    f"Content-Length: {len(body)}\r\n" + "".join(e + "\r\n" for e in extra) + "\r\n"
                )
                return _request(port, head, body)

            status, text = await trio.to_thread.run_sync(post, f"Host: evil.example:{port}")
            assert status == 403 and text.startswith(b"host not allowed: ")
            own = f"Host: 127.0.0.1:{port}"
            status, text = await trio.to_thread.run_sync(post, own, "Origin: http://evil.example")
            assert (status, text) == (403, b"origin not allowed: http://evil.example\n")
            # the server's own page may call it (same origin)
            status, _ = await trio.to_thread.run_sync(post, own, f"Origin: http://127.0.0.1:{port}")
            assert status != 403

            # a body that stops half-way: the connection ends, the server goes on
            monkeypatch.setattr("dbg.asgi.BODY_TIMEOUT", 0.3)
            stalled = await trio.open_tcp_stream("127.0.0.1", port)
            await stalled.send_all(
                f"POST /mcp HTTP/1.1\r\n{own}\r\nContent-Type: application/json\r\n"
                "Accept: application/json, text/event-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:10]
            )
            with trio.fail_after(10):
                while await stalled.receive_some():
                    pass
            await stalled.aclose()

            # without a UI: a tool error, not a failure
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                err, text = await _call(client, "TextScreen")
                assert err and text == "the debugger's UI is not running"

            # the other paths as before: the index (naming the endpoint), files, /dbg.ws
            index = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
            status, page = await trio.to_thread.run_sync(_request, port, index)
            assert status == 200 and f"http://127.0.0.1:{port}/mcp".encode() in page
            get = f"GET /tx.md HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
            assert await trio.to_thread.run_sync(_request, port, get) == (200, b"# mach://x\n")
            status, text = await trio.to_thread.run_sync(_request, port, "NOT HTTP\r\n\r\n")
            assert status == 400 and text.startswith(b"bad HTTP request: ")
            box = Outbox()
            m = Machine({"A": State()}, id="web-bar", logger=lambda *_: None)
            DbgTracer(box).attach(m)
            m.add("A")
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/dbg.ws") as ws:
                await ws.send_message(box.take())
                await collector.wait_until(
                    lambda c: "web-bar" in c.machines and len(c.machines["web-bar"].txs) == 1
                )
            nursery.cancel_scope.cancel()


def test_headless_app_screen_over_mcp(tmp_path: Path):
    """Without a terminal (Textual's headless mode, as under its test pilot) TextScreen is the
    compositor's screen, and the tools reach the app from the web server's trio thread."""
    asyncio.run(_headless_app(tmp_path))


async def _headless_app(tmp_path: Path) -> None:
    from dbg.dump import read_dump
    from dbg.mcp import DbgMcp
    from dbg.ui.app import DebuggerApp
    from dbg.ui.live import LiveServer, LockedCollector
    from dbg.ui.session import Session
    from dbg.web import WebServer

    collector = LockedCollector()
    collector.load(read_dump(GO_DUMP))
    remote = DbgMcp()
    server = WebServer(collector, tmp_path, "127.0.0.1", 0, diagrams=False, mcp=remote)
    live = LiveServer(collector, "127.0.0.1", 0, None)
    live.services.append(server.serve)
    app = DebuggerApp(Session(collector, tail=True), out_dir=tmp_path, live=live)
    remote.app = app
    async with app.run_test(size=(120, 30)) as pilot:
        async with asyncio.timeout(60):
            while server.bound is None:
                await pilot.pause(0.05)
            async with Client(f"http://127.0.0.1:{server.bound}/mcp") as client:
                err, _ = await _call(client, "GoToMachAddr", url="mach://sim")
                err, log = await _call(client, "TextLog")  # sim's log is longer: cut
                first = log.splitlines()[0]
                assert not err and first.startswith("[lines ") and "; earlier: offset=200" in first
                assert len(log.splitlines()) == 201 and log.endswith("\n")
                err, steps = await _call(client, "GoToMachAddr", url="mach://sim-p11")
                assert not err and steps.startswith("# mach://sim-p11/")
                assert app.session.mach == "sim-p11"
                at = app.session.index
                err, _ = await _call(client, "PressKey", key="home")
                assert not err and app.session.index == 0 != at
                # → with the machine list focused moves the transition cursor, as the
                # reference's key does (only the steps timeline and the toolbar take it)
                assert app.focused is not None and app.focused.id == "list"
                n = app.session.counts()[1]
                err, pressed = await _call(client, "PressKey", key="right")
                assert not err and app.session.index == 1, pressed
                assert f"; transition 2 / {n}; focus: list" in pressed
                err, _ = await _call(client, "PressKey", key="end")
                err, pressed = await _call(client, "PressKey", key="right")  # the last: stays
                assert f"; transition {n} / {n}; focus: list" in pressed, pressed
                err, _ = await _call(client, "PressKey", key="home")
                err, screen = await _call(client, "TextScreen")
                lines = screen.splitlines()
                assert len(lines) == 30 and max(len(line) for line in lines) <= 120
                assert str(app.session.addr()) in lines[0] and "Transition 1 /" in screen


async def _scenario_18(url: str) -> None:
    with trio.fail_after(60):
        async with Client(url) as client:
            err, log = await _call(client, "GoToMachAddr", url="mach://sim-p3")
            err, log = await _call(client, "TextLog", lines=5000)
            tx = re.findall(r"^## ([0-9a-f]+) t\d+", log, re.M)[2]
            err, steps = await _call(client, "GoToMachAddr", url=f"mach://sim-p3/{tx}")
            assert not err and steps.startswith(f"# mach://sim-p3/{tx}\n")
            err, screen = await _call(client, "TextScreen")
            assert not err and f"mach://sim-p3/{tx}" in screen.splitlines()[0]
            assert "Transition 3 /" in screen and len(screen.splitlines()) == 50


def test_ui_headless_runs_off_screen_for_mcp_and_quits_on_sigterm(tmp_path: Path):
    """--ui-headless: no terminal at all (stdout is a pipe); the screen is drawn off-screen
    (160x50) for TextScreen; SIGTERM quits as Ctrl+Q does."""
    import signal

    port = free_port_pair()
    with running_dbg(
        "--ui-headless", "-i", str(GO_DUMP), "mach://sim-p11", "-l", f"127.0.0.1:{port}",
        "-d", str(tmp_path), ready="am dbg: MCP ",
    ) as (proc, lines):  # fmt: skip
        url = lines[-1].split()[-1]
        assert url == f"http://127.0.0.1:{port + 1}/mcp"
        trio.run(_scenario_18, url)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Clients: 107" in out and "Transitions: 7605" in out


def test_log_window_cuts_and_says_where() -> None:
    from dbg.mcp import log_window

    log = "".join(f"l{i}{' (current)' if i == 3 else ''}\n" for i in range(1, 11))
    assert log_window(log, 10) == log_window(log, 50) == log  # all of it: as it is
    assert log_window(log, 4) == (
        "[lines 7-10 of 10; the current transition at line 3 (offset=4 from it on); "
        "earlier: offset=4]\nl7\nl8\nl9\nl10\n"
    )
    assert log_window(log, 4, 4).splitlines() == [
        "[lines 3-6 of 10; the current transition at line 3 (offset=4 from it on); "
        "earlier: offset=8; later: offset=0]",
        "l3 (current)", "l4", "l5", "l6",
    ]  # fmt: skip
    assert log_window(log, 4, 99).startswith("[no lines: 10 in all; ")
