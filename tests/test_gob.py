"""The Go gob decoder: byte layouts from the format's specification, the Go debugger's dump,
and corrupt streams (which must raise a GobError saying where, never anything else)."""

from __future__ import annotations

import hashlib
import random
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import brotli
import pytest

from dbg.gob import GobDecoder, GobError, GobInterface, GobOpaque, decode_go_time, loads_all

FIXTURES = Path(__file__).parent / "fixtures"
GO_DUMP = FIXTURES / "go-am-dbg-sim.gob.br"

# ----- a tiny encoder, written from the specification, to build test streams


def u(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([256 - len(raw)]) + raw


def i(n: int) -> bytes:
    return u((~n << 1) | 1 if n < 0 else n << 1)


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return u(len(raw)) + raw


def f(x: float) -> bytes:
    return u(int.from_bytes(struct.pack(">d", x), "little"))


def msg(body: bytes) -> bytes:
    return u(len(body)) + body


def struct_def(tid: int, name: str, fields: list[tuple[str, int]]) -> bytes:
    """A wireType message defining a struct type."""
    body = i(-tid) + u(3) + u(1) + u(1) + s(name) + u(1) + i(tid) + u(0)
    body += u(1) + u(len(fields))
    for fname, fid in fields:
        body += u(1) + s(fname) + u(1) + i(fid) + u(0)
    return msg(body + u(0) + u(0))


def slice_def(tid: int, elem: int) -> bytes:
    return msg(i(-tid) + u(2) + u(1) + u(2) + i(tid) + u(0) + u(1) + i(elem) + u(0) + u(0))


def map_def(tid: int, key: int, elem: int) -> bytes:
    body = i(-tid) + u(4) + u(1) + u(2) + i(tid) + u(0) + u(1) + i(key) + u(1) + i(elem)
    return msg(body + u(0) + u(0))


def encoder_def(tid: int, name: str) -> bytes:
    return msg(i(-tid) + u(5) + u(1) + u(1) + s(name) + u(1) + i(tid) + u(0) + u(0) + u(0))


INT, UINT, FLOAT, STRING, BOOL, BYTES, IFACE = 2, 3, 4, 6, 1, 5, 8


# ----- the specification's own example


def test_point_example_from_the_spec() -> None:
    # type Point struct {X, Y int}; Point{22, 33}: the bytes printed in the gob documentation.
    stream = bytes.fromhex(
        "1fff81030101 05506f696e74 01ff8200 0102 010158 010400 010159 010400 0000"
        "07ff82 012c 0142 00".replace(" ", "")
    )
    assert loads_all(stream) == [{"X": 22, "Y": 33}]


def test_primitive_encodings() -> None:
    assert u(256) == b"\xfe\x01\x00"  # the spec's example for uint 256
    assert f(17.0) == b"\xfe\x31\x40"  # and for float 17.0
    fields = [("A", INT), ("B", UINT), ("C", FLOAT), ("D", STRING), ("E", BOOL), ("F", BYTES)]
    value = i(65) + u(1) + i(-129) + u(1) + u(2**64 - 1) + u(1) + f(-2.5)
    value += u(1) + s("héllo") + u(1) + u(1) + u(1) + s(b"\x00\xff") + u(0)
    stream = struct_def(65, "T", fields) + msg(value)
    assert loads_all(stream) == [
        {"A": -129, "B": 2**64 - 1, "C": -2.5, "D": "héllo", "E": True, "F": b"\x00\xff"}
    ]


def test_zero_fields_are_omitted_and_deltas_skip() -> None:
    stream = struct_def(65, "T", [("A", INT), ("B", INT), ("C", STRING)])
    stream += msg(i(65) + u(3) + s("only C") + u(0))
    assert loads_all(stream) == [{"C": "only C"}]


def test_slices_maps_nested_structs_and_top_level_non_struct() -> None:
    stream = struct_def(65, "Inner", [("N", INT)])
    stream += slice_def(66, 65)
    stream += map_def(67, STRING, 66)
    stream += struct_def(68, "Outer", [("M", 67), ("L", 66)])
    inner = u(1) + i(7) + u(0)
    value = i(68) + u(1) + u(1) + s("k") + u(2) + inner + u(0) + u(1) + u(1) + inner + u(0)
    stream += msg(value)
    # A top-level slice travels as a single field: delta 0 first.
    stream += msg(i(66) + u(0) + u(1) + inner)
    assert loads_all(stream) == [
        {"M": {"k": [{"N": 7}, {}]}, "L": [{"N": 7}]},
        [{"N": 7}],
    ]


def test_interface_values_and_nil() -> None:
    stream = struct_def(65, "Step", [("Data", IFACE), ("Other", IFACE)])
    name = "github.com/pancsta/asyncmachine-go/pkg/machine.Relation"
    # name, concrete type id (int), byte count, then the value as a single field (delta 0)
    iface = s(name) + i(INT) + u(2) + u(0) + i(2)
    # a nil interface is an empty name (only sent when non-zero, so put it in a slice)
    stream += msg(i(65) + u(1) + iface + u(0))
    stream += slice_def(66, IFACE) + msg(i(66) + u(0) + u(2) + u(0) + iface)
    out = loads_all(stream)
    assert out[0] == {"Data": GobInterface(name, 2)}
    assert out[1] == [None, GobInterface(name, 2)]


def test_interface_with_inline_struct_definition() -> None:
    stream = struct_def(65, "Box", [("V", IFACE)])
    inline = struct_def(66, "Pt", [("X", INT)])  # definition sent inside the value
    value = s("main.Pt") + inline[1:] + u(3) + i(66) + u(3) + u(1) + i(5) + u(0)
    stream += msg(i(65) + u(1) + value + u(0))
    assert loads_all(stream) == [{"V": GobInterface("main.Pt", {"X": 5})}]


def test_gob_encoder_time_and_opaque() -> None:
    sec = 63857251769  # 2024-07-22T13:29:29 UTC counted from year 1
    t_bytes = b"\x01" + struct.pack(">qih", sec, 660_639_000, 120)
    stream = (
        encoder_def(65, "time.Time")
        + encoder_def(66, "")
        + struct_def(67, "Tx", [("T", 65), ("Raw", 66)])
    )
    stream += msg(i(67) + u(1) + s(t_bytes) + u(1) + s(b"xyz") + u(0))
    (out,) = loads_all(stream)
    assert out["T"] == datetime(2024, 7, 22, 13, 29, 29, 660639, tzinfo=UTC)
    assert out["T"].utcoffset() == timedelta(minutes=120)
    assert out["Raw"] == GobOpaque("", b"xyz")
    assert decode_go_time(b"\x01" + struct.pack(">qih", sec, 0, -1)).tzinfo is UTC
    v2 = b"\x02" + struct.pack(">qih", sec, 0, 60) + b"\x1e"
    assert decode_go_time(v2).utcoffset() == timedelta(minutes=60, seconds=30)
    assert decode_go_time(v2).tzinfo == timezone(timedelta(minutes=60, seconds=30))


def test_recursive_type() -> None:
    stream = struct_def(65, "Node", [("V", INT), ("Next", 65)])
    stream += msg(i(65) + u(1) + i(1) + u(1) + u(1) + i(2) + u(0) + u(0))
    assert loads_all(stream) == [{"V": 1, "Next": {"V": 2}}]


# ----- the Go debugger's dump


def test_go_dump_fixture_decodes() -> None:
    (machines,) = loads_all(brotli.decompress(GO_DUMP.read_bytes()))
    assert len(machines) == 107
    by_id = {m["MsgStruct"]["ID"]: m for m in machines}
    assert {"sim", "sim-p11", "ps-17", "sim-t-the-matrix"} <= set(by_id)
    p11 = by_id["sim-p11"]["MsgStruct"]
    assert p11["StatesIndex"][:3] == ["Start", "IsDHT", "Ready"]
    assert p11["States"]["Ready"] == {"Auto": True, "Require": ["Start", "Connected"]}
    first = by_id["sim-p11"]["MsgTxs"][0]
    assert first["CalledStates"] == ["Start"]
    assert first["LogEntries"][0] == {"Level": 2, "Text": "[add] Start"}
    # time.Time has no type name in this stream: it stays opaque for the dump reader
    assert isinstance(first["Time"], GobOpaque)
    assert decode_go_time(first["Time"].data).year == 2024
    total = sum(len(m["MsgTxs"]) for m in machines)
    assert total == 7605


# ----- corrupt streams


def _small_defs() -> bytes:
    return slice_def(66, STRING) + struct_def(
        65, "T", [("A", INT), ("S", STRING), ("L", 66), ("I", IFACE)]
    )


def _small_value() -> bytes:
    value = i(65) + u(1) + i(-5) + u(1) + s("text") + u(1) + u(2) + s("a") + s("b")
    value += u(1) + s("x.Int") + i(INT) + u(2) + u(0) + i(3) + u(0)
    return msg(value)


def _small_stream() -> bytes:
    return _small_defs() + _small_value()


def test_small_stream_is_valid() -> None:
    assert loads_all(_small_stream()) == [
        {"A": -5, "S": "text", "L": ["a", "b"], "I": GobInterface("x.Int", 3)}
    ]


def test_every_truncation_raises_gob_error_with_position() -> None:
    data = _small_stream()
    # Cutting between two messages leaves a valid stream (type definitions, no value yet).
    cut_ok = 0
    for n in range(1, len(data)):
        try:
            values = loads_all(data[:n])
        except GobError as e:
            assert "byte" in str(e)
            assert "\n" not in str(e)
            continue
        assert values == []
        cut_ok += 1
    assert cut_ok == 2


def test_bit_flips_never_escape_as_other_errors() -> None:
    rng = random.Random(7)
    data = _small_stream()
    for _ in range(600):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        try:
            loads_all(bytes(buf))
        except GobError:
            pass


def test_random_bytes_raise_gob_error() -> None:
    rng = random.Random(1)
    for _ in range(200):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        # anything else (IndexError, UnicodeDecodeError...) or no error at all fails the test
        with pytest.raises(GobError):
            loads_all(junk)


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (msg(i(70) + u(0)), "undefined type id 70"),
        (struct_def(65, "T", []) + struct_def(65, "T", []), "defined twice"),
        (msg(i(-20) + u(0)), "reserved id 20"),
        (b"\x05\x01", "truncated"),
        (b"\xf0\x00", "invalid integer length"),
        (struct_def(65, "T", [("A", INT)]) + msg(i(65) + u(2) + i(1) + u(0)), "field number 1"),
        (struct_def(65, "T", [("S", STRING)]) + msg(i(65) + u(1) + u(100) + u(0)), "length 100"),
        (slice_def(66, INT) + msg(i(66) + u(1) + u(1) + i(1)), "non-zero field delta"),
        (struct_def(65, "T", [("A", INT)]) + msg(i(65) + u(0) + u(0)), "left over"),
    ],
)
def test_corrupt_streams_say_what_and_where(stream: bytes, reason: str) -> None:
    with pytest.raises(GobError) as exc:
        loads_all(stream)
    text = str(exc.value)
    assert reason in text
    assert text.startswith("corrupt gob stream:")
    assert "message" in text and "byte" in text


def test_error_names_the_field_path() -> None:
    stream = slice_def(66, STRING) + struct_def(65, "T", [("L", 66)])
    stream += msg(i(65) + u(1) + u(2) + s("ok") + u(50) + b"x" + u(0))
    with pytest.raises(GobError) as exc:
        loads_all(stream)
    assert "at L[1]" in str(exc.value)


def test_deep_nesting_is_refused() -> None:
    stream = struct_def(65, "Node", [("Next", 65)])
    depth = 300
    stream += msg(i(65) + (u(1) * depth) + (u(0) * (depth + 1)))
    with pytest.raises(GobError, match="nested too deeply"):
        loads_all(stream)
    # the decoder is still usable afterwards
    assert list(GobDecoder(_small_stream()))


# ----- streams that arrive in pieces


def test_feed_in_chunks_gives_the_same_values() -> None:
    raw = brotli.decompress(GO_DUMP.read_bytes())
    whole = loads_all(raw)
    dec = GobDecoder()
    rng = random.Random(5)
    got, pos = [], 0
    while pos < len(raw):
        step = rng.randint(1, 50_000)
        got += dec.feed(raw[pos : pos + step])
        pos += step
    assert got == whole and dec.pending == 0


def test_feed_byte_by_byte_and_partial_messages() -> None:
    data = _small_stream()  # type definitions, then one value
    dec = GobDecoder()
    out = []
    for n in range(len(data)):
        out += dec.feed(data[n : n + 1])
        if n < len(data) - 1:
            assert out == []
    assert out == loads_all(data)
    # the types stay known: a second value needs no definitions
    assert dec.feed(_small_value()) == out


def test_feed_errors_carry_stream_offsets() -> None:
    dec = GobDecoder()
    dec.feed(slice_def(66, STRING))
    start = len(slice_def(66, STRING))
    with pytest.raises(GobError) as exc:
        dec.feed(msg(i(70) + u(0)))
    assert exc.value.offset == start + 1  # the type id, after the 1-byte message length
    assert "message 1" in str(exc.value)
    with pytest.raises(GobError, match="too large"):
        GobDecoder(max_message=1000).feed(u(5000))


def test_fixture_decodes_to_the_same_values_as_ever() -> None:
    """A digest of everything decoded from the Go fixture: the fast paths of the decoder must
    give exactly the values of the first, plain implementation (types, zones and order too)."""
    values = loads_all(brotli.decompress(GO_DUMP.read_bytes()))
    digest = hashlib.sha256(repr(values).encode()).hexdigest()
    assert digest == "8d680b558a02930c4bb6fe1ecf118cf62e5aa1835fa4ff2134aeb6e2b6ebc18b"


def test_errors_in_a_message_length_name_its_byte() -> None:
    first = slice_def(66, STRING)
    with pytest.raises(GobError, match="empty message") as exc:
        loads_all(first + b"\x00")
    assert exc.value.offset == len(first)
    with pytest.raises(GobError, match="truncated") as exc:
        loads_all(first + b"\x05\x01")
    assert exc.value.offset == len(first)


def test_a_type_that_failed_to_build_is_built_again_once_complete() -> None:
    dec = GobDecoder()
    dec.feed(struct_def(65, "T", [("L", 66)]))
    with pytest.raises(GobError, match="undefined type id 66"):
        dec.feed(msg(i(65) + u(0)))
    dec.feed(slice_def(66, STRING))
    assert dec.feed(msg(i(65) + u(1) + u(1) + s("x") + u(0))) == [{"L": ["x"]}]
