"""Pipes: a source machine's state drives a target machine's state.

A pipe is a final handler bound on the source; the target still negotiates (it may refuse).
Pipe mutations carry the source event, so the target records where they came from. A pipe
ends when either machine is disposed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .machine import Machine
from .schema import EXCEPTION

__all__ = ["bind", "bind_many", "pipe_add", "pipe_remove", "bind_err", "bind_any", "sync"]


class _PipeHandlers:
    """A handler group built from a name -> callable map."""

    def __init__(self, handlers: dict[str, Any]) -> None:
        for name, fn in handlers.items():
            setattr(self, name, fn)


def _names(dst_state: str) -> tuple[str, ...]:
    return (EXCEPTION, dst_state) if dst_state.startswith("Err") else (dst_state,)


def pipe_add(src: Machine, dst: Machine, src_state: str, dst_state: str | None = None) -> str:
    """When ``src_state`` activates on ``src``, add ``dst_state`` (default: the same name) to
    ``dst`` with the same args. Returns the handler group id on ``src``."""
    target = dst_state or src_state
    dst._check_known(_names(target))

    def handler(e: Any) -> None:
        dst.add(_names(target), e.args, source=e)

    return _bind(src, dst, {f"{src_state}State": (handler, target)}, f"pipe-add-{src_state}")


def pipe_remove(src: Machine, dst: Machine, src_state: str, dst_state: str | None = None) -> str:
    """When ``src_state`` ends on ``src``, remove ``dst_state`` from ``dst``."""
    target = dst_state or src_state
    dst._check_known((target,))

    def handler(e: Any) -> None:
        dst.remove(target, e.args, source=e)

    return _bind(src, dst, {f"{src_state}End": (handler, target)}, f"pipe-remove-{src_state}")


def bind(
    src: Machine, dst: Machine, state: str, active: str | None = None, inactive: str | None = None
) -> str:
    """Mirror ``state``: ``<state>State`` adds ``active``, ``<state>End`` removes ``inactive``
    (both default to ``state``)."""
    return bind_many(src, dst, [state], [active or state], [inactive or active or state])


def bind_many(
    src: Machine,
    dst: Machine,
    states: Sequence[str],
    active: Sequence[str] | None = None,
    inactive: Sequence[str] | None = None,
) -> str:
    """:func:`bind` for parallel lists, as one handler group."""
    active = list(active or states)
    inactive = list(inactive or active)
    if not len(states) == len(active) == len(inactive):
        raise ValueError("bind_many: states and target lists differ in length")
    dst._check_known((*active, *inactive))
    src._check_known(tuple(states))
    handlers: dict[str, tuple[Any, str]] = {}
    for s, on, off in zip(states, active, inactive, strict=True):
        handlers[f"{s}State"] = (lambda e, on=on: dst.add(on, e.args, source=e)), on
        handlers[f"{s}End"] = (lambda e, off=off: dst.remove(off, e.args, source=e)), off
    return _bind(src, dst, handlers, "pipe-bind-" + "-".join(states))


def bind_err(src: Machine, dst: Machine, target_err: str = EXCEPTION) -> str:
    """Errors of ``src`` become ``target_err`` (+ ``Exception``) on ``dst``."""

    def handler(e: Any) -> None:
        err = src.err or RuntimeError(f"error in {src.id}")
        dst.add_err_state(target_err, err, source=e)

    return _bind(src, dst, {"ExceptionState": (handler, target_err)}, "pipe-err")


def bind_any(src: Machine, dst: Machine) -> str:
    """``dst`` follows every transition of ``src`` (``dst`` must define all of its states)."""
    missing = [s for s in src.state_names if not dst.has(s)]
    if missing:
        raise ValueError(f"bind_any: {dst.id} is missing states {', '.join(missing)}")

    def handler(e: Any) -> None:
        targets = e.transition.target_states
        if not dst.is_active(targets) or len(dst.active_states) != len(targets):
            dst.set(targets, e.args, source=e)

    return _bind(src, dst, {"AnyState": (handler, "Any")}, "pipe-any")


def sync(
    src: Machine, dst: Machine, states: Sequence[str], target_states: Sequence[str] | None = None
) -> int:
    """Add the targets whose source is active, remove the others; the number touched."""
    targets = list(target_states or states)
    add = [t for s, t in zip(states, targets, strict=True) if src.is_active(s)]
    rm = [t for s, t in zip(states, targets, strict=True) if not src.is_active(s)]
    if add:
        dst.add(add)
    if rm:
        dst.remove(rm)
    return len(add) + len(rm)


def _bind(src: Machine, dst: Machine, handlers: dict[str, tuple[Any, str]], name: str) -> str:
    """Bind ``handlers`` (a handler name on ``src`` -> its function and the state of ``dst`` it
    mutates) as one group, and log the pipe's ends for the debugger."""
    fns = {handler: fn for handler, (fn, _) in handlers.items()}
    gid = src.handlers_bind(_PipeHandlers(fns), id=f"{name}-to-{dst.id}")
    # the debugger draws pipe edges from these lines (see dbg/model.py): the source's state on
    # the source, the target's state on the target
    for handler, (_, target) in handlers.items():
        kind = "add" if handler.endswith("State") else "remove"
        state = handler.removesuffix("State").removesuffix("End")
        src.log_graph(f"[pipe-out:{kind}] {state} to {dst.id}")
        dst.log_graph(f"[pipe-in:{kind}] {target} from {src.id}")

    # A pipe goes with either machine (the reference's pipe gc): the one left says so with
    # ``[pipe:gc] <gone>``, which ends the pipe in the debugger's reader and diagrams;
    # without it they showed pipes to a machine long gone.
    def dst_gone(_: str) -> None:
        if gid in src.handlers():
            src.handlers_detach(gid)
        src.log_graph(f"[pipe:gc] {dst.id}")

    dst.on_dispose(dst_gone)
    src.on_dispose(lambda _: dst.log_graph(f"[pipe:gc] {src.id}"))
    return gid
