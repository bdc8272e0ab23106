"""On-hand files for the file backend: each upload kept as it came, and saved column mappings.

Registered in the `adapters` app (imported at the end of adapters/models.py). Writes go through
adapters.file.snapshots.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_fsm import FSMField, transition
from simple_history.models import HistoricalRecords

from accounts.models import OrganizationOwned
from adapters.models import BackendConnection


class SnapshotState(models.TextChoices):
    VALIDATED = "validated", "Valid, not applied"
    APPLIED = "applied", "Applied to the mirror"
    INVALID = "invalid", "Invalid (refused)"


class OnHandSnapshot(OrganizationOwned):
    """One on-hand file uploaded to apply to a file connection, kept as it was uploaded.

    `invalid`: refused for the problems in `errors`, nothing changed. `validated`: valid, but not
    applied (the connection was busy or the mirror changed meanwhile; `errors` says which).
    `applied`: the connection synced from it; `sync_summary` holds what the sync did.
    """

    connection = models.ForeignKey(BackendConnection, on_delete=models.PROTECT, related_name="onhand_snapshots")
    filename = models.CharField(max_length=255)
    content = models.TextField(blank=True, help_text="The file as uploaded (empty when it was not UTF-8 text)")
    content_sha256 = models.CharField(max_length=64)
    columns = models.JSONField(default=dict, blank=True, help_text='The column mapping used: {"field": "header"}')
    row_count = models.PositiveIntegerField(default=0)
    state = FSMField(max_length=16, choices=SnapshotState.choices, default=SnapshotState.VALIDATED, protected=True)
    errors = models.JSONField(default=list, blank=True, help_text="[{row, column, message}]; rows count from 1")
    sync_summary = models.JSONField(default=dict, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    # The file is written once; history tracks its state without copying megabytes per row.
    history = HistoricalRecords(excluded_fields=["content"])

    class Meta:
        ordering = ["-uploaded_at", "-pk"]
        verbose_name = "on-hand snapshot"
        indexes = [models.Index(fields=["connection", "state", "uploaded_at"])]

    def __str__(self) -> str:
        return f"{self.filename} ({self.get_state_display().lower()}, {self.row_count} rows)"

    @transition(field=state, source=SnapshotState.VALIDATED, target=SnapshotState.APPLIED)
    def mark_applied(self) -> None:
        pass


class OnHandColumnMapping(OrganizationOwned):
    """A saved mapping from an on-hand file's headers to our fields, reused for later uploads."""

    name = models.CharField(max_length=100)
    columns = models.JSONField(help_text='{"field": "column header in the file"}')
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        verbose_name = "on-hand column mapping"
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="onhand_column_mapping_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name
