"""Restore an organization archive (from export_org) into an empty, migrated database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.backup import ArchiveInvalid, organization_import


class Command(BaseCommand):
    help = "Restore an export_org archive into an empty database (run migrate first). All or nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["archive"]
        if not path.exists():
            raise CommandError(f"no such archive: {path}")
        try:
            summary = organization_import(path=path)
        except ArchiveInvalid as error:
            raise CommandError(f"nothing restored: {error}") from None
        self.stdout.write(f"restored {summary.organization}: {summary.total} rows in {len(summary.rows)} models")
