"""Fuzzing dump files: this project's CBOR dumps built from the model's shapes with one part
swapped for a hostile value, and the Go tool's gob dump with bytes changed. Reading a dump
either works (and what it read can be written again) or fails with one DumpError line."""

from __future__ import annotations

from pathlib import Path

import brotli
import cbor2
from fuzz_strategies import mutated
from hypothesis import given, settings
from hypothesis import strategies as st

from dbg.dump import DUMP_FORMAT, DUMP_VERSION, DumpError, decode_dump, encode_dump

GO_DUMP = Path(__file__).parent / "fixtures" / "go-am-dbg-sim.gob.br"
GO_RAW = brotli.decompress(GO_DUMP.read_bytes())

STATES = ["Exception", "A", "B"]
step = st.fixed_dictionaries(
    {"type": st.integers(0, 64)},
    optional={"from_state": st.sampled_from(STATES), "rel_type": st.integers(0, 5)},
)
tx = st.fixed_dictionaries(
    {"id": st.text(max_size=6), "clocks": st.lists(st.integers(0, 99), min_size=3, max_size=3)},
    optional={
        "time": st.integers(0, 2**62),
        "type": st.integers(0, 3),
        "called_states": st.lists(st.sampled_from(STATES), max_size=2),
        "called_states_idxs": st.lists(st.integers(0, 2), max_size=2),
        "steps": st.lists(step, max_size=2),
        "args": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
        "accepted": st.booleans(),
        "source_machine_id": st.text(max_size=3),
        "source_mach_time": st.integers(0, 99),
    },
)
machine = st.builds(
    lambda mid, txs: {"schema": {"id": mid, "states_index": STATES}, "txs": txs},
    st.sampled_from(["m1", "m2", "m3"]),
    st.lists(tx, max_size=3),
)
doc = st.builds(
    lambda ms: {"format": DUMP_FORMAT, "version": DUMP_VERSION, "machines": ms},
    st.lists(machine, max_size=3),
)


def _read(data: bytes) -> None:
    try:
        machines = decode_dump(data, "fuzz")
    except DumpError as err:
        assert "\n" not in str(err) and len(str(err)) < 1000
        return
    again = decode_dump(encode_dump(machines))  # what was read can be written and read back
    assert [len(m.txs) for m in again] == [len(m.txs) for m in machines]


@given(mutated(doc), st.booleans())
def test_fuzz_cbor_dumps(item, compress):
    try:
        raw = cbor2.dumps(item)
    except Exception:
        return  # nothing a file could hold
    _read(brotli.compress(raw, quality=1) if compress else raw)


@settings(max_examples=max(10, settings().max_examples // 10))  # each reads 1 MB of gob
@given(st.lists(st.tuples(st.integers(0, len(GO_RAW) - 1), st.integers(0, 255)), max_size=8))
def test_fuzz_go_gob_dump(flips):
    raw = bytearray(GO_RAW)
    for pos, byte in flips:
        raw[pos] = byte
    _read(bytes(raw))


@given(st.binary(max_size=300))
def test_fuzz_any_bytes(data):
    _read(data)
