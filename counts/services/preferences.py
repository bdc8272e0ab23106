"""Store preferences: how a facility wants its counts done."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from counts.models import BarcodeFormat, FacilityCountSettings
from inventory.models import Facility

EDITABLE_FIELDS = (
    "primary_identifier",
    "secondary_identifier",
    "require_scan",
    "barcode_format",
    "barcode_pattern",
    "blind_count",
    "coverage_days",
    "a_class_coverage_days",
)


@transaction.atomic
def facility_count_settings_update(
    *, facility: Facility, actor: AbstractBaseUser | None, changes: dict[str, Any]
) -> FacilityCountSettings:
    """Save a manager's preferences for a facility, validated as a whole."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "not a count setting"))
    settings_row, _ = FacilityCountSettings.objects.select_for_update().get_or_create(
        facility=facility, defaults={"organization_id": facility.organization_id}
    )
    for name, value in changes.items():
        setattr(settings_row, name, value)
    if settings_row.barcode_format == BarcodeFormat.PATTERN:
        if not settings_row.barcode_pattern:
            raise ValidationError({"barcode_pattern": "required when the barcode format is a pattern"})
        try:
            re.compile(settings_row.barcode_pattern)
        except re.error as error:
            raise ValidationError({"barcode_pattern": f"not a valid regular expression: {error}"}) from None
    settings_row.full_clean(exclude=["organization", "facility"])
    settings_row._history_user = actor
    settings_row.save()
    return settings_row
