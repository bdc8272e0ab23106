from __future__ import annotations

import os

import pytest
from django.core.cache import cache


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_broker_answer(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_healthz_is_503_naming_the_broker_when_it_is_down(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["broker"].startswith("error:")


@pytest.mark.redis
@pytest.mark.django_db
def test_healthz_checks_a_real_redis_broker_and_the_cache_uses_redis(client, settings):
    settings.CELERY_BROKER_URL = os.environ["REDIS_URL"]

    assert client.get("/healthz").json()["broker"] == "ok"
    cache.set("cyclecount:test", "42", timeout=5)
    assert cache.get("cyclecount:test") == "42"
    from django.core.cache import caches

    assert caches["default"].__class__.__name__ == "RedisCache"
