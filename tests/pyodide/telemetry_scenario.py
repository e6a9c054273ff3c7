"""Inside Pyodide: a machine reports to the debugger over its WebSocket path, set up only by
the environment (``AM_DBG_ADDR``), as a page's machines would be. Prints one JSON line."""

import json
import os
import sys


async def main() -> None:
    from machines import Machine, State
    from machines import telemetry_browser as tb

    m = Machine({"A": State(), "B": State(require=["A"])}, id="browser-bar", tags=["ui"])
    m.add(["A", "B"])
    m.remove("A")  # B requires A: both go
    m.add("B")  # canceled: A missing
    sender = tb.sender_for(tb.url_from_env(os.environ["AM_DBG_ADDR"]))
    flushed = await sender.flush(20)
    print(
        json.dumps(
            {
                "platform": sys.platform,
                "flushed": flushed,
                "sent": sender.sent_frames,
                "attached": any(isinstance(t, tb.DbgTracer) for t in m.tracers),
            }
        )
    )
