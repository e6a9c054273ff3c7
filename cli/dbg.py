"""``am dbg``: the debugger's collector, dump export and import."""

from __future__ import annotations

import math
import signal
import sys
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path

import typer

from cli.listen import run_listening
from machines.addr import parse_hostport

DUMP_NAME = "am-dbg-dump.cbor.br"


def dbg(
    listen_addr: str = typer.Option(
        "localhost:6831",
        "--listen-addr",
        "-l",
        help="Where machines send telemetry (TCP, HOST:PORT); set AM_DBG_ADDR to it.",
    ),
    ws_port: int = typer.Option(
        -1,
        "--ws-port",
        help="WebSocket port for browser machines (path /dbg.ws); default: listen port + 1, "
        "0 = any free port.",
    ),
    headless: bool = typer.Option(
        False,
        "--headless",
        help="Collect without a UI until Ctrl-C / SIGTERM, then write the dump.",
    ),
    out_dir: Path = typer.Option(Path("."), "--dir", "-d", help="Where dumps are written."),
    dump_interval: float = typer.Option(
        0.0, "--dump-interval", help="Also write the dump every SECONDS (atomically)."
    ),
    import_data: Path | None = typer.Option(
        None, "--import-data", "-i", help="Load a dump (this project's or the Go tool's)."
    ),
    rotate_txs: int = typer.Option(
        0,
        "--rotate-txs",
        help="Rotate: write the history to a new timestamped dump every N "
        "transitions and free it from memory (0 = off).",
        min=0,
    ),
    rotate_secs: float = typer.Option(
        0.0,
        "--rotate-secs",
        help="Rotate every SECONDS too (0 = off).",
        min=0,
    ),
) -> None:
    """Collect telemetry from every machine and export it as a dump.

    Without --headless, lists the machines of --import-data and their transitions.
    """
    from dbg.dump import DumpError, read_dump

    imported = []
    if import_data is not None:
        try:
            imported = read_dump(import_data)
        except (DumpError, OSError) as err:
            typer.echo(f"am dbg: {err}", err=True)
            raise typer.Exit(1) from None
    if not headless:
        if import_data is None:
            typer.echo(
                "am dbg: the interactive UI is not available yet; use --headless to "
                "collect, or --import-data FILE to list a dump",
                err=True,
            )
            raise typer.Exit(2)
        _print_summary(imported)
        return
    try:
        host, port = astuple(parse_hostport(listen_addr))
    except ValueError as err:
        typer.echo(f"am dbg: bad --listen-addr: {err}", err=True)
        raise typer.Exit(2) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    ws = port + 1 if ws_port == -1 and port else ws_port
    where = listen_addr if ws in (-1, 0) else f"{listen_addr} (WebSocket port {ws})"
    run_listening(
        "am dbg",
        where,
        "--listen-addr or --ws-port",
        _headless,
        *(host, port, ws_port, out_dir, dump_interval, imported, (rotate_txs, rotate_secs)),
    )


def _print_summary(dumps: list) -> None:
    for d in dumps:
        active = " ".join(d.active_states())
        typer.echo(
            f"{d.id}: {len(d.schema.states_index)} states, {len(d.txs)} transitions, "
            f"active ({active})"
        )


async def _headless(
    host: str,
    port: int,
    ws_port: int,
    out_dir: Path,
    interval: float,
    imported: list,
    rotation: tuple[int, float],
) -> None:
    import trio

    from dbg.collector import Collector, serve_collector
    from dbg.dump import write_dump

    collector = Collector()
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
            wsp = None if ws_port == -1 and port == 0 else (port + 1 if ws_port == -1 else ws_port)
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
                        written = save()
                        if written and rotating:
                            print(f"am dbg: wrote {written}", file=sys.stderr, flush=True)

                nursery.start_soon(periodic)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    written = save()
    print(
        f"am dbg: wrote {written or 'nothing new'} ({len(collector.machines)} machines, "
        f"{collector.total_txs} transitions received)",
        file=sys.stderr,
        flush=True,
    )


def _rotated_name(out_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")
    path, n = out_dir / f"am-dbg-dump-{stamp}.cbor.br", 1
    while path.exists():  # several rotations in one second
        n += 1
        path = out_dir / f"am-dbg-dump-{stamp}-{n}.cbor.br"
    return path
