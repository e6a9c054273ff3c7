"""The REPL's commands: each a click command (parsing, usage, help) run as a trio coroutine.

The set follows the reference's arpc tool (spec: arpc.md §6.3), with ``group-remove`` removing
(the reference adds) and two additions: ``watch`` and a working ``script``. Each command gets the
`Session` first, then its parsed parameters; it prints through ``session.out`` and raises
`CommandError` for anything the user can fix.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import click
import trio

from machines.rpc.errors import RemoteError, RpcError
from machines.rpc.netmach import NetMach

from .peers import NO_ANSWER, Peer
from .session import CommandError, Outcome, Session

#: every command by name, in the order `help` lists them
COMMANDS: dict[str, click.Command] = {}

#: what each positional argument completes to; the last kind repeats
POSITIONALS: dict[str, tuple[str, ...]] = {}

#: what an option's value completes to, by click parameter name
OPTION_VALUES = {
    "active": "any-state",
    "inactive": "any-state",
    "mtime_states": "any-state",
    "state": "state",
    "arg": "arg",
}

#: how `help` lists them: looking first, then changing, then waiting, then the REPL itself
HELP_ORDER = ("list", "status", "mach", "time", "inspect", "add", "remove", "group-add",
              "group-remove", "when", "when-not", "when-time", "watch", "connect", "script",
              "help", "exit")  # fmt: skip

_SETTINGS = {"help_option_names": [], "max_content_width": 100}


def command(name: str, *positionals: str) -> Callable[[Callable[..., Awaitable[None]]], Any]:
    """Register an async function as the REPL command `name` (its docstring is the help)."""

    def deco(fn: Callable[..., Awaitable[None]]) -> click.Command:
        cmd = click.command(name, context_settings=_SETTINGS)(fn)
        COMMANDS[name] = cmd
        POSITIONALS[name] = positionals
        return cmd

    return deco


async def run_command(session: Session, words: list[str]) -> None:
    """Parse `words` (command name first) and run the command."""
    name, args = words[0], words[1:]
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise CommandError(f"unknown command {name!r} (try: help)")
    if "--help" in args:
        session.out.result(usage(cmd))
        return
    try:
        ctx = cmd.make_context(name, list(args))
    except click.UsageError as err:
        raise CommandError(f"{name}: {err.format_message()}") from None
    assert cmd.callback is not None
    await cmd.callback(session, **ctx.params)


def usage(cmd: click.Command) -> str:
    with click.Context(cmd, info_name=cmd.name, **cmd.context_settings) as ctx:
        return cmd.get_help(ctx)


# --- shared pieces ---------------------------------------------------------------------------


def _filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("-a", "--active", multiple=True, metavar="STATE", help="STATE is active"),
        click.option("-i", "--inactive", multiple=True, metavar="STATE", help="STATE is not"),
        click.option("-t", "--mtime-min", type=int, metavar="N", help="time sum at least N"),
        click.option("-T", "--mtime-max", type=int, metavar="N", help="time sum at most N"),
        click.option(
            "-m", "--mtime-states", multiple=True, metavar="STATE", help="sum only these for -t/-T"
        ),
        click.option("-r", "--id-regexp", metavar="RE", help="id matches RE"),
        click.option("-I", "--id-partial", metavar="TEXT", help="id contains TEXT"),
        click.option("-p", "--id-prefix", metavar="TEXT", help="id starts with TEXT"),
        click.option("-s", "--id-suffix", metavar="TEXT", help="id ends with TEXT"),
        click.option("-f", "--from", "from_", type=int, metavar="N", help="start at the Nth"),
        click.option("-l", "--limit", type=int, metavar="N", help="at most N machines"),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _arg_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--val", multiple=True, metavar="VALUE", help="its value (repeat)")(fn)
    return click.option("--arg", multiple=True, metavar="NAME", help="an argument (repeat)")(fn)


def _filter(peers: Iterable[Peer], f: dict[str, Any]) -> list[Peer]:
    """The peers that pass the list filters (a machine lacking a named state does not)."""
    regexp = None
    if f.get("id_regexp"):
        try:
            regexp = re.compile(f["id_regexp"])
        except re.error as err:
            raise CommandError(f"bad --id-regexp {f['id_regexp']!r}: {err}") from None
    out = []
    for p in peers:
        name, net = p.name, p.netmach
        if regexp is not None and not regexp.search(name):
            continue
        if f.get("id_partial") and f["id_partial"] not in name:
            continue
        if f.get("id_prefix") and not name.startswith(f["id_prefix"]):
            continue
        if f.get("id_suffix") and not name.endswith(f["id_suffix"]):
            continue
        active, inactive = list(f.get("active") or ()), list(f.get("inactive") or ())
        if active and not (p.has(*active) and net.is_active(active)):
            continue
        if inactive and not (p.has(*inactive) and net.not_active(inactive)):
            continue
        if f.get("mtime_min") is not None or f.get("mtime_max") is not None:
            states = list(f.get("mtime_states") or ()) or None
            if states is not None and not p.has(*states):
                continue
            mtime = p.time_sum(states)
            if f.get("mtime_min") is not None and mtime < f["mtime_min"]:
                continue
            if f.get("mtime_max") is not None and mtime > f["mtime_max"]:
                continue
        out.append(p)
    start = max((f.get("from_") or 1) - 1, 0)
    out = out[start:]
    if f.get("limit") is not None:
        out = out[: max(f["limit"], 0)]
    return out


def _args(names: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str] | None:
    if len(names) != len(values):
        raise CommandError(
            f"{len(names)} --arg but {len(values)} --val: each --arg needs one --val"
        )
    return dict(zip(names, values, strict=True)) or None


def _check_states(peer: Peer, states: Iterable[str]) -> list[str]:
    states = list(states)
    unknown = [s for s in states if not peer.netmach.has(s)]
    if unknown:
        which = "state" if len(unknown) == 1 else "states"
        raise CommandError(
            f"unknown {which} {', '.join(unknown)} for {peer.id} "
            f"(states: {' '.join(peer.netmach.state_names)})"
        )
    return states


def _check_args(peer: Peer, args: dict[str, str] | None) -> None:
    if args and peer.arg_names is not None:
        unknown = [a for a in args if a not in peer.arg_names]
        if unknown:
            known = ", ".join(peer.arg_names) or "none"
            raise CommandError(
                f"unknown argument {', '.join(unknown)} for {peer.id} (known: {known})"
            )


def _result_name(result: Any) -> str:
    value = int(result)
    return {0: "Executed", 1: "Canceled"}.get(value, "Queued")


def _outcome(
    s: Session, peer: Peer, result: Any, states: list[str], args: dict[str, str] | None
) -> str:
    """``Executed``, ``Queued``, or ``Canceled`` with why (when the endpoint said) and the
    arguments of the called states that were not given (a handler that refuses a message
    without its text is the usual reason). A Canceled answer makes the command end Canceled
    (a one-shot exits 3)."""
    name = _result_name(result)
    if name != "Canceled":
        return name
    s.canceled()
    if peer.cancel_reason:
        name += f" ({peer.cancel_reason})"
    missing = [
        a for a in peer.arg_names or () if a.split(".", 1)[0] in states and a not in (args or {})
    ]
    if missing:
        name += "; try " + " ".join(f"--arg {a} --val VALUE" for a in missing)
    return name


async def _mutate(peer: Peer, kind: str, states: list[str], args: dict[str, str] | None) -> Any:
    _check_states(peer, states)
    _check_args(peer, args)
    peer.cancel_reason = ""
    try:
        return await getattr(peer.netmach, kind)(states, args)
    except (RpcError, RemoteError) as err:
        raise CommandError(f"{peer.name}: {err}") from None


async def _until(peer: Peer, awaitable: Awaitable[Any]) -> None:
    """Await `awaitable`, or fail if the peer's connection drops first."""
    lost = ""
    async with trio.open_nursery() as nursery:

        async def wait() -> None:
            await awaitable
            nursery.cancel_scope.cancel()

        async def watch_lost() -> None:
            nonlocal lost
            lost = await peer.wait_lost()
            nursery.cancel_scope.cancel()

        nursery.start_soon(wait)
        nursery.start_soon(watch_lost)
    if lost:
        raise CommandError(lost)


def _ticks(peer: Peer, states: Iterable[str]) -> str:
    return " ".join(f"{s}:{peer.netmach.tick(s)}" for s in states)


# --- mutations -------------------------------------------------------------------------------


@command("add", "mach", "add-state")
@click.argument("mach")
@click.argument("states", nargs=-1, required=True)
@_arg_options
async def add(s: Session, mach: str, states: tuple[str, ...], arg, val) -> None:
    """Add STATES to machine MACH (`.` = the first connected), with --arg NAME --val VALUE.

    Answers Executed, Queued or Canceled; Canceled says why when the machine knows (the
    handler that refused it, or the relations) and names the arguments of STATES that were
    not given (Tab completes --arg names).
    """
    peer, args = s.peer(mach), _args(arg, val)
    result = await _mutate(peer, "add", list(states), args)
    s.out.result(_outcome(s, peer, result, list(states), args))


@command("remove", "mach", "remove-state")
@click.argument("mach")
@click.argument("states", nargs=-1, required=True)
@_arg_options
async def remove(s: Session, mach: str, states: tuple[str, ...], arg, val) -> None:
    """Remove STATES from machine MACH, with --arg NAME --val VALUE."""
    peer, args = s.peer(mach), _args(arg, val)
    result = await _mutate(peer, "remove", list(states), args)
    s.out.result(_outcome(s, peer, result, list(states), args))


async def _group(s: Session, kind: str, states: list[str], args, filters) -> None:
    candidates = _filter(s.connected(), filters)
    targets = [p for p in candidates if p.has(*states)]
    if not targets:
        raise CommandError(f"no connected machine matches and has {' '.join(states)}")
    counts = {"Executed": 0, "Queued": 0, "Canceled": 0, "Failed": 0}
    why: dict[str, int] = {}  # each distinct cancel, with how many machines said it

    async def one(peer: Peer) -> None:
        try:
            result = await _mutate(peer, kind, states, args)
        except CommandError as err:
            counts["Failed"] += 1
            s.out.error(str(err))
            return
        counts[_result_name(result)] += 1
        if _result_name(result) == "Canceled":
            outcome = _outcome(s, peer, result, states, args)
            why[outcome] = why.get(outcome, 0) + 1

    async with trio.open_nursery() as nursery:
        for peer in targets:
            nursery.start_soon(one, peer)
    text = ", ".join(f"{k}: {v}" for k, v in counts.items() if v or k != "Failed")
    skipped = len(list(s.peers)) - len(targets)
    s.out.result(text + (f" (skipped {skipped})" if skipped else ""))
    for outcome, n in sorted(why.items()):
        if outcome != "Canceled":  # nothing more to say
            s.out.result(f"{n} x {outcome}")
    if counts["Failed"]:
        raise CommandError(f"{kind} failed on {counts['Failed']} of {len(targets)} machines")


@command("group-add", "any-state")
@click.argument("states", nargs=-1, required=True)
@_filter_options
@_arg_options
async def group_add(s: Session, states: tuple[str, ...], arg, val, **filters) -> None:
    """Add STATES to every connected machine that has them and passes the filters."""
    await _group(s, "add", list(states), _args(arg, val), filters)


@command("group-remove", "any-state")
@click.argument("states", nargs=-1, required=True)
@_filter_options
@_arg_options
async def group_remove(s: Session, states: tuple[str, ...], arg, val, **filters) -> None:
    """Remove STATES from every connected machine that has them and passes the filters."""
    await _group(s, "remove", list(states), _args(arg, val), filters)


# --- waiting ---------------------------------------------------------------------------------


@command("when", "mach", "inactive-state")
@click.argument("mach")
@click.argument("states", nargs=-1, required=True)
async def when(s: Session, mach: str, states: tuple[str, ...]) -> None:
    """Wait until all STATES of MACH are active; print their ticks."""
    peer = s.peer(mach)
    names = _check_states(peer, states)
    await _until(peer, peer.netmach.when(names))
    s.out.result(_ticks(peer, names))


@command("when-not", "mach", "active-state")
@click.argument("mach")
@click.argument("states", nargs=-1, required=True)
async def when_not(s: Session, mach: str, states: tuple[str, ...]) -> None:
    """Wait until no STATE of MACH is active; print their ticks."""
    peer = s.peer(mach)
    names = _check_states(peer, states)
    await _until(peer, peer.netmach.when_not(names))
    s.out.result(_ticks(peer, names))


@command("when-time", "mach")
@click.argument("mach")
@click.option("-s", "--state", multiple=True, required=True, metavar="STATE", help="(repeat)")
@click.option("-t", "--tick", multiple=True, required=True, type=int, metavar="N", help="(repeat)")
async def when_time(s: Session, mach: str, state: tuple[str, ...], tick: tuple[int, ...]) -> None:
    """Wait until each -s STATE of MACH reaches its -t TICK; print their ticks."""
    if len(state) != len(tick):
        raise CommandError(f"{len(state)} -s but {len(tick)} -t: each state needs one tick")
    peer = s.peer(mach)
    names = _check_states(peer, state)
    await _until(peer, peer.netmach.when_time(names, list(tick)))
    s.out.result(_ticks(peer, names))


def _describe(net: NetMach, before: list[int], after: list[int], states: set[str]) -> str:
    """One clock update: ``+A:1`` activated, ``-B:4`` deactivated, ``C:5->7`` re-entered."""
    names = net.state_names
    parts = []
    for i, name in enumerate(names):
        old = before[i] if i < len(before) else 0
        new = after[i] if i < len(after) else 0
        if old == new or (states and name not in states):
            continue
        if new % 2 and not old % 2:
            parts.append(f"+{name}:{new}")
        elif old % 2 and not new % 2:
            parts.append(f"-{name}:{new}")
        else:
            parts.append(f"{name}:{old}->{new}")
    if not parts:
        return ""
    return f"{net.remote_id} {' '.join(parts)}"


@command("watch", "mach", "state")
@click.argument("mach")
@click.argument("states", nargs=-1)
async def watch(s: Session, mach: str, states: tuple[str, ...]) -> None:
    """Print each change of MACH (of STATES only, if given) as it arrives, until Ctrl-C."""
    peer = s.peer(mach)
    only = set(_check_states(peer, states))

    def changed(net: NetMach, before: list[int], after: list[int]) -> None:
        # called by the client's receive task, one update after the other: print at once
        if line := _describe(net, before, after, only):
            s.out.result(line)

    unsubscribe = peer.netmach.on_change(changed)
    s.out.result(f"watching {peer.id} {peer.netmach} (Ctrl-C stops)")
    lost = ""
    try:
        with s.interruptible() as scope:
            lost = await peer.wait_lost()
    finally:
        unsubscribe()
    if lost:
        raise CommandError(lost)
    if scope.cancelled_caught:
        s.out.result(f"stopped watching {peer.id}")


# --- checking --------------------------------------------------------------------------------


@command("mach", "mach")
@click.argument("mach")
@click.option("-a", "--all", "all_", is_flag=True, help="inactive states too")
async def mach(s: Session, mach: str, all_: bool) -> None:
    """Print the active states of MACH with their ticks (--all: every state)."""
    net = s.peer(mach).netmach
    s.out.result(net.string_all() if all_ else str(net))


@command("time", "mach", "state")
@click.argument("mach")
@click.argument("states", nargs=-1)
@click.option("--sum", "sum_", is_flag=True, help="print the sum of the ticks")
async def time(s: Session, mach: str, states: tuple[str, ...], sum_: bool) -> None:
    """Print the clock of MACH (of STATES, if given): each state's tick, or their --sum."""
    peer = s.peer(mach)
    names = _check_states(peer, states) or peer.netmach.state_names
    if sum_:
        s.out.result(str(peer.time_sum(names)))
    else:
        s.out.result(_ticks(peer, names))


@command("inspect", "mach", "state")
@click.argument("mach")
@click.argument("states", nargs=-1)
async def inspect(s: Session, mach: str, states: tuple[str, ...]) -> None:
    """Print the states of MACH with their ticks, flags and relations."""
    peer = s.peer(mach)
    names = _check_states(peer, states) or None
    s.out.result(f"mach://{peer.id}\n{peer.netmach.inspect(names).rstrip()}")


# --- the REPL itself -------------------------------------------------------------------------


@command("list")
@_filter_options
@click.option("--states/--no-states", default=True, help="print the active states")
@click.option("-Z", "--states-all", is_flag=True, help="print every state")
@click.option("--disconn/--no-disconn", default=True, help="list disconnected machines")
async def list_(s: Session, states: bool, states_all: bool, disconn: bool, **filters) -> None:
    """List the machines, their connection and their states; filters narrow the list.

    Each machine is two lines: `N. ID tTIME` (TIME: the sum of its ticks), then `C`onnected
    or `D`isconnected, the remote machine `R`eady or only `S`tarted (`-`: neither), and its
    active states.
    """
    peers = [p for p in s.peers if disconn or p.connected]
    peers = _filter(peers, filters)
    if not peers:
        s.out.result("no machines")
        return
    lines = []
    for n, p in enumerate(peers, start=max(filters.get("from_") or 1, 1)):
        net = p.netmach
        lines.append(f"{n}. {p.name} t{p.time_sum()}" if net.state_names else f"{n}. {p.name}")
        remote = "-"
        if net.has("Ready") and net.is_active("Ready"):
            remote = "R"
        elif net.has("Start") and net.is_active("Start"):
            remote = "S"
        marks = ("C" if p.connected else "D") + remote
        if not net.state_names:
            detail = f"{p.addr}: {p.error or 'no handshake yet: ' + NO_ANSWER}"
        elif states_all:
            detail = net.string_all()
        elif states:
            detail = str(net)
        else:
            detail = ""
        lines.append(f"   {marks}: {detail}" if detail else f"   {marks}")
    s.out.result("\n".join(lines))


@command("status")
async def status(s: Session) -> None:
    """Count the machines by connection status."""
    counts = {"Connected": 0, "Connecting": 0, "Disconnected": 0}
    for p in s.peers:
        counts[p.status] += 1
    s.out.result(
        "\n".join(f"{k}: {v}" for k, v in counts.items()) + f"\nTotal: {sum(counts.values())}"
    )


@command("connect")
async def connect(s: Session) -> None:
    """Drop every connection and connect again (re-reading --dir).

    An error unless every machine connected (a one-shot exits 1, as with --req-all).
    """
    n = s.reconnect()
    await s.peers.settle(s.connect_timeout)
    connected = len(s.connected())
    if n == 0:
        raise CommandError("connected to 0 of 0: no machine addresses (ADDR, --file, --dir)")
    if connected < n:
        # its job is connecting: partly done is not done, which a script tells by the code
        missing = ", ".join(p.name for p in s.peers if not p.connected)
        raise CommandError(f"connected to {connected} of {n}; not: {missing}")
    s.out.result(f"connected to {connected} of {n}")


@command("script", "file")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
async def script(s: Session, file: Path) -> None:
    """Run the commands in FILE, one a line (# comments), stopping at the first error.

    A Canceled answer does not stop it; the script then ends Canceled (a one-shot exits 3).
    """
    if s.script_depth >= 8:
        raise CommandError(f"script {file}: nested too deep")
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeError) as err:
        raise CommandError(f"script: cannot read {file}: {err}") from None
    s.script_depth += 1
    try:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if await s.run(line) in (Outcome.ERROR, Outcome.INTERRUPTED):
                raise CommandError(f"script {file}:{lineno}: stopped at this error")
            if s.exit_requested:
                return
    finally:
        s.script_depth -= 1


@command("help", "command")
@click.argument("name", required=False)
async def help_(s: Session, name: str | None) -> None:
    """List the commands, or explain one."""
    if name is not None:
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise CommandError(f"unknown command {name!r} (try: help)")
        s.out.result(usage(cmd))
        return
    width = max(len(n) for n in COMMANDS)
    names = [*HELP_ORDER, *(n for n in COMMANDS if n not in HELP_ORDER)]
    lines = [f"{n:<{width}}  {COMMANDS[n].get_short_help_str(limit=90)}" for n in names]
    lines.append("MACH is a machine id, or `.` for the first connected machine.")
    lines.append("`help COMMAND` or `COMMAND --help` explains one.")
    s.out.result("\n".join(lines))


@command("exit")
async def exit_(s: Session) -> None:
    """Leave the REPL (also Ctrl-D)."""
    s.exit_requested = True
