"""Relation resolution (spec core-machine §3, §2.6, scenarios 1-4, 10-17, 21-26, 31-32, 59)."""

from __future__ import annotations

import itertools

import pytest
from conftest import RELS, Recorder, norels

from machines import Machine, Relation, Result, State

EXECUTED, CANCELED = Result.EXECUTED, Result.CANCELED


def active(m: Machine) -> set[str]:
    return set(m.active_states)


# -- 1-4: basics ----------------------------------------------------------------------------------


def test_01_add_set_remove():
    m = Machine(norels())
    assert m.set("A") == EXECUTED
    assert active(m) == {"A"}
    assert m.add("B") == EXECUTED
    assert active(m) == {"A", "B"}

    m = Machine(norels())
    m.set(["A"])
    assert m.set(["B"]) == EXECUTED
    assert active(m) == {"B"}

    m = Machine(norels())
    m.set(["B", "C"])
    assert m.remove("C") == EXECUTED
    assert active(m) == {"B"}
    assert m.is_active("B") and m.not_active("A", "C", "D")


def test_02_state_names_schema_order():
    m = Machine(norels())
    assert set(m.state_names) == {"A", "B", "C", "D", "Exception"}
    # deliberate difference from the reference: schema order, Exception appended
    assert m.state_names == ["A", "B", "C", "D", "Exception"]
    m2 = Machine({"Z": State(), "Exception": State(multi=True), "Y": State()})
    assert m2.state_names == ["Z", "Exception", "Y"]


def test_03_set_unknown_state_raises():
    m = Machine(norels())
    with pytest.raises(ValueError, match=r"\bE\b"):
        m.set(["E"])
    assert m.active_states == []


def test_04_relations_query():
    m = Machine({"A": State(add=["B"], require=["B"], auto=True), "B": State()})
    assert m.relations_of("A") == [Relation.ADD, Relation.REQUIRE]
    assert m.relations_of("B") == []

    m = Machine(
        {
            "A": State(add=["B"], require=["C"]),
            "B": State(remove=["C"]),
            "C": State(),
            "D": State(require=["A"]),
        }
    )
    assert m.relations_between("A", "B") == [Relation.ADD]
    assert m.relations_between("B", "C") == [Relation.REMOVE]
    assert m.relations_between("D", "A") == [Relation.REQUIRE]
    assert m.relations_between("B", "A") == []
    with pytest.raises(ValueError, match="Nope"):
        m.relations_of("Nope")
    with pytest.raises(ValueError, match="Nope"):
        m.relations_between("A", "Nope")

    m = Machine({"A": State(add=["B", "C"], after=["B"]), "B": State(), "C": State()})
    assert m.relations_between("A", "B") == [Relation.ADD, Relation.AFTER]
    assert [str(r) for r in m.relations_between("A", "B")] == ["add", "after"]


# -- 10: Require ordering -------------------------------------------------------------------------

REQ_ORDER = {
    "A": State(auto=True, require=["B", "C"]),
    "B": State(auto=True, require=["D"]),
    "C": State(auto=True),
    "D": State(auto=True),
    "Start": State(),
}


def test_10_require_order_auto():
    rec = Recorder()
    m = Machine(REQ_ORDER, handlers=rec)
    assert m.add("Start") == EXECUTED
    assert active(m) == {"A", "B", "C", "D", "Start"}
    states = [c for c in rec.calls if c.endswith("State") and c != "AnyState"]
    assert states == ["DState", "BState", "CState", "AState"]
    assert rec.count("AnyEnter") == 2 and rec.count("AnyState") == 2
    for name in set(rec.calls) - {"AnyEnter", "AnyState"}:
        assert rec.count(name) == 1, name


@pytest.mark.parametrize("perm", list(itertools.permutations("ABCD")))
def test_10_sort_states_any_permutation(perm):
    # sortStates is observed through the order of the target list and of the State handlers
    rec = Recorder(names=("AState", "BState", "CState", "DState"))
    m = Machine({**REQ_ORDER, "A": State(require=["B", "C"]), "B": State(require=["D"])})
    m.handlers_bind(rec)
    assert m.set(list(perm)) == EXECUTED
    assert rec.calls == ["DState", "BState", "CState", "AState"]


# -- 11-17: remove, require, add ------------------------------------------------------------------


def test_11_add_removes_active():
    m = Machine(norels(C=State(remove=["D"])))
    m.set("D")
    assert m.add("C") == EXECUTED
    assert active(m) == {"C"}
    assert m.clock(["C", "D"]) == {"C": 1, "D": 2}


def test_12_set_both_removing_and_removed(logged):
    m = logged(norels(C=State(remove=["D"])))
    m.set("D")
    logged.clear()
    assert m.set(["C", "D"]) == CANCELED
    assert logged.has("[rel:remove] D by C")
    assert active(m) == {"D"}


def test_13_cross_blocking():
    schema = norels(C=State(remove=["D"]), D=State(remove=["C"]))
    m = Machine(schema)
    m.set("D")
    assert m.set("C") == EXECUTED and active(m) == {"C"}
    assert m.set("D") == EXECUTED and active(m) == {"D"}
    assert m.add("C") == EXECUTED and active(m) == {"C"}
    assert m.add("D") == EXECUTED and active(m) == {"D"}
    assert m.clock(["C", "D"]) == {"C": 4, "D": 5}


def test_14_implied_but_removed():
    m = Machine(norels(A=State(remove=["D"]), C=State(add=["D"])))
    assert m.set("C") == EXECUTED
    assert active(m) == {"C", "D"}
    assert m.set(["A", "C"]) == EXECUTED
    assert active(m) == {"A", "C"}
    assert m.time() == [1, 0, 1, 2, 0]


def test_15_require_met():
    m = Machine(norels(C=State(require=["D"])))
    m.set("A")
    assert m.set(["C", "D"]) == EXECUTED
    assert active(m) == {"C", "D"}


def test_16_require_unmet(logged):
    m = logged(norels(C=State(require=["D"])))
    m.set("A")
    logged.clear()
    assert m.set(["C", "A"]) == CANCELED
    assert active(m) == {"A"}
    assert logged.has("[reject] C(-D)")
    assert logged.has("[cancel:reject] C")


def test_17_remove_suppresses_add_of_removed():
    m = Machine(norels(A=State(multi=True, add=["B"], require=["C"]), B=State(require=["C"])))
    m.set(["A", "B", "C"])
    assert active(m) == {"A", "B", "C"}
    assert m.remove("B") == EXECUTED
    assert active(m) == {"A", "C"}
    assert m.clock(["A", "B", "C"]) == {"A": 1, "B": 2, "C": 1}


def test_require_removal_cascades():
    m = Machine({"A": State(), "B": State(require=["A"])})
    m.add(["A", "B"])
    assert m.remove("A") == EXECUTED
    assert m.active_states == []


def test_active_remover_blocks_called():
    m = Machine({"Foo": State(remove=["Bar"]), "Bar": State()})
    m.add("Foo")
    assert m.add("Bar") == CANCELED
    assert m.active_states == ["Foo"]


def test_called_remover_wins_and_cancels():
    m = Machine({"Foo": State(), "Bar": State(remove=["Foo"])})
    assert m.add(["Foo", "Bar"]) == CANCELED
    assert m.active_states == []


def test_add_of_active_non_multi_is_executed_without_tick():
    m = Machine(norels())
    m.add("A")
    before = m.time()
    assert m.add("A") == EXECUTED
    assert m.time() == before


# -- 21-26: auto states ---------------------------------------------------------------------------


def test_21_auto(logged):
    m = logged(norels(B=State(auto=True, require=["A"])))
    assert m.add("A") == EXECUTED
    assert active(m) == {"A", "B"}
    assert logged.has("[auto] B")


def test_22_partial_auto(logged):
    m = logged(norels(A=State(auto=True), B=State(auto=True, after=["A"], require=["C"])))
    assert m.add("D") == EXECUTED
    assert active(m) == {"A", "D"}
    assert logged.has("[auto_] +A")


def test_23_partial_auto_all_rejected(logged):
    m = logged(norels(C=State(auto=True, require=["B"]), D=State(auto=True, require=["B"])))
    assert m.add("A") == EXECUTED
    assert active(m) == {"A"}
    line = next(x for x in logged.lines if "[cancel:reject]" in x)
    assert set(line.split("[cancel:reject]")[1].split()) == {"C", "D"}


def test_24_partial_auto_refused_by_state_state_handler():
    rec = Recorder(names=("BState", "AState"), CB=False)
    m = Machine(norels(A=State(auto=True), B=State(auto=True)), handlers=rec)
    assert m.add("C") == EXECUTED
    assert active(m) == {"A", "C"}
    assert "BState" not in rec.calls
    assert "AState" in rec.calls and "CB" in rec.calls


def test_25_partial_auto_refused_by_enter_drops_its_adds():
    rec = Recorder(names=("DState",), BEnter=False)
    m = Machine(norels(A=State(auto=True), B=State(auto=True, add=["D"])), handlers=rec)
    assert m.add("C") == EXECUTED
    assert active(m) == {"A", "C"}
    assert "DState" not in rec.calls


def test_26_auto_vetoed_by_self_handler():
    rec = Recorder(names=(), CC=False)
    m = Machine(norels(A=State(auto=True), B=State(auto=True)), handlers=rec)
    assert m.add("C") == EXECUTED
    assert active(m) == {"C"}
    assert rec.calls == ["CC"]


def test_auto_not_triggered_by_health_transitions():
    m = Machine({"Healthcheck": State(multi=True), "Heartbeat": State(), "A": State(auto=True)})
    m.add("Healthcheck")
    assert m.active_states == ["Healthcheck"]
    m.add("Heartbeat")
    assert not m.is_active("A")
    m.add("Healthcheck")
    assert not m.is_active("A")


def test_auto_not_blocked_state_is_skipped():
    # an auto state removed by an active state is not even tried
    m = Machine({"A": State(auto=True), "B": State(remove=["A"])})
    m.add("B")
    assert m.active_states == ["B"]


# -- 31-32 and the worked examples of §3.8 --------------------------------------------------------


def test_31_regression_mutual_remove_and_add():
    m = Machine({"A": State(remove=["B"]), "B": State(remove=["A"]), "Z": State(add=["B"])})
    assert m.set("Z") == EXECUTED
    assert active(m) == {"Z", "B"}
    assert m.string_all() == "(B:1 Z:1) [A:0 Exception:0]"


def test_32_regression_water():
    m = Machine(
        {
            "Wet": State(require=["Water"]),
            "Dry": State(remove=["Wet"]),
            "Water": State(add=["Wet"], remove=["Dry"]),
        }
    )
    m.set("Dry")
    m.set("Water")
    assert active(m) == {"Water", "Wet"}


def test_example_1_readme_quiz():
    m = Machine(
        {
            "Dry": State(remove=["Water"]),
            "Water": State(add=["Wet"], remove=["Dry"]),
            "Wet": State(require=["Water"]),
        }
    )
    assert m.add("Dry") == EXECUTED
    assert m.string() == "(Dry:1)"
    assert m.add("Water") == EXECUTED
    assert m.string_all() == "(Water:1 Wet:1) [Dry:2 Exception:0]"


def test_example_4_two_hop_add_limit():
    m = Machine({"X": State(add=["Y"]), "Y": State(add=["Z"]), "Z": State(add=["W"]), "W": State()})
    assert m.add("X") == EXECUTED
    assert active(m) == {"X", "Y", "Z"}


def test_example_5_implied_loses_against_active_remover():
    m = Machine({"A": State(add=["B"]), "B": State(), "C": State(remove=["B"])})
    m.add("C")
    assert m.add("A") == EXECUTED
    assert active(m) == {"A", "C"}


@pytest.mark.parametrize("called", [["C", "D"], ["D", "C"]])
def test_after_orders_handlers(called):
    # C{After:[D]}: C's handlers run after D's, whatever the call order
    rec = Recorder(names=("CEnter", "DEnter", "CState", "DState"))
    m = Machine(norels(C=State(after=["D"])), handlers=rec)
    m.add(called)
    assert rec.calls == ["DEnter", "CEnter", "DState", "CState"]


def test_multi_implied_does_not_reenter():
    rec = Recorder(names=("BState", "BEnter"))
    m = Machine(RELS, handlers=rec)
    m.add("B")
    assert rec.calls == ["BEnter", "BState"]
    m.add("D")  # D adds B, which is Multi but not called: no re-entry
    assert rec.calls == ["BEnter", "BState"]
    assert m.tick("B") == 1
    m.add("B")  # called: re-entered
    assert rec.calls == ["BEnter", "BState"] * 2
    assert m.tick("B") == 3


# -- 59: check mutations --------------------------------------------------------------------------


def test_59_can_add():
    m = Machine(RELS)
    assert m.can_add("A") == CANCELED
    assert m.can_add("C") == EXECUTED
    assert m.active_states == []
    assert m.time() == [0] * 5


def test_can_add_runs_negotiation_only():
    seen = []
    rec = Recorder(CEnter=lambda e: seen.append(e.is_check))
    m = Machine(RELS, handlers=rec)
    assert m.can_add("C") == EXECUTED
    assert seen == [True]
    assert not any(c.endswith("State") or c.endswith("End") for c in rec.calls)
    assert m.active_states == []

    rec2 = Recorder(CEnter=False)
    m2 = Machine(RELS, handlers=rec2)
    assert m2.can_add("C") == CANCELED
    assert m2.can_remove("C") == EXECUTED  # nothing to remove: accepted


def test_can_add_in_handler_is_queued():
    got = []
    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AState=lambda e: got.append(m.can_add("B"))))
    m.add("A")
    assert got == [Result.QUEUED]
    assert not m.is_active("B")


DIFF_SCHEMA = {
    "A": State(require=["C"]),
    "B": State(multi=True, add=["C"]),
    "C": State(after=["D"]),
    "D": State(add=["C", "B"]),
    "E": State(remove=["A", "D"]),
    "F": State(require=["E"], add=["G"]),
    "G": State(remove=["B"]),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_unobserved_and_observed_machines_agree(seed):
    # a machine nobody observes may take shortcuts; its results and clocks must be the same
    # as those of a machine with a (method-less) handler group bound
    import random

    rnd = random.Random(seed)
    plain = Machine(DIFF_SCHEMA)
    observed = Machine(DIFF_SCHEMA, handlers=object())
    names = list(DIFF_SCHEMA) + ["Exception"]
    for step in range(1500):
        op = rnd.choice(["add", "remove", "set", "toggle"])
        states = rnd.sample(names, rnd.randint(1, 3))
        got = [getattr(m, op)(states) for m in (plain, observed)]
        assert got[0] == got[1], (step, op, states)
        assert plain.time() == observed.time(), (step, op, states)
        assert plain.active_states == observed.active_states
        assert plain.queue_tick == observed.queue_tick
