"""The outbox of adjustments for the system of record (drained by the adapters' single writer)."""

from __future__ import annotations

from django.db import models

from accounts.models import OrganizationOwned
from approvals.models import ProposedAction


class PushState(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_FLIGHT = "in_flight", "In flight"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"


class PendingPush(OrganizationOwned):
    """One approved adjustment to send, written in the approval's transaction.

    Its external id is the proposal's, so a retry after a crash is recognised by the ERP.
    """

    proposal = models.OneToOneField(ProposedAction, on_delete=models.PROTECT, related_name="push")
    external_id = models.CharField(max_length=64, unique=True)
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=PushState.choices, default=PushState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"push {self.external_id} ({self.state})"
