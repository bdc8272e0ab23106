"""Connections to systems of record, the outbox of adjustments, its batches, and parity.

An approved adjustment becomes a PendingPush in the approval's transaction. The drain (one
writer per connection) groups pending pushes into PushBatches — persisted with a stable
external id before the first call — and sends them; the batch's outcome flows back to its
pushes, their proposals and the mirror. The next sync compares the backend's on-hand with the
mirror's expectation: a match confirms the adjustment, a difference is a ParityDrift.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from accounts.models import OrganizationOwned
from approvals.models import ProposedAction
from inventory.models import Facility, Item, Location


class BackendKind(models.TextChoices):
    NETSUITE = "netsuite", "NetSuite"
    SHOPIFY = "shopify", "Shopify"
    HOTWAX = "hotwax", "HotWax Commerce OMS"
    FILE = "file", "File (CSV)"


class BackendConnection(OrganizationOwned):
    """One organization's link to a system of record.

    `settings` holds what may be shown (hosts, ids, limits); `secrets_encrypted` holds the
    credentials as a Fernet token (see adapters.secrets) and is never shown or logged. The
    push target is the connection approved adjustments go to (at most one per organization).
    The worker lease makes one process at a time talk to the backend for this connection.
    """

    kind = models.CharField(max_length=16, choices=BackendKind.choices)
    name = models.SlugField(max_length=64, help_text="Used by the ops commands: --connection NAME")
    settings = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, editable=False)
    is_push_target = models.BooleanField(
        default=True, help_text="Approved adjustments are pushed here (one connection per organization)"
    )
    active = models.BooleanField(default=True, help_text="Inactive connections are neither synced nor drained")
    worker_lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    worker_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_summary = models.JSONField(default=dict, blank=True, editable=False)
    last_drain_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(
        excluded_fields=[
            "secrets_encrypted",
            "worker_lease_owner",
            "worker_lease_until",
            "last_sync_at",
            "last_sync_summary",
            "last_drain_at",
            "updated_at",
        ]
    )

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="connection_name_unique"),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(is_push_target=True, active=True),
                name="connection_one_push_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class ExternalKind(models.TextChoices):
    FACILITY = "facility", "Facility"
    LOCATION = "location", "Location"
    ITEM = "item", "Item"


class ExternalRecord(OrganizationOwned):
    """The backend's id for one mirror facility, location or item on one connection."""

    connection = models.ForeignKey(BackendConnection, on_delete=models.CASCADE, related_name="external_records")
    kind = models.CharField(max_length=16, choices=ExternalKind.choices)
    external_id = models.CharField(max_length=128)
    facility = models.ForeignKey(Facility, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    location = models.ForeignKey(Location, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.CASCADE, related_name="+")

    history = HistoricalRecords()

    class Meta:
        ordering = ["connection", "kind", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "kind", "external_id"], name="external_id_unique"),
            models.UniqueConstraint(fields=["connection", "facility"], name="external_facility_once"),
            models.UniqueConstraint(fields=["connection", "location"], name="external_location_once"),
            models.UniqueConstraint(fields=["connection", "item"], name="external_item_once"),
            models.CheckConstraint(
                condition=(
                    Q(kind="facility", facility__isnull=False, location__isnull=True, item__isnull=True)
                    | Q(kind="location", facility__isnull=True, location__isnull=False, item__isnull=True)
                    | Q(kind="item", facility__isnull=True, location__isnull=True, item__isnull=False)
                ),
                name="external_record_one_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.external_id} on {self.connection_id}"


class BatchState(models.TextChoices):
    PENDING = "pending", "Pending (not sent yet)"
    IN_FLIGHT = "in_flight", "In flight"
    EXPORTED = "exported", "Exported (waiting to be marked imported)"
    ACCEPTED = "accepted", "Accepted by the backend"
    REJECTED = "rejected", "Rejected (a person must fix it)"
    FAILED = "failed", "Failed (will retry)"


class PushBatch(OrganizationOwned):
    """One request to the backend (for NetSuite: one inventory adjustment at one location).

    The request body and `external_id` are fixed when the batch is formed, before the first
    call, so every retry sends the same batch under the same id and the backend can recognise
    it. `attempts` counts sends; `failures` counts failed sends since a person last retried.
    """

    connection = models.ForeignKey(BackendConnection, on_delete=models.PROTECT, related_name="batches")
    external_id = models.CharField(max_length=64, unique=True)
    location_external_id = models.CharField(max_length=128)
    request = models.JSONField(help_text="The backend-neutral batch as it will be sent on every attempt")
    line_count = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=BatchState.choices, default=BatchState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    outcome_unknown = models.BooleanField(
        default=False,
        help_text="A send may have landed (answer lost, worker died): look it up before sending again",
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    record_id = models.CharField(max_length=128, blank=True, help_text="The backend's record id once accepted")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    first_sent_at = models.DateTimeField(null=True, blank=True)
    exported_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["connection", "state", "next_attempt_at"])]
        permissions = [("mark_imported_pushbatch", "Can mark an exported adjustment file imported")]

    def __str__(self) -> str:
        return f"batch {self.external_id} ({self.state}, {self.line_count} lines)"

    @property
    def needs_person(self) -> bool:
        return self.state == BatchState.REJECTED or (self.state == BatchState.FAILED and self.next_attempt_at is None)


class PushState(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_FLIGHT = "in_flight", "In flight"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"


class PendingPush(OrganizationOwned):
    """One approved adjustment to send, written in the approval's transaction.

    It joins a batch when the drain forms one; its state follows the batch's. A push the drain
    cannot map (no backend id for its item or location) is rejected on its own, with the reason.
    """

    proposal = models.OneToOneField(ProposedAction, on_delete=models.PROTECT, related_name="push")
    external_id = models.CharField(max_length=64, unique=True)
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=PushState.choices, default=PushState.PENDING)
    batch = models.ForeignKey(PushBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="pushes")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    parity_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"]),
            models.Index(fields=["organization", "state"]),
        ]

    def __str__(self) -> str:
        return f"push {self.external_id} ({self.state})"


class ParityDrift(OrganizationOwned):
    """After an accepted push, the backend's on-hand did not match what the mirror expected.

    One open row per connection × item × location; a later sync updates it, a person resolves it.
    """

    connection = models.ForeignKey(BackendConnection, on_delete=models.CASCADE, related_name="drifts")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    expected_on_hand = models.DecimalField(max_digits=14, decimal_places=3, help_text="The mirror, after our pushes")
    backend_on_hand = models.DecimalField(max_digits=14, decimal_places=3)
    difference = models.DecimalField(max_digits=14, decimal_places=3, help_text="backend − expected")
    pushes = models.ManyToManyField(PendingPush, related_name="drifts", blank=True)
    detected_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-detected_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "item", "location"],
                condition=Q(resolved_at__isnull=True),
                name="parity_drift_one_open",
            )
        ]

    def __str__(self) -> str:
        return f"drift {self.item_id}@{self.location_id}: {self.difference:+}"


# The file backend's models live beside it; importing them here registers them in this app.
from adapters.file.models import OnHandColumnMapping, OnHandSnapshot  # noqa: E402,F401
