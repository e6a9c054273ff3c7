"""One HTTP/1.1 request answered by an ASGI application, driven by trio through ``h11``.

Why this exists: the debugger's web port (:mod:`dbg.web`) parses requests with
``websockets``' sans-I/O parser, which reads request heads only (it is made for WebSocket
handshakes and refuses a body). The MCP endpoint takes JSON-RPC in POST bodies and answers
with JSON or a stream of Server-Sent Events, and the MCP SDK serves that as an ASGI
application. ``h11`` is the sans-I/O HTTP/1.1 parser that the Python ASGI servers
(hypercorn, uvicorn) build on; here it reads a request's head (:func:`read_head`, so that the
web port can route on the path), then its body, and frames the app's answer. One request per
connection, answered with ``Connection: close``, as the rest of the port does.

Why not an ASGI server for the whole port (hypercorn has a trio worker): the port's other
paths (the index, the files of ``--dir`` sent with ``sendfile``, the telemetry and viewer
WebSockets) are written against the relay's connection driver, and stay as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
import trio

__all__ = ["AsgiApp", "Head", "read_head", "respond", "serve_asgi"]

#: An ASGI 3 application.
AsgiApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

READ_SIZE = 1 << 16
#: seconds a request body may pause between reads
BODY_TIMEOUT = 10.0


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


@dataclass
class Head:
    """What :func:`read_head` read: the parser, the request (None: not a request ``h11``
    takes, or the peer left) and every byte read so far (for another parser to go on)."""

    conn: h11.Connection
    request: h11.Request | None
    raw: bytes

    @property
    def path(self) -> str:
        """The request's decoded URL path ("" without a request)."""
        if self.request is None:
            return ""
        return unquote(urlsplit(self.request.target.decode("latin-1")).path)


async def _receive(stream: trio.abc.ReceiveStream) -> bytes:
    try:
        return bytes(await stream.receive_some(READ_SIZE))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""  # reset by the peer: gone, as with a close


async def read_head(stream: trio.abc.ReceiveStream) -> Head:
    """Read until a whole request head is in (the caller bounds the time)."""
    conn = h11.Connection(h11.SERVER)
    raw = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return Head(conn, None, bytes(raw))
        if isinstance(event, h11.Request):
            return Head(conn, event, bytes(raw))
        if event is not h11.NEED_DATA:  # the peer closed before a whole head
            return Head(conn, None, bytes(raw))
        data = await _receive(stream)
        raw += data
        conn.receive_data(data)  # b"": end of stream


async def respond(
    stream: trio.abc.Stream, head: Head, status: int, text: str, *, headers: list | None = None
) -> None:
    """A plain-text answer to the request of ``head`` (no app involved: a refusal)."""
    body = (text + "\n").encode()
    fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *(headers or []),
    ]
    try:
        response = h11.Response(status_code=status, headers=fields, reason=_reason(status))
        await stream.send_all(head.conn.send(response))
        await stream.send_all(head.conn.send(h11.Data(data=body)) or b"")
        await stream.send_all(head.conn.send(h11.EndOfMessage()) or b"")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def serve_asgi(
    stream: trio.SocketStream,
    head: Head,
    app: AsgiApp,
    *,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Let ``app`` answer the request of ``head`` on ``stream``, then close the stream.
    Returns when the answer is out or the peer has gone (``http.disconnect`` tells the app
    so: an SSE stream ends). ``extra_headers`` go into the answer unless the app set them."""
    try:
        async with trio.open_nursery() as nursery:
            exchange = _Exchange(stream, head, nursery, extra_headers)
            try:
                await app(exchange.scope(), exchange.receive, exchange.send)
            finally:
                if not exchange.started:
                    await respond(stream, head, 500, "internal error: no answer")
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            try:
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await stream.aclose()


class _Exchange:
    """One request and its answer, as ASGI's ``receive`` and ``send``."""

    def __init__(
        self,
        stream: trio.SocketStream,
        head: Head,
        nursery: trio.Nursery,
        extra_headers: Sequence[tuple[bytes, bytes]],
    ) -> None:
        assert head.request is not None
        self.stream, self.head, self.request = stream, head, head.request
        self.conn, self.nursery, self.extra_headers = head.conn, nursery, extra_headers
        self.gone = trio.Event()  # the peer closed (or the socket broke)
        self.body_done = self.started = self.finished = False

    def scope(self) -> dict[str, Any]:
        request = self.request
        parts = urlsplit(request.target.decode("latin-1"))
        sock = self.stream.socket
        client: tuple | None = None
        server: tuple | None = None
        try:
            client, server = tuple(sock.getpeername()[:2]), tuple(sock.getsockname()[:2])
        except OSError:
            pass
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(),
            "method": request.method.decode(),
            "scheme": "http",
            "path": unquote(parts.path),
            "raw_path": parts.path.encode("latin-1"),
            "query_string": parts.query.encode("latin-1"),
            "root_path": "",
            "headers": [(bytes(k), bytes(v)) for k, v in request.headers],
            "client": client,
            "server": server,
            "state": {},
        }

    async def _watch_close(self) -> None:
        # after the body only the end of the stream is read: the client left
        while await _receive(self.stream):
            pass
        self.gone.set()

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        while not self.body_done:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                break
            if event is h11.NEED_DATA:
                data = b""  # a client that stops sending its body counts as gone
                with trio.move_on_after(BODY_TIMEOUT):
                    data = await _receive(self.stream)
                conn.receive_data(data)
            elif isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            elif isinstance(event, h11.EndOfMessage):
                self.body_done = True
                self.nursery.start_soon(self._watch_close)
                return {"type": "http.request", "body": b"", "more_body": False}
            else:
                break  # the peer closed mid-body
        if not self.body_done:
            self.gone.set()
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _write(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data and not self.gone.is_set():
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.gone.set()  # the app hears it from receive(); what it sends is dropped

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.started:
            self.started = True
            fields = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            names = {k.lower() for k, _ in fields}
            fields += [(k, v) for k, v in self.extra_headers if k.lower() not in names]
            fields.append((b"connection", b"close"))
            status = message["status"]
            await self._write(
                h11.Response(status_code=status, headers=fields, reason=_reason(status))
            )
        elif kind == "http.response.body" and self.started and not self.finished:
            if body := message.get("body", b""):
                await self._write(h11.Data(data=body))
            if not message.get("more_body", False):
                self.finished = True
                await self._write(h11.EndOfMessage())
        else:
            raise RuntimeError(f"ASGI message {kind!r} out of order")
