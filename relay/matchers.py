"""Tunnel requests (parsed from the URL path) and id matchers.

A matcher routes a tunnel to Python code in the relay's process instead of a TCP socket: the
server runs an aRPC client on a browser's ``/listen/`` tunnel or an aRPC server on its
``/dial/`` tunnel without a round trip through the kernel.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from relay.config import HostPort, parse_hostport

if TYPE_CHECKING:
    from relay.wsstream import WebSocketStream

TunnelKind = Literal["listen", "dial"]
KINDS: tuple[TunnelKind, ...] = ("listen", "dial")
MAX_ID_LENGTH = 200


class BadPath(ValueError):
    """A tunnel path that cannot be served; the message is sent back with HTTP 400."""


@dataclass(frozen=True)
class TunnelRequest:
    """What a WebSocket asked for: ``/<kind>/<id>/<host:port>``."""

    kind: TunnelKind
    id: str
    target: HostPort

    @property
    def addr(self) -> str:
        return str(self.target)


def parse_tunnel_path(path: str) -> TunnelRequest | None:
    """Parse a tunnel path; None when it is not a tunnel path at all.

    As in the reference, the address is what follows the **last** ``/``, so ids may hold
    slashes: ``/dial/a/b/127.0.0.1:9`` is id ``a/b``.
    """
    kind, sep, rest = path.lstrip("/").partition("/")
    if kind not in KINDS or not sep:
        return None
    tunnel_id, slash, addr = rest.rpartition("/")
    tunnel_id = tunnel_id.rstrip("/")
    if not slash or not tunnel_id:
        raise BadPath(f"expected /{kind}/<id>/<host:port>, got {path!r}")
    if len(tunnel_id) > MAX_ID_LENGTH:
        raise BadPath(f"tunnel id longer than {MAX_ID_LENGTH} characters")
    if not tunnel_id.isprintable():
        raise BadPath("tunnel id holds control characters")
    try:
        target = parse_hostport(addr)
    except ValueError as err:
        raise BadPath(str(err)) from None
    return TunnelRequest(kind, tunnel_id, target)


#: An in-process tunnel handler: it owns the stream until it returns; the relay then closes
#: the WebSocket with 1000 (or 1011 when the handler raised).
Handler = Callable[["WebSocketStream", TunnelRequest], Awaitable[None]]


@dataclass(frozen=True, eq=False)
class Matcher:
    """Route tunnels of ``kind`` whose id matches ``pattern`` (``re.search``) to ``handler``."""

    kind: TunnelKind
    pattern: re.Pattern[str]
    handler: Handler

    def matches(self, request: TunnelRequest) -> bool:
        return request.kind == self.kind and self.pattern.search(request.id) is not None


def make_matcher(kind: TunnelKind, pattern: str | re.Pattern[str], handler: Handler) -> Matcher:
    """Build a matcher, checking the kind and compiling the pattern."""
    if kind not in KINDS:
        raise ValueError(f"matcher kind must be one of {KINDS}, got {kind!r}")
    return Matcher(kind, re.compile(pattern), handler)
