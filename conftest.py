from __future__ import annotations

import pytest

from profiles.models import App, Workspace
from profiles.tests.factories import AppFactory, WorkspaceFactory


@pytest.fixture
def workspace(db: None) -> Workspace:
    return WorkspaceFactory(name="Acme", slug="acme")


@pytest.fixture
def app(workspace: Workspace) -> App:
    return AppFactory(workspace=workspace, name="Acme iOS")
