"""The outbox's lanes: rows packed on the machines' threads, nothing lost, duplicated or
reordered per machine (machines in several threads, a sender taking meanwhile), frames and
rows keep their relative order, the bound drops whole chunks, counted exactly, and a machine's
own rows equal what a record sink would have packed."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from machines import Machine, State, telemetry
from machines.mutation import MutSource
from machines.telemetry import TX_FIELDS, FrameDecoder, Outbox, encode_frame


def _rec(mid: str, num: int) -> tuple:
    return (mid, num, (num, 1), num, 1, ("A",), 1, 0, num, 0, None, None, None, None, None)


def _decode(data: bytes) -> list[tuple[str, object]]:
    return FrameDecoder().feed(data)


def _taken_while(box: Outbox, work: Callable[[Any], None], each: list[Any]) -> bytes:
    """What a sender thread took from ``box``, taking all along, while a thread per item of
    ``each`` ran ``work(item)``, and once more after."""
    done = threading.Event()
    got: list[bytes] = []

    def sender() -> None:
        while not done.is_set():
            got.append(box.take())
        got.append(box.take())

    taker = threading.Thread(target=sender)
    taker.start()
    workers = [threading.Thread(target=work, args=(x,)) for x in each]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    taker.join()
    return b"".join(got)


@pytest.mark.timeout(60)
def test_threads_put_while_a_sender_takes_nothing_lost_or_reordered():
    box = Outbox(limit=1_000_000, chunk=64)
    per_thread = 5_000
    mids = [f"m{i}" for i in range(4)]

    def machine(mid: str) -> None:
        for n in range(per_thread):
            box.put(_rec(mid, n))

    arrays = _arrays(_taken_while(box, machine, mids))
    for mid in mids:
        assert [a[1] for a in arrays if a[0] == mid] == list(range(per_thread))
    assert len(arrays) == len(mids) * per_thread and box.dropped == 0 and len(box) == 0


def test_a_frame_goes_after_the_records_put_before_it():
    box = Outbox(chunk=100)
    box.put(_rec("m", 1))
    box.put(encode_frame("schema", {"id": "m"}))
    box.put(_rec("m", 2))
    assert len(box) == 3
    kinds = [(kind, [a[1] for a in msg] if kind == "txs" else msg["id"]) for kind, msg in
             _decode(box.take())]  # fmt: skip
    assert kinds == [("txs", [1]), ("schema", "m"), ("txs", [2])]
    assert len(box) == 0 and box.take() == b""


def test_records_over_the_limit_drop_the_oldest_chunks_counted_exactly(caplog):
    box = Outbox(limit=100, chunk=10)
    for n in range(1_005):
        box.put(_rec("m", n))
    assert len(box) <= 100 and box.dropped > 0
    nums = [a[1] for kind, msg in _decode(box.take()) for a in msg]
    # the newest survive, contiguous, and every record is either sent or counted
    assert nums == list(range(box.dropped, 1_005))
    assert len([r for r in caplog.records if "dropping" in r.getMessage()]) == 1


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_a_record_that_cannot_be_packed_is_dropped_and_counted_not_raised(caplog):
    box = Outbox(chunk=2)
    bad = _rec("m", 1)[:12] + ({"x": _Unprintable()},) + _rec("m", 1)[13:]
    for rec in (_rec("m", 0), bad, _rec("m", 2)):
        box.put(rec)  # the second put seals the chunk, on the putting thread
    nums = [a[1] for kind, msg in _decode(box.take()) for a in msg]
    assert nums == [0, 2] and box.dropped == 1
    assert any("cannot be packed" in r.getMessage() for r in caplog.records)


SCHEMA = {
    "A": State(remove=["B"]),
    "B": State(remove=["A"]),
    "C": State(multi=True),
    "D": State(require=["C"]),
}


def _arrays(data: bytes) -> list[list]:
    return [a for kind, msg in _decode(data) if kind == "txs" for a in msg]


@pytest.mark.parametrize("full", [False, True], ids=["fast-path", "full"])
def test_a_machines_rows_equal_the_records_a_sink_packs(full: bool):
    """The machine packs its rows inline (two places: its fast path, which full logging's
    hook turns off, and _execute); a second debugger's tracer gets records and packs them
    with Lane.record. Same transitions, so the decoded arrays must be equal, field by field."""
    rng = random.Random(5)
    lane_box, sink_box = Outbox(), Outbox()
    m = Machine(SCHEMA, id="rows-diff", logger=lambda *_: None)
    telemetry.DbgTracer(lane_box, full=full).attach(m)
    telemetry.DbgTracer(sink_box, full=full).attach(m)
    assert m._lane is not None and m._lane.outbox is lane_box and m._sink is not None
    src = MutSource("other", "tx1", 3)
    for i in range(600):
        if i == 300:
            m.log_level = 3  # log entries from here on
        op = rng.choice(["add", "remove", "set"])
        states = rng.sample(list(SCHEMA), rng.randint(1, 2))
        args = {"n": i} if i % 7 == 0 else None
        getattr(m, op)(states, args, source=src if i % 5 == 0 else None)
    a, b = _arrays(lane_box.take()), _arrays(sink_box.take())
    assert len(a) == len(b) == (1200 if full else 600) and a == b  # full: + queued records
    assert any(x[TX_FIELDS.index("log_entries")] for x in a)
    assert any(x[TX_FIELDS.index("source")] for x in a[:300])
    assert any(x[TX_FIELDS.index("args")] == {"n": "7"} for x in a) == full


class _AState:
    def AState(self, e):
        pass


@pytest.mark.parametrize("handlers", [None, _AState()], ids=["fast-path", "full-path"])
def test_the_called_table_restarts_and_rows_still_decode(monkeypatch, handlers):
    """A plan keeps its row's index in the table (Plan.lane_ci): after the table restarts, a
    plan seen before must look its called states up again, on either path."""
    monkeypatch.setattr(telemetry, "CALLED_MAX", 3)
    box = Outbox(chunk=1000)
    m = Machine(SCHEMA, id="called", handlers=handlers)
    telemetry.DbgTracer(box).attach(m)
    rng = random.Random(3)
    want = []
    for _ in range(200):
        states = rng.sample(["A", "B", "C"], rng.randint(1, 2))
        m.add(states)
        want.append(states)
    got = [a[TX_FIELDS.index("called_states")] for a in _arrays(box.take())]
    assert got == want and len(box) == 0


def test_a_lane_follows_schema_changes_and_ends_with_its_machine():
    box = Outbox()
    m = Machine(SCHEMA, id="grows")
    telemetry.DbgTracer(box).attach(m)
    m.add("A")
    m.set_schema({**SCHEMA, "E": State()})
    m.add("E")
    kinds = [(k, len(msg["states_index"]) if k == "schema" else len(msg[0][2]))
             for k, msg in _decode(box.take())]  # fmt: skip
    assert kinds == [("schema", 5), ("txs", 5), ("schema", 6), ("txs", 6)]
    second = Outbox()  # a second debugger: records, packed in a lane of its outbox
    telemetry.DbgTracer(second).attach(m)
    m.add("B")
    m.dispose()  # its rows go out, its lanes are gone
    assert m._lane is None and box._lanes == [] and second._lanes == []
    assert [a[TX_FIELDS.index("called_states")] for a in _arrays(second.take())] == [["B"]]
    assert [a[TX_FIELDS.index("called_states")] for a in _arrays(box.take())] == [["B"]]


@pytest.mark.parametrize("big", [2**31, 2**40])
def test_rows_are_32_bits_until_a_value_needs_64_and_none_is_lost(big: int):
    box = Outbox()
    m = Machine(SCHEMA, id="wide")
    telemetry.DbgTracer(box).attach(m)
    m.add("A")  # a 32-bit row
    data = m.export()
    data["time"][m.index("C")] = big - 1  # the next transitions pass 2**31 - 1: C ticks on
    m.import_data(data)
    m.add("C")  # the fast path (unobserved)
    m.remove("C")
    groups = [g for k, msg in FrameDecoder(packed=True).feed(box.take()) if k == "txp"
              for g in msg]  # fmt: skip
    assert [g.rows.typecode for g in groups] == ["i", "q"]
    clocks = [a[TX_FIELDS.index("clocks")][m.index("C")] for g in groups
              for a in telemetry.expand_txp(g)]  # fmt: skip
    assert clocks[-1] == m.tick("C") and clocks[-2] >= big and box.dropped == 0


@pytest.mark.timeout(60)
def test_machines_in_threads_while_a_sender_takes_nothing_lost_or_reordered():
    box = Outbox(limit=1_000_000, chunk=64)
    machines = [Machine(SCHEMA, id=f"t{i}") for i in range(4)]
    for m in machines:
        telemetry.DbgTracer(box).attach(m)

    def work(m: Machine) -> None:
        for i in range(3_000):
            m.add("A" if i % 2 else "B")

    arrays = _arrays(_taken_while(box, work, machines))
    for m in machines:
        mine = [a for a in arrays if a[0] == m.id]
        ticks = [a[TX_FIELDS.index("queue_tick")] for a in mine]
        assert len(mine) == 3_000 and ticks == sorted(ticks)
    assert box.dropped == 0 and len(box) == 0


def test_full_logging_keeps_queued_records_in_the_lane_in_order():
    """A queued mutation's record is a row (id "q<tick>") among its machine's transitions:
    one frame for many mutations, not a frame per queued record."""
    box = Outbox()
    m = Machine(SCHEMA, id="full", logger=lambda *_: None)
    telemetry.DbgTracer(box, full=True).attach(m)
    box.take()  # the schema
    for i in range(100):
        m.add("A" if i % 2 else "B", {"i": i})
    frames = _decode(box.take())
    assert [kind for kind, _ in frames] == ["txs"]  # one txp frame, expanded
    ids = [a[1] for a in frames[0][1]]
    assert len(ids) == 200 and all(isinstance(q, str) and q.startswith("q") for q in ids[::2])
    assert all(isinstance(n, int) for n in ids[1::2])
    queued = [a for a in frames[0][1] if a[TX_FIELDS.index("flags")] & 8]
    assert [a[TX_FIELDS.index("args")] for a in queued][:2] == [{"i": "0"}, {"i": "1"}]


class _Chatty:
    """Handlers whose lines are the same every time (A) or never (C: a counter)."""

    def __init__(self) -> None:
        self.n = 0

    def AState(self, e):
        pass

    def CState(self, e):
        self.n += 1
        e.machine.log(f"C number {self.n}")


@pytest.mark.parametrize("blocks_max", [2, 256])
def test_log_lines_travel_as_blocks_and_decode_as_logged(monkeypatch, blocks_max: int):
    """At log level 3 a plan's usual lines go once, as a log block its rows name (Lane.block);
    lines that vary, pre-log lines, sources and args go with their rows as before. Both
    tables restarting mid-run (a row holds an index into each) must not mix them up: the
    decoded transitions equal what a record sink packs, line by line."""
    monkeypatch.setattr(telemetry, "CALLED_MAX", 3)
    monkeypatch.setattr(telemetry, "BLOCKS_MAX", blocks_max)
    lane_box, sink_box = Outbox(chunk=64), Outbox()
    m = Machine(SCHEMA, id="blocks", handlers=_Chatty(), log_level=3, logger=lambda *_: None)
    telemetry.DbgTracer(lane_box).attach(m)
    telemetry.DbgTracer(sink_box).attach(m)
    rng = random.Random(7)
    own = 0  # rows that carried their own lines
    taken = []
    for i in range(800):
        states = rng.sample(list(SCHEMA), rng.randint(1, 2))
        if i % 50 == 0:
            m.log("between transitions")  # a pre-log line: the next row carries it
        m.add(states, source=MutSource("other", "tx", i) if i % 97 == 0 else None)
        assert m._lane is not None
        own += isinstance(m._lane.rows[-1], tuple) if m._lane.rows else 0
        if i % 100 == 99:
            taken.append(lane_box.take())
    a, b = _arrays(b"".join(taken) + lane_box.take()), _arrays(sink_box.take())
    logs = TX_FIELDS.index("log_entries")
    assert len(a) == len(b) == 800 and a == b
    assert all(x[logs] for x in a) and any("C number" in str(x[logs]) for x in a)
    assert own < 400  # most rows named a block


def test_a_row_naming_a_block_decodes_only_with_the_block():
    m = Machine(SCHEMA, id="one", log_level=3, logger=lambda *_: None)
    box = Outbox()
    telemetry.DbgTracer(box).attach(m)
    m.add("A")
    m.add("B")
    m.add("A")  # the plan of the first add again: its block
    assert m._lane is not None
    group = box._group(m._lane, list(m._lane.rows))
    assert len(group) == 8 and group[7]  # the blocks the rows name
    del group[7]
    with pytest.raises(telemetry.FrameError, match="names a log block"):
        telemetry.check_txp([group])
