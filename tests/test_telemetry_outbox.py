"""The outbox packs records in chunks on the putting thread: nothing lost, duplicated or
reordered per machine (machines in several threads, a sender taking meanwhile), frames and
records keep their relative order, and the bound drops whole chunks, counted exactly."""

from __future__ import annotations

import threading

import pytest

from machines.telemetry import FrameDecoder, Outbox, encode_frame


def _rec(mid: str, num: int) -> tuple:
    return (mid, num, (num, 1), num, 1, ("A",), 1, 0, num, 0, None, None, None, None, None)


def _decode(data: bytes) -> list[tuple[str, object]]:
    return FrameDecoder().feed(data)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("live", [True, False], ids=["packed-by-puts", "packed-by-take"])
def test_threads_put_while_a_sender_takes_nothing_lost_or_reordered(live: bool):
    box = Outbox(limit=1_000_000, chunk=64)
    box.live = live
    per_thread = 5_000
    mids = [f"m{i}" for i in range(4)]
    done = threading.Event()
    got: list[bytes] = []

    def machine(mid: str) -> None:
        for n in range(per_thread):
            box.put(_rec(mid, n))

    def sender() -> None:
        while not done.is_set():
            got.append(box.take())
        got.append(box.take())

    taker = threading.Thread(target=sender)
    taker.start()
    workers = [threading.Thread(target=machine, args=(mid,)) for mid in mids]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    taker.join()
    arrays = [a for kind, msg in _decode(b"".join(got)) if kind == "txs" for a in msg]
    for mid in mids:
        assert [a[1] for a in arrays if a[0] == mid] == list(range(per_thread))
    assert len(arrays) == len(mids) * per_thread and box.dropped == 0 and len(box) == 0


@pytest.mark.parametrize("live", [True, False])
def test_a_frame_goes_after_the_records_put_before_it(live: bool):
    box = Outbox(chunk=100)
    box.live = live
    box.put(_rec("m", 1))
    box.put(encode_frame("schema", {"id": "m"}))
    box.put(_rec("m", 2))
    assert len(box) == 3
    kinds = [(kind, [a[1] for a in msg] if kind == "txs" else msg["id"]) for kind, msg in
             _decode(box.take())]  # fmt: skip
    assert kinds == [("txs", [1]), ("schema", "m"), ("txs", [2])]
    assert len(box) == 0 and box.take() == b""


@pytest.mark.parametrize("live", [True, False])
def test_records_over_the_limit_drop_the_oldest_chunks_counted_exactly(caplog, live: bool):
    box = Outbox(limit=100, chunk=10)
    box.live = live
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


@pytest.mark.parametrize("live", [True, False])
def test_a_record_that_cannot_be_packed_is_dropped_and_counted_not_raised(caplog, live: bool):
    box = Outbox(chunk=2)
    box.live = live
    bad = _rec("m", 1)[:12] + ({"x": _Unprintable()},) + _rec("m", 1)[13:]
    for rec in (_rec("m", 0), bad, _rec("m", 2)):
        box.put(rec)  # the second put seals the chunk: on the machine's thread when live
    nums = [a[1] for kind, msg in _decode(box.take()) for a in msg]
    assert nums == [0, 2] and box.dropped == 1
    assert any("cannot be packed" in r.getMessage() for r in caplog.records)
