"""Tests of the NetSuite fake itself, driven over real HTTP with requests.

Requests are signed by requests_oauthlib (oauthlib underneath), an implementation independent
of the fake's verifier; the verifier's own signature function is pinned to NetSuite's
published example.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests
from requests_oauthlib import OAuth1

from tests.fakes.netsuite import FakeNetSuite, tba_signature

CONSUMER_KEY = "ck-cyclecount"
CONSUMER_SECRET = "cs-cyclecount"
TOKEN_ID = "tk-cyclecount"
TOKEN_SECRET = "ts-cyclecount"
TIMEOUT = 5


def _signer(*, realm: str = "1234567_SB1", method: str = "HMAC-SHA256", **overrides: Any) -> OAuth1:
    return OAuth1(
        overrides.pop("client_key", CONSUMER_KEY),
        client_secret=CONSUMER_SECRET,
        resource_owner_key=TOKEN_ID,
        resource_owner_secret=TOKEN_SECRET,
        signature_method=method,
        realm=realm,
        **overrides,
    )


def _new_fake(**options: Any) -> FakeNetSuite:
    fake = FakeNetSuite(
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        token_id=TOKEN_ID,
        token_secret=TOKEN_SECRET,
        **options,
    )
    fake.add_location(1, "Main", subsidiary=1)
    fake.add_location(2, "Bin A", parent=1, subsidiary=1)
    fake.add_location(3, "Closed", subsidiary=1, inactive=True)
    fake.add_location(9, "Elsewhere", subsidiary=2)
    fake.add_item(100, "SKU-100", upccode="0123456789012", averagecost=Decimal("2.50"))
    fake.add_item(101, "SKU-101", averagecost=Decimal("0.5"))
    fake.add_item(102, "SKU-OLD", inactive=True)
    fake.set_on_hand(100, 1, Decimal("10"), committed=Decimal("2"))
    fake.set_on_hand(101, 1, Decimal("5"))
    return fake


@pytest.fixture
def fake():
    with _new_fake() as ns:
        yield ns


def _adjustment(external_id: str = "CC-1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "externalId": external_id,
        "subsidiaryId": "1",
        "accountId": 54,
        "locationId": 1,
        "tranDate": "2024-05-01",
        "memo": "Cycle count 7",
        "lines": [
            {"itemId": 100, "locationId": "1", "adjustQtyBy": -3, "memo": "short"},
            {"itemId": "101", "locationId": 2, "adjustQtyBy": "1.5", "memo": ""},
        ],
    }
    body.update(changes)
    return body


def _post(fake: FakeNetSuite, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(fake.restlet_url, json=body, auth=kwargs.pop("auth", _signer()), timeout=TIMEOUT, **kwargs)


def _get(fake: FakeNetSuite, external_id: str) -> requests.Response:
    return requests.get(fake.restlet_url, params={"externalId": external_id}, auth=_signer(), timeout=TIMEOUT)


def _suiteql(fake: FakeNetSuite, q: str, *, prefer: str | None = "transient", **params: Any) -> requests.Response:
    headers = {"Prefer": prefer} if prefer else {}
    return requests.post(
        fake.suiteql_url, params=params, json={"q": q}, headers=headers, auth=_signer(), timeout=TIMEOUT
    )


def _restlet_error(response: requests.Response) -> dict[str, str]:
    return response.json()["error"]


def _problem(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert body["status"] == response.status_code
    [detail] = body["o:errorDetails"]
    return detail


# --- authentication ----------------------------------------------------------------------


def test_tba_signature_matches_netsuites_published_example():
    oauth = {
        "oauth_consumer_key": "ef40afdd8abaac111b13825dd5e5e2ddddb44f86d5a0dd6dcf38c20aae6b67e4",
        "oauth_token": "2b0ce516420110bcbd36b69e99196d1b7f6de3c6234c5afb799b73d87569f5cc",
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": "1508242306",
        "oauth_nonce": "fjaLirsIcCGVZWzBX0pg",
        "oauth_version": "1.0",
    }

    signature = tba_signature(
        "POST",
        "https://1234567.restlets.api.netsuite.com/app/site/hosting/restlet.nl"
        "?script=6&deploy=1&customParam=someValue&testParam=someOtherValue",
        oauth | {"realm": "1234567"},  # realm is not part of the signature
        "d26ad321a4b2f23b0741c8d38392ce01c3e23e109df6c96eac6d099e9ab9e8b5",
        "c29a677df7d5439a458c063654187e3d678d73aca8e3c9d8bea1478a3eb0d295",
    )

    assert signature == "i7MEtGwhCTIZbTsTrNGw9LdcERn4wsjt5C7TxmKWIfU="


def test_a_correctly_signed_request_is_accepted(fake):
    response = _get(fake, "nothing-yet")

    assert response.status_code == 200
    assert response.json()["error"]["code"] == "RCRD_DSNT_EXIST"
    assert fake.auth_failures == []


@pytest.mark.parametrize(
    ("signer", "reason"),
    [
        pytest.param(lambda: None, "parameter_absent", id="no-header"),
        pytest.param(lambda: _signer(realm="1234567_sb1"), "realm_rejected", id="realm-lower-case"),
        pytest.param(lambda: _signer(realm="1234567-SB1"), "realm_rejected", id="realm-hyphen"),
        pytest.param(lambda: _signer(method="HMAC-SHA1"), "signature_method_rejected", id="hmac-sha1"),
        pytest.param(lambda: _signer(client_key="someone-else"), "consumer_key_unknown", id="unknown-consumer"),
        # A minute beyond the allowed skew either way: whole seconds and the time the request
        # takes must not bring a timestamp back inside the window (a second's margin was flaky).
        pytest.param(lambda: _signer(timestamp=str(int(time.time()) - 360)), "timestamp_refused", id="stale-timestamp"),
        pytest.param(
            lambda: _signer(timestamp=str(int(time.time()) + 360)), "timestamp_refused", id="future-timestamp"
        ),
    ],
)
def test_restlet_refuses_bad_logins_with_netsuites_401(fake, signer, reason):
    response = requests.post(fake.restlet_url, json=_adjustment(), auth=signer(), timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.json() == {"error": {"code": "INVALID_LOGIN_ATTEMPT", "message": "Invalid login attempt."}}
    assert f'error="{reason}"' in response.headers["WWW-Authenticate"]
    assert fake.auth_failures == [reason]
    assert fake.adjustments == {}
    assert fake.on_hand(100, 1) == Decimal("10")


def test_a_tampered_query_parameter_breaks_the_signature(fake):
    prepared = requests.Request("GET", fake.restlet_url + "&externalId=CC-A", auth=_signer()).prepare()
    prepared.url = fake.restlet_url + "&externalId=CC-B"

    response = requests.Session().send(prepared, timeout=TIMEOUT)

    assert response.status_code == 401
    assert fake.auth_failures == ["signature_invalid"]


def test_a_replayed_nonce_is_refused(fake):
    prepared = requests.Request("GET", fake.restlet_url + "&externalId=CC-A", auth=_signer()).prepare()
    session = requests.Session()

    first = session.send(prepared, timeout=TIMEOUT)
    replay = session.send(prepared, timeout=TIMEOUT)

    assert first.status_code == 200
    assert replay.status_code == 401
    assert fake.auth_failures == ["nonce_used"]


def test_rest_web_services_refuse_bad_logins_with_the_problem_body(fake):
    response = requests.post(
        fake.suiteql_url,
        json={"q": "SELECT id FROM item ORDER BY id"},
        headers={"Prefer": "transient"},
        auth=_signer(method="HMAC-SHA1"),
        timeout=TIMEOUT,
    )

    assert response.status_code == 401
    assert response.json() == {
        "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2",
        "title": "Unauthorized",
        "status": 401,
        "o:errorDetails": [
            {
                "detail": "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
                "Setup > Users/Roles > User Management > View Login Audit Trail.",
                "o:errorCode": "INVALID_LOGIN",
            }
        ],
    }


# --- concurrency ---------------------------------------------------------------------------


def _in_parallel(count: int, call) -> list[requests.Response]:
    start = threading.Barrier(count)

    def run(_: int) -> requests.Response:
        start.wait()
        return call()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_restlet_requests_over_the_concurrency_limit_are_refused_with_sss_request_limit_exceeded():
    with _new_fake(concurrency_limit=2, latency=0.3) as fake:
        responses = _in_parallel(5, lambda: _get(fake, "CC-X"))

        refused = [r for r in responses if r.status_code != 200]
        assert len(responses) - len(refused) >= 2  # the first two arrivals always fit
        assert refused
        assert len(refused) == fake.limit_breaches
        for response in refused:
            assert response.status_code == 400
            assert _restlet_error(response)["code"] == "SSS_REQUEST_LIMIT_EXCEEDED"
        assert fake.max_concurrent_seen >= 3
        assert fake.requests_made == 5


def test_rest_requests_over_the_concurrency_limit_get_429():
    with _new_fake(concurrency_limit=1, latency=0.3) as fake:
        responses = _in_parallel(2, lambda: _suiteql(fake, "SELECT id FROM item ORDER BY id"))

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 429]
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["title"] == "Too Many Requests"
        assert _problem(refused)["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
        assert fake.limit_breaches == 1


def test_limit_next_refuses_deterministically_and_the_retry_must_be_signed_again(fake):
    fake.limit_next(1)
    prepared = requests.Request("POST", fake.restlet_url, json=_adjustment(), auth=_signer()).prepare()
    session = requests.Session()

    refused = session.send(prepared, timeout=TIMEOUT)
    same_signature_again = session.send(prepared, timeout=TIMEOUT)
    resigned = _post(fake, _adjustment())

    assert refused.status_code == 400
    assert _restlet_error(refused)["code"] == "SSS_REQUEST_LIMIT_EXCEEDED"
    assert same_signature_again.status_code == 401  # the refused request spent its nonce
    assert resigned.json()["ok"] is True
    assert fake.limit_breaches == 1


# --- the RESTlet ---------------------------------------------------------------------------


def test_post_creates_one_adjustment_and_applies_every_line(fake):
    response = _post(fake, _adjustment())

    assert response.status_code == 200
    body = response.json()
    assert body == {"ok": True, "id": body["id"]}
    assert isinstance(body["id"], str)
    assert fake.on_hand(100, 1) == Decimal("7")
    assert fake.on_hand(101, 2) == Decimal("1.5")
    record = fake.adjustments["CC-1"]
    assert record["id"] == body["id"]
    assert record["subsidiaryId"] == 1
    assert record["accountId"] == 54
    assert record["tranDate"] == "2024-05-01"
    assert [line["adjustQtyBy"] for line in record["lines"]] == [Decimal("-3"), Decimal("1.5")]
    assert fake.adjustment_posts == 1


def test_a_repeated_external_id_answers_duplicate_without_a_second_effect(fake):
    first = _post(fake, _adjustment()).json()

    again = _post(fake, _adjustment(lines=[{"itemId": 100, "locationId": 1, "adjustQtyBy": -7}])).json()

    assert again == {"ok": True, "id": first["id"], "duplicate": True}
    assert fake.on_hand(100, 1) == Decimal("7")
    assert len(fake.adjustments) == 1
    assert fake.duplicates_refused == 1


def test_concurrent_posts_of_one_external_id_create_it_once(fake):
    responses = _in_parallel(4, lambda: _post(fake, _adjustment("CC-RACE")))

    bodies = [r.json() for r in responses]
    assert all(b["ok"] for b in bodies)
    assert sum(1 for b in bodies if not b.get("duplicate")) == 1
    assert len({b["id"] for b in bodies}) == 1
    assert fake.on_hand(100, 1) == Decimal("7")


@pytest.mark.parametrize(
    ("changes", "code", "fragment"),
    [
        pytest.param(
            {
                "lines": [
                    {"itemId": 100, "locationId": 1, "adjustQtyBy": -1},
                    {"itemId": 999, "locationId": 1, "adjustQtyBy": 1},
                ]
            },
            "INVALID_KEY_OR_REF",
            "item reference key 999",
            id="unknown-item-on-second-line",
        ),
        pytest.param(
            {"lines": [{"itemId": 102, "locationId": 1, "adjustQtyBy": 1}]},
            "INVALID_KEY_OR_REF",
            "item reference key 102",
            id="inactive-item",
        ),
        pytest.param(
            {
                "lines": [
                    {"itemId": 100, "locationId": 1, "adjustQtyBy": -1},
                    {"itemId": 100, "locationId": 3, "adjustQtyBy": 1},
                ]
            },
            "INVALID_KEY_OR_REF",
            "location reference key 3",
            id="inactive-location",
        ),
        pytest.param(
            {"lines": [{"itemId": 100, "locationId": 9, "adjustQtyBy": 1}]},
            "INVALID_KEY_OR_REF",
            "location reference key 9 for subsidiary 1",
            id="location-of-another-subsidiary",
        ),
        pytest.param({"accountId": None}, "USER_ERROR", "accountId", id="missing-account"),
        pytest.param(
            {"lines": [{"itemId": 100, "adjustQtyBy": 1}]}, "USER_ERROR", "lines[0].locationId", id="missing-line-field"
        ),
        pytest.param({"lines": []}, "USER_ERROR", "lines", id="no-lines"),
        pytest.param(
            {"lines": [{"itemId": 100, "locationId": 1, "adjustQtyBy": 1}] * 1001},
            "USER_ERROR",
            "at most 1000",
            id="too-many-lines",
        ),
        pytest.param(
            {"lines": [{"itemId": 100, "locationId": 1, "adjustQtyBy": 0}]}, "INVALID_FLD_VALUE", "zero", id="zero"
        ),
        pytest.param(
            {"lines": [{"itemId": 100, "locationId": 1, "adjustQtyBy": "lots"}]},
            "INVALID_FLD_VALUE",
            "adjustQtyBy",
            id="non-numeric-quantity",
        ),
        pytest.param({"tranDate": "2024-02-30"}, "INVALID_FLD_VALUE", "tranDate", id="impossible-date"),
        pytest.param(
            {"lines": [{"itemId": 100, "locationId": 1, "adjustQtyBy": -11}]},
            "USER_ERROR",
            "negative inventory",
            id="would-go-negative",
        ),
    ],
)
def test_a_bad_post_is_caught_and_changes_nothing(fake, changes, code, fragment):
    response = _post(fake, _adjustment(**changes))

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert body["error"]["code"] == code
    assert fragment in body["error"]["message"]
    assert fake.adjustments == {}
    assert fake.on_hand(100, 1) == Decimal("10")
    assert fake.on_hand(101, 2) == Decimal("0")


def test_negative_on_hand_is_accepted_when_the_account_allows_it():
    with _new_fake(allow_negative_inventory=True) as fake:
        body = _post(fake, _adjustment(lines=[{"itemId": 100, "locationId": 1, "adjustQtyBy": -11}])).json()

        assert body["ok"] is True
        assert fake.on_hand(100, 1) == Decimal("-1")


def test_get_by_external_id_returns_the_adjustment_or_rcrd_dsnt_exist(fake):
    created = _post(fake, _adjustment()).json()

    found = _get(fake, "CC-1").json()
    missing = _get(fake, "CC-404").json()

    assert found["ok"] is True
    assert found["id"] == created["id"]
    assert found["externalId"] == "CC-1"
    assert found["tranDate"] == "2024-05-01"
    assert found["lines"] == [
        {"itemId": "100", "locationId": "1", "adjustQtyBy": -3, "memo": "short"},
        {"itemId": "101", "locationId": "2", "adjustQtyBy": 1.5, "memo": ""},
    ]
    assert missing == {"ok": False, "error": {"code": "RCRD_DSNT_EXIST", "message": missing["error"]["message"]}}


def test_restlet_transport_errors(fake):
    wrong_deploy = requests.get(
        fake.restlet_url.replace("customdeploy_cc_adjust", "customdeploy_other"), auth=_signer(), timeout=TIMEOUT
    )
    text_body = requests.post(
        fake.restlet_url,
        data='{"externalId": "CC-T"}',
        headers={"Content-Type": "text/plain"},
        auth=_signer(),
        timeout=TIMEOUT,
    )
    broken_json = requests.post(
        fake.restlet_url,
        data="{not json",
        headers={"Content-Type": "application/json"},
        auth=_signer(),
        timeout=TIMEOUT,
    )

    assert wrong_deploy.status_code == 404
    assert _restlet_error(wrong_deploy)["code"] == "SSS_INVALID_SCRIPTLET_ID"
    assert text_body.status_code == 415
    assert broken_json.status_code == 400
    assert fake.adjustments == {}


# --- SuiteQL --------------------------------------------------------------------------------


def test_suiteql_pages_with_offsets_and_returns_every_value_as_a_string(fake):
    for location_id in range(10, 15):
        fake.add_location(location_id, f"Aisle {location_id}", parent=1)
    query = "SELECT id, name, parent, fullname, isinactive FROM location WHERE subsidiary = '1' ORDER BY id"

    pages = []
    offset = 0
    while True:
        body = _suiteql(fake, query, limit=3, offset=offset).json()
        pages.append(body)
        if not body["hasMore"]:
            break
        [next_link] = [link["href"] for link in body["links"] if link["rel"] == "next"]
        assert next_link.endswith(f"limit=3&offset={offset + 3}")
        offset += 3

    assert [(p["offset"], p["count"], p["hasMore"], p["totalResults"]) for p in pages] == [
        (0, 3, True, 8),
        (3, 3, True, 8),
        (6, 2, False, 8),
    ]
    rows = [item for page in pages for item in page["items"]]
    assert [row["id"] for row in rows] == ["1", "2", "3", "10", "11", "12", "13", "14"]
    assert rows[0] == {"links": [], "id": "1", "name": "Main", "fullname": "Main", "isinactive": "F"}  # NULL parent
    assert rows[1] == {
        "links": [],
        "id": "2",
        "name": "Bin A",
        "parent": "1",
        "fullname": "Main : Bin A",
        "isinactive": "F",
    }
    assert all(isinstance(value, str) for row in rows for key, value in row.items() if key != "links")


def test_suiteql_aggregate_item_location_reports_available_and_costs(fake):
    body = _suiteql(
        fake,
        "SELECT item, location, quantityonhand, quantityavailable, quantitycommitted, averagecostmli "
        "FROM aggregateItemLocation ORDER BY item, location",
    ).json()

    assert body["items"] == [
        {
            "links": [],
            "item": "100",
            "location": "1",
            "quantityonhand": "10",
            "quantityavailable": "8",
            "quantitycommitted": "2",
            "averagecostmli": "2.5",
        },
        {
            "links": [],
            "item": "101",
            "location": "1",
            "quantityonhand": "5",
            "quantityavailable": "5",
            "quantitycommitted": "0",
            "averagecostmli": ".5",  # SuiteQL prints numbers Oracle-style, without the leading zero
        },
    ]


def test_suiteql_requires_prefer_transient(fake):
    response = _suiteql(fake, "SELECT id FROM item ORDER BY id", prefer=None)

    assert response.status_code == 400
    assert _problem(response)["o:errorHeader"] == "Prefer"


@pytest.mark.parametrize(
    ("query", "params", "fragment"),
    [
        pytest.param("SELECT id, itemid FROM item", {}, "ORDER BY is required", id="no-order-by"),
        pytest.param("SELECT id FROM location ORDER BY name", {}, "must include id", id="order-not-unique"),
        pytest.param("SELECT id, colour FROM item ORDER BY id", {}, "Unknown identifier 'colour'", id="unknown-column"),
        pytest.param("SELECT id FROM customer ORDER BY id", {}, "Invalid search type: customer", id="unknown-table"),
        pytest.param("SELECT id FROM item ORDER BY id", {"limit": 1001}, "limit", id="limit-too-big"),
        pytest.param("SELECT id FROM item ORDER BY id", {"limit": 2, "offset": 1}, "multiple", id="offset-misaligned"),
    ],
)
def test_suiteql_refuses_what_netsuite_or_our_paging_rule_refuses(fake, query, params, fragment):
    response = _suiteql(fake, query, **params)

    assert response.status_code == 400
    detail = _problem(response)
    assert detail["o:errorCode"] == "INVALID_PARAMETER"
    assert fragment in detail["detail"]


# --- fault injection -----------------------------------------------------------------------


def test_a_dropped_response_still_commits_and_a_get_finds_it(fake):
    fake.drop_next(1)

    with pytest.raises(requests.exceptions.ConnectionError):
        _post(fake, _adjustment())

    assert fake.on_hand(100, 1) == Decimal("7")
    found = _get(fake, "CC-1").json()
    assert found["ok"] is True
    retry = _post(fake, _adjustment()).json()
    assert retry == {"ok": True, "id": found["id"], "duplicate": True}
    assert fake.on_hand(100, 1) == Decimal("7")


def test_injected_503s_answer_before_any_effect(fake):
    fake.fail_next(2)

    failures = [_post(fake, _adjustment()) for _ in range(2)]
    success = _post(fake, _adjustment())

    for failure in failures:
        assert failure.status_code == 503
        assert failure.headers["Content-Type"].startswith("text/html")
    assert success.json()["ok"] is True
    assert fake.adjustment_posts == 3
    assert fake.on_hand(100, 1) == Decimal("7")
    assert fake.auth_failures == []


def test_fail_rate_503_is_reproducible_from_the_seed():
    def pattern() -> list[int]:
        with _new_fake(seed=7) as fake:
            fake.fail_rate_503 = 0.5
            return [_get(fake, "CC-1").status_code for _ in range(12)]

    first = pattern()

    assert first == pattern()
    assert set(first) == {200, 503}
