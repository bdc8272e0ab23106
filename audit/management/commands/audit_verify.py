"""Prove the chain of every posted adjustment; exit 1 naming each gap (CI runs it after the e2e run)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from audit.verify import audit_verify


class Command(BaseCommand):
    help = (
        "Walk every posted adjustment and prove its chain: event, reason-log row, approvals or guardrail "
        "version, variance, count line, scans. Exits 1 naming each gap."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="organization slug (default: every organization)")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = None
        if options["org"]:
            organization = Organization.objects.filter(slug=options["org"]).first()
            if organization is None:
                raise CommandError(f"no organization with slug {options['org']!r}")
        result = audit_verify(organization=organization)
        for gap in result.gaps:
            self.stdout.write(f"GAP {gap}")
        affected = len({(gap.organization, gap.proposal_id) for gap in result.gaps})
        summary = f"{result.adjustments} adjustments verified, {len(result.gaps)} gaps"
        if result.gaps:
            summary += f" in {affected} adjustment(s)"
        self.stdout.write(summary)
        if result.gaps:
            # CommandError makes manage.py exit 1; the gaps are already on stdout.
            raise CommandError(f"audit chain incomplete: {summary}")
