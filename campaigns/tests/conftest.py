"""Fixtures shared by the tests of triggered campaigns (``trigger_helpers``): modules opt in with
``pytest.mark.usefixtures("fresh_rules", "trigger_clock")``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from .trigger_helpers import NOW, no_rules_cache


@pytest.fixture
def fresh_rules(settings: Any) -> None:
    """Campaign rules read fresh on every batch (the tests change campaigns between events)."""
    no_rules_cache(settings)


@pytest.fixture
def trigger_clock() -> Iterator[Any]:
    """Time stands at ``trigger_helpers.NOW``; the test moves it with ``trigger_clock.shift``."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller
