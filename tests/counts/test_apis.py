"""Count API contract details found by the API fuzz run (tests/fuzz)."""

from __future__ import annotations

from counts.models import CountKind
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create
from counts.services.sessions import count_session_start
from tests.counts.conftest import scan


def test_run_lines_match_their_documented_schema_for_associates_too(
    organization, warehouse, manager, associate, associate_api, manager_api
):
    # Blind counts hide book and variance from associates; the schema required them.
    run = count_run_create(
        organization=organization, facility=warehouse.facility, name="Hard", kind=CountKind.HARD, actor=manager
    )
    session = count_session_start(run=run, user=associate, device_id="phone")
    count_events_ingest(
        session=session, actor=associate, events=[scan(warehouse.locations[0].code, warehouse.barcodes[0].value)]
    )
    schema = manager_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    line_schema = schema["components"]["schemas"]["RunLinesApiOutput"]

    rows = associate_api.get(f"/api/runs/{run.pk}/lines").json()["results"]

    assert {"book", "variance"}.isdisjoint(line_schema["required"])
    assert rows
    for row in rows:
        assert set(line_schema["required"]) <= set(row) <= set(line_schema["properties"])
