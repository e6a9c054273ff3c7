"""Live telemetry beside the UI: the trio collector in a thread of its own.

Why a thread and not trio's guest mode on Textual's loop: with a hundred producers streaming,
one trio scheduling round decodes and ingests every ready connection's data, and in guest
mode that round blocks the UI's loop (key presses waited ~0.5 s). In a thread, the
interpreter switches between the two every few milliseconds. The only shared structure is
the collector: :class:`LockedCollector` applies each message under a lock, and the UI takes
the same lock to read new transitions (``dbg.ui.history``) and to remove machines, so no
transition is lost or read half-way.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import TYPE_CHECKING, Any

from dbg.collector import Collector, serve_collector

if TYPE_CHECKING:
    import trio

__all__ = ["LiveServer", "LockedCollector", "check_free"]


class UiFirstLock:
    """The collector's lock as the UI takes it: ahead of the ingest thread.

    Why: a plain lock is not fair. The ingest thread releases it after each message and takes
    it again at once, so a UI waiting for it (to paint a key press) lost nearly every race and
    waited until its timeout (0.2 s). Here the UI holds a gate while it waits; the ingest
    thread passes the gate before each message (see :class:`LockedCollector`), so it stops at
    the gate and the UI gets the lock when the current message is done.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.gate = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self.gate.acquire(blocking, timeout):
            return False
        try:
            return self.lock.acquire(blocking, timeout)
        finally:
            self.gate.release()

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> UiFirstLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LockedCollector(Collector):
    """A :class:`Collector` whose changes happen under :attr:`lock` (the UI's side of it)."""

    def __init__(self, *, max_mem: int | None = None, **kw: Any) -> None:
        super().__init__(max_mem=max_mem, **kw)
        self.lock = UiFirstLock()

    def _turn(self) -> threading.RLock:
        # wait while the UI is waiting for the lock (it holds the gate), then take the lock
        gate = self.lock.gate
        gate.acquire()
        gate.release()
        return self.lock.lock

    def ingest(self, conn_id: str, kind: str, message: Any) -> None:
        with self._turn():
            super().ingest(conn_id, kind, message)

    def check_memory(self) -> int:
        with self._turn():
            return super().check_memory()

    def disconnect(self, conn_id: str, *, gone: bool = True) -> None:
        with self._turn():
            super().disconnect(conn_id, gone=gone)


def check_free(host: str, port: int) -> None:
    """Raise ``OSError`` now (before any UI) when ``host:port`` cannot be listened on."""
    if port == 0:
        return
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)


class LiveServer:
    """Runs :func:`serve_collector` in a trio thread; :meth:`stop` ends it."""

    def __init__(self, collector: Collector, host: str, port: int, ws_port: int | None) -> None:
        self.collector = collector
        self.host, self.port, self.ws_port = host, port, ws_port
        self.bound: tuple[int, int | None] | None = None
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        #: more servers to run in the collector's trio thread (``--fwd-data``, the web
        #: server): async functions taking ``task_status``, started before the collector
        self.services: list[Any] = []

    def start(self, on_ready=None) -> None:
        import trio  # only with live data: a UI on an imported dump does without it

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._scope = scope
                self._ready.set()
                async with trio.open_nursery() as nursery:
                    for service in self.services:
                        await nursery.start(service)
                    self.bound = await nursery.start(
                        lambda task_status: serve_collector(
                            self.collector, self.host, self.port, ws_port=self.ws_port,
                            task_status=task_status,
                        )
                    )  # fmt: skip
                    if on_ready is not None:
                        on_ready(self.bound)

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as err:  # noqa: BLE001 - reported by the CLI
                self.error = err
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=run, name="am-dbg-collector", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._thread is None:
            return
        import trio

        self._ready.wait(5)
        if self._token is not None and self._scope is not None:
            try:
                self._token.run_sync_soon(self._scope.cancel)
            except trio.RunFinishedError:
                pass
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5)
