"""The relay: TCP-over-WebSocket tunnels and the static web server.

Browsers cannot open TCP sockets; the relay gives them TCP endpoints over WebSocket on the
same HTTP port that serves the page:

- ``/listen/<id>/<host:port>``: the relay listens there for one TCP peer and pipes bytes;
- ``/dial/<id>/<host:port>``: the relay dials there and pipes bytes.

Library use (inside a trio nursery)::

    from relay import RelayConfig, open_relay

    async def handler(stream, request):   # stream: a trio.abc.Stream over the WebSocket
        ...                              # e.g. run an aRPC server on it

    async with open_relay(RelayConfig(listen_addr="localhost:0", static_dir=Path("web"),
                                      allow=("localhost:*",))) as relay:
        relay.add_matcher("dial", r"^browser-foo-", handler)
        print(relay.url)

or ``relay = await nursery.start(serve_relay, config)``.
"""

from relay.config import RelayConfig
from relay.matchers import Handler, Matcher, TunnelRequest
from relay.security import TOKEN_PROTOCOL_PREFIX
from relay.server import Relay, open_relay, serve_relay
from relay.wsstream import WebSocketStream

__all__ = [
    "TOKEN_PROTOCOL_PREFIX",
    "Handler",
    "Matcher",
    "Relay",
    "RelayConfig",
    "TunnelRequest",
    "WebSocketStream",
    "open_relay",
    "serve_relay",
]
