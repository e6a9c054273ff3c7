"""Clocks, time, dumps and export/import (spec §5, scenarios 33, 34, 54, 55)."""

from __future__ import annotations

import pytest
from conftest import RELS, norels

from machines import Machine, State

ABCD = ["A", "B", "C", "D"]


def test_33_ticks_of_5_2():
    m = Machine(norels(B=State(multi=True)))
    steps = [
        (m.add, ["A", "B"], [1, 1, 0, 0]),
        (m.add, ["A", "B"], [1, 3, 0, 0]),
        (m.add, ["A", "B", "C"], [1, 5, 1, 0]),
        (m.set, ["D"], [2, 6, 2, 1]),
        (m.add, ["D", "C"], [2, 6, 3, 1]),
        (m.remove, ["B", "C"], [2, 6, 4, 1]),
        (m.add, ["A", "B"], [3, 7, 4, 1]),
    ]
    for fn, states, ticks in steps:
        fn(states)
        assert m.time(ABCD) == ticks, (fn.__name__, states)
    assert m.clock() == {"A": 3, "B": 7, "C": 4, "D": 1, "Exception": 0}
    assert m.clock(["A", "B"]) == {"A": 3, "B": 7}
    assert m.tick("A") == 3
    before = m.time()
    m.add("C")
    now = m.time()
    assert now == [3, 7, 5, 1, 0]
    assert sum(now) == 16
    # Time.After(orEqual=True, before): every position compares
    assert all(a >= b for a, b in zip(now, before, strict=True))
    assert not all(b >= a for a, b in zip(now, before, strict=True))


def test_ticks_odd_is_active():
    m = Machine(norels(B=State(multi=True)))
    m.add(["A", "B"])
    m.add("B")
    m.remove("A")
    for name, tick in m.clock().items():
        assert bool(tick % 2) == m.is_active(name), name


def test_34_is_clock_is_time():
    m = Machine(norels())
    clock, time_ = m.clock(), m.time()
    assert m.is_clock(clock) and m.is_time(time_)
    m.add(["A", "B"])
    assert not m.is_clock(clock)
    assert not m.is_time(time_)
    clock["A"] += 1
    assert m.is_clock({"A": 1})
    assert m.is_clock({"A": clock["A"]})
    assert m.is_time([1, 1], ["A", "B"])
    assert not m.is_time([1, 0], ["A", "B"])


def test_54_string_dumps():
    m = Machine(norels())
    m.set(["A", "B"])
    m.verify_states(["A", "B", "C", "D", "Exception"])
    assert m.string() == "(A:1 B:1)"
    assert m.string_all() == "(A:1 B:1) [C:0 D:0 Exception:0]"
    assert str(m) == "(A:1 B:1)"


def test_54_inspect():
    m = Machine(RELS)
    m.set(["A", "C"])
    assert m.inspect() == (
        "1 A\n"
        "    |Tick     1\n"
        "    |Auto     true\n"
        "    |Require  C\n"
        "0 B\n"
        "    |Tick     0\n"
        "    |Multi    true\n"
        "    |Add      C\n"
        "1 C\n"
        "    |Tick     1\n"
        "    |After    D\n"
        "0 D\n"
        "    |Tick     0\n"
        "    |Add      C B\n"
        "0 Exception\n"
        "    |Tick     0\n"
        "    |Multi    true\n"
    )
    assert m.inspect(["C"]) == "1 C\n    |Tick     1\n    |After    D\n"
    m.remove("C")
    m.add("B")
    m.add("D")
    # B is implied by D (not called), so the active Multi B does not tick by 2
    assert m.clock(ABCD) == {"A": 3, "B": 1, "C": 3, "D": 1}


def test_55_export_import():
    m = Machine(norels(), id="m1")
    m.set("A")
    m.verify_states(["A", "B", "C", "D", "Exception"])
    m.remove("B")
    m.add("A")
    m.add("B")
    m.add("C")
    data = m.export()

    other = Machine(norels(), id="other")
    with pytest.raises(ValueError, match="id"):
        other.import_data(data)
    assert other.active_states == []

    twin = Machine(norels(), id="m1", names=["Exception", "D", "C", "B", "A"])
    twin.import_data(data)
    assert twin.string() == m.string() == "(A:1 B:1 C:1)"
    assert twin.string_all() == m.string_all()
    assert twin.state_names == m.state_names
    assert twin.machine_tick == m.machine_tick + 1
    assert twin.queue_tick == m.queue_tick
    assert twin.is_active("A", "B", "C")


def test_import_wrong_state_count():
    m = Machine(norels(), id="m1")
    data = m.export()
    data["state_names"] = data["state_names"][:-1]
    data["time"] = data["time"][:-1]
    with pytest.raises(ValueError, match="states"):
        Machine(norels(), id="m1").import_data(data)


def test_import_adds_machine_restored_without_other_handlers():
    calls = []
    schema = {**norels(), "MachineRestored": State()}
    src = Machine(schema, id="x")
    src.add(["A", "B"])

    class H:
        def AState(self, e):
            calls.append("AState")

        def MachineRestoredState(self, e):
            calls.append("MachineRestoredState")

    dst = Machine(schema, id="x", handlers=H())
    dst.import_data(src.export())
    assert calls == ["MachineRestoredState"]
    assert dst.is_active("A", "B", "MachineRestored")


def test_on_change():
    seen = []
    m = Machine(norels())
    m.on_change(lambda mach, before, after: seen.append((before, after)))
    m.add("A")
    assert seen == [([0, 0, 0, 0, 0], [1, 0, 0, 0, 0])]


def test_transition_time_views():
    txs = []

    class H:
        def AnyState(self, e):
            txs.append(e.transition)

    m = Machine(norels(B=State(multi=True)), handlers=H())
    m.add(["A", "B"])
    m.add("B")
    m.remove("A")
    assert [tx.time_diff() for tx in txs] == [(["A", "B"], []), (["B"], []), ([], ["A"])]
    assert txs[0].clock_before()["A"] == 0 and txs[0].clock_after()["A"] == 1


def test_multi_ticks_by_two_when_called_by_set_too():
    m = Machine(norels(B=State(multi=True)))
    m.set(["A", "B"])
    m.set(["A", "B"])
    assert m.clock(["A", "B"]) == {"A": 1, "B": 3}
    m.add_err(ValueError("1"))
    m.add_err(ValueError("2"))
    assert m.tick("Exception") == 3  # Exception is Multi


def test_rejected_and_cancelled_transitions_do_not_tick():
    m = Machine(norels(C=State(require=["D"])))
    m.add("A")
    before = m.time()
    m.add("C")
    assert m.time() == before
