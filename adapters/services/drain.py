"""Draining the outbox into a system of record, exactly once.

One drain per connection at a time (the worker lease). A drain:
1. takes back batches a killed worker left in flight (they may have reached the backend);
2. forms batches from pending pushes — one per backend location, at most the backend's batch
   size — and commits each with its stable external id before anything is sent;
3. sends due batches, `concurrency` at a time. A batch whose outcome is unknown — an answer
   lost, a worker killed while it was out — is looked up by its external id first: nothing is
   re-sent blindly;
4. records each outcome in its own transaction: accepted (mirror += delta, reason log, proposal
   pushed), rejected (a person fixes the cause and retries), failed (retried with backoff;
   after PUSH_MAX_FAILURES a person must act).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from adapters.interface import (
    AdjustmentBatch,
    AdjustmentLine,
    InventoryBackend,
    OutcomeUnknown,
    PermanentBackendError,
    PushReceipt,
    TransientBackendError,
    backend_for,
)
from adapters.models import (
    BackendConnection,
    BatchState,
    ExternalKind,
    ExternalRecord,
    PendingPush,
    PushBatch,
    PushState,
)
from adapters.retry import Backoff, drain_backoff, inline_backoff
from adapters.services.connections import ConnectionBusy, connection_worker, lease_renew
from approvals.models import ProposalState, ProposedAction
from audit.models import AuditLog
from audit.services import audit_log_write, event_emit, events_emit_bulk
from inventory.bulk import update_rows
from inventory.models import Item, Location
from inventory.services import balances_apply_deltas

logger = logging.getLogger(__name__)

FORM_CHUNK = 5000


@dataclass
class DrainResult:
    connection: str
    skipped: str = ""
    reclaimed: int = 0
    batches_formed: int = 0
    unmappable: int = 0
    sent: int = 0
    accepted: int = 0
    exported: int = 0
    rejected: int = 0
    failed: int = 0
    lines_accepted: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Delivery:
    """What happened to one batch in this drain (computed off the database, in a thread)."""

    batch_id: int
    outcome: str  # accepted | rejected | failed
    receipt: PushReceipt | None = None
    error: str = ""
    in_doubt: bool = False  # a send of this drain may have landed


def push_drain(*, connection: BackendConnection, actor: AbstractBaseUser | None = None) -> DrainResult:
    """Send the connection's organization's approved adjustments, exactly once. Idempotent."""
    result = DrainResult(connection=connection.name)
    if not connection.active or not connection.is_push_target:
        result.skipped = "the connection is inactive or not the organization's push target"
        return result
    try:
        with connection_worker(connection, purpose="drain") as owner:
            backend = backend_for(connection)
            result.reclaimed = _reclaim_in_flight(connection)
            _form_batches(connection, backend, actor, result)
            _send_due_batches(connection, backend, owner, actor, result)
    except ConnectionBusy as busy:
        result.skipped = str(busy)
        return result
    BackendConnection.objects.filter(pk=connection.pk).update(last_drain_at=timezone.now())
    return result


def _reclaim_in_flight(connection: BackendConnection) -> int:
    """Batches left in flight by a worker that died: due now, and looked up before any re-send."""
    now = timezone.now()
    stale = list(PushBatch.objects.filter(connection=connection, state=BatchState.IN_FLIGHT).order_by("pk"))
    for batch in stale:
        batch.state = BatchState.FAILED
        batch.next_attempt_at = now
        batch.outcome_unknown = True
        batch.last_error = "the worker sending it stopped; it will be looked up before any re-send"
        batch._change_reason = "reclaimed from a stopped worker"
        batch.save(update_fields=["state", "next_attempt_at", "outcome_unknown", "last_error"])
    return len(stale)


# --- forming batches --------------------------------------------------------------------
def _form_batches(
    connection: BackendConnection, backend: InventoryBackend, actor: AbstractBaseUser | None, result: DrainResult
) -> None:
    while True:
        with transaction.atomic():
            pushes = list(
                PendingPush.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(organization_id=connection.organization_id, state=PushState.PENDING, batch__isnull=True)
                .select_related("proposal__facility", "proposal__variance")
                # Location-contiguous, so a chunk boundary splits at most one batch.
                .order_by("proposal__location_id", "pk")[:FORM_CHUNK]
            )
            if not pushes:
                return
            formed, unmappable = _batches_from(connection, backend, pushes, actor)
            result.batches_formed += formed
            result.unmappable += unmappable
        if len(pushes) < FORM_CHUNK:
            return


def _external_ids(connection: BackendConnection, kind: str, ids: set[int]) -> dict[int, str]:
    column = f"{kind}_id"
    rows = ExternalRecord.objects.filter(connection=connection, kind=kind, **{f"{column}__in": ids}).values_list(
        column, "external_id"
    )
    return dict(rows)


def _batches_from(
    connection: BackendConnection,
    backend: InventoryBackend,
    pushes: list[PendingPush],
    actor: AbstractBaseUser | None,
) -> tuple[int, int]:
    now = timezone.now()
    item_ids = {push.proposal.item_id for push in pushes}
    location_ids = {push.proposal.location_id for push in pushes}
    if backend.maps_by_code:
        items = dict(Item.objects.filter(pk__in=item_ids).values_list("pk", "sku"))
        locations = dict(Location.objects.filter(pk__in=location_ids).values_list("pk", "code"))
    else:
        items = _external_ids(connection, ExternalKind.ITEM, item_ids)
        locations = _external_ids(connection, ExternalKind.LOCATION, location_ids)

    by_location: dict[str, list[PendingPush]] = defaultdict(list)
    unmappable: list[PendingPush] = []
    for push in pushes:
        proposal = push.proposal
        missing = [
            f"{label} {push.payload.get(label, pk)} has no {connection.get_kind_display()} id on {connection.name}"
            for label, pk, known in (
                ("item", proposal.item_id, items),
                ("location", proposal.location_id, locations),
            )
            if pk not in known
        ]
        if missing:
            push.last_error = "; ".join(missing) + " — sync or map it, then retry"
            unmappable.append(push)
        else:
            by_location[locations[proposal.location_id]].append(push)

    _reject_unmappable(connection, unmappable, actor, now)

    formed = 0
    for location_external_id, group in sorted(by_location.items()):
        for start in range(0, len(group), backend.max_batch_lines):
            _batch_create(connection, location_external_id, group[start : start + backend.max_batch_lines], items, now)
            formed += 1
    proposals = [push.proposal for pushes in by_location.values() for push in pushes]
    _proposals_move(proposals, "queue", actor, "queued for the ERP", only_from=ProposalState.APPROVED)
    return formed, len(unmappable)


def _batch_create(
    connection: BackendConnection,
    location_external_id: str,
    pushes: list[PendingPush],
    items: dict[int, str],
    now: datetime,
) -> PushBatch:
    facility = pushes[0].proposal.facility
    batch = PushBatch.objects.create(
        organization_id=connection.organization_id,
        connection=connection,
        external_id=f"pending-{pushes[0].pk}-{now.timestamp()}",
        location_external_id=location_external_id,
        request={},
        line_count=len(pushes),
        created_at=now,
    )
    # The id the backend sees is fixed here, before any call, and never changes.
    batch.external_id = f"CC-{connection.organization_id}-B{batch.pk}"
    request = AdjustmentBatch(
        external_id=batch.external_id,
        location_external_id=location_external_id,
        tran_date=now.astimezone(ZoneInfo(facility.time_zone)).date(),
        memo=f"Cyclecount adjustments {batch.external_id} ({len(pushes)} lines, {facility.code})",
        lines=tuple(
            AdjustmentLine(
                item_external_id=items[push.proposal.item_id],
                location_external_id=location_external_id,
                delta=push.proposal.delta,
                memo=f"{push.external_id} run {push.proposal.run_id}",
                unit_cost=_unit_cost(push.proposal),
            )
            for push in pushes
        ),
    )
    batch.request = request.as_json()
    batch._change_reason = "formed"
    batch.save(update_fields=["external_id", "request"])
    PendingPush.objects.filter(pk__in=[push.pk for push in pushes]).update(
        batch=batch, state=PushState.IN_FLIGHT, updated_at=now
    )
    return batch


def _unit_cost(proposal: ProposedAction) -> Decimal:
    """The average cost the variance was valued at (files carry it as Est. Unit Cost)."""
    return proposal.variance.unit_cost


def _reject_unmappable(
    connection: BackendConnection, pushes: list[PendingPush], actor: AbstractBaseUser | None, now: datetime
) -> None:
    if not pushes:
        return
    for push in pushes:
        push.state = PushState.REJECTED
        push.updated_at = now
    update_rows(PendingPush, pushes, ["state", "last_error", "updated_at"])
    proposals = [push.proposal for push in pushes]
    _proposals_move(proposals, "queue", actor, "queued for the ERP", only_from=ProposalState.APPROVED)
    _proposals_move(proposals, "fail", actor, "cannot be mapped to the backend")
    events_emit_bulk(
        organization_id=connection.organization_id,
        type="push.failed",
        payloads=[
            {"push": push.external_id, "connection": connection.name, "state": "rejected", "error": push.last_error}
            for push in pushes
        ],
    )
    AuditLog.objects.bulk_create(
        AuditLog(
            organization_id=connection.organization_id,
            tag="push_failed",
            actor=actor,
            facility_id=push.proposal.facility_id,
            object_type="adapters.pendingpush",
            object_id=str(push.pk),
            delta=push.proposal.delta,
            reason=push.last_error,
            data={"connection": connection.name, "proposal": push.proposal_id},
        )
        for push in pushes
    )


def _proposals_move(
    proposals: list[ProposedAction],
    transition: str,
    actor: AbstractBaseUser | None,
    reason: str,
    *,
    only_from: str | None = None,
) -> None:
    """Apply one FSM transition to many proposals and write them with their history in bulk."""
    moving = [proposal for proposal in proposals if only_from is None or proposal.state == only_from]
    for proposal in moving:
        getattr(proposal, transition)()  # the state machine checks each source state
    if moving:
        update_rows(ProposedAction, moving, ["state"])
        ProposedAction.history.bulk_history_create(
            moving, batch_size=1000, update=True, default_user=actor, default_change_reason=reason
        )


# --- sending ----------------------------------------------------------------------------
def _send_due_batches(
    connection: BackendConnection,
    backend: InventoryBackend,
    owner: str,
    actor: AbstractBaseUser | None,
    result: DrainResult,
) -> None:
    now = timezone.now()
    due = list(
        PushBatch.objects.filter(connection=connection)
        .filter(Q(state=BatchState.PENDING) | Q(state=BatchState.FAILED, next_attempt_at__lte=now))
        .order_by("pk")
    )
    if not due:
        return
    in_doubt = {batch.pk: batch.outcome_unknown for batch in due}
    # Committed before any call: a worker killed from here on leaves the batch in flight, and
    # the next drain looks it up before it would send it again.
    with transaction.atomic():
        for batch in due:
            batch.state = BatchState.IN_FLIGHT
            batch.attempts += 1
            batch.first_sent_at = batch.first_sent_at or now
            batch._change_reason = f"sending (attempt {batch.attempts})"
            batch.save(update_fields=["state", "attempts", "first_sent_at"])
    result.sent = len(due)
    backoff = inline_backoff()
    with ThreadPoolExecutor(max_workers=max(1, backend.concurrency), thread_name_prefix="push") as pool:
        futures = [
            pool.submit(
                _deliver, backend, batch.pk, AdjustmentBatch.from_json(batch.request), in_doubt[batch.pk], backoff
            )
            for batch in due
        ]
        batches = {batch.pk: batch for batch in due}
        for future in as_completed(futures):
            delivery = future.result()
            _record(connection, batches[delivery.batch_id], delivery, actor, result)
            lease_renew(connection, owner)


def _deliver(
    backend: InventoryBackend, batch_id: int, batch: AdjustmentBatch, in_doubt: bool, backoff: Backoff
) -> Delivery:
    """Get one batch into the backend, or a definite answer why not. No database access here."""
    last_error = ""
    for attempt in range(backoff.tries):
        retry_after: float | None = None
        try:
            if in_doubt:
                found = backend.find_batch(batch.external_id)
                if found is not None:
                    return Delivery(batch_id, "accepted", PushReceipt(found.record_id, duplicate=True))
            receipt = backend.push_adjustments(batch)
            return Delivery(batch_id, "accepted", receipt)
        except OutcomeUnknown as error:
            in_doubt = True
            last_error = str(error)
        except TransientBackendError as error:
            last_error = str(error)
            if not error.retry_soon:
                break
            retry_after = error.retry_after
        except PermanentBackendError as error:
            return Delivery(batch_id, "rejected", error=str(error), in_doubt=in_doubt)
        if attempt < backoff.tries - 1:
            time.sleep(backoff.delay(attempt, retry_after))
    return Delivery(batch_id, "failed", error=last_error, in_doubt=in_doubt)


# --- recording outcomes -----------------------------------------------------------------
@transaction.atomic
def _record(
    connection: BackendConnection,
    batch: PushBatch,
    delivery: Delivery,
    actor: AbstractBaseUser | None,
    result: DrainResult,
) -> None:
    now = timezone.now()
    pushes = list(batch.pushes.select_related("proposal").order_by("pk"))
    if delivery.outcome == "accepted" and delivery.receipt.awaiting_confirmation:
        batch.state = BatchState.EXPORTED
        batch.record_id = delivery.receipt.record_id
        batch.exported_at = now
        batch.last_error = ""
        batch._change_reason = "exported; waiting to be marked imported"
        batch.save(update_fields=["state", "record_id", "exported_at", "last_error"])
        audit_log_write(
            organization_id=connection.organization_id,
            tag="export_generated",
            actor=actor,
            subject=batch,
            reason=f"adjustment file {batch.record_id} ({len(pushes)} lines)",
            data={"connection": connection.name, "lines": len(pushes)},
        )
        result.exported += 1
        return
    if delivery.outcome == "accepted":
        _record_accepted(connection, batch, pushes, delivery.receipt, actor, now)
        result.accepted += 1
        result.lines_accepted += len(pushes)
        return
    batch.last_error = delivery.error
    batch.outcome_unknown = batch.outcome_unknown or delivery.in_doubt
    if delivery.outcome == "rejected":
        batch.state = BatchState.REJECTED
        batch.next_attempt_at = None
        batch.finished_at = now
        push_state = PushState.REJECTED
        result.rejected += 1
    else:
        batch.state = BatchState.FAILED
        batch.failures += 1
        exhausted = batch.failures >= settings.PUSH_MAX_FAILURES
        wait = drain_backoff().delay(batch.failures - 1)
        batch.next_attempt_at = None if exhausted else now + timedelta(seconds=wait)
        push_state = PushState.FAILED
        result.failed += 1
    batch._change_reason = f"{batch.state}: {delivery.error}"[:100]
    batch.save(update_fields=["state", "failures", "next_attempt_at", "finished_at", "last_error", "outcome_unknown"])
    PendingPush.objects.filter(batch=batch).update(
        state=push_state, last_error=delivery.error, attempts=batch.attempts, updated_at=now
    )
    result.errors.append(f"{batch.external_id}: {delivery.error}")
    if batch.needs_person:
        event_emit(
            organization_id=connection.organization_id,
            type="push.failed",
            payload={
                "batch": batch.external_id,
                "connection": connection.name,
                "state": batch.state,
                "error": delivery.error,
                "lines": len(pushes),
                "proposals": [push.proposal_id for push in pushes],
            },
        )
        reason = f"push {batch.state}: {delivery.error}"[:100]
        _proposals_move([push.proposal for push in pushes], "fail", actor, reason)
        audit_log_write(
            organization_id=connection.organization_id,
            tag="push_failed",
            actor=actor,
            subject=batch,
            reason=delivery.error,
            data={
                "connection": connection.name,
                "state": batch.state,
                "lines": len(pushes),
                "attempts": batch.attempts,
            },
        )
    logger.warning("push batch %s %s: %s", batch.external_id, batch.state, delivery.error)


def _record_accepted(
    connection: BackendConnection,
    batch: PushBatch,
    pushes: list[PendingPush],
    receipt: PushReceipt,
    actor: AbstractBaseUser | None,
    now: datetime,
) -> None:
    batch.state = BatchState.ACCEPTED
    batch.record_id = receipt.record_id
    batch.finished_at = now
    batch.next_attempt_at = None
    batch.last_error = ""
    batch._change_reason = f"accepted as {receipt.record_id}" + (" (found by external id)" if receipt.duplicate else "")
    batch.save(update_fields=["state", "record_id", "finished_at", "next_attempt_at", "last_error"])
    PendingPush.objects.filter(batch=batch).update(
        state=PushState.ACCEPTED, last_error="", attempts=batch.attempts, updated_at=now
    )
    proposals = [push.proposal for push in pushes]
    # A proposal a person retried after a failure is queued again before it is pushed.
    _proposals_move(proposals, "queue", actor, "queued for the ERP", only_from=ProposalState.FAILED)
    _proposals_move(proposals, "mark_pushed", actor, f"in the ERP as {receipt.record_id}")
    on_hand = balances_apply_deltas(
        organization_id=connection.organization_id,
        deltas=[(proposal.item_id, proposal.location_id, proposal.delta) for proposal in proposals],
        reference=batch.external_id,
        actor=actor,
    )
    approvers = _approvers(proposals)
    events_emit_bulk(
        organization_id=connection.organization_id,
        type="inventory.adjusted",
        payloads=[
            {
                "proposal": proposal.pk,
                "external_id": proposal.external_id,
                "item": proposal.payload.get("item", ""),
                "location": proposal.payload.get("location", ""),
                "facility": proposal.payload.get("facility", ""),
                "delta": proposal.delta,
                "new_on_hand": on_hand.get((proposal.item_id, proposal.location_id), Decimal("0")),
                "reason": _reason(proposal),
                "approved_by": approvers.get(proposal.pk, "guardrail" if proposal.auto_approved else ""),
                "backend": connection.kind,
                "backend_record_id": receipt.record_id,
                "batch": batch.external_id,
            }
            for proposal in proposals
        ],
    )
    AuditLog.objects.bulk_create(
        AuditLog(
            organization_id=connection.organization_id,
            tag="inventory_adjustment",
            actor=actor,
            facility_id=proposal.facility_id,
            object_type="approvals.proposedaction",
            object_id=str(proposal.pk),
            delta=proposal.delta,
            approved_by=approvers.get(proposal.pk, "guardrail" if proposal.auto_approved else ""),
            reason=_reason(proposal),
            data={
                "batch": batch.external_id,
                "record_id": receipt.record_id,
                "connection": connection.name,
                "item": proposal.payload.get("item", ""),
                "location": proposal.payload.get("location", ""),
                "new_on_hand": str(on_hand.get((proposal.item_id, proposal.location_id), Decimal("0"))),
            },
        )
        for proposal in proposals
    )


def _approvers(proposals: list[ProposedAction]) -> dict[int, str]:
    from approvals.models import Approval, Decision

    names: dict[int, list[str]] = defaultdict(list)
    rows = (
        Approval.objects.filter(proposal__in=proposals, decision=Decision.APPROVE)
        .order_by("pk")
        .values_list("proposal_id", "approver__username")
    )
    for proposal_id, username in rows:
        names[proposal_id].append(username)
    return {proposal_id: ", ".join(users) for proposal_id, users in names.items()}


def _reason(proposal: ProposedAction) -> str:
    if proposal.auto_approved:
        return f"within guardrail v{proposal.payload.get('guardrail_version', '?')}"
    return proposal.payload.get("suggested_reason", "")


# --- a person's confirmation or retry ------------------------------------------------------
@transaction.atomic
def push_batch_mark_imported(*, batch: PushBatch, actor: AbstractBaseUser) -> PushBatch:
    """A person imported an exported file into the system of record: the batch is accepted.

    From here it is like any accepted batch: the mirror takes the deltas, the reason log gets
    its lines, the proposals become pushed. Marking twice changes nothing the second time.
    """
    batch = PushBatch.objects.select_for_update().select_related("connection").get(pk=batch.pk)
    if batch.state == BatchState.ACCEPTED:
        return batch
    if batch.state != BatchState.EXPORTED:
        raise NotRetryable(f"batch {batch.external_id} is {batch.get_state_display().lower()}, not exported")
    pushes = list(batch.pushes.select_related("proposal").order_by("pk"))
    batch._history_user = actor
    _record_accepted(batch.connection, batch, pushes, PushReceipt(record_id=batch.record_id), actor, timezone.now())
    audit_log_write(
        organization_id=batch.organization_id,
        tag="import_applied",
        actor=actor,
        subject=batch,
        reason=f"adjustment file {batch.record_id} marked imported ({len(pushes)} lines)",
    )
    return batch


class NotRetryable(Exception):
    pass


@transaction.atomic
def push_batch_retry(*, batch: PushBatch, actor: AbstractBaseUser) -> PushBatch:
    """A person retries a batch that needs one.

    A failed batch is sent again under the same external id (looked up first: it may have
    landed). A rejected batch never reached the backend's books, so its pushes go back to the
    outbox and are batched afresh — with the mapping fixed, under a new external id.
    """
    batch = PushBatch.objects.select_for_update().get(pk=batch.pk)
    if not batch.needs_person:
        raise NotRetryable(f"batch {batch.external_id} is {batch.get_state_display().lower()}; nothing to retry")
    pushes = list(batch.pushes.select_related("proposal").order_by("pk"))
    now = timezone.now()
    if batch.state == BatchState.FAILED:
        batch.failures = 0
        batch.next_attempt_at = now
        PendingPush.objects.filter(batch=batch).update(state=PushState.IN_FLIGHT, updated_at=now)
    else:
        PendingPush.objects.filter(batch=batch).update(
            state=PushState.PENDING, batch=None, last_error="", updated_at=now
        )
        batch.line_count = 0
    batch._history_user = actor
    batch._change_reason = "retried by a person"
    batch.save(update_fields=["failures", "next_attempt_at", "line_count"])
    _proposals_move([push.proposal for push in pushes], "queue", actor, "push retried", only_from=ProposalState.FAILED)
    audit_log_write(
        organization_id=batch.organization_id,
        tag="push_retried",
        actor=actor,
        subject=batch,
        reason=f"{batch.state} batch {batch.external_id} retried ({len(pushes)} lines)",
        data={"previous_error": batch.last_error},
    )
    from adapters.interface import push_requested

    push_requested(organization_id=batch.organization_id)
    return batch


@transaction.atomic
def push_retry(*, push: PendingPush, actor: AbstractBaseUser) -> PendingPush:
    """A person retries one push refused before batching (no backend id for its item or location)."""
    push = PendingPush.objects.select_for_update().select_related("proposal").get(pk=push.pk)
    if push.state != PushState.REJECTED or push.batch_id is not None:
        raise NotRetryable(f"push {push.external_id} is {push.get_state_display().lower()}; retry its batch instead")
    previous = push.last_error
    push.state = PushState.PENDING
    push.last_error = ""
    push.save(update_fields=["state", "last_error", "updated_at"])
    _proposals_move([push.proposal], "queue", actor, "push retried", only_from=ProposalState.FAILED)
    audit_log_write(
        organization_id=push.organization_id,
        tag="push_retried",
        actor=actor,
        subject=push,
        reason=f"push {push.external_id} retried",
        data={"previous_error": previous},
    )
    from adapters.interface import push_requested

    push_requested(organization_id=push.organization_id)
    return push


def stale_work_reclaim() -> int:
    """Free connections whose worker lease ran out (the worker died) and mark what that worker
    left in flight as in doubt; returns how many batches were reclaimed."""
    now = timezone.now()
    reclaimed = 0
    expired = BackendConnection.objects.filter(worker_lease_until__lt=now)
    for connection in expired:
        # Taking the lease ourselves makes sure no live worker is reclaimed from under.
        try:
            with connection_worker(connection, purpose="reclaim"):
                reclaimed += _reclaim_in_flight(connection)
        except ConnectionBusy:
            continue
    return reclaimed
