"""Admin for profiles, split by area: workspaces/apps/keys, profiles/events, and CSV imports."""

from . import imports, people, workspaces  # noqa: F401  (registration happens on import)
