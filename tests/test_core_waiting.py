"""Waiting and state contexts, each body under trio and under asyncio (spec §6, scenarios 35-44,
50)."""

from __future__ import annotations

import sys
import threading
import time

from conftest import RELS, Recorder, norels

from machines import Machine, Result, State, Waitable

MULTI = {**norels(), "M": State(multi=True)}


def test_35_when(run):
    async def body(kit):
        m = Machine(norels(), nursery=kit.nursery)

        async def add_b_then_c():
            m.add("B")
            await kit.checkpoint()
            m.add("C")

        m.handlers_bind(Recorder(names=(), AState=lambda e: m.fork("A", add_b_then_c)))
        w = m.when(["B", "C"])
        assert not w.done
        m.set("A")
        assert not w.done  # B and C come from the background task
        await w
        assert set(m.active_states) == {"A", "B", "C"}

        # two concurrent waiters on the same states
        m2 = Machine(norels())
        subscribed = [kit.event(), kit.event()]
        finished = [kit.event(), kit.event()]

        async def waiter(i):
            w = m2.when(["A", "B"])
            subscribed[i].set()
            await w
            finished[i].set()

        kit.spawn(waiter, 0)
        kit.spawn(waiter, 1)
        for ev in subscribed:
            await ev.wait()
        assert not any(ev.is_set() for ev in finished)
        m2.add(["A", "B"])
        for ev in finished:
            await ev.wait()

        # already active: complete at once
        m3 = Machine(norels())
        m3.set("A")
        w = m3.when(["A"])
        assert w.done
        await w

    run(body)


def test_36_when_not(run):
    async def body(kit):
        m = Machine(norels(), nursery=kit.nursery)
        m.set(["B", "C"])

        async def remove_b_then_c():
            m.remove("B")
            await kit.checkpoint()
            m.remove("C")

        m.handlers_bind(Recorder(names=(), AState=lambda e: m.fork("A", remove_b_then_c)))
        w_bc, w_b = m.when_not(["B", "C"]), m.when_not("B")
        assert not w_bc.done and not w_b.done
        m.add("A")
        await w_bc
        await w_b
        assert m.active_states == ["A"]
        assert not m.is_err()
        assert m.when_not(["B"]).done

    run(body)


def test_37_when_args(run):
    async def body(kit):
        m = Machine(RELS)
        w = m.when_args("B", {"foo": "bar"})
        m.add("B", {"foo": "foo"})
        assert not w.done
        m.add("B", {"foo": "foo", "x": 1})
        assert not w.done

        async def later():
            await kit.checkpoint()
            m.add("B", {"foo": "bar", "other": 2})

        kit.spawn(later)
        await w
        assert m.tick("B") == 5  # Multi, called three times

    run(body)


def test_when_args_only_on_activation():
    m = Machine(norels())
    m.add("A")
    w = m.when_args("A", {"k": 1})
    m.add("A", {"k": 1})  # already active, not Multi: no AState, no match
    assert not w.done
    m.remove("A")
    m.add("A", {"k": 1})
    assert w.done


def test_38_when_time(run):
    async def body(kit):
        m = Machine(norels())
        m.set(["A", "B"])
        w = m.when_time(["A", "B"], [5, 2])
        w9 = m.when_time(["A", "B"], [9, 2])
        m.remove(["A", "B"])
        m.add(["A", "B"])
        assert m.clock(["A", "B"]) == {"A": 3, "B": 3}
        assert not w.done

        async def cycle():
            m.remove("A")
            m.add("A")

        kit.spawn(cycle)
        await w
        assert m.clock(["A", "B"]) == {"A": 5, "B": 3}
        assert not w9.done
        await cycle()
        assert not w9.done
        kit.spawn(cycle)
        await w9
        assert m.tick("A") == 9

    run(body)


def test_39_subscriptions_are_shared():
    m = Machine(norels())
    m.add("A")
    assert m.when_time(["A", "B"], [3, 2]) is m.when_time(["A", "B"], [3, 2])
    assert m.when_args("B", {"foo": "bar"}) is m.when_args("B", {"foo": "bar"})
    assert m.when("B") is m.when("B")
    assert m.when_not("A") is m.when_not("A")
    assert m.when("B") is not m.when_not("A")
    assert m.when_args("B", {"foo": "bar"}) is not m.when_args("B", {"foo": "baz"})
    ctx = Waitable()
    assert m.when("B", ctx=ctx) is not m.when("B")
    assert m.when("B", ctx=ctx) is m.when("B", ctx=ctx)


def test_40_context_bound_waits(run):
    async def body(kit):
        m = Machine(MULTI)
        ctx = Waitable()
        waits = [
            m.when_time(["A", "B"], [3, 3], ctx),
            m.when_ticks("A", 4, ctx),
            m.when_time("A", [7], ctx),
            m.when_args("B", {"x": 1}, ctx),
            m.when("C", ctx=ctx),
        ]
        assert not any(w.done for w in waits)
        assert m._subs  # the machine indexes them
        ctx.resolve()  # cancel the context
        for _ in range(3):
            m.add("M")
        for w in waits:
            await w
        assert not m.is_active("A", "B", "C")
        assert not m._subs  # bookkeeping emptied

        # a context cancelled already: completed at once
        assert m.when("C", ctx=ctx).done and m.when_time("A", [9], ctx).done

        # mismatched lengths: completed at once, and an error
        assert m.when_time(["A", "B"], [1]).done
        assert m.is_err()

    run(body)


def test_40_state_ctx_as_wait_context(run):
    async def body(kit):
        m = Machine(norels())
        m.add("A")
        w = m.when("C", ctx=m.new_state_ctx("A"))
        assert not w.done
        kit.spawn(_remove_soon, kit, m, "A")
        await w
        assert not m.is_active("C")

    run(body)


async def _remove_soon(kit, m, state):
    await kit.checkpoint()
    m.remove(state)


def test_41_when_queue(run):
    async def body(kit):
        got = kit.event()
        box = {}

        def a_state(e):
            m.add("B")
            m.add("C")
            r = m.add("D")
            box["r"] = r
            w = box["w"] = m.when_queue(r)
            box["done_early"] = w.done
            w.add_callback(lambda: box.setdefault("active", m.active_states))
            box["rejected"] = m.when_queue(m.add("Nope", {"unmet": 1}))
            got.set()

        m = Machine({**norels(), "Nope": State(require=["Never"]), "Never": State()})
        m.handlers_bind(Recorder(names=(), AState=a_state))

        async def mutate():
            await kit.checkpoint()
            m.add("A")

        kit.spawn(mutate)
        await got.wait()
        await box["w"]
        assert Result.is_queued(box["r"])
        assert box["done_early"] is False
        assert box["active"] == ["A", "B", "C", "D"]
        # also resolved when the mutation at that tick was cancelled
        await box["rejected"]
        assert m.when_queue(m.queue_tick).done

    run(body)


def test_42_when_queue_ends_from_another_thread(run):
    async def body(kit):
        m = Machine(norels(), handler_timeout=5)
        in_a, go = threading.Event(), threading.Event()

        def a_state(e):
            in_a.set()
            go.wait(5)
            m.add("B")

        m.handlers_bind(Recorder(names=(), AState=a_state))
        assert m.when_queue_ends().done  # idle queue

        async def mutate():
            res.append(await kit.to_thread(m.add, "A"))

        res = []
        kit.spawn(mutate)
        assert await kit.to_thread(in_a.wait, 5)
        w = m.when_queue_ends()  # from this thread, while the worker drains
        assert not w.done
        go.set()
        await w  # resolved from the worker thread
        assert m.is_active("A", "B")

    run(body)


def test_43_when_query(run):
    async def body(kit):
        m = Machine(norels())
        m.set("A")
        w1 = m.when_query(lambda c: c["A"] > 4 * c["B"])
        w2 = m.when_query(lambda c: c["A"] < c["B"])
        assert not w1.done  # not evaluated at subscription time
        m.add("B")
        m.remove("A")
        m.add("A")
        m.remove("A")
        assert not w1.done and not w2.done
        kit.spawn(_add_soon, kit, m, "A")
        await w1
        assert m.clock(["A", "B"]) == {"A": 5, "B": 1}
        assert not w2.done

    run(body)


async def _add_soon(kit, m, state):
    await kit.checkpoint()
    m.add(state)


def test_44_state_ctx():
    m = Machine(norels())
    m.add("A")
    ctx1 = m.new_state_ctx("A")
    assert not ctx1.cancelled
    assert m.new_state_ctx("A") is ctx1
    m.remove("A")
    assert ctx1.cancelled
    ctx2 = m.new_state_ctx("B")  # inactive: alive until B ticks
    assert not ctx2.cancelled
    m.add("B")
    assert ctx2.cancelled

    seen = {}

    def a_state(e):
        seen["ctx"] = m.new_state_ctx("A")
        seen["alive_in_handler"] = not seen["ctx"].cancelled

    m = Machine(norels())
    m.handlers_bind(Recorder(names=(), AState=a_state))
    m.add("A")
    assert seen["alive_in_handler"] and not seen["ctx"].cancelled
    m.remove("A")
    assert seen["ctx"].cancelled
    assert m.active_states == []


def test_44_state_ctx_cancelled_before_final_handlers():
    seen = []
    m = Machine(norels())
    m.add("A")
    ctx = m.new_state_ctx("A")
    m.handlers_bind(Recorder(names=(), AEnd=lambda e: seen.append(ctx.cancelled)))
    m.remove("A")
    assert seen == [True]


def test_44_forked_work_cancelled_with_its_state(run):
    async def body(kit):
        m = Machine(norels(), nursery=kit.nursery)
        started, cancelled = kit.event(), kit.event()
        results = []

        async def forever():
            started.set()
            try:
                await kit.event().wait()
            finally:
                cancelled.set()

        m.add("A")
        assert m.fork("A", forever)
        await started.wait()
        m.remove("A")
        await cancelled.wait()
        assert not m.is_err()

        async def in_b():
            results.append(await m.run_in_state("B", forever))
            b_done.set()

        async def quick(x):
            await kit.checkpoint()
            return x * 2

        m.add("B")
        assert await m.run_in_state("B", quick, 21) == 42
        started, b_done = kit.event(), kit.event()
        kit.spawn(in_b)
        await started.wait()
        m.remove("B")
        await b_done.wait()
        assert results == [None]

    run(body)


def test_fork_exception_becomes_error(run):
    async def body(kit):
        m = Machine(norels(), nursery=kit.nursery)

        async def fail():
            await kit.checkpoint()
            raise ValueError("in fork")

        m.add("A")
        m.fork("A", fail)
        await m.when_err()
        assert isinstance(m.err, ValueError)

    run(body)


def test_50_errors(run):
    async def body(kit):
        m = Machine(norels())
        err = ValueError("e1")
        m.add_err_state("B", err)
        m.add_err(err)
        assert m.is_active("B") and m.is_err()
        assert m.err is err

        m = Machine(norels())

        async def guarded_state():
            await kit.checkpoint()
            with m.panic_to_err_state("B"):
                raise KeyError("boom")

        kit.spawn(guarded_state)
        await m.when_err()
        assert m.is_active("B", "Exception")
        assert isinstance(m.err, KeyError)

        m = Machine(norels())

        async def guarded():
            await kit.checkpoint()
            with m.panic_to_err():
                raise KeyError("boom")

        w = m.when_err()
        kit.spawn(guarded)
        await w
        assert m.is_err() and m.active_states == ["Exception"]

    run(body)


def test_waits_complete_on_disposal(run):
    async def body(kit):
        m = Machine(norels())
        waits = [
            m.when("A"),
            m.when_time("B", [3]),
            m.when_args("C", {"x": 1}),
            m.when_query(lambda c: False),
            m.when_disposed(),
        ]
        kit.spawn(_dispose_soon, kit, m)
        for w in waits:
            await w
        assert m.when("A").done and m.when_ticks("A", 5).done and m.when_queue(99).done

    run(body)


async def _dispose_soon(kit, m):
    await kit.checkpoint()
    m.dispose()


def test_subscribing_from_another_thread_while_transitions_run():
    # a thread subscribing while another drains the queue: the index must neither break the
    # mutation (set changed size during iteration) nor lose a wake-up
    m = Machine({"X": State(), "Y": State()})
    errors, lost = [], []
    stop = threading.Event()

    def toggler():
        try:
            while not stop.is_set():
                m.add("X")
                m.remove("X")
        except Exception as err:  # a mutation must never raise
            errors.append(err)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # provoke interleavings
    t = threading.Thread(target=toggler)
    t.start()
    try:
        deadline = time.monotonic() + 0.5
        i = 0
        while time.monotonic() < deadline and not errors:
            i += 1
            target = m.tick("X") + 1 + i % 5
            w = m.when_time("X", [target])
            m.when_query(lambda c: False, ctx=w)  # extra index churn
            # tick first: if it passed the target before this read, w was resolved before too
            now = m.tick("X")
            if now >= target + 4 and not w.done:
                lost.append(target)
    finally:
        stop.set()
        t.join(5)
        sys.setswitchinterval(switch)
    assert errors == []
    assert lost == []
    for _ in range(3):  # past every target still pending
        m.add("X")
        m.remove("X")
    m.add("Y")  # queries are checked on any transition
    assert not m._subs  # every wait resolved and unindexed


def test_when_next_active(run):
    async def body(kit):
        m = Machine(norels())
        w = m.when_next_active("A")
        kit.spawn(_add_soon, kit, m, "A")
        await w
        assert m.tick("A") == 1
        w = m.when_next_active("A")  # active: the next activation, not the current one
        m.remove("A")
        assert not w.done
        kit.spawn(_add_soon, kit, m, "A")
        await w
        assert m.tick("A") == 3

    run(body)
