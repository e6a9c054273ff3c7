"""One ASGI WebSocket seen as a trio byte stream.

Tunnels carry byte streams: every ``send_all`` becomes one or more binary messages, and
incoming binary messages are concatenated (their boundaries mean nothing). Matcher handlers get
this object as a :class:`trio.abc.Stream`, so anything written for TCP streams (an aRPC client
or server) runs on it unchanged.

Backpressure comes from the server underneath: ``send_all`` returns only once the frame has
been written to the socket, and the server reads the socket only as fast as
``receive_some`` consumes messages, so a slow peer never makes the relay buffer without bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Close codes (RFC 6455 section 7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
INTERNAL_ERROR = 1011

#: Largest binary message the relay sends; bigger writes are split.
MAX_OUT_MESSAGE = 1 << 18


def _reason(text: str) -> str:
    """Trim a close reason to the protocol's 123 bytes of UTF-8."""
    data = text.encode()[:123]
    return data.decode(errors="ignore")


class WebSocketStream(trio.abc.Stream):
    """A trio stream over one ASGI ``websocket`` connection.

    A close from the peer reads as end of stream (``receive_some`` returns ``b""``): the server
    underneath does not tell the application the peer's close code. A text message breaks the
    stream: the WebSocket is closed with 1003 and ``receive_some`` raises
    :class:`trio.BrokenResourceError`.
    """

    def __init__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._sending = False
        self._message = b""  # the current inbound message ...
        self._offset = 0  # ... and how much of it was read
        self._eof = False
        self._accepted = False
        self._closed = False  # we sent a close frame (or a denial)
        #: Close code and reason this side sent, once it did.
        self.close_code: int | None = None
        self.close_reason: str = ""

    @property
    def closed(self) -> bool:
        """True once either side ended the WebSocket."""
        return self._closed or self._eof

    async def wait_connect(self) -> bool:
        """Wait for the ASGI ``websocket.connect`` event; False when the client already left."""
        event = await self._receive()
        if event["type"] == "websocket.connect":
            return True
        self._eof = True
        return False

    async def accept(self, subprotocol: str | None = None) -> None:
        """Finish the handshake (answer 101)."""
        message: dict[str, Any] = {"type": "websocket.accept"}
        if subprotocol is not None:
            message["subprotocol"] = subprotocol
        await self._send(message)
        self._accepted = True

    async def deny(self, status: int, reason: str) -> None:
        """Refuse the upgrade with a plain HTTP answer (before any socket was opened)."""
        body = (reason + "\n").encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        await self._send(
            {"type": "websocket.http.response.start", "status": status, "headers": headers}
        )
        await self._send({"type": "websocket.http.response.body", "body": body})
        self._closed = True

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Send a close frame once; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self.close_code, self.close_reason = code, _reason(reason)
        if self._eof:
            return  # the peer is gone; nothing to tell it
        if not self._accepted:
            # A close before accept: the server answers the upgrade with 403.
            await self._send({"type": "websocket.close", "code": code})
            return
        await self._send({"type": "websocket.close", "code": code, "reason": self.close_reason})

    # trio.abc.Stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the WebSocket was closed by this side")
        if self._eof:
            raise trio.BrokenResourceError("the WebSocket peer has gone")
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this WebSocket")
        # No lock: a trio.Lock would cost a scheduler round trip per message, and the
        # server below already writes frames to the socket in the order they were made.
        self._sending = True
        try:
            if len(data) <= MAX_OUT_MESSAGE:
                if data:
                    await self._send({"type": "websocket.send", "bytes": bytes(data)})
                else:
                    await trio.lowlevel.checkpoint()
                return
            view = memoryview(data)
            for start in range(0, len(view), MAX_OUT_MESSAGE):
                if self._closed:
                    raise trio.ClosedResourceError("the WebSocket was closed by this side")
                chunk = bytes(view[start : start + MAX_OUT_MESSAGE])
                await self._send({"type": "websocket.send", "bytes": chunk})
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Next bytes of the stream: the rest of the current message, or up to ``max_bytes``."""
        if self._closed and self._offset >= len(self._message):
            raise trio.ClosedResourceError("the WebSocket was closed by this side")
        while self._offset >= len(self._message):
            if self._eof:
                await trio.lowlevel.checkpoint()
                return b""
            event = await self._receive()
            kind = event["type"]
            if kind == "websocket.disconnect":
                self._eof = True
            elif kind == "websocket.receive":
                if event.get("bytes") is None:
                    await self.close(UNSUPPORTED_DATA, "text messages are not supported")
                    raise trio.BrokenResourceError("text message on a binary tunnel")
                self._message, self._offset = bytes(event["bytes"]), 0
        start = self._offset
        end = len(self._message)
        if max_bytes is not None and max_bytes < end - start:
            end = start + max_bytes
        self._offset = end
        # The common case (a whole message) hands the message over without a copy.
        if start == 0 and end == len(self._message):
            return self._message
        return self._message[start:end]

    async def aclose(self) -> None:
        """Close with 1000, as a TCP close would."""
        with trio.CancelScope(shield=True):
            await self.close(NORMAL)
