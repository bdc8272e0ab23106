"""Variances between what was counted and what the ERP says, and the rules that route them."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Abs
from simple_history.models import HistoricalRecords

from accounts.models import OrganizationOwned
from counts.models import CountLine, CountRun
from inventory.models import QUANTITY, Facility, InventoryBalance, Item, Location

MONEY = {"max_digits": 16, "decimal_places": 2}


class MovedBookPolicy(models.TextChoices):
    KEEP_DIFFERENCE = "keep_difference", "Keep the difference (counted − book at count time)"
    KEEP_COUNT = "keep_count", "Keep the count (counted − current book)"
    REQUIRE_RECOUNT = "require_recount", "Require a recount"


class Guardrail(OrganizationOwned):
    """The organization's thresholds (or one facility's override), versioned on every change.

    Auto-adjust when |percent| ≤ auto_max_percent AND |value| ≤ auto_max_value (both inclusive);
    above finance_min_value a finance signature is needed too; above recount_min_value (when set)
    a blind recount comes first.
    """

    facility = models.OneToOneField(
        Facility, null=True, blank=True, on_delete=models.CASCADE, related_name="guardrail",
        help_text="Blank: the organization's default",
    )  # fmt: skip
    version = models.PositiveIntegerField(default=1)
    auto_max_percent = models.DecimalField(max_digits=7, decimal_places=2, default=Decimal("2.00"))
    auto_max_value = models.DecimalField(**MONEY, default=Decimal("100.00"))
    finance_min_value = models.DecimalField(**MONEY, default=Decimal("1000.00"))
    recount_min_value = models.DecimalField(**MONEY, null=True, blank=True, help_text="Blank: off")
    moved_book_policy = models.CharField(
        max_length=16, choices=MovedBookPolicy.choices, default=MovedBookPolicy.KEEP_DIFFERENCE
    )
    watchlist_hits = models.PositiveSmallIntegerField(default=2)
    watchlist_window = models.PositiveSmallIntegerField(default=3)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"], condition=Q(facility__isnull=True), name="one_default_guardrail_per_org"
            ),
        ]

    def __str__(self) -> str:
        scope = self.facility.code if self.facility_id else "organization default"
        return f"Guardrail v{self.version} ({scope})"


class RootCause(OrganizationOwned):
    """The organization's list of root causes for a variance, editable by admins."""

    code = models.SlugField(max_length=40)
    label = models.CharField(max_length=100)
    requires_note = models.BooleanField(default=False)
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]
        constraints = [models.UniqueConstraint(fields=["organization", "code"], name="root_cause_code_unique")]

    def __str__(self) -> str:
        return self.label


class DecisionReason(models.TextChoices):
    ANNUAL_COUNT_ADJUSTMENT = "ANNUAL_COUNT_ADJUSTMENT", "Annual count adjustment"
    MANAGER_OVERRIDE = "MANAGER_OVERRIDE", "Manager override"
    PARTIAL_SCOPE_POST = "PARTIAL_SCOPE_POST", "Partial scope post"
    CORRECTION_AFTER_REVIEW = "CORRECTION_AFTER_REVIEW", "Correction after review"


class Routing(models.TextChoices):
    NONE = "none", "No difference"
    AUTO = "auto", "Auto-adjusted within guardrails"
    PROPOSAL = "proposal", "Proposal for a person"
    RECOUNT = "recount", "Recount requested"


class Variance(OrganizationOwned):
    """Counted against book for one count line, in units, percent and money, and where it went.

    `adjustment_units` is what would be posted to the ERP under the moved-book policy; a zero
    variance is kept too (an accuracy hit).
    """

    run = models.ForeignKey(CountRun, on_delete=models.PROTECT, related_name="variances")
    line = models.ForeignKey(CountLine, on_delete=models.PROTECT, related_name="variances")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="+")
    counted_quantity = models.DecimalField(**QUANTITY)
    book_at_count = models.DecimalField(**QUANTITY)
    book_current = models.DecimalField(**QUANTITY)
    book_moved = models.BooleanField(default=False)
    variance_units = models.DecimalField(**QUANTITY, help_text="counted − book at count time")
    variance_percent = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Blank when the book was zero"
    )
    variance_value = models.DecimalField(**MONEY)
    unit_cost = models.DecimalField(max_digits=14, decimal_places=4)
    adjustment_units = models.DecimalField(**QUANTITY, help_text="What is posted, under the moved-book policy")
    adjustment_value = models.DecimalField(**MONEY)
    routing = models.CharField(max_length=16, choices=Routing.choices)
    guardrail = models.ForeignKey(Guardrail, null=True, on_delete=models.PROTECT, related_name="+")
    guardrail_version = models.PositiveIntegerField()
    computed_at = models.DateTimeField()
    superseded_at = models.DateTimeField(null=True, blank=True, help_text="Replaced after a recount")

    class Meta:
        ordering = ["run", "location__code", "item__sku"]
        constraints = [
            models.UniqueConstraint(
                fields=["line"], condition=Q(superseded_at__isnull=True), name="one_current_variance_per_line"
            ),
        ]
        indexes = [
            models.Index(fields=["run", "routing"]),
            models.Index(fields=["organization", "location", "item", "computed_at"]),
            # The reports (reconciliation.reports): an organization's current variances over a time
            # window. Every column their aggregates read is in the key (not INCLUDE, which SQLite
            # lacks), so they scan the index only.
            models.Index(
                fields=[
                    "organization",
                    "computed_at",
                    "facility",
                    "location",
                    "item",
                    "variance_units",
                    "variance_value",
                    "book_at_count",
                    "unit_cost",
                    "routing",
                    "id",
                ],
                condition=Q(superseded_at__isnull=True),
                name="variance_report_window",
            ),
            # The differences with a value among them (a few percent): the dashboard's top items.
            models.Index(
                fields=["organization", "computed_at", "item", "variance_value"],
                condition=Q(superseded_at__isnull=True) & ~Q(variance_value=0),
                name="variance_report_valued",
            ),
            # The differences in units among them (a few percent): the lines within tolerance,
            # tested against the guardrail's percent next to the rollup's figures.
            models.Index(
                fields=["organization", "computed_at", "facility", "location", "variance_units", "book_at_count"],
                condition=Q(superseded_at__isnull=True) & ~Q(variance_units=0),
                name="variance_report_differences",
            ),
            # The differences routed to a person (a few percent): the report's root causes, which
            # look each one's signatures up.
            models.Index(
                fields=["organization", "computed_at", "facility", "location", "variance_value", "id"],
                condition=Q(superseded_at__isnull=True, routing="proposal"),
                name="variance_report_proposals",
            ),
            # The report's default order (largest |value| first): its first page is the first rows
            # of this index within the window, not a sort of the whole window.
            models.Index(
                F("organization"),
                Abs("variance_value").desc(),
                F("id").desc(),
                F("computed_at"),
                condition=Q(superseded_at__isnull=True),
                name="variance_report_by_abs_value",
            ),
            # Lines whose variance a recount superseded (per-associate quality).
            models.Index(
                fields=["organization", "line"],
                condition=Q(superseded_at__isnull=False),
                name="variance_superseded_lines",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item_id}@{self.location_id}: {self.variance_units:+}"


class VarianceHourlyRollup(OrganizationOwned):
    """The current variances summed per location and UTC hour of `computed_at`: what the reports
    read instead of millions of variance rows (`reconciliation.reports`).

    Maintained by the pipeline in the transaction that writes the variances (`run_reconcile`
    adds the new ones, `_supersede_recounted` subtracts the replaced ones), by deltas, so
    concurrent reconciliations add up; `report_rollup_rebuild` recomputes it from the variances.
    Only figures that do not depend on a setting are kept: lines within tolerance depend on the
    guardrail's percent, and are counted from the (few) variances with a difference.

    An hour (not a day) because a report reads days in several time zones: an hour lies within
    one local day of every zone whose offset is a whole number of hours.
    """

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField(help_text="Start of the UTC hour of the variances' computed_at")
    lines = models.IntegerField(default=0, help_text="Current variances (lines counted)")
    variances = models.IntegerField(default=0, help_text="Of which with a difference in units")
    net_value = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("0"))
    absolute_value = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("0"))
    book_value = models.DecimalField(
        max_digits=32, decimal_places=7, default=Decimal("0"), help_text="Σ book at count × unit cost"
    )

    class Meta:
        constraints = [
            # The upsert's key; its leading columns serve the reports' time windows.
            models.UniqueConstraint(
                fields=["organization", "hour", "facility", "location"], name="variance_rollup_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.location_id} @ {self.hour:%Y-%m-%d %H:00}: {self.lines} lines"


class CountedItemLocation(OrganizationOwned):
    """When an item × location was last counted: the latest `computed_at` of its current variances,
    and its balance (when the mirror has one).

    The dashboard's coverage reads it instead of the window's variances: a pair counted in the
    window is stocked when its balance's on hand is not zero, so only the few stocked-out
    balances, and the pairs counted without a balance, are looked at one by one. Kept by
    `run_reconcile` in the variances' transaction; it only moves forward, as a recount's variance
    always replaces the one it supersedes with a later one for the same line.
    `report_rollup_rebuild` recomputes it.
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="+")
    last_counted_at = models.DateTimeField()
    balance = models.OneToOneField(
        InventoryBalance,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The pair's balance, as found when last counted (blank: none then; looked up when read)",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "location"], name="counted_item_location_key"),
        ]
        indexes = [
            # Coverage: the pairs counted in a window, linked to a balance or not, from the index alone.
            models.Index(fields=["organization", "last_counted_at", "balance"], name="counted_item_location_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id}@{self.location_id} counted {self.last_counted_at:%Y-%m-%d %H:%M}"
