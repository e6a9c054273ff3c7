"""The callback-driven endpoints (what the browser uses): under asyncio, and against the trio
drivers over real sockets, both directions."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
import trio

from machines import Machine, MutSource, Result, State
from machines.rpc import RpcConnectionLost, RpcNotConnected, RpcTimeout, connect, serve
from machines.rpc.client import Client
from machines.rpc.endpoint import ClientEndpoint, ServerEndpoint
from machines.rpc.server import Server
from machines.rpc.transport import open_tcp

SCHEMA = {
    "Exception": State(multi=True),
    "A": State(auto=True, require=["C"]),
    "B": State(multi=True),
    "C": State(),
    "ErrOnClient": State(require=["Exception"]),
}


def asyncio_pair(src, **server_opts):
    """Server and client endpoints wired back to back through the running asyncio loop."""
    loop = asyncio.get_running_loop()
    box = {}
    server = ServerEndpoint(src, lambda b: loop.call_soon(box["c"].receive, b), **server_opts)
    client = ClientEndpoint("bar", lambda b: loop.call_soon(server.receive, b), source="browser")
    box["c"] = client
    server.connection_made()
    client.connection_made()
    return server, client


def test_endpoints_under_asyncio():
    seen = []

    class H:
        def CState(self, e):
            seen.append(e.mutation.source)

    async def main():
        src = Machine(SCHEMA, id="foo", handlers=H())
        server, client = asyncio_pair(src, push_interval=0.01)
        await client.wait_connected(2)
        net = client.netmach
        assert net.remote_id == "foo" and net.state_names == src.state_names
        assert await net.add("C") == Result.EXECUTED
        assert net.is_active("A", "C")  # auto A came back in the response's diff
        assert seen == [MutSource("browser")]
        src.add("B")  # pushed
        await asyncio.wait_for(net.when("B"), 2)
        src.add("B")
        src.add("B")  # batched into one push
        await asyncio.wait_for(net.when_time(["B"], [5]), 2)
        assert net.clock() == src.clock() and client.conn.syncs == 0
        got = []
        client.on_payload.append(got.append)
        server.send_payload("p", {"x": 1})
        await asyncio.sleep(0)
        assert got[0].data == {"x": 1} and got[0].source == "foo"
        # a call in flight when the transport closes fails at once
        task = asyncio.ensure_future(net.remove("C"))
        await asyncio.sleep(0)
        client.connection_lost("ws closed")
        with pytest.raises(RpcConnectionLost, match="ws closed"):
            await task
        with pytest.raises(RpcNotConnected, match="not connected"):
            await net.add("C")
        return server.pushes

    assert asyncio.run(main()) == 2


def test_client_endpoint_call_timeout_under_asyncio():
    async def main():
        src = Machine(SCHEMA, id="foo")
        loop = asyncio.get_running_loop()
        box = {}
        server = ServerEndpoint(src, lambda b: loop.call_soon(box["c"].receive, b))
        drop = {"on": False}

        def to_server(b):
            if not drop["on"]:
                loop.call_soon(server.receive, b)

        client = box["c"] = ClientEndpoint("bar", to_server, call_timeout=0.2)
        server.connection_made()
        client.connection_made()
        await client.wait_connected(2)
        drop["on"] = True  # the server never hears of the next call
        with pytest.raises(RpcTimeout, match=r"mutation of \['C'\] got no answer in 0.2s"):
            await client.netmach.add("C")

    asyncio.run(main())


def test_client_options_are_checked_alike_for_every_client():
    """The endpoint and the trio Client take one set of options, and refuse a misspelt one."""
    with pytest.raises(TypeError, match="unknown client option.*alowed"):
        ClientEndpoint("bar", lambda b: None, alowed=["A"])
    with pytest.raises(TypeError, match="unknown client option.*alowed"):
        Client("127.0.0.1:1", id="bar", alowed=["A"])


def test_concurrent_syncs_share_one_request_under_asyncio():
    async def main():
        src = Machine(SCHEMA, id="foo")
        server, client = asyncio_pair(src, push_interval=None)
        await client.wait_connected(2)
        src.add("C")  # no pushes: only a sync brings it
        assert not client.netmach.is_active("C")
        await asyncio.wait_for(asyncio.gather(client.sync(), client.sync()), 2)
        assert client.netmach.is_active("A", "C") and client.conn.syncs == 1

    asyncio.run(main())


@pytest.mark.trio
async def test_client_endpoint_against_the_trio_mux_over_tcp():
    src = Machine(SCHEMA, id="foo")
    with trio.fail_after(10):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            stream = await open_tcp(mux.addr)
            send_ch, recv_ch = trio.open_memory_channel(float("inf"))
            client = ClientEndpoint("browser-foo", send_ch.send_nowait, source="browser-bar")

            async def writer():
                async for data in recv_ch:
                    await stream.send_all(data)

            async def reader():
                while data := await stream.receive_some(65536):
                    client.receive(data)
                client.connection_lost("server closed")

            async with trio.open_nursery() as n:
                n.start_soon(writer)
                n.start_soon(reader)
                client.connection_made()
                await client.wait_connected(5)
                net = client.netmach
                await net.add("C")
                assert src.is_active("A", "C") and net.is_active("A", "C")
                src.add("B")
                await net.when("B")
                assert net.clock() == src.clock()
                n.cancel_scope.cancel()
            await stream.aclose()


@pytest.mark.trio
async def test_server_endpoint_serves_a_trio_client():
    """The browser's own machine exposed through a ServerEndpoint, mirrored by a trio Client."""
    bar = Machine(SCHEMA, id="browser-bar")
    a, b = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            send_ch, recv_ch = trio.open_memory_channel(float("inf"))

            def call_later(delay, fn):
                async def later():
                    await trio.sleep(delay)
                    fn()

                n.start_soon(later)

            server = ServerEndpoint(
                bar, send_ch.send_nowait, push_interval=0, call_later=call_later
            )

            async def pump():
                async def writer():
                    async for data in recv_ch:
                        await a.send_all(data)

                n.start_soon(writer)
                server.connection_made()
                while data := await a.receive_some(65536):
                    server.receive(data)
                server.connection_lost("closed")

            n.start_soon(pump)
            async with connect(stream=b, id="server-bar") as client:
                net = client.netmach
                assert net.remote_id == "browser-bar"
                await net.add("C", source=MutSource("server-foo"))
                bar.add("B")
                await net.when("B")
                assert net.clock() == bar.clock()
            n.cancel_scope.cancel()


@pytest.mark.trio
async def test_trio_server_and_endpoint_client_agree_on_bytes():
    """Same wire format both ways: a trio Server on one end of a memory stream pair."""
    src = Machine(SCHEMA, id="foo")
    a, b = trio.testing.memory_stream_pair()
    server = Server(src, push_interval=0)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(partial(server.serve, a))
            client = ClientEndpoint("c", lambda d: n.start_soon(b.send_all, d))

            async def reader():
                while data := await b.receive_some(65536):
                    client.receive(data)

            n.start_soon(reader)
            client.connection_made()
            await client.wait_connected(5)
            assert await client.netmach.set(["C"]) == Result.EXECUTED
            assert client.netmach.active_states == ["A", "C"]
            n.cancel_scope.cancel()


class _AnswersNothing:
    """A source whose mutations run but return what no answer can carry (a bug of the
    server's side, met while acting on the client's request)."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine

    def __getattr__(self, name: str):
        return getattr(self._machine, name)

    def add(self, states, args=None, **kw):
        self._machine.add(states, args, **kw)
        return object()  # int() of it fails in the server, after the source's call


@pytest.mark.trio
async def test_a_server_that_ends_the_link_on_a_request_says_why():
    """When acting on a request fails, the server ends the link; the client's call in flight
    fails with the server's reason, not a bare "server closed the connection"."""
    src = Machine(SCHEMA, id="foo")
    a, b = trio.testing.memory_stream_pair()
    server = Server(_AnswersNothing(src), push_interval=0)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(partial(server.serve, a))
            async with connect(stream=b, id="repl-1") as client:
                with pytest.raises(RpcConnectionLost) as lost:
                    await client.netmach.add("C")
            n.cancel_scope.cancel()
    assert src.is_active("C")  # the mutation ran; its answer could not be made
    assert "server closed the connection: cannot handle the input: TypeError" in str(lost.value)
