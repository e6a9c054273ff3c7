"""Relation resolution: (mutation, active states, schema) -> the ordered target states.

Pure and deterministic, so the machine caches its answers per (type, called, active) and a
repeated mutation costs one dictionary lookup. The algorithm mirrors the reference resolver step
by step (spec core-machine §3), including its two-hop limit on Add relations, because relation
outcomes are observable behaviour that users and tests depend on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from .mutation import LogLevel, MutationType
from .schema import Relation, State
from .transition import Step, StepType

__all__ = ["Resolver", "Plan"]

ADD, REMOVE, SET = MutationType.ADD, MutationType.REMOVE, MutationType.SET


class Plan:
    """The resolved shape of one transition, reusable for identical inputs."""

    __slots__ = (
        "targets",
        "exits",
        "enters",
        "accepted",
        "logs",
        "negotiation",
        "finals",
        "target_set",
        "active",
        "bound",
        "steps",
        "bumps",
        "lane_ci",
        "lane_lb",
    )

    def __init__(
        self,
        targets: list[str],
        exits: list[str],
        enters: list[str],
        accepted: bool,
        logs: list[tuple[int, str]],
    ) -> None:
        self.targets = targets
        self.target_set = frozenset(targets)
        self.active = tuple(targets)  # the machine's active states after it, as stored
        self.steps: list[Step] = []
        self.exits = exits
        self.enters = enters
        self.accepted = accepted
        self.logs = logs
        # handler names with the state each is attributed to (for partial auto), filled lazily
        self.negotiation: list[tuple[str, str]] | None = None
        self.finals: tuple[int, list, list] | None = None  # final calls for a handlers version
        self.bound: tuple[int, list] | None = None  # negotiation calls for a handlers version
        self.bumps: tuple[tuple[int, int], ...] | None = None  # tick deltas (Machine._bumps)
        #: (the debugger lane's table of called-state lists, this plan's index in it): a plan
        #: is keyed by its called states, so its row needs no lookup of them (see Lane.index)
        self.lane_ci: tuple[dict, int] | None = None
        #: (the lane's table of log blocks, the rare fields they stand for, the row's flag
        #: bits) of this plan's log lines the last time it ran, or False once they varied
        #: (see Lane.block)
        self.lane_lb: tuple | Literal[False] | None = None


class Resolver:
    """Holds the schema-derived structures relation resolution needs."""

    def __init__(self, schema: Mapping[str, State], index: list[str]) -> None:
        self.schema = schema
        self.index = index
        self.topology = self._topology()
        self.removes = {n: frozenset(st.remove) for n, st in schema.items()}

    def _topology(self) -> dict[str, int]:
        """Post-order DFS of the Require graph from states that require something."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            seen.add(n)
            for r in self.schema[n].require:
                if r not in seen and r in self.schema:
                    visit(r)
            order.append(n)

        for n in self.index:
            if self.schema[n].require and n not in seen:
                visit(n)
        return {n: i for i, n in enumerate(order)}

    def sort_states(self, states: list[str]) -> list[str]:
        """Require order first (required before requiring), then After (a state moves behind
        the states it lists in ``after``), both stable."""
        topo = self.topology
        out = sorted(states, key=lambda s: topo.get(s, -1)) if topo else list(states)
        sch = self.schema
        # plain insertion sort, as the reference (stable sort on few elements)
        for i in range(1, len(out)):
            j = i
            while j > 0:
                x, y = out[j], out[j - 1]
                # less(x, y): y lists x in After (so x goes first), and not the other way round
                if x in sch[y].after and y not in sch[x].after:
                    out[j], out[j - 1] = y, x
                    j -= 1
                else:
                    break
        return out

    def resolve(
        self,
        mtype: MutationType,
        called: tuple[str, ...],
        before: tuple[str, ...],
        *,
        auto: bool = False,
        check: bool = False,
    ) -> Plan:
        sch = self.schema
        logs: list[tuple[int, str]] = []
        # debugging steps, kept with the cached plan (cheap: built once per distinct input)
        steps: list[Step] = [Step(StepType.CALLED, c) for c in called]
        before_set = set(before)
        called_set = set(called)

        if mtype == ADD:
            initial = list(dict.fromkeys(called + before))
        elif mtype == REMOVE:
            initial = [b for b in before if b not in called_set]
        else:
            initial = list(called)

        def expand_add(lst: list[str]) -> list[str]:
            out = list(lst)
            for n in lst:
                st = sch[n]
                if not st.add or (n in before_set and not st.multi):
                    continue
                for a in st.add:
                    if mtype == REMOVE and a in called_set:
                        continue
                    out.append(a)
                    steps.append(Step(StepType.RELATION, n, a, Relation.ADD))
            return out

        def drop_unmet(lst: list[str]) -> list[str]:
            while True:
                present = set(lst)
                kept = []
                for n in lst:
                    missing = [r for r in sch[n].require if r not in present]
                    if missing:
                        level = LogLevel.DECISIONS if auto else LogLevel.OPS
                        tag = "reject:auto" if auto else "reject"
                        logs.append((level, f"[{tag}] {n}(-{' -'.join(missing)})"))
                        steps.extend(
                            Step(StepType.RELATION, n, r, Relation.REQUIRE) for r in missing
                        )
                    else:
                        kept.append(n)
                if len(kept) == len(lst):
                    return kept
                lst = kept

        removes = self.removes
        s = drop_unmet(list(dict.fromkeys(expand_add(initial))))
        blocked: set[str] = set()
        keep: list[str] = []
        for n in reversed(s):
            blockers = [b for b in s if n in removes[b] and b not in blocked]
            if blockers:
                blocked.add(n)
                level = LogLevel.OPS if n in before_set or n in called_set else LogLevel.DECISIONS
                logs.append((level, f"[rel:remove] {n} by {' '.join(blockers)}"))
                steps.extend(Step(StepType.RELATION, b, n, Relation.REMOVE) for b in blockers)
                continue
            keep.append(n)
        to_remove: set[str] = set()
        for n in keep:
            to_remove.update(sch[n].remove)
        k = list(dict.fromkeys(x for x in expand_add(keep) if x not in to_remove))
        k.reverse()
        targets = self.sort_states(drop_unmet(k))

        target_set = set(targets)
        accepted = True
        if mtype != REMOVE:
            rejected = [c for c in called if c not in target_set]
            if rejected:
                survived = len(rejected) < len(called)
                if not ((auto and survived) or (check and any(sch[c].multi for c in called))):
                    accepted = False
                    logs.append((LogLevel.OPS, f"[cancel:reject] {' '.join(rejected)}"))

        exits = self.sort_states([b for b in before if b not in target_set])
        enters = [t for t in targets if t not in before_set or (sch[t].multi and t in called_set)]
        implied = [t for t in targets if t not in initial and t not in called_set]
        if implied:
            logs.append((LogLevel.OPS, f"[implied] {' '.join(implied)}"))
        plan = Plan(targets, exits, enters, accepted, logs)
        plan.steps = steps
        return plan
