"""``--ui-web``: the debugger's HTTP port (listen port + 1), shared with ``/dbg.ws``.

- ``/``: an HTML index (the viewer pages, the telemetry socket, a listing of ``--dir``);
- ``/viewer/{mach,graph}``: a page showing ``/viewer/<type>.svg`` (the ``am-vis-<type>.svg``
  symlink in ``--dir``, kept current by ``--output-diagrams``) and reloading it when
  ``/viewer/<type>.ws`` sends ``{"Event": "refresh"}``;
- ``/dbg.ws``: telemetry from browser machines (the same frames as on the TCP port);
- ``/mcp`` (``--ui-mcp``): the MCP endpoint (:mod:`dbg.mcp`);
- any other path: the file of that name in ``--dir``.

Every answer is ``no-cache``: the files change under the same names as the cursor moves. The
port serves the files of ``--dir``, so, unlike the reference, it is not CORS-open (the viewer
is same-origin) and a request whose ``Host`` is not one of the server's own names is refused
(403): another web page, even through DNS rebinding, cannot read ``--dir``. Bound to every
interface (``0.0.0.0``), the server cannot list its names and takes any Host. ``/mcp`` also
refuses a request whose ``Origin`` is not the server's own (the MCP specification asks
servers to check it: a browser sends it with every cross-site request). HTTP and WebSocket
parsing are the relay's (``websockets``' sans-I/O protocol driven by trio,
:mod:`relay.connection`); with ``/mcp`` on, each request's head is read with ``h11`` first
(``websockets`` reads no request bodies; MCP posts JSON-RPC), and a ``/mcp`` request goes on
there (:mod:`dbg.asgi`), any other to the relay's driver with the bytes read so far.
"""

from __future__ import annotations

import html
import json
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import trio
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.http11 import Request, Response

from relay.connection import REQUEST_TIMEOUT, Connection, is_upgrade, serve_one
from relay.security import own_origins
from relay.static import serve_static
from relay.wsstream import WebSocketStream

from .asgi import Head, read_head, respond, serve_asgi
from .collector import Collector, _feed, _Session, end_session

if TYPE_CHECKING:
    from .mcp import DbgMcp

__all__ = ["VIEWER_TYPES", "WebServer"]

log = logging.getLogger("dbg.web")

VIEWER_TYPES = ("mach", "graph")
MCP_PATH = "/mcp"
#: seconds a request to /mcp waits for the endpoint to start (see WebServer._serve_mcp)
MCP_START_TIMEOUT = 30.0
#: seconds after the port is up before the MCP endpoint loads, unless asked for sooner
MCP_LOAD_DELAY = 3.0
HOST_REFUSED = "host not allowed: open the debugger by its own address"
#: Largest WebSocket message taken on /dbg.ws (a telemetry frame is at most 16 MiB).
MAX_MESSAGE = 17 << 20


class _NoCacheConnection(Connection):
    """A relay connection whose every plain HTTP answer is ``no-cache``."""

    async def respond(self, response: Response) -> None:
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-cache"
        await super().respond(response)


class WebServer:
    """Serves the debugger's HTTP port in a trio run; :meth:`refresh` may be called from
    any thread (the diagrams' worker) once :meth:`serve` has started."""

    def __init__(
        self,
        collector: Collector,
        out_dir: Path,
        host: str,
        port: int,
        *,
        diagrams: bool,
        mcp: DbgMcp | None = None,
    ) -> None:
        self.collector, self.out_dir, self.mcp = collector, out_dir, mcp
        self.host, self.port, self.diagrams = host, port, diagrams
        self.bound: int | None = None
        self._own_hosts: frozenset[str] | None = None  # None: bound to every interface
        self._token: trio.lowlevel.TrioToken | None = None
        self._viewers: dict[str, set[_Viewer]] = {t: set() for t in VIEWER_TYPES}
        self._mcp_wanted = trio.Event()  # a request came to /mcp
        self._mcp_ready = trio.Event()
        self._mcp_state = "the MCP endpoint is starting"  # "" once it serves

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.bound}/"

    @property
    def mcp_url(self) -> str | None:
        """The MCP endpoint's address (None with ``--no-ui-mcp``)."""
        return None if self.mcp is None else self.url.rstrip("/") + MCP_PATH

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        self._token = trio.lowlevel.current_trio_token()
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.bound = listeners[0].socket.getsockname()[1]
        if self.host not in ("", "0.0.0.0", "::"):
            origins = own_origins([self.host], self.bound)
            self._own_hosts = frozenset(o.removeprefix("http://") for o in origins)
        async with trio.open_nursery() as nursery:
            if self.mcp is not None:
                nursery.start_soon(self._serve_mcp, self.mcp)
            nursery.start_soon(trio.serve_listeners, self._connection, listeners)
            task_status.started(self.bound)

    async def _serve_mcp(self, mcp: DbgMcp) -> None:
        """Run the MCP sessions beside the port, without holding up its start: the SDK's
        imports take ~2 s of CPU, so they wait for :data:`MCP_LOAD_DELAY` (the UI's first
        screen) unless a client asks sooner. A failure is one log line and a 503 on /mcp, the
        port goes on."""
        with trio.move_on_after(MCP_LOAD_DELAY):
            await self._mcp_wanted.wait()
        try:
            async with mcp.running():
                self._mcp_state = ""
                self._mcp_ready.set()
                await trio.sleep_forever()
        except Exception as err:
            log.exception("dbg: the MCP endpoint failed")
            self._mcp_state = f"the MCP endpoint failed: {err}"
            self._mcp_ready.set()

    def refresh(self, types: set[str]) -> None:
        """Tell the open viewers of ``types`` to reload (thread-safe)."""
        if self._token is None:
            return
        try:
            self._token.run_sync_soon(self._push, set(types))
        except trio.RunFinishedError:
            pass

    def _push(self, types: set[str]) -> None:
        for t in types:
            for viewer in self._viewers.get(t, ()):
                viewer.wake()

    # ----- one connection

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = _NoCacheConnection(stream, MAX_MESSAGE)
        if self.mcp is not None:
            head = None
            with trio.move_on_after(REQUEST_TIMEOUT):
                head = await read_head(stream)
            if head is None:  # no whole request head in time
                await conn.finish()
                return
            if head.path == MCP_PATH:
                await self._mcp(stream, head, self.mcp)
                return
            conn.protocol.receive_data(head.raw)  # the relay's parser reads it again
        await serve_one(conn, self._route, log)

    async def _route(self, conn: Connection, request: Request, path: str) -> None:
        if not self._host_allowed(request.headers.get_all("Host")):
            await conn.reject(403, HOST_REFUSED)
        elif is_upgrade(request):
            await self._websocket(conn, request, path)
        else:
            await self._http(conn, request, path)

    def _host_allowed(self, hosts: list[str]) -> bool:
        if self._own_hosts is None:
            return True
        return len(hosts) == 1 and hosts[0].strip().lower() in self._own_hosts

    async def _mcp(self, stream: trio.SocketStream, head: Head, mcp: DbgMcp) -> None:
        assert head.request is not None
        fields: dict[str, list[str]] = {}
        for name, value in head.request.headers:
            fields.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        hosts, origins = fields.get("host", []), fields.get("origin", [])
        refusal: tuple[int, str] | None = None
        if not self._host_allowed(hosts):
            refusal = (403, HOST_REFUSED)
        elif origins and (len(hosts) != 1 or origins != [f"http://{hosts[0].strip().lower()}"]):
            # a page of another site (the MCP client itself sends no Origin)
            refusal = (403, f"origin not allowed: {origins[0]}")
        else:
            self._mcp_wanted.set()
            with trio.move_on_after(MCP_START_TIMEOUT):
                await self._mcp_ready.wait()
            if self._mcp_state:
                refusal = (503, self._mcp_state)
        if refusal is not None:
            await respond(stream, head, *refusal)
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        try:
            await serve_asgi(stream, head, mcp, extra_headers=[(b"cache-control", b"no-cache")])
        except Exception:  # one request's failure must not take the server down
            log.exception("dbg: an MCP request failed")

    async def _http(self, conn: Connection, request: Request, path: str) -> None:
        if path == "/":
            await _document(conn, request, self._index().encode(), "text/html; charset=utf-8")
            return
        kind = path.removeprefix("/viewer/")
        if kind in VIEWER_TYPES:
            page = _VIEWER.replace("__TYPE__", kind)
            await _document(conn, request, page.encode(), "text/html; charset=utf-8")
            return
        if kind.endswith(".svg") and kind[:-4] in VIEWER_TYPES:
            path = f"/am-vis-{kind[:-4]}.svg"  # the symlink to the current diagram
        folder = resolve_dir(self.out_dir, path)
        if folder is not None:
            page = _page(f"am dbg: {path}", self._listing(folder))
            await _document(conn, request, page.encode(), "text/html; charset=utf-8")
            return
        await serve_static(self.out_dir, conn, request, path)

    async def _websocket(self, conn: Connection, request: Request, path: str) -> None:
        kind = path.removeprefix("/viewer/").removesuffix(".ws")
        if path != "/dbg.ws" and not (path.endswith(".ws") and kind in VIEWER_TYPES):
            await conn.reject(404, "not found: WebSockets are /dbg.ws and /viewer/<type>.ws")
            return
        ws = await WebSocketStream.upgrade(conn, request)
        if ws is None:
            return
        await ws.accept()
        if path == "/dbg.ws":
            await self._telemetry(ws, conn.peer_host)
            return
        viewer = _Viewer(conn, ws)
        self._viewers[kind].add(viewer)
        try:
            await viewer.run()
        finally:
            self._viewers[kind].discard(viewer)

    async def _telemetry(self, ws: WebSocketStream, peer: str) -> None:
        session = _Session(self.collector, f"ws {peer}")
        try:
            while data := await ws.receive_some():
                if not _feed(self.collector, session, data):
                    await ws.close(1007, "bad telemetry frame")
                    return
        except trio.BrokenResourceError as err:  # e.g. a text message: closed with 1003
            log.warning("dbg: closing %s: %s", session.conn_id, err)
        finally:
            end_session(self.collector, session.conn_id)

    def _index(self) -> str:
        items = []
        if self.diagrams:
            items += [f'<li><a href="/viewer/{t}">{t} diagram</a></li>' for t in VIEWER_TYPES]
        ws = f"ws://{self.url.split('://', 1)[1]}dbg.ws"
        items.append(f"<li>telemetry from browsers: <code>{html.escape(ws)}</code></li>")
        if self.mcp_url is not None:
            url = html.escape(self.mcp_url)
            items.append(f"<li>MCP (Streamable HTTP, for AI agents): <code>{url}</code></li>")
        return _page("am dbg", "<ul>" + "".join(items) + "</ul>" + self._listing(self.out_dir))

    def _listing(self, folder: Path) -> str:
        """The entries of ``folder`` (inside ``--dir``) as links."""
        e = html.escape
        rel = folder.resolve().relative_to(self.out_dir.resolve()).as_posix()
        prefix = "/" if rel == "." else f"/{quote(rel)}/"
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError as err:
            return f"<p>cannot list {e(str(folder))}: {e(err.strerror or str(err))}</p>"
        files = []
        for p in entries:
            if p.name.startswith("."):
                continue
            name = p.name + ("/" if p.is_dir() else "")
            files.append(f'<li><a href="{prefix}{quote(name)}">{e(name)}</a></li>')
        return f"<h2>{e(str(folder))}</h2><ul>" + "".join(files) + "</ul>"


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;background:#1e1e2e;color:#cdd6f4}"
        f"a{{color:#89b4fa}}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def resolve_dir(root: Path, url_path: str) -> Path | None:
    """The folder ``url_path`` names inside ``root`` (never outside it), or None."""
    parts = [p for p in url_path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or any("\x00" in p or "\\" in p for p in parts):
        return None
    try:
        real = root.joinpath(*parts).resolve(strict=True)
        real.relative_to(root.resolve())
    except (OSError, ValueError):
        return None
    return real if real.is_dir() else None


class _Viewer:
    """One open viewer page: gets ``refresh`` events until it goes away."""

    def __init__(self, conn: Connection, ws: WebSocketStream) -> None:
        self.conn, self.ws = conn, ws
        self._event = trio.Event()

    def wake(self) -> None:
        self._event.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:

            async def read_until_closed() -> None:
                try:
                    while await self.ws.receive_some():
                        pass  # the page sends nothing we need
                except trio.BrokenResourceError:
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(read_until_closed)
            try:
                while True:
                    await self._event.wait()
                    self._event = trio.Event()
                    self.conn.protocol.send_text(json.dumps({"Event": "refresh"}).encode())
                    await self.conn.flush()
            except (trio.BrokenResourceError, InvalidState):  # the page went away
                nursery.cancel_scope.cancel()


async def _document(conn: Connection, request: Request, body: bytes, ctype: str) -> None:
    if request.method not in ("GET", "HEAD"):
        await conn.reject(405, "method not allowed", Headers(Allow="GET, HEAD"))
        return
    headers = Headers(
        [("Connection", "close"), ("Content-Type", ctype), ("Content-Length", str(len(body)))]
    )
    await conn.respond(Response(200, "OK", headers, body if request.method == "GET" else b""))


_VIEWER = resources.files(__package__).joinpath("viewer.html").read_text(encoding="utf-8")
