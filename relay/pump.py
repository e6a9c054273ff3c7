"""Pump an established tunnel's two sockets in a worker thread.

On trio every chunk costs a scheduler round: a task wake-up, a one-shot epoll registration
and a switch per socket wait. That is most of a small message's latency through the relay.
A dedicated thread with a level-triggered epoll loop over the WebSocket's socket, the
TCP socket and a wake-up socket pays only the reads, the writes and one ``epoll_wait`` per
burst; framing stays with the sans-I/O ``websockets`` protocol.

Backpressure as on trio: a direction holds at most one socket read; while it cannot be
written out, its source is not read. The trio side stays in charge of everything else (the
handshake, closing, address files): the thread only moves bytes and says why it stopped, and
a byte on the wake-up socket makes it stop at once (the tunnel was cancelled).
"""

from __future__ import annotations

import os
import select
import selectors
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.frames import BINARY, CLOSE, CONT, TEXT

if TYPE_CHECKING:
    from relay.connection import OpenProtocol

# poll(2) flags; epoll(7) uses the same values on Linux, where epoll is used (elsewhere, poll)
_READ = select.POLLIN
_WRITE = select.POLLOUT
#: Outgoing WebSocket writes (a frame, pongs) queued before the WebSocket is no longer read.
_MAX_QUEUED = 16
_NOT_READ = ~select.POLLIN  # writable, or an error or hang-up
_NOT_WRITE = ~select.POLLOUT  # readable, or an error or hang-up


@dataclass
class PumpResult:
    """Why the pump stopped, and what the trio side must know to close the tunnel."""

    #: "tcp_eof", "tcp_error", "ws_eof", "ws_text", "ws_protocol", "ws_error" or "woken".
    reason: str
    detail: str = ""
    #: The WebSocket's socket gave end of stream (or a reset).
    socket_eof: bool = False
    #: WebSocket bytes the protocol produced but the socket did not take (sent on close).
    unsent: deque[bytes | memoryview] = field(default_factory=deque)


class Pump:
    """Moves bytes between one WebSocket (``ws_fd`` + ``protocol``) and one TCP socket."""

    def __init__(
        self,
        protocol: OpenProtocol,
        ws_fd: int,
        tcp_fd: int,
        read_size: int,
        unsent: deque[bytes | memoryview],
    ) -> None:
        self.protocol = protocol
        self.ws_fd = ws_fd
        self.tcp_fd = tcp_fd
        self.read_size = read_size
        self._to_ws = unsent  # WebSocket bytes waiting for the socket, in order
        self._to_tcp: memoryview | None = None  # payload bytes waiting for the TCP socket
        #: Payload bytes moved so far, both ways (read by the trio side: a plain int is safe).
        self.moved = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def wake(self) -> None:
        """Make :meth:`run` return soon ("woken"); safe from any thread, any number of times."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # the buffer is full (already woken) or the pump is gone

    def close(self) -> None:
        self._wake_r.close()
        self._wake_w.close()

    # The loop (runs in the worker thread)

    def run(self) -> PumpResult:
        ws_fd, tcp_fd, wake_fd = self.ws_fd, self.tcp_fd, self._wake_r.fileno()
        # epoll itself rather than ``selectors``: its per-call bookkeeping is a measurable share
        # of a small message's cost. Level-triggered, registered once; interest changes only
        # when a socket's buffer fills.
        ep = select.epoll() if hasattr(select, "epoll") else select.poll()
        try:
            ep.register(wake_fd, _READ)
            ws_mask = tcp_mask = _READ
            ep.register(ws_fd, ws_mask)
            ep.register(tcp_fd, tcp_mask)
            # Frames the protocol parsed before the pump took over go first.
            result = self._from_ws(None) if self.protocol.events else None
            if result is None and self._to_ws:
                result = self._write_ws()
            poll = ep.poll
            while result is None:
                # Read a side only when the other side took everything from its last read.
                # The WebSocket is read while its own output is stuck (the client may be
                # writing before it reads), but not without end: pongs queue up there.
                reading_ws = self._to_tcp is None and len(self._to_ws) < _MAX_QUEUED
                want_ws = (_READ if reading_ws else 0) | (_WRITE if self._to_ws else 0)
                want_tcp = (_READ if not self._to_ws else 0) | (
                    _WRITE if self._to_tcp is not None else 0
                )
                if want_ws != ws_mask:
                    ws_mask = self._set(ep, ws_fd, ws_mask, want_ws)
                if want_tcp != tcp_mask:
                    tcp_mask = self._set(ep, tcp_fd, tcp_mask, want_tcp)
                for fd, events in poll():
                    # Errors and hang-ups read as both: the read or write then tells what.
                    if fd == wake_fd:
                        result = PumpResult("woken")
                    elif fd == ws_fd:
                        if events & _NOT_READ and self._to_ws:
                            result = self._write_ws()
                        if result is None and events & _NOT_WRITE and self._to_tcp is None:
                            result = self._read_ws()
                    else:
                        if events & _NOT_READ and self._to_tcp is not None:
                            result = self._write_tcp()
                        if result is None and events & _NOT_WRITE and not self._to_ws:
                            result = self._read_tcp()
                    if result is not None:
                        break
            result.unsent = self._to_ws
            return result
        finally:
            if hasattr(ep, "close"):  # poll objects hold no descriptor
                ep.close()

    @staticmethod
    def _set(ep: Any, fd: int, old: int, new: int) -> int:
        # Unregistered rather than registered for nothing: epoll would still report a hang-up.
        if not old:
            ep.register(fd, new)
        elif not new:
            ep.unregister(fd)
        else:
            ep.modify(fd, new)
        return new

    # TCP -> WebSocket

    def _read_tcp(self) -> PumpResult | None:
        try:
            data = os.read(self.tcp_fd, self.read_size)
        except BlockingIOError:
            return None
        except OSError as err:
            return PumpResult("tcp_error", str(err))
        if not data:
            return PumpResult("tcp_eof")
        self.moved += len(data)
        protocol = self.protocol
        protocol.send_binary(data)
        self._to_ws.extend(protocol.data_to_send())
        return self._write_ws()

    def _write_ws(self) -> PumpResult | None:
        out = self._to_ws
        fd = self.ws_fd
        try:
            while out:
                chunk = out[0]
                if not chunk:  # the protocol's end-of-stream marker: the trio side acts on it
                    return PumpResult("ws_eof")
                sent = os.write(fd, chunk)
                if sent == len(chunk):
                    out.popleft()
                else:
                    out[0] = memoryview(chunk)[sent:]
                    return None
        except BlockingIOError:
            return None
        except OSError as err:
            out.clear()
            return PumpResult("ws_error", str(err))
        return None

    # WebSocket -> TCP

    def _read_ws(self) -> PumpResult | None:
        try:
            data = os.read(self.ws_fd, self.read_size)
        except BlockingIOError:
            return None
        except OSError:
            data = b""  # reset by the peer: it has gone, as with a close
        return self._from_ws(data)

    def _from_ws(self, data: bytes | None) -> PumpResult | None:
        """Handle what ``data`` completes (None: frames parsed already; b"": end of stream)."""
        protocol = self.protocol
        if data:
            protocol.receive_data(data)
        elif data is not None:
            protocol.receive_eof()
        payload: list[bytes] = []
        end: PumpResult | None = None
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is BINARY or opcode is CONT:
                if frame.data:
                    payload.append(frame.data)
            elif opcode is TEXT:
                end = PumpResult("ws_text")
                break
            elif opcode is CLOSE:
                end = PumpResult("ws_eof")
        if end is None:
            if data == b"":
                end = PumpResult("ws_eof", socket_eof=True)
            elif protocol.parser_exc is not None:
                end = PumpResult("ws_protocol", str(protocol.parser_exc))
        # Pongs and close echoes go out after what is already queued.
        out = protocol.data_to_send()
        if out:
            self._to_ws.extend(out)
        if payload and (end is None or end.reason == "ws_eof"):
            self._to_tcp = memoryview(payload[0] if len(payload) == 1 else b"".join(payload))
            self.moved += len(self._to_tcp)
            result = self._write_tcp()
            if result is not None:
                return result
            if end is not None and self._to_tcp is not None:
                # The peer closed: what it sent before still reaches the TCP peer.
                self._drain_tcp()
        if end is None and self._to_ws:
            end = self._write_ws()
        return end

    def _write_tcp(self) -> PumpResult | None:
        view = self._to_tcp
        assert view is not None
        try:
            sent = os.write(self.tcp_fd, view)
        except BlockingIOError:
            return None
        except OSError as err:
            self._to_tcp = None
            return PumpResult("tcp_error", str(err))
        self._to_tcp = view[sent:] if sent < len(view) else None
        return None

    def _drain_tcp(self) -> PumpResult | None:
        """Write out ``_to_tcp`` (waiting for the socket), unless woken meanwhile."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._wake_r.fileno(), selectors.EVENT_READ)
            sel.register(self.tcp_fd, selectors.EVENT_WRITE)
            while self._to_tcp is not None:
                for key, _ in sel.select():
                    if key.fd != self.tcp_fd:
                        return PumpResult("woken")
                result = self._write_tcp()
                if result is not None:
                    return result
        return None
