"""``--ui-mcp``: the debugger's MCP endpoint, ``/mcp`` on the web port (listen port + 1).

An AI agent, or any Model Context Protocol client, reads what the debugger shows and drives
it with the tools of the reference (C.3): ``TextScreen``, ``TextLog``, ``TextLogReader``,
``TextClients``, ``TextHelp``, ``NetworkGraph``, ``TransitionSteps``, ``GoToMachAddr``,
``PressKey`` and ``ToggleTool`` (the filters and the view's switches; the reference's flips
its own debugger machine's states, which this debugger has none of).

The protocol is the official SDK's (PyPI ``mcp``): its low-level ``Server`` lists and calls
the tools, its ``StreamableHTTPSessionManager`` does sessions, JSON-RPC and the Streamable HTTP
transport (POST answered with JSON or Server-Sent Events, GET for the server's stream,
DELETE ending a session) as an ASGI application, which :mod:`dbg.web` serves through
:mod:`dbg.asgi`. The SDK is built on anyio, so it runs as it is in the web server's trio run
(anyio's trio backend), in the collector's thread; the tools reach the UI's asyncio loop
through :meth:`textual.app.App.call_from_thread` (:mod:`dbg.ui.remote` holds their UI half).

Why the low-level ``Server`` and not ``MCPServer``: ``MCPServer`` configures the root logger
with a handler writing to stderr, which would draw over the terminal UI; and ten tools with
at most one string argument (and TextLog's two optional integers) need no signature
introspection.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from dbg.ui import remote
from dbg.ui.address import AddrError

if TYPE_CHECKING:
    from mcp import types
    from mcp.server.context import ServerRequestContext
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from dbg.ui.app import DebuggerApp

__all__ = ["TOOLS", "DbgMcp", "log_window"]

log = logging.getLogger("dbg.mcp")

#: seconds a tool waits for the UI's loop before it gives up (the UI is stuck or closing)
UI_TIMEOUT = 10.0
#: TextLog's lines by default, and at most: a whole log can be megabytes, more than an
#: agent's context holds; it pages with ``offset``
LOG_LINES = 200
LOG_LINES_MAX = 5000

INSTRUCTIONS = (
    "am dbg, the asyncmachine debugger: every machine's transitions, stepped through in a "
    "terminal UI. TextClients lists the machines; GoToMachAddr('mach://ID/TX') moves the "
    "cursor; TransitionSteps, TextLogReader and TextLog tell what the current transition did; "
    "TextScreen shows the whole screen; PressKey drives it like a keyboard (TextHelp lists keys); "
    "ToggleTool flips filters and views."
)


class ToolFailure(Exception):
    """A tool could not do its job; the message (one line) goes to the client."""


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what it returns (for the agent), its string argument if any, its
    optional integer arguments."""

    name: str
    description: str
    arg: tuple[str, str] | None = None  # (name, description)
    #: optional integer arguments: (name, description, least value)
    options: tuple[tuple[str, str, int], ...] = ()

    @property
    def required(self) -> list[str]:
        return [] if self.arg is None else [self.arg[0]]

    def tool(self) -> types.Tool:
        from mcp import types

        schema: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
        if self.arg is not None:
            schema["properties"][self.arg[0]] = {"type": "string", "description": self.arg[1]}
            schema["required"] = self.required
        for name, desc, least in self.options:
            schema["properties"][name] = {"type": "integer", "minimum": least, "description": desc}
        return types.Tool(name=self.name, description=self.description, input_schema=schema)

    def check_options(self, args: dict[str, Any]) -> str:
        """What is wrong with the optional arguments given ("" when nothing)."""
        for name, _, least in self.options:
            v = args.get(name)
            if v is not None and (type(v) is not int or v < least):
                return f"{self.name}: {name!r} is an integer of at least {least}, not {v!r}"
        return ""


TOOLS = (
    ToolSpec(
        "TextScreen",
        "The debugger's terminal screen as plain text, row by row as the terminal shows it: "
        "the address bar (mach://MACHINE/TX), the machine list, the selected machine's schema "
        "tree (active states, clocks), the log and the log reader, the transition bars and "
        "timelines ('Transition N / M'), the toolbar and the status bar. Call it after "
        "GoToMachAddr or PressKey to see what they did.",
    ),
    ToolSpec(
        "TextLog",
        "The selected machine's log as the log pane filters it: a '## TX_ID tTIME_SUM' heading "
        "per transition ('(current)' marks the cursor's), then that transition's log lines "
        "(+State / -State changes, handlers, errors). The whole history can be huge: by "
        f"default only its last {LOG_LINES} lines; a first line in brackets says when it was "
        "cut, how many lines there are and on which line the current transition is. "
        "'lines' asks for more or fewer, 'offset' skips the newest ones (page back with "
        "offset += lines).",
        options=(
            ("lines", f"how many lines (default {LOG_LINES}, at most {LOG_LINES_MAX})", 1),
            ("offset", "how many of the newest lines to skip (default 0: end at the last)", 0),
        ),
    ),
    ToolSpec(
        "TextLogReader",
        "What the log reader pane extracts from the current transition, a line per entry: Tx "
        "(id, mutation type, called states), Source (the machine and transition that caused "
        "it, or auto/local), Caused (transitions it caused elsewhere), Pipe-in/Pipe-out, "
        "Handlers run, Args, Queue, Time, Trace.",
    ),
    ToolSpec(
        "TextClients",
        "Every machine the debugger knows, one per line in the machine list's order (children "
        "indented under their parent): id, connected or disconnected, transition count, "
        "parent and tags. The ids are what GoToMachAddr takes.",
    ),
    ToolSpec(
        "TextHelp",
        "The help screen as text: every key and what it does (the names PressKey takes), the "
        "legend of the markers and colours, and the debugger's addresses.",
    ),
    ToolSpec(
        "NetworkGraph",
        "The network of machines at the cursor's time as XML (graph.xml): <machine id time> "
        "elements nested under their parents, each with its <state tick active auto multi> "
        "children and their relations, pipes and RPC links between machines.",
    ),
    ToolSpec(
        "TransitionSteps",
        "The current transition (tx.md): its address mach://MACHINE/TX, RFC3339 time, "
        "'[mutation type] called states', then a '- step' line per resolution step (states "
        "requested, added or removed by relations, handlers run, cancellation).",
    ),
    ToolSpec(
        "GoToMachAddr",
        "Move the cursor as the address bar does, and return the transition now current "
        "(as TransitionSteps). An unknown machine or transition is an error naming it.",
        (
            "url",
            "mach://MACHINE_ID[/TX_ID[/STEP]]: a machine (at its current transition), one "
            "transition of it, a step of the next one; a bare machine id works too, "
            "mach://ID?t=N picks by machine time sum",
        ),
    ),
    ToolSpec(
        "ToggleTool",
        "Flip one of the debugger's toggles, as its key or toolbar button does, and return "
        "its new state ('NAME on' or 'NAME off'; 'timelines N' for timelines).",
        (
            "tool",
            "a filter that hides transitions from navigation, counts and the log: canceled, "
            "queued, auto, empty, health (Healthcheck/Heartbeat only), checks (Can* dry "
            "runs), disconn (disconnected machines), rpc (aRPC and relay machines), group "
            "(outside the selected schema group); or tail (follow new transitions), play "
            "(2 transitions/s), rain (the rain view), reader (the log reader pane), expand "
            "(every relation in the schema tree), times (the log's per-second time labels), "
            "traces (stack traces under [error] log lines), wrap (wrap long log lines), "
            "timelines (cycles how many timelines show: 2 both, 0 none, 1 transitions only)",
        ),
    ),
    ToolSpec(
        "PressKey",
        "Press one key in the debugger as from its terminal, and wait until the screen shows "
        "its effect; returns the address, 'transition N / M' (the cursor among the "
        "transitions shown; right at N = M stays, as at the keyboard) and the focused pane "
        "(TextScreen shows the rest). Left/right move the transition cursor whichever pane "
        "has the focus, except the steps timeline (steps) and the toolbar (its buttons). "
        "Unknown keys are an error listing the keys taken.",
        (
            "key",
            "a bound key (TextHelp lists them), in Textual's names: left/right (previous/next "
            "transition), home/end, alt+l/alt+h (jump), space (play), alt+v (tail), "
            "question_mark (help), escape, ctrl+g; or enter, tab, shift+tab, up, down; or one "
            "printable character (type-to-search in the machine list or the schema)",
        ),
    ),
)
_BY_NAME = {t.name: t for t in TOOLS}
#: the tools that are one call on the UI's loop (see DbgMcp._run for the others)
_UI_TOOLS: dict[str, Callable[..., Any]] = {
    "TextScreen": remote.screen_text,
    "TextLogReader": remote.reader,
    "TextClients": remote.clients,
    "TextHelp": remote.help_page,
    "TransitionSteps": remote.transition,
    "GoToMachAddr": remote.go_to,
    "PressKey": remote.press,
    "ToggleTool": remote.toggle,
}


def _text(text: str, *, error: bool = False) -> types.CallToolResult:
    from mcp import types

    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


def _graph_xml(dumps: list) -> str:
    from vis.graph import Graph
    from vis.inspect_dump import inspect_xml

    return inspect_xml(Graph.from_dump(dumps))


class DbgMcp:
    """The MCP server of one debugger. :attr:`app` is set once the UI exists; serve
    :meth:`__call__` (ASGI) while :meth:`running` is entered, in a trio run."""

    def __init__(self, ui_timeout: float = UI_TIMEOUT) -> None:
        self.app: DebuggerApp | None = None
        self.ui_timeout = ui_timeout
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve sessions while entered. The SDK's objects are made here, in the run that
        serves them: anyio's locks take the async library of the thread that makes them. The
        SDK is imported here too, in a worker thread: it takes about 2 s, which neither the UI
        nor the collector should wait for."""
        await trio.to_thread.run_sync(importlib.import_module, "mcp.server.lowlevel")
        from mcp.server.lowlevel import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        server: Server[Any] = Server(
            "am-dbg",
            version=_version(),
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        # Host and Origin are checked by the web server for every path (dbg.web)
        manager = StreamableHTTPSessionManager(server)
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[..., Any],
        send: Callable[..., Any],
    ) -> None:
        if self._manager is None:
            raise RuntimeError("DbgMcp is served only while running() is entered")
        await self._manager.handle_request(scope, receive, send)

    # ----- the protocol's handlers

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        from mcp import types

        return types.ListToolsResult(tools=[t.tool() for t in TOOLS])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = _BY_NAME.get(params.name)
        if tool is None:
            return _text(f"unknown tool {params.name!r}; tools: {', '.join(_BY_NAME)}", error=True)
        args = dict(params.arguments or {})
        wanted = tool.required
        extra = set(args) - set(wanted) - {name for name, _, _ in tool.options}
        for name in wanted:
            if not isinstance(args.get(name), str):
                return _text(f"{tool.name} needs {name!r}, a string", error=True)
        if extra:
            return _text(f"{tool.name} takes no {', '.join(sorted(extra))}", error=True)
        if problem := tool.check_options(args):
            return _text(problem, error=True)
        options = {name: args[name] for name, _, _ in tool.options if args.get(name) is not None}
        try:
            return _text(await self._run(tool.name, *(args[n] for n in wanted), **options))
        except (ToolFailure, AddrError, remote.Refused) as err:
            return _text(str(err), error=True)
        except Exception as err:  # a bug: the client hears of it, the server keeps serving
            log.exception("dbg: MCP tool %s failed", tool.name)
            return _text(f"{tool.name} failed: {type(err).__name__}: {err}", error=True)

    async def _run(self, name: str, *args: str, **options: int) -> str:
        if name == "NetworkGraph":
            dumps = await self._ui(remote.graph_snapshot)
            return await trio.to_thread.run_sync(_graph_xml, dumps)
        if name == "TextLog":
            render = await self._ui(remote.log)
            text = await trio.to_thread.run_sync(render)
            lines = min(options.get("lines", LOG_LINES), LOG_LINES_MAX)
            return log_window(text, lines, options.get("offset", 0))
        return await self._ui(_UI_TOOLS[name], *args)

    async def _ui(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(app, *args)`` on the UI's loop (awaited there if it is a coroutine)."""
        app = self.app
        if app is None or not app.is_running:
            raise ToolFailure("the debugger's UI is not running")
        call = partial(app.call_from_thread, fn, app, *args)
        with trio.move_on_after(self.ui_timeout):
            try:
                return await trio.to_thread.run_sync(call, abandon_on_cancel=True)
            except RuntimeError as err:  # the app stopped meanwhile
                raise ToolFailure(f"the debugger's UI is not running ({err})") from err
        raise ToolFailure(f"the debugger's UI did not answer within {self.ui_timeout:g} s")


def log_window(text: str, lines: int, offset: int = 0) -> str:
    """At most ``lines`` lines of ``text`` ending ``offset`` lines before its end. When that
    is not all of it, a first line in brackets says which lines these are, where the
    current transition's heading is, and how to ask for the ones before or after."""
    all_lines = text.splitlines()
    total = len(all_lines)
    end = max(0, total - offset)
    start = max(0, end - lines)
    if start == 0 and end == total:
        return text
    cur = next((k for k, line in enumerate(all_lines) if line.endswith(" (current)")), -1)
    notes = [f"lines {start + 1}-{end} of {total}" if end > start else f"no lines: {total} in all"]
    if cur >= 0:
        first = max(0, total - cur - lines)  # the window that starts at its heading
        notes.append(f"the current transition at line {cur + 1} (offset={first} from it on)")
    if start:
        notes.append(f"earlier: offset={total - start}")
    if end < total:
        notes.append(f"later: offset={max(0, total - end - lines)}")
    return f"[{'; '.join(notes)}]\n" + "\n".join(all_lines[start:end]) + "\n"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asyncmachine-wasm")
    except PackageNotFoundError:
        return "0"
