"""Dumps, the graph model and the diagram renderer."""
