"""Structure-aware fuzzing of the debugger's collector: telemetry frames built like DbgTracer's,
one part swapped for a hostile value. What is accepted must read and save without a failure;
the collector must keep serving a legit producer, with memory bounded."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import trio
from fuzz_strategies import TrioThread, encode_all, mutated, rss_bytes
from fuzz_strategies import send_and_drain as drain
from hypothesis import given
from hypothesis import strategies as st

from dbg.collector import Collector, serve_collector, tx_problem
from dbg.dump import decode_dump, encode_dump
from machines.telemetry import TX_FIELDS, encode_frame

STATES = ["Exception", "A", "B"]
N = len(STATES)

names = st.sampled_from(STATES + ["", "Z"])
schema = st.fixed_dictionaries(
    {"id": st.sampled_from(["m1", "m2"]), "states_index": st.just(STATES)},
    optional={
        "states": st.dictionaries(
            names, st.fixed_dictionaries({}, optional={"multi": st.booleans()})
        ),
        "tx_id_prefix": st.text(max_size=4),
        "parent": st.text(max_size=4),
        "tags": st.lists(st.text(max_size=4), max_size=2),
        "groups": st.dictionaries(st.text(max_size=3), st.lists(st.integers(0, N), max_size=3)),
        "groups_order": st.lists(st.text(max_size=3), max_size=2),
    },
)
step = st.tuples(
    st.integers(0, 64),
    names,
    names,
    st.integers(-1, 4),
    st.booleans(),
    st.booleans(),
    st.booleans(),
).map(list)
tx = st.tuples(
    st.sampled_from(["m1", "m2", "m3"]),  # machine_id
    st.one_of(st.integers(0, 2**32), st.text(max_size=6)),  # id
    st.lists(st.integers(0, 2**40), min_size=N, max_size=N),  # clocks
    st.one_of(st.none(), st.integers(0, 99)),  # queue_tick
    st.one_of(st.none(), st.integers(0, 3)),  # type
    st.one_of(st.none(), st.lists(names, max_size=3)),  # called_states
    st.integers(0, 15),  # flags
    st.one_of(st.none(), st.integers(0, 9)),  # queue
    st.one_of(st.none(), st.integers(0, 9)),  # mut_queue_tick
    st.one_of(st.none(), st.integers(0, 9)),  # mut_queue_token
    st.one_of(st.none(), st.lists(st.tuples(st.integers(0, 5), st.text(max_size=8)).map(list))),
    st.none(),  # pre_log_entries
    st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2)),
    st.one_of(
        st.none(), st.tuples(st.text(max_size=3), st.text(max_size=3), st.integers(0, 9)).map(list)
    ),
    st.one_of(st.none(), st.lists(step, max_size=3)),  # steps
).map(list)
messages = st.lists(
    st.one_of(
        st.tuples(st.just("schema"), mutated(schema)),
        st.tuples(st.just("txs"), st.lists(mutated(tx), max_size=4)),
        st.tuples(st.just("txs"), mutated(st.lists(tx, max_size=3))),
    ),
    min_size=1,
    max_size=6,
)


@given(messages)
def test_fuzz_collector_ingest_keeps_what_is_valid(msgs):
    c = Collector()
    c.ingest("conn-1", "schema", {"id": "m1", "states_index": STATES})
    for kind, msg in msgs:
        try:
            c.ingest("conn-1", kind, msg)
        except ValueError as err:  # the only way to say no, in one line
            assert "\n" not in str(err) and len(str(err)) < 500
    kept = sum(len(rec) for rec in c.machines.values())
    dumps = c.dumps()  # parses everything: nothing accepted may fail now
    assert sum(len(d.txs) for d in dumps) == kept
    assert all(rec.bad == 0 for rec in c.machines.values())
    back = decode_dump(encode_dump(dumps))
    assert [len(d.txs) for d in back] == [len(d.txs) for d in dumps]


# --- over real sockets -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collector():
    c = Collector()

    async def main(ready):
        async with trio.open_nursery() as nursery:
            port, _ = await nursery.start(
                lambda task_status: serve_collector(c, "127.0.0.1", 0, task_status=task_status)
            )
            ready(port)
            await trio.sleep_forever()

    thread = TrioThread(main)
    port = thread.start()
    yield ("127.0.0.1", port), c, thread
    thread.stop()


def _header(n: int) -> bytes:
    return n.to_bytes(4, "big")


def _legit(addr: tuple[str, int], c: Collector, n: int) -> None:
    """A producer's schema and one transition arrive and are kept."""
    mid = f"legit-{n}"
    arr = [mid, 1, [0, 1, 0], 1, 0, ["A"], 1, 0, 0, 0, None, None, None, None, None]
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(encode_frame("schema", {"id": mid, "states_index": STATES}))
        s.sendall(encode_frame("txs", [arr]))
        deadline = time.monotonic() + 10
        while mid not in c.machines or not len(c.machines[mid]):
            assert time.monotonic() < deadline, "the collector stopped serving"
            time.sleep(0.01)  # another thread's trio: no event to await from here


_n = [0]


@given(messages, st.booleans())
def test_fuzz_tcp_collector_keeps_serving(collector, msgs, as_frames):
    addr, c, thread = collector
    if as_frames:  # telemetry frames with fuzzed bodies
        data = b"".join(
            encode_frame(kind, msg) if _encodable(msg) else b"\x00\x00\x00\x02\xff\xff"
            for kind, msg in msgs
        )
    else:  # the frame envelope itself fuzzed
        data = encode_all([{"t": kind, "m": msg} for kind, msg in msgs], _header)
    drain(addr, data)
    _n[0] += 1
    _legit(addr, c, _n[0])
    assert thread.error is None


def _encodable(msg) -> bool:
    try:
        encode_frame("txs", msg)
    except Exception:
        return False
    return True


@given(tx)
def test_the_tx_shape_is_the_wire_format_and_valid(arr):
    assert len(arr) == len(TX_FIELDS) and tx_problem(arr, N) == ""


def test_tcp_collector_memory_stays_bounded(collector):
    addr, c, thread = collector
    before = rss_bytes()
    junk = encode_frame("schema", {"id": "junk", "states_index": STATES}) + encode_frame(
        "txs", [["junk", 1, [1] * 5000, *([None] * 12)]] * 200
    )
    for _ in range(50):
        drain(addr, junk)
    _legit(addr, c, 10**6)
    assert c.rejected >= 50 * 200
    assert rss_bytes() - before < 100 << 20
    assert thread.error is None


# --- packed transitions: the collector keeps valid groups as received --------------------------

extras = tx.map(lambda arr: arr[10:])


@st.composite
def txp_group(draw) -> list:
    """A ``txp`` group as a ``Lane`` builds it, sometimes with one part made hostile."""
    code = draw(st.sampled_from("iq"))
    top = 2**31 - 1 if code == "i" else 2**63 - 1
    width = draw(st.sampled_from([N, N, N, 2]))  # sometimes not the schema's
    lists = st.lists(st.one_of(st.none(), st.lists(names, max_size=3)), min_size=1, max_size=3)
    called = draw(st.one_of(lists, mutated(lists)))
    n = draw(st.integers(0, 4))
    row = st.tuples(
        st.integers(0, top).map(lambda v: -1 if v % 16 == 15 else v),  # id: rarely negative
        *[st.integers(-(top + 1), top)] * 2,
        st.integers(0, 2),  # called index: sometimes out of range
        st.one_of(  # flags: mostly flags, sometimes naming a log block (maybe not sent)
            st.integers(0, 15),
            st.integers(1, 3).map(lambda b: b << 8 | 1),
            st.integers(-(top + 1), top),
        ),
        *[st.integers(-(top + 1), top)] * (3 + width),
    )
    rows = [v for r in draw(st.lists(row, min_size=n, max_size=n)) for v in r]
    ex = draw(st.dictionaries(st.integers(-1, n), st.one_of(extras, mutated(extras)), max_size=3))
    mid = draw(st.sampled_from(["m1", "m1", "m2"]))
    from array import array

    group = [mid, 8 + width, code, array(code, rows).tobytes(), called, ex, draw(txp_logs(n))]
    return group + draw(st.sampled_from([[], [None], [draw(txp_blocks())]]))


@st.composite
def txp_blocks(draw) -> Any:
    """A group's log blocks (see ``Lane.block``): {number: [levels, text]}, well formed or
    not."""
    line = st.text(max_size=4).filter(lambda t: "\n" not in t)
    block = st.lists(st.tuples(st.integers(0, 5), line), min_size=1, max_size=3).map(
        lambda es: [bytes(lv for lv, _ in es), "\n".join(t for _, t in es)]
    )
    hostile = st.one_of(
        st.lists(st.integers(0, 3), max_size=3), st.tuples(st.binary(max_size=2), st.text())
    )
    return draw(
        st.one_of(
            st.dictionaries(st.integers(1, 3), block, max_size=3),
            st.dictionaries(st.integers(-1, 3), st.one_of(block, hostile), max_size=2),
        )
    )


@st.composite
def txp_logs(draw, n: int) -> list | None:
    """A group's ``logs`` (see ``Outbox._group``): none, well formed for some of its ``n`` rows, or
    numbers and text that may not add up."""
    from array import array

    kind = draw(st.sampled_from(["none", "valid", "valid", "hostile"]))
    if kind == "none":
        return None
    if kind == "hostile":
        ints = st.lists(st.integers(-2, 6), max_size=6).map(lambda xs: array("i", xs).tobytes())
        return [draw(ints), draw(ints), draw(ints), draw(st.text(max_size=6))]
    heads, entries = [], []
    for row in sorted(draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n))):
        log = draw(st.lists(st.tuples(st.integers(0, 5), st.text(max_size=4)), max_size=3))
        pre = draw(st.lists(st.tuples(st.integers(0, 5), st.text(max_size=4)), max_size=2))
        heads += [row, len(log), len(pre)]
        entries += log + pre
    return [
        array("i", heads).tobytes(),
        array("i", [lv for lv, _ in entries]).tobytes(),
        array("i", [len(t) for _, t in entries]).tobytes(),
        "".join(t for _, t in entries),
    ]


def _view(c: Collector) -> list:
    out = []
    for d in c.dumps():
        for t in d.txs:
            t.time = None  # arrival: the two collectors ingest at different instants
        out.append((d.schema.id, d.txs))
    return out


@given(st.lists(st.lists(txp_group(), max_size=3), min_size=1, max_size=3))
def test_fuzz_packed_ingest_keeps_what_the_per_transition_path_keeps(bodies):
    """Differential: ``txp`` groups kept packed (FrameDecoder(packed=True)) and the same
    frames expanded into arrays and checked one by one give the same history, counts and
    errors."""
    from machines.telemetry import FrameDecoder, FrameError

    packed, arrays = Collector(), Collector()
    for c in (packed, arrays):
        c.ingest("conn-1", "schema", {"id": "m1", "states_index": STATES, "tx_id_prefix": "p-"})
    for body in bodies:
        data = encode_frame("txp", body)
        results = []
        for c, dec in ((packed, FrameDecoder(packed=True)), (arrays, FrameDecoder())):
            try:
                ((kind, msg),) = dec.feed(data)
            except FrameError as err:
                results.append(("frame", str(err)))
                continue
            assert kind == ("txp" if c is packed else "txs")
            try:
                c.ingest("conn-1", kind, msg)
                results.append(("ok", ""))
            except ValueError as err:
                assert "\n" not in str(err) and len(str(err)) < 500
                results.append(("bad", str(err)))
        assert results[0] == results[1]
    for c in (packed, arrays):
        assert sum(len(r) for r in c.machines.values()) == c.total_txs
    assert (packed.total_txs, packed.rejected, packed.ignored) == (
        arrays.total_txs,
        arrays.rejected,
        arrays.ignored,
    )
    assert [r.latest_clocks() for r in packed.machines.values()] == [
        r.latest_clocks() for r in arrays.machines.values()
    ]
    assert _view(packed) == _view(arrays)
    assert all(rec.bad == 0 for rec in packed.machines.values())
