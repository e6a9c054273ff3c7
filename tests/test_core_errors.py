"""Errors: handler panics, timeouts, deadlines, bad input, disposal (spec §4.7, §4.8, §9,
scenarios 47, 48, 58)."""

from __future__ import annotations

import time

import pytest
from conftest import Recorder, norels

from machines import HandlerTimeoutError, Machine, Result, State
from machines.transition import EXCEPTION_ARGS_KEY, ExceptionArgs

EXECUTED, CANCELED = Result.EXECUTED, Result.CANCELED


# -- 47: exceptions inside handlers ---------------------------------------------------------------


def test_47_panic_in_negotiation(logged):
    m = logged(norels())
    m.set("A")

    class H:
        def BEnter(self, e):
            raise RuntimeError("enter failed")

    m.handlers_bind(H())
    assert m.add("B") == CANCELED
    assert set(m.active_states) == {"A", "Exception"}
    assert logged.has("[cancel] (B A) by recover")
    assert logged.has("[recover] handling panic")
    assert isinstance(m.err, RuntimeError)
    assert m.tick("B") == 0


def test_47_panic_in_final_handler(logged):
    m = logged(norels())
    seen = []

    class H:
        def BState(self, e):
            raise RuntimeError("state failed")

        def ExceptionState(self, e):
            data = e.args[EXCEPTION_ARGS_KEY]
            seen.append((type(data.err), data.panic["handler"], e.mutation.source is not None))

    m.handlers_bind(H())
    assert m.add(["A", "B", "C"]) == CANCELED
    assert set(m.active_states) == {"A", "Exception"}
    assert m.clock(["A", "B", "C"]) == {"A": 1, "B": 2, "C": 2}
    assert seen == [(RuntimeError, "BState", True)]
    assert logged.has("[recover] partial final states as (A)")


def test_47_default_exception_handler_logs_panic(logged):
    m = logged(norels())

    class H:
        def BState(self, e):
            raise RuntimeError("state failed")

    m.handlers_bind(H())
    m.add(["A", "B", "C"])
    line = next(x for x in logged.lines if "[error:add]" in x)
    assert line.startswith("[error:add] A B C (BState panic")
    assert "in BState" in line  # the stack trace names the handler


def test_panic_in_end_handler_keeps_applied_states():
    class H:
        def AEnd(self, e):
            raise RuntimeError("end failed")

    m = Machine(norels())
    m.add(["A", "B"])
    m.handlers_bind(H())
    assert m.remove("A") == CANCELED
    assert set(m.active_states) == {"B", "Exception"}


def test_panic_in_final_skips_any_state():
    rec = Recorder(names=("AnyState", "ExceptionState"), BState=lambda e: 1 / 0)
    m = Machine(norels(), handlers=rec)
    m.add("B")
    # AnyState ran only for the Exception transition that followed
    assert rec.calls == ["BState", "ExceptionState", "AnyState"]
    assert m.is_err() and isinstance(m.err, ZeroDivisionError)


def test_raising_exception_handler_does_not_loop():
    class H:
        def ExceptionState(self, e):
            raise RuntimeError("handler of errors fails too")

    m = Machine(norels(), handlers=H())
    m.add_err(ValueError("x"))  # must neither raise nor recurse
    assert isinstance(m.err, RuntimeError | ValueError)


def test_exception_args_and_err_kept():
    got = []

    class H:
        def ExceptionState(self, e):
            got.append(e.args[EXCEPTION_ARGS_KEY])

    m = Machine(norels(), handlers=H())
    err = ValueError("kept")
    m.add_err(err, {"extra": 1})
    assert m.is_err() and m.err is err
    assert isinstance(got[0], ExceptionArgs) and got[0].err is err
    m.remove("Exception")
    assert not m.is_err() and m.err is err  # the last error stays


def test_bind_while_in_exception_readds_the_error():
    m = Machine(norels())
    m.add_err(ValueError("early"))
    rec = Recorder(names=("ExceptionState",))
    m.handlers_bind(rec)
    assert rec.calls == ["ExceptionState"]


# -- 48: handler timeout --------------------------------------------------------------------------


def test_48_handler_timeout_in_final_handler(logged):
    m = logged(norels(), handler_timeout=0.02)
    m.handlers_bind(Recorder(names=(), AState=lambda e: time.sleep(0.05)))
    assert m.add("A") == CANCELED
    assert not m.is_active("A") and m.tick("A") == 2  # partial recovery removed it again
    assert not m.is_err()  # no Exception unless the deadline is hit
    assert any(isinstance(err, HandlerTimeoutError) for err in m.err_internal)
    assert "AState" in str(m.err_internal[-1])


def test_48_handler_timeout_in_negotiation(logged):
    m = logged(norels(), handler_timeout=0.02)
    m.handlers_bind(Recorder(names=(), AEnter=lambda e: time.sleep(0.05)))
    assert m.add("A") == CANCELED
    assert m.tick("A") == 0
    assert logged.has("[cancel] (A) by timeout")
    assert not m.is_err()


def test_handler_deadline_drops_queue_and_backs_off():
    m = Machine(
        {**norels(), "ErrHandlerTimeout": State(multi=True, require=["Exception"])},
        handler_timeout=0.01,
        handler_deadline=0.03,
        handler_backoff=30,
    )

    def slow(e):
        m.add("C")  # queued, then discarded by the deadline
        time.sleep(0.05)

    m.handlers_bind(Recorder(names=(), BEnter=slow))
    assert m.add("B") == CANCELED
    assert m.is_active("Exception", "ErrHandlerTimeout")
    assert not m.is_active("B") and not m.is_active("C")
    assert isinstance(m.err, HandlerTimeoutError)
    # backoff: mutations are refused for a while
    assert m.add("D") == CANCELED
    assert m.remove("Exception") == CANCELED
    assert m.can_add("D") == CANCELED
    assert not m.is_active("D")


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.add("Nope"),
        lambda m: m.add(["A", "Nope"]),
        lambda m: m.remove(["Nope"]),
        lambda m: m.set(["A", "Nope"]),
        lambda m: m.toggle("Nope"),
        lambda m: m.not_active("Nope"),
        lambda m: m.when("Nope"),
        lambda m: m.when_not(["Nope"]),
        lambda m: m.when_args("Nope", {}),
        lambda m: m.when_time(["Nope"], [1]),
        lambda m: m.when_ticks("Nope", 1),
        lambda m: m.new_state_ctx("Nope"),
        lambda m: m.can_add("Nope"),
        lambda m: m.can_remove("Nope"),
        lambda m: m.add_err_state("Nope", ValueError()),
        lambda m: m.verify_states(["A", "B", "C", "D", "Exception", "Nope"]),
    ],
)
def test_unknown_state_names_raise_naming_them(call):
    m = Machine(norels(), id="m1")
    m.add("A")
    before = m.time()
    with pytest.raises(ValueError, match="Nope"):
        call(m)
    assert m.time() == before


@pytest.mark.parametrize(
    "query",
    [
        lambda m: m.is_active("Nope"),
        lambda m: m.is_active("A", "Nope"),
        lambda m: m.any_active("Nope"),
        lambda m: m.any_active(["A", "Nope"]),
        lambda m: m.not_active("Nope"),
        lambda m: m.tick("Nope"),
        lambda m: m.index("Nope"),
        lambda m: m.clock(["Nope"]),
    ],
)
def test_unknown_names_in_queries_raise_naming_them(query):
    m = Machine(norels(), id="m1")
    with pytest.raises(ValueError, match="Nope.*m1"):
        query(m)


def test_has_answers_for_unknown_names():
    m = Machine(norels())
    assert not m.has("Nope") and m.has("A", "B")


def test_state_names_must_be_strings():
    m = Machine(norels())
    with pytest.raises(TypeError):
        m.add(["A", 1])


def test_unknown_state_error_leaves_queue_usable():
    got = []

    def a_state(e):
        try:
            m.add("Nope")
        except ValueError as err:
            got.append(str(err))
        m.add("B")

    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AState=a_state))
    assert m.add("A") == EXECUTED
    assert m.is_active("A", "B")
    assert "Nope" in got[0]


# -- disposal (58, §9) ----------------------------------------------------------------------------


def test_58_on_dispose(run):
    async def body(kit):
        m = Machine(norels(), id="d1")
        called = []
        m.on_dispose(called.append)
        w = m.when_disposed()
        assert not w.done
        kit.spawn(_dispose_soon, kit, m)
        await w
        assert called == ["d1"]
        assert m.is_disposed
        m.dispose()  # repeatable
        assert called == ["d1"]

        m = Machine(norels(), id="d2")
        called = []
        m.on_dispose(called.append)
        m.dispose_force()
        assert called == ["d2"]  # synchronously

    run(body)


async def _dispose_soon(kit, m):
    await kit.checkpoint()
    m.dispose()


def test_dispose_from_handler_waits_for_the_drain():
    m = Machine(norels())

    during: list[bool] = []

    def a_state(e):
        m.dispose()
        m.add("B")
        during.append(m.is_disposed)  # asserted below: a failed assert here would only
        # activate Exception

    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    assert during == [False]
    assert m.is_disposed


def test_dispose_removes_start():
    rec = Recorder(names=("StartEnd",))
    m = Machine({"Start": State(), "A": State()}, handlers=rec)
    m.add(["Start", "A"])
    m.dispose()
    assert rec.calls == ["StartEnd"]
    assert m.is_disposed


def test_58_disposed_is_a_no_op(logged):
    m = logged(norels())
    m.add(["A", "B"])
    ctx = m.new_state_ctx("A")
    m.dispose()
    assert ctx.cancelled
    logged.clear()
    for call in (
        lambda: m.add("C"),
        lambda: m.remove("A"),
        lambda: m.set("C"),
        lambda: m.toggle("A"),
        lambda: m.add_err(ValueError()),
        lambda: m.add_err_state("B", ValueError()),
        lambda: m.can_add("C"),
        lambda: m.can_remove("A"),
    ):
        assert call() == CANCELED
    assert not m.is_active("A") and not m.any_active("A", "B") and not m.is_err()
    assert not m.has("A") and m.index("A") == -1
    assert not m.is_clock({"A": 1}) and not m.is_time([1, 1], ["A", "B"])
    assert m.active_states == [] and m.queue == [] and m.clock() == {}
    assert m.time() in ([], None)
    assert m.string() == "" and m.string_all() == "" and m.inspect() == ""
    assert m.tick("A") == 0
    assert m.eval(lambda: None, "x") is False
    m.verify_states(["A"])  # no error
    assert m.when("C").done and m.when_not("A").done and m.when_time("A", [9]).done
    assert m.when_args("C", {"x": 1}).done and m.when_query(lambda c: False).done
    assert m.when_queue(100).done and m.when_queue_ends().done
    assert m.new_state_ctx("A").cancelled
    m.log("silent")
    assert logged.lines == []


def test_user_exception_state_replaces_the_default(logged):
    got = []

    class H:
        def ExceptionState(self, e):
            got.append(e.args[EXCEPTION_ARGS_KEY].err)

    m = logged(norels(), handlers=H())
    err = ValueError("mine")
    m.add_err(err)
    assert got == [err]
    assert not any(line.startswith("[error]") for line in logged.lines)

    m2 = logged(norels())
    m2.add_err(ValueError("default"))
    assert any(line.startswith("[error] ValueError('default')") for line in logged.lines)
