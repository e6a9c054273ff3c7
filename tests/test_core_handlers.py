"""Handler dispatch and order (spec core-machine §4, scenarios 5-9, 18-20, 27-30)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import Recorder, is_subsequence, norels

from machines import Machine, MutationType, Result, State

EXECUTED, CANCELED = Result.EXECUTED, Result.CANCELED


def started(states: list[str], schema=None, **kw) -> tuple[Machine, Recorder]:
    """A machine started with ``Set(states)``, with a fresh recorder bound afterwards."""
    m = Machine(schema or norels(), **kw)
    m.set(states)
    rec = Recorder()
    m.handlers_bind(rec)
    return m, rec


def test_05_set_order_ab_to_c():
    m, rec = started(["A", "B"])
    assert m.set("C") == EXECUTED
    assert rec.calls == [
        "AExit",
        "BExit",
        "CEnter",
        "AC",
        "BC",
        "AnyEnter",
        "AEnd",
        "BEnd",
        "CState",
        "AnyState",
    ]
    assert m.active_states == ["C"]


def test_06_set_order_a_to_bc():
    m, rec = started(["A"])
    assert m.set(["B", "C"]) == EXECUTED
    assert rec.calls == [
        "AExit",
        "BEnter",
        "CEnter",
        "AB",
        "AC",
        "AnyEnter",
        "AEnd",
        "BState",
        "CState",
        "AnyState",
    ]


def test_07_set_order_ab_to_dc():
    m, rec = started(["A", "B"])
    assert m.set(["D", "C"]) == EXECUTED
    want = ["AExit", "BExit", "DEnter", "CEnter", "AD", "AC", "BD", "BC", "CState"]
    assert is_subsequence(want, rec.calls), rec.calls
    assert rec.calls == [
        "AExit",
        "BExit",
        "DEnter",
        "CEnter",
        "AD",
        "AC",
        "BD",
        "BC",
        "AnyEnter",
        "AEnd",
        "BEnd",
        "DState",
        "CState",
        "AnyState",
    ]
    assert set(m.active_states) == {"C", "D"}


def test_08_set_to_already_active_does_not_exit_it():
    m, rec = started(["A", "B"])
    assert m.set("A") == EXECUTED
    assert "AExit" not in rec.calls
    assert rec.calls == ["BExit", "AA", "BA", "AnyEnter", "BEnd", "AnyState"]
    assert m.active_states == ["A"]


def test_09_schema_edited_after_start():
    m, rec = started(["A", "B"])
    m.set_schema(norels(C=State(after=["D"]), A=State(after=["B"])))
    assert m.set(["C", "D"]) == EXECUTED
    assert is_subsequence(["DEnter", "CEnter", "AD", "AC"], rec.calls), rec.calls
    assert is_subsequence(["BExit", "AExit", "AD", "AC", "BD", "BC"], rec.calls), rec.calls
    for name in rec.calls:
        assert rec.count(name) == 1, name
    assert set(m.active_states) == {"C", "D"}


def test_18_mutation_in_handler_is_queued():
    got = []
    m = Machine(norels())
    m.set("A")
    assert m.queue_tick == 2
    rec = Recorder(BEnter=lambda e: got.append(m.add(["C"])))
    m.handlers_bind(rec)
    assert m.set(["B"]) == EXECUTED
    assert got == [4]
    assert Result.is_queued(got[0])
    assert set(m.active_states) == {"B", "C"}
    assert rec.count("AnyEnter") == 2 and rec.count("AnyState") == 2
    for name in set(rec.calls) - {"AnyEnter", "AnyState"}:
        assert rec.count(name) == 1, name
    # the queued Add ran after the Set had completed, not inside it
    assert rec.calls.index("CEnter") > rec.calls.index("BState")


def test_19_enter_refuses(logged):
    m = logged(norels())
    m.set("A")
    m.handlers_bind(Recorder(DEnter=False))
    logged.clear()
    assert m.set("D") == CANCELED
    assert m.active_states == ["A"]
    assert logged.has("[cancel] (D) by DEnter")
    assert m.add("D") == CANCELED
    assert m.active_states == ["A"]
    assert logged.has("[cancel] (D A) by DEnter")


def test_20_exit_refuses(logged):
    m = logged(norels())
    m.set("A")
    m.handlers_bind(Recorder(AExit=False))
    assert m.remove("A") == CANCELED
    assert m.active_states == ["A"]
    assert logged.has("[cancel] () by AExit")


def test_negotiation_refusal_runs_no_finals_and_keeps_clock():
    m, rec = started(["A"])
    rec._overrides["BEnter"] = False
    before = m.time()
    assert m.add("B") == CANCELED
    assert m.time() == before
    assert not any(c.endswith(("State", "End")) for c in rec.calls)
    assert "AnyEnter" not in rec.calls  # BEnter stops negotiation before AnyEnter


def test_27_state_state_handlers():
    rec = Recorder(names=("AB", "BA"))
    m = Machine(norels())
    m.set("A")
    m.handlers_bind(rec)
    assert m.add("B") == EXECUTED
    assert rec.calls == ["AB"]

    m = Machine(norels())
    m.set("A")
    m.handlers_bind(Recorder(names=(), AB=False))
    assert m.add("B") == CANCELED
    assert m.active_states == ["A"]


def test_28_self_handlers(logged):
    m = Machine(norels())
    m.set("A")
    rec = Recorder()
    m.handlers_bind(rec)
    assert m.set(["A", "B"]) == EXECUTED
    assert rec.calls == ["BEnter", "AA", "AB", "AnyEnter", "BState", "AnyState"]

    m, rec = started(["A"])
    m.add("B")
    m.add("A")
    assert rec.count("AA") == 2
    assert rec.count("BB") == 1

    m = logged(norels())
    m.set("A")
    rec = Recorder(AA=False)
    m.handlers_bind(rec)
    assert m.set(["A", "B"]) == CANCELED
    assert rec.count("AA") == 1
    assert m.active_states == ["A"]
    assert logged.has("[cancel:self] (A B) by AA")


def test_self_handlers_not_for_remove():
    m, rec = started(["A", "B"])
    m.remove("B")
    assert "AA" not in rec.calls
    # state-state handlers run for removals too: B was active before, A is a target
    assert rec.calls == ["BExit", "BA", "AnyEnter", "BEnd", "AnyState"]


def test_29_function_valued_handler_fields():
    ended = []
    obj = SimpleNamespace(AExit=lambda e: True, AEnd=lambda e: ended.append(e.name))
    m = Machine(norels())
    m.set("A")
    m.handlers_bind(obj)
    assert m.remove("A") == EXECUTED
    assert not m.is_active("A")
    assert ended == ["AEnd"]


def test_30_args_reach_handlers():
    seen = {}

    def keep(e):
        seen[e.name] = e.args.get("foo")

    m = Machine(norels())
    m.set("A")
    m.handlers_bind(Recorder(names=(), BEnter=keep, AExit=keep, CState=keep))
    m.add("B", {"foo": "bar"})
    m.remove("A", {"foo": "bar"})
    m.set("C", {"foo": "bar"})
    assert seen == {"BEnter": "bar", "AExit": "bar", "CState": "bar"}


def test_args_dict_shared_between_handlers():
    def stash(e):
        e.args["stash"] = 42

    got = []
    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AEnter=stash, AState=lambda e: got.append(e.args["stash"])))
    args = {}
    m.add("A", args)
    assert got == [42]


def test_event_fields():
    seen = []

    def look(e):
        seen.append(
            (
                e.name,
                e.machine is m,
                e.machine_id,
                e.mutation.type,
                e.mutation.source,
                e.transition.called_states,
                e.is_valid(),
                m.is_active("A"),
            )
        )

    m = Machine(norels(), id="m1")
    m.handlers_bind(Recorder(names=(), AEnter=look, AState=look))
    m.add("A")
    assert seen == [
        ("AEnter", True, "m1", MutationType.ADD, None, ["A"], True, False),
        ("AState", True, "m1", MutationType.ADD, None, ["A"], True, True),
    ]


def test_event_invalid_after_transition():
    events = []
    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AState=events.append))
    m.add("A")
    assert not events[0].is_valid()


def test_ev_mutations_record_source(logged):
    sources = []
    m = logged(norels(), id="src")

    def a_state(e):
        m.add("B", e.args, source=e)

    def b_state(e):
        sources.append((e.mutation.source, e.machine_id))

    m.handlers_bind(Recorder(names=(), AState=a_state, BState=b_state))
    m.add("A")
    (src, mid), *_ = sources
    assert src.machine_id == mid == "src"
    assert src.tx_id
    assert logged.has(f"[source] src/{src.tx_id}/")


def test_groups_tried_in_binding_order_and_first_refusal_stops():
    calls = []
    g1 = Recorder(names=(), AEnter=lambda e: calls.append("g1") or True)
    g2 = Recorder(names=(), AEnter=lambda e: calls.append("g2") or False)
    g3 = Recorder(names=(), AEnter=lambda e: calls.append("g3"))
    m = Machine(norels())
    for g in (g1, g2, g3):
        m.handlers_bind(g)
    assert m.add("A") == CANCELED
    assert calls == ["g1", "g2"]


def test_group_without_method_is_skipped():
    a, b = Recorder(names=("AState",)), Recorder(names=("BState",))
    m = Machine(norels())
    m.handlers_bind(a)
    m.handlers_bind(b)
    m.add(["A", "B"])
    assert a.calls == ["AState"] and b.calls == ["BState"]


def test_handler_group_prefix():
    # a prefixed group only sees events starting with the prefix, stripped
    got = []
    obj = SimpleNamespace(State=lambda e: got.append(e.name))
    m = Machine({"FooReady": State(), "Bar": State()})
    m.handlers_bind(obj, prefix="FooReady")
    m.add(["FooReady", "Bar"])
    assert got == ["FooReadyState"]


def test_negotiation_returning_none_accepts_final_return_ignored():
    m = Machine(norels())
    m.handlers_bind(Recorder(names=("AEnter",), AState=False))
    assert m.add("A") == EXECUTED
    assert m.is_active("A")


def test_any_handlers_only_any_enter_and_any_state():
    rec = Recorder(names=("AnyEnter", "AnyState", "AnyA", "AAny", "AnyExit", "AnyEnd"))
    m = Machine(norels())
    m.handlers_bind(rec)
    m.add("A")
    m.remove("A")
    assert rec.calls == ["AnyEnter", "AnyState"] * 2


def test_self_removal_idiom():
    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AState=lambda e: m.remove("A")))
    assert m.add("A") == EXECUTED
    assert not m.is_active("A")
    assert m.tick("A") == 2


def test_async_handler_is_an_error():
    async def a_state(e):
        return None

    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")  # must not raise
    assert m.is_err()
    assert isinstance(m.err, TypeError)


@pytest.mark.parametrize("bad", ["AEnter", "AState", "AnyEnter", "AnyState", "AExit", "AEnd"])
def test_raising_handler_never_propagates(bad):
    def boom(e):
        raise ValueError(f"boom in {e.name}")

    m = Machine(norels())
    m.set("B")
    m.handlers_bind(Recorder(names=(), **{bad: boom}))
    if bad in ("AExit", "AEnd"):
        m.add("A")
        m.remove("A")  # no raise
    else:
        assert m.add("A") == CANCELED
    assert isinstance(m.err, ValueError) and bad in str(m.err)
    if bad == "AnyEnter":
        # it vetoes every transition, the Exception one included (no nested conversion)
        assert m.active_states == ["B"]
    else:
        assert m.is_err()
