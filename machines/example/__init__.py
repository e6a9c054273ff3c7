"""The WASM example: ``server-foo`` in a server process, ``browser-bar`` in every browser tab.

- :mod:`.schemas`: the Shared, Foo and Bar schemas and the ``Msg`` argument;
- :mod:`.config`: addresses and timings (a ``.env`` file, overridden by the environment);
- :mod:`.server`: server-foo's handlers and the server process (aRPC mux, REPL, relay);
- :mod:`.browser`: the browser-side program, run by the page (Pyodide) and by ``--bars``
  peers (CPython), over the same relay WebSocket paths;
- :mod:`.web_io` (Pyodide only) and :mod:`.trio_io` (CPython only): the WebSocket and the
  UI of each host.
"""
