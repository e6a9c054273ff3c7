"""States, schemas and the helpers that compose them.

A schema is a plain ``dict[str, State]``. It is data, not behaviour: the machine sanitises and
validates it once, at construction, so that relation resolution can trust it on every mutation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum

__all__ = [
    "State",
    "Schema",
    "Relation",
    "EXCEPTION",
    "ANY",
    "merge",
    "extend",
    "sanitize",
    "validate",
    "states_by_tag",
    "names_of",
]

EXCEPTION = "Exception"
ANY = "Any"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class Relation(IntEnum):
    """Relation kinds, numbered as on the reference's wire (telemetry, dumps)."""

    AFTER = 0
    ADD = 1
    REQUIRE = 2
    REMOVE = 3

    def __str__(self) -> str:
        return self.name.lower()


def flat_names(states: tuple[str | Iterable[str], ...]) -> Iterable[str]:
    """The names in ``states``, a tuple of names and iterables of names (``when("A", ["B"])``)."""
    for s in states:
        if isinstance(s, str):
            yield s
        else:
            yield from s


def names_of(states: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise a state argument: one name or an iterable of names, de-duplicated in order."""
    if states is None:
        return ()
    if isinstance(states, str):
        return (states,)
    seen: dict[str, None] = {}
    for s in states:
        if not isinstance(s, str):
            raise TypeError(f"state names must be str, got {type(s).__name__}: {s!r}")
        seen[s] = None
    return tuple(seen)


@dataclass(frozen=True, slots=True, init=False)
class State:
    """One state's definition: two flags, four relations and free-form tags.

    Relation lists accept any iterable of names (or a single name) and are stored as tuples, so a
    ``State`` is immutable and can be shared between schemas safely.
    """

    require: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    auto: bool = False
    multi: bool = False
    tags: tuple[str, ...] = field(default=())

    def __init__(
        self,
        require: str | Iterable[str] = (),
        add: str | Iterable[str] = (),
        remove: str | Iterable[str] = (),
        after: str | Iterable[str] = (),
        auto: bool = False,
        multi: bool = False,
        tags: str | Iterable[str] = (),
    ) -> None:
        # frozen: fields are set once, here, as de-duplicated tuples
        set_ = object.__setattr__
        set_(self, "require", names_of(require))
        set_(self, "add", names_of(add))
        set_(self, "remove", names_of(remove))
        set_(self, "after", names_of(after))
        set_(self, "auto", auto)
        set_(self, "multi", multi)
        set_(self, "tags", names_of(tags))

    def extend(self, overlay: State) -> State:
        """Union of relation lists (this ++ overlay); ``auto``/``multi`` only switched on."""
        return State(
            require=self.require + overlay.require,
            add=self.add + overlay.add,
            remove=self.remove + overlay.remove,
            after=self.after + overlay.after,
            auto=self.auto or overlay.auto,
            multi=self.multi or overlay.multi,
            tags=self.tags + overlay.tags,
        )

    def set(self, auto: bool, multi: bool, **relations: Iterable[str]) -> State:
        """Replace the given relation lists and set both flags explicitly."""
        return replace(self, auto=auto, multi=multi, **relations)  # type: ignore[arg-type]

    def set_rels(self, **relations: Iterable[str]) -> State:
        """Replace the given relation lists, keeping the flags."""
        return replace(self, **relations)  # type: ignore[arg-type]

    def relations(self) -> dict[Relation, tuple[str, ...]]:
        return {
            Relation.ADD: self.add,
            Relation.REQUIRE: self.require,
            Relation.REMOVE: self.remove,
            Relation.AFTER: self.after,
        }

    def to_dict(self) -> dict:
        """Plain-data form (CBOR, telemetry, dumps)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> State:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


Schema = dict[str, State]


def merge(*schemas: Mapping[str, State]) -> Schema:
    """Whole-state override, later wins: how a schema inherits another (Foo extends Shared)."""
    out: Schema = {}
    for s in schemas:
        out.update(s)
    return out


def extend(base: Mapping[str, State], overlay: Mapping[str, State]) -> Schema:
    """Like :func:`merge`, but a state present in both is :meth:`State.extend`-ed."""
    out = dict(base)
    for name, st in overlay.items():
        out[name] = out[name].extend(st) if name in out else st
    return out


def states_by_tag(schema: Mapping[str, State], tag: str) -> list[str]:
    """States tagged exactly ``tag`` or ``tag:value``."""
    prefix = tag + ":"
    return [n for n, s in schema.items() if any(t == tag or t.startswith(prefix) for t in s.tags)]


def sanitize(schema: Mapping[str, State]) -> Schema:
    """Drop self-removals, Remove entries also in Add (Add wins) and self-``After``.

    These are harmless mistakes with one obvious meaning; everything that has no obvious meaning
    is left for :func:`validate` to reject.
    """
    out: Schema = {}
    for name, st in schema.items():
        if not isinstance(st, State):
            raise ValueError(f"schema: state {name!r} is a {type(st).__name__}, not a State")
        remove = tuple(r for r in st.remove if r != name and r not in st.add)
        after = tuple(a for a in st.after if a != name)
        out[name] = (
            replace(st, remove=remove, after=after)
            if (remove != st.remove or after != st.after)
            else st
        )
    if EXCEPTION not in out:
        out[EXCEPTION] = State(multi=True)
    return out


def validate(schema: Mapping[str, State]) -> None:
    """Raise ``ValueError`` naming the first problem: a bad name, a relation to an unknown
    state, a state that requires and removes the same state, or a Require cycle."""
    for name, st in schema.items():
        if not isinstance(st, State):
            raise ValueError(f"schema: state {name!r} is a {type(st).__name__}, not a State")
        if not isinstance(name, str) or not _NAME.match(name) or name == ANY:
            raise ValueError(
                f"schema: bad state name {name!r} (want CamelCase letters/digits/_, not 'Any')"
            )
        for rel, targets in st.relations().items():
            unknown = [t for t in targets if t not in schema]
            if unknown:
                raise ValueError(
                    f"schema: state {name} has {rel} relation to unknown state(s) "
                    f"{', '.join(unknown)}"
                )
        both = [r for r in st.require if r in st.remove]
        if both:
            raise ValueError(f"schema: state {name} both requires and removes {', '.join(both)}")
    cycle = _require_cycle(schema)
    if cycle:
        raise ValueError(f"schema: Require cycle {' -> '.join(cycle)}")


def _require_cycle(schema: Mapping[str, State]) -> list[str] | None:
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(schema, white)
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = grey
        path.append(n)
        for r in schema[n].require:
            if color.get(r) == grey:
                return path[path.index(r) :] + [r]
            if color.get(r) == white:
                found = visit(r)
                if found:
                    return found
        path.pop()
        color[n] = black
        return None

    for n in schema:
        if color[n] == white:
            found = visit(n)
            if found:
                return found
    return None
