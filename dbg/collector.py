"""The debugger's collector: receives telemetry from many machines and keeps their history.

:class:`Collector` is the store (no I/O): connections are ids, frames arrive as decoded
``(kind, message)`` pairs. :func:`serve_collector` is the trio driver: a TCP listener speaking
the frame format of :mod:`machines.telemetry`, and optionally a WebSocket listener (path
``/dbg.ws``, one or more frames per binary message) for machines running in a browser.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from machines.telemetry import TX_FIELDS, FrameDecoder, FrameError, tx_message

from .model import DbgMsgStruct, DbgMsgTx, MachineDump, ns_to_time

__all__ = ["Collector", "MachineRecord", "serve_collector"]

log = logging.getLogger("dbg.collector")
_CLOCKS = TX_FIELDS.index("clocks")


@dataclass
class MachineRecord:
    """One machine as the debugger knows it.

    Transitions arrive faster than they can be parsed into :class:`DbgMsgTx` objects, so they
    are kept raw (as received, with their arrival time) and parsed on first read of
    :attr:`txs`; one that fails to parse is counted in :attr:`bad` and logged once.
    """

    schema: DbgMsgStruct
    conn_id: str
    connected: bool = True
    bad: int = 0
    _txs: list[DbgMsgTx] = field(default_factory=list)
    _raw: list[tuple[Any, int]] = field(default_factory=list)

    @property
    def txs(self) -> list[DbgMsgTx]:
        if self._raw:
            raw, self._raw = self._raw, []
            for arr, arrived in raw:
                try:
                    tx = DbgMsgTx.from_dict(tx_message(arr, self.schema.tx_id_prefix))
                except ValueError as err:
                    if not self.bad:
                        log.warning(
                            "dbg: %s: skipped a malformed transition: %s", self.schema.id, err
                        )
                    self.bad += 1
                    continue
                if tx.time is None:
                    tx.time = ns_to_time(arrived)
                self._txs.append(tx)
        return self._txs

    @txs.setter
    def txs(self, txs: list[DbgMsgTx]) -> None:
        self._txs, self._raw = txs, []

    def __len__(self) -> int:
        return len(self._txs) + len(self._raw)

    def read(self, limit: int) -> list[DbgMsgTx]:
        """The history after parsing at most ``limit`` more pending transitions (the rest
        stay pending, in order): a UI reads a flood a slice at a time instead of stalling.
        Call it where :meth:`Collector.ingest` cannot run at the same time."""
        pending = self._raw
        if len(pending) <= limit:
            return self.txs
        self._raw = pending[:limit]
        txs = self.txs
        self._raw = pending[limit:]
        return txs

    def latest_clocks(self) -> list[int]:
        """Clocks after the newest transition without parsing the pending ones ([] when
        none): summaries such as the UI's machine list stay cheap while data streams in."""
        if self._raw:
            clocks = self._raw[-1][0][_CLOCKS]
            return clocks if isinstance(clocks, list) else []
        return self._txs[-1].clocks if self._txs else []


class Collector:
    """History of every machine that reported, keyed by machine id."""

    def __init__(self) -> None:
        self.machines: dict[str, MachineRecord] = {}
        self.ignored = 0  # transitions dropped: unknown machine or foreign connection
        self.total_txs = 0
        self.buffered = 0  # transitions since the last rotate()
        self._conn_ids = itertools.count(1)
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` after every change (ingest, disconnect); returns an unsubscribe."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def _changed(self) -> None:
        for fn in list(self._listeners):
            fn()

    def connect(self) -> str:
        return f"conn-{next(self._conn_ids)}"

    def disconnect(self, conn_id: str) -> None:
        """Mark the machines of ``conn_id`` disconnected (their history stays)."""
        for rec in self.machines.values():
            if rec.conn_id == conn_id:
                rec.connected = False
        self._changed()

    def ingest(self, conn_id: str, kind: str, message: dict[str, Any]) -> None:
        """Apply one message; raises ``ValueError`` for a malformed one."""
        if kind == "schema":
            schema = DbgMsgStruct.from_dict(message)
            rec = self.machines.get(schema.id)
            if rec is None:
                self.machines[schema.id] = MachineRecord(schema, conn_id)
                self._changed()
                return
            if rec.schema.states_index != schema.states_index:
                # a different machine under the same id: keep what it had, restart its clocks
                rec.txs = [tx for tx in rec.txs if len(tx.clocks) == len(schema.states_index)]
            rec.schema, rec.conn_id, rec.connected = schema, conn_id, True
            self._changed()
            return
        if kind != "txs":
            raise ValueError(f"unknown telemetry message kind {kind!r}")
        now = time.time_ns()
        accepted = bad = 0
        for arr in message:
            # the cheap checks now (routing), the full parse when the history is read
            if not isinstance(arr, list) or len(arr) != len(TX_FIELDS):
                bad += 1  # one bad transition must not cost the rest of its batch
                continue
            rec = self.machines.get(arr[0])
            if rec is None or rec.conn_id != conn_id:
                self.ignored += 1
                continue
            rec._raw.append((arr, now))
            accepted += 1
        self.total_txs += accepted
        self.buffered += accepted
        self._changed()
        if bad:
            raise ValueError(f"{bad} transition(s) not an array of {len(TX_FIELDS)} items")

    async def wait_until(self, predicate: Callable[[Collector], bool]) -> None:
        """Sleep (under trio) until ``predicate(self)`` holds after some change."""
        if predicate(self):
            return
        event = trio.Event()

        def check() -> None:
            if predicate(self):
                event.set()

        unsubscribe = self.subscribe(check)
        try:
            await event.wait()
        finally:
            unsubscribe()

    def dumps(self) -> list[MachineDump]:
        """Every machine with its history, ready for :func:`dbg.dump.write_dump`."""
        return [MachineDump(rec.schema, list(rec.txs)) for rec in self.machines.values()]

    def rotate(self) -> list[MachineDump]:
        """Every machine's schema with the transitions since the last rotation, which are
        then dropped from memory (schemas stay, so each rotated dump loads on its own)."""
        out = []
        for rec in self.machines.values():
            out.append(MachineDump(rec.schema, rec.txs))
            rec.txs = []
        self.buffered = 0
        return out

    def load(self, dumps: list[MachineDump]) -> None:
        """Add imported machines (``--import-data``), marked disconnected."""
        for d in dumps:
            rec = MachineRecord(d.schema, "import", connected=False)
            rec.txs = list(d.txs)
            self.machines[d.schema.id] = rec


async def _feed(
    collector: Collector, conn_id: str, decoder: FrameDecoder, data: bytes, peer: str
) -> bool:
    """Decode and ingest; False (and one log line) when the stream is unusable."""
    try:
        frames = decoder.feed(data)
    except FrameError as err:
        log.warning("dbg: closing %s (%s): %s", conn_id, peer, err)
        return False
    for kind, msg in frames:
        try:
            collector.ingest(conn_id, kind, msg)
        except ValueError as err:
            log.warning("dbg: %s (%s) sent a bad %s message, skipped: %s", conn_id, peer, kind, err)
    return True


async def _tcp_client(collector: Collector, stream: trio.SocketStream) -> None:
    conn_id = collector.connect()
    decoder = FrameDecoder()
    try:
        peer = "{}:{}".format(*stream.socket.getpeername()[:2])
    except OSError:
        peer = "?"
    try:
        async with stream:
            while data := await stream.receive_some(65536):
                if not await _feed(collector, conn_id, decoder, data, peer):
                    return
    except trio.BrokenResourceError:
        pass
    finally:
        collector.disconnect(conn_id)


async def _ws_client(collector: Collector, request: Any) -> None:
    import trio_websocket

    if request.path != "/dbg.ws":
        await request.reject(404, body=b"telemetry lives at /dbg.ws\n")
        return
    ws = await request.accept()
    conn_id = collector.connect()
    decoder = FrameDecoder()
    try:
        while True:
            data = await ws.get_message()
            if isinstance(data, str):
                log.warning("dbg: closing %s: text message on /dbg.ws (want binary)", conn_id)
                await ws.aclose(1003, "binary frames only")
                return
            if not await _feed(collector, conn_id, decoder, data, "ws"):
                await ws.aclose(1007, "bad telemetry frame")
                return
    except trio_websocket.ConnectionClosed:
        pass
    finally:
        collector.disconnect(conn_id)


async def serve_collector(
    collector: Collector,
    host: str,
    port: int,
    *,
    ws_port: int | None = None,
    task_status: trio.TaskStatus[tuple[int, int | None]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve telemetry on TCP ``host:port`` (and WebSocket ``ws_port``, if given) until
    cancelled. ``task_status`` gets the bound ``(port, ws_port)``."""
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, lambda s: _tcp_client(collector, s), listeners)
        bound_ws = None
        if ws_port is not None:
            import trio_websocket

            server = await nursery.start(
                trio_websocket.serve_websocket,
                lambda req: _ws_client(collector, req),
                host,
                ws_port,
                None,
            )
            bound_ws = server.port
        task_status.started((bound, bound_ws))
