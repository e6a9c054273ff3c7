"""Exposing a machine for the REPL: an aRPC mux named ``repl-<id>`` and its address file.

A REPL (``am repl --dir DIR``) finds machines by reading ``DIR/*.addr``; each file holds one
``host:port`` that answers aRPC for one machine. The file must hold the address actually bound
(port 0 resolved), appear whole, and vanish when the machine stops being exposed, so a REPL never
dials a port that nobody serves.

REPL arguments are flat strings named ``Type.Field`` (``--arg Msg.Msg --val hi``), not the
machine's own args. An endpoint given ``args={"Msg.Msg": "msg"}`` turns them into the args its
handlers read (``{"msg": "hi"}``), refuses names it does not know, and tells each REPL the names
it knows (a payload right after the handshake) so the REPL can complete them. A canceled
mutation is explained to the REPL that asked (a payload with the reason, sent just before the
answer: ``by MsgEnter``, ``Foo requires Bar``), at the cost of watching that one call; the bytes
of other answers do not change. This is why REPL endpoints are separate from a machine's
ordinary aRPC endpoints.

Only :func:`expose` and :func:`expose_env` need trio (imported when called); the rest also runs in
the browser, where a tab serves its REPL over a relay listen tunnel with :class:`ReplEndpoint`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..explain import mutate_explained
from ..mutation import MutationType
from .endpoint import ServerEndpoint

if TYPE_CHECKING:
    from .mux import Mux
    from .server import Server

log = logging.getLogger("machines.rpc")

#: ``AM_REPL_ADDR=1`` means "any free port on loopback".
DEFAULT_ADDR = "127.0.0.1:0"

#: Name of the payload that carries an endpoint's argument names to the REPL.
ARGS_PAYLOAD = "am_repl_args"
#: Name of the payload that says why the REPL's mutation was canceled (its answer follows).
CANCEL_PAYLOAD = "am_repl_canceled"


def addr_file_name(machine_id: str) -> str:
    """``server-foo`` -> ``server-foo-repl.addr`` (the reference's name)."""
    return f"{machine_id}-repl.addr"


def env_addr() -> str | None:
    """The address asked for by ``AM_REPL_ADDR`` (``1`` = any free loopback port), or None.

    Off under the test runner (``AM_TEST_RUNNER``), as in the reference: tests expose
    explicitly.
    """
    if os.environ.get("AM_TEST_RUNNER", "") not in ("", "0"):
        return None
    value = os.environ.get("AM_REPL_ADDR", "").strip()
    if not value or value == "0":
        return None
    return DEFAULT_ADDR if value == "1" else value


class ReplSource:
    """The machine as a REPL endpoint sees it: REPL-style args translated on each mutation.

    Everything but ``add``/``remove``/``set`` is the machine's own (reads, tracers, id), so the
    server code treats this like any source.
    """

    def __init__(
        self,
        machine: Any,
        args: Mapping[str, str] | None = None,
        tell: Callable[[str], Any] | None = None,
    ) -> None:
        """`args` maps REPL names (``Msg.Msg``) to the machine's arg keys (``msg``); None passes
        REPL args through as given. `tell(reason)` is called when a mutation is canceled (one
        source per connection, so the reason reaches the REPL that asked)."""
        self._machine = machine
        self.arg_names: list[str] | None = sorted(args) if args is not None else None
        self._args = dict(args) if args is not None else None
        self.tell = tell

    def __getattr__(self, name: str) -> Any:
        return getattr(self._machine, name)

    def translate(self, args: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """``{"Msg.Msg": "hi"}`` -> ``{"msg": "hi"}``; ValueError naming an unknown argument."""
        if not args or self._args is None:
            return dict(args) if args else None
        unknown = [name for name in args if name not in self._args]
        if unknown:
            known = ", ".join(self.arg_names or []) or "none"
            raise ValueError(f"unknown argument {', '.join(unknown)} (known: {known})")
        return {self._args[name]: value for name, value in args.items()}

    def add(self, states: Any, args: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self._mutate(MutationType.ADD, states, args, kw)

    def remove(self, states: Any, args: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self._mutate(MutationType.REMOVE, states, args, kw)

    def set(self, states: Any, args: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self._mutate(MutationType.SET, states, args, kw)

    def _mutate(
        self, mtype: MutationType, states: Any, args: Mapping[str, Any] | None, kw: Any
    ) -> Any:
        args = self.translate(args)
        if self.tell is None:
            return getattr(self._machine, mtype.name.lower())(states, args, **kw)
        result, why = mutate_explained(self._machine, mtype, states, args, **kw)
        if why:
            try:
                self.tell(why)
            except Exception as err:  # the mutation ran: its answer must still go out
                log.debug("repl %s: cannot tell why it was canceled: %s", self._machine.id, err)
        return result


def send_arg_names(server: Any, source: ReplSource) -> None:
    """Tell the REPL on `server`'s connection which argument names the endpoint knows."""
    if source.arg_names is not None:
        server.send_payload(ARGS_PAYLOAD, list(source.arg_names))


class ReplEndpoint(ServerEndpoint):
    """A REPL endpoint for hosts that move the bytes themselves (a browser tab's listen tunnel):
    ``ReplEndpoint(machine, ws_send, args={"Msg.Msg": "msg"})``, fed like a ServerEndpoint."""

    def __init__(
        self,
        machine: Any,
        send: Callable[[bytes], Any],
        *,
        args: Mapping[str, str] | None = None,
        **opts: Any,
    ) -> None:
        self.repl_source = ReplSource(machine, args, self._tell_canceled)
        opts.setdefault("id", f"rs-repl-{machine.id}")
        super().__init__(self.repl_source, send, **opts)

    def _on_handshake(self, ev: Any) -> None:
        super()._on_handshake(ev)
        send_arg_names(self, self.repl_source)

    def _tell_canceled(self, why: str) -> None:
        self.send_payload(CANCEL_PAYLOAD, why)


@asynccontextmanager
async def expose(
    machine: Any,
    addr: str = DEFAULT_ADDR,
    addr_dir: str | Path | None = None,
    *,
    args: Mapping[str, str] | None = None,
    **opts: Any,
) -> AsyncIterator[Mux]:
    """Serve `machine` to REPL clients on `addr` until the block ends.

    With `addr_dir` (default: ``AM_REPL_DIR``), writes ``<addr_dir>/<id>-repl.addr`` with the
    bound address and removes it on the way out. `args`: see :class:`ReplSource`. `opts` go to
    :func:`machines.rpc.serve`.
    """
    from relay.addrfile import remove_addr_file, write_addr_file

    from .mux import serve
    from .server import Server

    if addr_dir is None:
        addr_dir = os.environ.get("AM_REPL_DIR") or None
    server_opts = {k: opts.pop(k) for k in ("push_interval", "allow_id", "max_frame") if k in opts}

    def new_server(mux: Mux, sid: str) -> Server:
        # a source per connection, as a tab's ReplEndpoint has: a cancel's reason goes to the
        # REPL whose mutation it was (each source joins its own hub: a tracer per REPL)
        source = ReplSource(machine, args)
        server = Server(source, id=f"rs-{sid}", parent=mux.mach, **server_opts)
        source.tell = lambda why: server.send_payload(CANCEL_PAYLOAD, why)
        server.on_handshake.append(lambda: send_arg_names(server, source))
        return server

    async with serve(machine, addr, name=f"repl-{machine.id}", factory=new_server, **opts) as mux:
        path = None
        if addr_dir is not None:
            path = write_addr_file(Path(addr_dir), f"{machine.id}-repl", mux.addr)
        try:
            yield mux
        finally:
            if path is not None:
                remove_addr_file(path, mux.addr)


@asynccontextmanager
async def expose_env(
    machine: Any, *, args: Mapping[str, str] | None = None, **opts: Any
) -> AsyncIterator[Mux | None]:
    """:func:`expose` on ``AM_REPL_ADDR`` (into ``AM_REPL_DIR``) if set, else nothing (None)."""
    addr = env_addr()
    if addr is None:
        yield None
        return
    async with expose(machine, addr, args=args, **opts) as mux:
        yield mux
