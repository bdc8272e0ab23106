"""The demo pipeline end to end on a real database, for CI: seed → count → reconcile → approve →
push to the file backend → marked imported (posted). `manage.py audit_verify` runs after it.

    DATABASE_URL=… python manage.py migrate --noinput
    DATABASE_URL=… python scripts/e2e_pipeline.py
    DATABASE_URL=… python manage.py audit_verify

Every step goes through the services, as the API and admin would: real scans from an associate's
session, `run_reconcile` routing by the guardrails, a manager's (and above the finance limit a
finance user's) signature, the file backend's drain, and a person marking the file imported.
It exits non-zero when the pipeline did not post adjustments of each kind (guardrail, manager,
manager + finance), so the check after it always has something to prove. About 10 s.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Organization  # noqa: E402
from adapters.models import BackendConnection, BatchState, PushBatch  # noqa: E402
from adapters.services import backend_connect, push_drain  # noqa: E402
from adapters.services.drain import push_batch_mark_imported  # noqa: E402
from approvals.models import ProposalState, ProposedAction  # noqa: E402
from approvals.services import DecisionInput, proposal_decide  # noqa: E402
from counts.models import CountKind  # noqa: E402
from counts.services.capture import count_events_ingest  # noqa: E402
from counts.services.planning import count_run_create  # noqa: E402
from counts.services.sessions import count_session_start, count_session_submit  # noqa: E402
from inventory.models import Facility, InventoryBalance  # noqa: E402
from reconciliation.services import guardrail_for, root_causes_ensure, run_reconcile  # noqa: E402

ORG = "demo"
PER_TIER = 12
TIERS = ("guardrail", "manager", "finance")
FILE_SETTINGS = {"layout": "netsuite", "subsidiary": "Demo", "adjustment_account": "Inventory Adjustments"}


def main() -> int:
    call_command("seed_demo", "--skus", "300", "--if-empty")
    organization = Organization.objects.get(slug=ORG)
    facility = Facility.objects.get(organization=organization)
    users = {user.username: user for user in get_user_model().objects.filter(membership__organization=organization)}
    associate, manager, finance = users["associate1"], users["manager1"], users["finance"]
    if not BackendConnection.objects.filter(organization=organization, name="files").exists():
        backend_connect(organization=organization, kind="file", name="files", values=FILE_SETTINGS, actor=None)
    connection = BackendConnection.objects.get(organization=organization, name="files")
    root_causes_ensure(organization=organization)

    counted = _differences(organization, facility)
    if len(counted) < PER_TIER * len(TIERS):
        print(f"e2e: only {len(counted)} bins fit the tiers in the demo data", file=sys.stderr)
        return 1
    run = count_run_create(
        organization=organization, facility=facility, name=f"E2E {timezone.now():%Y-%m-%d %H:%M:%S}",
        kind=CountKind.HARD, actor=manager,
    )  # fmt: skip
    session = count_session_start(run=run, user=associate, device_id="e2e-scanner")
    counted_at = timezone.now() - timedelta(minutes=5)
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "location": balance.location.code,
            "sku": balance.item.sku,
            "quantity": str(balance.on_hand + delta),
            "kind": "set",
            "mode": "scan",
            "counted_at": (counted_at + timedelta(seconds=index)).isoformat(),
        }
        for index, (balance, delta) in enumerate(counted)
    ]
    captured = count_events_ingest(session=session, actor=associate, events=events)
    if captured.rejected or captured.accepted != len(events):
        print(f"e2e: scans not all accepted: {captured.accepted} accepted, {captured.rejected}", file=sys.stderr)
        return 1
    count_session_submit(session=session, actor=associate)
    reconciled = run_reconcile(run=run, actor=manager)
    print(f"e2e: reconciled run {run.pk}: {reconciled}")

    decision = DecisionInput(decision="approve", reason_code="ANNUAL_COUNT_ADJUSTMENT", root_cause="miscount")
    for proposal in ProposedAction.objects.filter(run=run, state=ProposalState.PENDING).order_by("pk"):
        proposal = proposal_decide(proposal=proposal, actor=manager, decision=decision)
        if proposal.state == ProposalState.AWAITING_FINANCE:
            proposal_decide(proposal=proposal, actor=finance, decision=decision)

    drained = push_drain(connection=connection, actor=manager)
    exported = PushBatch.objects.filter(connection=connection, state=BatchState.EXPORTED).order_by("pk")
    for batch in exported:
        push_batch_mark_imported(batch=batch, actor=manager)  # a person imported the file into the ERP

    posted = ProposedAction.objects.filter(run=run, state=ProposalState.PUSHED)
    kinds = {
        "guardrail": posted.filter(auto_approved=True).count(),
        "manager": posted.filter(auto_approved=False, needs_finance=False).count(),
        "manager + finance": posted.filter(needs_finance=True).count(),
    }
    print(f"e2e: drained {drained.batches_formed} batch(es); posted {posted.count()} adjustments: {kinds}")
    if not all(kinds.values()):
        print("e2e: the pipeline did not post an adjustment of every kind", file=sys.stderr)
        return 1
    return 0


def _differences(organization: Organization, facility: Facility) -> list[tuple[InventoryBalance, Decimal]]:
    """PER_TIER well-stocked bins per tier, each with the difference that lands it in that tier
    under the facility's guardrail: one unit within it, a few hundred dollars for a manager, and
    above the finance limit for a manager and finance."""
    guardrail = guardrail_for(facility=facility)
    auto_max, finance_min = guardrail.auto_max_value, guardrail.finance_min_value
    middle = (auto_max + finance_min) / 2
    chosen: dict[str, list[tuple[InventoryBalance, Decimal]]] = {tier: [] for tier in TIERS}
    stocked = (
        InventoryBalance.objects.filter(organization=organization, location__facility=facility, on_hand__gte=60)
        .select_related("item", "location")
        .order_by("pk")
    )
    for balance in stocked.iterator():
        cost = balance.item.average_cost
        if cost <= 0:
            continue
        wanted = {
            # One unit is ≤ 2% of 60 and, on an item cheaper than the limit, ≤ the value limit.
            "guardrail": Decimal(1) if cost * 1 <= auto_max else None,
            "manager": max(Decimal(1), (middle / cost).to_integral_value(ROUND_FLOOR)),
            "finance": (finance_min * 2 / cost).to_integral_value(ROUND_FLOOR) + 1,
        }
        for tier in TIERS:
            units = wanted[tier]
            if len(chosen[tier]) >= PER_TIER or units is None or units > balance.on_hand:
                continue
            value = units * cost
            if tier == "manager" and not auto_max < value <= finance_min:
                continue
            sign = 1 if len(chosen[tier]) % 2 else -1  # found and lost alike
            chosen[tier].append((balance, units * sign))
            break
        if all(len(rows) >= PER_TIER for rows in chosen.values()):
            break
    return [row for tier in TIERS for row in chosen[tier]]


if __name__ == "__main__":
    sys.exit(main())
