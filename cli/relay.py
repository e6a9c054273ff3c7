"""`am relay`: the TCP-over-WebSocket relay and static web server, alone.

The relay's modules are imported only when the command runs, so `am --help` stays fast.
"""

from __future__ import annotations

import gc
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from cli.console import fail, setup_logging
from cli.listen import run_listening
from relay.config import (
    DEFAULT_DIAL_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LISTEN_ADDR,
    DEFAULT_MAX_MESSAGE,
    DEFAULT_MAX_TUNNELS,
    DEFAULT_REPL_GRACE,
)


def relay(
    listen_addr: Annotated[
        str,
        typer.Option(
            "--listen-addr",
            "-l",
            envvar="RELAY_HTTP_ADDR",
            help="HTTP and WebSocket address (port 0 picks a free port).",
        ),
    ] = DEFAULT_LISTEN_ADDR,
    static_dir: Annotated[
        Path | None,
        typer.Option(
            "--static-dir",
            "-s",
            help="Serve the files of this directory (and its subdirectories) at /; names "
            "starting with a dot (.env, .git) are never served. The example page's own "
            "directory (web/ of this project: it holds build_page.py) serves only the page's "
            "files, as am start does (not the build scripts or the download cache). Without "
            "it, / answers 404.",
        ),
    ] = None,
    repl_addr_dir: Annotated[
        Path | None,
        typer.Option(
            "--repl-addr-dir",
            "-r",
            help="Write <id>.addr here for listen tunnels whose id starts with repl-.",
        ),
    ] = None,
    repl_grace: Annotated[
        float,
        typer.Option(
            "--repl-grace",
            help="Seconds a repl- listen tunnel's port (and .addr file) waits for the same id "
            "to reconnect: a tab keeps one REPL address for its whole life. 0: never.",
        ),
    ] = DEFAULT_REPL_GRACE,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            help="TCP target that tunnels may listen on or dial, HOST:PORT or HOST:* "
            "(repeatable). Nothing is allowed by default.",
        ),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            help="Browser origin allowed to open tunnels (repeatable; * for any). "
            "Default: the relay's own origin.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="RELAY_TOKEN",
            help="Require this token, offered as WebSocket subprotocol am-token.<TOKEN>.",
        ),
    ] = None,
    max_message: Annotated[
        int, typer.Option("--max-message", help="Largest inbound WebSocket message, in bytes.")
    ] = DEFAULT_MAX_MESSAGE,
    max_tunnels: Annotated[
        int, typer.Option("--max-tunnels", help="Tunnels open at once; more get HTTP 503.")
    ] = DEFAULT_MAX_TUNNELS,
    max_tunnels_per_peer: Annotated[
        int | None,
        typer.Option(
            "--max-tunnels-per-peer",
            help="Tunnels one client address may hold at once; more get HTTP 429. "
            "Default: half of --max-tunnels.",
        ),
    ] = None,
    dial_timeout: Annotated[
        float,
        typer.Option("--dial-timeout", help="Seconds a dial tunnel waits for its TCP connection."),
    ] = DEFAULT_DIAL_TIMEOUT,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout",
            help="Seconds a connected tunnel may carry no byte before it is closed (1008). "
            "0: never.",
        ),
    ] = DEFAULT_IDLE_TIMEOUT,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not log each tunnel.")] = False,
) -> None:
    """Give browsers TCP endpoints over WebSocket, and serve a folder (--static-dir).

    ws://HOST/listen/<id>/<host:port>: listen there for one TCP peer.
    ws://HOST/dial/<id>/<host:port>: dial there.
    Only --allow'ed targets.

    Runs until Ctrl-C, which closes every tunnel and removes address files.
    """
    from relay import RelayConfig

    try:
        config = RelayConfig(
            listen_addr=listen_addr,
            static_dir=static_dir,
            static_only=_page_files(static_dir),
            repl_addr_dir=repl_addr_dir,
            repl_grace=repl_grace,
            allow=tuple(allow or ()),
            allow_origins=tuple(allow_origin or ()),
            token=token,
            max_message=max_message,
            max_tunnels=max_tunnels,
            max_tunnels_per_peer=max_tunnels_per_peer,
            dial_timeout=dial_timeout,
            idle_timeout=idle_timeout or None,
        )
    except ValueError as err:
        fail("relay", str(err), 2)
    setup_logging(logging.WARNING if quiet else logging.INFO)
    run_listening("am relay", listen_addr, "--listen-addr or RELAY_HTTP_ADDR", _serve, config)
    typer.echo("relay stopped")


def _page_files(static_dir: Path | None) -> tuple[str, ...]:
    """Only the page's files when ``static_dir`` is the example page's own directory (its
    build script is there), else () for every file: a folder of one's own is served whole."""
    if static_dir is None or not (static_dir / "build_page.py").is_file():
        return ()
    from machines.example.server import PAGE_FILES

    return PAGE_FILES


async def _serve(config: object) -> None:
    import trio

    from relay import RelayConfig, open_relay

    assert isinstance(config, RelayConfig)
    # Signals become an event here, so shutdown runs as ordinary code: tunnels get their
    # close frames and address files are removed before the process exits. Every write is
    # interruptible, so a browser that stopped reading delays this by seconds at most.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_relay(config) as relay:
            _describe(relay)
            # Everything imported so far lives as long as the process: keep it out of the
            # collector's full passes, which otherwise stall every tunnel for milliseconds.
            gc.freeze()
            async for _ in signals:
                break
            typer.echo("relay stopping: closing tunnels")


def _describe(relay: object) -> None:
    from relay import Relay

    assert isinstance(relay, Relay)
    config = relay.config
    echo = typer.echo
    echo(f"relay listening on {relay.url}")
    if config.static_dir is not None and config.static_only:
        echo(f"serving the page from {config.static_dir} at {relay.url} (only its files)")
    elif config.static_dir is not None:
        echo(f"serving {config.static_dir} at {relay.url} (every file but dotfiles)")
    else:
        echo("no static dir: / answers 404")
    ws = f"ws://{relay.addr}"
    echo(f"tunnels: {ws}/listen/<id>/<host:port> and {ws}/dial/<id>/<host:port>")
    allowed = ", ".join(config.allow) if config.allow else "none (add --allow HOST:PORT)"
    echo(f"allowed targets: {allowed}")
    origins = ", ".join(config.allow_origins) or ", ".join(sorted(relay.origin_policy.own))
    echo(f"allowed origins: {origins}")
    if config.repl_addr_dir is not None:
        echo(f"REPL address files in {config.repl_addr_dir}")
    if config.token is not None:
        echo("token required (subprotocol am-token.<TOKEN>)")
    idle = f"{config.idle_timeout:g} s idle" if config.idle_timeout else "no idle timeout"
    echo(
        f"limits: {config.max_tunnels} tunnels, {config.max_tunnels_per_peer} per client, "
        f"{idle}, messages up to {config.max_message} B"
    )
