"""Send a connection's approved adjustments now (beat also sweeps every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import system_actor
from adapters.selectors import ConnectionNotFound, connection_by_name
from adapters.services import push_drain


class Command(BaseCommand):
    help = "Drain the outbox of approved adjustments into a backend connection."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", required=True, help="connection name")
        parser.add_argument("--org", help="organization slug, when two organizations use the name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            connection = connection_by_name(name=options["connection"], organization_slug=options["org"])
        except ConnectionNotFound as error:
            raise CommandError(str(error)) from None
        result = push_drain(connection=connection, actor=system_actor())
        if result.skipped:
            raise CommandError(f"drain of {connection.name} skipped: {result.skipped}")
        self.stdout.write(
            f"drained {connection.name}: {result.batches_formed} batches formed, {result.sent} sent, "
            f"{result.accepted} accepted ({result.lines_accepted} lines), {result.rejected} rejected, "
            f"{result.failed} failed, {result.unmappable} unmappable, {result.reclaimed} reclaimed"
        )
        for error in result.errors:
            self.stdout.write(f"  {error}")
