"""Errors a caller of aRPC can catch; each message says what failed and where."""

from __future__ import annotations

from .protocol import ProtocolError, RemoteError, VersionMismatch


class RpcError(Exception):
    """Base of the driver-level errors."""


class RpcNotConnected(RpcError):
    """No live connection: the call was not sent (fails fast, never hangs)."""


class RpcConnectionLost(RpcError):
    """The connection closed while the call was in flight; its outcome is unknown."""


class RpcTimeout(RpcError):
    """No answer within the call timeout."""


__all__ = [
    "ProtocolError",
    "RemoteError",
    "RpcConnectionLost",
    "RpcError",
    "RpcNotConnected",
    "RpcTimeout",
    "VersionMismatch",
]
