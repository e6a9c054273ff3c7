"""Why a mutation was canceled, in words, for a person who asked for it (the REPL).

The machine knows while the transition runs: a negotiation handler that refused it (or raised),
or relations that left a called state out of the target. It keeps neither once the call
returns, and looking costs the full transition path, so only a caller that will show the reason
asks: :func:`mutate_explained` binds a tracer for the one call and reads the transition it ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .mutation import MutationType, Result
from .schema import Relation, names_of
from .tracer import Tracer
from .transition import StepType, Transition

__all__ = ["mutate_explained", "why_canceled"]


class _FirstTransition(Tracer):
    """Keeps the first transition of one mutation (type and called states)."""

    def __init__(self, mtype: MutationType, called: tuple[str, ...]) -> None:
        self.key = (mtype, called)
        self.tx: Transition | None = None

    def transition_end(self, tx: Transition) -> None:
        mut = tx.mutation
        if self.tx is None and not mut.auto and (mut.type, mut.called) == self.key:
            self.tx = tx


def mutate_explained(
    machine: Any,
    mtype: MutationType,
    states: str | Iterable[str],
    args: Mapping[str, Any] | None = None,
    **kw: Any,
) -> tuple[Result | int, str]:
    """``machine.add/remove/set(states, args, **kw)`` and, when it was canceled, why ('' else)."""
    called = names_of(states)
    watch = _FirstTransition(mtype, called)
    err = machine.err
    machine.tracer_bind(watch)
    try:
        result = getattr(machine, mtype.name.lower())(called, args, **kw)
    finally:
        machine.tracer_detach(watch)
    if result != Result.CANCELED:
        return result, ""
    return result, why_canceled(machine, watch.tx, called, err)


def why_canceled(
    machine: Any, tx: Transition | None, called: tuple[str, ...], err_before: Any = None
) -> str:
    """The reason of a canceled mutation: ``by MsgEnter``, ``Foo requires Bar``, ...

    `tx` is the mutation's transition (None: it never got one); `err_before` the machine's
    last error before the call, to tell a handler that raised from one that refused."""
    if tx is None:
        if machine.is_disposed:
            return "the machine is disposed"
        return "refused before its transition (handler backoff or a full queue)"
    if tx.cancelled_by:
        err = machine.err
        if err is not None and err is not err_before:
            text = " ".join(str(err).split())
            text = text if len(text) <= 120 else text[:120] + "..."
            return f"by {tx.cancelled_by}, which raised {type(err).__name__}: {text}"
        return f"by {tx.cancelled_by}"
    if tx.mutation.type == MutationType.REMOVE or tx.accepted:
        still = [s for s in called if machine.is_active(s)]
        return f"{' '.join(still) or ' '.join(called)} still active after it"
    return _relations(tx, called)


def _relations(tx: Transition, called: tuple[str, ...]) -> str:
    """Which relations left called states out of the target, from the resolver's steps."""
    targets = set(tx.targets)
    steps = getattr(tx.plan, "steps", None) or []
    why: list[str] = []
    for state in called:
        if state in targets:
            continue
        needs = [s.to_state for s in steps if _rel(s, Relation.REQUIRE) and s.from_state == state]
        by = [s.from_state for s in steps if _rel(s, Relation.REMOVE) and s.to_state == state]
        if needs:
            why.append(f"{state} requires {' '.join(dict.fromkeys(needs))}")
        if by:
            why.append(f"{state} is removed by {' '.join(dict.fromkeys(by))}")
        if not needs and not by:
            why.append(f"{state} rejected by the relations")
    return "; ".join(why) or "rejected by the relations"


def _rel(step: Any, rel: Relation) -> bool:
    return step.type == StepType.RELATION and step.rel_type == rel
