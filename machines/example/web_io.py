"""The browser program's host in the page: Pyodide's asyncio loop, ``js.WebSocket``, the DOM.

Imported only in Pyodide (``js`` and ``pyodide`` exist there alone); the page's bootstrap
calls :func:`main` with the server's ``config.json``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import js
from pyodide.ffi import create_proxy, to_js

from machines import Machine

from .browser import BrowserBar
from .config import Config

#: seconds to open a WebSocket (the reference's 3 s dial timeout)
CONNECT_TIMEOUT = 3.0
_OPEN = 1  # WebSocket.readyState
#: pixels from the list's bottom within which it still follows new lines (about a line)
FOLLOW_SLACK = 24


class PageSocket:
    """A ``js.WebSocket`` as the program's Socket: messages queue up for ``receive``."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()

    def send(self, data: bytes) -> None:
        if self.ws.readyState == _OPEN:
            self.ws.send(to_js(data))

    async def receive(self) -> bytes | None:
        return await self.inbox.get()


class PageHost:
    """Tunnels to the relay that served this page (same host and port)."""

    nursery = None  # asyncio needs none

    def __init__(self) -> None:
        scheme = "wss" if js.location.protocol == "https:" else "ws"
        self.base_url = f"{scheme}://{js.location.host}"
        self._tasks: set[asyncio.Future[Any]] = set()

    @asynccontextmanager
    async def open(self, path: str) -> AsyncIterator[PageSocket]:
        ws = js.WebSocket.new(self.base_url + path)
        ws.binaryType = "arraybuffer"
        sock = PageSocket(ws)
        opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def on_open(_ev: Any) -> None:
            if not opened.done():
                opened.set_result(True)

        def on_close(_ev: Any) -> None:
            if not opened.done():
                opened.set_result(False)
            sock.inbox.put_nowait(None)

        def on_message(ev: Any) -> None:
            if isinstance(ev.data, str):  # text breaks the byte stream
                sock.inbox.put_nowait(None)
                ws.close()
            else:
                sock.inbox.put_nowait(js.Uint8Array.new(ev.data).to_bytes())

        proxies = [create_proxy(fn) for fn in (on_open, on_close, on_message)]
        ws.onopen, ws.onclose, ws.onmessage = proxies
        try:
            try:
                ok = await asyncio.wait_for(opened, CONNECT_TIMEOUT)
            except TimeoutError:
                ok = False
            if not ok:
                raise ConnectionError(f"cannot open {path}")
            yield sock
        finally:
            ws.onopen = ws.onclose = ws.onmessage = None
            ws.close()
            for p in proxies:
                p.destroy()

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        task = asyncio.ensure_future(fn(*args))
        self._tasks.add(task)  # the loop keeps only weak references
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            js.console.error(f"example: task failed: {task.exception()!r}")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(delay, fn)


def _states(mach: Any) -> str:
    return " ".join(f"{s}:{mach.tick(s)}" for s in mach.active_states) or "(none)"


class DomUI:
    """The page: ``#list`` lines, ``#input``, and the live panel."""

    def __init__(self) -> None:
        doc = js.document
        self.doc = doc
        self.list = doc.getElementById("list")
        self.input = doc.getElementById("input")
        self._submit: Any = None
        #: DOM work queued by handlers (lines, enabling the input) for the next flush, and the
        #: one persistent callback that flushes
        self._lines: list[str] = []
        self._enable_input = False
        self._flush_scheduled = False
        self._flush_proxy = create_proxy(self._flush)
        self._pending = False
        self._status = ""
        self._last: tuple[Machine, Any] | None = None

    def _text(self, id: str, text: str) -> None:
        el = self.doc.getElementById(id)
        if el is not None:
            el.textContent = text

    def append(self, line: str) -> None:
        """Queue `line`; it is drawn right after the running task (a handler, mostly).

        Handlers call this (MsgState, BoredState), and a handler has the machine's handler
        timeout (0.1 s, as the reference): an append and a scroll (which forces a layout) on
        a starved CPU took longer, and the message was Canceled by its own display. Queued, the
        handler's cost is a list append, whatever the DOM costs. A timer, not an animation
        frame, flushes: a hidden tab gets no frames, but its lines must still arrive.
        """
        self._lines.append(line)
        self._schedule()

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            js.setTimeout(self._flush_proxy, 0)

    def _flush(self, *_: Any) -> None:
        self._flush_scheduled = False
        if self._enable_input:
            self._enable_input = False
            self.input.disabled = False
            self.input.focus()
        lines, self._lines = self._lines, []
        if not lines:
            return
        box = self.list
        # new lines are followed from the bottom only: whoever scrolled up to read stays there
        follow = box.scrollHeight - box.scrollTop - box.clientHeight <= FOLLOW_SLACK
        batch = self.doc.createDocumentFragment()
        for line in lines:
            li = self.doc.createElement("li")
            li.textContent = line
            batch.appendChild(li)
        box.appendChild(batch)
        if follow:
            box.scrollTop = box.scrollHeight  # one layout per batch, not per line

    def status(self, status: str, session: str) -> None:
        self._text("session", session)
        self._text("status", status)
        el = self.doc.getElementById("status")
        if el is not None:
            el.className = status
        self._status = status
        if self._last is not None:
            self.show(*self._last)

    def show(self, bar: Machine, foo: Any) -> None:
        # at most one redraw per animation frame, however many transitions happen
        self._last = (bar, foo)
        if not self._pending:
            self._pending = True
            js.requestAnimationFrame(create_proxy(self._draw, roundtrip=False))

    def _draw(self, *_: Any) -> None:
        self._pending = False
        if self._last is None:
            return
        bar, foo = self._last
        self._text("bar-id", bar.id)
        self._text("bar-states", _states(bar))
        if not foo.state_names:
            foo_text = "(not connected yet)"
        elif self._status != "connected":
            foo_text = f"{_states(foo)} (last known; {self._status})"
        else:
            foo_text = _states(foo)
        self._text("foo-states", foo_text)

    def on_submit(self, fn: Callable[[str], None]) -> None:
        if self._submit is not None:
            return

        def keydown(ev: Any) -> None:
            if ev.key == "Enter":
                text = self.input.value
                self.input.value = ""
                fn(text)

        self._submit = create_proxy(keydown)
        self.input.addEventListener("keydown", self._submit)
        # StartState calls this: focusing forces a layout, so it waits for the flush as lines do
        self._enable_input = True
        self._schedule()


def use_site_zip(path: str) -> None:
    """Import what is not in memory from the zip at ``path`` (the prod build's packages).

    After a snapshot restore the packages are imported but their files are gone; their
    ``__path__`` still names the old directories, so the zip's directories join them.
    """
    import sys

    sys.path.insert(0, path)
    for name, mod in list(sys.modules.items()):
        if name.split(".")[0] in ("machines", "cbor2") and hasattr(mod, "__path__"):
            mod.__path__.append(f"{path}/{name.replace('.', '/')}")


_app: BrowserBar | None = None


async def main(config: Any) -> BrowserBar:
    """Start this tab's machines (in the background: the page stays responsive)."""
    global _app
    data = config.to_py() if hasattr(config, "to_py") else dict(config or {})
    cfg = Config.from_page(data)
    os.environ.update(cfg.env or {})  # AM_DBG_ADDR etc. before the machines exist
    host = PageHost()
    _app = BrowserBar(host, DomUI(), cfg)
    host.spawn(_app.start)
    return _app
