"""Settings, one module per concern. Every value comes from the environment (see config.env) with a
default that runs the embedded setup started by ``./run``."""

# ruff: noqa: I001 - kept in this order: core first, the rest build on it
from .core import *  # noqa: F403
from .database import *  # noqa: F403
from .celery import *  # noqa: F403
from .api import *  # noqa: F403
from .email import *  # noqa: F403
from .intake import *  # noqa: F403
from .reports import *  # noqa: F403
