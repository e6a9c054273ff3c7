"""The log entries of ``txp`` groups stay packed in the collector until a transition is read
(``machines.telemetry.TxpLogs``): whichever way and however often the history is read,
filtered or saved, it holds what the same frames expanded into transition arrays hold."""

from __future__ import annotations

import struct
import time

import pytest

from dbg.collector import Collector
from dbg.dump import read_dump, write_dump
from dbg.model import DbgMsgTx
from machines import Machine, State, telemetry
from machines.telemetry import FrameDecoder, FrameError, encode_frame

pytestmark = pytest.mark.timeout(60)

SCHEMA = {
    "Start": State(),
    "Ready": State(require=["Start"]),
    "Busy": State(require=["Ready"], remove=["Idle"]),
    "Idle": State(remove=["Busy"]),
}
N = 700  # more than a group (512 rows)


def frames() -> bytes:
    """``N`` transitions at log level 3 (3 entries each), some with pre-log entries, one
    of them a text with a newline (the texts then travel cut by lengths)."""
    box = telemetry.Outbox(limit=10_000)
    m = Machine(SCHEMA, id="m1", log_level=3, logger=lambda *_: None)
    telemetry.DbgTracer(box).attach(m)
    m.add(["Start", "Ready"])
    for i in range(N // 2):
        if i % 7 == 0:
            m.log(f"between {i}" + ("\nsecond line" if i == 301 else ""))
        m.add("Busy")
        m.add("Idle")
    return box.take()


def collector(data: bytes, *, packed: bool) -> Collector:
    c = Collector()
    conn = c.connect()
    for kind, msg in FrameDecoder(packed=packed).feed(data):
        assert kind in ("schema", "txp" if packed else "txs")
        c.ingest(conn, kind, msg)
    return c


def plain(txs: list[DbgMsgTx]) -> list[dict]:
    return [{k: v for k, v in tx.to_dict().items() if k != "time"} for tx in txs]


@pytest.fixture(scope="module")
def data() -> bytes:
    return frames()


def test_packed_logs_read_in_slices_and_again_are_the_arrays_logs(data: bytes) -> None:
    want = collector(data, packed=False).machines["m1"].txs
    c = collector(data, packed=True)
    rec = c.machines["m1"]
    assert rec._pending.n == len(want) > N
    first = list(rec.read(3))  # slices of a group, across the groups' border, then the rest
    rec.read(600)
    txs = rec.txs
    assert txs[:3] == first and plain(txs) == plain(want)
    again = rec.txs
    assert again is txs and plain(again) == plain(want)  # read twice: the same objects
    entries = [e for tx in txs for e in tx.log_entries]
    pre = [e.text for tx in txs for e in tx.pre_log_entries]
    assert len(entries) > 2 * N and {e.level for e in entries} == {2, 3}
    assert "[exter] between 301\nsecond line" in pre and "[exter] between 0" in pre
    # each transition has lists and entry objects of its own
    assert len({id(e) for e in entries}) == len(entries)
    txs[1].log_entries[0].text = "changed"
    assert txs[2].log_entries[0].text != "changed"


def test_ops_lines_dropped_from_packed_rows_as_from_arrays(data: bytes) -> None:
    got = []
    for packed in (True, False):
        c = collector(data, packed=packed)
        c.machines["m1"].read(100)  # some read, the rest pending in their groups
        dropped = c.drop_old_logs(time.time_ns() + 10**12)
        got.append((dropped, plain(c.machines["m1"].txs)))
    assert got[0] == got[1]
    (lines, freed), txs = got[0]
    assert lines >= 2 * N and freed > lines
    levels = {e["level"] for tx in txs for e in tx.get("log_entries", [])}
    assert levels == {2}  # the changes lines stay


def test_a_dump_of_packed_rows_carries_their_log_entries(data: bytes, tmp_path) -> None:
    want = plain(collector(data, packed=False).machines["m1"].txs)
    path = write_dump(tmp_path / "d.cbor", collector(data, packed=True).dumps())
    (m,) = read_dump(path)
    assert plain(m.txs) == want and any(tx.get("pre_log_entries") for tx in want)


def _logs(rows: list[int], counts: list[int], text: str, levels: bytes) -> list:
    heads = [v for r, c in zip(rows, counts, strict=True) for v in (r, c, 0)]
    return [struct.pack(f"<{len(heads)}i", *heads), levels, None, text]


@pytest.mark.parametrize(
    ("logs", "why"),
    [
        (_logs([1, 0], [1, 1], "a\nb", b"\x03\x03"), "out of order"),
        (_logs([1, 1], [1, 1], "a\nb", b"\x03\x03"), "out of order"),
        (_logs([], [], "stray", b""), "do not add up"),
        (_logs([0], [1], "a\nb", b"\x03"), "do not add up"),
    ],
)
def test_logs_that_do_not_say_which_row_is_whose_are_rejected(logs: list, why: str) -> None:
    rows = bytes(2 * 4 * 12)  # two rows of a 4-state machine
    body = [["m1", 12, "i", rows, [["A"]], {}, logs]]
    with pytest.raises(FrameError, match=why):
        FrameDecoder(packed=True).feed(encode_frame("txp", body))
