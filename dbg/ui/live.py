"""Live telemetry inside the UI: the trio collector in trio's guest mode on Textual's loop.

Why guest mode: the collector and its servers are trio code, Textual runs on asyncio; guest
mode lets trio schedule its tasks on the asyncio loop's thread, so collector callbacks and
widgets never cross threads.
"""

from __future__ import annotations

import asyncio
import socket

import trio

from dbg.collector import Collector, serve_collector

__all__ = ["LiveServer", "check_free"]


def check_free(host: str, port: int) -> None:
    """Raise ``OSError`` now (before any UI) when ``host:port`` cannot be listened on."""
    if port == 0:
        return
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)


class LiveServer:
    """Runs :func:`serve_collector` as a trio guest; :meth:`stop` ends it."""

    def __init__(self, collector: Collector, host: str, port: int, ws_port: int | None) -> None:
        self.collector = collector
        self.host, self.port, self.ws_port = host, port, ws_port
        self.bound: tuple[int, int | None] | None = None
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._done: asyncio.Future[None] | None = None

    def start(self, on_ready=None) -> None:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    self.bound = await nursery.start(
                        lambda task_status: serve_collector(
                            self.collector, self.host, self.port, ws_port=self.ws_port,
                            task_status=task_status,
                        )
                    )  # fmt: skip
                    if on_ready is not None:
                        on_ready(self.bound)

        def done(outcome) -> None:
            try:
                outcome.unwrap()
            except BaseException as err:  # noqa: BLE001 - shown in the status bar
                self.error = err
            if not self._done.done():
                self._done.set_result(None)

        trio.lowlevel.start_guest_run(
            main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done,
            host_uses_signal_set_wakeup_fd=True,
        )

    async def stop(self) -> None:
        if self._done is None:
            return
        if self._token is not None and self._scope is not None:
            try:
                self._token.run_sync_soon(self._scope.cancel)
            except trio.RunFinishedError:
                pass
        await asyncio.wait_for(asyncio.shield(self._done), 5)
