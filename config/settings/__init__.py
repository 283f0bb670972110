"""Settings, one module per concern. Every value comes from the environment (see config.env) with a
default that runs the embedded setup started by ``./run``."""

from .core import *  # noqa: F401,F403
from .database import *  # noqa: F401,F403
from .celery import *  # noqa: F401,F403
from .api import *  # noqa: F401,F403
from .email import *  # noqa: F401,F403
from .intake import *  # noqa: F401,F403
