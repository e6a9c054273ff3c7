"""Relay tunnels end to end: a real relay on loopback, real TCP peers, and a WebSocket client
from another library (`websockets`, run in worker threads) than the relay's server stack.

Scenario numbers refer to the reference relay's acceptance scenarios (spec A.5).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from relay import RelayConfig, TunnelRequest, WebSocketStream, open_relay, serve_relay
from relay.wsstream import MAX_OUT_MESSAGE

TIMEOUT = 20


class Ws:
    """A `websockets` sync client driven from trio through worker threads."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, url: str, **kwargs: object) -> Ws:
        kwargs.setdefault("compression", None)
        kwargs.setdefault("max_size", None)
        kwargs.setdefault("open_timeout", 5)
        kwargs.setdefault("legacy", True)  # a plain connection object, closed by the tests
        conn = await trio.to_thread.run_sync(partial(connect, url, **kwargs))
        return cls(conn)

    async def send(self, data: bytes | str) -> None:
        await trio.to_thread.run_sync(self.conn.send, data)

    async def recv(self, timeout: float = 5) -> bytes | str:
        return await trio.to_thread.run_sync(
            partial(self.conn.recv, timeout), abandon_on_cancel=True
        )

    async def recv_exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            data += await self.recv()
        return bytes(data)

    async def wait_closed(self) -> tuple[int | None, str]:
        """Read until the relay closes; return its close code and reason."""
        try:
            while True:
                await self.recv()
        except ConnectionClosed:
            pass
        rcvd = self.conn.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.conn.close)


async def tcp_echo(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


@asynccontextmanager
async def tcp_server(handler=tcp_echo) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def tcp_connect_when_listening(port: int) -> trio.SocketStream:
    """Connect once the relay's listen tunnel is up (it binds before accepting the WS)."""
    return await trio.open_tcp_stream("127.0.0.1", port)


def config(**kwargs: object) -> RelayConfig:
    kwargs.setdefault("listen_addr", "127.0.0.1:0")
    kwargs.setdefault("allow", ("127.0.0.1:*",))
    return RelayConfig(**kwargs)


@pytest.mark.trio
async def test_dial_echoes_and_text_closes_1003() -> None:
    """Scenarios 10 and 6: a dial tunnel to an echo server; a text message closes with 1003."""
    with trio.fail_after(TIMEOUT):
        async with tcp_server() as port, open_relay(config()) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/dial/m1/127.0.0.1:{port}")
            await ws.send(b"hello")
            assert await ws.recv_exactly(5) == b"hello"
            await ws.send("text")
            assert await ws.wait_closed() == (1003, "text messages are not supported")
            # The relay keeps serving others.
            ws2 = await Ws.open(f"ws://{relay.addr}/dial/m2/127.0.0.1:{port}")
            await ws2.send(b"again")
            assert await ws2.recv_exactly(5) == b"again"
            await ws2.close()


@pytest.mark.trio
async def test_dial_failure_closes_1011() -> None:
    """Scenario 10: a closed port closes the WebSocket with 1011 and "dial failed"."""
    port = free_port()
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/dial/m1/127.0.0.1:{port}")
            code, reason = await ws.wait_closed()
            assert code == 1011
            assert reason.startswith("dial failed")


@pytest.mark.trio
async def test_listen_pipes_both_ways_byte_exact() -> None:
    """Scenario 4: hello reaches the browser; 1 MiB in 32 KiB messages reaches TCP exactly."""
    port = free_port()
    blob = os.urandom(1 << 20)
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/listen/m1/127.0.0.1:{port}")
            tcp = await tcp_connect_when_listening(port)
            await tcp.send_all(b"hello")
            assert await ws.recv_exactly(5) == b"hello"

            async def send_blob() -> None:
                for i in range(0, len(blob), 32768):
                    await ws.send(blob[i : i + 32768])

            received = bytearray()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_blob)
                while len(received) < len(blob):
                    received += await tcp.receive_some(65536)
            assert hashlib.sha256(received).digest() == hashlib.sha256(blob).digest()
            await tcp.aclose()
            assert await ws.wait_closed() == (1000, "tcp peer closed")


@pytest.mark.trio
async def test_message_boundaries_mean_nothing() -> None:
    """Scenario 5: "ab" + "cd" arrive as "abcd"; a 1 MiB TCP write comes as several messages
    (reads of at most 128 KiB), whose concatenation is exact."""
    big = os.urandom(1 << 20)
    with trio.fail_after(TIMEOUT):
        received = trio.Event()
        got = bytearray()

        async def collect(stream: trio.SocketStream) -> None:
            async with stream:
                while len(got) < 4:
                    got.extend(await stream.receive_some())
                received.set()
                await stream.send_all(big)
                await trio.sleep_forever()

        async with tcp_server(collect) as port, open_relay(config()) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/dial/m1/127.0.0.1:{port}")
            await ws.send(b"ab")
            await ws.send(b"cd")
            await received.wait()
            assert bytes(got) == b"abcd"
            messages = []
            total = bytearray()
            while len(total) < len(big):
                msg = await ws.recv()
                messages.append(msg)
                total += msg
            assert bytes(total) == big
            assert len(messages) >= 4
            assert max(len(m) for m in messages) <= MAX_OUT_MESSAGE
            assert all(isinstance(m, bytes) for m in messages)
            await ws.close()


@pytest.mark.trio
async def test_tcp_peer_leaving_closes_1000_and_frees_port() -> None:
    """Scenario 7 (the reference does it only after a failed write): close at once."""
    port = free_port()
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/listen/m1/127.0.0.1:{port}")
            tcp = await tcp_connect_when_listening(port)
            await tcp.send_all(b"x")
            assert await ws.recv_exactly(1) == b"x"
            # One TCP peer per tunnel: a second client is refused instead of hanging.
            assert not port_is_listening(port)
            await tcp.aclose()
            assert await ws.wait_closed() == (1000, "tcp peer closed")
            assert not port_is_listening(port)
            await relay.wait_idle()


@pytest.mark.trio
async def test_websocket_leaving_closes_tcp_and_port() -> None:
    port = free_port()
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/listen/m1/127.0.0.1:{port}")
            tcp = await tcp_connect_when_listening(port)
            await ws.send(b"last words")
            await ws.close()
            data = bytearray()
            while chunk := await tcp.receive_some():
                data += chunk
            assert bytes(data) == b"last words"
            # Before a TCP peer came, a leaving browser frees the port too.
            ws = await Ws.open(f"ws://{relay.addr}/listen/m2/127.0.0.1:{port}")
            await ws.close()
            await relay.wait_idle()
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))


@pytest.mark.trio
async def test_bytes_sent_before_the_tcp_peer_comes_are_kept() -> None:
    port = free_port()
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/listen/early/127.0.0.1:{port}")
            await ws.send(b"early ")
            await ws.send(b"bird")
            tcp = await tcp_connect_when_listening(port)
            data = bytearray()
            while len(data) < 10:
                data += await tcp.receive_some()
            assert bytes(data) == b"early bird"
            await tcp.aclose()
            await ws.wait_closed()


@pytest.mark.trio
async def test_listen_failure_closes_1011() -> None:
    """The reference leaves the WebSocket idle when the port is busy: close with a reason."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with trio.fail_after(TIMEOUT):
            async with open_relay(config()) as relay:
                ws = await Ws.open(f"ws://{relay.addr}/listen/m1/127.0.0.1:{port}")
                code, reason = await ws.wait_closed()
                assert code == 1011
                assert reason.startswith("listen failed")


@pytest.mark.trio
async def test_second_listen_replaces_first() -> None:
    """Scenario 8: a new tunnel for the same address closes the old one and owns the port."""
    port = free_port()
    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            first = await Ws.open(f"ws://{relay.addr}/listen/m1/127.0.0.1:{port}")
            second = await Ws.open(f"ws://{relay.addr}/listen/m2/127.0.0.1:{port}")
            code, reason = await first.wait_closed()
            assert code == 1000 and "replaced" in reason
            tcp = await tcp_connect_when_listening(port)
            await tcp.send_all(b"to m2")
            assert await second.recv_exactly(5) == b"to m2"
            await tcp.aclose()
            await second.wait_closed()


@pytest.mark.trio
async def test_repl_address_file_holds_real_port(tmp_path: Path) -> None:
    """Scenario 9, with the reference's gap fixed: port 0 is written resolved. With no grace
    period the file goes with the tunnel, as in the reference."""
    with trio.fail_after(TIMEOUT):
        async with open_relay(config(repl_addr_dir=tmp_path, repl_grace=0)) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/listen/repl-foo/127.0.0.1:0")
            path = tmp_path / "repl-foo.addr"
            addr = path.read_text()
            host, port = addr.rsplit(":", 1)
            assert host == "127.0.0.1" and int(port) > 0
            tcp = await tcp_connect_when_listening(int(port))
            await tcp.send_all(b"repl")
            assert await ws.recv_exactly(4) == b"repl"
            other = await Ws.open(f"ws://{relay.addr}/listen/plain/127.0.0.1:0")
            assert sorted(p.name for p in tmp_path.iterdir()) == ["repl-foo.addr"]
            await tcp.aclose()
            await ws.wait_closed()
            await relay.wait_idle(at_most=1)
            assert not path.exists()
            assert not port_is_listening(int(port))
            await other.close()


async def read_all(tcp: trio.SocketStream) -> bytes:
    """Until EOF; a reset counts as EOF too."""
    data = bytearray()
    try:
        while chunk := await tcp.receive_some():
            data += chunk
    except trio.BrokenResourceError:
        pass
    return bytes(data)


async def tcp_recv_exactly(tcp: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await tcp.receive_some()
        assert chunk, bytes(data)
        data += chunk
    return bytes(data)


@pytest.mark.trio
async def test_repl_id_keeps_its_address_across_tunnels(tmp_path: Path) -> None:
    """A tab's REPL address stays valid while the tab reconnects: the listener of a ``repl-``
    id stays bound while a REPL is served and outlives the tunnel; TCP peers that come in
    between wait in the backlog, and the next tunnel of the id serves them on the same port.
    The address file keeps its address throughout."""
    with trio.fail_after(TIMEOUT):
        async with open_relay(config(repl_addr_dir=tmp_path)) as relay:
            url = f"ws://{relay.addr}/listen/repl-tab/127.0.0.1:0"
            path = tmp_path / "repl-tab.addr"
            ws = await Ws.open(url)
            addr = path.read_text()
            port = int(addr.rsplit(":", 1)[1])

            first = await tcp_connect_when_listening(port)
            await first.send_all(b"one")
            assert await ws.recv_exactly(3) == b"one"
            await ws.send(b"hi one")
            assert await tcp_recv_exactly(first, 6) == b"hi one"
            # A second REPL while the first is served: queued, not refused; its bytes wait.
            second = await trio.open_tcp_stream("127.0.0.1", port)
            await second.send_all(b"two")
            await first.aclose()
            assert await ws.wait_closed() == (1000, "tcp peer closed")  # the tab reconnects
            await relay.wait_idle()
            assert relay.parked == ["repl-tab"]
            assert path.read_text() == addr

            ws = await Ws.open(url)  # the tab is back: same id, same address
            assert relay.parked == []
            assert path.read_text() == addr
            assert await ws.recv_exactly(3) == b"two"
            await ws.send(b"hi two")
            assert await tcp_recv_exactly(second, 6) == b"hi two"
            await second.aclose()
            assert await ws.wait_closed() == (1000, "tcp peer closed")
            await relay.wait_idle()
            assert path.read_text() == addr and port_is_listening(port)


@pytest.mark.trio
async def test_repl_id_serves_peers_at_once_on_tunnels_that_share_its_listener(
    tmp_path: Path,
) -> None:
    """A tab serving one REPL opens another tunnel of the id for the next: it does not
    replace the serving one, it shares its listener (same port, same file) and takes the
    next TCP peer, while the first is still served. The listener stays until the last of them
    ends, then waits in the parking lot as usual."""
    with trio.fail_after(TIMEOUT):
        async with open_relay(config(repl_addr_dir=tmp_path)) as relay:
            url = f"ws://{relay.addr}/listen/repl-tab/127.0.0.1:0"
            path = tmp_path / "repl-tab.addr"
            ws1 = await Ws.open(url)
            addr = path.read_text()
            port = int(addr.rsplit(":", 1)[1])
            first = await tcp_connect_when_listening(port)
            await first.send_all(b"one")
            assert await ws1.recv_exactly(3) == b"one"

            ws2 = await Ws.open(url)  # the tab's next tunnel: the first is not replaced
            second = await trio.open_tcp_stream("127.0.0.1", port)
            await second.send_all(b"two")
            assert await ws2.recv_exactly(3) == b"two"
            await ws1.send(b"hi one")
            await ws2.send(b"hi two")
            assert await tcp_recv_exactly(first, 6) == b"hi one"
            assert await tcp_recv_exactly(second, 6) == b"hi two"
            assert path.read_text() == addr and len(relay.tunnels) == 2

            await first.aclose()
            assert await ws1.wait_closed() == (1000, "tcp peer closed")
            await relay.wait_idle(at_most=1)
            assert relay.parked == [] and path.read_text() == addr  # the second still uses it
            await ws2.send(b"still")
            assert await tcp_recv_exactly(second, 5) == b"still"
            await second.aclose()
            assert await ws2.wait_closed() == (1000, "tcp peer closed")
            await relay.wait_idle()
            assert relay.parked == ["repl-tab"] and path.read_text() == addr
            assert port_is_listening(port)


@pytest.mark.trio
async def test_repl_listener_goes_after_the_grace_period(tmp_path: Path) -> None:
    """The tab does not come back: after the grace period the port closes, a REPL queued in
    the backlog is reset (not left hanging) and the address file goes."""
    grace = 1.0
    with trio.fail_after(TIMEOUT):
        async with open_relay(config(repl_addr_dir=tmp_path, repl_grace=grace)) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/listen/repl-gone/127.0.0.1:0")
            path = tmp_path / "repl-gone.addr"
            port = int(path.read_text().rsplit(":", 1)[1])
            await ws.close()
            await relay.wait_idle()
            closed_at = trio.current_time()
            queued = await trio.open_tcp_stream("127.0.0.1", port)
            assert await read_all(queued) == b""  # reset when the listener closes
            assert trio.current_time() - closed_at >= grace * 0.9
            assert relay.parked == []
            assert not path.exists()
            assert not port_is_listening(port)


@pytest.mark.trio
async def test_repl_id_reopened_while_its_tunnel_lives_replaces_it(tmp_path: Path) -> None:
    """A tab reconnects before the relay noticed its old WebSocket go: the new tunnel of the
    id closes the old one and takes over its listener (same port, same file)."""
    with trio.fail_after(TIMEOUT):
        async with open_relay(config(repl_addr_dir=tmp_path)) as relay:
            url = f"ws://{relay.addr}/listen/repl-twice/127.0.0.1:0"
            path = tmp_path / "repl-twice.addr"
            old = await Ws.open(url)
            addr = path.read_text()
            new = await Ws.open(url)
            assert await old.wait_closed() == (1000, "replaced by a new tunnel for the same id")
            assert path.read_text() == addr
            tcp = await tcp_connect_when_listening(int(addr.rsplit(":", 1)[1]))
            await tcp.send_all(b"to new")
            assert await new.recv_exactly(6) == b"to new"
            await tcp.aclose()
            await new.wait_closed()


@pytest.mark.trio
async def test_shutdown_closes_parked_listeners(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(config(repl_addr_dir=tmp_path)) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/listen/repl-p/127.0.0.1:0")
            port = int((tmp_path / "repl-p.addr").read_text().rsplit(":", 1)[1])
            await ws.close()
            await relay.wait_idle()
            assert relay.parked == ["repl-p"]
        assert list(tmp_path.iterdir()) == []
        assert not port_is_listening(port)


@pytest.mark.trio
async def test_matchers_route_ids_in_process() -> None:
    """Scenarios 12 and 11: matched ids reach Python handlers (no socket, not even the
    allow-list), others fall back to TCP; ids may contain slashes."""
    seen: list[TunnelRequest] = []

    async def upper_echo(stream: WebSocketStream, request: TunnelRequest) -> None:
        seen.append(request)
        while data := await stream.receive_some():
            await stream.send_all(data.upper())

    with trio.fail_after(TIMEOUT):
        async with tcp_server() as port, open_relay(config()) as relay:
            relay.add_matcher("listen", r"^browser-bar-", upper_echo)
            relay.add_matcher("dial", r"^browser-foo-", upper_echo)
            relay.add_matcher("dial", r"^a/b$", upper_echo)
            for path in ("listen/browser-bar-1/x:1", "dial/browser-foo-1/x:2", "dial/a/b/x:9"):
                ws = await Ws.open(f"ws://{relay.addr}/{path}")
                await ws.send(b"abc")
                assert await ws.recv_exactly(3) == b"ABC"
                await ws.close()
            assert [(r.kind, r.id, r.addr) for r in seen] == [
                ("listen", "browser-bar-1", "x:1"),
                ("dial", "browser-foo-1", "x:2"),
                ("dial", "a/b", "x:9"),
            ]
            # A dial id the listen matcher would take goes to TCP.
            ws = await Ws.open(f"ws://{relay.addr}/dial/browser-bar-2/127.0.0.1:{port}")
            await ws.send(b"abc")
            assert await ws.recv_exactly(3) == b"abc"
            await ws.close()


@pytest.mark.trio
async def test_matcher_handler_errors_close_1011() -> None:
    async def broken(stream: WebSocketStream, request: TunnelRequest) -> None:
        raise RuntimeError("boom")

    with trio.fail_after(TIMEOUT):
        async with open_relay(config()) as relay:
            relay.add_matcher("dial", "^x$", broken)
            ws = await Ws.open(f"ws://{relay.addr}/dial/x/h:1")
            code, reason = await ws.wait_closed()
            assert code == 1011 and "boom" in reason


@pytest.mark.trio
async def test_64_mib_each_way_byte_exact() -> None:
    """64 MiB of random bytes through one tunnel in each direction, checked with SHA-256."""
    size = 64 << 20
    up = os.urandom(size)
    down = os.urandom(size)
    port = free_port()
    with trio.fail_after(120):
        async with open_relay(config()) as relay:
            ws = await Ws.open(f"ws://{relay.addr}/listen/big/127.0.0.1:{port}")
            tcp = await tcp_connect_when_listening(port)
            up_hash = hashlib.sha256()
            down_hash = hashlib.sha256()

            def ws_side() -> None:
                # Send and receive at once, as a real peer would (each direction blocks
                # when its reader falls behind).
                def sender() -> None:
                    for i in range(0, size, 256 << 10):
                        ws.conn.send(up[i : i + (256 << 10)])

                t = threading.Thread(target=sender)
                t.start()
                got = 0
                while got < size:
                    msg = ws.conn.recv(timeout=30)
                    down_hash.update(msg)
                    got += len(msg)
                t.join()

            async def tcp_side() -> None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(tcp.send_all, down)
                    got = 0
                    while got < size:
                        chunk = await tcp.receive_some(1 << 18)
                        up_hash.update(chunk)
                        got += len(chunk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(tcp_side)
                nursery.start_soon(partial(trio.to_thread.run_sync, ws_side))
            assert up_hash.digest() == hashlib.sha256(up).digest()
            assert down_hash.digest() == hashlib.sha256(down).digest()
            await tcp.aclose()
            assert (await ws.wait_closed())[0] == 1000


async def _stalled_total(progress: list[int]) -> int:
    """Wait until ``progress[0]`` stops growing for half a second; return it."""
    last = -1
    while progress[0] != last:
        last = progress[0]
        await trio.sleep(0.5)
    return last


@pytest.mark.trio
async def test_slow_tcp_reader_stalls_the_browser() -> None:
    """Backpressure, WebSocket -> TCP: when the TCP peer does not read, the relay stops
    reading the WebSocket instead of buffering; the data then arrives complete."""
    chunk = os.urandom(1 << 20)
    total_sent = 200 << 20
    progress = [0]
    with trio.fail_after(60):
        async with open_relay(config()) as relay:
            port = free_port()
            ws = await Ws.open(f"ws://{relay.addr}/listen/slow/127.0.0.1:{port}")
            tcp = await tcp_connect_when_listening(port)

            def send_all() -> None:
                for _ in range(total_sent // len(chunk)):
                    ws.conn.send(chunk)
                    progress[0] += len(chunk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(trio.to_thread.run_sync, send_all))
                stalled = await _stalled_total(progress)
                # Kernel buffers on both sockets plus a few queued messages, not 200 MiB.
                assert stalled < 48 << 20
                got = 0
                while got < total_sent:
                    got += len(await tcp.receive_some(1 << 18))
            assert got == total_sent
            await tcp.aclose()
            await ws.wait_closed()


@pytest.mark.trio
async def test_slow_browser_stalls_the_tcp_peer() -> None:
    """Backpressure, TCP -> WebSocket: a browser that does not read stalls the TCP sender."""
    chunk = os.urandom(1 << 20)
    total_sent = 200 << 20
    progress = [0]
    with trio.fail_after(60):
        async with open_relay(config()) as relay:
            port = free_port()
            ws = await Ws.open(f"ws://{relay.addr}/listen/slow/127.0.0.1:{port}")
            tcp = await tcp_connect_when_listening(port)

            async def send_all() -> None:
                for _ in range(total_sent // len(chunk)):
                    await tcp.send_all(chunk)
                    progress[0] += len(chunk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                stalled = await _stalled_total(progress)
                assert stalled < 48 << 20

                def drain() -> int:
                    got = 0
                    while got < total_sent:
                        got += len(ws.conn.recv(timeout=30))
                    return got

                assert await trio.to_thread.run_sync(drain) == total_sent
            await tcp.aclose()
            await ws.wait_closed()


@pytest.mark.trio
async def test_shutdown_closes_tunnels_and_removes_files(tmp_path: Path) -> None:
    """Leaving ``open_relay`` (what Ctrl-C does in `am relay`) closes every tunnel with 1001,
    removes address files and frees ports."""
    with trio.fail_after(TIMEOUT):
        async with tcp_server() as echo_port:
            async with open_relay(config(repl_addr_dir=tmp_path)) as relay:
                listen = await Ws.open(f"ws://{relay.addr}/listen/repl-x/127.0.0.1:0")
                dial = await Ws.open(f"ws://{relay.addr}/dial/d/127.0.0.1:{echo_port}")
                await dial.send(b"up")
                assert await dial.recv_exactly(2) == b"up"
                port = int((tmp_path / "repl-x.addr").read_text().rsplit(":", 1)[1])
            assert await listen.wait_closed() == (1001, "relay shutting down")
            assert await dial.wait_closed() == (1001, "relay shutting down")
            assert list(tmp_path.iterdir()) == []
            assert not port_is_listening(port)


@pytest.mark.trio
async def test_serve_relay_in_a_nursery() -> None:
    """The other library entry point: ``await nursery.start(serve_relay, config)``."""
    with trio.fail_after(TIMEOUT):
        async with tcp_server() as port:
            async with trio.open_nursery() as nursery:
                relay = await nursery.start(serve_relay, config())
                ws = await Ws.open(f"ws://{relay.addr}/dial/m1/127.0.0.1:{port}")
                await ws.send(b"hi")
                assert await ws.recv_exactly(2) == b"hi"
                nursery.cancel_scope.cancel()
            assert await ws.wait_closed() == (1001, "relay shutting down")
            relay_port = int(relay.addr.rsplit(":", 1)[1])
            assert not port_is_listening(relay_port)
