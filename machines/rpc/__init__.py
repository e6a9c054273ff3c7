"""aRPC: remote machines kept in sync by clock diffs.

`protocol` (sans-IO, also runs in the browser) holds the wire format; `core` what its events mean
for either end; `server`, `mux` and `client` are the trio drivers of that core, `endpoint` the
browser's; `netmach` is the client-side mirror. Importing this package does not import
trio until a driver is used, so the browser can import `machines.rpc.protocol` and
`machines.rpc.netmach` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ProtocolError,
    RemoteError,
    RpcConnectionLost,
    RpcError,
    RpcNotConnected,
    RpcTimeout,
    VersionMismatch,
)
from .protocol import DEFAULT_MAX_FRAME, PROTOCOL_VERSION

if TYPE_CHECKING:
    from .client import Client, connect
    from .mux import Mux, serve
    from .netmach import NetMach
    from .server import Server

_LAZY = {
    "connect": "client",
    "Client": "client",
    "serve": "mux",
    "Mux": "mux",
    "Server": "server",
    "NetMach": "netmach",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{mod}"), name)


__all__ = [
    "DEFAULT_MAX_FRAME",
    "PROTOCOL_VERSION",
    "Client",
    "Mux",
    "NetMach",
    "ProtocolError",
    "RemoteError",
    "RpcConnectionLost",
    "RpcError",
    "RpcNotConnected",
    "RpcTimeout",
    "Server",
    "VersionMismatch",
    "connect",
    "serve",
]
