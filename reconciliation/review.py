"""Reviewing a run before posting: uncounted items, extras, unmatched barcodes, variance
decisions, and the recount watchlist.

Every change a manager makes here goes back through the counting pipeline rather than around
it: an accepted zero and a matched barcode are new count events (in a short-lived review
session owned by the manager, submitted at once), so lines, tallies and variances are derived
exactly as for any scan, and the run is reconciled again in the same transaction. Each use case
locks the run first (then whatever the services it calls lock), writes its reason-log row, and
is safe to repeat: events have deterministic ids and a decided line or event can't be decided
twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, models, transaction
from django.db.models import CharField, Exists, OuterRef
from django.db.models.functions import Cast
from django.utils import timezone

from approvals.models import ProposalState, ProposedAction
from approvals.services import DecisionInput, DecisionInvalid, proposal_decide
from audit.models import AuditLog
from audit.services import audit_log_write
from counts.models import (
    CountEvent,
    CountLine,
    CountRun,
    CountSession,
    EventKind,
    EventMode,
    EventStatus,
    RunState,
    SessionState,
    SignalKind,
)
from counts.services.capture import MAX_BATCH, count_events_ingest
from counts.services.planning import directed_requests_add
from counts.services.sessions import count_session_submit
from inventory.models import Facility, Item, Location
from reconciliation.models import Routing, Variance
from reconciliation.review_selectors import (
    EXTRA_DISCARDED,
    EXTRA_INCLUDED,
    LINE_LABEL,
    WatchlistEntry,
    accept_zero_event_id,
    extra_decision,
    match_event_id,
    matches_of,
    run_uncounted_among,
    watchlist_list,
)
from reconciliation.services import ReconcileResult, run_reconcile

REVIEW_DEVICE_ID = "manager-review"
REVIEW_MODES = frozenset(EventMode.values)
# Once a proposal reached one of these states its adjustment is (being) posted: changing the
# line's count now would post the difference twice.
POSTED_PROPOSAL_STATES = (
    ProposalState.APPROVED,
    ProposalState.QUEUED,
    ProposalState.PUSHED,
    ProposalState.CONFIRMED,
    ProposalState.FAILED,
)


class ReviewConflict(Exception):
    """The run's (or the row's) current state does not allow this review action."""


class ReviewInvalid(Exception):
    """The request itself is wrong; `field` names what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ReviewNotFound(Exception):
    """The row the action names is not in this run (answered like any missing row: 404)."""


class NothingToDecide(ReviewConflict):
    """The variance needs no decision (no difference, auto-adjusted, recount first, superseded)."""


def _review_run_locked(run: CountRun) -> CountRun:
    run = CountRun.objects.select_for_update().select_related("organization", "facility").get(pk=run.pk)
    if run.state != RunState.IN_REVIEW:
        raise ReviewConflict(
            f"run {run.pk} is {run.get_state_display().lower()}; review actions need a run in review (reconcile it)"
        )
    return run


def _review_session_open(*, run: CountRun, actor: AbstractBaseUser) -> CountSession:
    """A session of the manager on a run in review: counting services refuse to open one there."""
    active = CountSession.objects.filter(user=actor, state=SessionState.ACTIVE).first()
    if active is not None:
        raise ReviewConflict(
            f"you have an active count session ({active.pk} on run {active.run_id}); pause or submit it first"
        )
    session = CountSession(
        organization_id=run.organization_id,
        run=run,
        user=actor,
        device_id=REVIEW_DEVICE_ID,
        is_recount=False,
        last_activity_at=timezone.now(),
    )
    session._history_user = actor
    try:
        with transaction.atomic():
            session.save()
    except IntegrityError:
        raise ReviewConflict("you have an active count session; pause or submit it first") from None
    return session


def _review_events_record(*, run: CountRun, actor: AbstractBaseUser, events: list[dict[str, Any]]) -> CountSession:
    """Store `events` in a new review session of `actor` and submit it. Every event must count:
    a rejected or refused one aborts the whole use case (the caller's transaction)."""
    session = _review_session_open(run=run, actor=actor)
    refused = 0
    for start in range(0, len(events), MAX_BATCH):
        result = count_events_ingest(
            session=session, actor=actor, events=events[start : start + MAX_BATCH], allowed_modes=REVIEW_MODES
        )
        if result.rejected:
            raise ReviewInvalid("items", f"the count pipeline rejected an event: {result.rejected[0]['errors']}")
        refused += result.refused
    if refused:
        reason = (
            CountEvent.objects.filter(session=session, status=EventStatus.REFUSED)
            .values_list("refusal_reason", flat=True)
            .first()
        )
        raise ReviewConflict(f"the count would be refused: {reason}")
    count_session_submit(session=session, actor=actor)
    return session


# --- Uncounted: accept zero, or count them in a follow-up directed run -------------------------


@dataclass(frozen=True)
class AcceptZeroResult:
    accepted: list[dict[str, Any]]
    already_counted: list[tuple[int, int]]
    session: CountSession | None
    reconciled: ReconcileResult | None


@transaction.atomic
def uncounted_accept_zero(
    *, run: CountRun, actor: AbstractBaseUser, keys: set[tuple[int, int]] | None
) -> AcceptZeroResult:
    """Accept zero as the count of uncounted item × locations (`keys`, or all with None).

    Guarantees: each accepted item gets a `set 0` event by `actor` (mode import, `counted_by`
    "accepted zero by …", time of acceptance) in a submitted review session, hence a count line
    with counted 0 and the book of now, and — after reconciling in the same transaction — its
    variance. Items counted meanwhile are left alone and reported; repeating the request changes
    nothing (event ids are deterministic). One reason-log row lists what was accepted.
    """
    run = _review_run_locked(run)
    rows = run_uncounted_among(run=run, keys=keys)
    uncounted = {(row["location_id"], row["item_id"]) for row in rows}
    already_counted = sorted((keys or set()) - uncounted)
    if not rows:
        return AcceptZeroResult(accepted=[], already_counted=already_counted, session=None, reconciled=None)

    now = timezone.now()
    counted_by = f"accepted zero by {actor.get_username()}"[:150]
    events = [
        {
            "event_id": str(
                accept_zero_event_id(run_id=run.pk, location_id=row["location_id"], item_id=row["item_id"])
            ),
            "location": row["location_code"],
            "sku": row["item_sku"],
            "quantity": "0",
            "kind": EventKind.SET,
            "mode": EventMode.IMPORT,
            "counted_at": now.isoformat(),
            "counted_by": counted_by,
        }
        for row in rows
    ]
    session = _review_events_record(run=run, actor=actor, events=events)
    accepted = [{"item": row["item_sku"], "location": row["location_code"], "book": str(row["book"])} for row in rows]
    audit_log_write(
        organization_id=run.organization_id,
        tag="uncounted_accepted_zero",
        actor=actor,
        subject=run,
        facility_id=run.facility_id,
        reason=f"zero accepted as the count of {len(accepted)} uncounted item(s)",
        data={"session": session.pk, "items": accepted},
    )
    reconciled = run_reconcile(run=run, actor=actor)
    return AcceptZeroResult(accepted=accepted, already_counted=already_counted, session=session, reconciled=reconciled)


@dataclass(frozen=True)
class RecountResult:
    run: CountRun
    requested: int
    repeated: int


@transaction.atomic
def uncounted_recount(*, run: CountRun, actor: AbstractBaseUser, keys: set[tuple[int, int]] | None) -> RecountResult:
    """Ask for the uncounted item × locations (`keys`, or all) to be counted in a directed run.

    Guarantees: each lands as a `planned` request in the facility's open directed run (opened if
    none is), through the same service as every other signal; one already asked for by an open
    directed run is left alone, so repeating the request changes nothing. The run under review
    is left as it is (nothing is posted for those items). Audited when something was requested.
    """
    # Facility before run, the order facility_time_zone_change takes them in; the facility lock
    # (the one directed_requests_add takes) also makes the "already requested" read and the
    # requests one step.
    Facility.objects.select_for_update().get(pk=run.facility_id)
    run = _review_run_locked(run)
    rows = run_uncounted_among(run=run, keys=keys)
    if not rows:
        raise ReviewInvalid("items", "none of these items is uncounted on this run")
    pending = [row for row in rows if row["follow_up_run"] is None]
    if not pending:
        return RecountResult(run=CountRun.objects.get(pk=rows[0]["follow_up_run"]), requested=0, repeated=len(rows))
    items = Item.objects.in_bulk({row["item_id"] for row in pending})
    locations = Location.objects.in_bulk({row["location_id"] for row in pending})
    note = f"uncounted in run {run.pk} ({run.name})"
    follow_up = directed_requests_add(
        organization=run.organization,
        facility=run.facility,
        pairs=[(items[row["item_id"]], locations[row["location_id"]]) for row in pending],
        reason=SignalKind.PLANNED,
        actor=actor,
        note=note,
    ).run
    audit_log_write(
        organization_id=run.organization_id,
        tag="uncounted_recount_requested",
        actor=actor,
        subject=run,
        facility_id=run.facility_id,
        reason=f"{len(pending)} uncounted item(s) sent to directed run {follow_up.pk}",
        data={
            "follow_up_run": follow_up.pk,
            "items": [{"item": row["item_sku"], "location": row["location_code"]} for row in pending],
        },
    )
    return RecountResult(run=follow_up, requested=len(pending), repeated=len(rows) - len(pending))


# --- Extras (directed runs) ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExtraDecisionResult:
    line: CountLine
    decision: AuditLog
    variance: Variance | None


def _extra_locked(run: CountRun, line: CountLine) -> CountLine:
    line = CountLine.objects.select_for_update().select_related("item", "location").filter(run=run, pk=line.pk).first()
    if line is None:
        raise ReviewInvalid("line", "no such line in this run")
    decided = extra_decision(line=line)
    if decided is not None:
        who = decided.actor.get_username() if decided.actor else "someone"
        verb = "included" if decided.tag == EXTRA_INCLUDED else "discarded"
        raise ReviewConflict(f"line {line.pk} was already {verb} by {who} at {decided.created_at.isoformat()}")
    if not line.is_extra:
        raise ReviewConflict(f"line {line.pk} was requested; only extra lines are included or discarded")
    return line


def _extra_audit(run: CountRun, line: CountLine, actor: AbstractBaseUser, tag: str, note: str) -> AuditLog:
    return audit_log_write(
        organization_id=run.organization_id,
        tag=tag,
        actor=actor,
        subject=line,
        facility_id=run.facility_id,
        reason=note,
        data={
            "run": run.pk,
            "item": line.item.sku,
            "location": line.location.code,
            "counted": str(line.counted_quantity),
            "book": str(line.book_quantity),
        },
    )


@transaction.atomic
def extra_include(*, run: CountRun, line: CountLine, actor: AbstractBaseUser, note: str = "") -> ExtraDecisionResult:
    """Count an extra (unrequested) line of a directed run like a requested one.

    Guarantees: the line gets its variance in the same transaction (reconciled again); the
    decision is recorded once, with who and when — a second decision on the line is a conflict.
    """
    run = _review_run_locked(run)
    line = _extra_locked(run, line)
    line.is_extra = False
    line.save(update_fields=["is_extra"])
    decision = _extra_audit(run, line, actor, EXTRA_INCLUDED, note)
    run_reconcile(run=run, actor=actor)
    variance = Variance.objects.filter(line=line, superseded_at__isnull=True).first()
    return ExtraDecisionResult(line=line, decision=decision, variance=variance)


@transaction.atomic
def extra_discard(*, run: CountRun, line: CountLine, actor: AbstractBaseUser, note: str = "") -> ExtraDecisionResult:
    """Keep an extra line out of the variances for good; the decision is recorded once."""
    run = _review_run_locked(run)
    line = _extra_locked(run, line)
    decision = _extra_audit(run, line, actor, EXTRA_DISCARDED, note)
    return ExtraDecisionResult(line=line, decision=decision, variance=None)


def _included_extras_restore(run: CountRun, keys: set[tuple[int, int]]) -> None:
    # lines_rebuild recomputes `is_extra` from the run's requests; a manager's inclusion wins.
    included = AuditLog.objects.filter(
        organization_id=run.organization_id,
        tag=EXTRA_INCLUDED,
        object_type=LINE_LABEL,
        object_id=Cast(OuterRef("pk"), output_field=CharField()),
    )
    CountLine.objects.filter(
        run=run, is_extra=True, location_id__in={key[0] for key in keys}, item_id__in={key[1] for key in keys}
    ).filter(Exists(included)).update(is_extra=False)


# --- Unmatched barcodes --------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchResult:
    matched: list[CountEvent]
    item: Item
    lines: list[CountLine] = field(default_factory=list)
    reconciled: ReconcileResult | None = None


@transaction.atomic
def unmatched_match(
    *, run: CountRun, event_id: uuid.UUID, item: Item, actor: AbstractBaseUser, same_barcode: bool = False
) -> MatchResult:
    """Read an unmatched scan as `item`: it then counts like any scan of that item.

    The scan stays as it was (events are append-only); a new event with the same kind, quantity,
    location and counted-at time, naming the item by SKU, is stored in a review session of the
    manager (one per original session) with the id `match_event_id(original)` — which is also
    what marks the scan resolved, so it can't be matched twice. With `same_barcode`, every
    unresolved unmatched scan of the run with the same code is matched too. The run is then
    reconciled: a changed line's open proposal is superseded and its variance recomputed.
    Refused when the item × location's adjustment was already approved (it would post twice) or
    when the re-read scan would itself be refused.
    """
    run = _review_run_locked(run)
    if item.organization_id != run.organization_id:
        raise ReviewInvalid("item", "no such item")
    original = (
        CountEvent.objects.select_related("session", "location", "user")
        .filter(run=run, event_id=event_id, status=EventStatus.UNMATCHED)
        .first()
    )
    if original is None:
        raise ReviewNotFound("no unmatched scan with this id in this run")
    if original.session.state == SessionState.VOIDED:
        raise ReviewConflict("the scan's session was voided; its scans don't count")
    if (previous := matches_of([original]).get(original.event_id)) is not None:
        raise ReviewConflict(
            f"this scan was already matched to {previous.sku} by {previous.user.get_username()}"
            f" at {previous.received_at.isoformat()}"
        )
    originals = [original]
    if same_barcode:
        others = list(
            CountEvent.objects.select_related("location", "user")
            .filter(run=run, status=EventStatus.UNMATCHED, barcode=original.barcode, sku=original.sku)
            .exclude(pk=original.pk)
            .exclude(session__state=SessionState.VOIDED)
            .order_by("counted_at", "pk")
        )
        resolved = matches_of(others)
        originals += [event for event in others if event.event_id not in resolved]

    keys = {(event.location_id, item.pk) for event in originals}
    posted = (
        Variance.objects.filter(
            run=run,
            superseded_at__isnull=True,
            item=item,
            location_id__in={key[0] for key in keys},
            proposal__state__in=POSTED_PROPOSAL_STATES,
        )
        .select_related("location")
        .first()
    )
    if posted is not None:
        raise ReviewConflict(
            f"the adjustment of {item.sku} at {posted.location.code} is already approved; "
            "count it again in a directed run instead"
        )

    by_session: dict[int, list[dict[str, Any]]] = {}
    for event in originals:
        by_session.setdefault(event.session_id, []).append(
            {
                "event_id": str(match_event_id(event.event_id)),
                "location": event.location.code,
                "sku": item.sku,
                "quantity": str(event.quantity),
                "kind": event.kind,
                "mode": event.mode,
                "counted_at": event.counted_at.isoformat(),
                "counted_by": (event.counted_by or event.user.get_username())[:150],
            }
        )
    # One review session per original session: a `set` then replays only against the scans it
    # was taken with, as it would have on the device.
    for events in by_session.values():
        _review_events_record(run=run, actor=actor, events=events)
    _included_extras_restore(run, keys)
    audit_log_write(
        organization_id=run.organization_id,
        tag="unmatched_matched",
        actor=actor,
        subject=original,
        facility_id=run.facility_id,
        reason=f"{original.barcode or original.sku} read as {item.sku}",
        data={
            "run": run.pk,
            "item": item.sku,
            "events": [
                {"event_id": str(event.event_id), "match_event_id": str(match_event_id(event.event_id)),
                 "location": event.location.code, "kind": event.kind, "quantity": str(event.quantity)}
                for event in originals
            ],
        },
    )  # fmt: skip
    reconciled = run_reconcile(run=run, actor=actor)
    lines = list(
        CountLine.objects.filter(run=run, item=item, location_id__in={key[0] for key in keys}).select_related(
            "location"
        )
    )
    return MatchResult(matched=originals, item=item, lines=lines, reconciled=reconciled)


# --- Variance decisions --------------------------------------------------------------------------


class VarianceAction(models.TextChoices):
    APPLY = "apply", "Apply (approve the adjustment)"
    SKIP = "skip", "Skip (record it, post nothing)"


def variance_decide(
    *,
    variance: Variance,
    actor: AbstractBaseUser,
    action: str,
    reason_code: str,
    root_cause: str = "",
    note: str = "",
    edit_token_ok: bool,
) -> ProposedAction:
    """Apply (approve) or skip (reject) a variance's proposal, with a decision reason and a root
    cause from the organization's list (`other` needs a note).

    All the signing rules are proposal_decide's (token, role, tiers, separation of duties,
    outbox row on approval). A skipped variance stays recorded — signature, reason and root
    cause — and posts nothing. No transaction here on purpose: proposal_decide audits refusals
    in their own transaction, which an outer one would roll back.
    """
    if action not in VarianceAction.values:
        raise DecisionInvalid("action", 'must be "apply" or "skip"')
    if variance.superseded_at is not None:
        raise NothingToDecide(f"variance {variance.pk} was superseded by a later count; decide the current one")
    if variance.routing == Routing.NONE:
        raise NothingToDecide(f"variance {variance.pk} has no difference; there is nothing to decide")
    if variance.routing == Routing.AUTO:
        raise NothingToDecide(f"variance {variance.pk} was adjusted within the guardrails; there is nothing to decide")
    if variance.routing == Routing.RECOUNT:
        raise NothingToDecide(f"variance {variance.pk} waits for a recount; decide the variance that follows it")
    proposal = ProposedAction.objects.filter(variance=variance).first()
    if proposal is None:
        raise NothingToDecide(f"variance {variance.pk} has no proposal to decide")
    # The token is judged first (and audited) by proposal_decide; only then is the input judged.
    if edit_token_ok and action == VarianceAction.SKIP and not root_cause.strip():
        raise DecisionInvalid("root_cause", "required: the organization's root cause code")
    decision = DecisionInput(
        decision="approve" if action == VarianceAction.APPLY else "reject",
        reason_code=reason_code,
        root_cause=root_cause,
        note=note,
    )
    return proposal_decide(proposal=proposal, actor=actor, decision=decision, edit_token_ok=edit_token_ok)


# --- Recount watchlist ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchlistFlagResult:
    flagged: list[WatchlistEntry]
    already_requested: list[WatchlistEntry]
    directed_run: CountRun | None


@transaction.atomic
def watchlist_flag(*, run: CountRun, actor: AbstractBaseUser | None) -> WatchlistFlagResult:
    """Send the run's item × locations that are on the watchlist to a directed recount.

    Guarantees: each becomes a `recurring_variance` request in the facility's open directed run
    (opened if none is), through directed_requests_add; one already requested in an open directed
    run is left alone, so flagging twice changes nothing. Audited when something was flagged.
    """
    # Facility before run, as in uncounted_recount.
    Facility.objects.select_for_update().get(pk=run.facility_id)
    run = CountRun.objects.select_for_update().select_related("organization").get(pk=run.pk)
    entries = watchlist_list(organization=run.organization, run=run)
    pending = [entry for entry in entries if entry.directed_run is None]
    already = [entry for entry in entries if entry.directed_run is not None]
    if not pending:
        return WatchlistFlagResult(flagged=[], already_requested=already, directed_run=None)
    items = Item.objects.in_bulk({entry.item_id for entry in pending})
    locations = Location.objects.in_bulk({entry.location_id for entry in pending})
    directed_run = directed_requests_add(
        organization=run.organization,
        facility=run.facility,
        pairs=[(items[entry.item_id], locations[entry.location_id]) for entry in pending],
        reason=SignalKind.RECURRING_VARIANCE,
        actor=actor,
        note="variance beyond tolerance in recent counts",
    ).run
    audit_log_write(
        organization_id=run.organization_id,
        tag="watchlist_flagged",
        actor=actor,
        subject=run,
        facility_id=run.facility_id,
        reason=f"{len(pending)} item × location(s) on the recount watchlist sent to directed run {directed_run.pk}",
        data={
            "directed_run": directed_run.pk,
            "items": [
                {"item": entry.item_sku, "location": entry.location_code, "hits": entry.hits, "counts": entry.counts}
                for entry in pending
            ],
        },
    )
    return WatchlistFlagResult(flagged=pending, already_requested=already, directed_run=directed_run)
