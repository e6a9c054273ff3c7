"""aRPC over a WebSocket (trio-websocket on loopback): the transport the relay and browser use."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from trio_websocket import serve_websocket

from machines import Machine, Result, State
from machines.rpc import connect
from machines.rpc.mux import Mux
from machines.rpc.transport import WebSocketStream, open_websocket_stream

SCHEMA = {"Exception": State(multi=True), "A": State(), "B": State(multi=True)}


@pytest.mark.trio
async def test_mux_serves_a_client_over_websocket():
    src = Machine(SCHEMA, id="server-foo")
    mux = Mux(src, push_interval=0)

    async def handler(request):
        ws = await request.accept()
        await mux.handle_stream(WebSocketStream(ws), "ws")

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            server = await n.start(partial(serve_websocket, handler, "127.0.0.1", 0, None))
            url = f"ws://127.0.0.1:{server.port}/dial/browser-foo/localhost:14000"
            factory = partial(open_websocket_stream, n, url)
            async with connect(id="browser-foo", stream_factory=factory) as client:
                net = client.netmach
                assert await net.add("A", {"msg": "over ws"}) == Result.EXECUTED
                assert src.is_active("A")
                for _ in range(3):
                    src.add("B")
                await net.when_time(["B"], [5])
                assert net.clock() == src.clock() and client.conn.syncs == 0
            await mux.wait_idle()
            n.cancel_scope.cancel()
