"""Bad input over real sockets: 10,000 seeded malformed frames, then a good client still works.

Well-formed frames with bad contents (unknown methods, unknown state indexes, wrong types) must
each get an error frame on a connection that stays open; garbage (bad CBOR, oversized or
truncated frames, non-aRPC items) must close only its own connection, with a one-line log.
"""

from __future__ import annotations

import logging
import random
from functools import partial

import cbor2
import pytest
import trio

from machines import Machine, State
from machines.rpc import RpcNotConnected, connect, serve
from machines.rpc import protocol as p
from machines.rpc.transport import open_tcp

SEED = 20261129
N_SOFT = 9_000  # well-formed, bad contents: error responses
N_FATAL = 1_000  # garbage: the connection closes
SCHEMA = {"Exception": State(multi=True), "A": State(), "B": State(), "C": State()}
N_STATES = len(SCHEMA)
ODD = [None, True, 1.5, -3, 2**70, b"\x00", "x", [], {}, [[]], {"a": 1}, [1, "a"]]


def soft_frame(rng: random.Random, seq: int) -> tuple[list, int]:
    """A valid envelope with bad contents; returns (item, seq the error frame will carry)."""
    kind = rng.randrange(12)
    mut = rng.choice(["a", "r", "s"])
    bad_idx = rng.choice([N_STATES, N_STATES + rng.randrange(1000), -1, "A", 1.0, None, True])
    if kind == 0:
        return [1, seq, "".join(rng.choices("bcdefgjkz", k=rng.randint(1, 5)))], seq
    if kind == 1:
        return [1, seq, rng.choice([7, None, [], {}, b"a", 2.5])], seq
    if kind == 2:
        return [1, seq, mut, [1, bad_idx]], seq
    if kind == 3:
        return [1, seq, mut, rng.choice([[], None, 5, "A", {}])], seq
    if kind == 4:
        return [1, seq, mut, [1], rng.choice([[1], 5, "x", {1: 2}, True])], seq
    if kind == 5:
        bad_src = rng.choice(ODD[1:] + [["m", "t"], ["m", "t", "x"]])  # None is a valid source
        return [1, seq, mut, [1], None, bad_src], seq
    if kind == 6:
        return [1, seq, mut, [1], None, None, rng.choice(ODD)], seq
    if kind == 7:
        return [1, seq, "h", {"v": 1, "id": "again"}], seq
    if kind == 8:
        return [0, rng.choice(["y", "a", "h", "zz", "u"]), *rng.sample(ODD, 2)], 0
    if kind == 9:
        return [0, "A", [bad_idx]], 0
    if kind == 10:
        return [1, seq, "A", [1]], seq  # a notification-only method, called
    return [0, rng.choice([5, None, [], 2.5])], 0


def fatal_bytes(rng: random.Random, max_frame: int) -> tuple[bytes, bool]:
    """Garbage; returns (bytes, whether the server must close without our EOF)."""
    kind = rng.randrange(6)
    if kind == 0:  # a length over the limit
        return p.HEADER.pack(max_frame + 1 + rng.randrange(2**31)) + rng.randbytes(8), True
    if kind == 1:  # not CBOR: a break or reserved byte first
        body = bytes([rng.choice([0xFF, 0x1C, 0x3E, 0x5F + 0x40])]) + rng.randbytes(5)
        return p.HEADER.pack(len(body)) + body, True
    if kind == 2:  # CBOR, but not an aRPC frame
        item = rng.choice([5, "frame", {"k": [1]}, [], [9, 1], [1], ["a", 1], [2, "x"]])
        return p.encode_frame(item), True
    if kind == 3:  # a response to a call never made, or a bad seq
        item = rng.choice([[2, 777, 0], [3, 5, "x"], [1, 0, "a"], [1, -4, "a"]])
        return p.encode_frame(item), True
    if kind == 4:  # truncated: the header promises more than comes before EOF
        body = cbor2.dumps([1, 1, "h", {"v": 1, "id": "t"}])
        return p.HEADER.pack(len(body)) + body[: rng.randrange(len(body))], False
    return rng.randbytes(rng.randint(1, 64)), False  # anything at all


async def _soft_session(addr: str, frames: list[tuple[list, int]]) -> list:
    stream = await open_tcp(addr)
    conn = p.ClientConnection("fuzzer")
    conn.hello()
    await stream.send_all(conn.data_to_send())
    reader = p.FrameReader()
    hello = []
    while not hello:
        hello = reader.feed(await stream.receive_some(65536))
    assert hello[0][0] == p.RESPONSE
    await stream.send_all(b"".join(p.encode_frame(item) for item, _ in frames))
    replies: list = list(hello[1:])
    while len(replies) < len(frames):
        data = await stream.receive_some(65536)
        assert data, "the server closed a connection that only sent well-formed frames"
        replies += reader.feed(data)
    await stream.aclose()
    return replies


async def _fatal_session(addr: str, data: bytes, server_closes: bool) -> None:
    stream = await open_tcp(addr)
    await stream.send_all(data)
    if not server_closes:
        await stream.send_eof()
    with trio.fail_after(5):
        while await stream.receive_some(65536):
            pass  # drain until the server closes
    await stream.aclose()


@pytest.mark.trio
async def test_ten_thousand_malformed_frames(caplog):
    caplog.set_level(logging.INFO, logger="machines.rpc")
    rng = random.Random(SEED)
    src = Machine(SCHEMA, id="src")
    max_frame = 4096
    with trio.fail_after(120):
        async with serve(src, "127.0.0.1:0", max_frame=max_frame, push_interval=0) as mux:
            async with connect(mux.addr, id="good") as good:
                await good.netmach.add("A")
                # well-formed frames with bad contents, pipelined on a few connections
                soft = [soft_frame(rng, seq) for seq in range(1, N_SOFT + 1)]
                chunks = [soft[i : i + 1500] for i in range(0, N_SOFT, 1500)]
                results = []

                async def run_soft(chunk):
                    results.append((chunk, await _soft_session(mux.addr, chunk)))

                async with trio.open_nursery() as n:
                    for chunk in chunks:
                        n.start_soon(run_soft, chunk)
                for chunk, replies in results:
                    assert [r[:2] for r in replies] == [[p.ERROR, seq] for _, seq in chunk]
                    assert all(isinstance(r[2], str) and r[2] for r in replies)
                assert src.active_states == ["A"]  # none of it mutated the source

                # garbage, one connection each, 25 at a time
                fatal = [fatal_bytes(rng, max_frame) for _ in range(N_FATAL)]
                limit = trio.CapacityLimiter(25)

                async def run_fatal(data, closes):
                    async with limit:
                        await _fatal_session(mux.addr, data, closes)

                async with trio.open_nursery() as n:
                    for data, closes in fatal:
                        n.start_soon(run_fatal, data, closes)

                # the good client was served throughout, and still is
                assert good.connected
                await good.netmach.add("B")
                src.add("C")
                await good.netmach.when("C")
                assert good.netmach.clock() == src.clock()
                assert good.conn.syncs == 0
            # and a new client gets in
            async with connect(mux.addr, id="late") as late:
                assert late.netmach.is_active("A", "B", "C")
    reasons = [r.getMessage() for r in caplog.records if "bad input" in r.getMessage()]
    assert len(reasons) >= N_FATAL // 2
    assert all("\n" not in r for r in reasons)  # one line each, no tracebacks
    assert any("exceeds the limit of 4096" in r for r in reasons)
    assert any("malformed CBOR" in r for r in reasons)
    assert any("closed mid-frame" in r for r in reasons)
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.trio
async def test_a_server_sending_garbage_gets_a_clear_error(caplog):
    caplog.set_level(logging.INFO, logger="machines.rpc")

    async def garbage(stream):
        await stream.receive_some(65536)  # the hello
        await stream.send_all(p.HEADER.pack(3) + b"\xff\xfe\xfd")
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            serve_tcp = partial(trio.serve_tcp, host="127.0.0.1")
            (listener,) = await n.start(serve_tcp, garbage, 0)
            addr = f"127.0.0.1:{listener.socket.getsockname()[1]}"
            with pytest.raises(RpcNotConnected, match="gave up .* bad input from server"):
                async with connect(addr, id="c1", reconnect=False):
                    pass
            n.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if "bad input from server" in r.getMessage()]
    assert lines and "malformed CBOR" in lines[0] and "\n" not in lines[0]
