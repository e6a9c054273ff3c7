"""Schemas: sanitisation, validation, composition, the state index and replacement (spec §1,
§5.5, scenarios 53, 56, 60)."""

from __future__ import annotations

import pytest
from conftest import norels

from machines import Machine, State, Tracer, extend, merge, states_by_tag


def test_60_sanitisation():
    m = Machine(
        {
            "A": State(remove=["A", "B", "C"], add=["C"], after=["A"]),
            "B": State(),
            "C": State(),
        }
    )
    a = m.schema["A"]
    assert a.remove == ("B",)
    assert a.add == ("C",)
    assert a.after == ()


def test_60_extend_and_set():
    base = State(auto=True, remove=["A"])
    ext = base.extend(State(remove=["C"]))
    assert ext.remove == ("A", "C")
    assert ext.auto is True
    assert base.extend(State(multi=True)).multi is True
    assert State(multi=True).extend(State()).multi is True  # flags are only switched on

    replaced = base.set(auto=False, multi=True, remove=["C"])
    assert replaced.remove == ("C",)
    assert replaced.auto is False and replaced.multi is True
    kept = base.set_rels(remove=["C"])
    assert kept.remove == ("C",) and kept.auto is True


def test_exception_injected_or_kept():
    m = Machine({"A": State()})
    assert m.schema["Exception"].multi is True
    m = Machine({"A": State(), "Exception": State()})
    assert m.schema["Exception"].multi is False  # a user's Exception is kept as is


def test_state_relations_accept_one_name_or_iterables():
    assert State(require="A").require == ("A",)
    assert State(add=("A", "B", "A")).add == ("A", "B")


def test_merge_and_extend_schemas():
    shared = {"Start": State(), "Ready": State(require=["Start"])}
    foo = merge(shared, {"Ready": State(), "Foo": State(require=["Ready"])})
    assert foo["Ready"].require == ()  # whole-state override, later wins
    assert list(foo) == ["Start", "Ready", "Foo"]
    ext = extend(shared, {"Ready": State(add=["Foo"]), "Foo": State()})
    assert ext["Ready"].require == ("Start",) and ext["Ready"].add == ("Foo",)
    assert shared["Ready"].add == ()  # inputs untouched


def test_states_by_tag():
    schema = {"A": State(tags=["ArgsReq"]), "B": State(tags=["group:x"]), "C": State()}
    assert states_by_tag(schema, "ArgsReq") == ["A"]
    assert states_by_tag(schema, "group") == ["B"]


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"A": State(require=["Ghost"])}, "Ghost"),
        ({"A": State(add=["Ghost"])}, "Ghost"),
        ({"A": State(remove=["Ghost"])}, "Ghost"),
        ({"A": State(after=["Ghost"])}, "Ghost"),
        ({"bad name": State()}, "bad name"),
        ({"9Lives": State()}, "9Lives"),
        ({"": State()}, "bad state name"),
        ({"Any": State()}, "Any"),
        ({"A": State(require=["B"]), "B": State(require=["A"])}, "Require cycle"),
        ({"A": State(require=["A"])}, "Require cycle"),
        ({"A": State(require=["B"], remove=["B"]), "B": State()}, "requires and removes B"),
        ({"A": "not a State"}, "not a State"),
    ],
)
def test_schema_validation(schema, fragment):
    with pytest.raises(ValueError, match=fragment):
        Machine(schema)


def test_require_cycle_names_the_path():
    with pytest.raises(ValueError) as info:
        Machine({"A": State(require=["B"]), "B": State(require=["C"]), "C": State(require=["A"])})
    assert "A -> B -> C -> A" in str(info.value)


# -- 53: the state index --------------------------------------------------------------------------


def test_53_verify_states():
    m = Machine(norels())
    with pytest.raises(ValueError, match="Err"):
        m.verify_states(["A", "A", "B", "Err"])
    with pytest.raises(ValueError, match="missing"):
        m.verify_states(["A", "A"])
    with pytest.raises(ValueError, match="C, D, Exception"):
        m.verify_states(["A", "B"])
    assert m.state_names == ["A", "B", "C", "D", "Exception"]  # unchanged
    assert not m.has(["A", "Err"])
    assert m.has(["A", "A", "B"])
    assert m.has("A", "B")

    m.add("C")
    m.verify_states(["Exception", "D", "C", "B", "A", "A"])
    assert m.state_names == ["Exception", "D", "C", "B", "A"]
    assert m.time() == [0, 0, 1, 0, 0]  # clocks follow the new order
    assert m.index("C") == 2


def test_53_names_option():
    m = Machine(norels(), names=["D", "C", "B", "A", "Exception"])
    assert m.state_names == ["D", "C", "B", "A", "Exception"]
    with pytest.raises(ValueError, match="missing"):
        Machine(norels(), names=["A"])


def test_verify_states_notifies_tracers():
    seen = []

    class T(Tracer):
        def verify_states(self, mach):
            seen.append(mach.state_names)

    m = Machine(norels(), tracers=[T()])
    m.verify_states(["B", "A", "C", "D", "Exception"])
    assert seen == [["B", "A", "C", "D", "Exception"]]


# -- 56: schema replacement -----------------------------------------------------------------------


def test_56_set_schema():
    seen = []

    class T(Tracer):
        def schema_change(self, mach, old):
            seen.append(sorted(old))

    m = Machine(norels(), tracers=[T()])
    m.set(["A", "C"])
    m.set_schema(
        {
            "A": State(multi=True),
            "B": State(remove=["C"]),
            "C": State(),
            "D": State(add=["E"]),
            "E": State(),
        }
    )
    assert m.state_names == ["A", "B", "C", "D", "Exception", "E"]
    assert m.clock() == {"A": 1, "B": 0, "C": 1, "D": 0, "Exception": 0, "E": 0}
    assert seen == [["A", "B", "C", "D", "Exception"]]
    m.set(["A", "B", "D"])
    assert set(m.active_states) == {"A", "B", "D", "E"}
    assert m.tick("A") == 3  # A is Multi now and was called


def test_set_schema_refusals():
    m = Machine(norels())
    with pytest.raises(ValueError, match="drops state"):
        m.set_schema({"A": State(), "B": State()})
    with pytest.raises(ValueError, match="Ghost"):
        m.set_schema(norels(A=State(require=["Ghost"])))
    errors = []

    class H:
        def AState(self, e):
            try:
                m.set_schema(norels())
            except RuntimeError as err:
                errors.append(str(err))

    m.handlers_bind(H())
    m.add("A")
    assert len(errors) == 1 and "during a transition" in errors[0]
    assert m.state_names == ["A", "B", "C", "D", "Exception"]


def test_set_schema_with_names():
    m = Machine(norels())
    m.add("A")
    m.set_schema({**norels(), "E": State()}, ["E", "Exception", "D", "C", "B", "A"])
    assert m.state_names == ["E", "Exception", "D", "C", "B", "A"]
    assert m.tick("A") == 1
