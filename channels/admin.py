from . import admin_inbox  # noqa: F401
