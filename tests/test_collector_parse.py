"""The collector's fast parse of a telemetry transition builds what the checked path builds."""

from __future__ import annotations

from dbg.collector import tx_from_array, tx_problem
from dbg.model import DbgMsgTx, ns_to_time
from machines import Machine, State, telemetry
from machines.telemetry import FrameDecoder, tx_message

NOW = 1_700_000_000_123_456_789


def _checked(arr: list, prefix: str) -> DbgMsgTx:
    tx = DbgMsgTx.from_dict(tx_message(arr, prefix))
    if tx.time is None:
        tx.time = ns_to_time(NOW)
    return tx


def test_real_tracer_transitions_parse_the_same() -> None:
    schema = {
        "Start": State(),
        "Ready": State(require=["Start"]),
        "Busy": State(require=["Ready"], remove=["Idle"]),
        "Idle": State(remove=["Busy"]),
        "Msg": State(multi=True),
        "Never": State(require=["Busy", "Idle"]),
    }
    box = telemetry.Outbox(limit=1000)
    m = Machine(schema, id="p", log_level=5, logger=lambda *_: None)
    telemetry.DbgTracer(box).attach(m)
    m.add(["Start", "Ready"])
    m.add("Busy", {"n": 1})
    m.add("Idle")
    m.add("Never")  # canceled: a relation step that does not hold
    m.remove("Start")
    m.add("Msg")
    prefix, arrays, n_states = "", [], 0
    for kind, msg in FrameDecoder().feed(box.take()):
        if kind == "schema":
            prefix, n_states = msg.get("tx_id_prefix", ""), len(msg["states_index"])
        else:
            arrays.extend(msg)
    assert len(arrays) >= 6
    for arr in arrays:
        assert tx_problem(arr, n_states) == ""
        assert tx_from_array(arr, prefix, NOW) == _checked(arr, prefix)


def test_every_optional_field_parses_the_same() -> None:
    full = [
        "m", 7, [1, 2, 0], 3, 1, ["A", "B"], 1 | 2 | 4 | 8, 2, 5, 6,
        [[2, "log line"]], [[1, "before"]], {"x": "1", "y": 2.5, "z": None},
        ["other", "tx9", 42],
        [[8, "A", "", -1, True, False, True], [4, "A", "B", 2, False, True, False]],
    ]  # fmt: skip
    bare = [
        "m",
        "tx-1",
        [1],
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    for arr in (full, bare):
        assert tx_problem(arr, len(arr[2])) == ""
        assert tx_from_array(arr, "pfx", NOW) == _checked(arr, "pfx")


def test_history_is_frozen_only_when_asked() -> None:
    """``gc.freeze()`` is process-wide: a library's collector (``am start --dbg``) must not
    freeze its host's objects; ``am dbg`` asks for it."""
    import gc

    from dbg.collector import FREEZE_EVERY, Collector

    def feed(c: Collector) -> None:
        c.ingest("c1", "schema", {"id": "m", "states_index": ["A"]})
        tx = ["m", "t", [1], 1, 0, [], 0, 0, 0, 0, [], [], {}, None, []]
        c.ingest("c1", "txs", [list(tx) for _ in range(FREEZE_EVERY)])
        assert c.total_txs == FREEZE_EVERY

    gc.unfreeze()
    try:
        for freeze, frozen in ((False, False), (True, True)):
            c = Collector(freeze_history=freeze)
            feed(c)
            assert (gc.get_freeze_count() > 0) is frozen
    finally:
        gc.unfreeze()


def test_packed_history_reads_drops_and_summarizes_like_arrays() -> None:
    """Real tracer frames kept packed (as ``am dbg`` receives them) and expanded into arrays
    give the same transitions, read a slice at a time, across blocks, with the oldest dropped."""
    from dbg.collector import Collector

    schema = {"A": State(remove=["B"]), "B": State(remove=["A"]), "C": State(multi=True)}
    box = telemetry.Outbox(limit=100_000, chunk=64)  # many blocks
    m = Machine(schema, id="p", log_level=3, logger=lambda *_: None)
    telemetry.DbgTracer(box, full=True).attach(m)  # args, and queued records as txs frames
    for i in range(700):
        m.add("A" if i % 2 else "B")
        if i % 7 == 0:
            m.add("C", {"i": i})
    data = box.take()
    packed, arrays = Collector(), Collector()
    for c, dec in ((packed, FrameDecoder(packed=True)), (arrays, FrameDecoder())):
        for kind, msg in dec.feed(data):
            c.ingest("c1", kind, msg)
    a, b = packed.machines["p"], arrays.machines["p"]
    assert len(a) == len(b) == packed.total_txs > 700
    assert a.latest_clocks() == b.latest_clocks() == m.time()

    def same(x: list[DbgMsgTx], y: list[DbgMsgTx]) -> None:
        assert [(t.id, t.clocks, t.called_states, t.log_entries, t.args) for t in x] == [
            (t.id, t.clocks, t.called_states, t.log_entries, t.args) for t in y
        ]
        for t, u in zip(x, y, strict=True):
            t.time = u.time = None
            assert t == u

    assert a.drop_oldest(100) == b.drop_oldest(100) == 100
    for limit in (1, 63, 64, 150):
        same(a.read(limit), b.read(limit))
        assert len(a) == len(b) and a.latest_clocks() == b.latest_clocks()
    assert a.drop_oldest(300) == b.drop_oldest(300)  # parsed ones first, then pending ones
    same(a.txs, b.txs)
    assert a.bad == b.bad == 0 and a.dropped == b.dropped == 400
    assert any(t.log_entries for t in a.txs) and any(t.args for t in a.txs)
