"""The queue: queue ticks, de-duplication, introspection, limits and eval (spec §2.2, §2.3, §2.7,
scenarios 45, 46, 49)."""

from __future__ import annotations

import threading
import time

from conftest import Recorder, norels

from machines import Machine, MutationType, Result, State

EXECUTED, CANCELED = Result.EXECUTED, Result.CANCELED
ADD, REMOVE = MutationType.ADD, MutationType.REMOVE


def test_queue_ticks():
    m = Machine(norels())
    assert m.queue_tick == 1
    ticks = []

    def a_state(e):
        ticks.append(m.queue_tick)
        ticks.append(m.add("B"))
        ticks.append(m.add("C"))

    m.handlers_bind(Recorder(names=(), AState=a_state, BState=lambda e: ticks.append(m.queue_tick)))
    assert m.add("A") == EXECUTED
    # the first appended mutation ran at tick 2; B and C were given 3 and 4; B ran at 3
    assert ticks == [2, 3, 4, 3]
    assert m.queue_tick == 4
    assert m.queue_len() == 0


def test_45_queue_introspection():
    seen = {}

    def a_state(e):
        m.add("B")
        m.add("C")
        m.add("D")
        seen["len"] = m.queue_len()
        seen["queue"] = [(q.type, q.called) for q in m.queue]
        seen["idx_c"] = m.is_queued(ADD, ["C"])
        seen["idx_x"] = m.is_queued(REMOVE, ["C"])
        seen["will_c"] = m.will_be("C")
        seen["will_a"] = m.will_be("A")
        seen["removed_a"] = m.will_be_removed("A")

    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    assert seen == {
        "len": 3,
        "queue": [(ADD, ("B",)), (ADD, ("C",)), (ADD, ("D",))],
        "idx_c": 1,
        "idx_x": -1,
        "will_c": True,
        "will_a": False,
        "removed_a": False,
    }
    assert m.active_states == ["A", "B", "C", "D"]


def test_46_duplicate_suppression(logged):
    lens = []
    results = []

    def a_state(e):
        for _ in range(3):
            results.append(m.add("B"))
        lens.append(m.queue_len())
        results.append(m.remove("B"))
        lens.append(m.queue_len())
        results.append(m.remove("B"))
        lens.append(m.queue_len())

    m = logged(norels())
    m.set("B")
    m.handlers_bind(Recorder(names=(), AState=a_state))
    assert m.add("A") == EXECUTED
    assert lens == [1, 2, 2]
    q1 = results[0]
    assert results == [q1, EXECUTED, EXECUTED, q1 + 1, EXECUTED]
    assert logged.has("[queue:skipped] Duplicate detected for [add] B")
    assert m.active_states == ["A"]


def test_duplicates_with_args_or_multi_are_kept():
    lens = []

    def a_state(e):
        m.add("B", {"x": 1})
        m.add("B", {"x": 1})
        m.add("M")
        m.add("M")
        lens.append(m.queue_len())

    m = Machine({**norels(), "M": State(multi=True)})
    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    assert lens == [4]
    assert m.tick("M") == 3


def test_remove_shortcut_in_handler():
    got = []

    def a_state(e):
        got.append(m.remove("C"))  # not active, queue empty: nothing queued
        got.append(m.queue_len())

    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    assert got == [EXECUTED, 0]


def test_queue_limit():
    got = []

    def a_state(e):
        for s in ("B", "C", "D"):
            got.append(m.add(s))
        got.append(m.add("E"))  # over the limit
        got.append(m.add("Exception"))  # one error gets through a full queue

    m = Machine({**norels(), "E": State()}, queue_limit=3)
    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    assert got[:3] == [3, 4, 5]
    assert got[3] == CANCELED
    assert Result.is_queued(got[4])
    assert m.is_active("A", "B", "C", "D", "Exception")
    assert not m.is_active("E")


def test_handler_mutations_run_in_fifo_order():
    order = []
    m = Machine(norels())

    def a_state(e):
        m.add("C")
        m.add("B")

    m.handlers_bind(
        Recorder(
            names=(),
            AState=a_state,
            BState=lambda e: order.append("B"),
            CState=lambda e: order.append("C"),
        )
    )
    m.add("A")
    assert order == ["C", "B"]


# -- 49: eval -------------------------------------------------------------------------------------


def test_49_eval_and_nested_eval():
    m = Machine(norels())
    box = {"a": 0}

    def inner():
        box["a"] += 100

    def outer():
        box["a"] = 1
        box["inner"] = m.eval(inner, "inner")

    assert m.eval(outer, "outer") is True
    assert box == {"a": 1, "inner": False}
    assert not m.is_err()


def test_49_eval_inside_handler_refused_fork_allowed():
    m = Machine(norels(), handler_timeout=5)
    box = {"a": 0}
    results = {}
    threads = []

    def inc():
        box["a"] += 1

    def a_state(e):
        results["direct"] = m.eval(inc, "AState")

        def forked():
            results["fork"] = m.eval(inc, "AState fork")

        t = threading.Thread(target=forked)
        threads.append(t)
        t.start()

    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    threads[0].join(5)
    assert results == {"direct": False, "fork": True}
    assert m.is_err()
    assert "eval nested in handler" in str(m.err)
    assert box["a"] == 1


def test_eval_from_other_thread_while_busy():
    # an eval queued by another thread runs in the drain, between transitions
    m = Machine(norels(), handler_timeout=5)
    entered, release = threading.Event(), threading.Event()
    seen = []

    def a_state(e):
        entered.set()
        release.wait(5)

    m.handlers_bind(Recorder(names=(), AState=a_state))
    t = threading.Thread(target=m.add, args=("A",))
    t.start()
    assert entered.wait(5)
    ev = threading.Thread(target=lambda: seen.append(m.eval(lambda: seen.append("ran"), "x")))
    ev.start()
    # nothing to await here: poll (bounded) until the eval is queued behind the running handler
    deadline = time.monotonic() + 5
    while not m.queue_len() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert m.queue_len() == 1
    release.set()
    ev.join(5)
    t.join(5)
    assert seen == ["ran", True]


def test_eval_disposed_is_false():
    m = Machine(norels())
    m.dispose()
    assert m.eval(lambda: None, "x") is False


def test_eval_timeout_skips_fn():
    m = Machine(norels(), handler_timeout=5)
    entered, release = threading.Event(), threading.Event()
    ran = []

    def a_state(e):
        entered.set()
        release.wait(5)

    m.handlers_bind(Recorder(names=(), AState=a_state))
    t = threading.Thread(target=m.add, args=("A",))
    t.start()
    assert entered.wait(5)
    try:
        assert m.eval(lambda: ran.append(1), "slow", timeout=0.05) is False
    finally:
        release.set()
        t.join(5)
    assert ran == []  # timed out before it started: skipped
    assert any("eval timeout: slow" in str(err) for err in m.err_internal)
    assert not m.is_err()


def test_concurrent_mutations_from_threads_are_all_applied():
    m = Machine({"M": State(multi=True)})
    n = 200
    start = threading.Barrier(2)

    def hammer(tag):
        start.wait(5)
        for i in range(n):
            assert m.add("M", {"tag": tag, "i": i}) != CANCELED

    threads = [threading.Thread(target=hammer, args=(t,)) for t in "xy"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # every Add of an active Multi state ticks it by 2 (the first by 1): none was lost
    assert m.tick("M") == 2 * (2 * n) - 1
    assert m.queue_len() == 0
    assert m.queue_tick == 1 + 2 * n


def test_auto_states_in_index_order(logged):
    # reference quirk (§13 #9): hash-map order; the port uses index order
    m = logged({"A": State(), "Z": State(auto=True), "Y": State(auto=True), "X": State(auto=True)})
    m.add("A")
    assert logged.has("[auto] Z Y X")


def test_queue_limit_exception_only_for_add():
    got = []

    def a_state(e):
        m.add("B")
        got.append(m.remove("Exception"))  # no exception for Remove (§13 #11)
        got.append(m.set("Exception"))
        got.append(m.add("Exception"))

    m = Machine(norels(), queue_limit=1)
    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    assert got[0] == CANCELED and got[1] == CANCELED
    assert Result.is_queued(got[2])


def test_set_respects_backoff():
    # reference quirk (§13 #12): Set ignored the backoff; the port checks it
    m = Machine(norels(), handler_timeout=0.01, handler_deadline=0.02, handler_backoff=30)
    m.handlers_bind(Recorder(names=(), AEnter=lambda e: time.sleep(0.04)))
    assert m.add("A") == CANCELED
    assert m.is_err()
    assert m.set("B") == CANCELED
    assert m.toggle("B") == CANCELED
    assert m.add_err(ValueError("x")) == CANCELED
    assert not m.is_active("B")
