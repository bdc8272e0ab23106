"""Writing the reason log. Callers pass the acting user and call it inside their transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from audit.models import AuditLog


def audit_log_write(
    *,
    organization_id: int,
    tag: str,
    actor: AbstractBaseUser | None,
    reason: str = "",
    subject: models.Model | None = None,
    facility_id: int | None = None,
    delta: Decimal | None = None,
    approved_by: str = "",
    data: dict[str, Any] | None = None,
) -> AuditLog:
    """Append one row to the reason log (who, what, why, on which object)."""
    return AuditLog.objects.create(
        organization_id=organization_id,
        tag=tag,
        actor=actor if actor is not None and actor.is_authenticated else None,
        reason=reason,
        facility_id=facility_id,
        object_type=subject._meta.label_lower if subject is not None else "",
        object_id=str(subject.pk) if subject is not None else "",
        delta=delta,
        approved_by=approved_by,
        data=data or {},
    )
