"""Toggle, options, handler groups, tracers and logging (spec §4.3, §8, scenarios 51, 52, 57)."""

from __future__ import annotations

import pytest
from conftest import Recorder, norels

from machines import LogLevel, Machine, Result, State, Tracer

EXECUTED, CANCELED = Result.EXECUTED, Result.CANCELED


def test_51_toggle():
    m = Machine(norels())
    assert m.toggle("A") == EXECUTED
    assert m.is_active("A")
    assert m.toggle("A") == EXECUTED
    assert not m.is_active("A")
    m.toggle(["A"])
    assert m.is_active("A")
    m.toggle(["A"])
    assert not m.is_active("A")
    # Remove only when all are active, else Add
    m.add("A")
    m.toggle(["A", "B"])
    assert m.is_active("A", "B")
    m.toggle(["A", "B"])
    assert m.active_states == []


def test_52_options(logged):
    parent = Machine(norels(), id="parent")
    child = Machine(norels(), parent=parent)
    assert child.parent_id == parent.id == "parent"
    assert Machine(norels(), parent_id="p2").parent_id == "p2"

    m = Machine(norels(), tags=["a", "b", "a"])
    assert m.tags == ["a", "b"]
    m.tags = ["c"]
    assert m.tags == ["c"]

    m = Machine(norels(), queue_limit=10)
    assert m.queue_limit == 10
    got = []

    def a_state(e):
        got.extend(m.add(s, {"n": i}) for i, s in enumerate("BBBBBBBBBBB"))

    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    assert got[-1] == CANCELED and all(Result.is_queued(r) for r in got[:10])

    assert Machine(norels()).log_stack_trace is True
    quiet = logged(norels(), log_stack_trace=False)
    assert quiet.log_stack_trace is False
    quiet.handlers_bind(Recorder(names=(), AState=lambda e: 1 / 0))
    quiet.add("A")
    line = next(x for x in logged.lines if x.startswith("[error:add]"))
    assert "Traceback" not in line

    assert len(Machine(norels()).id) == 16
    assert Machine(norels()).handler_timeout == 0.1


def test_52_log_level_changes():
    lines = []
    m = Machine(norels(), log_level=LogLevel.CHANGES, logger=lambda lvl, text: lines.append(text))
    m.add("A")
    m.remove("A")
    assert lines == ["[state] +A", "[state] -A"]
    m.log_level = LogLevel.NOTHING
    m.add("A")
    assert lines == ["[state] +A", "[state] -A"]


def test_log_lines_and_levels(logged):
    levels = []
    m = logged(norels(), logger=lambda lvl, text: (levels.append(lvl), logged.lines.append(text)))
    m.handlers_bind(Recorder(names=("AState",)))
    m.add("A", {"name": "x" * 30, "secret": "no"})
    m.log("hello")
    assert "[add] A (name=xxxxxxxxxxxxxxxxx...)" in logged.lines
    assert "[state] +A" in logged.lines
    assert "[handler:1] AState" in logged.lines
    assert "[exter] hello" in logged.lines
    assert not any("secret" in x for x in logged.lines)
    assert set(levels) <= set(range(1, 6))


def test_transition_log_entries():
    txs = []

    class T(Tracer):
        def transition_end(self, tx):
            txs.append(tx)

    m = Machine(norels(), log_level=5, logger=lambda lvl, text: None, tracers=[T()])
    m.add("A")
    assert (LogLevel.CHANGES, "[state] +A") in txs[0].log_entries


def test_57_handlers_detach():
    m = Machine(norels())
    rec = Recorder()
    gid = m.handlers_bind(rec)
    assert m.handlers() == [gid]
    m.handlers_detach(gid)
    assert m.handlers() == []
    m.add("A")
    assert rec.calls == []
    with pytest.raises(ValueError, match="nope"):
        m.handlers_detach("nope")
    gid2 = m.handlers_bind(rec, id="mine")
    assert gid2 == "mine"
    with pytest.raises(ValueError, match="mine"):
        m.handlers_bind(Recorder(), id="mine")


def test_57_tracer_bind_detach():
    events = []

    class T(Tracer):
        def transition_end(self, tx):
            events.append(tx.called_states)

    m = Machine(norels())
    t = T()
    m.tracer_bind(t)
    assert m.tracers == [t]
    m.add("A")
    m.tracer_detach(t)
    assert m.tracers == []
    m.add("B")
    assert events == [["A"]]
    with pytest.raises(TypeError):
        m.tracer_bind("not a tracer")
    with pytest.raises(TypeError):
        m.tracer_bind(object())


def test_tracer_hooks_order():
    seen = []

    class T(Tracer):
        def machine_init(self, mach):
            seen.append("machine_init")

        def mutation_queued(self, mach, mut):
            seen.append(f"queued {mut!r}")

        def transition_init(self, tx):
            seen.append("init")

        def transition_start(self, tx):
            seen.append("start")

        def handler_start(self, tx, group, name):
            seen.append(f"h+ {name}")

        def handler_end(self, tx, group, name):
            seen.append(f"h- {name}")

        def transition_finals(self, tx):
            seen.append("finals")

        def transition_end(self, tx):
            seen.append(f"end {tx.accepted}")

        def queue_end(self, mach):
            seen.append("queue_end")

        def machine_dispose(self, mach_id):
            seen.append(f"dispose {mach_id}")

    m = Machine(norels(), id="t1", tracers=[T()])
    m.handlers_bind(Recorder(names=("AEnter", "AState")))
    m.add("A")
    m.dispose()
    assert seen == [
        "machine_init",
        "queued [add] A",
        "init",
        "start",
        "h+ AEnter",
        "h- AEnter",
        "finals",
        "h+ AState",
        "h- AState",
        "end True",
        "queue_end",
        "dispose t1",
    ]


def test_broken_tracer_does_not_break_the_machine():
    class T(Tracer):
        def transition_end(self, tx):
            raise RuntimeError("observer bug")

    m = Machine(norels(), tracers=[T()])
    assert m.add("A") == EXECUTED
    assert m.is_active("A") and not m.is_err()
    assert any("observer bug" in str(e) for e in m.err_internal)


def test_inheritable_tracer_and_new_submachine():
    seen = []

    class T(Tracer):
        inheritable = True

        def new_submachine(self, parent, mach):
            seen.append((parent.id, mach.id))

    t = T()
    parent = Machine(norels(), id="p", tracers=[t])
    child = Machine(norels(), id="c", parent=parent)
    assert seen == [("p", "c")]
    assert child.tracers == [t]


def test_queries():
    m = Machine(norels())
    m.add(["A", "C"])
    assert m.any_active("B", "C") and not m.any_active("B", "D")
    assert m.not_active("B", "D") and not m.not_active("A", "B")
    assert m.is_active(["A", "C"]) and not m.is_active("A", "B")
    assert m.switch("D", "C", "A") == "C"
    assert m.switch("D") == ""
    assert str(Result.EXECUTED) == "executed" and str(Result.CANCELED) == "canceled"
    assert Result.is_queued(Result.QUEUED) and not Result.is_queued(Result.CANCELED)


def test_state_sets_active_order_is_schema_order():
    m = Machine({"Z": State(), "Y": State(), "X": State()})
    m.add(["X", "Z"])
    assert m.active_states == ["Z", "X"]


def test_on_change_for_cancelled_transitions_too():
    seen = []
    m = Machine(norels(C=State(require=["D"])), handlers=Recorder(names=(), BEnter=False))
    m.on_change(lambda mach, before, after: seen.append(before == after))
    m.add("A")  # accepted
    m.add("C")  # rejected by relations
    m.add("B")  # cancelled by a handler
    assert seen == [False, True, True]
    m.can_add("A")  # checks are not reported
    assert len(seen) == 3


def test_pipe_lines_name_each_ends_own_state():
    """``[pipe-out]`` names the source's state, ``[pipe-in]`` the target's (the debugger draws
    the pipe's edge between the two, spec tools.md)."""
    from machines.pipes import bind, pipe_add, pipe_remove

    lines: dict[str, list[str]] = {"src": [], "dst": []}
    src = Machine(norels(), id="src", log_level=3, logger=lambda lv, t: lines["src"].append(t))
    dst = Machine(
        {"Foo": State(), "Bar": State(), "On": State(), "Off": State()},
        id="dst",
        log_level=3,
        logger=lambda lv, t: lines["dst"].append(t),
    )
    pipe_add(src, dst, "A", "Foo")
    pipe_remove(src, dst, "B", "Bar")
    bind(src, dst, "C", "On", "Off")
    assert lines["src"] == [
        "[pipe-out:add] A to dst",
        "[pipe-out:remove] B to dst",
        "[pipe-out:add] C to dst",
        "[pipe-out:remove] C to dst",
    ]
    assert lines["dst"] == [
        "[pipe-in:add] Foo from src",
        "[pipe-in:remove] Bar from src",
        "[pipe-in:add] On from src",
        "[pipe-in:remove] Off from src",
    ]
