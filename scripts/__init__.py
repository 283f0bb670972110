"""Helpers behind the top-level ``./run`` script (the launcher and the test command)."""
