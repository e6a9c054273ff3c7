"""The relay's WebSocket and HTTP layer: what its own driver (over the sans-I/O `websockets`
protocol) guarantees beyond the tunnel scenarios: no compression, the peer's real close code,
control frames, fragments, malformed requests, and a prompt shutdown whatever the client does."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio
from websockets.sync.client import connect

from relay import RelayConfig, TunnelRequest, WebSocketStream, open_relay

TIMEOUT = 20


def _connect(url: str, **kwargs: object):
    kwargs.setdefault("open_timeout", 5)
    return connect(url, legacy=True, **kwargs)


async def ws_open(url: str, **kwargs: object):
    return await trio.to_thread.run_sync(partial(_connect, url, **kwargs))


def config(**kwargs: object) -> RelayConfig:
    kwargs.setdefault("listen_addr", "127.0.0.1:0")
    kwargs.setdefault("allow", ("127.0.0.1:*",))
    return RelayConfig(**kwargs)


async def echo(stream: WebSocketStream, request: TunnelRequest) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


def raw_exchange(addr: str, request: bytes) -> bytes:
    """Send raw bytes to the relay's HTTP port; everything it answers until it closes."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.trio
async def test_compression_is_never_negotiated() -> None:
    """Clients offer permessage-deflate by default; the relay declines it (CPU, and inflated
    frames would slip past the message size limit)."""
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            relay.add_matcher("dial", "^m$", echo)
            conn = await ws_open(f"ws://{relay.addr}/dial/m/x:1", compression="deflate")
            assert "permessage-deflate" in conn.request.headers["Sec-WebSocket-Extensions"]
            assert "Sec-WebSocket-Extensions" not in conn.response.headers
            assert conn.protocol.extensions == []

            def exchange() -> bytes:
                conn.send(b"a" * 10000)
                return conn.recv(timeout=5)

            assert await trio.to_thread.run_sync(exchange) == b"a" * 10000
            await trio.to_thread.run_sync(conn.close)


@pytest.mark.trio
async def test_handler_sees_the_peers_close_code() -> None:
    seen: list[tuple[int | None, str]] = []
    done = trio.Event()

    async def record(stream: WebSocketStream, request: TunnelRequest) -> None:
        while await stream.receive_some():
            pass
        seen.append((stream.peer_close_code, stream.peer_close_reason))
        done.set()

    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            relay.add_matcher("dial", "^m$", record)
            conn = await ws_open(f"ws://{relay.addr}/dial/m/x:1")
            await trio.to_thread.run_sync(partial(conn.close, 4000, "bye"))
            await done.wait()
            assert seen == [(4000, "bye")]
            # A connection that just drops reads as end of stream too, as 1006.
            done = trio.Event()
            conn = await ws_open(f"ws://{relay.addr}/dial/m/x:1")
            conn.socket.shutdown(socket.SHUT_RDWR)
            await done.wait()
            assert seen[1] == (1006, "")
            conn.socket.close()


@pytest.mark.trio
async def test_pings_are_answered_and_fragments_concatenated() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            relay.add_matcher("dial", "^m$", echo)
            conn = await ws_open(f"ws://{relay.addr}/dial/m/x:1")

            def exchange() -> bytes:
                assert conn.ping(b"are you there").wait(5)  # the pong came back
                conn.send([b"frag", b"ment", b"ed"])  # one message in three frames
                data = b""
                while len(data) < 10:
                    data += conn.recv(timeout=5)
                return data

            assert await trio.to_thread.run_sync(exchange) == b"fragmented"
            await trio.to_thread.run_sync(conn.close)


@pytest.mark.trio
async def test_malformed_requests_get_a_400_and_the_relay_keeps_serving() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            relay.add_matcher("dial", "^m$", echo)
            answer = await trio.to_thread.run_sync(raw_exchange, relay.addr, b"NONSENSE\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert b"bad HTTP request" in answer
            # An upgrade without a key: refused by the handshake, no tunnel opened.
            upgrade = (
                b"GET /dial/m/x:1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            answer = await trio.to_thread.run_sync(raw_exchange, relay.addr, upgrade)
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert b"Sec-WebSocket-Key" in answer
            assert relay.tunnels == []
            # A client that connects and says nothing is simply closed.
            assert await trio.to_thread.run_sync(raw_exchange, relay.addr, b"") == b""
            conn = await ws_open(f"ws://{relay.addr}/dial/m/x:1")
            await trio.to_thread.run_sync(conn.close)


@pytest.mark.trio
async def test_malformed_subprotocol_header_is_a_400() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            relay.add_matcher("dial", "^m$", echo)
            bad = (
                b"GET /dial/m/x:1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Protocol: a b\r\n\r\n"
            )
            answer = await trio.to_thread.run_sync(raw_exchange, relay.addr, bad)
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert b"bad WebSocket handshake" in answer
            assert relay.tunnels == []


@pytest.mark.trio
async def test_shutdown_is_prompt_with_a_client_that_stopped_reading() -> None:
    """The relay's writes are interruptible: leaving ``open_relay`` while a tunnel is stuck
    writing to a client that reads nothing takes seconds, not forever."""
    sent = [0]

    async def flood(stream: trio.SocketStream) -> None:
        block = b"x" * (1 << 16)
        try:
            while True:
                await stream.send_all(block)
                sent[0] += len(block)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, flood, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with open_relay(config()) as relay:
                # No pings, a one-message queue: like a frozen tab, it reads nothing more.
                conn = await ws_open(
                    f"ws://{relay.addr}/dial/d/127.0.0.1:{port}", ping_interval=None, max_queue=1
                )
                last = -1
                while sent[0] != last:  # until the relay stops taking more: its write is stuck
                    last = sent[0]
                    await trio.sleep(0.5)
                assert last > 0
                started = trio.current_time()
            elapsed = trio.current_time() - started
            print(f"relay closed {elapsed:.2f} s after leaving its block")
            assert elapsed < 4, elapsed
            relay_port = int(relay.addr.rsplit(":", 1)[1])
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", relay_port)) != 0
            nursery.cancel_scope.cancel()
        conn.close_timeout = 0.1
        await trio.to_thread.run_sync(conn.close)


@pytest.mark.trio
async def test_another_client_implementation_interoperates() -> None:
    """trio-websocket (wsproto underneath, the aRPC transport's client) through a dial tunnel
    to TCP: bytes both ways, then its close code reaches the relay and the TCP side ends."""
    from trio_websocket import open_websocket_url

    tcp_closed = trio.Event()

    async def tcp_echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)
        tcp_closed.set()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, tcp_echo, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with open_relay(config()) as relay:
                url = f"ws://{relay.addr}/dial/m/127.0.0.1:{port}"
                async with open_websocket_url(url) as ws:
                    for size in (1, 125, 126, 65535, 65536, 300_000):
                        blob = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
                        await ws.send_message(blob)
                        got = b""
                        while len(got) < size:
                            got += await ws.get_message()
                        assert got == blob, size
                    await ws.aclose(code=4001, reason="done")
                await tcp_closed.wait()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_many_tunnels_at_once_stay_separate() -> None:
    """30 tunnels echo different data at the same time; each gets exactly its own back."""

    async def tcp_echo(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                while data := await stream.receive_some():
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass

    async def one(addr: str, port: int, n: int) -> None:
        from trio_websocket import open_websocket_url

        blob = bytes([n]) * 200_000
        async with open_websocket_url(f"ws://{addr}/dial/t{n}/127.0.0.1:{port}") as ws:
            for start in range(0, len(blob), 50_000):
                await ws.send_message(blob[start : start + 50_000])
            got = b""
            while len(got) < len(blob):
                got += await ws.get_message()
            assert got == blob

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, tcp_echo, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with open_relay(config()) as relay, trio.open_nursery() as clients:
                for n in range(30):
                    clients.start_soon(one, relay.addr, port, n)
            nursery.cancel_scope.cancel()
