"""What the environment asks of machines, parsed in one place (as the reference's ``AM_*``).

Read when a machine is made (so a test or a process can change the environment between
machines); a bad value falls back to the default rather than breaking construction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Options"]


@dataclass(frozen=True, slots=True)
class Options:
    #: ``AM_DEBUG``: long handler timeouts (600 s instead of 0.1 s), for stepping in a debugger
    debug: bool = False
    #: ``AM_LOG``: the log level, 0 (off) to 5 (everything)
    log_level: int = 0
    #: ``AM_LOG_FULL``: full logging, mutation args and queued mutations included
    log_full: bool = False
    #: ``AM_LOG_FULL`` or ``AM_LOG_STEPS``: record each transition's steps
    log_steps: bool = False
    #: ``AM_LOG_PRINT``: print the log even when it feeds the debugger
    log_print: bool = False
    #: ``AM_DBG_ADDR``: the debugger to report to (``1``: the default address; empty: off)
    dbg_addr: str = ""
    #: ``AM_RPC_DBG``: report aRPC's own machines too
    rpc_dbg: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Options:
        env = os.environ if env is None else env
        try:
            level = max(0, min(5, int(env.get("AM_LOG", "0") or 0)))
        except ValueError:
            level = 0
        full = bool(env.get("AM_LOG_FULL"))
        return cls(
            debug=bool(env.get("AM_DEBUG")),
            log_level=level,
            log_full=full,
            log_steps=full or bool(env.get("AM_LOG_STEPS")),
            log_print=bool(env.get("AM_LOG_PRINT")),
            dbg_addr=env.get("AM_DBG_ADDR", ""),
            rpc_dbg=bool(env.get("AM_RPC_DBG")),
        )
