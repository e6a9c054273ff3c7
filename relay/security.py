"""Who may open a tunnel: the Origin allow-list and the optional token.

Browsers send ``Origin`` with every WebSocket handshake, so checking it stops other web pages
from using the relay (cross-site WebSocket hijacking). Clients that are not browsers send no
Origin and are let through; the token (and the target allow-list) guard against them.
Browsers cannot set headers on a WebSocket, so the token travels as a subprotocol.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from typing import TypeVar

from relay.config import format_hostport

#: a subprotocol name (``websockets`` types them as a ``NewType`` of ``str``)
_Proto = TypeVar("_Proto", bound=str)

#: A tunnel shows the token by offering the subprotocol ``am-token.<token>``.
TOKEN_PROTOCOL_PREFIX = "am-token."
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def own_origins(hosts: Iterable[str], port: int) -> frozenset[str]:
    """The relay's own origins: its host names and bound IPs, loopback names all alike."""
    names: set[str] = set()
    for host in hosts:
        names.add(host.lower())
        if _is_loopback(host):
            names.update(_LOOPBACK_NAMES)
    return frozenset(f"http://{format_hostport(h, port)}" for h in names if not _is_wildcard(h))


class OriginPolicy:
    """Decide whether a handshake's ``Origin`` may open a tunnel."""

    def __init__(self, allowed: Iterable[str], own: frozenset[str], wildcard_bind: bool):
        self.allowed = frozenset(allowed)
        self.own = own
        # Bound to every interface, the relay cannot list its own origins; then it accepts a
        # page whose origin matches the Host it was loaded from.
        self.wildcard_bind = wildcard_bind

    def check(self, origin: str | None, host_header: str | None) -> str | None:
        """None when allowed, else the reason to refuse."""
        if origin is None:
            return None
        origin = origin.strip().rstrip("/").lower()
        if self.allowed:
            if "*" in self.allowed or origin in self.allowed:
                return None
        elif origin in self.own:
            return None
        elif self.wildcard_bind and host_header and origin == f"http://{host_header.lower()}":
            return None
        return f"origin {origin!r} is not allowed"


def check_token(expected: str | None, offered: Iterable[str]) -> str | None:
    """None when no token is needed or a matching one was offered, else the reason."""
    if expected is None:
        return None
    want = (TOKEN_PROTOCOL_PREFIX + expected).encode()
    for proto in offered:
        if hmac.compare_digest(proto.encode(), want):
            return None
    return "missing or wrong token"


def pick_subprotocol(offered: Sequence[_Proto]) -> _Proto | None:
    """The subprotocol to answer with.

    A browser fails the handshake when it offered subprotocols and the server picks none, so
    answer with the first one that is not a token, else the token itself.
    """
    for proto in offered:
        if not proto.startswith(TOKEN_PROTOCOL_PREFIX):
            return proto
    return offered[0] if offered else None
