"""Fault-test fixtures: the worker farm as real processes (``tests.support.farm``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.farm import Farm, running_farm
from tests.support.replica import Replica


@pytest.fixture
def make_farm(tmp_path: Path, redis_url: str, replica: Replica) -> Iterator[Callable[..., Farm]]:
    """Build the farm (SQLite in ``tmp_path``, the private Redis, the replica) with extra ``MTA_*``
    settings; every process it started is stopped afterwards, killed if need be."""
    with ExitStack() as stack:

        def make(**env: str) -> Farm:
            return stack.enter_context(running_farm(tmp_path / "farm", redis_url, replica.page_url, **env))

        yield make
