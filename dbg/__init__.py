"""The debugger: telemetry collector, history store, export and import."""
