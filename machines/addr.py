"""``HOST:PORT`` addresses as people write them: the one parser every command, driver and
tracer uses, so they accept the same spellings and refuse the rest with the same words.

Pure Python (no sockets), so the browser's telemetry parses ``AM_DBG_ADDR`` with it too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class HostPort:
    """A TCP address as written by people: ``host:port`` or ``[v6]:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)


def format_hostport(host: str, port: int | str) -> str:
    """``host:port``, bracketing IPv6 literals so the result parses back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_hostport(text: str, *, allow_any_port: bool = False) -> HostPort:
    """Parse ``host:port`` (``[v6]:port`` for IPv6); raise ValueError with a readable reason.

    With ``allow_any_port`` the port may be ``*`` (stored as -1): an allow-list wildcard.
    """
    if not text or "/" in text or any(c.isspace() for c in text):
        raise ValueError(f"bad address {text!r}: expected HOST:PORT")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"bad address {text!r}: expected HOST:PORT")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError(f"bad address {text!r}: unbalanced brackets")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"bad address {text!r}: write IPv6 hosts as [addr]:port")
    if allow_any_port and port_text == "*":
        return HostPort(host.lower(), -1)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"bad address {text!r}: port must be 0-65535")
    return HostPort(host.lower(), int(port_text))
