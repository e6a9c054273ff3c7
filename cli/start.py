"""``am start``: the whole example in one process (spec section 3), as ``task start`` runs it.

Builds the page when its build is missing or stale, then runs server-foo, its REPL endpoint,
its aRPC mux and the relay serving the page; ``--bars N`` adds N headless browser peers,
``--dbg`` the debugger's collector (its dump is written on exit). Ctrl-C, SIGTERM or SIGHUP stops
everything and removes the address files.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import typer

from cli.console import fail, setup_logging

#: the source checkout this command runs from (the page and its build live in ``web/``)
ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
DEFAULT_DBG_ADDR = "localhost:6831"
#: AM_LOG when a debugger listens and none is given: 3 carries the links between machines
DBG_LOG_LEVEL = "3"
#: what stops the example cleanly (address files removed, the dump written): Ctrl-C, SIGTERM,
#: and SIGHUP, which a closed terminal window or tmux session sends
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def start(
    bars: int = typer.Option(
        0, "--bars", min=0, help="Also run N headless browser peers (the page's program, no DOM)."
    ),
    dbg: bool = typer.Option(
        False,
        "--dbg",
        help="Also run the debugger's collector (AM_DBG_ADDR, default localhost:6831); "
        "write its dump into --dir on exit.",
    ),
    out_dir: Path = typer.Option(Path("."), "--dir", "-d", help="Where --dbg writes its dump."),
    env_file: Path = typer.Option(Path(".env"), "--env-file", help="The .env to read, if any."),
    page: str = typer.Option(
        "auto",
        "--page",
        help=(
            "Which build the page loads: auto (prod when built and fresh, else dev), dev, prod."
            " The build asked for is built first when missing or stale."
        ),
    ),
) -> None:
    """Start server-foo, its aRPC and REPL endpoints and the relay serving the page."""
    from machines.example.config import load

    try:
        cfg = load(env_file)
    except ValueError as err:
        fail("start", str(err), 2)
    env = debug_env(cfg.env or {}, dbg)
    cfg = dataclasses.replace(cfg, env=env)
    for key, value in env.items():
        os.environ[key] = value  # .env's debug variables reach this process's machines too
    setup_logging()
    if page not in ("auto", "dev", "prod"):
        fail("start", f"--page must be auto, dev or prod, not {page!r}", 2)
    build = _build(page)
    import trio

    from machines.example.server import StartError, find_exception

    try:
        stopping = trio.run(_main, cfg, build, bars, out_dir if dbg else None)
    except BaseException as exc:
        found = find_exception(exc, StartError)
        if found is None:
            raise
        fail("start", str(found))
    # every task has ended (servers closed, sockets and address files gone, the dump written):
    # say so, so whoever pressed Ctrl-C knows the ports are free again
    _out(f"stopped ({time.monotonic() - stopping:.1f} s)")


def debug_env(env: Mapping[str, str], dbg: bool) -> dict[str, str]:
    """The debug variables this process and its pages run with.

    ``--dbg`` without ``AM_DBG_ADDR`` (or with ``1``) collects on the default address.
    Whenever a debugger listens, ``AM_LOG`` defaults to 3 (ops): the links between machines
    (``[rpc:connected]``, pipes) travel as log lines, so without them the debugger's reader
    and ``am vis render-dump --map`` show the machines unconnected. The level only feeds
    telemetry (nothing is printed), and an explicit ``AM_LOG`` (``0`` too) is kept.
    """
    env = dict(env)
    if (dbg and not env.get("AM_DBG_ADDR")) or env.get("AM_DBG_ADDR") == "1":
        env["AM_DBG_ADDR"] = DEFAULT_DBG_ADDR  # "1" means the default, as for every machine
    if env.get("AM_DBG_ADDR"):
        env.setdefault("AM_LOG", DBG_LOG_LEVEL)
    return env


def _build(page: str) -> str:
    """Build the page if needed; the kind the page should load (``prod`` when fresh)."""
    if not (WEB / "build_page.py").is_file():
        fail("start", f"the page's sources are missing ({WEB}): run it from a clone")
    sys.path.insert(0, str(WEB))
    try:
        import build_page as web_build  # type: ignore[import-not-found]  # web/, not a package
    finally:
        sys.path.remove(str(WEB))
    prod_built = (web_build.OUT / "prod" / "manifest.json").is_file()
    prod_fresh = prod_built and web_build.is_fresh("prod")
    if note := page_note(page, prod_built, prod_fresh):
        typer.echo(note)
    if page == "auto" and prod_fresh:
        return "prod"
    kind = "prod" if page == "prod" else "dev"
    if not web_build.is_fresh(kind):
        # a stale build holds an older copy of this project's Python: the page would speak an
        # older protocol than this server (the prod snapshot embeds it), so it is rebuilt
        typer.echo(f"am start: building the page (web/build/{kind})...")
        args = ["--prod"] if kind == "prod" else []
        proc = subprocess.run([sys.executable, str(WEB / "build_page.py"), *args], check=False)
        if proc.returncode != 0:
            raise typer.Exit(1)
    return kind


def page_note(page: str, prod_built: bool, prod_fresh: bool) -> str | None:
    """What to say about the build ``--page auto`` picks, if it is not the prod one.

    The dev build boots Pyodide from scratch in every tab (several seconds, more on a busy
    machine) where the prod build restores a snapshot (about a second): a first run has only
    the dev build, and a user waiting at "Loading Python" should know the remedy.
    """
    if page != "auto" or prod_fresh:
        return None
    if prod_built:
        return "am start: web/build/prod is stale (task build-prod); using the dev build"
    return (
        "am start: the page loads the dev build (Python starts in several seconds);"
        " `task build-prod` (once, about a minute) brings that to about 1 s"
    )


async def _main(cfg, build: str, bars: int, dump_dir: Path | None) -> float:
    """Run until a stop signal; the monotonic time it came (to say how long stopping took)."""
    import trio

    from machines.example.browser import BrowserBar
    from machines.example.server import run_server
    from machines.example.trio_io import HeadlessUI, TrioHost

    collector = None
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            if dump_dir is not None:
                collector = await _start_collector(nursery, cfg.env["AM_DBG_ADDR"])
            async with trio.open_nursery() as inner:
                server = await inner.start(partial(run_server, cfg, WEB, _out, build=build))
                _out(f"Open {server.url.rstrip('/')}")
                _out(f"REPL: {server.repl_file} ({server.repl.addr}); tabs add theirs to "
                     f"{cfg.repl_dir}/ (am repl --dir {cfg.repl_dir})")  # fmt: skip
                ws_url = server.url.replace("http://", "ws://")
                for _ in range(bars):
                    peer = BrowserBar(TrioHost(inner, ws_url), HeadlessUI(), cfg)
                    inner.start_soon(peer.start)
                if bars:
                    _out(f"started {bars} headless peers")
                async for _ in signals:
                    break
                stopping = time.monotonic()
                _out("stopping...")
                inner.cancel_scope.cancel()
            if collector is not None and dump_dir is not None:
                await _write_dump(collector, dump_dir)
            nursery.cancel_scope.cancel()
    return stopping


def _out(line: str) -> None:
    """Print one line of the example's output.

    Once stdout is gone (``am start --dbg | tee log``: Ctrl-C ends ``tee`` first) the lines go
    to /dev/null instead: stopping must still go on and write the debugger's dump.
    """
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


async def _start_collector(nursery, addr: str):
    from dbg.collector import Collector, serve_collector
    from machines.example.server import StartError, find_exception

    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise StartError(f"bad AM_DBG_ADDR {addr!r} (want HOST:PORT)")
    collector = Collector()
    try:
        bound, ws = await nursery.start(
            lambda task_status: serve_collector(
                collector, host, int(port), ws_port=int(port) + 1, task_status=task_status
            )
        )
    except BaseException as exc:  # the collector's nursery wraps a bind error in a group
        err = find_exception(exc, OSError)
        if not isinstance(err, OSError):
            raise
        reason = "address in use" if err.errno == 98 else (err.strerror or str(err))
        if err.errno == 98:  # most likely the debugger the user means to report to
            reason += f"; if an `am dbg` listens there, run AM_DBG_ADDR={addr} am start, no --dbg"
        raise StartError(
            f"cannot listen on {addr} or the next port (AM_DBG_ADDR, debugger): {reason}"
        ) from None
    _out(f"debugger: collecting on {host}:{bound} and ws://{host}:{ws}/dbg.ws")
    return collector


async def _write_dump(collector, dump_dir: Path) -> None:
    import trio

    from cli.dbg import DUMP_NAME
    from dbg.dump import write_dump
    from machines import telemetry

    # what the machines of this process still have queued goes out first
    await trio.to_thread.run_sync(telemetry.flush, 0.5)
    await trio.sleep(0.1)  # the collector's connection tasks read what was just sent
    dump_dir.mkdir(parents=True, exist_ok=True)
    path = write_dump(dump_dir / DUMP_NAME, collector.dumps())
    n = len(collector.machines)
    _out(f"debugger: wrote {path} ({n} machine{'' if n == 1 else 's'})")
