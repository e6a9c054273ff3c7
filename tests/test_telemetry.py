"""Telemetry from machines to the collector, and the headless debugger's dumps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from dbg.collector import Collector, serve_collector
from dbg.dump import read_dump
from machines import Machine, State, telemetry
from machines.telemetry import TX_FIELDS, FrameDecoder, FrameError, Outbox, encode_frame

SCHEMA = {"A": State(), "B": State(require=["A"]), "Msg": State(multi=True)}


async def _collector(nursery: trio.Nursery) -> tuple[Collector, str]:
    collector = Collector()
    port, _ = await nursery.start(
        lambda task_status: serve_collector(collector, "127.0.0.1", 0, task_status=task_status)
    )
    return collector, f"127.0.0.1:{port}"


def _txs(collector: Collector, mach_id: str) -> int:
    rec = collector.machines.get(mach_id)
    return len(rec.txs) if rec else 0


@pytest.mark.trio
async def test_machines_report_schema_and_transitions():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            collector, addr = await _collector(nursery)
            a = Machine(SCHEMA, id="tele-a", log_level=3, logger=lambda *_: None)
            b = Machine({"X": State()}, id="tele-b", parent=a, tags=["role:test"])
            telemetry.attach(a, addr)
            telemetry.attach(b, addr)
            a.add(["A", "B"])
            a.add("B")  # accepted, no change
            a.remove("A")  # B requires A: both go
            a.add("B")  # canceled: A missing
            b.add("X")
            await collector.wait_until(lambda c: _txs(c, "tele-a") == 4 and _txs(c, "tele-b") == 1)
            nursery.cancel_scope.cancel()

    rec_a, rec_b = collector.machines["tele-a"], collector.machines["tele-b"]
    assert rec_a.schema.states_index == ["A", "B", "Msg", "Exception"]
    assert rec_a.schema.states["B"].require == ["A"]
    assert rec_b.schema.parent == "tele-a" and rec_b.schema.tags == ["role:test"]
    clocks = [tx.clocks for tx in rec_a.txs]
    assert clocks == [[1, 1, 0, 0], [1, 1, 0, 0], [2, 2, 0, 0], [2, 2, 0, 0]]
    assert [tx.accepted for tx in rec_a.txs] == [True, True, True, False]
    assert rec_a.txs[0].called(rec_a.schema.states_index) == ["A", "B"]
    texts = [e.text for e in rec_a.txs[3].log_entries]
    assert "[cancel:reject] B" in texts
    assert all(tx.time is not None for tx in rec_a.txs)


@pytest.mark.trio
async def test_foreign_connection_transitions_are_ignored_and_bad_frames_close_one_conn():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            collector, addr = await _collector(nursery)
            host, port = addr.split(":")
            schema = {"id": "m1", "states_index": ["A"], "states": {"A": {}}}

            def tx(id_: str, tick: int) -> list:
                arr = [None] * len(TX_FIELDS)
                arr[:3], arr[5], arr[6] = ["m1", id_, [tick]], [], 1
                return arr

            owner = await trio.open_tcp_stream(host, int(port))
            await owner.send_all(
                encode_frame("schema", schema) + encode_frame("txs", [tx("t1", 1)])
            )
            await collector.wait_until(lambda c: _txs(c, "m1") == 1)

            intruder = await trio.open_tcp_stream(host, int(port))
            await intruder.send_all(encode_frame("txs", [tx("t2", 2)]))
            await collector.wait_until(lambda c: c.ignored == 1)

            garbage = await trio.open_tcp_stream(host, int(port))
            await garbage.send_all(b"\x00\x00\x00\x05hello")  # not CBOR: connection closed
            assert await garbage.receive_some(10) == b""

            await owner.send_all(encode_frame("txs", [tx("t3", 3), ["junk"]]))
            await collector.wait_until(lambda c: _txs(c, "m1") == 2)
            await owner.aclose()
            await collector.wait_until(lambda c: not c.machines["m1"].connected)
            nursery.cancel_scope.cancel()
    assert [t.id for t in collector.machines["m1"].txs] == ["t1", "t3"]


def test_mutation_sources_reach_the_dump():
    src = Machine({"Go": State()}, id="tele-src")
    dst = Machine({"Go": State()}, id="tele-dst")
    box = Outbox()
    telemetry.DbgTracer(box).attach(dst)
    from machines.pipes import pipe_add

    pipe_add(src, dst, "Go")
    src.add("Go")
    collector = Collector()
    conn = collector.connect()
    for kind, msg in FrameDecoder().feed(box.take()):
        collector.ingest(conn, kind, msg)
    (tx,) = collector.machines["tele-dst"].txs
    assert tx.source_machine_id == "tele-src" and tx.source_tx_id


def test_frame_decoder_rejects_oversized_and_non_cbor():
    dec = FrameDecoder(max_frame=10)
    with pytest.raises(FrameError, match="exceeds"):
        dec.feed(b"\x00\x00\x01\x00")
    with pytest.raises(FrameError, match="malformed CBOR"):
        FrameDecoder().feed(b"\x00\x00\x00\x01\xff")
    frame = encode_frame("txs", [["x"]])
    dec = FrameDecoder()
    assert dec.feed(frame[:3]) == [] and dec.feed(frame[3:]) == [("txs", [["x"]])]
    with pytest.raises(FrameError, match="malformed"):
        FrameDecoder().feed(encode_frame("txs", {"not": "a list"}))


def test_outbox_is_bounded_and_counts_drops(caplog):
    box = Outbox(limit=3)
    for i in range(10):
        box.put(bytes([i]))  # ready frames pass through as they are
    assert len(box) == 3 and box.dropped == 7
    assert box.take() == bytes([7, 8, 9])
    drop_lines = [r for r in caplog.records if "dropping" in r.getMessage()]
    assert len(drop_lines) == 1  # reported once, not per message


def test_absent_debugger_costs_little_and_never_blocks():
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    m = Machine(SCHEMA, id="tele-absent")
    tracer = telemetry.attach(m, addr)
    tracer.outbox.limit = 10_000  # the test's size; what is past it is dropped, counted
    for _ in range(20_000):
        m.add("A")
        m.remove("A")
    assert m.tick("A") == 40_000
    assert len(tracer.outbox) <= 10_000 and tracer.outbox.dropped > 0


def test_rpc_machines_only_with_am_rpc_dbg(monkeypatch):
    monkeypatch.setenv("AM_DBG_ADDR", "127.0.0.1:9")  # discard port, nothing listens
    monkeypatch.delenv("AM_RPC_DBG", raising=False)
    plain = Machine({"A": State()}, id="tele-plain")
    noise = Machine({"A": State()}, id="tele-noise", tags=["rpc-server"])
    assert any(isinstance(t, telemetry.DbgTracer) for t in plain.tracers)
    assert not any(isinstance(t, telemetry.DbgTracer) for t in noise.tracers)
    monkeypatch.setenv("AM_RPC_DBG", "1")
    shown = Machine({"A": State()}, id="tele-shown", tags=["rpc-client"])
    assert any(isinstance(t, telemetry.DbgTracer) for t in shown.tracers)


PRODUCER = """
import os
from machines import Machine, State
a = Machine({"A": State(), "B": State(add=["A"])}, id="proc-a")
b = Machine({"X": State(multi=True)}, id="proc-b", parent=a)
for _ in range(50):
    a.add("B"); a.remove(["A", "B"]); b.add("X")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_dump(path: Path, ready: Callable[[list], bool], timeout: float = 15.0) -> list:
    """The dump at ``path`` once ``ready(dumps)``; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            dumps = read_dump(path)
            if ready(dumps):
                return dumps
        time.sleep(0.05)
    pytest.fail(f"no periodic dump with every transition at {path} within {timeout}s")


def test_headless_collects_from_a_process_and_writes_dump_on_sigterm(tmp_path: Path):
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    dbg = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "dbg",
            "--headless",
            "--listen-addr",
            f"127.0.0.1:{port}",
            "--ws-port",
            "0",
            "--dir",
            str(tmp_path),
            "--dump-interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert "collecting on" in dbg.stdout.readline()
        producer = subprocess.run(
            [sys.executable, "-c", PRODUCER],
            env=dict(env, AM_DBG_ADDR=f"127.0.0.1:{port}", AM_LOG="3"),
            timeout=30,
        )
        assert producer.returncode == 0
        dump = tmp_path / "am-dbg-dump.cbor.br"
        # the periodic dump appears while collecting (written atomically, so a dump that exists
        # reads whole); another process writes it, so look at the file until a deadline
        periodic = _wait_for_dump(dump, lambda ms: sum(len(m.txs) for m in ms) == 150)
        assert {m.id for m in periodic} == {"proc-a", "proc-b"}
        assert dbg.poll() is None  # written by the periodic timer, not on exit
        dbg.send_signal(signal.SIGTERM)
        _, err = dbg.communicate(timeout=15)
    finally:
        dbg.kill()
    assert dbg.returncode == 0, err
    assert "wrote" in err and "(2 machines, 150 transitions received" in err, err
    machines = {d.id: d for d in read_dump(dump)}
    assert set(machines) == {"proc-a", "proc-b"}
    assert len(machines["proc-a"].txs) == 100 and len(machines["proc-b"].txs) == 50
    assert machines["proc-b"].schema.parent == "proc-a"
    assert machines["proc-b"].active_states() == ["X"]
    assert machines["proc-b"].latest_clocks()[0] == 99  # Multi: +1 then +2 per add
    assert not list(tmp_path.glob(".am-dbg-dump*"))  # no temp leftovers


def test_headless_bad_listen_addr_is_one_line_error():
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "--listen-addr", "nonsense"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and "bad --listen-addr" in res.stderr


@pytest.mark.trio
async def test_browser_machines_report_over_websocket():
    import trio_websocket

    from machines.telemetry import DbgTracer, schema_message

    collector = Collector()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, ws_port = await nursery.start(
                lambda task_status: serve_collector(
                    collector, "127.0.0.1", 0, ws_port=0, task_status=task_status
                )
            )
            # what the browser-side driver does: drain an outbox into binary messages
            box = Outbox()
            m = Machine(SCHEMA, id="ws-bar")
            DbgTracer(box).attach(m)
            m.add(["A", "B"])
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{ws_port}/dbg.ws") as ws:
                await ws.send_message(box.take())
                await collector.wait_until(lambda c: _txs(c, "ws-bar") == 1)
                await ws.send_message("text is refused")
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await ws.get_message()
                assert ws.closed.code == 1003
            assert (
                collector.machines["ws-bar"].schema.states_index
                == schema_message(m)["states_index"]
            )
            nursery.cancel_scope.cancel()
    assert collector.machines["ws-bar"].txs[0].clocks == [1, 1, 0, 0]


@pytest.mark.trio
async def test_full_logging_ships_steps_and_args():
    class Handlers:
        def BEnter(self, e):
            return True

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            collector, addr = await _collector(nursery)
            m = Machine(SCHEMA, id="tele-full", handlers=Handlers())
            m.log_steps = True
            telemetry.attach(m, addr, full=True)
            m.add(["A", "B"], {"addr": "x:1", "_private": object()})
            await collector.wait_until(lambda c: _txs(c, "tele-full") == 2)
            nursery.cancel_scope.cancel()
    queued, tx = collector.machines["tele-full"].txs
    # the queued record comes first, then the transition that ran it
    assert queued.is_queued and queued.mut_queue_tick == tx.queue_tick == 2
    assert queued.called(["A", "B", "Msg", "Exception"]) == ["A", "B"]
    assert not tx.is_queued and tx.accepted
    assert tx.args == {"addr": "x:1"}  # internal (underscore) args stay home
    kinds = {(st.type, st.from_state, st.to_state) for st in tx.steps}
    assert (32, "A", "") in kinds and (32, "B", "") in kinds  # called
    assert (2, "B", "") in kinds  # handler BEnter
    assert (4, "A", "") in kinds and (4, "B", "") in kinds  # activated
    enter = next(st for st in tx.steps if st.type == 2)
    assert enter.is_enter and not enter.is_final


def test_headless_rotation_splits_history_into_loadable_dumps(tmp_path: Path):
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    dbg = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "--listen-addr",
         f"127.0.0.1:{port}", "--ws-port", "0", "--dir", str(tmp_path), "--rotate-txs", "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert "rotated dumps" in dbg.stdout.readline()
        for _ in range(2):  # two runs of a producer, each >= 40 transitions: two rotations
            producer = subprocess.run(
                [sys.executable, "-c", PRODUCER],
                env=dict(env, AM_DBG_ADDR=f"127.0.0.1:{port}"), timeout=30,
            )  # fmt: skip
            assert producer.returncode == 0
            assert "wrote" in dbg.stderr.readline()  # rotated before the next run starts
        dbg.send_signal(signal.SIGINT)
        _, err = dbg.communicate(timeout=15)
    finally:
        dbg.kill()
    assert dbg.returncode == 0, err
    files = sorted(tmp_path.glob("am-dbg-dump-*.cbor.br"))
    assert len(files) >= 2
    total = 0
    for f in files:
        machines = {d.id: d for d in read_dump(f)}
        assert set(machines) == {"proc-a", "proc-b"}  # every file has every schema
        total += sum(len(d.txs) for d in machines.values())
    assert total == 300  # nothing lost, nothing written twice
