"""asyncmachine runtime: states, relations, clocks, the queue and waiting.

The core (schema, resolver, machine, queue, waiting) does no I/O and imports neither trio nor
asyncio at module load, so the same code runs in CPython servers and in the browser's Python
(Pyodide); awaiting goes through `machines.aio` to whichever loop runs. The one exception is
opt-in: with ``AM_DBG_ADDR`` set, a new machine attaches telemetry, which sends from a
background thread (`machines.telemetry`).
"""

from .api import MachineApi, settle
from .machine import HandlerTimeoutError, Machine
from .mutation import LogLevel, Mutation, MutationType, MutSource, Result
from .schema import EXCEPTION, Relation, Schema, State, extend, merge, states_by_tag
from .tracer import Tracer
from .transition import Event, ExceptionArgs, Step, StepType, Transition
from .waiting import StateCtx, Waitable

__all__ = [
    "EXCEPTION",
    "Event",
    "ExceptionArgs",
    "HandlerTimeoutError",
    "LogLevel",
    "Machine",
    "MachineApi",
    "MutSource",
    "Mutation",
    "MutationType",
    "Relation",
    "Result",
    "Schema",
    "State",
    "StateCtx",
    "Step",
    "StepType",
    "Tracer",
    "Transition",
    "Waitable",
    "extend",
    "merge",
    "settle",
    "states_by_tag",
]
