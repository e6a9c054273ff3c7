"""The `am` command line: one entry point for every tool of the project."""
