"""Hostile aRPC peers: one connection's input must never end the process or another client.

Each test holds a legit client across the attack and checks it is still served afterwards.
"""

from __future__ import annotations

import logging

import cbor2
import pytest
import trio

from machines import Machine, State
from machines.rpc import connect, serve
from machines.rpc import protocol as p
from machines.rpc.transport import open_tcp

SCHEMA = {"A": State(), "B": State()}
# a CBOR bignum with more digits than Python will format (int -> str limit of 4,300 digits)
BIG = cbor2.loads(b"\xc2\x59\x08\x00" + b"\x7f" * 2048)


def frame(item) -> bytes:
    body = cbor2.dumps(item)
    return p.HEADER.pack(len(body)) + body


HELLO = [p.REQUEST, 1, "h", {"v": 1, "id": "evil"}]
BIG_FRAMES = {
    "frame": BIG,
    "kind": [BIG, 1],
    "seq": [p.REQUEST, BIG, "a", [0]],
    "method": [p.REQUEST, 1, BIG],
    "notify-method": [p.NOTIFY, BIG],
    "hello version": [p.REQUEST, 1, "h", {"v": BIG, "id": "evil"}],
    "hello id": [p.REQUEST, 1, "h", {"v": 1, "id": BIG}],
    "error seq 0": [p.ERROR, 0, BIG],
}
AFTER_HELLO = {
    "mutation index": [p.REQUEST, 2, "a", [BIG]],
    "mutation source": [p.REQUEST, 2, "a", [0], None, ["m", "t", BIG]],
    "mutation args": [p.REQUEST, 2, "a", [0], {"k": BIG}],
    "response seq": [p.RESPONSE, BIG, 0],
}


async def _attack(addr: str, items: list) -> list:
    """Send frames, read until the server closes (or 5 s); returns the frames it sent back."""
    stream = await open_tcp(addr)
    reader = p.FrameReader()
    got: list = []
    try:
        await stream.send_all(b"".join(frame(i) for i in items))
        with trio.move_on_after(5):
            while data := await stream.receive_some(65536):
                got += reader.feed(data)
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()
    return got


@pytest.mark.trio
@pytest.mark.parametrize("where", list(BIG_FRAMES) + list(AFTER_HELLO))
async def test_a_bignum_anywhere_ends_only_its_connection(where, caplog):
    caplog.set_level(logging.INFO, logger="machines.rpc")
    item = BIG_FRAMES.get(where) or AFTER_HELLO[where]
    items = [item] if where in BIG_FRAMES else [HELLO, item]
    src = Machine(SCHEMA, id="src")
    with trio.fail_after(20):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            async with connect(mux.addr, id="good") as good:
                await _attack(mux.addr, items)
                await good.netmach.add("A")
                assert src.is_active("A")
                async with connect(mux.addr, id="late") as late:
                    assert late.netmach.is_active("A")
    lines = [r.getMessage() for r in caplog.records]
    assert all(len(line) < 1000 and "\n" not in line for line in lines)
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.trio
async def test_protocol_errors_get_an_error_frame_before_the_close():
    src = Machine(SCHEMA, id="src")
    with trio.fail_after(20):
        async with serve(src, "127.0.0.1:0") as mux:
            got = await _attack(mux.addr, [[9, 1]])
            assert got and got[-1][:2] == [p.ERROR, 0]
            assert "unknown frame kind" in got[-1][2]
            body = b"\xff\xfe"
            stream = await open_tcp(mux.addr)
            await stream.send_all(p.HEADER.pack(len(body)) + body)
            reader, out = p.FrameReader(), []
            with trio.move_on_after(5):
                while data := await stream.receive_some(65536):
                    out += reader.feed(data)
            await stream.aclose()
            assert out and out[-1][0] == p.ERROR and "malformed CBOR" in out[-1][2]


def test_untrusted_values_format_bounded():
    assert len(p.brief(BIG)) < 100
    assert len(p.brief("x" * 10_000)) < 100
    assert len(p.brief([BIG] * 1000)) < 100
    nested: list = []
    for _ in range(10_000):
        nested = [nested]
    assert len(p.brief(nested)) < 100


# --- resources: tracers, handshake timeout, connection cap -------------------------------------


def test_tracer_attach_and_detach_do_not_walk_every_tracer(monkeypatch):
    from machines import Tracer
    from machines import machine as machine_mod

    class T(Tracer):
        def transition_end(self, tx) -> None:
            self.seen = True

    calls = [0]
    real = machine_mod.overridden

    def counting(tracer, hook):
        calls[0] += 1
        return real(tracer, hook)

    monkeypatch.setattr(machine_mod, "overridden", counting)
    m = Machine(SCHEMA, id="m")
    tracers = [T() for _ in range(500)]
    for t in tracers:
        m.tracer_bind(t)
    assert calls[0] <= 500 * 20  # a constant per bind, not one per bound tracer
    for t in tracers[:250]:
        m.tracer_detach(t)
    assert calls[0] <= 500 * 20
    m.add("A")
    assert not hasattr(tracers[0], "seen") and tracers[-1].seen
    assert m.tracers == tracers[250:]


async def _idle(addr: str, n: int) -> list:
    return [await open_tcp(addr) for _ in range(n)]


@pytest.mark.trio
async def test_the_tracer_is_attached_only_after_the_handshake():
    src = Machine(SCHEMA, id="src")
    base = len(src.tracers)
    with trio.fail_after(20):
        async with serve(src, "127.0.0.1:0") as mux:
            idle = await _idle(mux.addr, 20)
            while len(mux.servers) < 20:
                await trio.sleep(0.01)
            assert len(src.tracers) == base
            async with connect(mux.addr, id="good"):
                assert len(src.tracers) == base + 1
            for s in idle:
                await s.aclose()
            await mux.wait_idle()
    assert len(src.tracers) == base


@pytest.mark.trio
async def test_a_connection_without_a_handshake_is_closed(caplog):
    caplog.set_level(logging.INFO, logger="machines.rpc")
    src = Machine(SCHEMA, id="src")
    with trio.fail_after(20):
        async with serve(src, "127.0.0.1:0", handshake_timeout=0.3) as mux:
            (idle,) = await _idle(mux.addr, 1)
            reader, got = p.FrameReader(), []
            while data := await idle.receive_some(65536):  # the server closes it
                got += reader.feed(data)
            assert got[-1][:2] == [p.ERROR, 0] and "no handshake" in got[-1][2]
            async with connect(mux.addr, id="slow-is-fine"):
                await trio.sleep(0.6)  # handshaken: the timeout no longer applies
                assert src.tracers
    assert any("no handshake in 0.3" in r.getMessage() for r in caplog.records)


@pytest.mark.trio
async def test_the_connection_cap_evicts_idle_ones_then_refuses_clearly(caplog):
    caplog.set_level(logging.INFO, logger="machines.rpc")
    src = Machine(SCHEMA, id="src")
    with trio.fail_after(30):
        async with serve(src, "127.0.0.1:0", max_conns=3) as mux:
            idle = await _idle(mux.addr, 3)
            while len(mux.servers) < 3:
                await trio.sleep(0.01)
            # idle connections cannot lock a legit client out: the oldest one makes room
            async with connect(mux.addr, id="c1"), connect(mux.addr, id="c2"):
                async with connect(mux.addr, id="c3") as c3:
                    await c3.netmach.add("A")
                    assert len(mux.servers) == 3
                    # all three handshaken: a fourth is refused with a reason
                    stream = await open_tcp(mux.addr)
                    reader, got = p.FrameReader(), []
                    while data := await stream.receive_some(65536):
                        got += reader.feed(data)
                    await stream.aclose()
                    assert got and "server full: 3 connections" in got[-1][2]
            for s in idle:
                await s.aclose()
    assert mux.refused == 1 and mux.evicted == 3
