"""The browser program's host in CPython: trio and trio-websocket, no DOM (``am start --bars``).

Each peer is a real WebSocket client of the relay on the same paths as a tab, so the server
cannot tell it from a browser.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, connect_websocket_url

from machines import Machine

#: seconds to open a WebSocket (the reference's 3 s dial timeout)
CONNECT_TIMEOUT = 3.0


class TrioSocket:
    """A trio-websocket connection behind the program's :class:`~.browser.Socket`.

    ``send`` is called from synchronous code (the aRPC endpoints), so messages go through an
    unbounded channel to a writer task; order is kept.
    """

    def __init__(self, ws: Any, nursery: trio.Nursery) -> None:
        self.ws = ws
        self._out, out = trio.open_memory_channel[bytes](math.inf)
        nursery.start_soon(self._writer, out)

    def send(self, data: bytes) -> None:
        try:
            self._out.send_nowait(bytes(data))
        except trio.ClosedResourceError:
            pass  # the session is over; the endpoint learns it from receive()

    async def receive(self) -> bytes | None:
        try:
            data = await self.ws.get_message()
        except ConnectionClosed:
            return None
        return data if isinstance(data, bytes) else None  # text breaks the stream

    async def _writer(self, out: trio.MemoryReceiveChannel[bytes]) -> None:
        async for data in out:
            try:
                await self.ws.send_message(data)
            except ConnectionClosed:
                return


class TrioHost:
    """Runs peers in ``nursery``, talking to the relay at ``base_url`` (``ws://host:port``)."""

    def __init__(self, nursery: trio.Nursery, base_url: str) -> None:
        self.nursery = nursery
        self.base_url = base_url.rstrip("/")

    @asynccontextmanager
    async def open(self, path: str) -> AsyncIterator[TrioSocket]:
        url, ws, error = self.base_url + path, None, "timed out"
        async with trio.open_nursery() as nursery:  # trio-websocket's reader lives here
            with trio.move_on_after(CONNECT_TIMEOUT):
                try:
                    ws = await connect_websocket_url(nursery, url, message_queue_size=0)
                except (OSError, HandshakeError, ConnectionClosed) as err:
                    error = str(err) or type(err).__name__
            if ws is None:
                nursery.cancel_scope.cancel()
            else:
                try:
                    yield TrioSocket(ws, nursery)
                finally:
                    # the close handshake ends when the reader (in `nursery`) reads the peer's
                    # reply: so close before cancelling it. When this task is being cancelled
                    # (the process stops), so is the reader, and waiting for a reply nobody
                    # can read would only wait out the bound: then just send the close frame
                    stopping = trio.current_effective_deadline() == -math.inf
                    with trio.CancelScope(shield=True), trio.move_on_after(0.1 if stopping else 1):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        if ws is None:
            raise ConnectionError(f"cannot open {path}: {error}")

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.nursery.start_soon(fn, *args)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        async def later() -> None:
            await trio.sleep(delay)
            fn()

        self.nursery.start_soon(later)


class HeadlessUI:
    """Keeps the last lines and the status in memory (a peer has no screen)."""

    def __init__(self, keep: int = 100, echo: Callable[[str], None] | None = None) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.status_text = ""
        self.session = ""
        self._echo = echo
        self._submit: Callable[[str], None] | None = None
        self._changed = trio.Event()

    def append(self, line: str) -> None:
        self.lines.append(line)
        if self._echo is not None:
            self._echo(f"browser-bar-{self.session}: {line}")
        self._notify()

    def status(self, status: str, session: str) -> None:
        self.status_text, self.session = status, session
        self._notify()

    def show(self, bar: Machine, foo: Any) -> None:
        pass  # nothing to draw

    def on_submit(self, fn: Callable[[str], None]) -> None:
        self._submit = fn

    def type(self, text: str) -> None:
        """What the user does in a tab: type ``text`` and hit Enter."""
        if self._submit is not None:
            self._submit(text)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[HeadlessUI], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()
