"""Benchmarks: each module is a script (``.venv/bin/python -m bench.<name> --help``) that starts what it
measures, runs for a bounded time, prints a table and cleans up after itself."""
