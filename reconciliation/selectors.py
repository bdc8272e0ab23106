"""Reads for reconciliation."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Organization
from reconciliation.models import Variance


def variance_list(*, organization: Organization | None, run_id: int | None = None) -> QuerySet[Variance]:
    """Current variances with what they need for display and their proposal (if any)."""
    variances = (
        Variance.objects.for_organization(organization)
        .filter(superseded_at__isnull=True)
        .select_related("item", "location", "proposal")
        .order_by("location__code", "item__sku")
    )
    if run_id is not None:
        variances = variances.filter(run_id=run_id)
    return variances
