"""Reconciliation: variances computed and routed in SQL, one statement per step for a whole run.

A run is reconciled once its sessions are submitted; reconciling again only handles lines that
have no current variance (new, or recounted since), so no proposal is ever created twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Max, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Abs, TruncHour
from django.utils import timezone

from accounts.models import Organization
from adapters.interface import push_requested
from approvals.models import OPEN_PROPOSAL_STATES, ProposalState, ProposedAction
from audit.services import audit_log_write, event_emit, events_dispatch_soon, sql_event_id
from counts.bulk import adapt
from counts.models import CountLine, CountRun, CountSession, RunState, SessionState
from inventory.models import Facility, InventoryBalance
from reconciliation.models import (
    CountedItemLocation,
    Guardrail,
    RootCause,
    Routing,
    Variance,
    VarianceHourlyRollup,
)

DEFAULT_ROOT_CAUSES = (
    ("damaged", "Damaged", False),
    ("miscount", "Miscount", False),
    ("mis_pick", "Mis-pick", False),
    ("receiving_error", "Receiving error", False),
    ("shrink_theft", "Shrink / theft", False),
    ("uom_mixup", "Unit of measure mix-up", False),
    ("found", "Found", False),
    ("misplaced", "Misplaced", False),
    ("data_entry_error", "Data entry error", False),
    ("inbound_not_recorded", "Inbound not recorded", False),
    ("outbound_not_recorded", "Outbound not recorded", False),
    ("other", "Other (explain in a note)", True),
)


class RunNotReconcilable(Exception):
    """The run is not in a state (or its sessions are not) that allows reconciliation."""


def root_causes_ensure(*, organization: Organization) -> None:
    """Give the organization the standard root-cause list (admins may edit it afterwards)."""
    RootCause.objects.bulk_create(
        [
            RootCause(organization=organization, code=code, label=label, requires_note=requires_note)
            for code, label, requires_note in DEFAULT_ROOT_CAUSES
        ],
        ignore_conflicts=True,
    )


def guardrail_for(*, facility: Facility) -> Guardrail:
    """The facility's override when it has one, else the organization's default (created on first use)."""
    override = Guardrail.objects.filter(facility=facility).first()
    if override is not None:
        return override
    guardrail, _ = Guardrail.objects.get_or_create(organization_id=facility.organization_id, facility=None)
    return guardrail


@dataclass(frozen=True)
class ReconcileResult:
    run: CountRun
    variances: int
    proposals: int
    auto_approved: int
    superseded: int


# `done` is materialised so the planner never re-scans the table this statement is writing
# for every line (a nested-loop anti join it picks when the table was analysed while empty).
_CALC = """
done AS MATERIALIZED (
    SELECT line_id FROM reconciliation_variance WHERE run_id = %(run)s AND superseded_at IS NULL
),
calc AS (
    SELECT l.id AS line_id, l.organization_id, l.run_id, l.item_id, l.location_id,
           l.counted_quantity, l.book_quantity AS book_at_count, COALESCE(b.on_hand, 0) AS book_current,
           i.average_cost AS unit_cost,
           l.counted_quantity - l.book_quantity AS units,
           CASE WHEN l.book_quantity = 0 THEN NULL
                ELSE ROUND((l.counted_quantity - l.book_quantity) * 100.0 / l.book_quantity, 2) END AS percent,
           ROUND((l.counted_quantity - l.book_quantity) * i.average_cost, 2) AS value,
           CASE WHEN COALESCE(b.on_hand, 0) <> l.book_quantity THEN 1 ELSE 0 END AS moved,
           CASE WHEN %(policy)s = 'keep_count' THEN l.counted_quantity - COALESCE(b.on_hand, 0)
                ELSE l.counted_quantity - l.book_quantity END AS adjustment,
           CASE WHEN %(policy)s = 'keep_count' THEN COALESCE(b.on_hand, 0)
                ELSE l.book_quantity END AS basis
    FROM counts_countline l
    JOIN inventory_item i ON i.id = l.item_id
    LEFT JOIN inventory_inventorybalance b ON b.item_id = l.item_id AND b.location_id = l.location_id
    WHERE l.run_id = %(run)s AND l.is_extra = FALSE
      AND NOT EXISTS (SELECT 1 FROM done WHERE done.line_id = l.id)
)"""

# Thresholds are cast because SQLite receives Decimal parameters as text, which would compare
# as greater than any number.
# Routing compares exact figures: |adjustment| ≤ 2.00% of the basis is |units| × 100 ≤ 2.00 × basis,
# and the value is money rounded to cents — so 2.00% and $100.00 are auto, one step above is not.
_VARIANCES_SQL = (
    "WITH"
    + _CALC
    + """
INSERT INTO reconciliation_variance (
    organization_id, run_id, line_id, item_id, location_id, facility_id, counted_quantity, book_at_count,
    book_current, book_moved, variance_units, variance_percent, variance_value, unit_cost, adjustment_units,
    adjustment_value, routing, guardrail_id, guardrail_version, computed_at
)
SELECT organization_id, run_id, line_id, item_id, location_id, %(facility)s, counted_quantity, book_at_count,
       book_current, moved = 1, units, percent, value, unit_cost, adjustment,
       ROUND(adjustment * unit_cost, 2),
       CASE
           WHEN adjustment = 0 THEN 'none'
           WHEN moved = 1 AND %(policy)s = 'require_recount' THEN 'recount'
           WHEN %(recount_min)s IS NOT NULL
                AND ABS(ROUND(adjustment * unit_cost, 2)) > CAST(%(recount_min)s AS NUMERIC) THEN 'recount'
           WHEN basis <> 0 AND ABS(adjustment) * 100 <= CAST(%(auto_percent)s AS NUMERIC) * ABS(basis)
                AND ABS(ROUND(adjustment * unit_cost, 2)) <= CAST(%(auto_value)s AS NUMERIC) THEN 'auto'
           ELSE 'proposal'
       END,
       %(guardrail)s, %(guardrail_version)s, %(now)s
FROM calc
WHERE TRUE
"""
)


def _json_object() -> str:
    return "jsonb_build_object" if connection.vendor == "postgresql" else "json_object"


def _proposals_sql() -> str:
    obj = _json_object()
    text = "CAST({} AS TEXT)".format
    payload = (
        f"{obj}('item', i.sku, 'item_name', i.name, 'location', loc.code, 'facility', f.code, "
        f"'on_hand', {text('v.book_current')}, 'book_at_count', {text('v.book_at_count')}, "
        f"'physical', {text('v.counted_quantity')}, 'delta', {text('v.adjustment_units')}, "
        f"'variance', {obj}('units', {text('v.variance_units')}, 'percent', {text('v.variance_percent')}, "
        f"'value', {text('v.variance_value')}), 'book_moved', v.book_moved, "
        f"'suggested_reason', CASE WHEN v.adjustment_units > 0 THEN 'found' ELSE 'shrink_theft' END, "
        f"'guardrail_version', v.guardrail_version)"
    )
    return f"""
INSERT INTO approvals_proposedaction (
    organization_id, action_type, risk, state, variance_id, run_id, facility_id, item_id, location_id, delta,
    value_abs, needs_finance, auto_approved, payload, external_id, created_at, decided_at
)
SELECT v.organization_id, 'inventory_adjustment', 3,
       CASE WHEN v.routing = 'auto' THEN 'approved' ELSE 'pending' END,
       v.id, v.run_id, v.facility_id, v.item_id, v.location_id, v.adjustment_units, ABS(v.adjustment_value),
       ABS(v.adjustment_value) > CAST(%(finance_min)s AS NUMERIC), v.routing = 'auto', {payload},
       'CC-' || CAST(v.organization_id AS TEXT) || '-V' || CAST(v.id AS TEXT),
       %(now)s, CASE WHEN v.routing = 'auto' THEN %(now)s END
FROM reconciliation_variance v
JOIN inventory_item i ON i.id = v.item_id
JOIN inventory_location loc ON loc.id = v.location_id
JOIN inventory_facility f ON f.id = v.facility_id
WHERE v.run_id = %(run)s AND v.computed_at = %(now)s AND v.routing IN ('auto', 'proposal')
"""  # noqa: S608 - only our own SQL fragments are interpolated


_PROPOSAL_HISTORY_SQL = """
INSERT INTO approvals_historicalproposedaction (
    id, organization_id, action_type, risk, state, variance_id, run_id, facility_id, item_id, location_id, delta,
    value_abs, needs_finance, auto_approved, payload, external_id, created_at, decided_at,
    history_date, history_change_reason, history_type, history_user_id
)
SELECT id, organization_id, action_type, risk, state, variance_id, run_id, facility_id, item_id, location_id, delta,
       value_abs, needs_finance, auto_approved, payload, external_id, created_at, decided_at,
       %(now)s, %(reason)s, '+', %(actor)s
FROM approvals_proposedaction
WHERE run_id = %(run)s AND created_at = %(now)s
"""

_AUTO_PUSHES_SQL = """
INSERT INTO adapters_pendingpush (
    organization_id, proposal_id, external_id, payload, state, attempts, last_error, created_at, updated_at
)
SELECT organization_id, id, external_id, payload, 'pending', 0, '', %(now)s, %(now)s
FROM approvals_proposedaction
WHERE run_id = %(run)s AND created_at = %(now)s AND state = 'approved'
"""


def _events_sql() -> tuple[str, str]:
    """`variance.detected` for every difference and `proposal.created` for every proposal this
    pass made, inserted set-based with the change (the ledger is a transactional outbox)."""
    obj = _json_object()
    text = "CAST({} AS TEXT)".format
    event_id = sql_event_id()

    def boolean(column: str) -> str:
        # SQLite stores booleans as 0/1; JSON consumers expect true/false as PostgreSQL writes them.
        return column if connection.vendor == "postgresql" else f"json(CASE WHEN {column} THEN 'true' ELSE 'false' END)"

    variance_payload = (
        f"{obj}('variance', v.id, 'run', v.run_id, 'facility', f.code, 'item', i.sku, 'location', loc.code, "
        f"'units', {text('v.variance_units')}, 'percent', {text('v.variance_percent')}, "
        f"'value', {text('v.variance_value')}, 'routing', v.routing, 'guardrail_version', v.guardrail_version)"
    )
    proposal_payload = (
        f"{obj}('proposal', p.id, 'external_id', p.external_id, 'run', p.run_id, 'variance', p.variance_id, "
        f"'item', i.sku, 'location', loc.code, 'delta', {text('p.delta')}, 'value', {text('p.value_abs')}, "
        f"'state', p.state, 'auto_approved', {boolean('p.auto_approved')}, "
        f"'needs_finance', {boolean('p.needs_finance')})"
    )
    columns = "organization_id, event_id, type, version, payload, occurred_at, subscriber_errors"
    variances = f"""
INSERT INTO audit_event ({columns})
SELECT v.organization_id, {event_id}, 'variance.detected', 1, {variance_payload}, %(now)s, '[]'
FROM reconciliation_variance v
JOIN inventory_item i ON i.id = v.item_id
JOIN inventory_location loc ON loc.id = v.location_id
JOIN inventory_facility f ON f.id = v.facility_id
WHERE v.run_id = %(run)s AND v.computed_at = %(now)s AND v.variance_units <> 0
"""  # noqa: S608 - only our own SQL fragments are interpolated
    proposals = f"""
INSERT INTO audit_event ({columns})
SELECT p.organization_id, {event_id}, 'proposal.created', 1, {proposal_payload}, %(now)s, '[]'
FROM approvals_proposedaction p
JOIN inventory_item i ON i.id = p.item_id
JOIN inventory_location loc ON loc.id = p.location_id
WHERE p.run_id = %(run)s AND p.created_at = %(now)s
"""  # noqa: S608 - only our own SQL fragments are interpolated
    return variances, proposals


def _supersede_recounted(*, run: CountRun, actor: AbstractBaseUser | None, now: datetime) -> int:
    """Retire current variances whose line was recounted since, when nothing was decided on them.

    Only variances still open are replaced — no difference, a recount request, or a proposal
    nobody has decided. An adjustment already approved (by a person or a guardrail) stands:
    replacing it would post the difference twice.
    """
    # Compared in SQL: a re-run over a million reconciled lines must not load them into Python.
    changed = list(
        Variance.objects.filter(run=run, superseded_at__isnull=True)
        .exclude(routing=Routing.AUTO)
        .exclude(counted_quantity=F("line__counted_quantity"))
        .values_list("pk", flat=True)
    )
    if not changed:
        return 0
    open_proposals = list(
        ProposedAction.objects.select_for_update()
        .filter(variance__in=changed, state__in=OPEN_PROPOSAL_STATES)
        .order_by("pk")
    )
    decided = set(
        ProposedAction.objects.filter(variance__in=changed)
        .exclude(state__in=OPEN_PROPOSAL_STATES)
        .values_list("variance_id", flat=True)
    )
    stale = [variance_id for variance_id in changed if variance_id not in decided]
    for proposal in open_proposals:
        proposal.supersede()
        proposal.decided_at = now
        proposal._history_user = actor
        proposal._change_reason = "superseded by a recount"
        proposal.save()
    # The replaced variances leave the reports' rollup in the same transaction.
    rollup_add(Variance.objects.filter(pk__in=stale), sign=-1)
    Variance.objects.filter(pk__in=stale).update(superseded_at=now)
    return len(stale)


@transaction.atomic
def run_reconcile(*, run: CountRun, actor: AbstractBaseUser | None) -> ReconcileResult:
    """Move a counted run into review and compute and route its variances.

    Guarantees: every counted line (extras aside, until a manager includes them) has exactly
    one current variance; within the guardrails it is approved by the guardrail version that
    decided, with its outbox row; otherwise it becomes a pending proposal. Idempotent.
    """
    run = CountRun.objects.select_for_update().select_related("facility").get(pk=run.pk)
    if run.state == RunState.IN_PROGRESS:
        open_sessions = list(
            CountSession.objects.filter(run=run, state__in=[SessionState.ACTIVE, SessionState.PAUSED]).values_list(
                "pk", flat=True
            )
        )
        if open_sessions:
            raise RunNotReconcilable(f"sessions still open: {', '.join(map(str, open_sessions))}; submit them first")
        run.begin_review()
        run._history_user = actor
        run.save()
    elif run.state != RunState.IN_REVIEW:
        raise RunNotReconcilable(f"run {run.pk} is {run.get_state_display().lower()}; only counted runs reconcile")

    guardrail = guardrail_for(facility=run.facility)
    now = timezone.now()
    superseded = _supersede_recounted(run=run, actor=actor, now=now)
    moment = adapt(now)
    params = {
        "run": run.pk,
        "facility": run.facility_id,
        "policy": guardrail.moved_book_policy,
        "auto_percent": guardrail.auto_max_percent,
        "auto_value": guardrail.auto_max_value,
        "recount_min": guardrail.recount_min_value,
        "finance_min": guardrail.finance_min_value,
        "guardrail": guardrail.pk,
        "guardrail_version": guardrail.version,
        "now": moment,
        "actor": actor.pk if actor is not None else None,
        "reason": f"reconciliation of run {run.pk} (guardrail v{guardrail.version})",
    }
    with connection.cursor() as cursor:
        for statement in (_VARIANCES_SQL, _proposals_sql(), _PROPOSAL_HISTORY_SQL, _AUTO_PUSHES_SQL, *_events_sql()):
            cursor.execute(statement, params)
    new = Variance.objects.filter(run=run, computed_at=now)
    rollup_add(new, sign=1)
    counted_pairs_touch(new)
    events_dispatch_soon()
    # SQLite reports no row count for INSERT … WITH; count what this pass created instead.
    created = ProposedAction.objects.filter(run=run, created_at=now)
    variances = Variance.objects.filter(run=run, computed_at=now).count()
    proposals = created.count()
    auto_approved = created.filter(auto_approved=True).count()
    if auto_approved:
        push_requested(organization_id=run.organization_id)
    audit_log_write(
        organization_id=run.organization_id,
        tag="run_reconciled",
        actor=actor,
        subject=run,
        facility_id=run.facility_id,
        reason=params["reason"],
        data={
            "variances": variances,
            "proposals": proposals,
            "auto_approved": auto_approved,
            "superseded": superseded,
            "guardrail_version": guardrail.version,
            "moved_book_policy": guardrail.moved_book_policy,
        },
    )
    return ReconcileResult(
        run=run, variances=variances, proposals=proposals, auto_approved=auto_approved, superseded=superseded
    )


# --- The reports' rollup ----------------------------------------------------------------------

BOOK_VALUE = ExpressionWrapper(
    F("book_at_count") * F("unit_cost"), output_field=DecimalField(max_digits=32, decimal_places=7)
)
_ROLLUP_FIGURES = ("lines", "variances", "net_value", "absolute_value", "book_value")
_ROLLUP_KEY = ("organization_id", "hour", "facility_id", "location_id")


def _rollup_rows(variances: QuerySet[Variance], *, sign: int) -> QuerySet[Variance]:
    """The variances' figures per rollup key, times `sign` (1 to add them, −1 to take them out)."""
    factor = Value(sign)
    return (
        variances.order_by()
        .annotate(hour=TruncHour("computed_at", tzinfo=UTC))
        .values("organization_id", "facility_id", "location_id", "hour")
        .annotate(
            lines=Count("*") * factor,
            variances=Count("variance_units", filter=~Q(variance_units=0)) * factor,
            net_value=Sum("variance_value") * factor,
            absolute_value=Sum(Abs("variance_value")) * factor,
            book_value=Sum(BOOK_VALUE) * factor,
        )
    )


def rollup_add(variances: QuerySet[Variance], *, sign: int) -> None:
    """Add (sign 1) or take out (sign −1) these variances' figures to the reports' rollup, in one
    upsert statement (INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE) that adds deltas, so
    concurrent writers add up under the row locks the upsert takes. Keys left with no line are
    deleted (a report shows no zone or day for them). Runs in the caller's transaction, which
    must be the one that writes (or supersedes) the variances."""
    # Keys in a fixed order, so concurrent upserts lock the rows they share in the same order.
    rows = _rollup_rows(variances, sign=sign).order_by("hour", "facility_id", "location_id")
    try:
        select, params = rows.query.sql_with_params()
    except EmptyResultSet:  # e.g. pk__in=[]: nothing to add
        return
    table = VarianceHourlyRollup._meta.db_table
    columns = ", ".join(("organization_id", "facility_id", "location_id", "hour", *_ROLLUP_FIGURES))
    updates = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in _ROLLUP_FIGURES)
    key = ", ".join(_ROLLUP_KEY)
    statement = f"INSERT INTO {table} ({columns}) {select} ON CONFLICT ({key}) DO UPDATE SET {updates}"
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
    if sign < 0:
        emptied = variances.order_by().values("location_id")
        VarianceHourlyRollup.objects.filter(
            organization_id__in=variances.order_by().values("organization_id"), location_id__in=emptied, lines=0
        ).delete()


def _counted_pairs(variances: QuerySet[Variance]) -> QuerySet[Variance]:
    """Per item × location of these variances: the latest computed_at, and the pair's balance."""
    balance = InventoryBalance.objects.filter(item_id=OuterRef("item_id"), location_id=OuterRef("location_id"))
    return (
        variances.order_by()
        .values("organization_id", "item_id", "location_id")
        .annotate(last=Max("computed_at"), balance=Subquery(balance.values("pk")[:1]))
    )


def counted_pairs_touch(variances: QuerySet[Variance]) -> None:
    """Move each of these variances' item × locations' `last_counted_at` forward to their latest
    `computed_at` (never backward: a concurrent later count wins), and link its balance, in one
    upsert."""
    try:
        select, params = _counted_pairs(variances).order_by("item_id", "location_id").query.sql_with_params()
    except EmptyResultSet:
        return
    table = CountedItemLocation._meta.db_table
    later = f"CASE WHEN excluded.last_counted_at > {table}.last_counted_at THEN excluded.last_counted_at"
    statement = (
        f"INSERT INTO {table} (organization_id, item_id, location_id, last_counted_at, balance_id) {select} "
        f"ON CONFLICT (item_id, location_id) DO UPDATE SET last_counted_at = {later} "
        f"ELSE {table}.last_counted_at END, balance_id = excluded.balance_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@transaction.atomic
def report_rollup_rebuild(*, organization: Organization | None = None) -> int:
    """Recompute the reports' rollup, and when each item × location was last counted, from the
    current variances (one organization's, or all): for operations, after bulk loads or a
    suspected drift. Returns the number of rollup rows.

    The organization's variances are locked against reconciliation meanwhile (its runs' rows,
    in id order), so no delta is lost between the delete and the insert.
    """
    runs = CountRun.objects.select_for_update().order_by("pk")
    rollup = VarianceHourlyRollup.objects.all()
    current = Variance.objects.filter(superseded_at__isnull=True)
    if organization is not None:
        runs, rollup = runs.filter(organization=organization), rollup.filter(organization=organization)
        current = current.filter(organization=organization)
    list(runs.values_list("pk", flat=True))
    pairs = CountedItemLocation.objects.all()
    if organization is not None:
        pairs = pairs.filter(organization=organization)
    rollup.delete()
    pairs.delete()
    rollup_add(current, sign=1)
    counted_pairs_touch(current)
    return (rollup if organization is not None else VarianceHourlyRollup.objects.all()).count()


CLOSED_WITHOUT_ADJUSTMENT = (ProposalState.REJECTED, ProposalState.SUPERSEDED)


class RunNotClosable(Exception):
    """Proposals of the run still wait for a decision, or the run is not in review."""


@transaction.atomic
def run_close(*, run: CountRun, actor: AbstractBaseUser | None) -> CountRun:
    """Close a reviewed run once nothing in it waits for a person.

    Guarantees: every proposal of the run is decided (approved, rejected or superseded); the
    run's figures go to the reason log and a `count.run.closed` event, in the same transaction.
    """
    run = CountRun.objects.select_for_update().select_related("facility").get(pk=run.pk)
    if run.state != RunState.IN_REVIEW:
        raise RunNotClosable(f"run {run.pk} is {run.get_state_display().lower()}; only runs in review close")
    waiting = ProposedAction.objects.filter(run=run, state__in=OPEN_PROPOSAL_STATES).count()
    if waiting:
        raise RunNotClosable(f"{waiting} proposal(s) of run {run.pk} still wait for a decision")
    current = Variance.objects.filter(run=run, superseded_at__isnull=True)
    figures = current.aggregate(
        variances=Count("pk", filter=~Q(variance_units=0)),
        net_value=Sum("variance_value"),
        absolute_value=Sum(Abs("variance_value")),
    )
    summary = {
        "run": run.pk,
        "name": run.name,
        "facility": run.facility.code,
        "kind": run.kind,
        "lines_counted": CountLine.objects.filter(run=run).count(),
        "variances": figures["variances"],
        "net_value": figures["net_value"] or Decimal("0"),
        "absolute_value": figures["absolute_value"] or Decimal("0"),
        "adjustments": ProposedAction.objects.filter(run=run).exclude(state__in=CLOSED_WITHOUT_ADJUSTMENT).count(),
    }
    run.close()
    run.closed_at = timezone.now()
    run._history_user = actor
    run._change_reason = "closed after review"
    run.save()
    audit_log_write(
        organization_id=run.organization_id,
        tag="run_closed",
        actor=actor,
        subject=run,
        facility_id=run.facility_id,
        reason=f"run {run.pk} closed",
        data={key: str(value) for key, value in summary.items()},
    )
    event_emit(organization_id=run.organization_id, type="count.run.closed", payload=summary)
    return run
