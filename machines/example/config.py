"""The example's configuration: a ``.env`` file, overridden by the environment.

As in the reference, one ``.env`` names every address; unlike it, nothing is baked in: the
server reads it at start and hands the page what it needs as ``config.json`` (see
:meth:`Config.page`). Defaults are the reference's, all on localhost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from machines.addr import parse_hostport

#: variable -> default (the reference's ports; ``:0`` lets the relay pick bar's REPL port)
DEFAULTS: dict[str, str] = {
    "FOO_TCP_ADDR": "localhost:14000",
    "FOO_REPL_ADDR": "localhost:14010",
    "BAR_TCP_ADDR": "localhost:14001",
    "BAR_REPL_ADDR": "localhost:0",
    "RELAY_HTTP_ADDR": "localhost:12733",
    "REPL_DIR": "tmp",
    "FOO_BORED_AFTER": "15",
    "FOO_HELLO_INTERVAL": "10",
    "AM_DBG_ADDR": "",
}

#: the variables that must be ``HOST:PORT``: checked at load, so a typo is one line naming the
#: variable before anything starts, not a traceback from whichever listener reads it first
ADDR_VARS = ("FOO_TCP_ADDR", "FOO_REPL_ADDR", "BAR_TCP_ADDR", "BAR_REPL_ADDR", "RELAY_HTTP_ADDR")

#: debug variables passed through to the page as they are (see DESIGN: configuration)
PAGE_ENV = ("AM_DBG_ADDR", "AM_LOG", "AM_LOG_FULL", "AM_DEBUG", "AM_HEALTHCHECK",
            "AM_RPC_LOG_SERVER", "AM_RPC_LOG_CLIENT", "AM_RPC_LOG_MUX", "AM_RPC_DBG")  # fmt: skip


@dataclass(frozen=True)
class Config:
    foo_tcp_addr: str = DEFAULTS["FOO_TCP_ADDR"]
    foo_repl_addr: str = DEFAULTS["FOO_REPL_ADDR"]
    bar_tcp_addr: str = DEFAULTS["BAR_TCP_ADDR"]
    bar_repl_addr: str = DEFAULTS["BAR_REPL_ADDR"]
    relay_http_addr: str = DEFAULTS["RELAY_HTTP_ADDR"]
    repl_dir: str = DEFAULTS["REPL_DIR"]
    #: seconds of silence before server-foo gets Bored
    foo_bored_after: float = 15.0
    #: seconds between the server's hellos to every Ready browser
    foo_hello_interval: float = 10.0
    #: debug variables for the page (``AM_DBG_ADDR``...)
    env: Mapping[str, str] | None = None

    @staticmethod
    def var(field: str) -> str:
        return field.upper()

    def page(self) -> dict[str, Any]:
        """What the page needs (``config.json``): the tunnel labels and the debug variables."""
        return {
            "FOO_TCP_ADDR": self.foo_tcp_addr,
            "BAR_TCP_ADDR": self.bar_tcp_addr,
            "BAR_REPL_ADDR": self.bar_repl_addr,
            "env": dict(self.env or {}),
        }

    @classmethod
    def from_page(cls, data: Mapping[str, Any]) -> Config:
        """The inverse of :meth:`page` (the browser side's view)."""
        return cls(
            foo_tcp_addr=str(data.get("FOO_TCP_ADDR") or DEFAULTS["FOO_TCP_ADDR"]),
            bar_tcp_addr=str(data.get("BAR_TCP_ADDR") or DEFAULTS["BAR_TCP_ADDR"]),
            bar_repl_addr=str(data.get("BAR_REPL_ADDR") or DEFAULTS["BAR_REPL_ADDR"]),
            env={str(k): str(v) for k, v in dict(data.get("env") or {}).items()},
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load(env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None) -> Config:
    """Defaults < ``env_file`` (if it exists) < ``environ`` (default: ``os.environ``).

    A bad number or address (``AM_DBG_ADDR`` too, unless empty or ``1``) raises ValueError
    naming the variable.
    """
    values: dict[str, str] = dict(DEFAULTS)
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    environ = os.environ if environ is None else environ
    values.update({k: environ[k] for k in (*DEFAULTS, *PAGE_ENV) if k in environ})
    kw: dict[str, Any] = {}
    for f in fields(Config):
        name = Config.var(f.name)
        if f.name == "env" or name not in values:
            continue
        if f.type == "float":
            try:
                kw[f.name] = float(values[name])
            except ValueError:
                raise ValueError(f"{name}={values[name]!r} is not a number of seconds") from None
            if kw[f.name] <= 0:
                raise ValueError(f"{name}={values[name]!r} must be more than 0 seconds")
        else:
            kw[f.name] = values[name]
    kw["env"] = {k: values[k] for k in PAGE_ENV if values.get(k)}
    dbg_addr = values.get("AM_DBG_ADDR") or ""
    for name in (*ADDR_VARS, *(("AM_DBG_ADDR",) if dbg_addr not in ("", "1") else ())):
        try:
            parse_hostport(values[name])
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    return Config(**kw)
