"""A machine in the browser's Python reports to the debugger over the WebSocket path.

Pyodide runs in Node with the `ws` package as the page's `WebSocket`; the collector is real and
in this process; the only setup in the browser is the environment (`AM_DBG_ADDR`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import trio

from dbg.collector import Collector, serve_collector
from machines.telemetry_browser import url_from_env

HERE = Path(__file__).resolve().parent / "pyodide"


@pytest.mark.trio
async def test_pyodide_machine_reports_over_websocket(project_wheel, cbor2_wheel):
    node = shutil.which("node")
    if node is None or not (HERE.parent.parent / "node_modules" / "pyodide").is_dir():
        pytest.fail("needs Node.js and the pinned Pyodide in node_modules: run `task setup`")
    collector = Collector()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            _, ws_port = await nursery.start(
                lambda task_status: serve_collector(
                    collector, "127.0.0.1", 0, ws_port=0, task_status=task_status
                )
            )
            env = dict(os.environ, AM_DBG_ADDR=f"ws://127.0.0.1:{ws_port}/dbg.ws", AM_LOG="3")
            proc = await trio.run_process(
                [node, str(HERE / "run.mjs"), str(project_wheel),
                 str(HERE / "telemetry_scenario.py"), str(cbor2_wheel)],
                capture_stdout=True, capture_stderr=True, env=env, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr.decode()[-3000:]
            line = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")][-1]
            seen = json.loads(line)
            assert seen["platform"] == "emscripten" and seen["attached"] and seen["flushed"]
            await collector.wait_until(
                lambda c: "browser-bar" in c.machines and len(c.machines["browser-bar"]) == 3
            )
            nursery.cancel_scope.cancel()
    rec = collector.machines["browser-bar"]
    assert rec.schema.tags == ["ui"] and rec.schema.states_index == ["A", "B", "Exception"]
    assert [tx.clocks for tx in rec.txs] == [[1, 1, 0], [2, 2, 0], [2, 2, 0]]
    assert [tx.accepted for tx in rec.txs] == [True, True, False]
    assert "[cancel:reject] B" in [e.text for e in rec.txs[2].log_entries]
    assert len({tx.id for tx in rec.txs}) == 3


def test_debugger_addresses_map_to_the_websocket_path():
    assert url_from_env("1") == "ws://localhost:6832/dbg.ws"
    assert url_from_env("localhost:7000") == "ws://localhost:7001/dbg.ws"
    assert url_from_env("wss://dbg.example/dbg.ws") == "wss://dbg.example/dbg.ws"
    with pytest.raises(ValueError, match="bad debugger address"):
        url_from_env("nonsense")
