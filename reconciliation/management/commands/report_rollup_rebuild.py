"""Recompute the reports' variance rollup from the variances (after a bulk load, or to repair a drift)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from reconciliation.services import report_rollup_rebuild


class Command(BaseCommand):
    help = "Rebuild the variance rollup the dashboard tile and the variance report read (one organization, or all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="organization slug (default: every organization)")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = None
        if options["org"]:
            organization = Organization.objects.filter(slug=options["org"]).first()
            if organization is None:
                raise CommandError(f"no organization {options['org']!r}")
        started = time.perf_counter()
        rows = report_rollup_rebuild(organization=organization)
        scope = organization.slug if organization is not None else "every organization"
        self.stdout.write(
            f"rebuilt the variance rollup of {scope}: {rows:,} rows in {time.perf_counter() - started:.1f} s"
        )
