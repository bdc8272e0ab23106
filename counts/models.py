"""Planning and execution of counts.

Scans (CountEvent) are the append-only truth; tallies and count lines are derived from them
and can be rebuilt. Runs and sessions are state machines whose transitions carry no I/O.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from accounts.models import OrganizationOwned
from inventory.models import QUANTITY, Facility, Item, Location, Zone


class CountKind(models.TextChoices):
    CYCLE = "cycle", "Cycle (zone rotation)"
    HARD = "hard", "Hard (wall-to-wall)"
    DIRECTED = "directed", "Directed (requested items)"


class RunState(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in_progress", "In progress"
    IN_REVIEW = "in_review", "In review"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


class RunSource(models.TextChoices):
    MANUAL = "manual", "Planned by hand"
    ROTATION = "rotation", "Zone rotation"
    SIGNAL = "signal", "Signal"
    IMPORT = "import", "Plan import"


OPEN_RUN_STATES = (RunState.DRAFT, RunState.SCHEDULED, RunState.IN_PROGRESS)


class CountRun(ConcurrentTransitionMixin, OrganizationOwned):
    """One count: what to count (scope), when (local intent and UTC), and where it stands.

    Planners enter start and due in the facility's local time; that intent is kept so the UTC
    instants can be recomputed when the facility's time zone changes.
    """

    facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="count_runs")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=CountKind.choices)
    state = FSMField(default=RunState.DRAFT, choices=RunState.choices, protected=True)
    source = models.CharField(max_length=16, choices=RunSource.choices, default=RunSource.MANUAL)
    zones = models.ManyToManyField(Zone, blank=True, related_name="count_runs")
    locations = models.ManyToManyField(Location, blank=True, related_name="count_runs")
    assignees = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="assigned_count_runs")
    # The planner's intent, as wall-clock date and time in the facility's zone.
    start_date_local = models.DateField(null=True, blank=True)
    start_time_local = models.TimeField(default=time(0, 0))
    due_date_local = models.DateField(null=True, blank=True)
    due_time_local = models.TimeField(default=time(23, 59))
    starts_at = models.DateTimeField(null=True, blank=True, help_text="UTC, computed from the local start")
    due_at = models.DateTimeField(null=True, blank=True, help_text="UTC, computed from the local due")
    rotation_week = models.DateField(null=True, blank=True, help_text="Monday of the rotation week (cycle runs)")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords(excluded_fields=["created_at"])

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["facility", "name"], name="count_run_name_unique_per_facility"),
            models.UniqueConstraint(
                fields=["facility", "rotation_week"],
                condition=Q(kind="cycle", rotation_week__isnull=False) & ~Q(state="cancelled"),
                name="one_rotation_run_per_facility_week",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "state"]),
            models.Index(fields=["facility", "kind", "state"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @transition(field=state, source=RunState.DRAFT, target=RunState.SCHEDULED)
    def schedule(self) -> None:
        pass

    @transition(field=state, source=[RunState.DRAFT, RunState.SCHEDULED], target=RunState.IN_PROGRESS)
    def start(self) -> None:
        pass

    @transition(field=state, source=RunState.IN_PROGRESS, target=RunState.IN_REVIEW)
    def begin_review(self) -> None:
        pass

    @transition(field=state, source=RunState.IN_REVIEW, target=RunState.CLOSED)
    def close(self) -> None:
        pass

    @transition(
        field=state,
        source=[RunState.DRAFT, RunState.SCHEDULED, RunState.IN_PROGRESS, RunState.IN_REVIEW],
        target=RunState.CANCELLED,
    )
    def cancel(self) -> None:
        pass


class SignalKind(models.TextChoices):
    PLANNED = "planned", "Planned"
    PICK_SHORT = "pick_short", "Pick short"
    ORDER_REJECTED = "order_rejected", "Order rejected"
    NEGATIVE_AVAILABLE = "negative_available", "Negative available"
    RECURRING_VARIANCE = "recurring_variance", "Recurring variance"


class CountRequest(OrganizationOwned):
    """An item × location a directed run must count, and why it was asked for."""

    run = models.ForeignKey(CountRun, on_delete=models.CASCADE, related_name="requests")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=32, choices=SignalKind.choices, default=SignalKind.PLANNED)
    expected = models.DecimalField(**QUANTITY, null=True, blank=True)
    found = models.DecimalField(**QUANTITY, null=True, blank=True)
    note = models.TextField(blank=True)
    signal_count = models.PositiveIntegerField(default=1, help_text="How many signals asked for this line")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "location__code", "item__sku"]
        constraints = [models.UniqueConstraint(fields=["run", "item", "location"], name="count_request_unique")]


class SessionState(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    SUBMITTED = "submitted", "Submitted"
    VOIDED = "voided", "Voided"


class CountSession(ConcurrentTransitionMixin, OrganizationOwned):
    """One associate counting one run, from any device; at most one active per user."""

    run = models.ForeignKey(CountRun, on_delete=models.PROTECT, related_name="sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="count_sessions")
    state = FSMField(default=SessionState.ACTIVE, choices=SessionState.choices, protected=True)
    device_id = models.CharField(max_length=128, help_text="The device that last started or resumed it")
    is_recount = models.BooleanField(default=False)
    started_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords(excluded_fields=["last_activity_at"])

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=Q(state="active"), name="one_active_count_session_per_user"
            ),
        ]
        indexes = [models.Index(fields=["run", "state"])]

    def __str__(self) -> str:
        return f"session {self.pk} · {self.user} · {self.run.name}"

    @transition(field=state, source=SessionState.ACTIVE, target=SessionState.PAUSED)
    def pause(self) -> None:
        pass

    @transition(field=state, source=[SessionState.PAUSED, SessionState.ACTIVE], target=SessionState.ACTIVE)
    def resume(self) -> None:
        pass

    @transition(field=state, source=[SessionState.ACTIVE, SessionState.PAUSED], target=SessionState.SUBMITTED)
    def submit(self) -> None:
        pass

    @transition(field=state, source=[SessionState.ACTIVE, SessionState.PAUSED], target=SessionState.VOIDED)
    def void(self) -> None:
        pass


class EventKind(models.TextChoices):
    ADD = "add", "Add"
    SET = "set", "Set"


class EventMode(models.TextChoices):
    SCAN = "scan", "Scan"
    MANUAL = "manual", "Manual entry"
    IMPORT = "import", "Results import"


class EventStatus(models.TextChoices):
    MATCHED = "matched", "Matched"
    UNMATCHED = "unmatched", "Unmatched barcode"
    EXTRA = "extra", "Extra (not requested)"
    REFUSED = "refused", "Refused"


class CountEvent(OrganizationOwned):
    """A scan or typed quantity exactly as the device sent it. Append-only; never updated.

    Every event is kept — unmatched barcodes, extras and refused entries included — so a
    manager can see and resolve it; only matched and extra events move the tallies.
    """

    event_id = models.UUIDField(unique=True, help_text="Assigned by the device; makes retries harmless")
    # No index of its own: (session, location, item) below leads with it (see SessionTally.run).
    session = models.ForeignKey(CountSession, on_delete=models.PROTECT, related_name="events", db_index=False)
    run = models.ForeignKey(CountRun, on_delete=models.PROTECT, related_name="events")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    device_id = models.CharField(max_length=128, blank=True)
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    barcode = models.CharField(max_length=128, blank=True)
    sku = models.CharField(max_length=64, blank=True)
    quantity = models.DecimalField(**QUANTITY)
    kind = models.CharField(max_length=8, choices=EventKind.choices)
    mode = models.CharField(max_length=8, choices=EventMode.choices)
    status = models.CharField(max_length=16, choices=EventStatus.choices)
    refusal_reason = models.CharField(max_length=255, blank=True)
    counted_by = models.CharField(max_length=150, blank=True, help_text="Who counted, when not the session's user")
    counted_at = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["counted_at", "pk"]
        indexes = [
            models.Index(fields=["session", "location", "item"]),
            models.Index(fields=["run", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.quantity} {self.barcode or self.sku} @ {self.location_id}"


class SessionTally(OrganizationOwned):
    """What one session has counted for one item at one location (derived from its events)."""

    session = models.ForeignKey(CountSession, on_delete=models.CASCADE, related_name="tallies")
    # No index of its own: (run, location, item) below leads with it. A run-only index was a
    # trap: while a new run is missing from the planner's statistics it looked as cheap, and
    # rebuilding one count line read every tally of the run, on every scan.
    run = models.ForeignKey(CountRun, on_delete=models.CASCADE, related_name="+", db_index=False)
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    quantity = models.DecimalField(**QUANTITY, default=Decimal("0"))
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "location", "item"], name="session_tally_unique"),
        ]
        indexes = [models.Index(fields=["run", "location", "item"])]


class CountLine(OrganizationOwned):
    """Run × location × item: the counted quantity and the book quantity seen when first counted.

    Derived from the sessions' tallies (a recount session's figure replaces the others);
    `book_quantity` is frozen the first time the item is counted there.
    """

    run = models.ForeignKey(CountRun, on_delete=models.CASCADE, related_name="lines")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    counted_quantity = models.DecimalField(**QUANTITY, default=Decimal("0"))
    book_quantity = models.DecimalField(**QUANTITY, help_text="Mirror on hand when first counted here")
    is_extra = models.BooleanField(default=False, help_text="Counted but not requested (directed runs)")
    first_counted_at = models.DateTimeField()
    last_counted_at = models.DateTimeField()

    class Meta:
        ordering = ["location__code", "item__sku"]
        constraints = [models.UniqueConstraint(fields=["run", "location", "item"], name="count_line_unique")]


class Identifier(models.TextChoices):
    SKU = "sku", "SKU"
    UPC = "upc", "UPC / barcode"
    NAME = "name", "Name"


class BarcodeFormat(models.TextChoices):
    ANY = "any", "Any"
    GS1 = "gs1", "GS1 (UPC-A, EAN-13, GTIN-14) with check digit"
    PATTERN = "pattern", "Regular expression"


class FacilityCountSettings(OrganizationOwned):
    """A facility's store preferences (set by a manager) and its rotation policy."""

    facility = models.OneToOneField(Facility, on_delete=models.CASCADE, related_name="count_settings")
    primary_identifier = models.CharField(max_length=8, choices=Identifier.choices, default=Identifier.SKU)
    secondary_identifier = models.CharField(max_length=8, choices=Identifier.choices, default=Identifier.NAME)
    require_scan = models.BooleanField(default=False, help_text="Refuse typed quantities (they are kept, not lost)")
    barcode_format = models.CharField(max_length=8, choices=BarcodeFormat.choices, default=BarcodeFormat.ANY)
    barcode_pattern = models.CharField(max_length=200, blank=True, help_text="Full-match regex when format=pattern")
    blind_count = models.BooleanField(default=False, help_text="Associates never see book quantities")
    coverage_days = models.PositiveSmallIntegerField(default=30, help_text="Every stocked location within N days")
    a_class_coverage_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Count locations holding A items within N days (blank: same as all)"
    )

    history = HistoricalRecords()

    class Meta:
        verbose_name = "facility count settings"
        verbose_name_plural = "facility count settings"

    def __str__(self) -> str:
        return f"Count settings for {self.facility.code}"


class ImportKind(models.TextChoices):
    PLAN = "plan", "Count plan"
    RESULTS = "results", "Count results"


class ColumnMapping(OrganizationOwned):
    """A saved mapping from a file's column headers to our fields, reused for later uploads."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ImportKind.choices)
    columns = models.JSONField(help_text='{"field": "column header in the file"}')
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "kind", "name"], name="column_mapping_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name}"
