"""aRPC's own machines: the lifecycle of each client, server and mux as states.

Like the reference, every Client, Server and Mux has a machine (`rc-<id>`, `rs-<name>`,
`rm-<name>`, tagged `rpc-client` / `rpc-server` / `rpc-mux`), so code can wait on
`client.mach.when("Ready")`, and the debugger (with `AM_RPC_DBG`) shows connections like any other
machine. The drivers only mark what happened (connecting, handshake, loss); nothing on the
per-mutation path touches these machines.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from machines import Machine, State, merge
from machines.states import BASIC, CONNECTED

log = logging.getLogger("machines.rpc")

_SHARED = {
    "ErrOnClient": State(require=["Exception"]),
    "ErrRpc": State(require=["Exception"]),
    "Handshaking": State(require=["Start"], remove=["HandshakeDone"]),
    "HandshakeDone": State(require=["Start"], remove=["Handshaking"]),
    "Ready": State(auto=True, require=["HandshakeDone"]),
}

CLIENT_SCHEMA = merge(
    BASIC,
    CONNECTED,
    _SHARED,
    {
        "Connected": State(
            require=["Start"],
            add=["Handshaking"],
            remove=["Connecting", "Disconnecting", "Disconnected", "RetryingConn"],
        ),
        "Handshaking": State(require=["Connected"], remove=["HandshakeDone"]),
        "HandshakeDone": State(require=["Connected"], remove=["Handshaking"]),
        "RetryingConn": State(require=["Start"]),
        "ServerPayload": State(multi=True),
    },
)
"""A client (`rc-<id>`): Start, Connecting/Connected/Disconnected, HandshakeDone, Ready."""

SERVER_SCHEMA = merge(
    BASIC,
    _SHARED,
    {
        "ClientConnected": State(require=["Start"]),
        "Handshaking": State(require=["ClientConnected"], remove=["HandshakeDone"]),
        "HandshakeDone": State(require=["ClientConnected"], remove=["Handshaking"]),
    },
)
"""A server (`rs-<name>`): Start, ClientConnected, HandshakeDone (args: client id), Ready."""

MUX_SCHEMA = merge(
    BASIC,
    {
        "Ready": State(require=["Start"]),
        "ClientConnected": State(multi=True, require=["Start"]),
        "HasClients": State(require=["Start"]),
    },
)
"""A mux (`rm-<name>`): Start, Ready, ClientConnected (each accept), HasClients."""


class _Quiet:
    """Errors of a connection are already logged once by the driver (machines.rpc logger);
    this replaces the core's default error print, and keeps errors as records, not a state."""

    def ExceptionState(self, e: Any) -> None:  # noqa: N802 - handler name
        e.machine.remove("Exception")


_LOG_ENV = {"rpc-client": "AM_RPC_LOG_CLIENT", "rpc-server": "AM_RPC_LOG_SERVER",
            "rpc-mux": "AM_RPC_LOG_MUX"}  # fmt: skip


def new_machine(schema: dict[str, State], id: str, tags: list[str], parent: Any = None) -> Machine:
    """`AM_RPC_LOG_CLIENT` / `_SERVER` / `_MUX` turn on the lifecycle log of that kind (level 3)."""
    parent_id = getattr(parent, "id", "") if parent is not None else ""
    # their own switch, not AM_LOG: the lifecycle of every connection is noise by default
    level = 3 if os.environ.get(_LOG_ENV.get(tags[0], ""), "") not in ("", "0") else 0
    return Machine(
        schema, id=id, tags=tags, parent_id=parent_id, handlers=_Quiet(), log_level=level
    )


def mark(mach: Machine, op: str, states: str | list[str], args: dict | None = None) -> None:
    """Record a lifecycle step; never lets bookkeeping break the connection it describes."""
    if mach.is_disposed:
        return
    try:
        getattr(mach, op)(states, args)
    except Exception as err:
        log.warning("rpc: %s %s %s failed: %s", mach.id, op, states, err)


def mark_err(mach: Machine, state: str, err: BaseException) -> None:
    if mach.is_disposed:
        return
    try:
        mach.add_err_state(state, err)
    except Exception as exc:
        log.warning("rpc: %s error %s failed: %s", mach.id, state, exc)
