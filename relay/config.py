"""Relay configuration (addresses are parsed by `machines.addr`).

Everything the relay needs to decide is in one frozen value, so a caller (the CLI, `am start`,
a test) builds it once and the server never reads globals or the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from machines.addr import HostPort, format_hostport, parse_hostport

__all__ = ["HostPort", "RelayConfig", "format_hostport", "parse_hostport"]

#: The reference relay's default HTTP address (``am-relay wasm``).
DEFAULT_LISTEN_ADDR = "localhost:12733"
DEFAULT_MAX_MESSAGE = 1 << 20
DEFAULT_MAX_TUNNELS = 100
DEFAULT_DIAL_TIMEOUT = 10.0
#: Seconds a connected tunnel may go without carrying its first byte.
DEFAULT_IDLE_TIMEOUT = 60.0
#: Seconds the listener of a ``repl-`` listen tunnel stays bound after its WebSocket closed,
#: waiting for the tab to reopen the tunnel (a tab retries within 2 s; a background tab's
#: timers may be throttled to one per second).
DEFAULT_REPL_GRACE = 10.0

# RFC 7230 "token" characters: the only ones a browser lets through in Sec-WebSocket-Protocol.
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


@dataclass(frozen=True)
class RelayConfig:
    """What the relay serves and whom it lets through.

    Secure by default: no tunnel target is allowed until listed in ``allow``, only the relay's
    own origin may open tunnels, and the HTTP port is on localhost.
    """

    #: HTTP + WebSocket address; port 0 picks a free port (read it back from ``Relay.addr``).
    listen_addr: str = DEFAULT_LISTEN_ADDR
    #: Directory served at ``/`` (None: every plain HTTP request answers 404).
    static_dir: Path | None = None
    #: When not empty, the only files of ``static_dir`` served: paths relative to it, ``*``
    #: and ``?`` within one path segment (``build/*/manifest.json``); every other path answers
    #: 404. For a directory that holds more than the page (its build scripts, caches).
    static_only: tuple[str, ...] = ()
    #: Files held in memory and served ahead of ``static_dir``, by URL path (``/config.json``):
    #: what only the running process knows, so that two processes serving the same
    #: directory never share (or race on) a file written into it.
    documents: dict[str, bytes] = field(default_factory=dict)
    #: Where listen tunnels whose id starts with ``repl-`` write ``<id>.addr``.
    repl_addr_dir: Path | None = None
    #: Seconds a ``repl-`` listen tunnel's TCP listener (and its address file) outlives its
    #: WebSocket, for the next WebSocket with the same id to take over: the tab's REPL
    #: address stays the same for the tab's whole life (see :mod:`relay.parking`). 0: the
    #: listener closes with the tunnel, as for every other id.
    repl_grace: float = DEFAULT_REPL_GRACE
    #: TCP targets that tunnels may listen on or dial; ``host:*`` allows every port of a host.
    allow: tuple[str, ...] = ()
    #: Browser origins allowed to open tunnels; empty means the relay's own origin; ``*`` any.
    allow_origins: tuple[str, ...] = ()
    #: When set, a tunnel must offer the WebSocket subprotocol ``am-token.<token>``.
    token: str | None = None
    #: Largest inbound WebSocket message; a bigger one closes the tunnel with 1009.
    max_message: int = DEFAULT_MAX_MESSAGE
    #: Tunnels open at once; more are refused with HTTP 503.
    max_tunnels: int = DEFAULT_MAX_TUNNELS
    #: Seconds a dial tunnel waits for its TCP connection.
    dial_timeout: float = DEFAULT_DIAL_TIMEOUT
    #: Seconds a tunnel with both ends connected may carry no byte at all before it is
    #: closed with 1008 (it holds a slot of ``max_tunnels``); None: never. A listen tunnel
    #: waiting for its TCP peer is not idle: it waits for someone to connect.
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    #: Tunnels one client address may hold at once (None: half of ``max_tunnels``, at least
    #: one), so that one peer cannot take every slot; more are refused with HTTP 429.
    max_tunnels_per_peer: int | None = None
    #: Parsed allow-list (filled from ``allow``).
    targets: frozenset[HostPort] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Fail at construction with a one-line reason rather than at the first request.
        parse_hostport(self.listen_addr)
        object.__setattr__(self, "allow", tuple(self.allow))
        object.__setattr__(
            self, "targets", frozenset(parse_hostport(a, allow_any_port=True) for a in self.allow)
        )
        object.__setattr__(
            self, "allow_origins", tuple(_normalize_origin(o) for o in self.allow_origins)
        )
        object.__setattr__(self, "documents", dict(self.documents))
        object.__setattr__(self, "static_only", tuple(self.static_only))
        if bad := [p for p in self.static_only if p.startswith("/") or ".." in p.split("/")]:
            raise ValueError(f"static paths must be relative, inside the directory: {bad[0]!r}")
        if bad := [p for p in self.documents if not p.startswith("/")]:
            raise ValueError(f"document paths must start with '/': {bad[0]!r}")
        if self.static_dir is not None:
            object.__setattr__(self, "static_dir", Path(self.static_dir))
            if not self.static_dir.is_dir():
                raise ValueError(f"static dir {str(self.static_dir)!r} is not a directory")
        if self.repl_addr_dir is not None:
            object.__setattr__(self, "repl_addr_dir", Path(self.repl_addr_dir))
        if self.token is not None and not _TOKEN_RE.match(self.token):
            raise ValueError("token may only hold letters, digits and !#$%&'*+-.^_`|~")
        if self.max_message < 1024:
            raise ValueError("max message must be at least 1024 bytes")
        if self.max_tunnels < 1:
            raise ValueError("max tunnels must be at least 1")
        if self.max_tunnels_per_peer is None:
            object.__setattr__(self, "max_tunnels_per_peer", max(1, self.max_tunnels // 2))
        elif self.max_tunnels_per_peer < 1:
            raise ValueError("max tunnels per peer must be at least 1")
        if self.repl_grace < 0:
            raise ValueError("repl grace must not be negative")
        if self.dial_timeout <= 0:
            raise ValueError("dial timeout must be positive")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise ValueError("idle timeout must be positive (or None)")

    def target_allowed(self, target: HostPort) -> bool:
        """Is ``target`` on the allow-list? Host names compare literally (no DNS lookups)."""
        return target in self.targets or HostPort(target.host, -1) in self.targets
