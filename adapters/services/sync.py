"""Pulling the system of record into the mirror, and checking parity after our pushes.

The backend's records map to mirror rows through ExternalRecord. NetSuite-style location
trees map as: a top-level location is a facility; every location (top-level ones too) is a
mirror location in that facility, zoned by its branch under the top. Items match by mapping,
then by SKU; balances are written at the backend's granularity (item × location). Backends
that know items by SKU and locations by code (`maps_by_code`: files) keep no mapping and
create nothing: they name existing items and locations only.

Parity: pushes accepted since the last sync are checked against what the backend reports now,
before the mirror is overwritten — a match confirms the proposal, a difference is a drift.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from adapters.interface import RemoteBalance, RemoteItem, RemoteLocation, backend_for
from adapters.models import (
    BackendConnection,
    ExternalKind,
    ExternalRecord,
    ParityDrift,
    PendingPush,
    PushState,
)
from adapters.services.connections import ConnectionBusy, connection_worker
from adapters.services.drain import _proposals_move
from approvals.models import ProposalState
from audit.services import audit_log_write, event_emit
from inventory.bulk import update_rows
from inventory.models import BarcodeKind, Facility, InventoryBalance, Item, ItemBarcode, Location, Zone
from inventory.services import BalanceSnapshot, balances_record_sync

MAIN_ZONE = "MAIN"


@dataclass
class SyncResult:
    connection: str
    skipped: str = ""
    facilities_created: int = 0
    locations_created: int = 0
    items_created: int = 0
    items_updated: int = 0
    balances_changed: int = 0
    balances_unmapped: int = 0
    confirmed: int = 0
    drifts: int = 0
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items() if key != "connection"}


def backend_sync(*, connection: BackendConnection, actor: AbstractBaseUser | None = None) -> SyncResult:
    """Bring the mirror to what the backend reports, and confirm (or flag) our accepted pushes.

    Reads stream from the backend outside any transaction; the mirror is written in one
    transaction at the end, so a failed read changes nothing.
    """
    result = SyncResult(connection=connection.name)
    if not connection.active:
        result.skipped = "the connection is inactive"
        return result
    try:
        with connection_worker(connection, purpose="sync"):
            backend = backend_for(connection)
            started = timezone.now()
            locations = list(backend.fetch_locations())
            items = list(backend.fetch_items())
            balances = list(backend.fetch_balances())
            if backend.maps_by_code and not balances:
                # A file backend reads the file being applied; without one, silence is not
                # "zero everywhere" and must not flag every imported adjustment as a drift.
                result.skipped = "nothing to read: the connection syncs when an on-hand file is applied"
                return result
            with transaction.atomic():
                if backend.maps_by_code:
                    location_ids = _locations_by_code(connection, locations, result)
                else:
                    location_ids = _sync_locations(connection, locations, actor, result)
                item_ids = _sync_items(connection, items, actor, result, by_code=backend.maps_by_code)
                snapshots = _snapshots(balances, item_ids, location_ids, result)
                _zero_unreported(connection, snapshots, item_ids, location_ids)
                _check_parity(connection, snapshots, started, actor, result)
                result.balances_changed = balances_record_sync(
                    organization_id=connection.organization_id,
                    snapshots=list(snapshots.values()),
                    synced_at=started,
                    sync_reference=f"sync {connection.name} {started:%Y-%m-%dT%H:%M:%SZ}",
                    actor=actor,
                )
                BackendConnection.objects.filter(pk=connection.pk).update(
                    last_sync_at=started, last_sync_summary=result.as_json()
                )
                audit_log_write(
                    organization_id=connection.organization_id,
                    tag="backend_synced",
                    actor=actor,
                    subject=connection,
                    reason=f"sync of {connection.name}",
                    data=result.as_json(),
                )
    except ConnectionBusy as busy:
        result.skipped = str(busy)
    return result


# --- locations --------------------------------------------------------------------------
def _code(text: str, length: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-").upper()[:length] or "X"


def _sync_locations(
    connection: BackendConnection,
    remote: list[RemoteLocation],
    actor: AbstractBaseUser | None,
    result: SyncResult,
) -> dict[str, int]:
    """Map every backend location to a mirror location (creating what is missing); external → id."""
    org = connection.organization_id
    by_id = {location.external_id: location for location in remote}
    mapped = dict(
        ExternalRecord.objects.filter(connection=connection, kind=ExternalKind.LOCATION).values_list(
            "external_id", "location_id"
        )
    )
    facilities = dict(
        ExternalRecord.objects.filter(connection=connection, kind=ExternalKind.FACILITY).values_list(
            "external_id", "facility_id"
        )
    )

    def top_and_branch(location: RemoteLocation) -> tuple[RemoteLocation, RemoteLocation | None]:
        path = [location]
        seen = {location.external_id}
        while path[-1].parent_external_id in by_id and path[-1].parent_external_id not in seen:
            seen.add(path[-1].parent_external_id)
            path.append(by_id[path[-1].parent_external_id])
        return path[-1], (path[-2] if len(path) > 1 else None)

    time_zone = str(connection.settings.get("time_zone") or "UTC")
    for location in remote:
        if location.external_id in mapped or not location.active:
            continue
        top, branch = top_and_branch(location)
        facility_id = facilities.get(top.external_id)
        if facility_id is None:
            facility_id = _facility_for(connection, top, time_zone, actor, result)
            facilities[top.external_id] = facility_id
        zone_code = _code(branch.name, 32) if branch is not None else MAIN_ZONE
        zone, _ = Zone.objects.get_or_create(
            organization_id=org,
            facility_id=facility_id,
            code=zone_code,
            defaults={"name": branch.name if branch else ""},
        )
        code = _code(location.name, 64)
        existing = Location.objects.filter(facility_id=facility_id, code=code).first()
        if existing is None:
            existing = Location(
                organization_id=org,
                facility_id=facility_id,
                zone=zone,
                code=code,
                barcode=f"{connection.kind.upper()}-{connection.pk}-LOC-{location.external_id}",
            )
            existing._history_user = actor
            existing._change_reason = f"created by sync of {connection.name}"
            existing.save()
            result.locations_created += 1
        ExternalRecord.objects.create(
            organization_id=org,
            connection=connection,
            kind=ExternalKind.LOCATION,
            external_id=location.external_id,
            location=existing,
        )
        mapped[location.external_id] = existing.pk
    return mapped


def _locations_by_code(
    connection: BackendConnection, remote: list[RemoteLocation], result: SyncResult
) -> dict[str, int]:
    """Existing mirror locations by code (external id → id); a code two facilities share is left out."""
    found: dict[str, list[int]] = defaultdict(list)
    codes = {location.external_id for location in remote if location.active}
    for pk, code in Location.objects.filter(organization_id=connection.organization_id, code__in=codes).values_list(
        "pk", "code"
    ):
        found[code].append(pk)
    shared = sorted(code for code, pks in found.items() if len(pks) > 1)
    if shared:
        result.notes.append(f"location codes used at more than one facility: {', '.join(shared)}")
    return {code: pks[0] for code, pks in found.items() if len(pks) == 1}


def _facility_for(
    connection: BackendConnection,
    top: RemoteLocation,
    time_zone: str,
    actor: AbstractBaseUser | None,
    result: SyncResult,
) -> int:
    org = connection.organization_id
    code = _code(top.name, 32)
    facility = Facility.objects.filter(organization_id=org, code=code).first()
    if facility is None:
        facility = Facility(organization_id=org, code=code, name=top.name[:200], time_zone=time_zone)
        facility._history_user = actor
        facility._change_reason = f"created by sync of {connection.name}"
        facility.save()
        result.facilities_created += 1
    ExternalRecord.objects.create(
        organization_id=org,
        connection=connection,
        kind=ExternalKind.FACILITY,
        external_id=top.external_id,
        facility=facility,
    )
    return facility.pk


# --- items ------------------------------------------------------------------------------
def _sync_items(
    connection: BackendConnection,
    remote: list[RemoteItem],
    actor: AbstractBaseUser | None,
    result: SyncResult,
    *,
    by_code: bool = False,
) -> dict[str, int]:
    """Map backend items to mirror items (by mapping, then SKU; else create); keep costs current.

    `by_code`: by SKU only, keeping no mappings; an unknown SKU is left out rather than created.
    """
    org = connection.organization_id
    mapped = dict(
        ExternalRecord.objects.filter(connection=connection, kind=ExternalKind.ITEM).values_list(
            "external_id", "item_id"
        )
    )
    by_sku = {item.sku: item for item in Item.objects.filter(organization_id=org)}
    by_pk = {item.pk: item for item in by_sku.values()}
    reason = f"sync of {connection.name}"

    new_items: list[Item] = []
    new_for: dict[str, Item] = {}
    updated: list[Item] = []
    to_map: dict[str, Item] = {}
    for remote_item in remote:
        if not remote_item.active and remote_item.external_id not in mapped:
            continue
        item = by_pk.get(mapped[remote_item.external_id]) if remote_item.external_id in mapped else None
        if item is None:
            sku = remote_item.sku[:64]
            item = by_sku.get(sku)
            if item is None:
                if by_code:
                    continue
                item = Item(
                    organization_id=org,
                    sku=sku,
                    name=(remote_item.name or sku)[:255],
                    average_cost=remote_item.average_cost or Decimal("0"),
                )
                by_sku[sku] = item
                new_items.append(item)
                new_for[remote_item.external_id] = item
                continue
            to_map[remote_item.external_id] = item
        if remote_item.average_cost is not None and item.average_cost != remote_item.average_cost:
            item.average_cost = remote_item.average_cost
            updated.append(item)
    if new_items:
        bulk_create_with_history(new_items, Item, batch_size=1000, default_user=actor, default_change_reason=reason)
        # SQLite and PostgreSQL both return primary keys from bulk inserts; read them back by
        # SKU anyway so the mapping never depends on that.
        fresh = dict(
            Item.objects.filter(organization_id=org, sku__in=[item.sku for item in new_items]).values_list("sku", "pk")
        )
        for item in new_items:
            item.pk = fresh[item.sku]
        to_map.update(new_for)
        result.items_created = len(new_items)
    if updated:
        update_rows(Item, updated, ["average_cost"])
        Item.history.bulk_history_create(
            updated, batch_size=1000, update=True, default_user=actor, default_change_reason=reason
        )
        result.items_updated = len(updated)
    ExternalRecord.objects.bulk_create(
        [
            ExternalRecord(
                organization_id=org, connection=connection, kind=ExternalKind.ITEM, external_id=external, item=item
            )
            for external, item in to_map.items()
            if not by_code
        ],
        batch_size=1000,
    )
    mapped.update({external: item.pk for external, item in to_map.items()})
    _add_barcodes(org, remote, mapped, actor)
    return mapped


def _add_barcodes(org: int, remote: list[RemoteItem], mapped: dict[str, int], actor: AbstractBaseUser | None) -> None:
    wanted = {item.barcode: mapped[item.external_id] for item in remote if item.barcode and item.external_id in mapped}
    if not wanted:
        return
    taken = set(ItemBarcode.objects.filter(organization_id=org, value__in=wanted).values_list("value", flat=True))
    fresh = [
        ItemBarcode(
            organization_id=org,
            item_id=item_id,
            value=value,
            kind=BarcodeKind.UPC_A if len(value) == 12 and value.isdigit() else BarcodeKind.CUSTOM,
        )
        for value, item_id in wanted.items()
        if value not in taken
    ]
    if fresh:
        bulk_create_with_history(fresh, ItemBarcode, batch_size=1000, default_user=actor, default_change_reason="sync")


# --- balances and parity ----------------------------------------------------------------
def _snapshots(
    remote: list[RemoteBalance], items: dict[str, int], locations: dict[str, int], result: SyncResult
) -> dict[tuple[int, int], BalanceSnapshot]:
    snapshots: dict[tuple[int, int], BalanceSnapshot] = {}
    for balance in remote:
        item_id = items.get(balance.item_external_id)
        location_id = locations.get(balance.location_external_id)
        if item_id is None or location_id is None:
            result.balances_unmapped += 1
            continue
        snapshots[(item_id, location_id)] = BalanceSnapshot(item_id, location_id, balance.on_hand, balance.reserved)
    if result.balances_unmapped:
        result.notes.append(f"{result.balances_unmapped} balances name an inactive or unknown item or location")
    return snapshots


def _zero_unreported(
    connection: BackendConnection,
    snapshots: dict[tuple[int, int], BalanceSnapshot],
    items: dict[str, int],
    locations: dict[str, int],
) -> None:
    """A mirrored pair of this backend that it no longer reports holds nothing there now."""
    item_ids, location_ids = set(items.values()), set(locations.values())
    stale = (
        InventoryBalance.objects.filter(organization_id=connection.organization_id, location_id__in=location_ids)
        .exclude(on_hand=0, reserved=0)
        .values_list("item_id", "location_id")
    )
    for item_id, location_id in stale:
        if item_id in item_ids and (item_id, location_id) not in snapshots:
            snapshots[(item_id, location_id)] = BalanceSnapshot(item_id, location_id, Decimal("0"), Decimal("0"))


def _check_parity(
    connection: BackendConnection,
    snapshots: dict[tuple[int, int], BalanceSnapshot],
    started: datetime,
    actor: AbstractBaseUser | None,
    result: SyncResult,
) -> None:
    pushes = list(
        PendingPush.objects.select_related("proposal")
        .filter(
            batch__connection=connection,
            state=PushState.ACCEPTED,
            parity_checked_at__isnull=True,
            batch__finished_at__lt=started,
        )
        .order_by("pk")
    )
    if not pushes:
        return
    by_pair: dict[tuple[int, int], list[PendingPush]] = defaultdict(list)
    for push in pushes:
        by_pair[(push.proposal.item_id, push.proposal.location_id)].append(push)
    mirror = {
        (item_id, location_id): on_hand
        for item_id, location_id, on_hand in InventoryBalance.objects.filter(
            organization_id=connection.organization_id,
            item_id__in={pair[0] for pair in by_pair},
            location_id__in={pair[1] for pair in by_pair},
        ).values_list("item_id", "location_id", "on_hand")
    }
    confirmed = []
    for pair, group in by_pair.items():
        expected = mirror.get(pair, Decimal("0"))
        snapshot = snapshots.get(pair)
        reported = snapshot.on_hand if snapshot is not None else Decimal("0")
        if reported == expected:
            confirmed.extend(push.proposal for push in group)
            continue
        drift, _ = ParityDrift.objects.update_or_create(
            connection=connection,
            item_id=pair[0],
            location_id=pair[1],
            resolved_at=None,
            defaults={
                "organization_id": connection.organization_id,
                "expected_on_hand": expected,
                "backend_on_hand": reported,
                "difference": reported - expected,
                "detected_at": started,
            },
        )
        drift.pushes.add(*group)
        result.drifts += 1
        event_emit(
            organization_id=connection.organization_id,
            type="parity.drift",
            payload={
                "drift": drift.pk,
                "connection": connection.name,
                "item": group[0].payload.get("item", ""),
                "location": group[0].payload.get("location", ""),
                "expected_on_hand": expected,
                "backend_on_hand": reported,
                "difference": reported - expected,
                "proposals": [push.proposal_id for push in group],
            },
        )
    _proposals_move(confirmed, "confirm", actor, "parity confirmed by sync", only_from=ProposalState.PUSHED)
    result.confirmed = len(confirmed)
    PendingPush.objects.filter(pk__in=[push.pk for push in pushes]).update(parity_checked_at=started)


@transaction.atomic
def parity_drift_resolve(*, drift: ParityDrift, actor: AbstractBaseUser, note: str) -> ParityDrift:
    """A person checked a drift in the ERP and closes it; its pushes count as confirmed."""
    drift = ParityDrift.objects.select_for_update().get(pk=drift.pk)
    if drift.resolved_at is not None:
        return drift
    drift.resolved_at = timezone.now()
    drift.resolved_by = actor
    drift.resolution_note = note
    drift._history_user = actor
    drift._change_reason = "resolved"
    drift.save(update_fields=["resolved_at", "resolved_by", "resolution_note"])
    proposals = [push.proposal for push in drift.pushes.select_related("proposal").order_by("pk")]
    _proposals_move(proposals, "confirm", actor, f"drift resolved: {note}"[:100], only_from=ProposalState.PUSHED)
    audit_log_write(
        organization_id=drift.organization_id,
        tag="parity_drift_resolved",
        actor=actor,
        subject=drift,
        facility_id=drift.location.facility_id,
        reason=note,
        data={"difference": str(drift.difference), "expected": str(drift.expected_on_hand)},
    )
    return drift
