"""Hostile relay clients: idle tunnels, one peer taking every slot, odd plain-HTTP requests."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from relay import RelayConfig, open_relay

TIMEOUT = 30


async def tcp_echo(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)


def _connect(url: str, source: str = "127.0.0.1"):
    """A WebSocket client from `source` (any 127.x address is loopback: another peer)."""
    host, port = url.split("/")[2].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))
    return connect(url, sock=sock, compression=None, open_timeout=5, legacy=True)


async def ws_open(url: str, source: str = "127.0.0.1"):
    return await trio.to_thread.run_sync(partial(_connect, url, source))


async def refused(url: str, source: str = "127.0.0.1") -> tuple[int, str]:
    def attempt() -> tuple[int, str]:
        try:
            conn = _connect(url, source)
        except InvalidStatus as err:
            return err.response.status_code, err.response.body.decode()
        conn.close()
        raise AssertionError(f"{url} was accepted")

    return await trio.to_thread.run_sync(attempt)


async def close(conn) -> None:
    await trio.to_thread.run_sync(conn.close)  # it waits for the relay: not on its loop


async def closed_with(conn) -> tuple[int | None, str]:
    def run() -> tuple[int | None, str]:
        try:
            while True:
                conn.recv(timeout=10)
        except ConnectionClosed:
            pass
        return conn.close_code, conn.close_reason

    return await trio.to_thread.run_sync(run)


async def echo_once(conn) -> bytes:
    def run() -> bytes:
        conn.send(b"ping")
        return conn.recv(timeout=5)

    return await trio.to_thread.run_sync(run)


@pytest.mark.trio
async def test_a_dial_tunnel_that_never_carries_a_byte_is_closed():
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            (listener,) = await nursery.start(
                partial(trio.serve_tcp, host="127.0.0.1"), tcp_echo, 0
            )
            port = listener.socket.getsockname()[1]
            config = RelayConfig(
                listen_addr="127.0.0.1:0", allow=(f"127.0.0.1:{port}",), idle_timeout=0.5
            )
            async with open_relay(config) as relay:
                url = f"ws://{relay.addr}/dial/x/127.0.0.1:{port}"
                idle, busy = await ws_open(url), await ws_open(url)
                assert await echo_once(busy) == b"ping"
                start = trio.current_time()
                code, reason = await closed_with(idle)
                assert code == 1008 and "idle" in reason
                assert trio.current_time() - start < 10
                # one that carried a byte is not idle, however long it waits
                await trio.sleep(0.5)
                assert await echo_once(busy) == b"ping"
                await close(busy)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_one_peer_cannot_take_every_tunnel():
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            (listener,) = await nursery.start(
                partial(trio.serve_tcp, host="127.0.0.1"), tcp_echo, 0
            )
            port = listener.socket.getsockname()[1]
            config = RelayConfig(
                listen_addr="127.0.0.1:0", allow=(f"127.0.0.1:{port}",), max_tunnels=4
            )
            async with open_relay(config) as relay:
                url = f"ws://{relay.addr}/dial/x/127.0.0.1:{port}"
                mine = [await ws_open(url), await ws_open(url)]  # half of 4
                status, body = await refused(url)
                assert status == 429 and "at most 2 per client" in body
                other = await ws_open(url, source="127.0.0.2")  # another peer still gets in
                assert await echo_once(other) == b"ping"
                await close(mine[0])
                while len(relay.tunnels) > 2:
                    await trio.sleep(0.01)
                again = await ws_open(url)  # a slot freed is the peer's again
                for c in [again, other, mine[1]]:
                    await close(c)
            nursery.cancel_scope.cancel()


def _raw_http(addr: str, request: bytes) -> bytes:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.trio
@pytest.mark.parametrize(
    "request_, status",
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 300 + b"\r\n", 431),
    ],
    ids=["414", "431"],
)
async def test_plain_http_refusals_do_not_speak_of_websockets(request_, status):
    with trio.fail_after(TIMEOUT):
        async with open_relay(RelayConfig(listen_addr="127.0.0.1:0")) as relay:
            answer = await trio.to_thread.run_sync(_raw_http, relay.addr, request_)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert body.startswith(b"bad HTTP request: ") and b"WebSocket" not in body


def test_relay_limits_have_sane_defaults():
    config = RelayConfig()
    assert config.max_tunnels_per_peer == config.max_tunnels // 2
    assert config.idle_timeout and config.idle_timeout > 0
    with pytest.raises(ValueError, match="per peer"):
        RelayConfig(max_tunnels_per_peer=0)
