"""Core machine scenarios run inside the browser's Python (Pyodide) and in CPython alike.

Pyodide loads this module and awaits :func:`main` with top-level ``await`` (its asyncio loop is
the JavaScript event loop, so ``asyncio.run`` must never be called there); CPython runs it with
``python core_scenarios.py``, which does call ``asyncio.run``. Either way :func:`main` prints ONE
line of JSON, ``{scenario: observations}``: what happened, not a verdict, so that the pytest side
holds the expectations and a failure names the scenario and shows what was observed. A scenario
that raises reports ``{"error": traceback}`` and the others still run.

Only the standard library and ``machines`` may be imported here: Pyodide has nothing else.
"""

from __future__ import annotations

import sys

# Import the core first and look at what it pulled in: the core must not import an event loop
# library at module load (trio does not exist in Pyodide; asyncio is imported lazily, on the
# first await). Pyodide itself may have asyncio loaded already, hence "imported by machines".
_before = set(sys.modules)
import machines  # noqa: E402

IMPORTS = {
    "trio_loaded": "trio" in sys.modules,
    "asyncio_imported_by_machines": "asyncio" in set(sys.modules) - _before,
    "cbor2_loaded": "cbor2" in sys.modules,
}

import asyncio  # noqa: E402
import json  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from machines import Machine, Result, State  # noqa: E402

#: an async scenario that has not finished after this many seconds reports a timeout
STEP_TIMEOUT = 10.0

NORELS = ("A", "B", "C", "D")


def norels(**overrides: State) -> dict[str, State]:
    schema: dict[str, State] = {n: State() for n in NORELS}
    schema.update(overrides)
    return schema


class Recorder:
    """A handler group recording the name of every handler called; ``returns`` maps a handler
    name to its return value or to ``fn(event)``."""

    def __init__(self, names: list[str], returns: dict[str, Any] | None = None) -> None:
        self.calls: list[str] = []
        for name in names:
            setattr(self, name, self._make(name, (returns or {}).get(name)))

    def _make(self, name: str, ret: Any) -> Callable[[Any], Any]:
        def handler(e: Any) -> Any:
            self.calls.append(name)
            return ret(e) if callable(ret) else ret

        return handler


def all_handler_names() -> list[str]:
    kinds = ("Enter", "Exit", "State", "End")
    names = [f"{s}{k}" for s in NORELS for k in kinds]
    names += [f"{x}{y}" for x in NORELS for y in NORELS]
    return names + ["AnyEnter", "AnyState"]


def res(r: int) -> str | int:
    """A mutation result as JSON: the Result's name, or the queue tick."""
    return Result(r).name if r in (0, 1) else int(r)


# -- scenarios: relations ------------------------------------------------------------------------


def relations_dry_water_wet() -> dict:
    """Spec core-machine §3.8 example 1 (the README quiz)."""
    m = Machine(
        {
            "Wet": State(require=["Water"]),
            "Dry": State(remove=["Water"]),
            "Water": State(add=["Wet"], remove=["Dry"]),
        },
        id="dww",
    )
    out = {"add_dry": res(m.add("Dry")), "after_dry": m.clock(["Dry", "Water", "Wet"])}
    out["add_water"] = res(m.add("Water"))
    out["after_water"] = m.clock(["Dry", "Water", "Wet"])
    out["active"] = sorted(m.active_states)
    return out


def relations_require() -> dict:
    """DESIGN's example: Foo requires Bar."""
    m = Machine({"Foo": State(require=["Bar"]), "Bar": State()}, id="req")
    out = {"add_foo": res(m.add("Foo")), "active_1": m.active_states}
    out["add_foo_bar"] = res(m.add(["Foo", "Bar"]))
    out["active_2"] = sorted(m.active_states)
    # removing the required state drops the requiring one
    out["remove_bar"] = res(m.remove("Bar"))
    out["active_3"] = m.active_states
    return out


def relations_add_remove() -> dict:
    """§3.8 examples 2, 3, 4, 5."""
    out: dict[str, Any] = {}
    m = Machine({"A": State(remove=["D"]), "B": State(), "C": State(add=["D"]), "D": State()})
    m.set("C")
    out["ex2_set_c"] = sorted(m.active_states)
    out["ex2_set_ac"] = [res(m.set(["A", "C"])), sorted(m.active_states)]

    m = Machine(
        {"A": State(multi=True, add=["B"], require=["C"]), "B": State(require=["C"]), "C": State()}
    )
    m.set(["A", "B", "C"])
    out["ex3_remove_b"] = [res(m.remove("B")), sorted(m.active_states)]

    m = Machine({"X": State(add=["Y"]), "Y": State(add=["Z"]), "Z": State(add=["W"]), "W": State()})
    out["ex4_two_hops"] = [res(m.add("X")), sorted(m.active_states)]

    m = Machine({"A": State(add=["B"]), "B": State(), "C": State(remove=["B"])})
    m.add("C")
    out["ex5_add_a"] = [res(m.add("A")), sorted(m.active_states)]
    return out


def unknown_state() -> dict:
    m = Machine(norels())
    try:
        m.add("Nope")
    except ValueError as err:
        return {"raised": "ValueError", "names_it": "Nope" in str(err)}
    return {"raised": None}


# -- scenarios: handlers, clocks, queue ----------------------------------------------------------


def handler_order() -> dict:
    """Spec §11 scenario 5: recorder on NoRels ``(A B)``, ``Set [C]``."""
    m = Machine(norels(), id="order")
    m.set(["A", "B"])
    rec = Recorder(all_handler_names())
    m.handlers_bind(rec)
    r = m.set("C")
    return {"result": res(r), "calls": rec.calls, "active": m.active_states}


def handler_negotiation_cancel() -> dict:
    """§11 scenario 19: ``DEnter`` refuses."""
    m = Machine(norels())
    m.set("A")
    rec = Recorder(["DEnter", "DState"], returns={"DEnter": False})
    m.handlers_bind(rec)
    return {
        "set_d": res(m.set("D")),
        "add_d": res(m.add("D")),
        "calls": rec.calls,
        "active": m.active_states,
    }


def multi_ticks() -> dict:
    """Spec §5.2 ticking rules (test TestTime): A-D with ``B{Multi}``."""
    m = Machine(norels(B=State(multi=True)))
    steps = [
        ("add", ["A", "B"]),
        ("add", ["A", "B"]),
        ("add", ["A", "B", "C"]),
        ("set", ["D"]),
        ("add", ["D", "C"]),
        ("remove", ["B", "C"]),
        ("add", ["A", "B"]),
        ("add", ["C"]),
    ]
    ticks = []
    for op, states in steps:
        getattr(m, op)(states)
        ticks.append(m.time(list(NORELS)))
    return {"ticks": ticks, "sum": sum(m.time()), "clock": m.clock(), "tick_a": m.tick("A")}


def queue_from_handler() -> dict:
    """§11 scenario 18: a mutation from a handler is queued (its queue tick comes back) and runs
    after the current transition."""
    m = Machine(norels(), id="queue")
    m.set("A")
    seen: dict[str, Any] = {"queue_tick_at_start": m.queue_tick}

    def b_enter(e: Any) -> bool:
        seen["in_handler"] = res(e.machine.add("C"))
        seen["active_in_handler"] = e.machine.active_states
        seen["queue_len_in_handler"] = e.machine.queue_len()
        return True

    rec = Recorder(all_handler_names(), returns={"BEnter": b_enter})
    m.handlers_bind(rec)
    seen["set_b"] = res(m.set("B"))
    seen["calls"] = rec.calls
    seen["active"] = sorted(m.active_states)
    seen["queue_tick_at_end"] = m.queue_tick
    seen["queue_len_at_end"] = m.queue_len()
    return seen


# -- scenarios: async (the browser's asyncio loop) -----------------------------------------------


async def when_from_task() -> dict:
    """``await m.when(...)`` / ``when_not`` resolved by mutations from another asyncio task."""
    m = Machine(norels(), id="when")
    m.add("D")
    out: dict[str, Any] = {}
    w_ab = m.when(["A", "B"])
    w_not_d = m.when_not("D")
    out["pending_before"] = [w_ab.done, w_not_d.done]

    async def producer() -> None:
        for op, state in (("add", "A"), ("remove", "D"), ("add", "B")):
            await asyncio.sleep(0.001)  # a real turn of the JS event loop under Pyodide
            getattr(m, op)(state)

    async def wait_ab() -> list[str]:
        await w_ab
        return sorted(m.active_states)

    async def wait_not_d() -> list[str]:
        await w_not_d
        return sorted(m.active_states)

    prod = asyncio.ensure_future(producer())
    out["when_ab_saw"], out["when_not_d_saw"] = await asyncio.gather(wait_ab(), wait_not_d())
    await prod
    # already satisfied: completes at once, without a turn of the loop
    out["when_a_now_done"] = m.when("A").done
    out["when_not_c_now_done"] = m.when_not("C").done
    # when_ticks on a running loop: two more ticks of A
    wt = m.when_ticks("A", 2)

    async def bounce() -> None:
        await asyncio.sleep(0.001)
        m.remove("A")
        await asyncio.sleep(0.001)
        m.add("A")

    bounce_task = asyncio.ensure_future(bounce())
    await wt
    await bounce_task
    out["tick_a_after_when_ticks"] = m.tick("A")
    return out


async def fork_cancelled_when_state_ends() -> dict:
    """A task started with ``m.fork`` from ``WorkState`` is cancelled when Work ends."""
    events: list[str] = []
    started, finished = asyncio.Event(), asyncio.Event()

    async def job(n: int) -> None:
        events.append(f"started {n}")
        started.set()
        try:
            await asyncio.sleep(60)
            events.append("slept")
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            finished.set()

    class Handlers:
        def WorkState(self, e: Any) -> None:
            events.append("fork " + str(e.machine.fork("Work", job, 7)))

    m = Machine({"Work": State(), "Other": State()}, id="fork", handlers=Handlers())
    m.add("Work")
    await started.wait()
    m.add("Other")  # an unrelated mutation must not cancel it
    await asyncio.sleep(0.001)
    events.append("alive after Other: " + str(not finished.is_set()))
    m.remove("Work")
    await finished.wait()
    await asyncio.sleep(0)  # let the fork wrapper finish
    return {"events": events, "is_err": m.is_err(), "active": m.active_states}


async def fork_error_becomes_exception() -> dict:
    """An exception escaping a forked task activates ``Exception`` and is kept as ``m.err``."""
    m = Machine({"Work": State()}, id="forkerr")
    m.add("Work")

    async def boom() -> None:
        await asyncio.sleep(0.001)
        raise ValueError("boom in the browser")

    forked = m.fork("Work", boom)
    await m.when_err()
    return {"forked": forked, "is_err": m.is_err(), "err": repr(m.err)}


def events_kept_or_reused() -> dict:
    """A handler's event is reused (across transitions too) only when nobody kept the previous
    one. The machine tells by the event's reference count, which CPython 3.14 counts one lower
    than 3.11 (a local passed as a borrowed reference): a miscount would reuse a kept event."""
    import machines.handlers as mh

    made: list[str] = []

    class Counted(mh.Event):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            made.append(args[0])
            super().__init__(*args)

    seen: list[Any] = []
    kept: list[Any] = []

    class Handlers:
        def AEnter(self, e: Any) -> bool:
            seen.append((e.name, dict(e.args)))
            return True

        def AState(self, e: Any) -> None:
            seen.append((e.name, dict(e.args)))
            e.args = {"rebound": True}  # rebinding its own event's args must not leak

        def BState(self, e: Any) -> None:
            kept.append(e)

        def CState(self, e: Any) -> None:
            seen.append((e.name, dict(e.args), e.ctx))

    original, mh.Event = mh.Event, Counted  # type: ignore[misc]
    try:
        m = Machine(norels(), handlers=Handlers())
        for i in range(5):
            m.add("A", {"i": i})
            m.remove("A")
        made_unkept = len(made)
        m.add("B", {"b": 1})
        m.add("C", {"c": 2})
        m.add("B", {"b": 3}, source=None)  # B is active: no BState, the kept event stays kept
        m.remove("B")
        m.add("B", {"b": 4})
        m.add("A", {"i": 9})
    finally:
        mh.Event = original  # type: ignore[misc]
    return {
        "spare_refs": mh.SPARE_REFS,
        "made_unkept": made_unkept,
        "made": made,
        "seen": seen[-3:],
        "kept": [(e.name, e.args, e.transition.mutation.args) for e in kept],
    }


# -- environment ---------------------------------------------------------------------------------


def py314_compat() -> dict:
    """Compile every core module of the installed package with warnings as errors (Python 3.14
    turns e.g. ``return`` in ``finally`` and bad escapes into SyntaxWarnings)."""
    pkg = Path(machines.__file__).parent
    problems = []
    files = sorted(pkg.glob("*.py"))
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                compile(f.read_text(encoding="utf-8"), str(f), "exec")
            except (SyntaxError, Warning) as err:
                problems.append(f"{f.name}: {err!r}")
    return {
        "python": list(sys.version_info[:2]),
        "platform": sys.platform,
        "files": [f.name for f in files],
        "problems": problems,
    }


def imports() -> dict:
    return dict(IMPORTS)


SCENARIOS: list[tuple[str, Callable[[], Any]]] = [
    ("imports", imports),
    ("py314_compat", py314_compat),
    ("relations_dry_water_wet", relations_dry_water_wet),
    ("relations_require", relations_require),
    ("relations_add_remove", relations_add_remove),
    ("unknown_state", unknown_state),
    ("handler_order", handler_order),
    ("handler_negotiation_cancel", handler_negotiation_cancel),
    ("multi_ticks", multi_ticks),
    ("queue_from_handler", queue_from_handler),
    ("events_kept_or_reused", events_kept_or_reused),
    ("when_from_task", when_from_task),
    ("fork_cancelled_when_state_ends", fork_cancelled_when_state_ends),
    ("fork_error_becomes_exception", fork_error_becomes_exception),
]


async def _run_one(fn: Callable[[], Any]) -> Any:
    out = fn()
    if isinstance(out, Awaitable):
        try:
            out = await asyncio.wait_for(out, STEP_TIMEOUT)
        except TimeoutError:
            return {"error": f"timed out after {STEP_TIMEOUT} s"}
    return out


async def main() -> dict:
    """Run every scenario, deprecations recorded; print the results as one JSON line."""
    results: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, fn in SCENARIOS:
            try:
                results[name] = await _run_one(fn)
            except Exception:
                results[name] = {"error": traceback.format_exc()}
    pkg = str(Path(machines.__file__).parent)
    results["warnings"] = [
        f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})"
        for w in caught
        if w.filename.startswith(pkg)
    ]
    print(json.dumps(results, sort_keys=True))
    return results


if __name__ == "__main__":  # CPython only; Pyodide awaits main() itself
    asyncio.run(main())
