"""Property-based: every operation of the OpenAPI spec, fed generated input over real HTTP, never
answers a server error and answers what the spec says. Bounded: a few examples per operation, one
server for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from api.app import create_app
from shared.db.database import open_database
from shared.settings import load_settings
from tests.api.conftest import ADMIN_TOKEN, LiveServer, farm_alive, seed, serve
from tests.conftest import RedisServer

# the spec is static: build it from an app that is never started
schema = schemathesis.openapi.from_dict(create_app(load_settings(env="test")).openapi())


@pytest.fixture(scope="module")
def seeded_server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A seeded farm with live heartbeats (so /readyz is 200), served once for every operation."""
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    settings_ = load_settings(
        data_dir=data_dir, redis_url=redis_server.url, env="test", admin_token=ADMIN_TOKEN
    )
    db = open_database(settings_, migrate=True)
    seed(db)
    farm_alive(redis_server.url)
    try:
        with serve(settings_) as server:
            yield server
    finally:
        db.close()


@schema.parametrize()
@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, seeded_server: LiveServer) -> None:
    case.call_and_validate(
        base_url=seeded_server.url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )
