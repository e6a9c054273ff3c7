"""Structure-aware fuzzing of the aRPC server: frames built from the protocol's own shapes, one
part swapped for a hostile value, in any chunking. After each example the server must still
serve a legit client, the source must carry no leftover tracer, and memory must stay bounded.
"""

from __future__ import annotations

import socket
import time

import pytest
import trio
from fuzz_strategies import BIG, TrioThread, chunked, encode_all, mutated, rss_bytes
from fuzz_strategies import send_and_drain as drain
from hypothesis import given
from hypothesis import strategies as st

from machines import Machine, State
from machines.rpc import protocol as p
from machines.rpc import serve
from machines.rpc.endpoint import ServerEndpoint

SCHEMA = {"Exception": State(multi=True), "A": State(), "B": State(), "Msg": State(multi=True)}
N = len(SCHEMA)

seqs = st.one_of(st.integers(1, 5), st.sampled_from([0xFFFF, 2**32 - 1]))
idx_lists = st.lists(st.integers(-1, N), min_size=1, max_size=4)
args = st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
source = st.one_of(
    st.none(), st.tuples(st.text(max_size=5), st.text(max_size=5), st.integers(0, 9))
)

hello = st.builds(
    lambda seq, body: [p.REQUEST, seq, p.M_HELLO, body],
    seqs,
    st.fixed_dictionaries(
        {"v": st.just(p.PROTOCOL_VERSION), "id": st.text(min_size=1, max_size=8)},
        optional={
            "src": st.text(min_size=1, max_size=8),
            "hash": st.text(max_size=12),
            "al": st.lists(st.sampled_from(list(SCHEMA)), max_size=3),
            "sk": st.lists(st.sampled_from(list(SCHEMA)), max_size=3),
            "ns": st.booleans(),
            "sh": st.booleans(),
            "sm": st.booleans(),
        },
    ),
)
mutation = st.builds(
    lambda seq, m, idx, a, src: [p.REQUEST, seq, m, idx, a, list(src) if src else None],
    seqs,
    st.sampled_from([p.M_ADD, p.M_REMOVE, p.M_SET]),
    idx_lists,
    args,
    source,
)
add_ns = st.builds(lambda idx, a: [p.NOTIFY, p.M_ADD_NS, idx, a], idx_lists, args)
other = st.sampled_from(
    [
        [p.REQUEST, 1, p.M_SYNC],
        [p.NOTIFY, p.M_BYE],
        [p.RESPONSE, 1, 0],
        [p.ERROR, 0, "complaint"],
        [p.ERROR, 3, "x"],
        [p.NOTIFY, p.M_UPDATE, 0, 0, 0],
    ]
)
frames = st.lists(mutated(st.one_of(hello, mutation, add_ns, other)), min_size=1, max_size=6)
#: a valid hello first (most paths need a handshake), then the fuzzed frames
sessions = st.tuples(st.booleans(), frames, st.lists(st.integers(0, 10_000), max_size=4))


def _stream_bytes(handshake: bool, items: list) -> bytes:
    first = [[p.REQUEST, 9, p.M_HELLO, {"v": p.PROTOCOL_VERSION, "id": "fz"}]] if handshake else []
    return encode_all(first + items, p.HEADER.pack)


def legit_roundtrip(src: Machine) -> None:
    """A legit client's hello and one mutation, over an in-memory endpoint."""
    out: list[bytes] = []
    server = ServerEndpoint(src, out.append, push_interval=None)
    server.connection_made()
    client = p.ClientConnection("legit")
    client.hello()
    assert server.receive(client.data_to_send())
    events = client.receive_data(b"".join(out))
    assert any(isinstance(e, p.HandshakeDone) for e in events)
    out.clear()
    seq = client.mutate(p.MUT_ADD, ["Msg"])
    assert server.receive(client.data_to_send())
    events = client.receive_data(b"".join(out))
    assert [e.seq for e in events if isinstance(e, p.MutationDone)] == [seq]
    server.connection_lost("done")


SRC = Machine(SCHEMA, id="fuzz-src")
BASE_TRACERS = len(SRC.tracers)


@given(sessions)
def test_fuzz_server_endpoint(session):
    handshake, items, cuts = session
    out: list[bytes] = []
    server = ServerEndpoint(SRC, out.append, push_interval=None)
    server.connection_made()
    for chunk in chunked(_stream_bytes(handshake, items), cuts):
        if not server.receive(chunk):  # never raises: False ends the connection
            break
    server.connection_lost("fuzz done")
    assert len(SRC.tracers) == BASE_TRACERS
    reader = p.FrameReader()
    for item in reader.feed(b"".join(out)):  # what it answers is well-formed aRPC
        assert isinstance(item, list) and item[0] in (p.RESPONSE, p.ERROR, p.NOTIFY)
        if item[0] == p.ERROR:
            assert isinstance(item[2], str) and len(item[2]) < 1000
    legit_roundtrip(SRC)


@given(st.lists(mutated(st.one_of(hello, mutation, add_ns, other)), min_size=1, max_size=4))
def test_fuzz_client_connection_only_raises_protocol_error(items):
    """The client's end, fed a hostile server's frames after a good hello answer."""
    conn = p.ClientConnection("c1")
    conn.hello()
    body = {"id": "s", "names": list(SCHEMA), "time": [0] * N, "q": 0, "m": 0}
    conn.receive_data(p.encode_frame([p.RESPONSE, 1, body]))
    try:
        conn.receive_data(encode_all(items, p.HEADER.pack))
    except p.ProtocolError as err:
        assert "\n" not in str(err) and len(str(err)) < 1000


# --- over real sockets -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    src = Machine(SCHEMA, id="fuzz-tcp-src")
    holder: dict = {}

    async def main(ready):
        async with serve(src, "127.0.0.1:0", push_interval=0, handshake_timeout=2) as mux:
            holder["mux"] = mux
            ready(mux.addr)
            await trio.sleep_forever()

    thread = TrioThread(main)
    host, port = thread.start().rsplit(":", 1)
    yield (host, int(port)), src, holder["mux"], thread
    thread.stop()


def _legit_over_tcp(addr: tuple[str, int]) -> None:
    with socket.create_connection(addr, timeout=10) as s:
        client = p.ClientConnection(f"legit-{id(s)}")
        client.hello()
        s.sendall(client.data_to_send())
        events: list = []
        while not any(isinstance(e, p.HandshakeDone) for e in events):
            events += client.receive_data(s.recv(65536))
        seq = client.mutate(p.MUT_ADD, ["Msg"])
        s.sendall(client.data_to_send())
        while not any(isinstance(e, p.MutationDone) and e.seq == seq for e in events):
            events += client.receive_data(s.recv(65536))
        client.bye()
        s.sendall(client.data_to_send())


@given(session=sessions)
def test_fuzz_tcp_server_keeps_serving(server, session):
    addr, src, mux, thread = server
    handshake, items, _ = session
    drain(addr, _stream_bytes(handshake, items))
    _legit_over_tcp(addr)
    assert thread.error is None


def test_tcp_server_after_the_fuzzing_is_clean_and_bounded(server):
    addr, src, mux, thread = server
    before = rss_bytes()
    bomb = [[p.REQUEST, 1, BIG], [BIG, 1], [p.REQUEST, 1, p.M_HELLO, {"v": BIG, "id": "x"}]]
    for _ in range(200):
        drain(addr, encode_all(bomb, p.HEADER.pack))
    _legit_over_tcp(addr)
    assert rss_bytes() - before < 100 << 20
    for _ in range(100):  # the connections are gone, and so are their tracers
        if not mux.servers:
            break
        time.sleep(0.05)  # another thread's trio: no event to await from here
    assert not mux.servers and len(src.tracers) == 0
    assert thread.error is None
