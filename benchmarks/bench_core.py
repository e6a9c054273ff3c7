"""Machine core vs ``transitions`` 0.9.3, measured in the same run on the same workloads.

``transitions`` is the best-known pure-Python state machine library, so it is the peer that
tells whether the core's per-mutation cost is reasonable. It models one active state at a time;
our machine models many. Every workload below is therefore shaped so that both libraries do the
same observable work (same state sequence, same number of callbacks), and the script checks that
they did (final state, callback counts) before printing a figure.

Workloads (each is one ``ops`` count of mutations or constructions):

(a) flat toggle: ours ``A{Remove:[B]}``, ``B{Remove:[A]}``, alternating ``add A`` / ``add B``;
    theirs two states with ``go`` (A->B) and ``back`` (B->A) triggers. No handlers on either.
(b) relations with handlers: see :func:`relations_ours` and :func:`relations_theirs`.
(c) 100 states, seeded random add/remove: see :func:`random_ours` and :func:`random_theirs`.
(d) constructing a 100-state machine: the machines of (c), and plain 100 states (d2).

Each figure is the best and the median of several repeats (``time.perf_counter``); ours and
theirs repeats are interleaved so a noisy neighbour hurts both alike. Targets are judged on the
median. The logger is pinned to level 0 (an ``AM_LOG`` in the environment would otherwise slow
ours down).

Where the time of (b) goes (cProfile, 40k mutations, 3.5 handler calls each): before, ~2.0M
Python calls: per mutation ``_mutate`` -> ``_drain`` (the mutation appended to the queue and
popped again under the lock) -> ``_execute`` -> ``_run`` -> ``_negotiation_calls`` /
``_final_calls`` (a list of every final handler name, most without a handler, walked each
time) -> ``_call`` per handler (Event, two clock reads) -> ``_apply`` (name -> index lookups
per changed state) -> ``_result`` -> ``_queue_ended``; about 1.0x ``transitions``. After, ~1.45M
calls: a mutation on an idle queue runs at once, each plan caches its tick deltas as (index,
delta) pairs and its final calls without the empty ones, the Transition is built with its
plan and clock, and queue-end hooks run only when wanted; the rest is the per-handler call
(Event, the handler-timeout clock) and the Transition: about 1.8x ``transitions`` (median of
7 on a loaded 2-core machine; 1.2x for the code before, same run conditions). Every cache is
checked against an uncached replay in tests/test_perf_core.py.

On a shared machine wall-clock ratios swing by +-30 % between runs, so the next round was
steered by instruction counts, which load does not change (benchmarks/bench_icount.py:
valgrind's count of a workload's ``run(n)`` after a warm-up, minus the same run without the
timed part, over n). Before: (b) 55.2k
instructions per mutation (``transitions``: 106k, so 1.92x): 34.7k the full transition path
with no handler to call (an unobserved mutation's fast path: ~14k), then ~5.8k per handler
call (its Event, a class call; two clock reads; the observers' checks); the flat toggle 14.6k.
Measured this way, one Python-level call costs ~0.9k (inlining one saved that). After: (b)
47.7k (2.22x by the same count), the flat toggle 13.0k, from: the waits' "anything registered"
check is a plain int instead of a ``__bool__`` call on every mutation; a transition's log and
step lists are
created on first use; one clock read per handler call (the time between two handlers counts
to the second); a handler's Event is reused when nobody kept the previous one (its reference
count says so, so no-one can observe the reuse; tested with kept events and raising
handlers); a mutation without a source is built without a keyword argument (a class call
with one builds a kwargs dict on CPython 3.11); the tick update runs inline and its
observers' part only when someone observes; negotiation and final handlers run through one
loop with the call inlined (``Handlers._handle``): (b) 46.9k, 2.25x. Tried and dropped (no
gain or worse): building the Transition without the class call (``object.__new__`` and an
init method), class defaults instead of slots for its rarely set fields.

Next round, same count (``python benchmarks/bench_icount.py b a c tb``), before -> after: (b)
47.0k -> 38.8k instructions per mutation (``transitions``: 105.4k, so 2.25x -> 2.72x), (a)
13.1k -> 10.3k, (c) 58.3k -> 47.0k; (d) unchanged (17.4M -> 16.7M instructions per 100-state
machine). What it took, largest first: the hot path's locks taken with ``acquire()`` /
``release()`` in ``try``/``finally`` rather than a ``with`` block (on CPython 3.11 ``with
lock:`` costs ~2.0k instructions, acquire and release ~0.9k; two per mutation, and two on the
fast path); the reused handler event's fields set one by one (a four-way tuple assignment
built and unpacked a tuple per handler call: ~1.2k per mutation); ``_run`` folded into
``_execute`` (~1.0k: a call per transition; a refusal and the partial auto retry stay in a
method, off the common path); the event reused across transitions too, not only within one
(at a transition's end it lets go of the transition and its args; the reference count that
says nobody kept it is measured at import, as CPython 3.14 counts one lower than 3.11, which
had made the old fixed count reuse kept events in Pyodide); one flag for "handler calls are
observed" (tracer hooks, steps, logs at level 3) instead of three reads per handler call
(~0.9k per mutation); the final handlers' dispatch and the tick update inlined (a call each;
the tick update is now written out in the fast path too, and tests/test_perf_core.py checks
the two paths against each other on random mutations); a failed handler returns from its
``except`` clause (no class check of every return value); a transition's targets read from its
plan. The random replays of tests/test_perf_core.py (24 of 600 mutations, with refusals,
raising handlers, partial auto, queued mutations, waits and tracers) gave the same log, byte
for byte, before and after. Wall clock, (b) median ratio, 7 repeats per run, on a 2-core
machine at load average ~5: before 1.84x, 1.91x, 2.07x; after (at 39.7k, before the fold)
2.59x, 2.36x, 2.60x, 1.89x: still one run in four under 2x at that load. Measured and left: a
Transition built field by field without its ``__init__`` (~0.9k less, but a second
constructor to keep in step), the plan cache keyed by 2-tuples (~0.25k), tick deltas applied
with ``map`` (dearer below ~20 states, and for (c)).
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

# run from a checkout without installing: the repo root holds the ``machines`` package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import transitions  # noqa: E402

from machines import Machine, State  # noqa: E402

#: a workload's setup returns ``run(n)`` (performs n operations) and ``check()`` (a summary
#: compared between ours and theirs after the timing loops, so unequal work is caught)
Runner = tuple[Callable[[int], None], Callable[[], object]]


# -- (a) flat toggle -----------------------------------------------------------------------------


def toggle_ours() -> Runner:
    m = Machine({"A": State(remove=["B"]), "B": State(remove=["A"])}, log_level=0)
    m.add("A")

    def run(n: int) -> None:
        add = m.add
        for _ in range(n // 2):
            add("B")
            add("A")

    return run, lambda: m.active_states


def toggle_theirs() -> Runner:
    class Model:
        pass

    model = Model()
    transitions.Machine(
        model, states=["A", "B"], transitions=[["go", "A", "B"], ["back", "B", "A"]], initial="A"
    )

    def run(n: int) -> None:
        go, back = model.go, model.back
        for _ in range(n // 2):
            go()
            back()

    return run, lambda: [model.state]


# -- (b) relations with handlers -----------------------------------------------------------------

RELATIONS_SCHEMA = {
    # Start implies Ready; Ready needs Start, so removing Start drops Ready too
    "Start": State(add=["Ready"]),
    "Ready": State(require=["Start"]),
    # Busy needs Ready, brings Log, and excludes Idle; Log lives only while Busy does
    "Busy": State(require=["Ready"], add=["Log"], remove=["Idle"]),
    "Log": State(require=["Busy"]),
    "Idle": State(remove=["Busy"]),
}


class _Counter:
    """Counts calls per handler name; negotiation handlers say yes."""

    def __init__(self) -> None:
        self.calls = 0

    def yes(self, *_: object) -> bool:
        self.calls += 1
        return True

    def hit(self, *_: object) -> None:
        self.calls += 1


class _OurHandlers:
    # 14 handler calls per cycle of 4 mutations (see relations_ours)
    def __init__(self, c: _Counter) -> None:
        for name in ("StartEnter", "IdleExit", "BusyEnter", "BusyExit", "StartExit"):
            setattr(self, name, c.yes)
        for name in (
            "StartState",
            "ReadyState",
            "IdleEnd",
            "BusyState",
            "LogState",
            "BusyEnd",
            "IdleState",
            "StartEnd",
            "ReadyEnd",
        ):
            setattr(self, name, c.hit)


def relations_ours() -> Runner:
    """Five states, one cycle = 4 mutations, every one resolved through relations.

    From ``(Idle)``: ``add Start`` -> ``(Start Ready Idle)`` (Ready implied by Add);
    ``add Busy`` -> ``(Start Ready Busy Log)`` (Require met, Log implied, Idle removed);
    ``add Idle`` -> ``(Start Ready Idle)`` (Busy removed, Log dropped by its unmet Require);
    ``remove Start`` -> ``(Idle)`` (Ready dropped by its unmet Require).
    Handlers that run: 5 negotiation (``StartEnter``, ``IdleExit``, ``BusyEnter``, ``BusyExit``,
    ``StartExit``) and 9 final (``StartState``, ``ReadyState``, ``IdleEnd``, ``BusyState``,
    ``LogState``, ``BusyEnd``, ``IdleState``, ``StartEnd``, ``ReadyEnd``).
    """
    counter = _Counter()
    m = Machine(RELATIONS_SCHEMA, handlers=_OurHandlers(counter), log_level=0)
    m.add("Idle")
    counter.calls = 0

    def run(n: int) -> None:
        add, remove = m.add, m.remove
        for _ in range(n // 4):
            add("Start")
            add("Busy")
            add("Idle")
            remove("Start")

    return run, lambda: (sorted(m.active_states), counter.calls)


def relations_theirs() -> Runner:
    """The same cycle in ``transitions``: its single state stands for our combined active set.

    ``idle`` = ``(Idle)``, ``ready`` = ``(Start Ready Idle)``, ``busy`` = ``(Start Ready Busy
    Log)``; triggers ``start``, ``work``, ``rest``, ``stop`` make the same 4 moves. Each of our
    handlers has one equivalent callback, so both sides make 14 calls per cycle: our negotiation
    handlers become ``conditions`` (returning True); our final handlers become ``on_enter`` /
    ``on_exit`` of ``busy`` (entered and left once per cycle) and the transitions' ``after``
    callbacks for the rest. The relation logic that ours computes (implied, required and
    removed states) is precomputed by hand into the transition table here, which favours theirs.
    """
    counter = _Counter()

    class Model:
        pass

    model = Model()
    yes, hit = counter.yes, counter.hit
    transitions.Machine(
        model,
        states=[
            "idle",
            "ready",
            {"name": "busy", "on_enter": [hit, hit], "on_exit": [hit]},  # Busy+Log State; BusyEnd
        ],
        transitions=[
            # StartEnter; StartState, ReadyState
            {"trigger": "start", "source": "idle", "dest": "ready", "conditions": [yes],
             "after": [hit, hit]},
            # IdleExit, BusyEnter; IdleEnd (BusyState, LogState via on_enter)
            {"trigger": "work", "source": "ready", "dest": "busy", "conditions": [yes, yes],
             "after": [hit]},
            # BusyExit; IdleState (BusyEnd via on_exit)
            {"trigger": "rest", "source": "busy", "dest": "ready", "conditions": [yes],
             "after": [hit]},
            # StartExit; StartEnd, ReadyEnd
            {"trigger": "stop", "source": "ready", "dest": "idle", "conditions": [yes],
             "after": [hit, hit]},
        ],
        initial="idle",
    )  # fmt: skip

    def run(n: int) -> None:
        start, work, rest, stop = model.start, model.work, model.rest, model.stop
        for _ in range(n // 4):
            start()
            work()
            rest()
            stop()

    states = {"idle": ["Idle"], "ready": ["Idle", "Ready", "Start"]}
    return run, lambda: (states[model.state], counter.calls)


# -- (c) 100 states, random add/remove -----------------------------------------------------------

N_STATES = 100
SEED = 1729


def _names() -> list[str]:
    return [f"S{i}" for i in range(N_STATES)]


def random_ops(n: int, seed: int = SEED) -> list[tuple[bool, int]]:
    """``(is_add, state)``: 50 % add a random state, 25 % remove the active one (a real
    transition), 25 % remove a random state (usually inactive: a no-op in both libraries)."""
    rng = random.Random(seed)
    ops: list[tuple[bool, int]] = []
    active = -1
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            j = rng.randrange(N_STATES)
            ops.append((True, j))
            active = j
        elif r < 0.75 and active >= 0:
            ops.append((False, active))
            active = -1
        else:
            j = rng.randrange(N_STATES)
            ops.append((False, j))
            if j == active:
                active = -1
    return ops


def exclusive_schema() -> dict[str, State]:
    """100 mutually exclusive states: each removes the 99 others."""
    names = _names()
    return {n: State(remove=[o for o in names if o != n]) for n in names}


def random_ours(ops: list[tuple[bool, int]]) -> Runner:
    """Our side of (c): 100 mutually exclusive states, so at most one is active, as in an FSM.

    ``add Sj`` activates Sj and, through the Remove relations, deactivates whichever state was
    active; ``remove Sj`` leaves nothing active (or changes nothing if Sj was not active). The
    state space is the FSM's ``{none, S0..S99}`` exactly, and our machine resolves every move
    through relations rather than a table. The plan cache is keyed by (mutation, active states),
    so this workload also exercises cache misses (about 20k distinct keys).
    """
    m = Machine(exclusive_schema(), log_level=0)
    names = _names()
    calls = [(m.add if is_add else m.remove, names[j]) for is_add, j in ops]

    def run(n: int) -> None:
        for fn, name in calls[:n]:
            fn(name)

    return run, lambda: m.active_states


def exclusive_fsm(model: object) -> transitions.Machine:
    names = _names()
    return transitions.Machine(
        model,
        states=names + ["none"],
        transitions=[
            *(
                {"trigger": f"add_{n}", "source": [o for o in names if o != n] + ["none"],
                 "dest": n}
                for n in names
            ),
            *({"trigger": f"remove_{n}", "source": n, "dest": "none"} for n in names),
        ],
        initial="none",
        auto_transitions=False,
        ignore_invalid_triggers=True,
    )  # fmt: skip


def random_theirs(ops: list[tuple[bool, int]]) -> Runner:
    """Their side of (c): an FSM with states ``S0..S99`` plus ``none`` (we have ``Exception`` as
    our 101st), and generated transitions: ``add_Sj`` from every other state to Sj (10,000),
    ``remove_Sj`` from Sj to ``none`` (100). ``ignore_invalid_triggers`` makes the moves that
    are no-ops for us (add an active state, remove an inactive one) no-ops for them too, rather
    than exceptions. Triggers are looked up before timing, as our bound methods are."""

    class Model:
        pass

    model = Model()
    exclusive_fsm(model)
    names = _names()
    calls = [getattr(model, f"{'add' if is_add else 'remove'}_{names[j]}") for is_add, j in ops]

    def run(n: int) -> None:
        for fn in calls[:n]:
            fn()

    return run, lambda: [] if model.state == "none" else [model.state]


# -- (d) constructing 100-state machines ---------------------------------------------------------


def build_ours() -> Runner:
    schema = exclusive_schema()

    def run(n: int) -> None:
        for _ in range(n):
            Machine(schema, log_level=0)

    return run, lambda: len(Machine(schema, log_level=0).state_names)


def build_theirs() -> Runner:
    class Model:
        pass

    def run(n: int) -> None:
        for _ in range(n):
            exclusive_fsm(Model())

    return run, lambda: len(exclusive_fsm(Model()).states)


def build_plain_ours() -> Runner:
    schema = {n: State() for n in _names()}

    def run(n: int) -> None:
        for _ in range(n):
            Machine(schema, log_level=0)

    return run, lambda: len(Machine(schema, log_level=0).state_names) - 1  # minus Exception


def build_plain_theirs() -> Runner:
    names = _names()

    class Model:
        pass

    def run(n: int) -> None:
        for _ in range(n):
            transitions.Machine(Model(), states=names, initial="S0", auto_transitions=False)

    def count() -> int:
        m = transitions.Machine(Model(), states=names, initial="S0", auto_transitions=False)
        return len(m.states)

    return run, count


# -- harness -------------------------------------------------------------------------------------


@dataclass
class Figure:
    best: float  # ops/s
    median: float


@dataclass
class Row:
    key: str
    title: str
    unit: str
    ours: Figure
    theirs: Figure
    target: str  # human-readable
    met: bool | None  # None: no target

    @property
    def ratio_best(self) -> float:
        return self.ours.best / self.theirs.best

    @property
    def ratio_median(self) -> float:
        return self.ours.median / self.theirs.median


def measure(ours: Runner, theirs: Runner, ops: int, repeats: int) -> tuple[Figure, Figure]:
    """Interleaved repeats of both runners; returns ops/s (best, median) for each."""
    ours[0](max(1, ops // 10))  # warm caches (plans, handler lookups, trigger closures)
    theirs[0](max(1, ops // 10))
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for side, (run, _) in enumerate((ours, theirs)):
            gc.collect()
            t0 = time.perf_counter()
            run(ops)
            times[side].append(time.perf_counter() - t0)
    figs = tuple(Figure(ops / min(t), ops / statistics.median(t)) for t in times)
    return figs[0], figs[1]


def _same(key: str, ours: object, theirs: object) -> None:
    if ours != theirs:
        raise SystemExit(f"bench {key}: unequal work: ours {ours!r}, transitions {theirs!r}")


def _check_equivalence(ops_c: list[tuple[bool, int]]) -> None:
    """Run each pair of workloads untimed, from fresh machines, and compare what they did (state
    reached, handler calls), so a figure never compares unequal work."""
    for key, make_ours, make_theirs in (
        ("a", toggle_ours, toggle_theirs),
        ("b", relations_ours, relations_theirs),
    ):
        o, t = make_ours(), make_theirs()
        for _ in range(3):
            o[0](1000)
            t[0](1000)
            _same(key, o[1](), t[1]())
    run, check = relations_ours()
    run(1000)
    if check()[1] != 1000 // 4 * 14:
        raise SystemExit(f"bench b: expected {1000 // 4 * 14} handler calls, got {check()[1]}")
    o, t = random_ours(ops_c), random_theirs(ops_c)
    # run(n) replays the first n ops from the current state: compare along the way
    for n in (1, 2, 3, 50, 97, len(ops_c)):
        o[0](n)
        t[0](n)
        _same("c", o[1](), t[1]())
    _same("d", build_ours()[1](), build_theirs()[1]())  # 101 each: Exception vs `none`
    _same("d2", build_plain_ours()[1](), build_plain_theirs()[1]())


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def _target_a(o: Figure, t: Figure) -> bool:
    return o.median >= 3 * t.median and o.median >= 100_000


def _ahead(o: Figure, t: Figure) -> bool:
    return o.median > t.median


def _twice(o: Figure, t: Figure) -> bool:
    return o.median >= 2 * t.median


def print_table(rows: list[Row], repeats: int) -> None:
    print(
        f"\nmachines core vs transitions {transitions.__version__} (Python "
        f"{sys.version.split()[0]}, {repeats} repeats, ratio = ours / theirs)\n"
    )
    head = ("", "workload", "unit", "ours best", "ours median", "theirs best", "theirs median")
    table = [(*head, "ratio best", "ratio median")]
    for r in rows:
        figures = (r.ours.best, r.ours.median, r.theirs.best, r.theirs.median)
        ratios = (f"{r.ratio_best:.2f}x", f"{r.ratio_median:.2f}x")
        table.append((f"({r.key})", r.title, r.unit, *map(_fmt, figures), *ratios))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for i, line in enumerate(table):
        pairs = enumerate(zip(line, widths, strict=True))
        cells = (c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in pairs)
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(
    repeats: int = typer.Option(7, help="timed repeats per side (best and median reported)"),
    scale: float = typer.Option(1.0, help="multiply every workload's size (0.1 for a smoke run)"),
    strict: bool = typer.Option(False, help="exit 1 when a target is missed"),
) -> None:
    """Machine core vs transitions: ops/s and ratio ours/theirs per workload."""
    ops_c = random_ops(int(40_000 * scale))
    _check_equivalence(ops_c[:5000])
    workloads = [
        # key, title, unit, ours, theirs, ops per repeat, target (text, judge)
        ("a", "flat toggle (2 states)", "mutations/s", toggle_ours, toggle_theirs, 100_000,
         ("ours >= 3x theirs and >= 100,000 mutations/s", _target_a)),
        ("b", "relations + handlers (5 states)", "mutations/s", relations_ours,
         relations_theirs, 40_000, ("ours >= 2x theirs", _twice)),
        ("c", "100 states, random add/remove", "mutations/s", lambda: random_ours(ops_c),
         lambda: random_theirs(ops_c), len(ops_c), ("ours ahead of theirs", _ahead)),
        ("d", "build 100 exclusive states", "machines/s", build_ours, build_theirs, 20, None),
        ("d2", "build 100 plain states", "machines/s", build_plain_ours, build_plain_theirs,
         200, None),
    ]  # fmt: skip
    rows: list[Row] = []
    for key, title, unit, ours, theirs, n, target in workloads:
        print(f"measuring ({key}) {title} ...", flush=True)
        n = n if key == "c" else max(4, int(n * scale))
        o, t = measure(ours(), theirs(), n, repeats)
        text, judge = target or ("-", None)
        rows.append(Row(key, title, unit, o, t, text, None if judge is None else judge(o, t)))
    print_table(rows, repeats)
    print("\ntargets (judged on medians):")
    missed = 0
    for r in rows:
        if r.met is not None:
            missed += not r.met
            verdict = "MET" if r.met else "MISSED"
            print(f"  ({r.key}) {r.target}: {verdict} ({_fmt(r.ours.median)} {r.unit}, "
                  f"{r.ratio_median:.2f}x)")  # fmt: skip
    if strict and missed:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
