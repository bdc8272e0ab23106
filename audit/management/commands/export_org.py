"""Write one organization's data as a portable archive (a backup, or a move to another install)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from audit.backup import archive_default_path, organization_export


class Command(BaseCommand):
    help = "Export an organization's mirror, counts, decisions, pushes, audit and history to a zip archive."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="organization slug")
        parser.add_argument(
            "--output", "-o", type=Path, help="archive path (default: var/<slug>-<time>.cyclecount.zip)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["slug"]).first()
        if organization is None:
            raise CommandError(f"no organization with slug {options['slug']!r}")
        path = options["output"] or archive_default_path(organization.slug)
        summary = organization_export(organization=organization, path=path)
        self.stdout.write(f"exported {organization.slug}: {summary.total} rows in {len(summary.rows)} models → {path}")
