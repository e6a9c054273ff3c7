"""The network graph of a dump: machines, their states and relations, and the links between
machines (parent, RPC, pipes), with the latest clocks of every machine.

Why a model of its own: the D2 and inspect outputs, and the distance rules of the presets, all
read the same links; they are derived once here from the telemetry messages. The fields and
log lines used are documented in :mod:`dbg.model` (the producer's contract).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dbg.model import DbgMsgTx, LogEntry, MachineDump, MutationType, ns_to_time

__all__ = ["Graph", "Pipe", "is_inherited", "INHERITED_SETS"]

# States that come from the framework's shared state sets. A machine's state is "inherited"
# when it is Exception, or when the machine has *every* state of a set holding it.
BASIC = (
    "Exception",
    "ErrNetwork",
    "ErrHandlerTimeout",
    "Start",
    "Ready",
    "Healthcheck",
    "Heartbeat",
)
DISPOSED = ("RegisterDisposal", "Disposing", "Disposed")
CONNECTED = ("ErrConnecting", "Connecting", "Connected", "Disconnecting", "Disconnected")
RPC_SHARED = BASIC + (
    "ErrOnClient",
    "ErrNetworkTimeout",
    "ErrRpc",
    "ErrDelivery",
    "Handshaking",
    "HandshakeDone",
)
INHERITED_SETS: tuple[tuple[str, ...], ...] = (BASIC, DISPOSED, CONNECTED, RPC_SHARED)

TAG_RPC_SERVER = "rpc-server"
STATE_HANDSHAKE_DONE = "HandshakeDone"

# "[pipe-out:add] A to m2"; without ":add"/":remove" a pipe counts as an add pipe.
_PIPE_RE = re.compile(r"^\[pipe-(in|out)(?::(add|remove))?\] (\S+) (from|to) (\S+)")
_PIPE_GC_RE = re.compile(r"^\[pipe:gc\] (\S+)")
_ADD_ARGS_RE = re.compile(r"^\[add\] [^(]*\((.*)\)\s*$")


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def is_inherited(state: str, machine_states: Iterable[str]) -> bool:
    """Whether ``state`` comes from a framework state set fully present in the machine."""
    if state == "Exception":
        return True
    have = set(machine_states)
    return any(state in s and have.issuperset(s) for s in INHERITED_SETS)


@dataclass(slots=True)
class Pipe:
    """One pipe between two machines: ``from_state`` of the source mutates ``to_state`` of the
    target. A side that was not seen in any log yet is ""."""

    from_state: str
    to_state: str
    mut: MutationType


@dataclass
class Graph:
    """Machines of a dump and the links between them.

    - ``machines``: id -> dump, for machines present in the dump (drawn with states);
    - ``parents``: child id -> parent id (as declared by the child's schema);
    - ``rpc``: set of (client id, server id);
    - ``pipes``: (source id, target id) -> pipes, in the order they were found.

    Links may name machines that are not in the dump; they are drawn as "half" boxes.
    """

    machines: dict[str, MachineDump] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)
    rpc: set[tuple[str, str]] = field(default_factory=set)
    pipes: dict[tuple[str, str], list[Pipe]] = field(default_factory=dict)

    @classmethod
    def from_dump(cls, machines: Iterable[MachineDump]) -> Graph:
        """Build the graph: schemas first, then every transition in order (like a replay)."""
        g = cls()
        for m in machines:
            g.machines[m.id] = m
            if m.schema.parent:
                g.parents[m.id] = m.schema.parent
        g._replay_all()
        return g

    # ----- queries

    def latest_clocks(self, mach_id: str) -> list[int]:
        m = self.machines.get(mach_id)
        return m.latest_clocks() if m else []

    def is_active(self, mach_id: str, state: str) -> bool:
        m = self.machines.get(mach_id)
        if m is None:
            return False
        try:
            i = m.schema.states_index.index(state)
        except ValueError:
            return False
        clocks = m.latest_clocks()
        return i < len(clocks) and clocks[i] % 2 == 1

    def time_sum(self, mach_id: str) -> int:
        return sum(self.latest_clocks(mach_id))

    def all_ids(self) -> set[str]:
        """Every machine id: in the dump or only named by a link."""
        ids = set(self.machines) | set(self.parents) | set(self.parents.values())
        for a, b in self.rpc:
            ids.update((a, b))
        for a, b in self.pipes:
            ids.update((a, b))
        return ids

    def neighbours(self, mach_id: str) -> set[str]:
        """Machines one link away (parent, child, RPC or pipe, in either direction)."""
        out: set[str] = set()
        for child, parent in self.parents.items():
            if child == mach_id:
                out.add(parent)
            elif parent == mach_id:
                out.add(child)
        for a, b in list(self.rpc) + [k for k, v in self.pipes.items() if v]:
            if a == mach_id:
                out.add(b)
            elif b == mach_id:
                out.add(a)
        out.discard(mach_id)
        return out

    def distances(self, start: Iterable[str]) -> dict[str, int]:
        """Hops from the nearest of ``start`` to every reachable machine (breadth first)."""
        adj: dict[str, set[str]] = {}

        def link(a: str, b: str) -> None:
            if a != b:
                adj.setdefault(a, set()).add(b)
                adj.setdefault(b, set()).add(a)

        for child, parent in self.parents.items():
            link(child, parent)
        for a, b in self.rpc:
            link(a, b)
        for (a, b), pipes in self.pipes.items():
            if pipes:
                link(a, b)
        dist = {s: 0 for s in start}
        queue = deque(dist)
        while queue:
            cur = queue.popleft()
            for nxt in adj.get(cur, ()):
                if nxt not in dist:
                    dist[nxt] = dist[cur] + 1
                    queue.append(nxt)
        return dist

    def ancestors(self, mach_id: str) -> list[str]:
        """Parent chain from the root down to ``mach_id`` (inclusive); cycles are cut."""
        chain = [mach_id]
        seen = {mach_id}
        cur = mach_id
        while (parent := self.parents.get(cur)) and parent not in seen:
            chain.append(parent)
            seen.add(parent)
            cur = parent
        return chain[::-1]

    # ----- replay of transitions

    def _replay_all(self) -> None:
        """Replay every transition of every machine, in time order across machines.

        Order matters for links that span machines (a ``[pipe:gc]`` must come after the pipes
        it removes). A transition without a time keeps its machine's previous one, so each
        machine's own order is never changed (the sort is stable). A machine that vanished
        (:attr:`MachineDump.gone_ns`) ends its pipes then, as a ``[pipe:gc]`` would: a killed
        process or a closed tab logs none.
        """
        events: list[tuple[datetime, int, MachineDump, DbgMsgTx | None]] = []
        for m in self.machines.values():
            at = _NO_TIME
            for tx in m.txs:
                if tx.time is not None:
                    at = max(at, _aware(tx.time))
                events.append((at, len(events), m, tx))
            if m.gone_ns:
                events.append((max(at, ns_to_time(m.gone_ns)), len(events), m, None))
        events.sort(key=lambda e: (e[0], e[1]))
        prev: dict[str, list[int]] = {}
        for _, _, m, event in events:
            if event is None:
                self._end_pipes(m.id)
                continue
            self._replay(m, event, prev.get(m.id, []))
            if event.clocks:
                prev[m.id] = event.clocks

    def _end_pipes(self, gone: str) -> None:
        for key in [k for k in self.pipes if gone in k]:
            del self.pipes[key]

    def _replay(self, m: MachineDump, tx: DbgMsgTx, prev: list[int]) -> None:
        index = m.schema.states_index
        if TAG_RPC_SERVER in m.schema.tags and STATE_HANDSHAKE_DONE in index:
            i = index.index(STATE_HANDSHAKE_DONE)
            before = prev[i] if i < len(prev) else 0
            now = tx.clocks[i] if i < len(tx.clocks) else 0
            if now % 2 == 1 and before % 2 == 0:
                self._rpc_from_logs(m.id, tx)
        for entry in tx.pre_log_entries + tx.log_entries:
            self._parse_log(m.id, entry)

    def _rpc_from_logs(self, server_id: str, tx: DbgMsgTx) -> None:
        for entry in tx.pre_log_entries + tx.log_entries:
            match = _ADD_ARGS_RE.match(entry.text)
            if not match:
                continue
            for arg in match.group(1).split(" "):
                key, _, value = arg.partition("=")
                if key == "id" and value:
                    self.rpc.add((self._resolve_id(value), server_id))

    def _resolve_id(self, mach_id: str) -> str:
        # Long argument values are cut to "prefix..." in logs: find the one machine it names.
        if mach_id.endswith("...") and mach_id not in self.machines:
            prefix = mach_id[:-3]
            found = [i for i in self.machines if i.startswith(prefix)]
            if len(found) == 1:
                return found[0]
        return mach_id

    def _parse_log(self, mach_id: str, entry: LogEntry) -> None:
        text = entry.text
        if text.startswith("[rpc:connected] "):
            # an aRPC client acting for machine X reached this (source) machine: X -> here
            client = text.split(" ", 2)[1]
            if client and client != mach_id:
                self.rpc.add((self._resolve_id(client), mach_id))
            return
        if not text.startswith("[pipe"):
            return
        gc = _PIPE_GC_RE.match(text)
        if gc:
            self._end_pipes(gc.group(1))
            return
        match = _PIPE_RE.match(text)
        if not match:
            return
        direction, mut_name, state, _, other = match.groups()
        mut = MutationType.REMOVE if mut_name == "remove" else MutationType.ADD
        is_out = direction == "out"
        key = (mach_id, other) if is_out else (other, mach_id)
        pipes = self.pipes.setdefault(key, [])
        # Pair this half with the first pipe of the same kind missing this side (or a dup).
        for pipe in pipes:
            if pipe.mut != mut:
                continue
            mine = pipe.from_state if is_out else pipe.to_state
            if mine == state:
                return
            if mine == "":
                if is_out:
                    pipe.from_state = state
                else:
                    pipe.to_state = state
                return
        pipes.append(Pipe(state, "", mut) if is_out else Pipe("", state, mut))
