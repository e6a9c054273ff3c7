"""``--fwd-data``: every producer's telemetry, as received, duplicated to other debuggers.

Why one outgoing connection per producer connection and target: a debugger binds each machine
to the connection that sent its schema, and marks it disconnected when that connection ends.
Forwarding each producer's stream over a connection of its own keeps both meanings in the
mirror: the second instance sees the same machines, transitions and disconnects.

Frames travel as the producer sent them (split at frame boundaries, never re-encoded). The
collector must never wait for a slow or dead mirror: each link has a bounded queue; when it is
full, transition frames are dropped and counted (:attr:`Forwarder.dropped`), schema frames are
always kept (they are small and a mirror cannot read later transitions without them). A target
that cannot be reached is one log line until it works again; the collector goes on.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import astuple

import trio

from machines.addr import parse_hostport
from machines.framing import HEADER

__all__ = ["Forwarder", "check_targets"]

log = logging.getLogger("dbg.forward")

#: Bytes queued per link (producer x target) at most before transition frames are dropped.
MAX_QUEUED = 8 << 20
#: Seconds to dial a target.
DIAL_TIMEOUT = 5.0


def check_targets(addrs: Iterable[str], timeout: float = DIAL_TIMEOUT) -> None:
    """Dial every target once (a blocking check before serving): raises ``OSError`` /
    ``ValueError`` with a one-line message naming the first that fails."""
    for addr in addrs:
        host, port = astuple(parse_hostport(addr))
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as err:
            raise OSError(f"cannot forward to {addr}: {err.strerror or err}") from None


class _Link:
    """One producer's stream to one target: a bounded queue of whole frames and its writer."""

    def __init__(self, fwd: Forwarder, target: tuple[str, int], addr: str) -> None:
        self.fwd, self.target, self.addr = fwd, target, addr
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.closed = False  # the producer's connection ended: flush, then close
        self.dead = False  # the target failed: drop (and count) what comes
        self.wake = trio.Event()

    def put(self, frame: bytes, keep: bool) -> None:
        if self.dead or (not keep and self.queued + len(frame) > MAX_QUEUED):
            self.fwd.dropped += 1
            return
        self.queue.append(frame)
        self.queued += len(frame)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    async def run(self) -> None:
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                stream = await trio.open_tcp_stream(*self.target)
        except (OSError, trio.TooSlowError) as err:
            self._fail(f"cannot dial: {getattr(err, 'strerror', None) or str(err) or 'timeout'}")
            return
        self.fwd._up(self.addr)
        async with stream:
            try:
                while True:
                    if self.queue:
                        chunk = b"".join(self.queue)
                        self.queue.clear()
                        self.queued = 0
                        await stream.send_all(chunk)
                        self.fwd.sent += len(chunk)
                        continue
                    if self.closed:
                        return
                    self.wake = trio.Event()
                    await self.wake.wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as err:
                self._fail(f"connection lost: {err}")

    def _fail(self, why: str) -> None:
        self.dead = True
        self.fwd.dropped += len(self.queue)
        self.queue.clear()
        self.queued = 0
        self.fwd._down(self.addr, why)


class Forwarder:
    """The collector's tap (see :attr:`dbg.collector.Collector.tap`) that mirrors every
    producer connection to each of ``targets`` (``HOST:PORT`` of other debuggers)."""

    def __init__(self, targets: list[str], notify: Callable[[str], None] | None = None) -> None:
        #: also hears each log line (the UI shows it in its status bar)
        self.notify = notify
        self.targets = [(a, astuple(parse_hostport(a))) for a in targets]
        self.dropped = 0  # frames not forwarded (queue full or target down), all links
        self.sent = 0  # bytes forwarded
        self._links: dict[str, list[_Link]] = {}
        self._rest: dict[str, bytearray] = {}  # conn id -> bytes of an unfinished frame
        self._down_addrs: set[str] = set()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the links' tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # the tap: called by the collector's connection tasks, in the forwarder's trio run

    def data(self, conn_id: str, data: bytes, kinds: list[str]) -> None:
        """``data`` from producer ``conn_id``, of which whole frames of ``kinds`` were just
        decoded (an unfinished one waits for the next call)."""
        if self._nursery is None:
            return
        rest = self._rest.setdefault(conn_id, bytearray())
        rest += data
        links = self._links.get(conn_id)
        if links is None:
            links = self._links[conn_id] = [_Link(self, t, a) for a, t in self.targets]
            for link in links:
                self._nursery.start_soon(link.run)
        view, off = memoryview(rest), 0
        for kind in kinds:
            (size,) = HEADER.unpack_from(view, off)
            frame = bytes(view[off : off + 4 + size])
            off += 4 + size
            for link in links:
                link.put(frame, keep=kind == "schema")
        view.release()
        del rest[:off]

    def closed(self, conn_id: str) -> None:
        """Producer ``conn_id`` went away: close its links once their queues are out."""
        self._rest.pop(conn_id, None)
        for link in self._links.pop(conn_id, ()):
            link.close()

    def _down(self, addr: str, why: str) -> None:
        if addr not in self._down_addrs:
            self._down_addrs.add(addr)
            self._say(f"--fwd-data {addr}: {why}; dropping its data (counted)")

    def _up(self, addr: str) -> None:
        if addr in self._down_addrs:
            self._down_addrs.discard(addr)
            self._say(f"--fwd-data {addr}: reachable again (for new connections)")

    def _say(self, line: str) -> None:
        log.warning("dbg: %s", line)
        if self.notify is not None:
            try:
                self.notify(line)
            except Exception:  # e.g. the UI is closing: the log line is enough
                pass
