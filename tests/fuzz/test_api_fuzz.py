"""Property-based API fuzzing: schemathesis drives every operation of the API schema in process.

Each operation gets the schema's examples plus generated valid and invalid requests (positive and
negative modes) from a fixed seed, so a CI failure replays locally; they run through the Django
WSGI app on the test database, as a manager and as an associate, with API and edit tokens. A
response must not be a 5xx, must use a documented status code and content type, and its body must
match the documented schema.

Every example runs in a savepoint that is rolled back, so no example sees another's writes (a
revoked token, a submitted session, a cancelled run): each starts from the same seed data.

The schema is built when the module is collected (schemathesis makes one test per operation
from it, before any database exists); `test_fuzzed_schema_is_the_one_served` proves it is the
document `/api/schema/` serves. Budget: MAX_EXAMPLES generated requests per operation and role,
plus the schema's examples; set FUZZ_MAX_EXAMPLES (and another FUZZ_SEED) to dig deeper locally.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from tests.conftest import token_client

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("FUZZ_SEED", "20261122"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _api_schema() -> dict:
    """The OpenAPI document as `/api/schema/` renders it (SpectacularAPIView's generator and renderer)."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        # The coverage phase enumerates every boundary of every field (hundreds of requests per
        # operation) and the stateful phase follows response links we don't declare; examples
        # and fuzzing keep the run within CI's budget.
        "phases": {
            "examples": {"enabled": True},
            "fuzzing": {"enabled": True},
            "coverage": {"enabled": False},
            "stateful": {"enabled": False},
        },
    }
)
schema = schemathesis.openapi.from_dict(_api_schema(), config=CONFIG)
schema.app = application


@pytest.fixture
def _connection_kept_across_requests() -> Iterator[None]:
    """Keep the test transaction's connection open while the WSGI app serves requests.

    Django closes connections at the start and end of each request; inside the test transaction
    that would close the connection holding the seed. Django's own test client does the same.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def manager_headers(fuzz_world, _connection_kept_across_requests) -> dict[str, str]:
    return fuzz_world.manager_headers


@pytest.fixture
def associate_headers(fuzz_world, _connection_kept_across_requests) -> dict[str, str]:
    return fuzz_world.associate_headers


def _call_and_validate(case: schemathesis.Case, headers: dict[str, str]) -> None:
    # Rate-limit counters live in the cache; a fuzz run is far above any person's rate.
    cache.clear()
    with transaction.atomic():
        response = case.call(headers=headers)
        transaction.set_rollback(True)
    case.validate_response(response, checks=CHECKS, headers=headers)


# Function-scoped fixtures are safe across examples here: every example is rolled back.
FUZZ_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.django_db
@schema.parametrize()
@FUZZ_SETTINGS
def test_api_as_manager(case: schemathesis.Case, manager_headers: dict[str, str]) -> None:
    _call_and_validate(case, manager_headers)


@pytest.mark.django_db
@schema.parametrize()
@FUZZ_SETTINGS
def test_api_as_associate(case: schemathesis.Case, associate_headers: dict[str, str]) -> None:
    _call_and_validate(case, associate_headers)


@pytest.mark.django_db
def test_fuzzed_schema_is_the_one_served(manager) -> None:
    response = token_client(manager).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    assert json.loads(response.content) == _api_schema()
    assert len(schema.raw_schema["paths"]) >= 40
