"""The browser side of the example, written once for the page and for headless peers.

The page runs it in Pyodide (asyncio on the browser's loop, ``js.WebSocket``, the DOM); ``am
start --bars N`` runs the same program in CPython under trio (trio-websocket, no DOM). The
difference is behind two small interfaces: a :class:`Host` (open a WebSocket on the relay,
spawn a task, sleep, schedule a call) and a :class:`UI` (append a line, show state, read the
input). Init order as the reference (spec section 2):

1. bar (``browser-bar-<sess>``);
2. bar's REPL endpoint over ``/listen/repl-browser-bar-<sess>/<BAR_REPL_ADDR>`` (one tunnel
   per REPL: one more opens whenever a REPL connects, up to :data:`MAX_REPLS` at once);
3. bar's aRPC server over ``/listen/browser-bar-<sess>/<BAR_TCP_ADDR>`` (push interval 1 ms);
4. the handler machine ``browser-foo-<sess>`` (foo's schema, parent bar, tag rpc-handler);
5. the aRPC client of server-foo over ``/dial/browser-foo-<sess>/<FOO_TCP_ADDR>``, until Ready;
6. every change of the client's NetMach is piped into the handler machine;
7. ``Start`` on bar.

Every tunnel reconnects on its own (backoff up to :data:`RETRY_MAX` seconds, forever): kill and
restart the server and the page goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from machines import Machine, MutSource
from machines.rpc import RpcError
from machines.rpc.endpoint import ClientEndpoint, ServerEndpoint
from machines.rpc.repl import ReplEndpoint

from .config import Config
from .schemas import BAR, FOO, REPL_ARGS, author_of, msg_args, msg_of

__all__ = ["UI", "BrowserBar", "Host", "Socket", "tunnel_paths"]

log = logging.getLogger("machines.example")

#: seconds before the first reconnect, and the most between two
RETRY_FIRST = 0.25
RETRY_MAX = 2.0
#: seconds bar's aRPC server waits between pushes (the reference's 1 ms)
BAR_PUSH_INTERVAL = 0.001
#: seconds the REPL's server waits between pushes
REPL_PUSH_INTERVAL = 0.05
#: REPLs one tab serves at once, each over a listen tunnel of its own; more wait their turn
MAX_REPLS = 4
#: connection status shown in the page
CONNECTING, CONNECTED, RECONNECTING = "connecting", "connected", "reconnecting"


class Socket(Protocol):
    """One open WebSocket: binary messages in and out."""

    def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes | None:
        """The next message; None once the socket is closed."""
        ...


class Host(Protocol):
    """What the program needs from its runtime (the page, or a trio process)."""

    #: the nursery of forked handler tasks under trio (None under asyncio)
    nursery: Any

    def open(self, path: str) -> AbstractAsyncContextManager[Socket]:
        """A WebSocket to the relay's ``path``; raises ConnectionError if it cannot open."""
        ...

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, delay: float, fn: Callable[[], None]) -> None: ...


class UI(Protocol):
    """What the user sees: lines, the machines' states, the connection status."""

    def append(self, line: str) -> None: ...

    def status(self, status: str, session: str) -> None: ...

    def show(self, bar: Machine, foo: Any) -> None:
        """Active states and ticks of bar and of server-foo as mirrored."""
        ...

    def on_submit(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(text)`` with the input's text (then cleared) when the user hits Enter."""
        ...


def tunnel_paths(sess: str, cfg: Config) -> dict[str, str]:
    """The relay paths of one tab (the address is a label where a matcher takes the tunnel)."""
    return {
        "repl": f"/listen/repl-browser-bar-{sess}/{cfg.bar_repl_addr}",
        "bar": f"/listen/browser-bar-{sess}/{cfg.bar_tcp_addr}",
        "foo": f"/dial/browser-foo-{sess}/{cfg.foo_tcp_addr}",
    }


class BarHandlers:
    """browser-bar's handlers."""

    def __init__(self, app: BrowserBar) -> None:
        self.app = app

    def StartState(self, e: Any) -> None:
        self.app.ui.append("[bar] StartState")
        self.app.ui.on_submit(lambda text: e.machine.add("SubmitMsg", msg_args(text)))
        e.machine.add("Ready")

    def SubmitMsgEnter(self, e: Any) -> bool:
        return bool(msg_of(e.args).strip())  # nothing typed: nothing appended, nothing sent

    def SubmitMsgState(self, e: Any) -> None:
        text = msg_of(e.args)
        e.machine.add("Msg", msg_args(text))
        self.app.host.spawn(self.app.send_to_server, text, e)

    def MsgEnter(self, e: Any) -> bool:
        return bool(msg_of(e.args).strip())

    def MsgState(self, e: Any) -> None:
        self.app.ui.append(f"[{author_of(e, 'bar')}] {msg_of(e.args)}")


class FooHandlers:
    """The handler machine ``browser-foo-<sess>``: server-foo's states, handled in the tab."""

    def __init__(self, ui: UI) -> None:
        self.ui = ui

    def BoredState(self, e: Any) -> None:
        self.ui.append("foo is bored...")


class BrowserBar:
    """One tab's machines and tunnels; :meth:`start` runs them in the host's background."""

    def __init__(self, host: Host, ui: UI, cfg: Config, sess: str | None = None) -> None:
        self.host, self.ui, self.cfg = host, ui, cfg
        self.sess = sess or os.urandom(2).hex()
        self.paths = tunnel_paths(self.sess, cfg)
        self.bar = Machine(
            BAR, id=f"browser-bar-{self.sess}", handlers=BarHandlers(self), nursery=host.nursery
        )
        self.foo = Machine(
            FOO,
            id=f"browser-foo-{self.sess}",
            parent=self.bar,
            tags=["rpc-handler"],
            handlers=FooHandlers(ui),
            nursery=host.nursery,
        )
        self._foo_socket: Socket | None = None
        self.client = ClientEndpoint(f"browser-foo-{self.sess}", self._send_foo, source=self.bar)
        self.net = self.client.netmach
        self.tunnels_up: dict[str, bool] = {name: False for name in self.paths}
        #: REPL tunnels open and waiting for a REPL, and serving one
        self.repl_waiting = 0
        self.repl_serving = 0
        self.status = CONNECTING
        self.bar.on_change(lambda *_: self._show())
        self.net.on_change(self._piped)

    # --- start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every tunnel, wait for server-foo's mirror, then add Start on bar."""
        self.ui.status(self.status, self.sess)
        self.host.spawn(self._keep_repl)
        self.host.spawn(self._keep, "bar", self._serve(f"rs-{self.bar.id}", BAR_PUSH_INTERVAL))
        self.host.spawn(self._keep, "foo", self._client_session)
        await self.client.wait_connected()
        self._sync_handler_machine()
        self.bar.add("Start")

    # --- tunnels -------------------------------------------------------------------------------

    def _serve(
        self, id: str, push_interval: float, repl: bool = False
    ) -> Callable[..., Awaitable[None]]:
        """Sessions of an aRPC server of bar, one per socket (a fresh endpoint each time); for
        the REPL, one that translates the REPL's argument names and announces them. A session
        may start with the socket's ``first`` message, already read."""

        async def session(sock: Socket, first: bytes | None = None) -> None:
            server: ServerEndpoint
            if repl:
                server = ReplEndpoint(
                    self.bar,
                    sock.send,
                    args=REPL_ARGS,
                    id=id,
                    push_interval=push_interval,
                    call_later=self.host.call_later,
                )
            else:
                server = ServerEndpoint(
                    self.bar,
                    sock.send,
                    id=id,
                    push_interval=push_interval,
                    call_later=self.host.call_later,
                )
            server.connection_made()
            try:
                data = first if first is not None else await sock.receive()
                while data is not None and server.receive(data):
                    data = await sock.receive()
            finally:
                server.connection_lost()

        return session

    async def _client_session(self, sock: Socket) -> None:
        """A session of the client of server-foo; the same NetMach across reconnects."""
        self._foo_socket = sock
        self.client.connection_made()
        try:
            while (data := await sock.receive()) is not None:
                if not self.client.receive(data):
                    break
                if self.client.connected and self.status != CONNECTED:
                    self._sync_handler_machine()
                    self._set_status()
        finally:
            self._foo_socket = None
            self.client.connection_lost()

    def _send_foo(self, data: bytes) -> None:
        if self._foo_socket is not None:
            self._foo_socket.send(data)

    async def _keep(self, name: str, session: Callable[[Socket], Awaitable[None]]) -> None:
        """Keep one tunnel open: reconnect after every loss, with backoff."""
        delay = RETRY_FIRST
        while True:  # until the host cancels it (the page closes, the process stops)
            try:
                async with self.host.open(self.paths[name]) as sock:
                    delay = RETRY_FIRST
                    self.tunnels_up[name] = True
                    self._set_status()
                    await session(sock)
            except ConnectionError as err:
                log.debug("%s: tunnel %s: %s", self.bar.id, name, err)
            finally:
                self.tunnels_up[name] = False
                self._set_status()
            await self.host.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _keep_repl(self) -> None:
        """Keep one REPL tunnel open and waiting for a REPL, as :meth:`_keep` does.

        The relay's listen tunnel carries one TCP peer, so a REPL that comes while another
        is served would wait in the listener's queue (its handshake times out). So when a REPL
        connects (its first message: the handshake), another keeper starts to wait for the
        next, up to :data:`MAX_REPLS` served at once; the relay lets that tunnel share the
        listener (same address). One keeper at most waits (or opens its tunnel): two would
        replace each other's tunnel at the relay, over and over; so a keeper ends when
        another one waits already.
        """
        session = self._serve(f"rs-repl-{self.bar.id}", REPL_PUSH_INTERVAL, repl=True)
        delay = RETRY_FIRST
        while not self.repl_waiting:  # until the host cancels it, or another keeper waits
            self.repl_waiting += 1
            waiting = True
            try:
                async with self.host.open(self.paths["repl"]) as sock:
                    delay = RETRY_FIRST
                    self.tunnels_up["repl"] = True
                    first = await sock.receive()
                    self.repl_waiting -= 1
                    waiting = False
                    if first is not None:
                        self.repl_serving += 1
                        try:
                            if not self.repl_waiting and self.repl_serving < MAX_REPLS:
                                self.host.spawn(self._keep_repl)
                            await session(sock, first)
                        finally:
                            self.repl_serving -= 1
            except ConnectionError as err:
                log.debug("%s: tunnel repl: %s", self.bar.id, err)
            finally:
                if waiting:
                    self.repl_waiting -= 1
                self.tunnels_up["repl"] = bool(self.repl_waiting)
            if self.repl_waiting:
                return
            await self.host.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _set_status(self) -> None:
        up = self.client.connected and self.tunnels_up["bar"]
        status = CONNECTED if up else (CONNECTING if self.status == CONNECTING else RECONNECTING)
        if status != self.status:
            self.status = status
            self.ui.status(status, self.sess)

    # --- server-foo's mirror -------------------------------------------------------------------

    def _piped(self, net: Any, before: list[int], after: list[int]) -> None:
        """Every NetMach change goes to the handler machine (the reference's BindAny)."""
        self._sync_handler_machine()
        self._show()

    def _sync_handler_machine(self) -> None:
        active = [s for s in self.net.active_states if self.foo.has(s)]
        if active and set(active) != set(self.foo.active_states):
            self.foo.set(active, source=MutSource(self.net.id))

    def _show(self) -> None:
        self.ui.show(self.bar, self.net)

    async def send_to_server(self, text: str, e: Any) -> None:
        """Add ``Msg`` on server-foo as this bar (the server prints ``[browser-bar-<sess>]``)."""
        try:
            # the event as the source: server-foo records this bar (and transition) as author
            source = MutSource(e.machine_id, e.transition_id)
            await self.net.add("Msg", msg_args(text), source=source)
        except RpcError as err:
            self.ui.append(f"(not sent to server-foo: {err})")
