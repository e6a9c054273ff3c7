"""``am dbg``: the debugger's terminal UI, or with ``--headless`` the collector alone."""

from __future__ import annotations

import gc
import math
import re
import signal
import sys
from dataclasses import astuple
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import typer

from cli.console import fail, say
from cli.listen import run_listening
from machines.addr import parse_hostport

DUMP_NAME = "am-dbg-dump.cbor.br"


def _print_version(value: bool) -> None:
    if value:
        from cli.main import _print_version as print_version

        print_version(value)


def dbg(
    mach_url: str | None = typer.Argument(
        None, help="Open there: mach://ID/TX/STEP (TX and STEP optional; a bare id works too)."
    ),
    listen_addr: str = typer.Option(
        "localhost:6831",
        "--listen-addr",
        "-l",
        help="Where machines send telemetry (TCP, HOST:PORT); set AM_DBG_ADDR to it. "
        "-1 = no servers (imported data only).",
    ),
    ws_port: int = typer.Option(
        -1,
        "--ws-port",
        help="WebSocket port for browser machines (path /dbg.ws); default: listen port + 1, "
        "0 = any free port.",
        show_default=False,  # -1 stands for "listen port + 1", which the help says
    ),
    headless: bool = typer.Option(
        False,
        "--headless",
        help="Collect without a UI until Ctrl-C / SIGTERM, then write the dump.",
    ),
    out_dir: Path = typer.Option(
        Path("."), "--dir", "-d", help="Where dumps, exports and diagrams are written."
    ),
    dump_interval: float = typer.Option(
        0.0, "--dump-interval", help="Headless: also write the dump every SECONDS (atomically)."
    ),
    import_data: str | None = typer.Option(
        None,
        "--import-data",
        "-i",
        help="Load a dump (this project's or the Go tool's), a path or an http(s) URL.",
    ),
    rotate_txs: int = typer.Option(
        0,
        "--rotate-txs",
        help="Headless: rotate, writing the history to a new timestamped dump every N "
        "transitions and freeing it from memory (0 = off).",
        min=0,
    ),
    rotate_secs: float = typer.Option(
        0.0,
        "--rotate-secs",
        help="Headless: rotate every SECONDS too (0 = off).",
        min=0,
    ),
    max_mem: int = typer.Option(
        0,
        "--max-mem",
        help="Memory limit in MB (0 = none): over it, log lines above level 2 older than "
        "--log-ops-ttl go first, then every machine's oldest history (checked every second "
        "and every 16k transitions).",
        min=0,
    ),
    log_ops_ttl: str = typer.Option(
        "1h",
        "--log-ops-ttl",
        help="With --max-mem: how old log lines above level 2 (ops, debug, trace) get "
        "before they may go, e.g. 1h, 30m, 90s, 1h30m (0 = keep them: cut the history "
        "instead).",
    ),
    fwd_data: list[str] = typer.Option(
        [],
        "--fwd-data",
        "-f",
        help="Forward all incoming telemetry to another am dbg at HOST:PORT (repeatable): "
        "it shows the same machines. Startup fails if a target cannot be dialed.",
    ),
    select_connected: bool = typer.Option(
        False,
        "--select-connected",
        "-c",
        help="Select a newly connected machine when it is the only connected one.",
    ),
    clean_on_connect: bool = typer.Option(
        True,
        "--clean-on-connect/--no-clean-on-connect",
        help="When a machine connects and every known machine is disconnected (imported "
        "ones too), drop them first. Headless writes them to a timestamped dump before.",
    ),
    view: str = typer.Option(
        "tree-log",
        "--view",
        "-v",
        help="Initial view: tree-log, tree-matrix, tree-rain, "
        "matrix or matrix-rain (Alt+M cycles).",
    ),
    view_theme: str = typer.Option("dark", "--view-theme", help="Colours: dark or light."),
    view_reader: bool = typer.Option(
        True,
        "--view-reader/--no-view-reader",
        "-r",
        help="Show the log reader under the log (Alt+O toggles it).",
    ),
    view_narrow: bool = typer.Option(
        False,
        "--view-narrow",
        help="The narrow layout at any width: no machine list (as under 100 columns), for "
        "tiled dashboards.",
    ),
    view_timelines: int = typer.Option(
        2,
        "--view-timelines",
        help="Timelines under the panes: 2 both (transitions and steps), 1 the transitions' "
        "only, 0 none; their rows go to the panes (toolbar 'timelines' or Alt+T cycles).",
    ),
    view_log_wrap: bool = typer.Option(
        False,
        "--view-log-wrap",
        help="Wrap long log lines instead of cutting them (toolbar 'wrap' or Alt+W).",
    ),
    version_: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
    output_tx: bool = typer.Option(
        False,
        "--output-tx",
        help="Keep --dir/tx.md equal to the current transition (address, time, steps). "
        "Off by default (unlike the reference): a debugger opened in a project folder "
        "writes nothing there unless asked.",
    ),
    output_clients: bool = typer.Option(
        False, "--output-clients", help="Keep --dir/clients.txt listing the machines."
    ),
    output_log: bool = typer.Option(
        False, "--output-log", help="Keep --dir/log.md equal to the selected machine's log."
    ),
    output_call_log: bool = typer.Option(
        False,
        "--output-call-log",
        help="Keep --dir/call-log/<machine>/ (init.py, 0.py, then <t>.py every 5000 calls): "
        "the handlers every machine executed, written as Python calls (negotiation as the "
        "if, final handlers its body; the reference writes Go). Needs AM_LOG=3.",
    ),
    output_diagrams: int = typer.Option(
        0,
        "--output-diagrams",
        min=0,
        max=3,
        help="Keep the current machine's diagram (1 simple, 2 detailed; 3 draws as 2) with "
        "its active states, and the network graph, in --dir (am-vis-mach.svg, "
        "am-vis-graph.svg, diagrams/); 0 = off.",
    ),
    output_diag_group: str = typer.Option(
        "hide",
        "--output-diag-group",
        help="With a schema group selected (Ctrl+G), the machine diagram shows only its "
        "states: hide (the same layout, the others hidden), skip (a layout of the group "
        "alone) or off.",
    ),
    output_diag_tx: str = typer.Option(
        "relations",
        "--output-diag-tx",
        help="The machine diagram dims what the cursor's transition did not involve; lit: "
        "called (states), mutated (added or removed), touched (named by any step), "
        "relations (touched, and the relation edges its steps went through: AM_LOG_FULL), "
        "or off.",
    ),
    output_graph: bool = typer.Option(
        False, "--output-graph", help="Keep --dir/graph.md and graph.xml (the network)."
    ),
    ui_web: bool = typer.Option(
        True,
        "--ui-web/--no-ui-web",
        help="With the UI: HTTP on the WebSocket port (listen port + 1): an index of --dir, "
        "/viewer/mach and /viewer/graph (live diagrams), /mcp (--ui-mcp), the files of --dir.",
    ),
    ui_mcp: bool = typer.Option(
        True,
        "--ui-mcp/--no-ui-mcp",
        help="With --ui-web: an MCP endpoint (Streamable HTTP) at http://HOST:PORT+1/mcp, for "
        "AI agents: TextScreen, TextLog, TextLogReader, TextClients, TextHelp, NetworkGraph, "
        "TransitionSteps, GoToMachAddr(url), PressKey(key), ToggleTool(tool).",
    ),
    ui_headless: bool = typer.Option(
        False,
        "--ui-headless",
        help="Run the UI without a terminal (off-screen, 160x50) until Ctrl-C / SIGTERM: "
        "for remote control over MCP (TextScreen shows its screen) and the web viewer.",
    ),
    ui_ssh: bool = typer.Option(
        False,
        "--ui-ssh/--no-ui-ssh",
        help="Serve the UI over SSH on the listen port + 2 (prints the ssh command): it runs "
        "off-screen (as --ui-headless) until a client with a terminal connects, one at a "
        "time; Ctrl+Q ends that session, not the debugger (Ctrl-C / SIGTERM here does). Any "
        "client gets in without a password: it listens only on --listen-addr's host.",
    ),
    view_tail: bool = typer.Option(
        True, "--view-tail/--no-view-tail", help="Follow new transitions (off with MACH_URL)."
    ),
    filter_canceled: bool = typer.Option(False, "--filter-canceled", help="Hide canceled txs."),
    filter_queued: bool = typer.Option(False, "--filter-queued", help="Hide queued records."),
    filter_auto: bool = typer.Option(False, "--filter-auto", help="Hide auto transitions."),
    filter_empty: bool = typer.Option(False, "--filter-empty", help="Hide txs changing nothing."),
    filter_health: bool = typer.Option(
        True, "--filter-health/--no-filter-health", help="Hide Healthcheck/Heartbeat-only txs."
    ),
    filter_checks: bool = typer.Option(
        True, "--filter-checks/--no-filter-checks", help="Hide Can* dry runs."
    ),
    filter_disconn: bool = typer.Option(
        False, "--filter-disconn", help="Hide disconnected machines."
    ),
    filter_rpc_machs: bool = typer.Option(
        False, "--filter-rpc-machs", help="Hide aRPC and relay machines."
    ),
    filter_group: bool = typer.Option(
        True,
        "--filter-group/--no-filter-group",
        help="With a schema group selected: only txs calling its states.",
    ),
    filter_log_level: int = typer.Option(
        2, "--filter-log-level", min=0, max=5, help="Log pane level 0-5."
    ),
) -> None:
    """The debugger: step through every machine's history (a terminal UI).

    Machines report to --listen-addr (TCP) and ws://HOST:PORT+1/dbg.ws (browsers);
    --import-data loads a dump. With --headless: collect only, and write a dump on exit.
    AI agents drive the UI over MCP at http://HOST:PORT+1/mcp (--ui-mcp); people, over
    SSH at HOST -p PORT+2 (--ui-ssh).
    """
    from dbg.dump import DumpError, read_dump, read_dump_lazy

    open_addr = None
    if mach_url is not None:
        from dbg.ui.address import AddrError, MachAddr

        try:
            open_addr = MachAddr.parse(mach_url)
        except AddrError as err:
            fail("dbg", str(err), 2)
    if view not in _VIEWS:
        fail("dbg", f"unknown --view {view!r} (one of {', '.join(_VIEWS)})", 2)
    try:
        log_ttl = parse_duration(log_ops_ttl)
    except ValueError as err:
        fail("dbg", f"bad --log-ops-ttl: {err}", 2)
    if output_diag_group not in _DIAG_GROUP:
        fail("dbg", f"unknown --output-diag-group {output_diag_group!r} (hide, skip or off)", 2)
    if output_diag_tx not in _DIAG_TX:
        fail("dbg", f"unknown --output-diag-tx {output_diag_tx!r} ({', '.join(_DIAG_TX)})", 2)
    if view_timelines not in (0, 1, 2):
        fail("dbg", f"--view-timelines is 0, 1 or 2, not {view_timelines}", 2)
    if view_theme not in _THEMES:
        fail("dbg", f"unknown --view-theme {view_theme!r} (dark or light)", 2)
    if fwd_data:
        from dbg.forward import check_targets

        try:
            check_targets(fwd_data)
        except (OSError, ValueError) as err:
            fail("dbg", str(err))
    imported: list = []
    if import_data is not None:
        if not headless:
            print(f"Importing data from {import_data}... Please wait", flush=True)
        try:
            # the UI converts a Go dump's transitions a machine at a time, when it shows one
            imported = (read_dump if headless else read_dump_lazy)(import_data)
            # long-lived: keep the cycle collector from walking them again (0.1 s at start)
            gc.freeze()
        except (DumpError, OSError) as err:
            fail("dbg", str(err))
    listen: tuple[str, int] | None = None
    if headless or listen_addr != "-1":
        try:
            listen = astuple(parse_hostport(listen_addr))
        except ValueError as err:
            fail("dbg", f"bad --listen-addr: {err}", 2)
    wsp = None
    if listen is not None and not (ws_port == -1 and listen[1] == 0):
        wsp = listen[1] + 1 if ws_port == -1 else ws_port
    if ui_ssh and not headless and listen is None:
        fail("dbg", "--ui-ssh needs --listen-addr: SSH listens on its port + 2", 2)
    if not headless:
        flags = {
            "canceled": filter_canceled, "queued": filter_queued, "auto": filter_auto,
            "empty": filter_empty, "health": filter_health, "checks": filter_checks,
            "disconn": filter_disconn, "rpc": filter_rpc_machs, "group": filter_group,
        }  # fmt: skip
        _ui(
            imported, None if listen is None else (*listen, wsp), out_dir, open_addr,
            select_connected, view, view_tail and open_addr is None,
            {k for k, on in flags.items() if on}, filter_log_level, (max_mem << 20, log_ttl),
            clean_on_connect=clean_on_connect, theme=view_theme, fwd=fwd_data,
            diagrams=output_diagrams, graph_text=output_graph, web=ui_web, mcp=ui_mcp,
            diag=(output_diag_group, output_diag_tx), call_log=output_call_log,
            reader=view_reader, narrow=view_narrow, timelines=view_timelines,
            log_wrap=view_log_wrap,
            offscreen=ui_headless or ui_ssh, ssh=ui_ssh,
            outputs={k for k, on in (("tx", output_tx), ("clients", output_clients),
                                     ("log", output_log)) if on},
        )  # fmt: skip
        return
    assert listen is not None  # headless always parses --listen-addr
    host, port = listen
    out_dir.mkdir(parents=True, exist_ok=True)
    where = listen_addr if wsp in (None, 0) else f"{listen_addr} (WebSocket port {wsp})"
    run_listening(
        "am dbg",
        where,
        "--listen-addr or --ws-port",
        _headless,
        *(host, port, wsp, out_dir, dump_interval, imported, (rotate_txs, rotate_secs)),
        (max_mem << 20, log_ttl),
        clean_on_connect,
        fwd_data,
    )


#: the terminal size --ui-headless draws for
OFFSCREEN = (160, 50)
_VIEWS = ("tree-log", "tree-matrix", "tree-rain", "matrix", "matrix-rain")
_THEMES = ("dark", "light")
# the choices of dbg.ui.diagrams (GROUP_MODES, TX_MODES), here so `am dbg --help` stays fast
_DIAG_GROUP = ("hide", "skip", "off")
_DIAG_TX = ("called", "mutated", "touched", "relations", "off")


def _ui(
    imported: list,
    listen: tuple[str, int, int | None] | None,
    out_dir: Path,
    open_addr,
    select_connected: bool,
    view: str,
    tail: bool,
    filters_on: set[str],
    log_level: int,
    memory: tuple[int, float] = (0, 0.0),
    *,
    clean_on_connect: bool = True,
    theme: str = "dark",
    outputs: set[str] | None = None,
    fwd: list[str] | None = None,
    diagrams: int = 0,
    graph_text: bool = False,
    web: bool = True,
    diag: tuple[str, str] = ("hide", "relations"),
    call_log: bool = False,
    reader: bool = True,
    narrow: bool = False,
    timelines: int = 2,
    log_wrap: bool = False,
    mcp: bool = True,
    offscreen: bool = False,
    ssh: bool = False,
) -> None:
    """Run the terminal UI until Ctrl+Q, then print what it received (`memory`: bytes of
    process memory past which old ops log lines, then the oldest half of every machine's
    history, are dropped, and the seconds after which such a line is old). ``ssh``: serve
    it over SSH on the listen port + 2 (``offscreen`` until a session attaches)."""
    from dbg.collector import rss_bytes
    from dbg.forward import Forwarder
    from dbg.ui.app import DebuggerApp
    from dbg.ui.filters import Filters
    from dbg.ui.live import LiveServer, LockedCollector, check_free
    from dbg.ui.session import Session

    max_mem, log_ttl = memory
    collector = LockedCollector(
        max_mem=max_mem or None,
        clean_on_connect=clean_on_connect,
        freeze_history=True,
        log_ttl=log_ttl or None,
    )
    collector.load(imported)
    live, info, server, remote, ssh_ui = None, f"dir: {out_dir}", None, None, None
    if listen is not None:
        host, port, wsp = listen
        sshp = (port + 2 if port else 0) if ssh else None
        for p, what in ((port, "--listen-addr"), (wsp, "--ws-port (WebSocket and HTTP)"),
                        (sshp, "--listen-addr: SSH listens on its port + 2")):  # fmt: skip
            try:
                if p:
                    check_free(host, p)
            except OSError as err:
                reason = err.strerror or err
                fail("dbg", f"cannot listen on {host}:{p}: {reason} (set {what})")
        if web and wsp is not None:
            from dbg.web import WebServer

            if mcp:
                from dbg.mcp import DbgMcp

                remote = DbgMcp()
            server = WebServer(collector, out_dir, host, wsp, diagrams=bool(diagrams), mcp=remote)
        live = LiveServer(collector, host, port, None if server else wsp)
        if server is not None:
            live.services.append(server.serve)
        if fwd:
            collector.tap = Forwarder(fwd)
            live.services.append(collector.tap.run)
        if max_mem:
            from dbg.collector import watch_memory

            live.services.append(lambda task_status: watch_memory(collector, task_status))
        if sshp is not None:
            from dbg.ui.ssh import SshUi, ssh_command

            def announce_ssh(bound: int) -> None:  # to the process's stdout, as _announce
                print(f"am dbg: SSH {ssh_command(host, bound)}", flush=True, file=sys.__stdout__)

            ssh_ui = SshUi(host, sshp, on_listening=announce_ssh)
        ws = f", ws://{host}:{wsp}/dbg.ws" if wsp else ""
        info = f"telemetry: {host}:{port}{ws}; {info}"
        if server is not None and wsp:
            info += f"; web: http://{host}:{wsp}/"
            if remote is not None:
                info += f"; MCP: http://{host}:{wsp}/mcp"
        if sshp:
            info += f"; SSH: {host} port {sshp}"
        if server is not None:
            # the reference prints its addresses: above the terminal UI's screen, before it
            # opens; off-screen, once the port listens (an agent may connect at once)
            if offscreen:
                live.services.append(partial(_announce, server))
            elif wsp:
                print(_addresses(server.mcp is not None, host, wsp), flush=True)
    session = Session(
        collector,
        filters=Filters(set(filters_on)),
        select_connected=select_connected,
        tail=tail,
        log_level=log_level,
    )
    app = DebuggerApp(
        session, out_dir=out_dir, live=live, view=view, open_addr=open_addr, info=info,
        outputs=outputs or set(), theme=theme, diagrams=diagrams, graph_text=graph_text,
        on_diagrams=server.refresh if server is not None else None,
        diag_group=diag[0], diag_tx=diag[1], call_log=call_log, reader=reader, narrow=narrow,
        timelines=timelines, log_wrap=log_wrap, quit_on_signals=offscreen,
    )  # fmt: skip
    if remote is not None:
        remote.app = app
    if isinstance(collector.tap, Forwarder):
        collector.tap.notify = lambda line: app.call_from_thread(app.status, line)
    if ssh_ui is not None:
        import asyncio

        try:
            asyncio.run(ssh_ui.run(app, OFFSCREEN))
        except OSError as err:  # the port was taken after the check above
            fail("dbg", f"cannot listen on {ssh_ui.host}:{ssh_ui.port}: {err.strerror or err}")
    else:
        app.run(headless=offscreen, size=OFFSCREEN if offscreen else None)
    if live is not None and live.error is not None:
        say("dbg", f"the collector stopped: {live.error}")
    typer.echo(f"Clients: {len(collector.machines)}")
    typer.echo(f"Transitions: {sum(len(r) for r in collector.machines.values())}")
    typer.echo(f"Memory: {rss_bytes() >> 20}mb")  # the process's, as --max-mem counts it
    if live is not None and live.error is not None:
        raise typer.Exit(1)


def _addresses(mcp: bool, host: str, port: int) -> str:
    out = f"am dbg: web http://{host}:{port}/"
    return out + (f"\nam dbg: MCP http://{host}:{port}/mcp" if mcp else "")


async def _announce(server, *, task_status) -> None:
    """A service started after the web server: prints its bound addresses and ends. Straight
    to the process's stdout (the running app redirects ``sys.stdout``)."""
    assert server.bound is not None
    print(_addresses(server.mcp is not None, server.host, server.bound), flush=True,
          file=sys.__stdout__)  # fmt: skip
    task_status.started()


async def _headless(
    host: str,
    port: int,
    wsp: int | None,
    out_dir: Path,
    interval: float,
    imported: list,
    rotation: tuple[int, float],
    memory: tuple[int, float] = (0, 0.0),
    clean_on_connect: bool = True,
    fwd: list[str] | None = None,
) -> None:
    import trio

    from dbg.collector import Collector, serve_collector
    from dbg.dump import write_dump

    def save_cleaned(dumps: list) -> None:
        # clean-on-connect drops every machine: what they had goes to a dump of its own
        if not any(d.txs for d in dumps):
            return
        try:
            written = write_dump(_rotated_name(out_dir), dumps)
        except Exception as err:  # e.g. a full disk: keep collecting
            print(f"am dbg: cannot write the dump: {err}", file=sys.stderr)
            return
        print(f"am dbg: wrote {written} (all machines disconnected, a new one connected)",
              file=sys.stderr, flush=True)  # fmt: skip

    max_mem, log_ttl = memory
    collector = Collector(
        max_mem=max_mem or None,
        clean_on_connect=clean_on_connect,
        on_clean=save_cleaned,
        freeze_history=True,
        log_ttl=log_ttl or None,
    )
    collector.load(imported)
    target = out_dir / DUMP_NAME
    rotate_txs, rotate_secs = rotation
    rotating = bool(rotate_txs or rotate_secs)

    def save() -> Path | None:
        if not rotating:
            return write_dump(target, collector.dumps())
        if not collector.buffered:
            return None
        return write_dump(_rotated_name(out_dir), collector.rotate())

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            if fwd:
                from dbg.forward import Forwarder

                collector.tap = Forwarder(fwd)
                await nursery.start(collector.tap.run)
            bound, bound_ws = await nursery.start(
                lambda task_status: serve_collector(
                    collector, host, port, ws_port=wsp, task_status=task_status
                )
            )
            ws = f", ws://{host}:{bound_ws}/dbg.ws" if bound_ws else ""
            what = f"rotated dumps into {out_dir}" if rotating else str(target)
            print(f"am dbg: collecting on {host}:{bound}{ws}; Ctrl-C writes {what}", flush=True)
            if interval > 0 or rotating:

                async def periodic() -> None:
                    while True:
                        wait = rotate_secs or interval or math.inf
                        with trio.move_on_after(wait):
                            if rotate_txs:
                                await collector.wait_until(lambda c: c.buffered >= rotate_txs)
                            else:
                                await trio.sleep_forever()
                        try:
                            written = save()
                        except Exception as err:  # e.g. a full disk: keep collecting
                            print(f"am dbg: cannot write the dump: {err}", file=sys.stderr)
                            continue
                        if written and rotating:
                            print(f"am dbg: wrote {written}", file=sys.stderr, flush=True)

                nursery.start_soon(periodic)
            if max_mem:
                from dbg.collector import watch_memory

                nursery.start_soon(watch_memory, collector)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    written = save()
    print(
        f"am dbg: wrote {written or 'nothing new'} ({_count(len(collector.machines), 'machine')}, "
        f"{collector.total_txs} transitions received, {collector.rejected} rejected, "
        f"{collector.trimmed} dropped by --max-mem"
        + (f" with {collector.logs_dropped} old log lines" if collector.logs_dropped else "")
        + (f", {collector.removed} small machines removed" if collector.removed else "")
        + (f", {collector.tap.dropped} not forwarded)" if collector.tap else ")"),
        file=sys.stderr,
        flush=True,
    )


_DURATION = re.compile(r"(\d+(?:\.\d*)?)(h|ms|m|s)")


def parse_duration(text: str) -> float:
    """Seconds of a duration as Go writes one (``1h``, ``30m``, ``1h30m``, ``90s``,
    ``500ms``) or a plain number of seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{text!r} is not a duration such as 1h, 30m, 90s") from None
        unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
        seconds = sum(float(n) * unit[u] for n, u in parts)
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{text!r}: a duration is 0 or more")
    return seconds


def _rotated_name(out_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")
    path, n = out_dir / f"am-dbg-dump-{stamp}.cbor.br", 1
    while path.exists():  # several rotations in one second
        n += 1
        path = out_dir / f"am-dbg-dump-{stamp}-{n}.cbor.br"
    return path


def _count(n: int, noun: str) -> str:
    """``1 machine``, ``2 machines``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
