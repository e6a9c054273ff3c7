"""Transport helpers: addresses, TCP dialing, and a WebSocket connection seen as a trio Stream.

aRPC only needs an ordered byte stream, so anything that is a `trio.abc.Stream` carries it:
a TCP socket, `trio.testing.memory_stream_pair()`, or a WebSocket wrapped by `WebSocketStream`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

from ..addr import parse_hostport


@contextmanager
def unwrap_group() -> Iterator[None]:
    """Re-raise a lone error from a context manager's nursery as itself, not as a group.

    The background tasks of `serve`/`connect` do not raise, so a group holding a single error
    came from the caller's own block (or the handshake), and they should see it unwrapped.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise


def parse_addr(addr: str) -> tuple[str, int]:
    """`"host:port"` (or `"[v6]:port"`) to (host, port); a clear error for anything else."""
    hp = parse_hostport(addr)
    return hp.host, hp.port


async def open_tcp(addr: str) -> trio.SocketStream:
    host, port = parse_addr(addr)
    return await trio.open_tcp_stream(host, port)


class WebSocketStream(trio.abc.Stream):
    """A trio-websocket connection as a byte stream: each write is one binary message."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._buf = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        from trio_websocket import ConnectionClosed

        try:
            await self._ws.send_message(bytes(data))
        except ConnectionClosed as err:
            raise trio.BrokenResourceError(f"websocket closed: {err.reason}") from None

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        from trio_websocket import ConnectionClosed

        while not self._buf:
            try:
                msg = await self._ws.get_message()
            except ConnectionClosed:
                return b""
            self._buf = msg.encode() if isinstance(msg, str) else bytes(msg)
        n = len(self._buf) if max_bytes is None else max_bytes
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    async def aclose(self) -> None:
        await self._ws.aclose()


async def open_websocket_stream(nursery: trio.Nursery, url: str, **opts: Any) -> WebSocketStream:
    """Dial `ws://host:port/path` (e.g. the relay's `/dial/<id>/<host:port>`) as a byte stream.

    The connection lives in `nursery` (trio-websocket runs its reader there); use it as
    `connect(stream_factory=partial(open_websocket_stream, nursery, url))`.
    """
    from trio_websocket import connect_websocket_url

    return WebSocketStream(await connect_websocket_url(nursery, url, **opts))


class CountingStream(trio.abc.Stream):
    """Wraps a stream and counts the bytes each way (tests and benchmarks meter traffic)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sent = 0
        self.received = 0

    @property
    def total(self) -> int:
        return self.sent + self.received

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)
        self.sent += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = bytes(await self.inner.receive_some(max_bytes))
        self.received += len(data)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()
