"""Differential tests of the machine's cached hot path against the plain one.

The machine caches what does not change between transitions: resolved plans per (mutation,
active states), the handler calls of each plan per version of the bound handlers, and the tick
bumps of each plan; and it reuses a handler's event for the next handler (of any transition)
when nobody kept it. Each test here replays seeded random mutations on two machines that differ
only in the caching: the plain one drops every cache before each mutation, so it resolves
relations and looks handlers up from scratch, and its handlers keep every event, so none is
reused. Results, clocks, queue ticks and the handlers'
calls (name, args, return value) must be the same, step by step.
"""

from __future__ import annotations

import random

import pytest

from machines import Machine, State, Tracer
from machines.transition import ExceptionArgs

SCHEMA = {
    "A": State(require=["C"]),
    "B": State(multi=True, add=["C"]),
    "C": State(after=["D"]),
    "D": State(add=["C", "B"]),
    "E": State(remove=["A", "D"]),
    "F": State(require=["E"], add=["G"]),
    "G": State(remove=["B"]),
    "H": State(auto=True, require=["C"]),
    "I": State(multi=True),
}
NAMES = [*SCHEMA, "Exception"]
SUFFIXES = ("Enter", "Exit", "State", "End")


class Uncached(Machine):
    """The plain path: no plan, handler-call or bump cache survives a mutation."""

    def _mutate(self, mtype, states, args, source):  # type: ignore[override]
        self._plans.clear()
        self._groups_ver += 1
        return super()._mutate(mtype, states, args, source)


class Handlers:
    """Handlers whose behaviour is a pure function of (name, call count, seed): some refuse,
    some raise, some mutate the machine (queued); every call is logged."""

    def __init__(self, seed: int, log: list, keep_all: bool = False) -> None:
        self.rnd = random.Random(seed)
        self.log = log
        #: keep every event (so none is ever reused: the plain path of event reuse)
        self.keep_all = keep_all
        self.events: list = []
        self.kept: list = []  # (event, its name and args when kept)
        self.plan: dict[str, tuple[str, ...]] = {}
        names = [f"{s}{x}" for s in [*SCHEMA, "Exception"] for x in SUFFIXES]
        names += [f"{a}{b}" for a in SCHEMA for b in SCHEMA]
        names += ["AnyEnter", "AnyState"]
        for name in names:
            if self.rnd.random() < 0.6:
                choices = ["ok", "ok", "ok", "no", "raise", "add", "keep"]
                self.plan[name] = tuple(self.rnd.choice(choices) for _ in range(7))
        self.counts: dict[str, int] = {}
        self.budget = 0

    def __getattr__(self, name: str):
        if name == "plan":
            raise AttributeError(name)
        plan = self.__dict__["plan"].get(name)
        if plan is None:
            raise AttributeError(name)

        def handler(e):
            n = self.counts.get(name, 0)
            self.counts[name] = n + 1
            what = plan[n % len(plan)]
            self.budget -= 1
            if self.budget < 0 and what in ("raise", "add"):
                what = "ok"  # bounded side effects per step: no endless error/auto loops
            self.log.append((name, e.name, _plain(e.args), what, e.machine.time()))
            if self.keep_all:
                self.events.append(e)
            if what == "keep":
                self.kept.append((e, e.name, _plain(e.args), e.transition.mutation.called))
            if what == "no":
                return False if name.endswith(("Enter", "Exit")) or name[:1] == "A" else None
            if what == "raise":
                raise ValueError(f"{name} #{n}")
            if what == "add" and not name.startswith(("I", "Any", "Exception")):
                e.machine.add("I", {"n": n})  # queued: runs after this transition
            return True

        return handler


def _plain(args: dict) -> dict:
    """Args comparable across machines (errors compare by identity)."""
    return {k: (repr(v.err), v.panic) if isinstance(v, ExceptionArgs) else v
            for k, v in args.items()}  # fmt: skip


class Recorder(Tracer):
    def __init__(self, log: list) -> None:
        self.log = log

    def transition_end(self, tx) -> None:
        self.log.append(("tx", tx.accepted, tx.time_after, tx.mutation.called, tx.cancelled_by))


def _replay(cls: type[Machine], seed: int, steps: int, tracer: bool, waits: bool) -> list:
    log: list = []
    handlers = Handlers(seed, log, keep_all=cls is Uncached)
    m = cls(SCHEMA, handlers=handlers, log_level=0, log_stack_trace=False, handler_timeout=60)
    if tracer:
        m.tracer_bind(Recorder(log))
    rnd = random.Random(seed * 7919)
    for step in range(steps):
        if waits and step % 5 == 0:
            m.when(rnd.choice(NAMES))
            m.when_args("I", {"n": rnd.randrange(3)})
        op = rnd.choice(["add", "remove", "set", "toggle", "add", "can_add"])
        states = rnd.sample(NAMES, rnd.randint(1, 3))
        args = {"k": step} if rnd.random() < 0.3 else None
        handlers.budget = 40
        res = getattr(m, op)(states, args)
        log.append((step, op, states, int(res), m.time(), m.queue_tick, m.active_states))
    # events kept by handlers: as they were when kept, whatever ran after
    for e, name, args, called in handlers.kept:
        log.append(("kept", e.name, _plain(e.args), e.transition.mutation.called))
        assert (e.name, _plain(e.args), e.transition.mutation.called) == (name, args, called)
    return log


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("tracer", [False, True])
@pytest.mark.parametrize("waits", [False, True])
def test_cached_handler_path_agrees_with_plain(seed, tracer, waits):
    plain = _replay(Uncached, seed, 600, tracer, waits)
    cached = _replay(Machine, seed, 600, tracer, waits)
    assert len(plain) == len(cached)
    for i, (p, c) in enumerate(zip(plain, cached, strict=True)):
        assert p == c, (i, p, c)
    # the scenario exercises what it claims to
    names = {e[0] for e in cached if isinstance(e[0], str)}
    assert any(n.endswith("Enter") for n in names) and any(n.endswith("State") for n in names)
    assert any(e[3] == "raise" for e in cached if isinstance(e[0], str) and len(e) == 5)
    assert any(e[0] == "kept" for e in cached)


@pytest.mark.parametrize("seed", [5, 6])
def test_handler_rebinding_invalidates_cached_calls(seed):
    # a plan's cached handler calls belong to one set of bound handlers
    rnd = random.Random(seed)
    logs: tuple[list, list] = ([], [])
    opts = {"log_level": 0, "log_stack_trace": False, "handler_timeout": 60}
    ms = [cls(SCHEMA, **opts) for cls in (Uncached, Machine)]
    for step in range(400):
        if step % 50 == 0:
            for m, log in zip(ms, logs, strict=True):
                for gid in m.handlers():
                    m.handlers_detach(gid)
                m.handlers_bind(Handlers(seed + step, log))
        for m in ms:
            m._groups[0].obj.budget = 40
        op = rnd.choice(["add", "remove", "set"])
        states = rnd.sample(NAMES, rnd.randint(1, 2))
        got = [int(getattr(m, op)(states)) for m in ms]
        assert got[0] == got[1], step
        assert ms[0].time() == ms[1].time(), step
    assert logs[0] == logs[1]


def test_a_kept_event_is_never_reused():
    """Handlers' events are reused only when nobody kept the previous one: an event a handler
    keeps (or one a raising handler's traceback holds) keeps its own name and args."""
    kept: list = []

    class Keep:
        def AEnter(self, e):
            kept.append(e)
            return True

        def AState(self, e):
            e.args = {"swapped": True}  # rebinding its own event's args must not leak

        def BState(self, e):
            kept.append((e.name, dict(e.args)))
            raise ValueError("boom")

        def CState(self, e):
            kept.append((e.name, dict(e.args)))

    m = Machine({"A": State(add=["B", "C"]), "B": State(), "C": State()}, handlers=Keep(),
                log_level=0, log_stack_trace=False)  # fmt: skip
    m.add("A", {"x": 1})
    first = kept[0]
    assert (first.name, first.args, first.transition.mutation.called) == (
        "AEnter",
        {"x": 1},
        ("A",),
    )
    assert kept[1] == ("BState", {"x": 1})
    m.add("C", {"y": 2})
    assert kept[-1] == ("CState", {"y": 2})
    assert first.name == "AEnter" and first.args == {"x": 1}


def test_the_spare_event_lets_go_of_its_transition():
    """Between transitions the reused event holds neither the last transition nor its args
    (they may be large); an event a handler kept is left alone and a new one made."""
    kept: list = []

    class Some:
        def AState(self, e):
            pass

        def BState(self, e):
            kept.append(e)

    m = Machine({"A": State(), "B": State()}, handlers=Some(), log_level=0)
    m.add("A", {"big": "x" * 100})
    spare = m._spare_event
    assert spare is not None and spare.transition is None and spare.args is None
    m.add("B", {"b": 1})
    assert m._spare_event is None  # kept: not the machine's to reuse any more
    assert (kept[0].name, kept[0].args, kept[0].transition.mutation.called) == (
        "BState",
        {"b": 1},
        ("B",),
    )
    m.remove("A")
    m.add("A", {"a": 2})
    assert m._spare_event is not None and m._spare_event is not kept[0]
    assert kept[0].name == "BState" and kept[0].args == {"b": 1}


def test_handler_calls_are_observed_as_soon_as_someone_looks():
    """One flag says whether handler calls are observed (tracer hooks, steps, logs at level 3);
    every way to turn an observer on or off updates it."""
    lines: list[str] = []
    hooks: list[str] = []

    class Hooks(Tracer):
        def handler_start(self, tx, group, name) -> None:
            hooks.append(name)

    class Some:
        def AState(self, e):
            pass

    m = Machine({"A": State()}, handlers=Some(), log_level=0, logger=lambda _, t: lines.append(t))

    def cycle() -> tuple[list, list]:
        lines.clear()
        hooks.clear()
        m.add("A")
        m.remove("A")
        return [t for t in lines if t.startswith("[handler")], list(hooks)

    assert cycle() == ([], [])
    m.log_level = 3
    assert cycle()[0] == ["[handler:1] AState"]
    m.log_level = 0
    assert cycle() == ([], [])
    m.set_logger(lambda _, t: lines.append(t), 3)
    assert cycle()[0] == ["[handler:1] AState"]
    m.set_logger(lambda _, t: lines.append(t), 0)
    assert cycle() == ([], [])
    tracer = Hooks()
    m.tracer_bind(tracer)
    assert cycle()[1] == ["AState"]
    m.tracer_detach(tracer)
    assert cycle() == ([], [])
    seen: list = []

    class Steps(Tracer):
        def transition_end(self, tx) -> None:
            seen.append([str(s) for s in tx.steps])

    m.log_steps = True
    m.tracer_bind(Steps())
    m.add("A")
    assert "handler A" in seen[-1]
    m.log_steps = False
    m.remove("A")
    assert seen[-1] == []
    assert m.log_steps is False


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_fast_path_agrees_with_the_full_transition(seed, monkeypatch):
    """A mutation nobody observes, whose plan is known, skips the Transition (the fast path);
    its tick update must be the full path's. The observed twin runs every mutation as a full
    transition (a tracer hook on the hot path), so the two are compared step by step."""
    import machines.machine as mm

    full_runs = [0]

    class Counted(mm.Transition):
        __slots__ = ()

        def __init__(self, *args) -> None:
            full_runs[0] += 1
            super().__init__(*args)

    monkeypatch.setattr(mm, "Transition", Counted)

    class Watch(Tracer):
        def transition_end(self, tx) -> None:
            pass

    schema = {n: s for n, s in SCHEMA.items() if not s.auto}  # an auto state stops the fast path
    names = [*schema, "Exception"]
    fast, full = Machine(schema, log_level=0), Machine(schema, log_level=0)
    full.tracer_bind(Watch())
    rnd = random.Random(seed)
    steps = 800
    for step in range(steps):
        op = rnd.choice(["add", "remove", "set", "toggle", "add"])
        states = rnd.sample(names[:5], rnd.randint(1, 2))  # few: plans repeat
        got = []
        for m in (fast, full):
            before = full_runs[0]
            res = getattr(m, op)(states)
            got.append((int(res), m.time(), m.queue_tick, m.active_states, m.is_err()))
            if m is full:
                assert full_runs[0] == before + 1
        assert got[0] == got[1], (step, op, states)
    fast_runs = 2 * steps - full_runs[0]  # the full twin ran `steps` transitions
    assert fast_runs > steps // 4, fast_runs
