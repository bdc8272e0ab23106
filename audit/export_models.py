"""Export jobs: a manager's request for a file of closed counts or approved adjustments, and its history.

Imported at the end of audit/models.py, so the model belongs to the audit app. Rows are written
by `audit.exports` only; the file lives under the export directory until `expires_at`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import OrganizationOwned


class ExportKind(models.TextChoices):
    CLOSED_COUNTS = "closed_counts", "Closed counts (lines and variances)"
    APPROVED_ADJUSTMENTS = "approved_adjustments", "Approved adjustments"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "Excel (XLSX)"


class ExportState(models.TextChoices):
    QUEUED = "queued", "Queued"
    SUCCEEDED = "succeeded", "Ready"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired (file deleted)"


class ExportJob(OrganizationOwned):
    """One requested export: who asked, for what (kind, facility, local dates), and what came of it.

    `date_from`/`date_to` are inclusive days in the facility's time zone. The file is kept for the
    retention period (`EXPORT_RETENTION_DAYS`, default 30) after it is generated; then the sweep
    deletes it and the row stays as history.
    """

    kind = models.CharField(max_length=32, choices=ExportKind.choices)
    file_format = models.CharField(max_length=8, choices=ExportFormat.choices, default=ExportFormat.CSV)
    facility = models.ForeignKey("inventory.Facility", on_delete=models.PROTECT, related_name="+")
    date_from = models.DateField()
    date_to = models.DateField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=ExportState.choices, default=ExportState.QUEUED)
    rows = models.PositiveIntegerField(null=True, blank=True)
    file_name = models.CharField(max_length=255, blank=True, help_text="Relative to the export directory")
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    generated_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True, help_text="When the sweep deleted the file")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        indexes = [
            models.Index(fields=["organization", "requested_at"]),
            models.Index(fields=["state", "expires_at"]),
        ]

    def __str__(self) -> str:
        return f"export {self.pk}: {self.kind} {self.date_from}–{self.date_to} ({self.state})"
