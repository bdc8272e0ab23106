"""`manage.py rotation_plan`: plan (or preview) the weekly zone rotation by hand."""

from __future__ import annotations

from argparse import ArgumentTypeError
from datetime import date

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from counts.models import CountKind, CountRun, RunState
from counts.services.rotation import rotation_plan_preview, rotation_plan_week, rotation_week_current
from counts.timezones import week_monday
from inventory.models import Facility


def _week(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Create the week's zone-rotation cycle runs (idempotent: a facility whose week is planned keeps "
        "its run). Defaults to the current UTC week and every facility."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--week", type=_week, help="any day of the week to plan (YYYY-MM-DD); its Monday is used")
        parser.add_argument("--facility", help="facility code (default: every facility)")
        parser.add_argument("--organization", help="organization slug, when the facility code is not unique")
        parser.add_argument("--dry-run", action="store_true", help="show what would be planned; write nothing")

    def handle(
        self,
        *args: object,
        week: date | None,
        facility: str | None,
        organization: str | None,
        dry_run: bool,
        **options: object,
    ) -> None:
        monday = week_monday(week) if week else rotation_week_current()
        facilities = list(self._facilities(code=facility, organization=organization))
        already = set(
            CountRun.objects.filter(facility__in=facilities, kind=CountKind.CYCLE, rotation_week=monday)
            .exclude(state=RunState.CANCELLED)
            .values_list("pk", flat=True)
        )
        self.stdout.write(f"Rotation week of Monday {monday.isoformat()}{' (dry run)' if dry_run else ''}:")
        for site in facilities:
            label = f"{site.organization.slug}/{site.code}"
            if dry_run:
                plan = rotation_plan_preview(facility=site, week_start=monday)
                self.stdout.write(
                    f"  {label}: would count {len(plan.location_ids)} of {plan.stocked_location_count} stocked "
                    f"locations, {plan.lines} lines ({plan.due_lines} due, target {plan.target_lines})"
                )
                continue
            try:
                run = rotation_plan_week(facility=site, week_start=monday)
            except ValidationError as error:
                raise CommandError(f"{label}: {'; '.join(error.messages)}") from None
            if run is None:
                self.stdout.write(f"  {label}: nothing stocked, no run")
            elif run.pk in already:
                self.stdout.write(f"  {label}: already planned: {run.name} (#{run.pk}, {run.state})")
            else:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"  {label}: created {run.name} (#{run.pk}): {_plural(run.locations.count(), 'location')} "
                        f"in {_plural(run.zones.count(), 'zone')}, due {run.due_date_local.isoformat()}"
                    )
                )

    def _facilities(self, *, code: str | None, organization: str | None) -> list[Facility]:
        facilities = Facility.objects.select_related("organization").order_by("organization__slug", "code")
        if organization:
            facilities = facilities.filter(organization__slug=organization)
        if code:
            facilities = facilities.filter(code=code)
        found = list(facilities)
        if code and not found:
            raise CommandError(f"no facility {code!r}{f' in {organization!r}' if organization else ''}")
        if code and len(found) > 1:
            slugs = ", ".join(site.organization.slug for site in found)
            raise CommandError(f"facility {code!r} exists in several organizations ({slugs}); pass --organization")
        return found
