"""Schema groups (C.5 #3, #12): the tree's group selector and the ``group`` filter.

Why a module: the tree (which states it lists), the session's navigation (which transitions
the ``group`` filter lets through) and the keys share one reading of a schema's groups.
A machine reports its groups in its schema message (``DbgMsgStruct.groups``: a name -> state
indexes); one without groups has only ``all``.
"""

from __future__ import annotations

from dbg.model import DbgMsgStruct

__all__ = ["ALL", "group_names", "group_states", "next_group"]

ALL = ""  # the selector's "all": no group restricts anything


def group_names(schema: DbgMsgStruct) -> list[str]:
    """The machine's groups in display order (``groups_order``, then the rest sorted)."""
    order = [g for g in schema.groups_order if g in schema.groups]
    return order + sorted(set(schema.groups) - set(order))


def group_states(schema: DbgMsgStruct, group: str) -> frozenset[int] | None:
    """State indexes of ``group``; None for ``all`` or a group this machine lacks."""
    if group == ALL:
        return None
    idxs = schema.groups.get(group)
    return None if idxs is None else frozenset(idxs)


def next_group(schema: DbgMsgStruct, group: str) -> str:
    """The selector's next choice: all -> each group -> all."""
    names = [ALL, *group_names(schema)]
    k = names.index(group) if group in names else 0
    return names[(k + 1) % len(names)]
