"""Create or update a backend connection from JSON settings on stdin (ops, scripts)."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from adapters.models import BackendConnection, BackendKind
from adapters.services import ConnectionInvalid, backend_connect


class Command(BaseCommand):
    help = "Configure a backend connection: settings and secrets as one JSON object on stdin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--kind", required=True, choices=BackendKind.values)
        parser.add_argument("--name", required=True, help="connection name (running again updates it)")
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="set-up scripts: do nothing when the connection exists or the organization does not",
        )
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--push-target", dest="push_target", action="store_true", default=None)
        target.add_argument("--no-push-target", dest="push_target", action="store_false")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["org"]).first()
        if organization is None and options["if_missing"]:
            self.stdout.write(f"no organization {options['org']!r}; nothing to do")
            return
        if organization is None:
            raise CommandError(f"no organization with slug {options['org']!r}")
        if (
            options["if_missing"]
            and BackendConnection.objects.filter(organization=organization, name=options["name"]).exists()
        ):
            self.stdout.write(f"connection {options['name']} of {organization.slug} exists; nothing to do")
            return
        raw = sys.stdin.read()
        try:
            values = json.loads(raw or "{}")
        except json.JSONDecodeError as error:
            raise CommandError(f"stdin is not JSON: {error}") from None
        if not isinstance(values, dict):
            raise CommandError("stdin must hold one JSON object of settings")
        try:
            connection, created = backend_connect(
                organization=organization,
                kind=options["kind"],
                name=options["name"],
                values=values,
                actor=None,
                is_push_target=options["push_target"],
            )
        except ConnectionInvalid as invalid:
            lines = "\n".join(f"  {field}: {message}" for field, message in invalid.errors.items())
            raise CommandError(f"connection not saved:\n{lines}") from None
        verb = "created" if created else "updated"
        target = "push target" if connection.is_push_target else "not the push target"
        self.stdout.write(f"{verb} {connection.kind} connection {connection.name} for {organization.slug} ({target})")
