"""The debugger's terminal UI over SSH (``am dbg --ui-ssh``): one session at a time sees it.

How: Textual draws through a *driver* (the terminal's, or the headless one of tests); the app
never knows where its bytes go. :class:`SshDriver` is both in turn: off-screen (headless:
nothing written, the fixed size ``--ui-headless`` draws for) until an SSH session with a PTY
attaches, then it writes the screen to that session's channel at the client's size and feeds
what the client types, parsed by Textual's own ``XTermParser`` (as its Linux driver does), to
the app as key, mouse and paste events. When the session ends (Ctrl+Q, the client leaves, the
connection drops) the driver goes back off-screen; the app, the collector and the web and MCP
servers never stop. The SSH server (asyncssh) runs on the app's asyncio loop, so the channel's
callbacks and the driver's writes happen in one thread: no locks, no pty pair, no copy loop.
(A pty pair with Textual's Linux driver on its far side would need a process or a thread per
session and a driver swapped at runtime, which Textual does not offer.)

Security, as the reference: any client gets in, with no authentication. The server listens
only on ``--listen-addr``'s host (loopback by default), beside the telemetry port and the MCP
endpoint, which take no authentication either (and MCP already drives this UI). A session gets
the UI and nothing else: no shell, no port forwarding, no SFTP. The host key is made at start
and kept in memory (nothing is written to ``--dir``), so it changes with every start: the
printed command tells ``ssh`` not to record it.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
from typing import Any

import asyncssh
from textual import constants, events
from textual.app import App
from textual.driver import Driver
from textual.geometry import Size

__all__ = ["BUSY", "NO_PTY", "SshDriver", "SshUi", "ssh_command"]

#: what a second session reads before it is closed (the reference's words)
BUSY = "am-dbg server busy... (one SSH session at a time)"
#: what a session without a terminal reads before it is closed
NO_PTY = "am-dbg: the debugger's UI needs a terminal: connect with ssh -t"
#: a session whose client reads slower than the UI draws is ended past this much unsent output
MAX_BACKLOG = 8 << 20
#: a silent client is asked this often whether it is still there (a dropped link ends it)
KEEPALIVE = 15.0

# what Textual's Linux driver writes to enter and leave its terminal mode
_MOUSE_ON = "\x1b[?1000h\x1b[?1003h\x1b[?1015h\x1b[?1006h"
_MOUSE_OFF = "\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l"
# kitty keyboard protocol: disambiguate escape codes | report all keys | associated text
_KITTY_ON = "" if constants.DISABLE_KITTY_KEY else "\x1b[>25u"
_KITTY_OFF = "" if constants.DISABLE_KITTY_KEY else "\x1b[<u"
# alt screen, hide the cursor, focus events, ask for synchronized output, bracketed paste,
# no line wrap
_ENTER = "\x1b[?1049h\x1b[?25l\x1b[?1004h" + _KITTY_ON + "\x1b[?2026$p\x1b[?2004h\x1b[?7l"
_LEAVE = "\x1b[?2004l\x1b[?7h" + _KITTY_OFF + "\x1b[?1049l\x1b[?25h\x1b[?1004l"


def ssh_command(host: str, port: int) -> str:
    """The command that opens the UI (the host key is new at every start: not recorded)."""
    return f"ssh {host} -p {port} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"


class SshDriver(Driver):
    """Off-screen until :meth:`attach`, then the terminal of one SSH session.

    Made by the app (``App.driver_class``), so it finds its :class:`SshUi` through
    :meth:`SshUi.driver_class`, which binds one.
    """

    ui: SshUi  # set by SshUi.driver_class

    def __init__(
        self,
        app: App[Any],
        *,
        debug: bool = False,
        mouse: bool = True,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size)
        self.offscreen_size = size or (80, 24)
        self._session: _Session | None = None
        self._out: list[str] = []
        self._flush_soon: asyncio.Handle | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._parser: Any = None
        self._decode: Callable[[bytes], str] = _decoder()
        self.ui.driver = self

    @property
    def is_headless(self) -> bool:
        # the app skips drawing while headless: off-screen costs no terminal output
        return self._session is None

    @property
    def attached(self) -> bool:
        return self._session is not None

    # ----- Driver

    def start_application_mode(self) -> None:
        self._resize(self.offscreen_size)

    def stop_application_mode(self) -> None:
        self.detach("am-dbg: the debugger quit")

    def disable_input(self) -> None:
        self._parser = None

    def write(self, data: str) -> None:
        if self._session is None:
            return
        self._out.append(data)
        if self._flush_soon is None:  # what is not flushed by the app goes out anyway
            self._flush_soon = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        session, data = self._session, "".join(self._out)
        self._out.clear()
        if session is None or not data:
            return
        if not session.send(data):
            self.detach(None)  # the connection is gone
        elif session.backlog() > MAX_BACKLOG:
            self.detach("am-dbg: this client reads too slowly; session ended")

    # ----- sessions

    def attach(self, session: _Session, size: tuple[int, int]) -> None:
        """Show the UI to ``session`` (a terminal of ``size``) from now on."""
        from textual._xterm_parser import XTermParser

        self._session = session
        self._parser = XTermParser(self._debug)
        self._decode = _decoder()
        self.write(_ENTER + (_MOUSE_ON if self._mouse else ""))
        self.flush()
        self._resize(size)
        # the whole screen, even at the size the app had off-screen (it only sends changes)
        self._app.call_later(self._app.refresh, layout=True)

    def detach(self, message: str | None) -> None:
        """End the current session (if any): restore its terminal and say ``message``
        (None: the connection is gone, nothing can be said); the UI goes off-screen."""
        session, self._session = self._session, None
        self._out.clear()
        self._parser = None
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if session is None:
            return
        if message is not None:
            restore = (_MOUSE_OFF if self._mouse else "") + _LEAVE
            session.send(restore + message + "\r\n")
        session.end()
        self._resize(self.offscreen_size)

    def resize(self, size: tuple[int, int]) -> None:
        """The client's window changed size."""
        if self._session is not None:
            self._resize(size)

    def feed(self, data: bytes) -> None:
        """Bytes the client typed: keys, mouse reports and pastes for the app. Ctrl+Q ends
        the session (the debugger keeps running: it is not the client's to quit)."""
        parser = self._parser
        if parser is None:
            return
        try:
            messages = list(parser.feed(self._decode(data)))
        except Exception:  # a sequence the parser cannot read: drop it, keep the session
            from textual._xterm_parser import XTermParser

            self._parser = XTermParser(self._debug)
            return
        self._dispatch(messages)
        if self._tick is not None:
            self._tick.cancel()
        # a lone Escape is a key only once no more of a sequence follows it
        self._tick = self._loop.call_later(constants.ESCAPE_DELAY + 0.01, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        if self._parser is not None:
            self._dispatch(list(self._parser.tick()))

    def _dispatch(self, messages: list[Any]) -> None:
        for message in messages:
            if self._session is None:
                return
            if isinstance(message, events.Key) and message.key == "ctrl+q":
                self.detach("am-dbg: session ended (Ctrl+Q); the debugger keeps running")
                return
            self.process_message(message)

    def _resize(self, size: tuple[int, int]) -> None:
        width, height = max(1, size[0]), max(1, size[1])
        self._size = (width, height)
        # posted at once (this is the app's thread): ahead of the refresh ``attach`` asks for
        self._app.post_message(events.Resize(Size(width, height), Size(width, height)))


class SshUi:
    """The SSH server of ``--ui-ssh``: one session at a time gets the app's screen.

    Run the app with ``driver_class`` (see :meth:`run`); the server listens once the app is
    ready, on ``host:port`` (0: any free port), and ``on_listening(port)`` is called then.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_listening: Callable[[int], None] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.on_listening = on_listening
        self.driver: SshDriver | None = None
        #: the port listened on, once it is
        self.bound: int | None = None
        #: sessions that have seen the UI, and sessions refused (busy or no PTY)
        self.sessions = 0
        self.refused = 0
        self._acceptor: asyncssh.SSHAcceptor | None = None

    def driver_class(self) -> type[SshDriver]:
        """A driver class bound to this server (the app makes its driver itself)."""
        return type("BoundSshDriver", (SshDriver,), {"ui": self})

    async def run(self, app: App[Any], size: tuple[int, int]) -> None:
        """Run ``app`` off-screen at ``size`` (and on SSH sessions) until it exits.

        Raises ``OSError`` when the port cannot be listened on (the app exits then)."""
        app.driver_class = self.driver_class()

        async def listen_when_ready(pilot: Any) -> None:
            # sessions must find a mounted app: listen (and print the command) only now
            await self.listen()

        try:
            await app.run_async(size=size, auto_pilot=listen_when_ready)
        finally:
            await self.close()

    async def listen(self) -> int:
        key = asyncssh.generate_private_key("ssh-ed25519")
        self._acceptor = await asyncssh.create_server(
            lambda: _Server(self),
            self.host,
            self.port,
            server_host_keys=[key],
            line_editor=False,
            encoding=None,  # bytes: the client's input is decoded leniently (see feed)
            keepalive_interval=KEEPALIVE,
            keepalive_count_max=3,
            config=None,
        )
        self.bound = self._acceptor.get_addresses()[0][1]
        if self.on_listening is not None:
            self.on_listening(self.bound)
        return self.bound

    async def close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    def begin(self, session: _Session) -> None:
        """A session asks for the UI: it gets it, or a line saying why not."""
        driver = self.driver
        if driver is None or driver.attached:
            self.refused += 1
            session.refuse(BUSY if driver is not None else "am-dbg: not ready, try again")
        elif session.term_size is None:
            self.refused += 1
            session.refuse(NO_PTY)
        else:
            self.sessions += 1
            driver.attach(session, session.term_size)


class _Server(asyncssh.SSHServer):
    """One client connection: no authentication (see the module's docstring), sessions that
    show the UI, nothing else (asyncssh refuses forwarding and SFTP unless asked)."""

    def __init__(self, ui: SshUi) -> None:
        self.ui = ui

    def begin_auth(self, username: str) -> bool:
        return False

    def session_requested(self) -> _Session:
        return _Session(self.ui)


class _Session(asyncssh.SSHServerSession):
    """One SSH channel: a shell (or a command, ignored) that shows the UI if it has a PTY."""

    def __init__(self, ui: SshUi) -> None:
        self.ui = ui
        self.chan: asyncssh.SSHServerChannel | None = None
        self.term_size: tuple[int, int] | None = None
        self.attached = False

    # ----- asyncssh callbacks

    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        self.term_size = (term_size[0] or 80, term_size[1] or 24)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        return True  # the command is ignored: there is only the UI to run

    def subsystem_requested(self, subsystem: str) -> bool:
        return False  # no SFTP, nothing but the UI

    def session_started(self) -> None:
        self.ui.begin(self)

    def data_received(self, data: Any, datatype: Any) -> None:
        driver = self.ui.driver
        if driver is not None and driver._session is self:
            driver.feed(data)

    def terminal_size_changed(self, width: int, height: int, pw: int, ph: int) -> None:
        self.term_size = (width or 80, height or 24)
        driver = self.ui.driver
        if driver is not None and driver._session is self:
            driver.resize(self.term_size)

    def eof_received(self) -> bool:
        return False  # the client closed its input: close the session

    def connection_lost(self, exc: Exception | None) -> None:
        driver = self.ui.driver
        chan, self.chan = self.chan, None
        if driver is not None and driver._session is self and chan is not None:
            driver.detach(None)

    # ----- for the driver

    def send(self, text: str) -> bool:
        """Write ``text`` to the client; False when the channel is gone."""
        if self.chan is None:
            return False
        try:
            self.chan.write(text.encode("utf-8", "replace"))
        except OSError:  # BrokenPipeError: closing
            return False
        return True

    def backlog(self) -> int:
        return self.chan.get_write_buffer_size() if self.chan is not None else 0

    def refuse(self, line: str) -> None:
        eol = "\r\n" if self.term_size is not None else "\n"
        self.send(line + eol)
        self.end(1)

    def end(self, status: int = 0) -> None:
        if self.chan is None:
            return
        try:
            self.chan.exit(status)
        except OSError:
            self.chan.close()


def _decoder() -> Callable[[bytes], str]:
    # bytes that are not UTF-8 become U+FFFD instead of ending the session
    return codecs.getincrementaldecoder("utf-8")("replace").decode
