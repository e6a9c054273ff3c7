"""End to end: machines linked by aRPC report to the debugger, whose dump becomes a diagram.

Two apps (``server-foo`` serving its machine over aRPC, ``browser-bar`` mutating it through a
NetMach) run with telemetry on; the collector's dump is written to disk and rendered by
``am vis render-dump`` with the real ``d2`` binary.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from dbg.collector import Collector, serve_collector
from dbg.dump import write_dump
from machines import Machine, State
from machines.rpc import connect, serve

FOO = {"Start": State(), "Foo": State(require=["Start"]), "Msg": State(multi=True)}
BAR = {"Start": State(), "Bar": State(), "Ping": State(multi=True)}


async def _run_apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rpc_dbg: bool) -> Path:
    collector = Collector()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port, _ = await nursery.start(
                lambda task_status: serve_collector(
                    collector, "127.0.0.1", 0, task_status=task_status
                )
            )
            monkeypatch.setenv("AM_DBG_ADDR", f"127.0.0.1:{port}")
            monkeypatch.setenv("AM_LOG", "3")
            if rpc_dbg:  # as the example's README: the "noise" with its logs
                for var in ("AM_RPC_DBG", "AM_RPC_LOG_SERVER", "AM_RPC_LOG_CLIENT"):
                    monkeypatch.setenv(var, "1")
            else:
                monkeypatch.delenv("AM_RPC_DBG", raising=False)
            foo = Machine(FOO, id="server-foo")
            bar = Machine(BAR, id="browser-bar")
            foo.add("Start")
            bar.add(["Start", "Bar"])
            async with serve(foo, "127.0.0.1:0") as mux:
                async with connect(mux.addr, id="bar-to-foo", source=bar) as client:
                    net = client.netmach
                    await net.add("Foo")
                    await net.add("Msg", args={"id": "m1"})
                    await net.when("Foo")

            def reported(c: Collector) -> bool:
                rec = c.machines.get("server-foo")
                if rec is None or "browser-bar" not in c.machines:
                    return False
                lines = [e.text for tx in rec.txs for e in tx.pre_log_entries + tx.log_entries]
                return "[rpc:connected] browser-bar" in lines and len(rec.txs) >= 3

            await collector.wait_until(reported)
            if rpc_dbg:
                await collector.wait_until(
                    lambda c: (
                        any(i.startswith("rs-") for i in c.machines)
                        and any(i.startswith("rc-") for i in c.machines)
                    )
                )
            nursery.cancel_scope.cancel()
    return write_dump(tmp_path / "am-dbg-dump.cbor.br", collector.dumps())


def _render(dump: Path, out: Path) -> tuple[str, str]:
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "vis", "render-dump", str(dump), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return out.with_suffix(".d2").read_text(), out.with_suffix(".svg").read_text()


def _labels(d2: str) -> dict[str, str]:
    """D2 node id -> its label (machines and states)."""
    return dict(re.findall(r'^\s*(\S+?): "?([^"{\n]+?)"? \{', d2, re.M))


def _rpc_edges(d2: str) -> list[tuple[str, str]]:
    return re.findall(r'^\s*(\S+) -> (\S+): "?rpc"?', d2, re.M)


@pytest.mark.trio
async def test_apps_over_arpc_render_with_an_rpc_edge(tmp_path, monkeypatch):
    dump = await _run_apps(tmp_path, monkeypatch, rpc_dbg=False)
    d2, svg = _render(dump, tmp_path / "apps")
    for name in ("server-foo", "browser-bar", "Foo", "Msg", "Bar", "Ping"):
        assert name in svg
    assert "rc-" not in svg and "rs-" not in svg  # aRPC's own machines stay hidden
    labels = _labels(d2)
    edges = [
        (labels.get(a.split(".")[-1], a), labels.get(b.split(".")[-1], b))
        for a, b in _rpc_edges(d2)
    ]
    assert edges == [("browser-bar", "server-foo")], d2


@pytest.mark.trio
async def test_with_am_rpc_dbg_the_arpc_machines_are_linked_too(tmp_path, monkeypatch):
    dump = await _run_apps(tmp_path, monkeypatch, rpc_dbg=True)
    d2, svg = _render(dump, tmp_path / "noise")
    labels = _labels(d2)
    edges = {
        (labels.get(a.split(".")[-1], a), labels.get(b.split(".")[-1], b))
        for a, b in _rpc_edges(d2)
    }
    assert ("browser-bar", "server-foo") in edges
    client_server = [(a, b) for a, b in edges if a.startswith("rc-") and b.startswith("rs-")]
    assert client_server, d2
    assert "rpc" in svg
