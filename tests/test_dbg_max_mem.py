"""``--max-mem`` (C.4 GC, C.6 #16): over the limit the histories are halved and the machines
left with fewer than 300 transitions are removed (disconnected ones: a live machine would
vanish for good while still reporting); the UI follows a selected machine that vanishes."""

from __future__ import annotations

import asyncio
import time

import pytest
from test_dbg_ui import _mach, run, text
from test_dbg_ui_features import _send
from test_hostile_collector import SCHEMA, tx

from dbg.collector import Collector, watch_memory
from dbg.ui.live import LiveServer, LockedCollector
from machines.telemetry import TcpSender

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("make", [Collector, LockedCollector], ids=["headless", "ui"])
def test_a_cut_removes_the_small_disconnected_machines(make: type[Collector]) -> None:
    c = make(max_mem=1)  # any process is over 1 byte: each check cuts
    sizes = {"big": 4000, "small-gone": 500, "tiny-gone": 3, "small-live": 10, "empty-gone": 0}
    for mid, n in sizes.items():
        conn = "conn-live" if mid.endswith("live") or mid == "big" else f"conn-{mid}"
        c.ingest(conn, "schema", dict(SCHEMA, id=mid))
        if n:
            c.ingest(conn, "txs", [tx(k, mach=mid) for k in range(n)])
        if conn != "conn-live":
            c.disconnect(conn)
    seen: list[set[str]] = []
    c.subscribe(lambda: seen.append(set(c.machines)))
    c.check_memory()
    # 500 -> 250 is below 300; a live machine stays however small
    assert set(c.machines) == {"big", "small-live"}
    assert c.removed == 3 and seen and seen[-1] == {"big", "small-live"}
    assert len(c.machines["big"]) == 2000 and len(c.machines["small-live"]) == 5


def test_no_cut_removes_nothing() -> None:
    c = Collector(max_mem=1 << 40)
    c.ingest("conn-1", "schema", SCHEMA)
    c.ingest("conn-1", "txs", [tx(k) for k in range(5)])
    c.disconnect("conn-1")
    c.check_memory()
    assert list(c.machines) == ["m1"] and c.removed == 0


def test_the_selected_machine_removed_under_a_flood() -> None:
    """Live over loopback with ``--max-mem`` 1 byte: ``small`` reports, is selected and
    disconnects; ``big`` floods 20k transitions. The memory watch removes ``small``; the UI
    selects ``big`` and keeps answering keys."""
    collector = LockedCollector(max_mem=1)
    live = LiveServer(collector, "127.0.0.1", 0, ws_port=None)
    live.services.append(lambda task_status: watch_memory(collector, task_status))

    async def wait(pilot, cond, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await pilot.pause(0.05)

    async def body(app, pilot):
        await wait(pilot, lambda: live.bound, "the port")
        addr = f"127.0.0.1:{live.bound[0]}"
        loop = asyncio.get_running_loop()
        small = _mach("small")
        sender = TcpSender(_send(small), addr).start()
        for _ in range(5):
            small.add("Msg")
        await wait(pilot, lambda: app.session.mach == "small", "small selected")
        await wait(pilot, lambda: app.session.counts()[0] == 5, "small's 5 transitions")
        await loop.run_in_executor(None, sender.stop)
        await wait(pilot, lambda: not collector.machines["small"].connected, "small gone")

        big = _mach("big")
        flood = TcpSender(_send(big), addr).start()
        try:
            for i in range(20_000):
                big.add("Msg")
                if i % 2000 == 0:
                    await asyncio.sleep(0)  # let the UI paint while the producer floods
            await wait(pilot, lambda: "small" not in collector.machines, "small removed")
            await wait(pilot, lambda: app.session.mach == "big", "big selected")
            await wait(pilot, lambda: "small" not in text(app, "#list"), "the list repainted")
            # and says why the machine vanished
            await wait(pilot, lambda: "gone from the store: small" in text(app, "#status"),
                       "the status bar tells")  # fmt: skip
            assert collector.removed >= 1 and collector.trimmed > 0
            # the UI answers: a key leaves tail mode and moves the cursor back
            await wait(pilot, lambda: app.session.counts()[0] > 1, "big's transitions read")
            t0 = time.monotonic()
            await pilot.press("home")
            assert not app.session.tail and app.session.index == app.session.visible()[0]
            assert time.monotonic() - t0 < 2
        finally:
            await loop.run_in_executor(None, flood.stop)
        assert "big" in collector.machines  # live: halved, never removed

    run(body, collector, live=live)
    assert live.error is None
