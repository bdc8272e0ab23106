"""Auth hardening: login lockout, password rules, security headers and API rate limits."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ValidationError

from accounts.roles import Role
from accounts.services import user_create
from tests.config.test_settings import _manage
from tests.conftest import token_client
from tests.factories import TEST_PASSWORD, member

NOON = datetime(2026, 11, 20, 12, 0, 10, tzinfo=UTC)
LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def _fresh_rate_counters():
    # Rate counters live in the cache; another test's requests must not count against this one's.
    cache.clear()
    yield
    cache.clear()


def _log_in(client, url: str, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password, "next": "/count/"}, REMOTE_ADDR=ip)


# --- Login throttling (django-axes) ---------------------------------------------------------


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_five_failures_lock_the_username_from_that_address_for_fifteen_minutes(client, manager, url):
    with time_machine.travel(NOON, tick=False) as clock:
        for _ in range(4):
            assert _log_in(client, url, "manager", "wrong").status_code == 200  # the form again
        locked = _log_in(client, url, "manager", "wrong")

        assert locked.status_code == 429
        assert locked["Retry-After"] == str(15 * 60)
        assert "no-cache" in locked["Cache-Control"]
        page = locked.content.decode()
        assert "Too many attempts" in page
        assert "after 5 failed attempts" in page
        assert "Try again in about 15 minutes" in page
        assert '<time datetime="2026-11-20T12:15:10+00:00">12:15 UTC</time>' in page
        assert "_auth_user_id" not in client.session

        clock.shift(timedelta(minutes=14))
        still_locked = _log_in(client, url, "manager", TEST_PASSWORD)  # the right password is refused too
        assert still_locked.status_code == 429
        assert still_locked["Retry-After"] == "60"  # a try during the lockout does not extend it
        assert "_auth_user_id" not in client.session

        # The same username from another address, and another username from this one, may log in.
        assert _log_in(client, url, "manager", TEST_PASSWORD, ip="10.0.0.2").status_code == 302
        client.logout()
        member(manager.membership.organization, Role.MANAGER, username="manager2")
        assert _log_in(client, url, "manager2", TEST_PASSWORD).status_code == 302
        client.logout()

        clock.shift(timedelta(minutes=1, microseconds=1))  # just past the announced time
        assert _log_in(client, url, "manager", TEST_PASSWORD).status_code == 302
        assert client.session["_auth_user_id"] == str(manager.pk)


def test_a_successful_login_resets_the_failure_count(client, manager):
    for _ in range(4):
        _log_in(client, "/accounts/login/", "manager", "wrong")
    assert _log_in(client, "/accounts/login/", "manager", TEST_PASSWORD).status_code == 302
    client.logout()
    assert not AccessAttempt.objects.exists()

    for _ in range(4):
        assert _log_in(client, "/accounts/login/", "manager", "wrong").status_code == 200
    assert _log_in(client, "/accounts/login/", "manager", TEST_PASSWORD).status_code == 302


def test_lockout_settings_default_to_five_failures_and_fifteen_minutes():
    assert django_settings.AXES_FAILURE_LIMIT == 5
    assert timedelta(minutes=15) == django_settings.AXES_COOLOFF_TIME
    assert django_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert django_settings.AXES_HANDLER == "axes.handlers.database.AxesDatabaseHandler"


def test_force_login_is_not_throttled(client, manager):
    for _ in range(10):
        client.force_login(manager)
    assert client.get("/admin/").status_code == 200
    assert not AccessAttempt.objects.exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOGIN_FAILURE_LIMIT", "five"),
        ("LOGIN_LOCKOUT_MINUTES", "0"),
        ("API_RATE_USER", "1200 per minute"),
        ("API_RATE_ANON", "0/min"),
    ],
)
def test_bad_security_variable_stops_start_up_naming_it(tmp_path, variable, value):
    result = _manage(tmp_path, "check", **{variable: value})

    assert result.returncode == 2
    assert result.stderr.startswith("cyclecount: configuration error: ")
    assert variable in result.stderr


def test_security_variables_set_the_numbers(tmp_path):
    script = (
        "from django.conf import settings as s; "
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'])"
    )
    result = _manage(
        tmp_path,
        "shell",
        "-c",
        script,
        LOGIN_FAILURE_LIMIT="3",
        LOGIN_LOCKOUT_MINUTES="30",
        API_RATE_USER="600/min",
        API_RATE_USER_BURST="off",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "3 1800.0 {'user_burst': None, 'user_sustained': '600/min', 'anon': '60/min', 'token_issue': '10/hour'}"
    )


# --- Password rules ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "complaint"),
    [
        ("password123", "too common"),
        ("x7#kQ", "too short"),
        ("48151623429876", "entirely numeric"),
        ("jordan.blake.2", "too similar"),
    ],
)
def test_user_create_refuses_weak_passwords_and_saves_nothing(password, complaint):
    with pytest.raises(ValidationError, match=complaint):
        user_create(username="jordan.blake", password=password, email="jordan.blake@example.com")

    assert not get_user_model().objects.filter(username="jordan.blake").exists()


@pytest.mark.django_db
def test_user_create_accepts_a_strong_password():
    user = user_create(username="jordan.blake", password="violet-harbor-anchor-91")

    assert user.check_password("violet-harbor-anchor-91")


def test_all_four_password_validators_are_configured():
    names = [validator["NAME"].rsplit(".", 1)[1] for validator in django_settings.AUTH_PASSWORD_VALIDATORS]
    assert names == [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]


# --- Headers -------------------------------------------------------------------------------

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/", "/api/docs/", "/count/sw.js"])
def test_every_page_sends_the_security_headers(client, url):
    response = client.get(url)

    assert response.status_code == 200
    assert sorted(response["Content-Security-Policy"].split("; ")) == sorted(EXPECTED_CSP.split("; "))
    assert response["Permissions-Policy"] == "camera=(self), microphone=(), geolocation=(), payment=(), usb=()"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_https_responses_carry_hsts_and_cookies_are_secure_when_debug_is_off(client):
    assert not django_settings.DEBUG
    assert django_settings.SESSION_COOKIE_SECURE
    assert django_settings.CSRF_COOKIE_SECURE

    response = client.get("/accounts/login/", secure=True)

    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert response.cookies["csrftoken"]["secure"]


@pytest.mark.django_db
def test_api_docs_serve_swagger_ui_from_our_own_static_files(client):
    page = client.get("/api/docs/").content.decode()

    assert "cdn.jsdelivr.net" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "<script>" not in page
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_debug_setting_turns_secure_cookies_and_hsts_off(tmp_path):
    script = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
        "s.CONTENT_SECURITY_POLICY['DIRECTIVES']['script-src'])"
    )
    result = _manage(tmp_path, "shell", "-c", script, DEBUG="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False 0 [\"'self'\"]"


def test_production_environment_has_no_security_warnings_from_django_axes_or_csp(tmp_path):
    """The security checks (Django's, django-axes', django-csp's) are clean in production."""
    result = _manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="cyclecount.example.com",
        SECURE_SSL_REDIRECT="1",
    )

    issues = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("?:")]
    assert [issue for issue in issues if "security." in issue or "axes." in issue or "csp." in issue] == []


# --- API rate limits -----------------------------------------------------------------------


@pytest.fixture
def rates(settings):
    """Set throttle rates for one test (the throttles read them on each request)."""

    def set_rates(**changes: str | None) -> None:
        framework = dict(settings.REST_FRAMEWORK)
        framework["DEFAULT_THROTTLE_RATES"] = {**framework["DEFAULT_THROTTLE_RATES"], **changes}
        settings.REST_FRAMEWORK = framework

    return set_rates


def test_documented_default_rates():
    assert django_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] == {
        "user_burst": "100/s",
        "user_sustained": "1200/min",
        "anon": "60/min",
        "token_issue": "10/hour",
    }


def test_a_burst_beyond_the_user_rate_gets_429_json_with_retry_after(rates, manager):
    rates(user_sustained="5/min")
    api = token_client(manager)

    with time_machine.travel(NOON, tick=False):
        answers = [api.get("/api/me/") for _ in range(6)]

        assert [answer.status_code for answer in answers] == [200] * 5 + [429]
        refused = answers[-1]
        assert refused["Content-Type"] == "application/json"
        assert refused["Retry-After"] == "50"  # the rest of the minute
        assert refused.json()["detail"].startswith("Request was throttled.")


def test_window_counters_are_plain_cache_integers_that_expire(manager):
    # On Redis the counters are written with INCR + EXPIRE in one round trip, not through the
    # cache API: they must still read back through it and never outlive their window for long.
    api = token_client(manager)
    window = int(NOON.timestamp() // 60)
    key = f"throttle:user_sustained:user:{manager.pk}:{window}"
    with time_machine.travel(NOON, tick=False):
        for _ in range(2):
            assert api.get("/api/me/").status_code == 200
        assert cache.get(key) == 2
    backend = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(backend, RedisCache):
        assert 0 < backend._cache.get_client().ttl(backend.make_and_validate_key(key)) <= 61


def test_the_limit_is_per_user_and_comes_back_after_the_window(rates, manager, associate):
    rates(user_sustained="3/min")
    manager_api, associate_api = token_client(manager), token_client(associate)

    with time_machine.travel(NOON, tick=False) as clock:
        for _ in range(3):
            assert manager_api.get("/api/me/").status_code == 200
        assert manager_api.get("/api/me/").status_code == 429
        assert associate_api.get("/api/me/").status_code == 200  # another user, another allowance

        clock.shift(timedelta(seconds=50))
        assert manager_api.get("/api/me/").status_code == 200


def test_token_and_session_of_one_user_share_one_allowance(rates, client, manager):
    rates(user_sustained="4/min")
    api = token_client(manager)
    client.force_login(manager)

    with time_machine.travel(NOON, tick=False):
        assert api.get("/api/me/").status_code == 200
        assert api.get("/api/me/").status_code == 200
        assert client.get("/api/me/").status_code == 200
        assert client.get("/api/me/").status_code == 200
        assert client.get("/api/me/").status_code == 429
        assert api.get("/api/me/").status_code == 429


def test_the_burst_rate_limits_one_second(rates, manager):
    rates(user_burst="4/s")
    api = token_client(manager)

    with time_machine.travel(NOON, tick=False) as clock:
        assert [api.get("/api/me/").status_code for _ in range(5)] == [200] * 4 + [429]
        assert api.get("/api/me/")["Retry-After"] == "1"
        clock.shift(timedelta(seconds=1))
        assert api.get("/api/me/").status_code == 200


@pytest.mark.django_db
def test_anonymous_clients_are_limited_per_address(rates, client):
    rates(anon="2/min")

    with time_machine.travel(NOON, tick=False):
        first_address = [client.get("/api/docs/", REMOTE_ADDR="10.0.0.7").status_code for _ in range(3)]
        other_address = client.get("/api/docs/", REMOTE_ADDR="10.0.0.8").status_code

    assert first_address == [200, 200, 429]
    assert other_address == 200


def test_issuing_edit_tokens_has_a_stricter_limit(rates, manager):
    rates(token_issue="2/hour")
    api = token_client(manager)

    with time_machine.travel(NOON, tick=False):
        issued = [api.post("/api/me/edit-token").status_code for _ in range(3)]
        me = api.get("/api/me/")

    assert issued == [201, 201, 429]
    assert me.status_code == 200  # the other endpoints keep the normal allowance


def test_the_edit_token_page_shares_the_issuing_limit(rates, client, manager):
    rates(token_issue="1/hour")
    client.force_login(manager)

    with time_machine.travel(NOON, tick=False):
        assert client.get("/accounts/edit-token/").status_code == 200
        assert client.post("/accounts/edit-token/").status_code == 200
        refused = client.post("/accounts/edit-token/")
        assert client.get("/accounts/edit-token/").status_code == 200  # reading the page is not issuing

    assert refused.status_code == 429
    assert refused["Retry-After"] == str(60 * 60 - 10)
    assert "too many tokens" in refused.content.decode()


def test_a_busy_scanner_never_meets_the_default_limits(manager):
    """One scan a second with a state refresh every 5 s, the page's own requests, and after a
    dropped connection a backlog flushed as batches back to back: far below the limits."""
    api = token_client(manager)
    statuses: list[int] = []

    with time_machine.travel(NOON, tick=False) as clock:
        for second in range(180):
            statuses.append(api.get("/api/me/").status_code)  # the scan
            if second % 5 == 0:
                statuses.append(api.get("/api/me/").status_code)  # the session state
            if second == 90:  # back online: 40 batches of 200 queued scans, sent one after another
                statuses.extend(api.get("/api/me/").status_code for _ in range(40))
            clock.shift(timedelta(seconds=1))

    assert len(statuses) == 180 + 36 + 40
    assert set(statuses) == {200}
