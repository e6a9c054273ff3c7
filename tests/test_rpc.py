"""aRPC over real loopback TCP: the scenarios of the reference's acceptance suite, adapted.

Adapted: there is no separate Handshake call (the hello answer carries the full clock, so a
session costs one call less than in the reference), and no call-retry loop (calls fail fast with
a clear error and the client reconnects, see test_rpc_reconnect.py).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from machines import Machine, MutSource, Result, State
from machines.rpc import RemoteError, RpcNotConnected, RpcTimeout, VersionMismatch, connect, serve
from machines.rpc import protocol as p
from machines.rpc.transport import CountingStream, open_tcp

TIMEOUT = 10


def ss(**states: State) -> dict[str, State]:
    """StateSource-style schema: Exception first, ErrOnClient last."""
    return {"Exception": State(multi=True), **states, "ErrOnClient": State(require=["Exception"])}


RELS = ss(
    A=State(auto=True, require=["C"]),
    B=State(multi=True, add=["C"]),
    C=State(after=["D"]),
    D=State(add=["C", "B"]),
)
NORELS = ss(A=State(), B=State(), C=State(), D=State())


@asynccontextmanager
async def pair(schema=RELS, *, handlers=None, push_interval=0.25, meter=False, **copts):
    """A source machine behind a mux, and one connected client (optionally metered)."""
    src = Machine(schema, id="src", handlers=handlers)
    async with serve(src, "127.0.0.1:0", push_interval=push_interval) as mux:
        streams: list[CountingStream] = []
        if meter:

            async def factory():
                streams.append(CountingStream(await open_tcp(mux.addr)))
                return streams[-1]

            copts["stream_factory"] = factory
        copts.setdefault("id", "c1")
        async with connect(mux.addr, **copts) as client:
            client.meter = streams
            yield src, mux, client, client.netmach


def traffic(client) -> int:
    return sum(s.total for s in client.meter)


# --- 1-8: basics, traffic and clocks ---------------------------------------------------------


@pytest.mark.trio
async def test_basic_add_records_the_client_as_source():
    seen = []

    class H:
        def FooState(self, e):
            seen.append((e.mutation.source, e.args))

    schema = ss(Foo=State(require=["Bar"]), Bar=State())
    with trio.fail_after(TIMEOUT):
        async with pair(schema, handlers=H()) as (src, mux, client, net):
            assert await net.add("Bar") == Result.EXECUTED
            assert await net.add("Foo", args={"msg": "hi"}) == Result.EXECUTED
            assert src.is_active("Foo") and net.is_active("Foo")
            assert seen == [(MutSource("c1"), {"msg": "hi"})]
            assert net.remote_id == "src" and net.id == "rnm-c1"
            assert not src.is_active("Exception")


@pytest.mark.trio
async def test_source_is_recorded_for_add_remove_and_set():
    seen = []

    class H:
        def AnyEnter(self, e):
            seen.append((e.mutation.type.name, e.mutation.source.machine_id))
            return True

    bar = Machine(ss(Msg=State(multi=True)), id="browser-bar")
    with trio.fail_after(TIMEOUT):
        async with pair(NORELS, handlers=H(), source=bar) as (src, mux, client, net):
            await net.add("A")
            await net.remove("A")
            await net.set(["B"])
            await net.add("C", source=MutSource("other", "tx1", 3))
    assert seen[:3] == [("ADD", "browser-bar"), ("REMOVE", "browser-bar"), ("SET", "browser-bar")]
    assert seen[3] == ("ADD", "other")


@pytest.mark.trio
async def test_multi_add_with_relations():
    with trio.fail_after(TIMEOUT):
        async with pair() as (src, mux, client, net):
            await net.add(["A", "C"])
            assert src.is_active("A", "C") and net.is_active("A", "C")
            assert net.clock() == src.clock()


@pytest.mark.trio
async def test_local_when_and_zero_pushes():
    with trio.fail_after(TIMEOUT):
        async with pair(meter=True) as (src, mux, client, net):
            released = trio.Event()

            async def waiter():
                await net.when("A")
                released.set()

            async with trio.open_nursery() as n:
                n.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                await net.add(["A", "C"])
                await released.wait()
            assert mux.servers[0].pushes == 0
            assert client.calls == 2  # hello + add
            assert traffic(client) < 400, traffic(client)


@pytest.mark.trio
async def test_many_adds_piggyback_on_responses():
    with trio.fail_after(TIMEOUT):
        async with pair(meter=True) as (src, mux, client, net):
            base = traffic(client)
            for _ in range(500):
                await net.add(["A", "C"])
            await net.add("D")
            await net.when("D")
            assert mux.servers[0].pushes == 0
            per_call = (traffic(client) - base) / 501
            assert per_call <= 40, per_call


@pytest.mark.trio
async def test_no_sync_adds_then_sync():
    with trio.fail_after(TIMEOUT):
        async with pair(meter=True, push_interval=None) as (src, mux, client, net):
            base = traffic(client)
            for _ in range(500):
                await net.add_ns(["A", "C"])
            await net.add_ns("D")
            assert not net.is_active("D")  # no pushes, no responses
            await client.sync()
            await net.when("D")
            assert net.clock() == src.clock()
            per_msg = (traffic(client) - base) / 501
            assert per_msg <= 20, per_msg


@pytest.mark.trio
async def test_instant_pushes_cost_the_same():
    with trio.fail_after(TIMEOUT):
        async with pair(meter=True, push_interval=0) as (src, mux, client, net):
            base = traffic(client)
            for _ in range(500):
                await net.add(["A", "C"])
            await net.add("D")
            assert mux.servers[0].pushes == 0
            assert (traffic(client) - base) / 501 <= 40


@pytest.mark.trio
async def test_many_states():
    extra = {f"S{i}": State() for i in range(100)}
    schema = ss(A=State(), B=State(), C=State(), D=State(), **extra)
    with trio.fail_after(TIMEOUT):
        async with pair(schema) as (src, mux, client, net):
            names = net.state_names
            await net.add("C")
            for i in range(5, 95):
                await net.remove(names[i - 3])
                await net.add(names[i])
            await net.add("D")
            assert client.calls == 183  # hello + 182 mutations
            assert net.clock() == src.clock()


@pytest.mark.trio
async def test_high_clocks_cost_no_more():
    async def run(high: bool) -> int:
        src_data = None
        async with pair(NORELS, meter=True) as (src, mux, client, net):
            if high:
                src_data = src.export()
            base = traffic(client)
            for _ in range(200):
                await net.add(["A", "C"])
                await net.remove(["A", "C"])
            await net.add("D")
            assert net.clock() == src.clock()
            return traffic(client) - base, src_data

    with trio.fail_after(TIMEOUT):
        low, _ = await run(False)
        # mock high clocks on a fresh source before connecting
        src = Machine(NORELS, id="src")
        data = src.export()
        data["time"] = [0, 1_000_000, 0, 1_000_000, 0, 0]
        src.import_data(data)
        async with serve(src, "127.0.0.1:0") as mux:
            streams = []

            async def factory():
                streams.append(CountingStream(await open_tcp(mux.addr)))
                return streams[-1]

            async with connect(mux.addr, id="c1", stream_factory=factory) as client:
                net = client.netmach
                assert net.tick("A") == 1_000_000
                base = streams[0].total
                for _ in range(200):
                    await net.add(["A", "C"])
                    await net.remove(["A", "C"])
                await net.add("D")
                assert net.tick("A") == 1_000_400
                high = streams[0].total - base
    assert high <= low * 1.1, (low, high)


# --- 9-12: timeouts and errors (reconnects: test_rpc_reconnect.py) ----------------------------


@pytest.mark.trio
async def test_call_timeout_raises_promptly(jump_clock):
    """A server that handshakes but never answers mutations: the call times out, no hang.

    On a MockClock (time jumps once every task has waited 0.1 s of real time for nothing), so
    the timeout is measured exactly, not against a loaded machine's scheduler."""

    async def silent_server(stream):
        conn = p.ServerConnection()
        src = Machine(NORELS, id="src")
        from machines.rpc.server import export_source

        while data := await stream.receive_some(65536):
            for ev in conn.receive_data(data):
                if isinstance(ev, p.HelloReceived):
                    conn.accept_hello(ev.seq, export_source(src))
            await stream.send_all(conn.data_to_send())

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            serve_tcp = partial(trio.serve_tcp, host="127.0.0.1")
            (listener,) = await n.start(serve_tcp, silent_server, 0)
            port = listener.socket.getsockname()[1]
            async with connect(f"127.0.0.1:{port}", id="c1", call_timeout=0.3) as client:
                t0 = trio.current_time()
                # the states are named in the message (formatted only now, not per call)
                with pytest.raises(RpcTimeout, match=r"mutation of \['A'\] got no answer in 0.3s"):
                    await client.netmach.add("A")
                assert 0.3 <= trio.current_time() - t0 < 0.5
                assert client.connected
            n.cancel_scope.cancel()


@pytest.mark.trio
async def test_unknown_state_fails_locally_without_a_call():
    with trio.fail_after(TIMEOUT):
        async with pair() as (src, mux, client, net):
            calls = client.calls
            with pytest.raises(ValueError, match="Nope is not defined for src"):
                await net.add("Nope")
            with pytest.raises(ValueError, match="Nope"):
                net.is_active("Nope")
            assert client.calls == calls


@pytest.mark.trio
async def test_args_that_cannot_travel_are_refused_locally():
    with trio.fail_after(TIMEOUT):
        async with pair(max_frame=1000) as (src, mux, client, net):
            with pytest.raises(ValueError, match="exceeds the limit"):
                await net.add("A", args={"blob": "x" * 2000})
            with pytest.raises(ValueError, match="cannot encode"):
                await net.add("A", args={"obj": object()})
            assert await net.add("D") == Result.EXECUTED  # the connection is fine


# --- 13-14: payloads and fan-out --------------------------------------------------------------


@pytest.mark.trio
async def test_payload_delivery_to_a_consumer():
    got = []

    class Consumer:
        def ServerPayloadState(self, e):
            got.append(e.args["payload"])

    consumer = Machine({"ServerPayload": State(multi=True)}, id="consumer", handlers=Consumer())
    holder = {}

    class Source:
        def CState(self, e):
            name = e.args["name"]
            holder["mux"].send_payload(e.mutation.source.machine_id, name, "Hello")
            e.machine.remove("C")

    with trio.fail_after(TIMEOUT):
        async with pair(NORELS, handlers=Source(), consumer=consumer) as (src, mux, client, net):
            holder["mux"] = mux
            await net.add("C", {"name": "TestPayload"})
            await consumer.when("ServerPayload")
            assert got[0].name == "TestPayload" and got[0].data == "Hello"
            assert got[0].source == "src" and got[0].token
            await net.when_not("C")
            with pytest.raises(ValueError, match="wrong destination: other != c1"):
                mux.servers[0].send_payload("x", 1, destination="other")


@pytest.mark.trio
async def test_mux_fans_out_to_three_clients():
    src = Machine(RELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0") as mux:
            async with (
                connect(mux.addr, id="c0") as c0,
                connect(mux.addr, id="c1") as c1,
                connect(mux.addr, id="c2") as c2,
            ):
                await mux.wait_clients(3)
                assert len(mux.servers) == 3
                await c0.netmach.add("C")
                with trio.fail_after(2):
                    for c in (c0, c1, c2):
                        await c.netmach.when("A")  # auto, pushed to the others
                assert mux.servers[0].pushes + mux.servers[1].pushes + mux.servers[2].pushes >= 2


# --- 15-18: selective sync --------------------------------------------------------------------


@pytest.mark.trio
async def test_partial_allowed_and_skipped():
    src = Machine(NORELS, id="src")
    src.add("C")
    src.remove("C")  # C ticked to 2 before connecting
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            opts = {"allowed": ["A", "B", "C"], "skipped": ["C"]}
            async with connect(mux.addr, id="c1", **opts) as client:
                net = client.netmach
                assert net.tick("C") == 0 and net.is_partial
                src.add("A")
                src.add(["B", "C"])
                src.add("D")
                await net.when("B")
                await client.sync()  # the full clock: every change the server made is in
                assert net.active_states == ["A", "B"]


@pytest.mark.trio
async def test_partial_infers_required_states():
    src = Machine(RELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            async with connect(mux.addr, id="c1", allowed=["A"]) as client:
                net = client.netmach
                src.add("C")  # A is auto
                await net.when("A")
                assert net.active_states == ["A", "C"]  # C inferred from A's require
                assert net.tick("C") == 0


@pytest.mark.trio
async def test_partial_no_schema():
    src = Machine(RELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            async with connect(mux.addr, id="c1", allowed=["C"], no_schema=True) as client:
                net = client.netmach
                assert net.state_names == ["C"]
                src.add("C")
                await net.when("C")
                assert net.active_states == ["C"]
                await net.remove("C")  # client-bound index maps back to the source's C
                assert not src.is_active("C")


@pytest.mark.trio
async def test_no_schema_all_states():
    src = Machine(RELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            async with connect(mux.addr, id="c1", no_schema=True) as client:
                net = client.netmach
                src.add("C")
                await net.when("A")
                assert net.active_states == ["A", "C"]


@pytest.mark.trio
async def test_shallow_clocks():
    src = Machine(NORELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            async with connect(mux.addr, id="c1", shallow=True) as client:
                net = client.netmach
                for _ in range(3):
                    src.add("A")
                    src.remove("A")
                src.add("A")
                await net.when("A")
                assert src.tick("A") == 7 and net.tick("A") % 2 == 1
                assert client.conn.syncs == 0  # checksums agreed all along


# --- 20-28: relations through the mirror ------------------------------------------------------


def _schema(**rels):
    return ss(**{n: rels.get(n, State()) for n in "ABCD"})


RELATION_CASES = [
    # (schema, initial active on the source, [(op, states, expected active, expected result)]);
    # result None: the core's call, only the mirror matters here
    (NORELS, [], [("add", ["A"], ["A"], 0)]),
    (NORELS, [], [("add", ["A"], ["A"], 0), ("add", ["B"], ["A", "B"], 0)]),
    (NORELS, ["A"], [("set", ["B"], ["B"], 0), ("add", ["A"], ["A", "B"], 0)]),
    (NORELS, ["B", "C"], [("remove", ["C"], ["B"], 0)]),
    (_schema(C=State(remove=["D"])), ["D"], [("add", ["C"], ["C"], 0)]),
    (_schema(C=State(remove=["D"])), ["D"], [("set", ["C", "D"], ["D"], 1)]),
    (
        _schema(C=State(remove=["D"]), D=State(remove=["C"])),
        ["D"],
        [("set", ["C"], ["C"], 0), ("set", ["D"], ["D"], 0), ("add", ["C"], ["C"], 0)],
    ),
    (
        _schema(A=State(remove=["D"]), C=State(add=["D"])),
        [],
        [("set", ["C"], ["C", "D"], 0), ("set", ["A", "C"], ["A", "C"], 0)],
    ),
    (_schema(A=State(require=["D"])), [], [("set", ["C", "D"], ["C", "D"], 0)]),
    (_schema(C=State(require=["D"])), ["A"], [("set", ["C", "A"], ["A"], None)]),
    (_schema(B=State(auto=True, require=["A"])), [], [("add", ["A"], ["A", "B"], 0)]),
    (
        _schema(C=State(auto=True, require=["B"]), D=State(auto=True, require=["B"])),
        ["A"],
        [("add", ["A"], ["A"], 0)],
    ),
]


@pytest.mark.trio
@pytest.mark.parametrize("schema, initial, ops", RELATION_CASES)
async def test_relations_through_the_netmach(schema, initial, ops):
    with trio.fail_after(TIMEOUT):
        async with pair(schema) as (src, mux, client, net):
            if initial:
                src.set(initial)
            await client.sync()
            for op, states, active, result in ops:
                res = await getattr(net, op)(states)
                assert result is None or int(res) == result, (op, states)
                assert net.active_states == active == src.active_states


@pytest.mark.trio
async def test_regressions_remove_add_chains():
    schema = ss(
        A=State(remove=["B"]),
        B=State(remove=["A"]),
        Z=State(add=["B"]),
        Wet=State(require=["Water"]),
        Dry=State(remove=["Wet"]),
        Water=State(add=["Wet"], remove=["Dry"]),
    )
    with trio.fail_after(TIMEOUT):
        async with pair(schema) as (src, mux, client, net):
            await net.set("Z")
            assert set(net.active_states) == {"Z", "B"}
            await net.set("Dry")
            await net.set("Water")
            assert set(net.active_states) == {"Water", "Wet"}


# --- 29-36: the read API of the mirror --------------------------------------------------------


@pytest.mark.trio
async def test_time_and_clock():
    schema = ss(A=State(), B=State(multi=True), C=State(), D=State())
    steps = [
        ("add", ["A", "B"], [1, 1, 0, 0]),
        ("add", ["A", "B"], [1, 3, 0, 0]),
        ("add", ["A", "B", "C"], [1, 5, 1, 0]),
        ("set", ["D"], [2, 6, 2, 1]),
        ("add", ["D", "C"], [2, 6, 3, 1]),
        ("remove", ["B", "C"], [2, 6, 4, 1]),
        ("add", ["A", "B"], [3, 7, 4, 1]),
        ("add", ["C"], [3, 7, 5, 1]),
    ]
    with trio.fail_after(TIMEOUT):
        async with pair(schema) as (src, mux, client, net):
            prev = net.time(["A", "B", "C", "D"])
            for op, states, want in steps:
                await getattr(net, op)(states)
                now = net.time(["A", "B", "C", "D"])
                assert now == want
                assert all(a >= b for a, b in zip(now, prev, strict=True)) and now != prev
                prev = now
            assert net.clock()["A"] == net.tick("A") == 3
            assert net.clock() == src.clock()


@pytest.mark.trio
async def test_when_and_when_not():
    with trio.fail_after(TIMEOUT):
        async with pair(NORELS) as (src, mux, client, net):
            done = []

            async def wait(fn, *states):
                await fn(*states)
                done.append(fn.__name__)

            async with trio.open_nursery() as n:
                n.start_soon(wait, net.when, "A", "B")
                n.start_soon(wait, net.when, "A", "B")
                await trio.testing.wait_all_tasks_blocked()
                await net.add(["A", "B"])
            assert done == ["when", "when"]
            await net.when("A")  # already active: at once
            async with trio.open_nursery() as n:
                n.start_soon(wait, net.when_not, "A", "B")
                n.start_soon(wait, net.when_not, "A", "B")
                await trio.testing.wait_all_tasks_blocked()
                await net.remove(["A", "B"])
            assert done[2:] == ["when_not", "when_not"]
            await net.when_not("B")


@pytest.mark.trio
async def test_when_time_query_and_queue():
    with trio.fail_after(TIMEOUT):
        async with pair(NORELS) as (src, mux, client, net):
            await net.add(["A", "B"])
            hit = trio.Event()

            async def wait_time():
                await net.when_time(["A", "B"], [5, 2])
                hit.set()

            async with trio.open_nursery() as n:
                n.start_soon(wait_time)
                await trio.testing.wait_all_tasks_blocked()
                await net.remove(["A", "B"])
                await net.add(["A", "B"])
                await trio.testing.wait_all_tasks_blocked()
                assert not hit.is_set()  # (3, 3)
                await net.remove("A")
                await net.add("A")
                await hit.wait()  # (5, 3)
            q = net.queue_tick
            await net.when_query(lambda c: c["A"] >= 5)
            await net.add("C")
            await net.when_queue(q + 1)
            assert net.queue_tick == src.queue_tick


@pytest.mark.trio
async def test_is_not_any_switch_and_strings():
    with trio.fail_after(TIMEOUT):
        async with pair(NORELS) as (src, mux, client, net):
            await net.add(["A", "B"])
            assert net.is_active("A", "B") and not net.is_active("A", "B", "C")
            assert not net.not_active("A", "B") and not net.not_active("A", "B", "C")
            assert net.not_active("D") and net.any_active(["A", "B"], ["C"])
            assert net.switch(["A", "B"]) == "A" and net.switch(["C", "B"]) == "B"
            assert net.switch(["C", "D"]) == ""
            assert str(net) == "(A:1 B:1)"
            assert net.string_all() == "(A:1 B:1) [Exception:0 C:0 D:0 ErrOnClient:0]"
            assert set(net.state_names) >= {"A", "B", "C", "D"}
            assert net.schema["A"] == State()


@pytest.mark.trio
async def test_nested_source_mutations():
    class H:
        def AState(self, e):
            for _ in range(3):
                e.machine.add("B")
                e.machine.remove("B")

    with trio.fail_after(TIMEOUT):
        async with pair(NORELS, handlers=H(), push_interval=0) as (src, mux, client, net):
            await net.add("A")  # the handler's queued mutations ran before the answer
            assert net.tick("B") >= 2 and net.active_states == ["A"] and net.clock() == src.clock()


@pytest.mark.trio
async def test_stale_snapshots():
    with trio.fail_after(TIMEOUT):
        async with pair(NORELS) as (src, mux, client, net):
            clock, time = net.clock(), net.time()
            assert net.is_clock(clock) and net.is_time(time)
            await net.add(["A", "B"])
            assert not net.is_clock(clock) and not net.is_time(time)


@pytest.mark.trio
async def test_pipe_netmach_changes_into_a_local_machine():
    local = Machine(NORELS, id="local")
    with trio.fail_after(TIMEOUT):
        async with pair(NORELS, push_interval=0) as (src, mux, client, net):
            local.set(net.active_states)
            net.on_change(lambda mach, before, after: local.set(mach.active_states))
            src.add("A")
            src.add("B")
            with trio.fail_after(1):
                await local.when(["A", "B"])


@pytest.mark.trio
async def test_final_handlers_and_tracer_on_the_netmach():
    calls = []

    class H:
        def AState(self, e):
            calls.append(("AState", e.machine.id))

        def AEnd(self, e):
            calls.append(("AEnd", e.machine.id))

    with trio.fail_after(TIMEOUT):
        async with pair(NORELS, push_interval=0) as (src, mux, client, net):
            net.handlers_bind(H())
            src.add("A")
            await net.when("A")
            src.remove("A")
            await net.when_not("A")
            assert calls == [("AState", "rnm-c1"), ("AEnd", "rnm-c1")]


# --- extras: access, versions, schema changes, bye --------------------------------------------


@pytest.mark.trio
async def test_allow_id_rejects_other_clients():
    src = Machine(NORELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0", allow_id="good") as mux:
            with pytest.raises(RemoteError, match="no access: bad != good"):
                async with connect(mux.addr, id="bad"):
                    pass
            async with connect(mux.addr, id="good") as client:
                assert client.connected


@pytest.mark.trio
async def test_version_mismatch_is_rejected_clearly(monkeypatch):
    src = Machine(NORELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0") as mux:
            monkeypatch.setattr(p.ClientConnection, "version", 99)
            with pytest.raises(VersionMismatch, match="client speaks 99, server speaks"):
                async with connect(mux.addr, id="c1"):
                    pass


@pytest.mark.trio
async def test_schema_change_updates_the_mirror():
    src = Machine(NORELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0") as mux:
            async with connect(mux.addr, id="c1") as client:
                net = client.netmach
                src.set_schema(dict(NORELS, E=State(multi=True)))
                src.add("E")
                await net.when_query(lambda clock: "E" in clock)
                await net.when("E")
                assert "E" in net.state_names and net.schema["E"].multi
                assert await net.remove("E") == Result.EXECUTED


@pytest.mark.trio
async def test_client_close_says_bye_and_server_ends():
    src = Machine(NORELS, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0") as mux:
            async with connect(mux.addr, id="c1"):
                await mux.wait_clients(1)
                server = mux.servers[0]
            await server.closed.wait()
            assert server.close_reason == "client said bye"
            await trio.testing.wait_all_tasks_blocked()
            assert not mux.servers
            assert src.tracers == []  # the tracer is detached


@pytest.mark.trio
async def test_concurrent_calls_from_many_tasks():
    schema = ss(**{f"S{i}": State() for i in range(20)})
    with trio.fail_after(TIMEOUT):
        async with pair(schema, push_interval=0) as (src, mux, client, net):
            async with trio.open_nursery() as n:
                for i in range(20):
                    n.start_soon(net.add, f"S{i}")
            assert all(net.is_active(f"S{i}") for i in range(20))
            assert net.clock() == src.clock() and client.conn.syncs == 0


@pytest.mark.trio
async def test_any_trio_stream_works_in_memory():
    src = Machine(NORELS, id="src")
    from machines.rpc.server import Server

    a, b = trio.testing.memory_stream_pair()
    server = Server(src)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            n.start_soon(server.serve, a)
            async with connect(stream=b, id="mem") as client:
                assert await client.netmach.add("A") == Result.EXECUTED
                assert src.is_active("A")
            await server.closed.wait()
        with pytest.raises(RpcNotConnected):
            await client.netmach.add("B")


@pytest.mark.trio
async def test_handshake_logs_the_link_for_the_diagrams():
    lines = []
    src = Machine(NORELS, id="src", log_level=3, logger=lambda level, text: lines.append(text))
    bar = Machine(NORELS, id="browser-bar")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0") as mux:
            async with connect(mux.addr, id="c1", source=bar):
                await mux.wait_clients(1)
    assert "[rpc:connected] browser-bar" in lines


@pytest.mark.trio
async def test_rpc_parts_have_lifecycle_machines():
    src = Machine(NORELS, id="src")
    seen = {}

    class Args:
        def HandshakeDoneState(self, e):
            seen["id"] = e.args["id"]

    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0") as mux:
            assert mux.mach.id == "rm-src" and mux.mach.is_active("Ready")
            async with connect(mux.addr, id="c1") as client:
                await mux.wait_clients(1)
                server = mux.servers[0]
                assert client.mach.id == "rc-c1" and "rpc-client" in client.mach.tags
                assert client.mach.is_active("Ready", "Connected", "HandshakeDone")
                assert server.mach.id == "rs-src-1" and server.mach.tags == ["rpc-server"]
                assert server.mach.parent_id == "rm-src"
                assert server.mach.is_active("Ready", "ClientConnected")
                assert mux.mach.is_active("HasClients")
                server.mach.handlers_bind(Args())
                server.mach.remove("HandshakeDone")
                server.mach.add("HandshakeDone", {"id": "rc-c1"})
                assert seen["id"] == "rc-c1"
            await server.closed.wait()
            assert server.mach.is_disposed
            assert not client.mach.is_active("Ready")
            await trio.testing.wait_all_tasks_blocked()
            assert not mux.mach.is_active("HasClients")
        assert mux.mach.is_disposed


@pytest.mark.trio
async def test_source_mutated_from_another_thread_is_pushed():
    with trio.fail_after(TIMEOUT):
        async with pair(NORELS, push_interval=0) as (src, mux, client, net):
            await trio.to_thread.run_sync(src.add, "B")
            await net.when("B")
            assert net.clock() == src.clock()


@pytest.mark.trio
async def test_per_mutation_sync():
    """Scenario 19: one NetMach transition per source mutation, even when pushes batch them."""
    src = Machine(RELS, id="src")
    txs = []

    class Tracer:
        def transition_end(self, tx):
            txs.append(tx.mutation)

    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0", push_interval=1.0) as mux:
            async with connect(mux.addr, id="c1", sync_mutations=True) as client:
                net = client.netmach
                net.tracer_bind(Tracer())
                await mux.wait_clients(1)
                src.add("B")  # adds C, then A is auto: 2 transitions
                src.add("D")
                with trio.fail_after(1):
                    mux.servers[0].push_now()
                    await net.when("D")
                assert net.clock() == src.clock() and client.conn.syncs == 0
                assert len(txs) == 3, txs
                assert txs[0] == (0, ["B"]) and txs[2] == (0, ["D"])
                # the client's own mutations work the same way
                assert await net.remove("D") == Result.EXECUTED
                assert net.clock() == src.clock()


@pytest.mark.trio
async def test_inspect_matches_the_source():
    """Scenario 33: the mirror's inspect reads like the source's, and follows new ticks."""
    with trio.fail_after(TIMEOUT):
        async with pair(RELS) as (src, mux, client, net):
            await net.add(["A", "C"])
            assert net.inspect() == src.inspect()
            assert "|Require  C" in net.inspect(["A"]) and "|Auto     true" in net.inspect(["A"])
            await net.remove("C")
            await net.add("B")
            await net.add("D")
            assert net.inspect() == src.inspect()
