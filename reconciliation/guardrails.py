"""Editing the organization's guardrails: every change is a new version, in history and the reason log.

Variances record the guardrail version that routed them, so a version number must never be
reused: the bump happens under the row lock, in the same transaction as the audit row.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import audit_log_write
from reconciliation.models import Guardrail

EDITABLE_FIELDS = (
    "auto_max_percent",
    "auto_max_value",
    "finance_min_value",
    "recount_min_value",
    "moved_book_policy",
    "watchlist_hits",
    "watchlist_window",
)
_NON_NEGATIVE = ("auto_max_percent", "auto_max_value", "finance_min_value", "recount_min_value")


def guardrail_errors(values: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with a complete set of guardrail values, by field (empty when consistent).

    Shared by the service and the admin form, so the admin can show the errors next to the fields.
    """
    errors: dict[str, str] = {}
    for name in _NON_NEGATIVE:
        value = values.get(name)
        if value is not None and Decimal(value) < 0:
            errors[name] = "must not be negative"
    auto_max, finance_min = values.get("auto_max_value"), values.get("finance_min_value")
    if auto_max is not None and finance_min is not None and Decimal(auto_max) > Decimal(finance_min):
        errors.setdefault(
            "auto_max_value", "must not exceed the finance limit: nothing above it may be approved automatically"
        )
    hits, window = values.get("watchlist_hits"), values.get("watchlist_window")
    if hits is not None and window is not None and hits > window:
        errors.setdefault("watchlist_hits", "cannot exceed the watchlist window (counts looked at)")
    return errors


@transaction.atomic
def guardrail_update(*, guardrail: Guardrail, actor: AbstractBaseUser | None, changes: dict[str, Any]) -> Guardrail:
    """Apply an admin's changes to a guardrail as one new version.

    Guarantees: only editable thresholds change, and the result is consistent (else
    ValidationError, nothing saved); every save — even one that changes nothing — bumps
    `version` by exactly one under the row lock and records `updated_by`, a history row and
    a `guardrail_changed` reason-log row listing each changed field's old and new value.
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "not an editable guardrail setting"))
    locked = Guardrail.objects.select_for_update(of=("self",)).select_related("facility").get(pk=guardrail.pk)
    before = {name: getattr(locked, name) for name in EDITABLE_FIELDS}
    for name, value in changes.items():
        setattr(locked, name, value)
    locked.full_clean(exclude=["organization", "facility", "updated_by", "version"])
    errors = guardrail_errors({name: getattr(locked, name) for name in EDITABLE_FIELDS})
    if errors:
        raise ValidationError(errors)

    changed = {
        name: [_text(before[name]), _text(getattr(locked, name))]
        for name in EDITABLE_FIELDS
        if before[name] != getattr(locked, name)
    }
    locked.version += 1
    locked.updated_by = actor
    locked._history_user = actor
    locked._change_reason = f"guardrail v{locked.version}"
    locked.save(update_fields=[*EDITABLE_FIELDS, "version", "updated_by", "updated_at"])
    audit_log_write(
        organization_id=locked.organization_id,
        tag="guardrail_changed",
        actor=actor,
        subject=locked,
        facility_id=locked.facility_id,
        reason=f"{locked} saved: " + (", ".join(sorted(changed)) if changed else "no values changed"),
        data={"version": locked.version, "changes": changed},
    )
    return locked


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
