"""server-foo and the server process: aRPC mux, REPL endpoint and the relay, in one trio run.

The relay serves the page and routes each browser's two tunnels to code in this process (spec
section 3): ``/listen/browser-bar-*`` gets an aRPC client (the server's mirror of that tab's
bar), ``/dial/browser-foo-*`` an aRPC server of server-foo. Unlike the reference, the server
keeps every connected browser: hellos go to each Ready one, and a message from one tab is
forwarded to every other tab with its author.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from machines import Machine
from machines.rpc import RpcError
from machines.rpc.client import Client
from machines.rpc.mux import Mux, serve
from machines.rpc.repl import expose
from relay import RelayConfig, TunnelRequest, WebSocketStream, open_relay

from .config import Config
from .schemas import FOO, REPL_ARGS, author_of, msg_args, msg_of

__all__ = ["SERVER_ID", "Browsers", "FooHandlers", "Server", "StartError", "run_server"]

log = logging.getLogger("machines.example")

SERVER_ID = "server-foo"
BAR_PREFIX = "browser-bar-"
#: the reference stops saying hello once a browser's Msg tick reaches this
HELLO_MAX_MSG_TICK = 20
#: seconds a server-bar client waits for the tab's handshake
HANDSHAKE_TIMEOUT = 10.0
#: tunnels the relay holds at once: each tab uses three (bar, foo, its REPL)
MAX_TUNNELS = 3000


class StartError(Exception):
    """The process cannot start (e.g. a port in use); the message is one line for the user."""


class Browsers:
    """Every connected tab: its bar machine as mirrored by the server (``server-bar-<sess>``)."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self._changed = trio.Event()

    def ready(self) -> list[tuple[str, Client]]:
        """The tabs whose bar is Ready now."""
        return [
            (bar_id, c)
            for bar_id, c in self.clients.items()
            if c.connected and c.netmach.has("Ready") and c.netmach.is_active("Ready")
        ]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[Browsers], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()


class FooHandlers:
    """server-foo's handlers (spec section 1, "Server handlers")."""

    def __init__(
        self, cfg: Config, browsers: Browsers, nursery: trio.Nursery, out: Callable[[str], None]
    ) -> None:
        self.cfg = cfg
        self.browsers = browsers
        self.nursery = nursery
        self.out = out
        self.last_msg = self.last_hello = time.monotonic()

    # the ticker: a task bound to Start
    def StartState(self, e: Any) -> None:
        e.machine.fork("Start", self._ticker, e.machine)

    async def _ticker(self, foo: Machine) -> None:
        # the reference ticks every second; shorter timings (tests, demos) tick faster
        period = min(1.0, self.cfg.foo_bored_after / 4, self.cfg.foo_hello_interval / 4)
        while True:
            await trio.sleep(period)
            self.tick(foo)

    def tick(self, foo: Machine) -> None:
        now = time.monotonic()
        if now - self.last_msg > self.cfg.foo_bored_after and not foo.is_active("Bored"):
            foo.add("Bored")
        if now - self.last_hello <= self.cfg.foo_hello_interval:
            return
        targets = [
            c for _, c in self.browsers.ready() if c.netmach.tick("Msg") < HELLO_MAX_MSG_TICK
        ]
        if not targets:
            return
        self.last_hello = now
        for client in targets:
            self.nursery.start_soon(self._send, client, "hello", None)
        foo.add("Msg", msg_args("hello"))

    async def _send(self, client: Client, text: str, author: str | None) -> None:
        """Add ``Msg`` on one tab's bar; ``author`` (a machine id) overrides the source.

        No-sync add: nothing waits for the answer, and the tab's own push brings its new
        clock anyway (a third less server CPU per tab at 200 tabs)."""
        try:
            await client.netmach.add_ns("Msg", msg_args(text), source=author)
        except RpcError as err:  # the tab went away meanwhile: it gets no copy
            log.info("%s: message not delivered: %s", client.id, err)

    def MsgEnter(self, e: Any) -> bool:
        return bool(msg_of(e.args).strip())

    def MsgState(self, e: Any) -> None:
        foo = e.machine
        foo.remove("Msg")  # a pulse on the server
        text, author = msg_of(e.args), author_of(e, foo.id)
        self.out(f"[{author}] {text}")
        self.last_msg = time.monotonic()
        if author == foo.id:
            return
        # beyond the reference: every other tab gets the message, with its author
        for bar_id, client in self.browsers.ready():
            if bar_id != author:
                self.nursery.start_soon(self._send, client, text, author)

    def BoredState(self, e: Any) -> None:
        self.out("foo is bored...")


@dataclass
class Server:
    """A running server process (what :func:`run_server` hands to ``task_status``)."""

    foo: Machine
    mux: Mux
    repl: Mux
    relay: Any
    browsers: Browsers
    url: str
    repl_file: Path | None
    extra: dict[str, Any] = field(default_factory=dict)


def _bar_client_id(tunnel_id: str) -> str:
    """``browser-bar-ab12`` -> ``server-bar-ab12`` (the reference's ``server-bar``, one per tab)."""
    return "server-bar-" + tunnel_id.removeprefix(BAR_PREFIX)


async def _serve_bar_tunnel(
    foo: Machine, browsers: Browsers, out: Callable[[str], None], stream: WebSocketStream,
    request: TunnelRequest,
) -> None:  # fmt: skip
    """A tab listens for its bar's aRPC server: the server connects as a client over it."""
    bar_id = request.id
    client = Client(id=_bar_client_id(bar_id), stream=stream, source=foo, reconnect=False)

    async def register() -> None:
        try:
            await client.wait_connected(HANDSHAKE_TIMEOUT)
        except RpcError as err:
            log.info("%s: no aRPC handshake: %s", bar_id, err)  # the rpc log said why
            await stream.aclose()
            return
        browsers.clients[bar_id] = client
        client.netmach.on_change(lambda *_: browsers._notify())  # e.g. the tab became Ready
        browsers._notify()
        out(f"aRPC connected via WebSocket: {bar_id}")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(register)
            await client.run()
            nursery.cancel_scope.cancel()
    finally:
        if browsers.clients.get(bar_id) is client:
            del browsers.clients[bar_id]
            browsers._notify()
            out(f"aRPC disconnected: {bar_id}")


async def _bind(stack: AsyncExitStack, what: str, var: str, addr: str, cm: Any) -> Any:
    """Enter ``cm`` on ``stack``; a bind failure becomes one line naming the address and the
    variable that sets it."""
    try:
        return await stack.enter_async_context(cm)
    except BaseException as exc:  # a listener's nursery may wrap the bind error in a group
        err = find_exception(exc, OSError)
        if not isinstance(err, OSError):
            raise
        reason = "address in use" if err.errno == 98 else (err.strerror or str(err))
        raise StartError(f"cannot listen on {addr} ({var}, {what}): {reason}") from None


def _addr_files(directory: Path) -> dict[Path, tuple[int, int]]:
    """The ``*.addr`` files of ``directory`` with their identity (inode, mtime)."""
    found = {}
    for path in directory.glob("*.addr"):
        try:
            st = path.stat()
        except OSError:  # gone meanwhile
            continue
        found[path] = (st.st_ino, st.st_mtime_ns)
    return found


def _remove_unchanged(files: dict[Path, tuple[int, int]]) -> None:
    """Remove the address files a previous run left (a killed ``am start``: its tabs' and its
    own), once this one listens: nothing answers at them, and ``am repl --dir`` would list
    their machines as disconnected. Only now, not before binding (``task start`` ran ``rm -f
    tmp/*.addr`` first): a second ``am start`` failing on a busy port took the running one's
    files, and ``am repl`` found no machine. A file rewritten meanwhile (this server's own, a
    tab that reconnected already) is kept."""
    for path, ident in files.items():
        try:
            st = path.stat()
            if (st.st_ino, st.st_mtime_ns) == ident:
                path.unlink()
        except OSError:  # gone meanwhile
            continue


def find_exception(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` itself or the first ``kind`` inside its (nested) exception groups."""
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        if (found := find_exception(inner, kind)) is not None:
            return found
    return None


#: What the page fetches from its directory (``web/``), relative to it (``*`` within one path
#: segment): the page and its bootstrap (``index.html``, ``main.mjs``), and what the builds
#: (``web/build_page.py``, ``web/build_prod.py``) write for it: each build's manifest, its
#: pinned Pyodide files and the wheels (dev), or the snapshot and the zip of the browser's
#: packages (prod). The rest of the directory (the build scripts, the download cache) is 404.
PAGE_FILES = (
    "index.html",
    "main.mjs",
    "build/*/manifest.json",
    "build/dev/pyodide/*",
    "build/dev/wheels/*.whl",
    "build/prod/pyodide-*/*",
    "build/prod/snapshot-*.bin",
    "build/prod/site-*.zip",
)


def _documents(cfg: Config, build: str | None) -> dict[str, bytes]:
    """What the relay serves from memory: ``/config.json`` and, when the server names the
    build, ``null`` for the other build's manifest. The page fetches both manifests at once
    with the config, to start sooner; without this, the one not built answered 404, an error
    in every tab's console that meant nothing."""
    docs = {"/config.json": json.dumps({**cfg.page(), "build": build}).encode()}
    if build is not None:
        for other in ("dev", "prod"):
            if other != build:
                docs[f"/build/{other}/manifest.json"] = b"null"
    return docs


async def run_server(
    cfg: Config,
    static_dir: Path | None,
    out: Callable[[str], None] = print,
    *,
    build: str | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run server-foo, its REPL endpoint, its aRPC mux and the relay until cancelled.

    The relay serves the page from ``static_dir`` (:data:`PAGE_FILES`) and, from memory,
    ``/config.json``: the page's part of ``cfg`` and the ``build`` (``dev``/``prod``) it
    should load (None: the page picks).
    """
    browsers = Browsers()
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        handlers = FooHandlers(cfg, browsers, nursery, out)
        foo = Machine(FOO, id=SERVER_ID, handlers=handlers, nursery=nursery)
        stack.callback(foo.dispose)
        repl_dir = Path(cfg.repl_dir)
        left_over = _addr_files(repl_dir)  # before anything of ours writes there
        repl = await _bind(
            stack, "REPL", "FOO_REPL_ADDR", cfg.foo_repl_addr,
            expose(foo, cfg.foo_repl_addr, repl_dir, args=REPL_ARGS),
        )  # fmt: skip
        foo.add("Start")
        mux = await _bind(
            stack, "aRPC", "FOO_TCP_ADDR", cfg.foo_tcp_addr, serve(foo, cfg.foo_tcp_addr)
        )
        relay_cfg = RelayConfig(
            listen_addr=cfg.relay_http_addr,
            static_dir=static_dir,
            static_only=PAGE_FILES,
            documents=_documents(cfg, build),
            repl_addr_dir=repl_dir,
            allow=(cfg.bar_repl_addr,),  # only the REPL tunnels dial out of the process
            max_tunnels=MAX_TUNNELS,
        )
        relay = await _bind(
            stack, "relay", "RELAY_HTTP_ADDR", cfg.relay_http_addr, open_relay(relay_cfg)
        )
        relay.add_matcher(
            "listen",
            r"^" + BAR_PREFIX,
            lambda stream, req: _serve_bar_tunnel(foo, browsers, out, stream, req),
        )
        relay.add_matcher("dial", r"^browser-foo-", lambda stream, req: mux.handle_stream(stream))
        server = Server(
            foo, mux, repl, relay, browsers, relay.url, repl_dir / f"{SERVER_ID}-repl.addr"
        )
        _remove_unchanged(left_over)
        foo.add("Ready")  # every endpoint listens
        task_status.started(server)
        await trio.sleep_forever()
