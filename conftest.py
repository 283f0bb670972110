from __future__ import annotations

from typing import cast

import pytest
from django.db import connections

from config.celery import app as celery_app
from profiles.models import App, Workspace
from profiles.tests.factories import AppFactory, WorkspaceFactory

# Live-server request threads would otherwise keep their database connections open past the test,
# and the test database could not be dropped at the end of the run. (Settings are loaded before
# this file, so the connection settings are changed in place.)
connections.settings["default"]["CONN_MAX_AGE"] = 0
connections.settings["default"]["CONN_HEALTH_CHECKS"] = False

# Every task module imported now, while the Celery app is registered as active: a shared task
# registers with the apps active when its module is first imported, and tests that drop the
# broker's pools with ``celery_app.close()`` also deregister the app, so a module first imported
# after one of them (``campaigns.tasks`` in a run of only channels' and the crash tests) would
# have its tasks missing ("NotRegistered").
celery_app.loader.import_default_modules()


@pytest.fixture
def workspace(db: None) -> Workspace:
    return cast(Workspace, WorkspaceFactory(name="Acme", slug="acme"))


@pytest.fixture
def app(workspace: Workspace) -> App:
    return cast(App, AppFactory(workspace=workspace, name="Acme iOS"))
