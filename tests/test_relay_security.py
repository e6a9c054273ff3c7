"""The relay's security rules and limits: target allow-list, Origin, token, bad paths,
message size and tunnel count. Every refusal happens on the upgrade, before a socket opens."""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path

import pytest
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from relay import RelayConfig, TunnelRequest, WebSocketStream, open_relay

TIMEOUT = 20


def _connect(url: str, **kwargs: object):
    kwargs.setdefault("compression", None)
    kwargs.setdefault("open_timeout", 5)
    return connect(url, legacy=True, **kwargs)


async def ws_open(url: str, **kwargs: object):
    return await trio.to_thread.run_sync(partial(_connect, url, **kwargs))


async def refused(url: str, **kwargs: object) -> tuple[int, str]:
    """The HTTP status and body a refused upgrade answers with."""

    def attempt() -> tuple[int, str]:
        try:
            conn = _connect(url, **kwargs)
        except InvalidStatus as err:
            return err.response.status_code, err.response.body.decode()
        conn.close()
        raise AssertionError(f"{url} was accepted")

    return await trio.to_thread.run_sync(attempt)


async def echo_once(conn) -> bytes:
    def run() -> bytes:
        conn.send(b"ping")
        return conn.recv(timeout=5)

    return await trio.to_thread.run_sync(run)


async def close_code(conn) -> int | None:
    def run() -> int | None:
        try:
            while True:
                conn.recv(timeout=5)
        except ConnectionClosed:
            pass
        return conn.close_code

    return await trio.to_thread.run_sync(run)


async def pong(stream: WebSocketStream, request: TunnelRequest) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


def relay_config(**kwargs: object) -> RelayConfig:
    kwargs.setdefault("listen_addr", "127.0.0.1:0")
    return RelayConfig(**kwargs)


@pytest.mark.trio
async def test_targets_off_the_allow_list_are_refused_before_any_socket() -> None:
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen()
        target.setblocking(False)
        port = target.getsockname()[1]
        with trio.fail_after(TIMEOUT):
            # Secure by default: an empty allow-list lets nothing through.
            async with open_relay(relay_config()) as relay:
                status, body = await refused(f"ws://{relay.addr}/dial/m/127.0.0.1:{port}")
                assert status == 403 and "allow-list" in body
            with pytest.raises(BlockingIOError):
                target.accept()  # the relay never dialed
            async with open_relay(relay_config(allow=(f"127.0.0.1:{port + 1}",))) as relay:
                status, _ = await refused(f"ws://{relay.addr}/dial/m/127.0.0.1:{port}")
                assert status == 403
                status, _ = await refused(f"ws://{relay.addr}/dial/m/localhost:{port}")
                assert status == 403  # names compare literally
                status, _ = await refused(f"ws://{relay.addr}/listen/m/127.0.0.1:{port + 2}")
                assert status == 403
                with socket.socket() as probe:
                    assert probe.connect_ex(("127.0.0.1", port + 2)) != 0
            with pytest.raises(BlockingIOError):
                target.accept()
            # Listed exactly, the same request goes through.
            async with open_relay(relay_config(allow=(f"127.0.0.1:{port}",))) as relay:
                conn = await ws_open(f"ws://{relay.addr}/dial/m/127.0.0.1:{port}")
                await trio.to_thread.run_sync(conn.close)
            target.setblocking(True)
            target.settimeout(5)
            target.accept()[0].close()


@pytest.mark.trio
async def test_origin_allow_list() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(relay_config()) as relay:
            relay.add_matcher("dial", "^m$", pong)
            port = relay.addr.rsplit(":", 1)[1]
            url = f"ws://{relay.addr}/dial/m/x:1"
            # The relay's own origin (by any loopback name) and non-browser clients pass.
            for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", None):
                conn = await ws_open(url, origin=origin)
                assert await echo_once(conn) == b"ping"
                await trio.to_thread.run_sync(conn.close)
            for origin in ("http://evil.example", f"http://evil.example:{port}"):
                status, body = await refused(url, origin=origin)
                assert status == 403 and "origin" in body
        config = relay_config(allow_origins=("http://app.example:8080",))
        async with open_relay(config) as relay:
            relay.add_matcher("dial", "^m$", pong)
            url = f"ws://{relay.addr}/dial/m/x:1"
            conn = await ws_open(url, origin="http://app.example:8080")
            await trio.to_thread.run_sync(conn.close)
            status, _ = await refused(url, origin=f"http://{relay.addr}")
            assert status == 403
        async with open_relay(relay_config(allow_origins=("*",))) as relay:
            relay.add_matcher("dial", "^m$", pong)
            conn = await ws_open(f"ws://{relay.addr}/dial/m/x:1", origin="http://any.example")
            await trio.to_thread.run_sync(conn.close)


@pytest.mark.trio
async def test_token_travels_as_a_subprotocol() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(relay_config(token="s3cret")) as relay:
            relay.add_matcher("dial", "^m$", pong)
            url = f"ws://{relay.addr}/dial/m/x:1"
            status, body = await refused(url)
            assert status == 401 and "token" in body
            status, _ = await refused(url, subprotocols=["am-token.wrong"])
            assert status == 401
            conn = await ws_open(url, subprotocols=["am-token.s3cret"])
            assert conn.subprotocol == "am-token.s3cret"  # browsers need one picked
            assert await echo_once(conn) == b"ping"
            await trio.to_thread.run_sync(conn.close)
            conn = await ws_open(url, subprotocols=["binary", "am-token.s3cret"])
            assert conn.subprotocol == "binary"
            await trio.to_thread.run_sync(conn.close)
    with pytest.raises(ValueError, match="token"):
        RelayConfig(token="has space")


@pytest.mark.trio
async def test_bad_paths_answer_400_with_a_reason(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        config = relay_config(allow=("127.0.0.1:*",), repl_addr_dir=tmp_path)
        async with open_relay(config) as relay:
            base = f"ws://{relay.addr}"
            cases = {
                "/dial/onlyid": "expected /dial/<id>/<host:port>",
                "/dial//127.0.0.1:80": "expected",
                "/dial/id/127.0.0.1:99999": "port must be 0-65535",
                "/dial/id/127.0.0.1": "expected HOST:PORT",
                "/listen/id/::1:80": "[addr]:port",
                "/listen/repl-a/b/127.0.0.1:0": "must not contain slashes",
            }
            for path, reason in cases.items():
                status, body = await refused(base + path)
                assert status == 400, path
                assert reason in body, (path, body)
            status, _ = await refused(base + "/elsewhere/x")
            assert status == 404
            # Still serving.
            conn = await ws_open(f"{base}/listen/ok/127.0.0.1:0")
            await trio.to_thread.run_sync(conn.close)


@pytest.mark.trio
async def test_oversized_message_closes_1009_and_relay_keeps_serving() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(relay_config(max_message=65536)) as relay:
            relay.add_matcher("dial", "^m$", pong)
            url = f"ws://{relay.addr}/dial/m/x:1"
            conn = await ws_open(url)

            def send_big() -> None:
                conn.send(b"x" * 65536)  # at the limit: fine
                assert conn.recv(timeout=5) == b"x" * 65536
                conn.send(b"x" * 65537)

            await trio.to_thread.run_sync(send_big)
            assert await close_code(conn) == 1009
            conn = await ws_open(url)
            assert await echo_once(conn) == b"ping"
            await trio.to_thread.run_sync(conn.close)


@pytest.mark.trio
async def test_tunnel_count_is_limited() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(relay_config(max_tunnels=1)) as relay:
            relay.add_matcher("dial", "^m$", pong)
            url = f"ws://{relay.addr}/dial/m/x:1"
            first = await ws_open(url)
            status, body = await refused(url)
            assert status == 503 and "too many tunnels" in body
            await trio.to_thread.run_sync(first.close)
            await relay.wait_idle()
            again = await ws_open(url)
            assert await echo_once(again) == b"ping"
            await trio.to_thread.run_sync(again.close)


def test_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        RelayConfig(allow=("nohost",))
    with pytest.raises(ValueError, match="port"):
        RelayConfig(listen_addr="localhost:http")
    with pytest.raises(ValueError, match="not a directory"):
        RelayConfig(static_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="max message"):
        RelayConfig(max_message=10)
    with pytest.raises(ValueError, match="repl grace"):
        RelayConfig(repl_grace=-1)
    assert RelayConfig().listen_addr.startswith("localhost:")
