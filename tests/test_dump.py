"""Dump files: this project's CBOR format (round trips), the Go debugger's gob dumps, content
sniffing, and clear one-line errors for anything that is not a dump."""

from __future__ import annotations

import hashlib
import http.server
import os
import random
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import brotli
import cbor2
import pytest

from dbg.dump import DEFAULT_DUMP_NAME, DumpError, decode_dump, encode_dump, read_dump, write_dump
from dbg.model import (
    DbgMsgStruct,
    DbgMsgTx,
    LogEntry,
    MachineDump,
    MutationType,
    Relation,
    StateDef,
    Step,
    StepType,
)

FIXTURES = Path(__file__).parent / "fixtures"
GO_DUMP = FIXTURES / "go-am-dbg-sim.gob.br"


@pytest.fixture(scope="module")
def go_machines() -> list[MachineDump]:
    return read_dump(GO_DUMP)


def full_machine() -> MachineDump:
    """A machine with every field of the model set to a non-default value."""
    schema = DbgMsgStruct(
        id="server-foo",
        states_index=["Start", "Ready", "Foo", "Exception"],
        states={
            "Start": StateDef(add=["Foo"]),
            "Ready": StateDef(auto=True, require=["Start"]),
            "Foo": StateDef(multi=True, remove=["Ready"], after=["Start"], tags=["ArgsReq"]),
            "Exception": StateDef(multi=True),
        },
        groups={"self": [0, 1, 2], "BasicStatesDef": [3]},
        groups_order=["self", "BasicStatesDef"],
        parent="root",
        tags=["rpc-server", "env:test"],
    )
    tx = DbgMsgTx(
        machine_id="server-foo",
        id="tx-1",
        clocks=[1, 2, 3, 0],
        queue_tick=7,
        mut_queue_token=3,
        mut_queue_tick=9,
        type=MutationType.SET,
        called_states=["Foo"],
        called_states_idxs=[2],
        steps=[
            Step(
                type=StepType.RELATION,
                rel_type=Relation.REQUIRE,
                from_state="Ready",
                from_state_idx=1,
                to_state="Start",
                to_state_idx=0,
            ),
            Step(type=StepType.HANDLER, is_final=True, is_enter=True, to_state="Foo"),
        ],
        log_entries=[LogEntry(3, "[add] Foo (id=rc-1)"), LogEntry(2, "[state] +Foo")],
        pre_log_entries=[LogEntry(1, "[extern] hi")],
        queue=2,
        time=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        is_auto=True,
        accepted=True,
        is_check=True,
        is_queued=True,
        args={"id": "rc-1", "n": "2"},
        queue_dump=["[add] Foo"],
        stack_trace="trace",
    )
    return MachineDump(schema, [tx, DbgMsgTx(machine_id="server-foo", id="tx-2")], "v1.2.3")


# ----- this project's format


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    machines = [full_machine(), MachineDump(DbgMsgStruct(id="empty"))]
    path = write_dump(tmp_path / DEFAULT_DUMP_NAME, machines)
    assert path.name == "am-dbg-dump.cbor.br"
    assert read_dump(path) == machines
    # the written file is brotli over CBOR with a format marker
    doc = cbor2.loads(brotli.decompress(path.read_bytes()))
    assert doc["format"] == "am-dbg-dump" and doc["version"] == 1
    assert doc["machines"][0]["schema"]["tags"] == ["rpc-server", "env:test"]
    assert doc["machines"][0]["txs"][0]["time"] == 1767323045123456000


def test_to_dict_leaves_defaults_out_and_from_dict_fills_them() -> None:
    tx = DbgMsgTx(machine_id="m", id="t", clocks=[1, 0])
    assert tx.to_dict() == {"machine_id": "m", "id": "t", "clocks": [1, 0]}
    assert DbgMsgTx.from_dict(tx.to_dict()) == tx
    step = Step(to_state="A", to_state_idx=0)
    assert step.to_dict() == {"to_state": "A", "to_state_idx": 0}
    assert Step.from_dict({"to_state": "A"}).to_state_idx == -1
    # enums become plain ints, so any CBOR encoder writes integers
    d = DbgMsgTx(type=MutationType.REMOVE).to_dict()
    assert type(d["type"]) is int


def test_time_keeps_the_instant_across_zones() -> None:
    t = datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    back = DbgMsgTx.from_dict(DbgMsgTx(time=t).to_dict()).time
    assert back == t and back.tzinfo == UTC


def test_model_methods() -> None:
    m = full_machine()
    tx = m.txs[0]
    assert tx.time_sum() == 6
    assert tx.active(m.schema.states_index) == ["Start", "Foo"]
    assert DbgMsgTx(called_states_idxs=[2, 0, 99]).called(["A", "B", "C"]) == ["C", "A"]
    # the last tx has no clocks: the latest known clocks are all zero
    assert m.active_states() == []
    assert MachineDump(m.schema, m.txs[:1]).active_states() == ["Start", "Foo"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schema": {"id": 5}}, "machines[0].schema.id: expected str, got int"),
        ({"schema": {}}, "missing machine id"),
        ({"schema": {"id": "a", "states": []}}, "states: expected a map"),
        ({"schema": {"id": "a"}, "txs": [{"clocks": ["x"]}]}, "txs[0].clocks"),
        ({"schema": {"id": "a"}, "txs": [{"accepted": 1}]}, "accepted: expected bool"),
        ({"schema": {"id": "a"}, "txs": [{"steps": [{"type": "x"}]}]}, "steps[0].type"),
        ("not a map", "machines[0]: expected a map"),
    ],
)
def test_bad_fields_name_the_field(tmp_path: Path, doc: object, message: str) -> None:
    raw = cbor2.dumps({"format": "am-dbg-dump", "version": 1, "machines": [doc]})
    path = tmp_path / "bad.cbor.br"
    path.write_bytes(brotli.compress(raw))
    with pytest.raises(DumpError) as exc:
        read_dump(path)
    assert message in str(exc.value)
    assert str(exc.value).startswith(str(path))
    assert "\n" not in str(exc.value)


def test_duplicate_machine_ids_are_refused() -> None:
    m = MachineDump(DbgMsgStruct(id="a"))
    with pytest.raises(DumpError, match="'a' appears twice"):
        decode_dump(encode_dump([m, m]))


# ----- the Go debugger's dump


def test_go_dump_machines(go_machines: list[MachineDump]) -> None:
    assert len(go_machines) == 107
    by_id = {m.id: m for m in go_machines}
    p11 = by_id["sim-p11"]
    assert p11.schema.states["Ready"] == StateDef(auto=True, require=["Start", "Connected"])
    assert p11.schema.states["Connecting"].remove == ["Connected", "Disconnecting"]
    assert p11.active_states() == ["Start", "Ready", "IdentityReady", "Connected", "FwdToSim"]
    assert len(p11.txs) == 9
    first = p11.txs[0]
    assert first.called_states == ["Start"] and first.accepted
    assert first.time == datetime(2024, 7, 22, 13, 29, 29, 723209, tzinfo=UTC)
    # the deprecated Data interface carries the relation of relation steps
    rel_steps = [s for tx in p11.txs for s in tx.steps if s.type == StepType.RELATION]
    assert rel_steps and all(s.rel_type == Relation.REQUIRE for s in rel_steps[:3])
    # step indexes are filled from the state names (the old format has none)
    assert first.steps[0].to_state == "Start" and first.steps[0].to_state_idx == 0
    assert first.steps[0].from_state_idx == -1
    assert sum(len(m.txs) for m in go_machines) == 7605


def test_go_dump_converts_to_our_format(tmp_path: Path, go_machines: list[MachineDump]) -> None:
    path = write_dump(tmp_path / "x.cbor.br", go_machines)
    assert read_dump(path) == go_machines
    # smaller than the gob original, which repeats field layouts less efficiently
    assert path.stat().st_size < GO_DUMP.stat().st_size * 1.2


# ----- detection by content, not by name


def test_format_is_detected_by_content(tmp_path: Path, go_machines: list[MachineDump]) -> None:
    ours = tmp_path / "named-like-go.gob.br"
    ours.write_bytes(encode_dump([full_machine()]))
    assert read_dump(ours) == [full_machine()]
    go = tmp_path / "named-like-ours.cbor.br"
    shutil.copy(GO_DUMP, go)
    assert [m.id for m in read_dump(go)] == [m.id for m in go_machines]
    # uncompressed files of both formats are read too
    raw_cbor = tmp_path / "raw.cbor"
    raw_cbor.write_bytes(brotli.decompress(ours.read_bytes()))
    assert read_dump(raw_cbor) == [full_machine()]
    raw_gob = tmp_path / "raw.gob"
    raw_gob.write_bytes(brotli.decompress(GO_DUMP.read_bytes()))
    assert len(read_dump(raw_gob)) == 107


# ----- corrupt and unknown files: one line, names the file


def _corrupt_files(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    go = GO_DUMP.read_bytes()
    raw_go = brotli.decompress(go)
    ours = encode_dump([full_machine()])
    rng = random.Random(3)
    cases = {
        "empty.gob.br": (b"", "empty file"),
        "truncated.gob.br": (go[: len(go) // 2], "truncated brotli"),
        "truncated.cbor.br": (ours[:-5], "brotli"),
        "random.gob.br": (bytes(rng.randrange(256) for _ in range(4096)), "not a dump"),
        "text.cbor.br": (b"hello, I am not a dump\n", "not a dump"),
        "brotli-of-text.cbor.br": (brotli.compress(b"just text"), "unknown format"),
        "brotli-of-other-cbor.cbor.br": (brotli.compress(cbor2.dumps({"a": 1})), "unknown format"),
        "cut-gob.gob.br": (brotli.compress(raw_go[:100_000]), "corrupt gob stream"),
        "future.cbor.br": (
            brotli.compress(cbor2.dumps({"format": "am-dbg-dump", "version": 99, "machines": []})),
            "unsupported dump version 99",
        ),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        yield path, message


def test_corrupt_files_give_one_line_errors(tmp_path: Path) -> None:
    for path, message in _corrupt_files(tmp_path):
        with pytest.raises(DumpError) as exc:
            read_dump(path)
        text = str(exc.value)
        assert message in text, (path.name, text)
        assert text.startswith(str(path)), text
        assert "\n" not in text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DumpError, match="cannot read"):
        read_dump(tmp_path / "nope.cbor.br")


def test_write_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "d.cbor.br"
    write_dump(target, [full_machine()])
    before = target.read_bytes()

    class Boom(Exception):
        pass

    class BadMachine(MachineDump):
        def to_dict(self):  # type: ignore[override]
            raise Boom()

    with pytest.raises(Boom):
        write_dump(target, [BadMachine(DbgMsgStruct(id="x"))])
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["d.cbor.br"]


# ----- URLs


def test_read_dump_from_http_url() -> None:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(FIXTURES), **kw)

        def log_message(self, *a):  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        machines = read_dump(f"{base}/{GO_DUMP.name}", timeout=10)
        assert len(machines) == 107
        with pytest.raises(DumpError, match="download failed"):
            read_dump(f"{base}/missing.gob.br", timeout=10)
    finally:
        server.shutdown()
        server.server_close()


def test_go_dump_loads_to_the_same_model_as_ever(go_machines: list[MachineDump]) -> None:
    """A digest of the model built from the Go fixture (every field, times with their zone):
    the fast loading path must build exactly what the first, plain implementation built."""
    digest = hashlib.sha256(repr(go_machines).encode()).hexdigest()
    # (MachineDump.gone_ns=0 added to every machine: the rest is unchanged)
    assert digest == "ff9152f4b14ec09ddc7c79bb3137b3632cd2d9745e5f5dfd1432108a8d321377"


@pytest.mark.parametrize(
    ("tx", "message"),
    [
        ({"Clocks": [1, "x"]}, "MsgTxs[0].clocks: expected a list of integers"),
        ({"ID": 5}, "MsgTxs[0].id: expected str, got int"),
        ({"Accepted": 1}, "MsgTxs[0].accepted: expected bool, got int"),
        ({"Steps": "abc"}, "MsgTxs[0].Steps: expected a list, got str"),
        ({"Steps": [{"ToState": 3}]}, "MsgTxs[0].steps[0].to_state: expected str, got int"),
        ({"LogEntries": [7]}, "MsgTxs[0].log_entries[0] is not a struct"),
        ({"Time": "now"}, "MsgTxs[0].time: expected int, got str"),
        ({"Args": [1]}, "MsgTxs[0].args: expected a map, got list"),
    ],
)
def test_go_transitions_of_the_wrong_shape_name_the_field(tx: dict, message: str) -> None:
    from dbg.dump import _machine_from_go

    entry = {"MsgStruct": {"ID": "m", "StatesIndex": ["A"]}, "MsgTxs": [tx]}
    with pytest.raises(ValueError) as exc:
        _machine_from_go(entry)
    assert str(exc.value) == message


def test_lazy_go_dump_reads_to_the_same_transitions(
    go_machines: list[MachineDump], tmp_path: Path
) -> None:
    """``read_dump_lazy`` (what the debugger UI opens) defers converting a Go dump's
    transitions to each machine's first read: what is read then is what read_dump builds,
    and unread machines still give their size and newest clocks."""
    from dbg.collector import Collector
    from dbg.dump import PendingMachine, read_dump_lazy

    lazy = read_dump_lazy(GO_DUMP)
    assert all(isinstance(m, PendingMachine) for m in lazy)
    collector = Collector()
    collector.load(lazy)
    for m in go_machines:
        rec = collector.machines[m.id]
        assert len(rec) == len(m.txs)
        assert rec.latest_clocks() == (m.txs[-1].clocks if m.txs else [])
        assert rec._txs == []  # nothing converted yet
    assert [collector.machines[m.id].read(1) for m in go_machines] == [m.txs for m in go_machines]
    # our own dumps are read eagerly either way
    ours = read_dump_lazy(write_dump(tmp_path / "ours.cbor.br", go_machines[:2]))
    assert ours == go_machines[:2]


def test_lazy_go_dump_skips_a_bad_transition_and_counts_it() -> None:
    from dbg.collector import Collector
    from dbg.dump import _pending_from_go

    entry = {
        "MsgStruct": {"ID": "m", "StatesIndex": ["A"]},
        "MsgTxs": [{"ID": "t1", "Clocks": [1]}, {"ID": 5}, {"ID": "t3", "Clocks": [2]}],
    }
    collector = Collector()
    collector.load([_pending_from_go(entry)])
    rec = collector.machines["m"]
    assert len(rec) == 3 and rec.latest_clocks() == [2]
    assert [tx.id for tx in rec.txs] == ["t1", "t3"]
    assert rec.bad == 1
