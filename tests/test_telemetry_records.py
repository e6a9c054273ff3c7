"""Transition records: the machine's fast path reports what its full path does, and the packed
wire form (``txp``) decodes to the same transition arrays as the plain one (``txs``)."""

from __future__ import annotations

import random
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machines import Machine, MutSource, State, Tracer, telemetry
from machines.telemetry import TX_FIELDS, FrameDecoder, FrameError, Outbox, encode_frame

SCHEMA = {
    "A": State(remove=["B"]),
    "B": State(remove=["A"]),
    "C": State(require=["A"]),
    "D": State(add=["C"], require=["A"]),
    "M": State(multi=True),
}


class _Slow(Tracer):
    """A hook on every transition: the machine must take its full path."""

    def transition_start(self, tx) -> None:
        pass


def _arrays(box: Outbox) -> list[list]:
    return [a for kind, msg in FrameDecoder().feed(box.take()) if kind == "txs" for a in msg]


def test_fast_path_records_equal_full_path_records():
    rng = random.Random(7)
    muts = [
        (rng.choice(["add", "remove", "set"]), rng.sample(list(SCHEMA), rng.randint(1, 2)))
        for _ in range(400)
    ]
    boxes = []
    for observed in (False, True):
        m = Machine(SCHEMA, id="rec-diff")
        box = Outbox()
        telemetry.DbgTracer(box).attach(m)
        if observed:
            m.tracer_bind(_Slow())
        src = MutSource("other", "tx1", 3)
        for i, (op, states) in enumerate(muts):
            getattr(m, op)(states, source=src if i % 5 == 0 else None)
        boxes.append(_arrays(box))
    fast, full = boxes
    assert len(fast) == len(full) == len(muts)
    num = TX_FIELDS.index("id")
    for a, b in zip(fast, full, strict=True):
        a[num] = b[num] = None  # process-wide counters, different runs
        assert a == b
    assert any(a[TX_FIELDS.index("source")] == ["other", "tx1", 3] for a in fast)


def test_a_sink_keeps_the_fast_path():
    m = Machine(SCHEMA)
    telemetry.DbgTracer(Outbox()).attach(m)
    assert not m._hot
    m.tracer_bind(_Slow())
    assert m._hot


def test_packed_frames_decode_as_plain_ones():
    box = Outbox()
    m = Machine(SCHEMA, id="rec-pack", log_level=3, logger=lambda *_: None)
    telemetry.DbgTracer(box, full=True).attach(m)
    m.add("A", {"name": "x" * 300, "_hidden": 1})
    m.add("D")
    data = m.export()
    data["time"][m.index("B")] = 2**40  # beyond 32 bits: the rows widen to 64
    m.import_data(data)
    m.add("M")
    arrays = _arrays(box)
    txs = [a for a in arrays if isinstance(a[1], int)]
    assert [a[TX_FIELDS.index("called_states")] for a in txs][:2] == [["A"], ["D"]]
    first = dict(zip(TX_FIELDS, txs[0], strict=True))
    assert first["args"] == {"name": "x" * 197 + "..."}
    assert any("[add] A" in text for _, text in first["log_entries"])
    assert txs[-1][TX_FIELDS.index("clocks")][m.index("B")] == 2**40
    # a plain frame of the same arrays decodes to the same
    assert FrameDecoder().feed(encode_frame("txs", arrays)) == [("txs", arrays)]


def _ints32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def _flags(flags: int) -> bytes:
    """One row of a 1-state machine with these flags."""
    return _ints32(0, 0, 0, 0, flags, 0, 0, 0, 0)


def _logs(heads: tuple, levels: list, lengths: list, text: str) -> list:
    return [_ints32(*heads), _ints32(*levels), _ints32(*lengths), text]


@pytest.mark.parametrize(
    "body",
    [
        [["m", 9, "i", b"\x00" * 35, [["A"]], {}, None]],  # not whole rows
        [["m", 9, "x", b"", [], {}, None]],  # unknown typecode
        [["m", 3, "i", b"", [], {}, None]],  # fewer columns than the row header
        [["m", 9, "i", (5).to_bytes(4, "little") * 9, [["A"]], {}, None]],  # called index
        [["m", 9, "i", bytes(36), [["A"]], {0: ["too short"]}, None]],  # bad extras
        [["m", 9, "i", bytes(36), [["A"]], {}]],  # short group
        [["m", 9, "i", bytes(36), [["A"]], {}, [b"", 5]]],  # logs of the wrong types
        [["m", 9, "i", bytes(36), [["A"]], {}, _logs((0, 1), [3], [1], "a")]],  # a short head
        [["m", 9, "i", bytes(36), [["A"]], {}, _logs((1, 1, 0), [3], [2], "ab")]],  # row 1 of 1
        [["m", 9, "i", bytes(36), [["A"]], {}, _logs((0, 1, 0), [3], [5], "ab")]],  # text short
        [["m", 9, "i", bytes(36), [["A"]], {}, _logs((0, 1, 0), [3], [1], "ab")]],  # text long
        [["m", 9, "i", bytes(36), [["A"]], {}, _logs((0, -1, 0), [], [], "")]],  # negative count
        [["m", 9, "i", bytes(36), [["A"]], {}, _logs((0, 2, 0), [3], [1], "a")]],  # too few
        [["m", 9, "i", bytes(36), [["A"]], {}, _logs((0, 1, 0), [3, 3], [1, 1], "ab")]],  # extra
        [["m", 9, "i", bytes(36), [["A"]], {}, _logs((0, 1, 0), [3], [1, 1], "ab")]],  # columns
        [["m", 9, "i", bytes(36), [["A"]], {0: [1]}, _logs((0, 1, 0), [3], [1], "a")]],  # extras
    ],
)
def test_malformed_packed_frames_are_rejected(body):
    with pytest.raises(FrameError, match="txp"):
        FrameDecoder().feed(encode_frame("txp", body))


_LINE = [b"\x03\x03", "a\nb"]  # a log block of two lines


@pytest.mark.parametrize(
    ("flags", "blocks", "logs", "why"),
    [
        (1 << 8, None, None, "names a log block the group does not hold"),
        (1 << 8, {2: _LINE}, None, "names a log block the group does not hold"),
        (-1, None, None, "flags are negative"),
        (1 << 8, {1: [b"\x03", "a\nb"]}, None, "log blocks are"),  # lines and levels differ
        (1 << 8, {1: ["a", b"\x03"]}, None, "log blocks are"),
        (1 << 8, [_LINE], None, "wrong type"),
        (1 << 8, {1: _LINE}, [_ints32(0, 1, 0), b"\x03", None, "c"], "lines of its own and a"),
    ],
)
def test_rows_naming_log_blocks_are_checked(flags, blocks, logs, why):
    body = [["m", 9, "i", _flags(flags), [["A"]], {}, logs, blocks]]
    with pytest.raises(FrameError, match=why):
        FrameDecoder().feed(encode_frame("txp", body))


def test_rows_naming_log_blocks_merge_with_rows_that_carry_lines():
    rows = _flags(1 << 8 | 1) + _flags(1) + _flags(1 << 8 | 1)
    logs = [_ints32(1, 1, 0), b"\x02", None, "own"]
    body = [["m", 9, "i", rows, [["A"]], {}, logs, {1: _LINE}]]
    ((_, txs),) = FrameDecoder().feed(encode_frame("txp", body))
    got = [(tx[6], tx[10]) for tx in txs]
    assert got == [(1, [[3, "a"], [3, "b"]]), (1, [[2, "own"]]), (1, [[3, "a"], [3, "b"]])]


def test_a_machine_alone_neither_imports_telemetry_nor_connects():
    code = (
        "import sys; from machines import Machine, State; Machine({'A': State()}).add('A');"
        "print('machines.telemetry' in sys.modules)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "AM_DBG_ADDR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False", out.stderr


def test_options_from_the_environment():
    from machines.options import Options

    opts = Options.from_env({"AM_LOG": "9", "AM_LOG_FULL": "1", "AM_DBG_ADDR": "1"})
    assert (opts.log_level, opts.log_full, opts.log_steps, opts.dbg_addr) == (5, True, True, "1")
    assert Options.from_env({"AM_LOG": "loud"}).log_level == 0  # bad value: the default
    assert Options.from_env({}) == Options()


_ints = st.integers(-(2**63), 2**63 - 1)
#: texts with newlines, NULs and non-ASCII: the packed logs are one string sliced by lengths
_log_entries = st.one_of(
    st.none(),
    st.lists(st.tuples(st.integers(0, 5), st.text(max_size=5)), min_size=1),
    st.just([]),
)
_record = st.tuples(
    st.sampled_from(["m1", "m2"]),  # machine_id
    st.integers(0, 2**40),  # num
    st.lists(st.integers(0, 2**40), min_size=2, max_size=2).map(tuple),  # clocks
    st.integers(0, 2**31),  # queue_tick
    st.integers(0, 3),  # type
    st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=2, unique=True).map(tuple),
    st.integers(0, 15),  # flags
    st.integers(0, 9),  # queue
    st.integers(0, 2**31),  # mut_queue_tick
    st.integers(0, 9),  # mut_queue_token
    _log_entries,  # log_entries
    _log_entries,  # pre_log_entries
    st.one_of(st.none(), st.dictionaries(st.text(max_size=3).map("k".__add__), st.integers())),
    st.one_of(st.none(), st.builds(MutSource, st.text(max_size=3), st.text(max_size=3))),
    st.none(),  # steps
)


@given(st.lists(_record, max_size=20))
def test_packed_records_decode_to_what_they_hold(records):
    box = Outbox()
    for rec in records:
        box.put(rec)
    got = _arrays(box)
    assert len(got) == len(records)
    by_machine = {m: [r for r in records if r[0] == m] for m in ("m1", "m2")}
    for m, recs in by_machine.items():  # per machine, in order
        arrays = [a for a in got if a[0] == m]
        # a queued mutation's record is numbered by its queue tick: "q<tick>"
        assert [a[1] for a in arrays] == [f"q{r[1]}" if r[6] & 8 else r[1] for r in recs]
        assert [tuple(a[2]) for a in arrays] == [r[2] for r in recs]
        assert [tuple(a[5]) for a in arrays] == [r[5] for r in recs]
        for a, r in zip(arrays, recs, strict=True):
            for field in ("log_entries", "pre_log_entries"):
                got_entries = a[TX_FIELDS.index(field)]
                want = r[TX_FIELDS.index(field)]
                assert [tuple(e) for e in got_entries or ()] == list(want or ())


@given(
    st.lists(
        st.tuples(
            st.one_of(st.text(max_size=3), st.integers()),
            st.one_of(st.integers(-2, 20), st.text(max_size=2)),
            st.sampled_from(["i", "q", "b", ""]),
            st.one_of(st.binary(max_size=80), st.text(max_size=3)),
            st.one_of(st.lists(st.lists(st.text(max_size=2), max_size=2), max_size=3), _ints),
            st.one_of(
                st.dictionaries(st.integers(-1, 4), st.lists(st.none(), max_size=6), max_size=2),
                st.none(),
            ),
            st.one_of(  # logs: [int32 array, text] with counts and lengths in and out of range
                st.none(),
                st.tuples(
                    *[st.lists(st.integers(-2, 6), max_size=6).map(lambda xs: _ints32(*xs))] * 3,
                    st.text(max_size=8),
                ).map(list),
                st.binary(max_size=9),
                st.lists(st.integers(), max_size=3),
            ),
        ).map(list),
        max_size=3,
    )
)
def test_hostile_packed_frames_decode_or_raise_frame_error(body):
    try:
        (kind, arrays), *_ = FrameDecoder().feed(encode_frame("txp", body))
    except FrameError as err:
        assert "\n" not in str(err)
        return
    assert kind == "txs" and all(len(a) == len(TX_FIELDS) for a in arrays)
