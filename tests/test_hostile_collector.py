"""Hostile telemetry: the collector validates at ingest, keeps the good, and always dumps it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from array import array
from pathlib import Path

import cbor2
import pytest
import trio

from dbg.collector import Collector, serve_collector
from dbg.dump import read_dump
from dbg.ui.live import LockedCollector
from machines.telemetry import TX_FIELDS, FrameDecoder, TxpGroup, encode_frame

STATES = ["Exception", "A", "B"]
SCHEMA = {"id": "m1", "states_index": STATES, "tx_id_prefix": "m1-"}
BIG = cbor2.loads(b"\xc2\x59\x08\x00" + b"\x7f" * 2048)


def tx(n: int, mach: object = "m1", **fields: object) -> list:
    """A well-formed transition array (as DbgTracer sends it), with fields replaced."""
    arr = dict.fromkeys(TX_FIELDS)
    arr.update(machine_id=mach, id=n, clocks=[0, n, 0], queue_tick=n, type=0, flags=1)
    arr["called_states"] = ["A"]
    arr.update(fields)
    return [arr[k] for k in TX_FIELDS]


STEP = [1, "A", "", 0, False, False, True]
MALFORMED = {
    "list machine id": tx(1, mach=["m1"]),
    "map machine id": tx(1, mach={"a": 1}),
    "string rel_type": tx(1, steps=[[1, "A", "B", "2", False, False, False]]),
    "None rel_type": tx(1, steps=[[1, "A", "B", None, False, False, False]]),
    "short step": tx(1, steps=[[1, "A"]]),
    "steps not a list": tx(1, steps="A"),
    "None from_state": tx(1, steps=[[1, None, "B", 0, False, False, False]]),
    "bignum clock": tx(1, clocks=[0, BIG, 0]),
    "bignum id": tx(BIG),
    "bignum queue tick": tx(1, queue_tick=BIG),
    "clocks of other length": tx(1, clocks=[1]),
    "string clock": tx(1, clocks=[0, "1", 0]),
    "bad flags": tx(1, flags="x"),
    "bad called": tx(1, called_states=[1]),
    "bad log entry": tx(1, log_entries=[[1]]),
    "log text not str": tx(1, log_entries=[[1, 2]]),
    "args not a map": tx(1, args=[1]),
    "args nested": tx(1, args={"k": [BIG]}),
    "bad source": tx(1, source=["a", "b"]),
    "source time bignum": tx(1, source=["a", "b", BIG]),
    "float id": tx(1.5),
    "not a list": {"machine_id": "m1"},
    "short": ["m1", 1],
}


@pytest.mark.parametrize("what", list(MALFORMED))
def test_a_malformed_transition_is_rejected_at_ingest_and_counted(what):
    c = Collector()
    c.ingest("conn-1", "schema", SCHEMA)
    with pytest.raises(ValueError, match="1 malformed transition") as err:
        c.ingest("conn-1", "txs", [tx(1), MALFORMED[what], tx(2, steps=[STEP])])
    assert "\n" not in str(err.value) and len(str(err.value)) < 200
    assert c.rejected == 1
    assert [t.id for t in c.machines["m1"].txs] == ["m1-00000001", "m1-00000002"]
    assert c.total_txs == 2
    dumps = c.dumps()  # and the dump of everything valid can be written
    assert [len(d.txs) for d in dumps] == [2]


def test_save_never_fails_because_of_one_record(tmp_path: Path):
    """Even a record that slipped past ingest (here: forced in) costs only itself."""
    from dbg.dump import write_dump

    c = Collector()
    c.ingest("conn-1", "schema", SCHEMA)
    c.ingest("conn-1", "txs", [tx(1), tx(2)])
    rec = c.machines["m1"]
    rec.add_arrays([MALFORMED["string rel_type"], tx(3)], time.time_ns())
    # and in a packed block: row 4's called-states entry cannot be read
    rows = array("i", [n for i in (4, 5) for n in (i, 0, 0, i - 4, 1, 0, 0, 0, 0, i, 0)])
    rec.add_rows(TxpGroup("m1", 11, rows, [5, ["A"]], {}), time.time_ns())
    out = write_dump(tmp_path / "d.cbor.br", c.dumps())
    (m,) = read_dump(out)
    assert [t.id for t in m.txs] == ["m1-00000001", "m1-00000002", "m1-00000003", "m1-00000005"]
    assert [t.clocks for t in m.txs][-1] == [0, 5, 0]
    assert rec.bad == 2


def _txp(*rows: tuple, extras: dict | None = None, called: list | None = None) -> bytes:
    """A txp frame of m1 (3 states): rows of (id, called index, clock of A)."""
    flat = [v for num, ci, a in rows for v in (num, 0, 0, ci, 1, 0, 0, 0, 0, a, 0)]
    body = [["m1", 11, "i", array("i", flat).tobytes(), called or [["A"]], extras or {}, None]]
    return encode_frame("txp", body)


@pytest.mark.parametrize(
    "bad",
    [
        {"extras": {1: [[[1]], None, None, None, None]}},  # a log entry that is not a pair
        {"extras": {1: [None, None, None, None, [[1, "A"]]]}},  # a short step
        {"extras": {1: [None, None, {"k": [1]}, None, None]}},  # nested args
        {"called": [["A"], [1]]},  # called states that are not names
        {"neg_id": True},
    ],
)
def test_a_malformed_packed_transition_is_rejected_alone(bad):
    """A packed group with one bad row keeps its other rows (checked one by one then)."""
    c = Collector()
    c.ingest("conn-1", "schema", SCHEMA)
    ci = 1 if "called" in bad else 0
    num = -7 if bad.get("neg_id") else 2
    data = _txp(
        (1, 0, 1), (num, ci, 3), (3, 0, 5), extras=bad.get("extras"), called=bad.get("called")
    )
    ((kind, groups),) = FrameDecoder(packed=True).feed(data)
    with pytest.raises(ValueError, match="1 malformed transition") as err:
        c.ingest("conn-1", kind, groups)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200
    assert c.rejected == 1 and c.total_txs == 2
    assert [(t.id, t.clocks) for t in c.machines["m1"].txs] == [
        ("m1-00000001", [0, 1, 0]),
        ("m1-00000003", [0, 5, 0]),
    ]


def test_a_packed_group_of_another_width_is_rejected():
    c = Collector()
    c.ingest("conn-1", "schema", dict(SCHEMA, states_index=["A", "B"]))
    ((kind, groups),) = FrameDecoder(packed=True).feed(_txp((1, 0, 1), (2, 0, 3)))
    with pytest.raises(ValueError, match="2 malformed transition.*clocks: want 2"):
        c.ingest("conn-1", kind, groups)
    assert c.rejected == 2 and c.total_txs == 0 and len(c.machines["m1"]) == 0


def test_a_dump_skips_a_transition_it_cannot_encode(tmp_path: Path):
    from dbg.dump import write_dump
    from dbg.model import DbgMsgStruct, DbgMsgTx, MachineDump

    schema = DbgMsgStruct("m1", STATES)
    txs = [DbgMsgTx(id="t1"), DbgMsgTx(id="t2", clocks=[object()]), DbgMsgTx(id="t3")]
    (m,) = read_dump(write_dump(tmp_path / "d.cbor.br", [MachineDump(schema, txs, "v1")]))
    assert [t.id for t in m.txs] == ["t1", "t3"] and m.version == "v1"


@pytest.mark.parametrize("make", [Collector, LockedCollector], ids=["headless", "ui"])
def test_max_mem_drops_the_oldest_history_first(make: type[Collector]):
    c = make(max_mem=1)  # any process is over 1 byte: trims at every check
    c.ingest("conn-1", "schema", SCHEMA)
    c.ingest("conn-1", "schema", dict(SCHEMA, id="m2"))
    for start in range(0, 4000, 500):
        c.ingest("conn-1", "txs", [tx(n) for n in range(start, start + 500)])
        c.ingest("conn-1", "txs", [tx(n, mach="m2") for n in range(start, start + 500)])
    c.check_memory()
    rec = c.machines["m1"]
    kept = rec.txs
    assert 0 < len(kept) < 4000
    assert rec.dropped == 4000 - len(kept)  # how trimming shows: oldest dropped, counted
    assert kept[-1].id == "m1-00000f9f"  # the newest stays
    assert [int(t.id[3:], 16) for t in kept] == list(range(rec.dropped, 4000))
    assert c.machines["m2"].dropped > 0
    assert c.trimmed == rec.dropped + c.machines["m2"].dropped


def test_max_mem_not_reached_keeps_everything():
    c = Collector(max_mem=1 << 40)
    c.ingest("conn-1", "schema", SCHEMA)
    c.ingest("conn-1", "txs", [tx(n) for n in range(1000)])
    c.check_memory()
    assert len(c.machines["m1"].txs) == 1000 and c.trimmed == 0


@pytest.mark.trio
async def test_a_list_machine_id_over_tcp_costs_nothing_else():
    c = Collector()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, _ = await nursery.start(
                lambda task_status: serve_collector(c, "127.0.0.1", 0, task_status=task_status)
            )
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(encode_frame("schema", SCHEMA))
            await stream.send_all(encode_frame("txs", [tx(1), MALFORMED["list machine id"]]))
            await stream.send_all(encode_frame("txs", [tx(2)]))
            await c.wait_until(lambda c: c.total_txs == 2 and c.rejected == 1)
            # the same connection still reports
            await stream.send_all(encode_frame("txs", [tx(3)]))
            await c.wait_until(lambda c: c.total_txs == 3)
            await stream.aclose()
            nursery.cancel_scope.cancel()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_headless_dumps_everything_valid_on_signal_after_hostile_input(tmp_path: Path, sig):
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    dbg = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "--listen-addr",
         f"127.0.0.1:{port}", "--ws-port", "0", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert "collecting on" in dbg.stdout.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(encode_frame("schema", SCHEMA))
            s.sendall(encode_frame("schema", dict(SCHEMA, id="m2")))
            s.sendall(encode_frame("txs", [tx(1), tx(1, mach="m2")]))
            for bad in MALFORMED.values():
                s.sendall(encode_frame("txs", [bad, tx(1, mach="m2")]))
            s.sendall(encode_frame("txs", [tx(2)]))
        time.sleep(0.5)  # the collector reads what was sent before the signal
        assert dbg.poll() is None, dbg.stderr.read()
        dbg.send_signal(sig)
        _, err = dbg.communicate(timeout=15)
    finally:
        dbg.kill()
    assert dbg.returncode == 0, err
    machines = {d.id: d for d in read_dump(tmp_path / "am-dbg-dump.cbor.br")}
    assert [t.id for t in machines["m1"].txs] == ["m1-00000001", "m1-00000002"]
    assert len(machines["m2"].txs) == 1 + len(MALFORMED)
    assert f"{len(MALFORMED)} rejected" in err
