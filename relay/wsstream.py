"""One WebSocket seen as a trio byte stream.

Tunnels carry byte streams: every ``send_all`` becomes one or more binary messages, and
incoming binary frames are concatenated (message boundaries mean nothing). Matcher handlers get
this object as a :class:`trio.abc.Stream`, so anything written for TCP streams (an aRPC client
or server) runs on it unchanged.

Backpressure both ways: ``send_all`` returns once the frame is in the kernel, and the socket is
read only when ``receive_some`` runs out of data, so a slow peer never makes the relay buffer
more than one socket read (plus one message of at most ``max_message`` bytes).
"""

from __future__ import annotations

from collections import deque
from typing import cast

import trio
from websockets.exceptions import InvalidState
from websockets.frames import BINARY, CLOSE, CONT, TEXT
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from relay import fastio
from relay.connection import Connection, OpenProtocol
from relay.pump import Pump, PumpResult

# Close codes (RFC 6455 section 7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
ABNORMAL = 1006
INTERNAL_ERROR = 1011

#: Seconds :meth:`WebSocketStream.aclose` may spend on the close frame (the peer may not read).
CLOSE_TIMEOUT = 2.0

#: Largest binary message the relay sends; bigger writes are split.
MAX_OUT_MESSAGE = 1 << 18


def _reason(text: str) -> str:
    """Trim a close reason to the protocol's 123 bytes of UTF-8."""
    data = text.encode()[:123]
    return data.decode(errors="ignore")


class WebSocketStream(trio.abc.Stream):
    """A trio stream over one WebSocket whose handshake the relay has checked.

    The tunnel accepts it (:meth:`accept`) once its TCP side is ready. A close from the peer
    reads as end of stream (``receive_some`` returns ``b""``), and ``peer_close_code`` tells
    which one it was (1006 when the connection dropped without a close frame). A text message
    breaks the stream: the WebSocket is closed with 1003 and ``receive_some`` raises
    :class:`trio.BrokenResourceError`; so does a protocol error (1002) or an oversized message
    (1009), with that close code sent.
    """

    @classmethod
    async def upgrade(cls, conn: Connection, request: Request) -> WebSocketStream | None:
        """The WebSocket of an upgrade ``request``, not accepted yet; None when the rest of
        its handshake (key, version, method) fails: that answer is sent here."""
        handshake = conn.protocol.accept(request)
        if handshake.status_code != 101:
            await conn.respond(handshake)
            return None
        return cls(conn, request, handshake)

    def __init__(self, conn: Connection, request: Request, handshake: Response) -> None:
        #: The HTTP upgrade request.
        self.request = request
        self._conn = conn
        self._protocol = cast(OpenProtocol, conn.protocol)  # the request was read
        self._handshake = handshake
        self._accepted = False
        self._closed = False  # this side sent a close frame (or refused the upgrade)
        self._eof = False  # the peer closed
        self._sending = False
        self._chunks: deque[bytes] = deque()  # payloads received, not yet read ...
        self._message = b""  # ... the one being read ...
        self._offset = 0  # ... and how much of it was read
        #: Close code and reason this side sent, once it did.
        self.close_code: int | None = None
        self.close_reason: str = ""
        #: Close code and reason the peer sent, once it did (1006: it just went away).
        self.peer_close_code: int | None = None
        self.peer_close_reason: str = ""

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the handshake answers with."""
        return self._handshake.headers.get("Sec-WebSocket-Protocol")

    @property
    def closed(self) -> bool:
        """True once either side ended the WebSocket."""
        return self._closed or self._eof

    async def accept(self) -> None:
        """Finish the handshake (answer 101)."""
        if self._accepted:
            return
        self._protocol.send_response(self._handshake)
        self._accepted = True
        await self._conn.flush()

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Send a close frame once; later calls do nothing.

        Before :meth:`accept` the upgrade is refused instead (HTTP 503 when going away, else
        500) with the reason as body.
        """
        if self._closed:
            return
        self._closed = True
        self.close_code, self.close_reason = code, _reason(reason)
        conn = self._conn
        if conn.broken:
            return  # a write was cut short: no frame can follow
        if not self._accepted:
            status = 503 if code == GOING_AWAY else 500
            await conn.reject(status, reason or "tunnel closed")
            return
        if self._protocol.state is OPEN:
            self._protocol.send_close(code, self.close_reason)
        await conn.flush()

    # trio.abc.Stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the WebSocket was closed by this side")
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this WebSocket")
        self._sending = True
        try:
            if len(data) <= MAX_OUT_MESSAGE:  # the common case: one message
                if self._eof:
                    raise trio.BrokenResourceError("the WebSocket peer has gone")
                if data:
                    try:
                        self._protocol.send_binary(data)
                    except InvalidState:  # closing: the peer sent or was sent a close frame
                        raise trio.BrokenResourceError("the WebSocket peer has gone") from None
                await self._conn.flush()
                return
            view = memoryview(data)
            for start in range(0, len(view), MAX_OUT_MESSAGE):
                if self._closed:
                    raise trio.ClosedResourceError("the WebSocket was closed by this side")
                if self._eof or self._protocol.state is not OPEN:
                    raise trio.BrokenResourceError("the WebSocket peer has gone")
                self._protocol.send_binary(view[start : start + MAX_OUT_MESSAGE])
                await self._conn.flush()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        await fastio.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Next bytes of the stream: the rest of the current message, or up to ``max_bytes``."""
        if self._closed and self._offset >= len(self._message) and not self._chunks:
            raise trio.ClosedResourceError("the WebSocket was closed by this side")
        while self._offset >= len(self._message):
            if self._chunks:
                self._message, self._offset = self._chunks.popleft(), 0
            elif self._eof:
                await fastio.checkpoint()
                return b""
            else:
                await self._pull()
        start = self._offset
        end = len(self._message)
        if max_bytes is not None and max_bytes < end - start:
            end = start + max_bytes
        self._offset = end
        # The common case (a whole message) hands the payload over without a copy.
        if start == 0 and end == len(self._message):
            return self._message
        return self._message[start:end]

    async def _pull(self) -> None:
        """Read the socket once and sort what the protocol made of it."""
        conn = self._conn
        protocol = self._protocol
        await conn.receive()
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is BINARY or opcode is CONT:
                if frame.data:
                    self._chunks.append(frame.data)
            elif opcode is TEXT:
                await self.close(UNSUPPORTED_DATA, "text messages are not supported")
                raise trio.BrokenResourceError("text message on a binary tunnel")
            elif opcode is CLOSE:
                # The protocol has queued the echo of the close frame.
                close = protocol.close_rcvd
                self.peer_close_code = close.code if close is not None else ABNORMAL
                self.peer_close_reason = close.reason if close is not None else ""
                self._eof = True
        if conn.eof and not self._eof:
            self._eof = True
            self.peer_close_code = ABNORMAL
        elif protocol.parser_exc is not None and not self._eof:
            # A protocol error or an oversized message: the protocol queued the close frame.
            sent = protocol.close_sent
            self._closed = True
            if sent is not None:
                self.close_code, self.close_reason = sent.code, sent.reason
            await self._flush_quietly()
            raise trio.BrokenResourceError(f"WebSocket failed: {protocol.parser_exc}")
        # Pongs and close echoes go out; a busy writer takes them along.
        out = protocol.data_to_send()
        if out:
            conn.queue(out)
            await self._flush_quietly(wait=False)

    # Pumping in a worker thread (relay.pump)

    def take_buffered(self) -> list[bytes]:
        """Received bytes not read yet (taken: a pump takes over from here)."""
        chunks = list(self._chunks)
        if self._offset < len(self._message):
            chunks.insert(0, self._message[self._offset :])
        self._chunks.clear()
        self._message, self._offset = b"", 0
        return chunks

    def make_pump(self, tcp_fd: int, read_size: int) -> Pump:
        """A pump for this WebSocket and ``tcp_fd``; nothing else may use either while it runs.

        Received bytes not read yet must be taken first (:meth:`take_buffered`).
        """
        conn = self._conn
        return Pump(self._protocol, conn.fd, tcp_fd, read_size, conn._out)

    async def settle_pump(self, result: PumpResult) -> tuple[int, str] | None:
        """Take over from a pump that stopped; the close code and reason the tunnel ends with
        (None: it was stopped from outside, whose reason stands)."""
        protocol = self._protocol
        if result.reason == "ws_eof":
            self._eof = True
            if result.socket_eof:
                self._conn.eof = True
            close = protocol.close_rcvd
            self.peer_close_code = close.code if close is not None else ABNORMAL
            self.peer_close_reason = close.reason if close is not None else ""
            reason = f"websocket closed by peer: {self.peer_close_code} {self.peer_close_reason}"
            return NORMAL, reason
        if result.reason == "ws_text":
            await self.close(UNSUPPORTED_DATA, "text messages are not supported")
            return self.close_code or UNSUPPORTED_DATA, self.close_reason
        if result.reason == "ws_protocol":
            sent = protocol.close_sent
            self._closed = True
            if sent is not None:
                self.close_code, self.close_reason = sent.code, sent.reason
            await self._flush_quietly()
            return self.close_code or NORMAL, self.close_reason
        if result.reason == "ws_error":
            self._conn.broken = True
            return NORMAL, f"websocket broken: {result.detail}"
        if result.reason == "tcp_eof":
            return NORMAL, "tcp peer closed"
        if result.reason == "tcp_error":
            return NORMAL, f"tcp peer gone: {result.detail}"
        return None

    async def _flush_quietly(self, *, wait: bool = True) -> None:
        try:
            await self._conn.flush(wait=wait)
        except trio.BrokenResourceError:
            pass  # the reader learns it from the socket next

    async def aclose(self) -> None:
        """Close with 1000, as a TCP close would (bounded: the peer may not read)."""
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            await self.close(NORMAL)
