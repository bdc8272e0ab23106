"""Reads for the approval surfaces (API, admin, the tablet page)."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from accounts.models import Organization
from approvals.models import Approval, ProposedAction


def proposal_list(
    *, organization: Organization | None, state: str = "", run_id: int | None = None
) -> QuerySet[ProposedAction]:
    """Proposals, largest |value| first, with their signatures loaded in one more query."""
    proposals = (
        ProposedAction.objects.for_organization(organization)
        .select_related("facility", "item", "location", "variance")
        .prefetch_related(
            Prefetch("approvals", queryset=Approval.objects.select_related("approver", "root_cause").order_by("pk"))
        )
        .order_by("-value_abs", "pk")
    )
    if state:
        proposals = proposals.filter(state=state)
    if run_id is not None:
        proposals = proposals.filter(run_id=run_id)
    return proposals
