"""One client connection of the relay's HTTP port, driven by trio.

The protocol work is done by the sans-I/O ``websockets.server.ServerProtocol`` (its HTTP/1.1
request parser, its WebSocket framing with C-accelerated unmasking); this module only moves
bytes between it and the socket:

- reads happen only when a caller asks for data, so a consumer that stops reading stops the
  relay reading this socket (backpressure, not buffering);
- writes leave through one ordered queue: whichever task finds the queue idle writes it out;
  a sender that finds another task writing waits until its bytes are out, while control
  replies (pong, close) are just queued behind;
- every wait is an ordinary trio wait, so a cancel scope interrupts a write to a client that
  stopped reading; the unwritten rest of the frame stays queued, so the stream stays whole.

One request per connection: the relay answers plain HTTP with ``Connection: close``, which
keeps the driver small; browsers open a few parallel connections for a page anyway.
"""

from __future__ import annotations

import email.utils
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import trio
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from relay import fastio
from relay.security import pick_subprotocol

#: Bytes read from the socket at once.
# 128 KiB, not more: CPython allocates the whole size for every read, and glibc serves bigger
# blocks so that each read of a small message costs ~13 us more (measured: 2.4 vs 15 us),
# while full reads are no faster.
READ_SIZE = 1 << 17
#: Seconds a client has to send its request head.
REQUEST_TIMEOUT = 10.0
#: Seconds spent closing: flushing, then reading until the peer closes too.
LINGER_TIMEOUT = 1.0

# The protocol logs every handshake at INFO; the relay logs its tunnels itself.
_PROTOCOL_LOG = logging.getLogger("relay.websocket")
_PROTOCOL_LOG.setLevel(logging.WARNING)


if TYPE_CHECKING:
    from websockets.frames import Frame

    class ReceivedFrame(Frame):
        """A frame from a client: its payload is new ``bytes`` (clients mask every frame and
        unmasking copies it; no extension, which could hand back other buffers, is
        negotiated). ``Frame`` types the payload for frames built to be sent, too."""

        data: bytes

    class OpenProtocol(ServerProtocol):
        """The ``ServerProtocol`` once the upgrade request is read: it yields frames only.

        ``websockets`` types ``events_received`` for every state (the request, too); this
        says what holds after it, for the type checker (at run time it is ``ServerProtocol``).
        """

        # A list is invariant, so no override may narrow its items; but in this state the
        # list returned holds nothing else.
        def events_received(self) -> list[ReceivedFrame]: ...  # type: ignore[override]

else:
    OpenProtocol = ServerProtocol


def _select_subprotocol(
    protocol: ServerProtocol, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    return pick_subprotocol(offered)


class Connection:
    """The socket of one client and the ``ServerProtocol`` that parses it."""

    def __init__(self, stream: trio.SocketStream, max_message: int) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno()
        self._reader = fastio.SocketReader(self.fd, READ_SIZE)
        # No ``extensions``: permessage-deflate is never negotiated (tunnels carry bytes that
        # rarely compress, and inflating would let a small frame grow past the size limit).
        self.protocol = ServerProtocol(
            max_size=max_message, select_subprotocol=_select_subprotocol, logger=_PROTOCOL_LOG
        )
        #: The socket gave end of stream (or an error, which reads the same).
        self.eof = False
        #: Writing failed (or a file body was cut short): only closing is left.
        self.broken = False
        self._out: deque[bytes | memoryview] = deque()
        self._writing = False
        self._idle: trio.Event | None = None
        self._shut = False

    @property
    def peer_host(self) -> str:
        """The client's IP address ("" if the socket cannot tell)."""
        try:
            return str(self.stream.socket.getpeername()[0])
        except (OSError, IndexError):
            return ""

    # Reading

    async def receive(self) -> bool:
        """Read once from the socket into the protocol; False at end of stream."""
        try:
            data = await self._reader.recv()
        except OSError:
            data = b""  # reset by the peer: it has gone, as with a close
        if data:
            self.protocol.receive_data(data)
            return True
        self.eof = True
        self.protocol.receive_eof()
        return False

    async def read_request(self) -> Request | None:
        """The request head, or None when the client sent none (the answer, if any, is out)."""
        protocol = self.protocol
        while True:
            for event in protocol.events_received():
                if isinstance(event, Request):
                    return event
            out = protocol.data_to_send()
            if out:
                # The parser gave up; it answers only some errors (414, 431) by itself.
                exc = protocol.handshake_exc
                cause = exc.__cause__ if exc is not None else None
                if out == [b""] and exc is not None and not isinstance(cause, EOFError):
                    reason = f"bad HTTP request: {cause or exc}"
                    out.insert(0, protocol.reject(400, reason + "\n").serialize())
                elif out[0][:9] == b"HTTP/1.1 " and exc is not None:
                    # 414 / 431: the parser's own answer speaks of a WebSocket even to a
                    # plain GET; the same status with a plain reason instead
                    status = int(out[0][9:12])
                    out[0] = protocol.reject(status, f"bad HTTP request: {exc}\n").serialize()
                self._out.extend(out)
                await fastio.checkpoint()
                await self._write(wait=True)
                return None
            if self.eof:
                return None
            await self.receive()

    # Writing

    def queue(self, chunks: list[bytes]) -> None:
        """Queue bytes the protocol produced; :meth:`flush` sends them."""
        self._out.extend(chunks)

    async def flush(self, *, wait: bool = True) -> None:
        """Send what the protocol has queued; with ``wait``, return once it is written.

        A cancellation never cuts a frame: what is not yet written stays queued, in order,
        for the next flush (the close frame, say).
        """
        await fastio.checkpoint()
        out = self.protocol.data_to_send()
        if self._out or self.broken or len(out) != 1 or not out[0]:
            self._out.extend(out)
            if self._out:
                await self._write(wait=wait)
            return
        # The common case, one frame and nothing queued: straight to the kernel.
        chunk = out[0]
        try:
            sent = os.write(self.fd, chunk)
        except BlockingIOError:
            sent = 0
        except OSError as err:
            self.broken = True
            raise trio.BrokenResourceError(f"the connection broke: {err}") from err
        if sent < len(chunk):
            self._out.append(memoryview(chunk)[sent:])
            await self._write(wait=wait)

    async def respond(self, response: Response) -> None:
        """Send a plain HTTP response (headers and body)."""
        await fastio.checkpoint()
        self._out.append(response.serialize())
        await self._write(wait=True)

    async def reject(self, status: int, reason: str, headers: Headers | None = None) -> None:
        """Answer with ``status`` and a one-line plain-text reason; the connection then ends."""
        response = self.protocol.reject(status, reason + "\n")
        if headers is not None:
            response.headers.update(headers)
        await self.respond(response)

    async def send_file(self, fileno: int, size: int) -> None:
        """Send ``size`` bytes of an open file after what is queued (zero-copy)."""
        await self._write(wait=True)
        offset = 0
        while offset < size:
            await fastio.checkpoint()
            try:
                sent = os.sendfile(self.fd, fileno, offset, size - offset)
            except BlockingIOError:
                sent = -1
            if sent == 0:
                raise trio.BrokenResourceError("file shrank while being sent")
            if sent > 0:
                offset += sent
                self.broken = True  # until the whole body is out: a cut body cannot resume
            if offset < size:
                await fastio.wait_writable(self.fd)
        self.broken = False

    async def _write(self, *, wait: bool) -> None:
        """Write the queue out; the caller has passed a checkpoint already."""
        if self._writing:
            # Another task is writing; it sends our bytes too, in order.
            if wait:
                if self._idle is None:
                    self._idle = trio.Event()
                await self._idle.wait()
                if self.broken:
                    raise trio.BrokenResourceError("the connection broke while writing")
            return
        if self.broken:
            raise trio.BrokenResourceError("the connection broke while writing")
        self._writing = True
        out = self._out
        try:
            while out:
                chunk = out[0]
                if not chunk:  # the protocol's end-of-stream marker
                    out.popleft()
                    self._shutdown()
                    continue
                try:
                    sent = os.write(self.fd, chunk)
                except BlockingIOError:
                    sent = 0
                if sent == len(chunk):
                    out.popleft()
                    continue
                out[0] = memoryview(chunk)[sent:]  # the rest stays first in line
                await fastio.wait_writable(self.fd)
        except OSError as err:
            self.broken = True
            out.clear()
            raise trio.BrokenResourceError(f"the connection broke: {err}") from err
        finally:
            self._writing = False
            if self._idle is not None:
                self._idle.set()
                self._idle = None

    def _shutdown(self) -> None:
        if not self._shut:
            self._shut = True
            try:
                self.stream.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    # Closing

    async def finish(self) -> None:
        """Close cleanly: send what is queued, half-close, read until the peer closes too.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the answer or close frame still in flight; hence the bounded lingering read. Shielded
        (and bounded), so a cancelled relay still closes every connection this way.
        """
        with trio.CancelScope(shield=True):
            try:
                # With bytes still queued, an earlier write stalled: the peer is not reading.
                if not self._out and not self.broken:
                    with trio.move_on_after(LINGER_TIMEOUT):
                        await self._linger()
            finally:
                self.stream.socket.close()

    async def _linger(self) -> None:
        try:
            await self.flush()
            self._shutdown()
            while not self.eof:
                await self.receive()
                self.protocol.events_received()  # discarded: the exchange is over
                await self.flush()
        except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError):
            pass  # gone, or a handler's stray task still uses the stream: just close


#: What answers one request: the connection, the request and its decoded URL path.
Handler = Callable[["Connection", Request, str], Awaitable[None]]


def is_upgrade(request: Request) -> bool:
    """Does the request ask for a WebSocket?"""
    return any("websocket" in v.lower() for v in request.headers.get_all("Upgrade"))


async def serve_one(conn: Connection, handle: Handler, log: logging.Logger) -> None:
    """Read one request (within REQUEST_TIMEOUT), let ``handle`` answer it, close the
    connection. A dropped peer is a debug line; any other failure is logged and ends only
    this connection, never the server."""
    try:
        request = None
        with trio.move_on_after(REQUEST_TIMEOUT):
            request = await conn.read_request()
        if request is None:
            return
        await handle(conn, request, unquote(urlsplit(request.path).path))
    except trio.BrokenResourceError as err:
        log.debug("connection dropped: %s", err)
    except Exception:  # one connection's bug must not take the server down
        # the message names its source, as every log line does (``relay``, ``dbg``)
        log.exception("%s: a connection failed", log.name.partition(".")[0])
    finally:
        await conn.finish()


def http_date(timestamp: float | None = None) -> str:
    """An HTTP date (RFC 9110), now or at ``timestamp``."""
    return email.utils.formatdate(timestamp, usegmt=True)
