"""The NetSuite adapter against NetSuite's published signing example and the strict fake."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import requests

from adapters.interface import (
    AdjustmentBatch,
    AdjustmentLine,
    PermanentBackendError,
    TransientBackendError,
    backend_for,
)
from adapters.netsuite import default_rest_url, default_restlet_url, validate_settings
from adapters.netsuite.auth import TokenBasedAuth, account_host, account_realm
from tests.adapters.support import connect, warehouse

pytestmark = pytest.mark.django_db


def test_signing_reproduces_netsuites_published_example():
    auth = TokenBasedAuth(
        account_id="1234567",
        consumer_key="ef40afdd8abaac111b13825dd5e5e2ddddb44f86d5a0dd6dcf38c20aae6b67e4",
        consumer_secret="d26ad321a4b2f23b0741c8d38392ce01c3e23e109df6c96eac6d099e9ab9e8b5",
        token_id="2b0ce516420110bcbd36b69e99196d1b7f6de3c6234c5afb799b73d87569f5cc",
        token_secret="c29a677df7d5439a458c063654187e3d678d73aca8e3c9d8bea1478a3eb0d295",
        nonce="fjaLirsIcCGVZWzBX0pg",
        timestamp="1508242306",
    )
    request = requests.Request(
        "POST",
        "https://1234567.restlets.api.netsuite.com/app/site/hosting/restlet.nl"
        "?script=6&deploy=1&customParam=someValue&testParam=someOtherValue",
        data=b'{"the body": "is not signed"}',
        headers={"Content-Type": "application/json"},
        auth=auth.requests_auth(),
    ).prepare()

    header = request.headers["Authorization"]
    header = header.decode() if isinstance(header, bytes) else header
    assert 'realm="1234567"' in header
    assert 'oauth_signature_method="HMAC-SHA256"' in header
    assert 'oauth_signature="i7MEtGwhCTIZbTsTrNGw9LdcERn4wsjt5C7TxmKWIfU%3D"' in header


def test_realm_and_hosts_follow_the_account_id():
    assert account_realm("1234567-sb1") == "1234567_SB1"
    assert account_host("1234567_SB1") == "1234567-sb1"
    assert default_restlet_url("1234567_SB1").startswith("https://1234567-sb1.restlets.api.netsuite.com/")
    assert "script=customscript_cc_adjust&deploy=customdeploy_cc_adjust" in default_restlet_url("1234567")
    assert default_rest_url("1234567_SB1") == "https://1234567-sb1.suitetalk.api.netsuite.com"


def test_settings_validation_names_each_bad_field():
    errors = validate_settings({"account_id": "acme", "subsidiary_id": "x", "concurrency": 0, "rest_url": "ftp://h"})
    assert set(errors) == {"account_id", "subsidiary_id", "adjustment_account_id", "concurrency", "rest_url"}


def test_reads_stream_every_page_as_typed_records(organization, netsuite):
    netsuite.add_location(1, "Dallas DC")
    for index in range(2500):
        netsuite.add_item(1000 + index, f"SKU{index:05d}", averagecost=Decimal("1.25"))
        netsuite.set_on_hand(1000 + index, 1, Decimal(index % 7), committed=Decimal(index % 2))
    backend = backend_for(connect(organization, netsuite))

    items = list(backend.fetch_items())
    balances = list(backend.fetch_balances())

    assert len(items) == 2500
    assert [item.external_id for item in items[:2]] == ["1000", "1001"]
    assert items[0].average_cost == Decimal("1.25")
    assert len(balances) == 2500
    assert balances[3].on_hand == Decimal(3)
    assert balances[3].reserved == Decimal(1)
    assert isinstance(balances[3].on_hand, Decimal)


def batch(external_id: str, *lines: tuple[str, str, str]) -> AdjustmentBatch:
    return AdjustmentBatch(
        external_id=external_id,
        location_external_id="10",
        tran_date=date(2026, 11, 22),
        memo="test",
        lines=tuple(AdjustmentLine(item, location, Decimal(delta), "line") for item, location, delta in lines),
    )


def test_a_batch_is_applied_once_even_when_sent_twice(organization, netsuite):
    warehouse(netsuite)
    backend = backend_for(connect(organization, netsuite))

    first = backend.push_adjustments(batch("CC-1-B1", ("100", "10", "-3"), ("101", "10", "2.5")))
    second = backend.push_adjustments(batch("CC-1-B1", ("100", "10", "-3"), ("101", "10", "2.5")))

    assert second.record_id == first.record_id
    assert (first.duplicate, second.duplicate) == (False, True)
    assert netsuite.on_hand(100, 10) == Decimal(97)
    assert netsuite.on_hand(101, 10) == Decimal("102.5")
    assert backend.find_batch("CC-1-B1").record_id == first.record_id
    assert backend.find_batch("CC-1-B404") is None


def test_a_refused_batch_is_permanent_and_changes_nothing(organization, netsuite):
    warehouse(netsuite)
    backend = backend_for(connect(organization, netsuite))

    with pytest.raises(PermanentBackendError) as refused:
        backend.push_adjustments(batch("CC-1-B2", ("100", "10", "-3"), ("999", "10", "1")))

    assert "INVALID_KEY_OR_REF" in str(refused.value)
    assert netsuite.on_hand(100, 10) == Decimal(100)
    assert backend.find_batch("CC-1-B2") is None


def test_wrong_credentials_are_a_connection_problem_not_the_batchs(organization, netsuite):
    warehouse(netsuite)
    backend = backend_for(connect(organization, netsuite, token_secret="not-the-secret"))

    with pytest.raises(TransientBackendError) as refused:
        backend.push_adjustments(batch("CC-1-B3", ("100", "10", "-3")))

    assert "credentials" in str(refused.value)
    assert not refused.value.retry_soon
    assert netsuite.adjustments == {}
