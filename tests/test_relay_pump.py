"""Tunnels whose bytes a worker thread pumps (relay.pump): the WebSocket rules still hold there
(pings answered, fragments joined, 1009 for an oversized message, 1002 for a bad frame, the
peer's close ends the TCP side after its last bytes), and the tunnel's end reason is the
right one."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from relay import RelayConfig, open_relay

TIMEOUT = 20


@pytest.fixture(params=["epoll", "poll"])
def pump_select(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The pump with epoll, and as on systems without it (macOS, BSD): plain poll(2), same
    flags."""
    if request.param == "poll":
        import select
        import types

        import relay.pump

        portable = types.SimpleNamespace(**{k: v for k, v in vars(select).items() if k != "epoll"})
        monkeypatch.setattr(relay.pump, "select", portable)
    return request.param


async def ws_open(url: str, **kwargs: object):
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("legacy", True)
    return await trio.to_thread.run_sync(partial(connect, url, **kwargs))


def config(**kwargs: object) -> RelayConfig:
    kwargs.setdefault("listen_addr", "127.0.0.1:0")
    kwargs.setdefault("allow", ("127.0.0.1:*",))
    return RelayConfig(**kwargs)


async def close_of(conn) -> tuple[int | None, str]:
    def run() -> tuple[int | None, str]:
        try:
            while True:
                conn.recv(timeout=5)
        except ConnectionClosed:
            pass
        rcvd = conn.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    return await trio.to_thread.run_sync(run)


@asynccontextmanager
async def tcp_peer() -> AsyncIterator[tuple[int, trio.MemoryReceiveChannel]]:
    """A TCP server that echoes, and reports each connection's bytes once it ends."""
    send, receive = trio.open_memory_channel[bytes](10)

    async def serve(stream: trio.SocketStream) -> None:
        got = b""
        async with stream:
            try:
                while data := await stream.receive_some():
                    got += data
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass  # the relay closed with our echo unread: a reset
        await send.send(got)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1], receive
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_pings_fragments_and_the_peers_close_reach_the_tcp_side(pump_select: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with tcp_peer() as (port, ended), open_relay(config()) as relay:
            conn = await ws_open(f"ws://{relay.addr}/dial/p/127.0.0.1:{port}")

            def exchange() -> bytes:
                assert conn.ping(b"are you there").wait(5)  # the pong came back
                conn.send([b"frag", b"ment", b"ed"])  # one message in three frames
                data = b""
                while len(data) < 10:
                    data += conn.recv(timeout=5)
                conn.send(b" and last")  # sent right before the close: still delivered
                conn.close(4000, "bye")
                return data

            assert await trio.to_thread.run_sync(exchange) == b"fragmented"
            assert await ended.receive() == b"fragmented and last"
            assert conn.close_code == 4000  # the relay echoed the close frame
            await relay.wait_idle()


@pytest.mark.trio
async def test_oversized_message_and_bad_frame_close_the_pumped_tunnel(caplog) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    with trio.fail_after(TIMEOUT):
        async with tcp_peer() as (port, ended), open_relay(config(max_message=65536)) as relay:
            url = f"ws://{relay.addr}/dial/big/127.0.0.1:{port}"
            conn = await ws_open(url, max_size=None)

            def send_big() -> None:
                conn.send(b"x" * 65536)  # at the limit: fine
                got = b""
                while len(got) < 65536:
                    got += conn.recv(timeout=5)
                conn.send(b"x" * 65537)

            await trio.to_thread.run_sync(send_big)
            assert (await close_of(conn))[0] == 1009
            assert await ended.receive() == b"x" * 65536
            # A frame with reserved bits set is a protocol error: 1002.
            conn = await ws_open(url)
            conn.socket.sendall(b"\xf2\x80\x00\x00\x00\x00")
            assert (await close_of(conn))[0] == 1002
            assert await ended.receive() == b""
            # The relay keeps serving.
            conn = await ws_open(url)
            await trio.to_thread.run_sync(conn.send, b"again")
            assert await trio.to_thread.run_sync(partial(conn.recv, timeout=5)) == b"again"
            await trio.to_thread.run_sync(conn.close)
            assert await ended.receive() == b"again"
        assert "closed: 1009" in caplog.text and "closed: 1002" in caplog.text


@pytest.mark.trio
async def test_a_dropped_websocket_and_a_leaving_tcp_peer_end_the_tunnel(pump_select: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with tcp_peer() as (port, ended), open_relay(config()) as relay:
            conn = await ws_open(f"ws://{relay.addr}/dial/d/127.0.0.1:{port}")
            conn.socket.shutdown(socket.SHUT_RDWR)  # no close frame: 1006 for the relay
            assert await ended.receive() == b""
            conn.socket.close()
            # The TCP peer leaving closes the WebSocket with 1000.
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    partial(trio.serve_tcp, trio.SocketStream.aclose, 0, host="127.0.0.1")
                )
                closing = listeners[0].socket.getsockname()[1]
                conn = await ws_open(f"ws://{relay.addr}/dial/c/127.0.0.1:{closing}")
                assert await close_of(conn) == (1000, "tcp peer closed")
                nursery.cancel_scope.cancel()
