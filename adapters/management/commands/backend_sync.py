"""Pull locations, items and balances from a connection into the mirror, now."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import system_actor
from adapters.interface import BackendError
from adapters.selectors import ConnectionNotFound, connection_by_name
from adapters.services import backend_sync


class Command(BaseCommand):
    help = "Sync the mirror from a backend connection (beat does this every 5 minutes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", required=True, help="connection name")
        parser.add_argument("--org", help="organization slug, when two organizations use the name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            connection = connection_by_name(name=options["connection"], organization_slug=options["org"])
        except ConnectionNotFound as error:
            raise CommandError(str(error)) from None
        try:
            result = backend_sync(connection=connection, actor=system_actor())
        except BackendError as error:
            raise CommandError(f"sync of {connection.name} failed, mirror unchanged: {error}") from None
        if result.skipped:
            raise CommandError(f"sync of {connection.name} skipped: {result.skipped}")
        self.stdout.write(f"synced {connection.name}: {json.dumps(result.as_json())}")
