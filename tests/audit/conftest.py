from __future__ import annotations

import socket

import pytest

from audit.models import WebhookSubscription
from tests.audit.factories import WebhookSubscriptionFactory
from tests.audit.receiver import ServedReceiver, WebhookReceiver


@pytest.fixture(autouse=True)
def _eager_tasks():
    """Tasks queued by on_commit callbacks run in-process (tests execute those callbacks explicitly)."""
    from config.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    # Production refuses loopback and private receivers; the test receiver is on 127.0.0.1.
    settings.AUDIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def receiver():
    with ServedReceiver() as served:
        yield served


@pytest.fixture
def subscription(organization, receiver: WebhookReceiver) -> WebhookSubscription:
    """An active subscription to every event type, delivering to the local receiver."""
    subscribed = WebhookSubscriptionFactory(organization=organization, url=receiver.url)
    receiver.secret = subscribed.secret
    return subscribed


@pytest.fixture
def refused_url() -> str:
    """A local URL nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"
