"""``am dbg``'s servers and file outputs: ``--fwd-data`` mirroring, diagrams in ``--dir``, and
the HTTP server on port+1 (index, files, viewer pages and their refresh sockets)."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from conftest import GO_DUMP, ROOT, free_port_pair
from conftest import dbg_env as _env

from dbg.collector import Collector, serve_collector
from dbg.forward import Forwarder
from machines import Machine, State, telemetry

pytestmark = pytest.mark.timeout(120)

SCHEMA = {"A": State(), "B": State(require=["A"]), "Msg": State(multi=True)}


async def _serve(nursery: trio.Nursery, collector: Collector) -> str:
    port, _ = await nursery.start(
        lambda task_status: serve_collector(collector, "127.0.0.1", 0, task_status=task_status)
    )
    return f"127.0.0.1:{port}"


def _txs(collector: Collector, mach_id: str) -> int:
    rec = collector.machines.get(mach_id)
    return len(rec.txs) if rec else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- --fwd-data


@pytest.mark.trio
async def test_fwd_data_mirrors_every_machine_and_transition_into_two_instances():
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            mirror1, mirror2 = Collector(), Collector()
            addr1, addr2 = await _serve(nursery, mirror1), await _serve(nursery, mirror2)
            main = Collector()
            fwd = Forwarder([addr1, addr2])
            main.tap = fwd
            await nursery.start(fwd.run)
            addr = await _serve(nursery, main)
            a = Machine(SCHEMA, id="fwd-a", logger=lambda *_: None)
            b = Machine({"X": State()}, id="fwd-b", parent=a)
            telemetry.attach(a, addr)
            telemetry.attach(b, addr)
            for _ in range(200):
                a.add(["A", "B"])
                a.remove("A")
            b.add("X")
            for c in (main, mirror1, mirror2):
                await c.wait_until(lambda c: _txs(c, "fwd-a") == 400 and _txs(c, "fwd-b") == 1)
            nursery.cancel_scope.cancel()
    for mirror in (mirror1, mirror2):
        assert set(mirror.machines) == {"fwd-a", "fwd-b"}
        assert mirror.machines["fwd-b"].schema.parent == "fwd-a"
        got = [(tx.id, tx.clocks) for tx in mirror.machines["fwd-a"].txs]
        assert got == [(tx.id, tx.clocks) for tx in main.machines["fwd-a"].txs]
    assert fwd.dropped == 0 and fwd.sent > 0


@pytest.mark.trio
async def test_fwd_data_a_dead_target_is_one_log_line_and_ingest_goes_on(caplog):
    caplog.set_level(logging.WARNING, "dbg.forward")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            dead = f"127.0.0.1:{_free_port()}"  # nobody listens there
            main = Collector()
            fwd = Forwarder([dead])
            main.tap = fwd
            await nursery.start(fwd.run)
            addr = await _serve(nursery, main)
            for i in range(3):  # three producers, each its own link to the dead target
                m = Machine(SCHEMA, id=f"dead-{i}", logger=lambda *_: None)
                telemetry.attach(m, addr)
                for _ in range(50):
                    m.add("Msg")
            await main.wait_until(lambda c: all(_txs(c, f"dead-{i}") == 50 for i in range(3)))
            while fwd.dropped == 0:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if r.name == "dbg.forward"]
    assert len(lines) == 1 and dead in lines[0], lines
    assert fwd.dropped > 0


def test_fwd_data_full_queue_drops_transitions_but_keeps_schemas():
    from dbg import forward
    from machines.telemetry import encode_frame

    fwd = Forwarder(["127.0.0.1:1"])

    class _Nursery:
        def start_soon(self, fn):  # the links' writers never run: the queue only fills
            pass

    fwd._nursery = _Nursery()  # type: ignore[assignment]
    schema = encode_frame("schema", {"id": "x"})
    big = encode_frame("txs", [["x"] * 1000])
    n = forward.MAX_QUEUED // len(big) + 10
    fwd.data("conn-1", schema + big * n, ["schema"] + ["txs"] * n)
    fwd.data("conn-1", schema, ["schema"])
    link = fwd._links["conn-1"][0]
    assert link.queued <= forward.MAX_QUEUED + 2 * len(schema)
    assert fwd.dropped >= 10
    assert link.queue[0] == schema and link.queue[-1] == schema
    # a frame split across two reads is forwarded whole, once complete
    fwd2 = Forwarder(["127.0.0.1:1"])
    fwd2._nursery = _Nursery()  # type: ignore[assignment]
    fwd2.data("c", schema[:5], [])
    fwd2.data("c", schema[5:], ["schema"])
    assert list(fwd2._links["c"][0].queue) == [schema]


def test_fwd_data_unreachable_target_fails_startup_with_one_line(tmp_path: Path):
    port = _free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "-l", "127.0.0.1:0",
         "--fwd-data", f"127.0.0.1:{port}", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot forward to 127.0.0.1:{port}" in lines[0], proc.stderr


# ----- --output-diagrams


def _active_overlay(svg: Path) -> str:
    text = svg.read_text()
    start = text.find('id="am-dbg-active"')
    return text[start:] if start >= 0 else ""


def test_diagrams_run_d2_once_per_layout_and_paint_active_states_as_an_overlay(tmp_path):
    from dbg.dump import read_dump
    from dbg.model import MachineDump
    from dbg.ui.diagrams import write_diagrams

    dumps = read_dump(GO_DUMP)
    at_end = write_diagrams(dumps, "sim-p11", 2, tmp_path, text=True)
    mach_svg, ran = at_end["mach"]
    assert ran and at_end["graph"][1]
    link = tmp_path / "am-vis-mach.svg"
    assert link.is_symlink() and link.resolve() == mach_svg.resolve()
    assert (tmp_path / "am-vis-graph.svg").resolve() == at_end["graph"][0].resolve()
    assert (tmp_path / "graph.md").read_text().strip() and (tmp_path / "graph.xml").is_file()
    late = _active_overlay(mach_svg)
    assert late.count("!important") >= 2  # e.g. Ready and Connected are active at the end

    # the cursor at the machine's first transition: the same layout (no d2), fewer active
    cut = [MachineDump(d.schema, d.txs[:1]) if d.id == "sim-p11" else d for d in dumps]
    at_start = write_diagrams(cut, "sim-p11", 2, tmp_path)
    assert at_start["mach"] == (mach_svg, False) and at_start["graph"][1] is False
    early = _active_overlay(mach_svg)
    assert early != late
    # the layout file (without overlay) is shared and untouched
    base = mach_svg.with_name(mach_svg.name.replace(".active.svg", ".svg"))
    assert "am-dbg-active" not in base.read_text()

    # level 3 (submachines) draws as 2 here: the same layout, from the cache
    assert write_diagrams(dumps, "sim-p11", 3, tmp_path)["mach"] == (mach_svg, False)
    # level 1 is another layout (no Start, no inherited states): d2 runs again
    simple = write_diagrams(dumps, "sim-p11", 1, tmp_path)
    assert simple["mach"][1] and simple["mach"][0] != mach_svg


def test_ui_keeps_diagrams_at_the_cursor_and_reports_failure_in_one_status_line(tmp_path):
    asyncio.run(_ui_diagrams(tmp_path))


async def _ui_diagrams(tmp_path: Path) -> None:
    from dbg.dump import read_dump
    from dbg.ui.app import DebuggerApp
    from dbg.ui.bars import StatusBar
    from dbg.ui.live import LockedCollector
    from dbg.ui.session import Session

    def app_for(out_dir: Path, written: list) -> DebuggerApp:
        collector = LockedCollector()
        collector.load(read_dump(GO_DUMP))
        session = Session(collector, tail=True)
        # selected before the app starts: the diagrams' timer runs from the mount, and on a
        # loaded machine its first snapshot could come before the test's first line (the
        # auto-selected machine drawn first, a third d2 run)
        session.select("sim-p11")
        return DebuggerApp(session, out_dir=out_dir, diagrams=1, on_diagrams=written.append)

    written: list[set[str]] = []
    app = app_for(tmp_path, written)
    async with app.run_test(size=(160, 40)) as pilot:
        async with asyncio.timeout(60):
            assert app.session.mach == "sim-p11"
            while not written:
                await pilot.pause(0.1)
            assert written[0] == {"mach", "graph"}
            first = _active_overlay(tmp_path / "am-vis-mach.svg")
            await pilot.press("home")
            while len(written) < 2:
                await pilot.pause(0.1)
            assert written[1] == {"mach"}  # only the active states changed
            assert _active_overlay(tmp_path / "am-vis-mach.svg") != first
            assert app.diagrams.d2_runs == 2  # the machine's layout and the graph, once each

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    app = app_for(blocked, [])
    async with app.run_test(size=(160, 40)) as pilot:
        async with asyncio.timeout(60):
            while not app.diagrams.error:
                await pilot.pause(0.1)
            assert app.diagrams.error.startswith("diagrams: ") and "\n" not in app.diagrams.error
            await pilot.pause(0.2)
            assert StatusBar.message == app.diagrams.error
            await pilot.press("left")  # the UI keeps going


# ----- --ui-web


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=10
        ) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.trio
async def test_web_serves_index_files_viewer_and_telemetry_on_one_port(tmp_path):
    import trio_websocket

    from dbg.web import WebServer
    from machines.telemetry import DbgTracer, Outbox

    (tmp_path / "tx.md").write_text("# mach://x\n")
    (tmp_path / "am-vis-mach.svg").symlink_to("tx.md")  # any file: the symlink is followed
    collector = Collector()
    server = WebServer(collector, tmp_path, "127.0.0.1", 0, diagrams=True)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            base = f"http://127.0.0.1:{port}"
            status, headers, body = await trio.to_thread.run_sync(_get, base + "/")
            assert status == 200 and "Access-Control-Allow-Origin" not in headers
            assert headers["Cache-Control"] == "no-cache"
            assert b'href="/tx.md"' in body and b'href="/viewer/mach"' in body
            status, headers, body = await trio.to_thread.run_sync(_get, base + "/tx.md")
            assert (status, body) == (200, b"# mach://x\n")
            # another name for this address (DNS rebinding) cannot read --dir
            rebound = {"Host": f"attacker.example:{port}"}
            status, _, _ = await trio.to_thread.run_sync(_get, base + "/tx.md", rebound)
            assert status == 403
            status, _, _ = await trio.to_thread.run_sync(_get, f"http://localhost:{port}/tx.md")
            assert status == 200  # a loopback alias is the server's own name
            status, _, body = await trio.to_thread.run_sync(_get, base + "/viewer/mach.svg")
            assert (status, body) == (200, b"# mach://x\n")
            status, _, body = await trio.to_thread.run_sync(_get, base + "/viewer/graph")
            assert status == 200 and b"/viewer/${type}.ws" in body and b'"graph"' in body
            for bad in ("/nope", "/../../etc/passwd", "/viewer/graph.svg"):
                status, headers, _ = await trio.to_thread.run_sync(_get, base + bad)
                assert status == 404, bad

            # a viewer hears "refresh" when the diagrams' worker thread says so
            async with trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{port}/viewer/mach.ws"
            ) as ws:
                while not server._viewers["mach"]:
                    await trio.sleep(0.01)
                await trio.to_thread.run_sync(server.refresh, {"graph"})
                await trio.to_thread.run_sync(server.refresh, {"mach"})
                assert await ws.get_message() == '{"Event": "refresh"}'
            # browser machines' telemetry on /dbg.ws, the same port
            box = Outbox()
            m = Machine(SCHEMA, id="web-bar", logger=lambda *_: None)
            DbgTracer(box).attach(m)
            m.add(["A", "B"])
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/dbg.ws") as ws:
                await ws.send_message(box.take())
                await collector.wait_until(lambda c: _txs(c, "web-bar") == 1)
                await ws.send_message("text is refused")
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await ws.get_message()
                assert ws.closed.code == 1003
            await collector.wait_until(lambda c: not c.machines["web-bar"].connected)
            with pytest.raises(trio_websocket.HandshakeError):
                async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/nope.ws"):
                    pass
            nursery.cancel_scope.cancel()


def test_web_port_taken_fails_before_the_ui(tmp_path: Path):
    port = free_port_pair()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port + 1))
        s.listen()
        web = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", "dbg", "-l", f"127.0.0.1:{web - 1}",
             "--dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and f":{web}" in proc.stderr, proc.stderr


def test_real_command_serves_the_viewer_that_refreshes_when_the_cursor_moves(tmp_path: Path):
    """C.6 #14 with the real command in a pty: GET /, /viewer/mach, /viewer/mach.svg, and the
    /viewer/mach.ws socket says "refresh" after a key moves the cursor."""
    import pexpect

    async def viewer(url: str, child, svg: bytes, svg_url: str) -> list[str]:
        import trio_websocket

        got = []
        async with trio_websocket.open_websocket_url(url) as ws:
            await trio.sleep(0.5)  # registered; the next diagram change is pushed
            child.send("\x1b[H")  # Home: the machine's first transition
            with trio.fail_after(30):
                while True:  # (a refresh of the first render may come first)
                    got.append(await ws.get_message())
                    _, _, now = await trio.to_thread.run_sync(_get, svg_url)
                    if now != svg:
                        return got

    port = free_port_pair()
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cli.main", "dbg", "-i", str(GO_DUMP), "mach://sim-p11", "-l",
         f"127.0.0.1:{port}", "-d", str(tmp_path), "--output-diagrams", "1"],
        env=_env(), cwd=str(ROOT), dimensions=(40, 160), encoding="utf-8",
        codec_errors="replace", timeout=60,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port + 1}"
    try:
        child.expect(r"mach://sim-p11/[0-9a-f]+")
        deadline = 60
        while not (tmp_path / "am-vis-mach.svg").exists() and deadline:
            child.expect([pexpect.TIMEOUT], timeout=0.5)
            deadline -= 1
        status, _, body = _get(base + "/")
        assert status == 200 and b"am-vis-mach.svg" in body and b"/viewer/mach" in body
        status, headers, page = _get(base + "/viewer/mach")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        status, headers, svg = _get(base + "/viewer/mach.svg")
        assert status == 200 and headers["Content-Type"] == "image/svg+xml"
        assert b"am-dbg-active" in svg
        ws_url = f"ws://127.0.0.1:{port + 1}/viewer/mach.ws"
        got = trio.run(viewer, ws_url, child, svg, base + "/viewer/mach.svg")
        assert set(got) == {'{"Event": "refresh"}'}
        child.send("\x11")  # Ctrl+Q
        child.expect("Clients: 107")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


PRODUCER = """
from machines import Machine, State
a = Machine({"A": State(), "B": State(add=["A"])}, id="proc-a")
b = Machine({"X": State(multi=True)}, id="proc-b", parent=a)
for _ in range(50):
    a.add("B"); a.remove(["A", "B"]); b.add("X")
"""


def test_real_ui_forwards_everything_to_a_second_instance(tmp_path: Path):
    """C.6 #15: the UI with --fwd-data to a headless instance; a producer reports to the UI;
    the second instance ends up with the same machines and transitions."""
    import signal
    import time

    import pexpect

    from dbg.dump import read_dump

    mirror_port, ui_port = _free_port(), _free_port()
    mirror_dir, ui_dir = tmp_path / "mirror", tmp_path / "ui"
    env = dict(_env(), PYTHONUNBUFFERED="1")
    mirror = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "-l",
         f"127.0.0.1:{mirror_port}", "--ws-port", "0", "--dir", str(mirror_dir),
         "--dump-interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    child = None
    try:
        assert "collecting on" in mirror.stdout.readline()
        child = pexpect.spawn(
            sys.executable,
            ["-m", "cli.main", "dbg", "-l", f"127.0.0.1:{ui_port}", "--ws-port", "0",
             "-d", str(ui_dir), "--fwd-data", f"127.0.0.1:{mirror_port}"],
            env=env, cwd=str(ROOT), dimensions=(40, 160), encoding="utf-8",
            codec_errors="replace", timeout=60,
        )  # fmt: skip
        child.expect("Machines:0")
        producer = subprocess.run(
            [sys.executable, "-c", PRODUCER],
            env=dict(env, AM_DBG_ADDR=f"127.0.0.1:{ui_port}", AM_LOG="3"),
            timeout=60,
        )
        assert producer.returncode == 0
        child.expect("proc-a")
        dump, dumps = mirror_dir / "am-dbg-dump.cbor.br", []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            dumps = read_dump(dump) if dump.exists() else []
            if sum(len(m.txs) for m in dumps) == 150:
                break
            time.sleep(0.1)
        child.send("\x11")  # Ctrl+Q
        child.expect("Clients: 2")
        child.expect("Transitions: 150")
        child.expect(pexpect.EOF)
    finally:
        if child is not None:
            child.close()
        mirror.send_signal(signal.SIGTERM)
        mirror.communicate(timeout=15)
    machines = {d.id: d for d in dumps}
    assert set(machines) == {"proc-a", "proc-b"}
    assert len(machines["proc-a"].txs) == 100 and len(machines["proc-b"].txs) == 50
    assert machines["proc-b"].schema.parent == "proc-a"
    assert machines["proc-b"].active_states() == ["X"]
