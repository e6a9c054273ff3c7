"""Socket reads and writes that wait only when the kernel says so.

trio's stream methods always yield to the scheduler; on a busy tunnel most reads and writes
succeed at once, so trying the non-blocking call first and waiting only on ``EAGAIN`` saves a
scheduler round per chunk, a large share of a small message's latency. One call in
``FAIR_EVERY`` in a row that did not wait still yields, so a tunnel whose sockets never block
cannot starve the others.
Conversely, after a short read the socket is almost surely empty: :class:`SocketReader` then
waits for readiness first instead of paying for a failing read.
"""

from __future__ import annotations

import os

import trio

#: A full scheduler yield once per this many calls that did not have to wait.
FAIR_EVERY = 16
_calls = 0


async def checkpoint() -> None:
    """A cancellation point, and now and then a scheduling point too."""
    global _calls
    _calls += 1
    if _calls >= FAIR_EVERY:
        _calls = 0
        await trio.lowlevel.checkpoint()
    else:
        await trio.lowlevel.checkpoint_if_cancelled()


async def wait_readable(fd: int) -> None:
    """Wait until ``fd`` has data (a real scheduling point, so fairness is served)."""
    global _calls
    _calls = 0
    await trio.lowlevel.wait_readable(fd)


async def wait_writable(fd: int) -> None:
    """Wait until ``fd`` takes data (a real scheduling point, so fairness is served)."""
    global _calls
    _calls = 0
    await trio.lowlevel.wait_writable(fd)


class SocketReader:
    """Reads one socket ``size`` bytes at most at a time; ``b""`` at end of stream."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._drained = False  # the last read was short

    async def recv(self) -> bytes:
        fd = self.fd
        if self._drained:
            await wait_readable(fd)
        else:
            await checkpoint()
        while True:
            try:
                data = os.read(fd, self.size)
            except BlockingIOError:
                await wait_readable(fd)
                continue
            self._drained = len(data) < self.size
            return data


async def send_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data``, waiting only while the kernel's buffer is full (backpressure)."""
    await checkpoint()
    view = memoryview(data)
    while True:
        try:
            sent = os.write(fd, view)
        except BlockingIOError:
            sent = 0
        if sent == len(view):
            return
        view = view[sent:]
        await wait_writable(fd)
