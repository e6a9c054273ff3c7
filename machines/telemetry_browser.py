"""Telemetry from the browser: machines in Pyodide report over the debugger's WebSocket path.

The browser has no threads and no TCP, so instead of :class:`machines.telemetry.TcpSender` an
asyncio task (Pyodide runs asyncio on the page's event loop) drains the same
:class:`~machines.telemetry.Outbox` into the page's ``WebSocket`` (``/dbg.ws`` of the
debugger, or through the relay), in the same frames as over TCP. When the socket closes it
reconnects with backoff and re-sends every machine's schema first, as the collector binds a
machine to the connection its schema came on. ``js`` and ``pyodide`` are imported only when a
socket is opened, so this module imports anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from .addr import format_hostport, parse_hostport
from .telemetry import DbgTracer, Outbox

__all__ = ["DEFAULT_URL", "WebSocketSender", "attach", "sender_for", "url_from_env"]

DEFAULT_URL = "ws://localhost:6832/dbg.ws"

log = logging.getLogger("machines.telemetry")


def url_from_env(addr: str) -> str:
    """``AM_DBG_ADDR`` as a WebSocket URL: ``1`` is the default debugger, ``HOST:PORT`` its
    telemetry port (the WebSocket listens on the next one, as the reference), or a ws:// URL."""
    if addr.startswith(("ws://", "wss://")):
        return addr
    if addr in ("", "1"):
        return DEFAULT_URL
    try:
        hp = parse_hostport(addr)
    except ValueError as err:
        raise ValueError(f"telemetry: bad debugger address (AM_DBG_ADDR): {err}") from None
    return f"ws://{format_hostport(hp.host, hp.port + 1)}/dbg.ws"


class WebSocketSender:
    """Streams an :class:`Outbox` through a browser ``WebSocket``, reconnecting with backoff.

    ``factory(url)`` makes the socket; the default is the page's ``js.WebSocket``.
    """

    def __init__(self, outbox: Outbox, url: str, *, poll: float = 0.05,
                 factory: Callable[[str], Any] | None = None) -> None:  # fmt: skip
        self.outbox = outbox
        self.url = url
        self.poll = poll
        self.sent_frames = 0
        self.connected = asyncio.Event()
        self._factory = factory or _js_websocket
        self._closed = False
        self._warned = False
        self._task: asyncio.Future[None] | None = None
        self._ws: Any = None

    def start(self) -> WebSocketSender:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything queued so far went out; False if that took over ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (
            len(self.outbox)
            or not self.connected.is_set()
            or getattr(self._ws, "bufferedAmount", 0)  # still in the socket's own buffer
        ):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(self.poll)
        return True

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closed:
            opened, ended = asyncio.Event(), asyncio.Event()
            try:
                ws = self._ws = self._factory(self.url)
            except Exception as err:  # a bad URL, no WebSocket in this runtime
                self._warn(err)
                return
            _on(ws, "open", opened.set)
            _on(ws, "close", ended.set)
            _on(ws, "error", ended.set)
            waiting = [asyncio.ensure_future(e.wait()) for e in (opened, ended)]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for w in waiting:
                w.cancel()
            if opened.is_set() and not ended.is_set():
                backoff = 0.1
                self.connected.set()
                try:
                    _send(ws, b"".join(list(self.outbox.schemas.values())))
                    while not ended.is_set() and not self._closed:
                        data = self.outbox.take()
                        if data:
                            _send(ws, data)
                            self.sent_frames += 1
                        await asyncio.sleep(self.poll)
                except Exception as err:  # the socket broke under us: reconnect
                    self._warn(err)
                finally:
                    self.connected.clear()
                    ws.close()
            else:
                self._warn(f"cannot open {self.url}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _warn(self, err: object) -> None:
        if not self._warned:
            self._warned = True
            log.warning("telemetry: debugger at %s unreachable (%s); retrying, messages are "
                        "buffered (bounded)", self.url, err)  # fmt: skip


def _js_websocket(url: str) -> Any:
    import js

    ws = js.WebSocket.new(url)
    ws.binaryType = "arraybuffer"
    return ws


def _on(ws: Any, event: str, fn: Callable[[], None]) -> None:
    from pyodide.ffi import create_proxy

    # the proxy lives as long as the socket: the handler is the socket's
    setattr(ws, f"on{event}", create_proxy(lambda *_: fn()))


def _send(ws: Any, data: bytes) -> None:
    if data:
        from js import Uint8Array
        from pyodide.ffi import to_js

        ws.send(Uint8Array.new(to_js(data)))


_senders: dict[str, tuple[Outbox, WebSocketSender]] = {}


def sender_for(url: str) -> WebSocketSender:
    """The (one) sender of this page for ``url``, started on first use."""
    pair = _senders.get(url)
    if pair is None:
        outbox = Outbox()
        pair = _senders[url] = (outbox, WebSocketSender(outbox, url).start())
    return pair[1]


def attach(mach: Any, url: str = DEFAULT_URL, *, full: bool | None = None) -> DbgTracer:
    """Report ``mach`` to the debugger's WebSocket at ``url`` (one socket per page and URL)."""
    if full is None:
        full = bool(os.environ.get("AM_LOG_FULL"))
    tracer = DbgTracer(sender_for(url).outbox, full=full)
    tracer.attach(mach)
    return tracer
