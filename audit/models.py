"""The reason log: one row per meaningful action, written by the service in the same transaction."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import OrganizationOwned


class AuditLog(OrganizationOwned):
    """Append-only: services insert rows and nothing updates or deletes them."""

    tag = models.CharField(max_length=64, help_text="What happened, e.g. inventory_adjustment, approval_refused")
    reason = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    facility = models.ForeignKey(
        "inventory.Facility", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    delta = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    approved_by = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["organization", "tag", "created_at"]),
            models.Index(fields=["object_type", "object_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.tag} {self.object_type}:{self.object_id}"
