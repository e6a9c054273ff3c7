"""The relay: TCP-over-WebSocket tunnels and the static web server."""
