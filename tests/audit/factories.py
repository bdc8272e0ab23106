from __future__ import annotations

import factory

from audit.models import WebhookSubscription
from audit.webhooks import secret_generate
from tests.factories import OrganizationFactory


class WebhookSubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookSubscription

    organization = factory.SubFactory(OrganizationFactory)
    # Nothing listens there: a test that sends by accident fails fast, without the network.
    url = "http://127.0.0.1:9/cyclecount"
    secret = factory.LazyFunction(secret_generate)
    event_types = factory.LazyFunction(list)
