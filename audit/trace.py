"""The trace: from an ERP record id, a batch, a proposal or a count line back to every scan.

A chain is one adjustment's way through the pipeline, read right to left:

    ERP record → batch → push → proposal → approvals → variance → count line → scans

with the proposal's history (state changes: who, when, why) and the reason-log rows and ledger
events that name any link of it. A batch holds many proposals, so a trace holds many chains;
they are read a page at a time (`CHAINS_PER_PAGE`) in a fixed number of queries per page,
whatever the number of chains, approvals, history rows or scans.

Everything is scoped to one organization: another organization's ids are not found, exactly
like ids that do not exist. Reads only; the export's reason-log row is the caller's to write.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.db.models import Prefetch, Q, QuerySet

from accounts.models import Organization
from adapters.models import BackendConnection, PendingPush, PushBatch
from approvals.models import Approval, ProposedAction
from audit.models import AuditLog, Event
from counts.models import CountEvent, CountLine
from inventory.models import Facility
from reconciliation.models import Variance

TRACE_PARAMETERS = ("record", "batch", "proposal", "line")
PARAMETER_LABELS = {
    "record": "the ERP's record id",
    "batch": "a batch external id",
    "proposal": "a proposal id or external id (CC-…)",
    "line": "a count line id",
}
CHAINS_PER_PAGE = 200
UTC_NAME = "UTC"

# The reason log names its subjects by model label (see audit.services.audit_log_write).
_PROPOSAL_LABEL = ProposedAction._meta.label_lower
_PUSH_LABEL = PendingPush._meta.label_lower
_BATCH_LABEL = PushBatch._meta.label_lower
_LINE_LABEL = CountLine._meta.label_lower
_VARIANCE_LABEL = Variance._meta.label_lower


class TraceNotFound(Exception):
    """Nothing in the caller's organization answers the query (or it belongs to another one)."""


@dataclass(frozen=True)
class TraceQuery:
    """Which id the trace starts from: `parameter` is one of TRACE_PARAMETERS."""

    parameter: str
    value: str

    def as_params(self) -> dict[str, str]:
        return {self.parameter: self.value}


@dataclass
class Chain:
    """One adjustment's links. `line` is always there; the rest appear as the pipeline got further.

    A line without a variance (or a variance without a proposal) is a chain too: it still goes
    from the line down to the scans. `time_zone` is the facility's: times are shown in it.
    """

    line: CountLine
    facility: Facility
    variance: Variance | None = None
    proposal: ProposedAction | None = None
    push: PendingPush | None = None
    batch: PushBatch | None = None
    approvals: list[Approval] = field(default_factory=list)
    scans: list[CountEvent] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    audit: list[AuditLog] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def connection(self) -> BackendConnection | None:
        return self.batch.connection if self.batch is not None else None

    @property
    def time_zone(self) -> str:
        return self.facility.time_zone

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def approved_by_guardrail(self) -> bool:
        return self.proposal is not None and self.proposal.auto_approved


@dataclass(frozen=True)
class HistoryEntry:
    """One saved state of the proposal (simple-history): what it became, from what, by whom, why."""

    at: datetime
    change: str  # created | changed | deleted
    state: str
    previous_state: str
    by: str
    reason: str


@dataclass
class Trace:
    query: TraceQuery
    chains: list[Chain]
    batches: list[PushBatch]  # what a record or batch query matched (several connections may share a record id)
    page: int
    per_page: int
    total_chains: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total_chains / self.per_page))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def first_shown(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.chains else 0

    @property
    def last_shown(self) -> int:
        return (self.page - 1) * self.per_page + len(self.chains)

    @property
    def note(self) -> str:
        """Said whenever the chains shown are not all there are."""
        if self.pages == 1:
            return ""
        return (
            f"Showing chains {self.first_shown}–{self.last_shown} of {self.total_chains} "
            f"({self.per_page} per page); ask for page={self.page + 1} for more."
            if self.has_next
            else f"Showing chains {self.first_shown}–{self.last_shown} of {self.total_chains} (the last page)."
        )


# --- the trace -----------------------------------------------------------------------------


def trace_get(
    *, organization: Organization | None, query: TraceQuery, page: int = 1, per_page: int | None = None
) -> Trace:
    """The chains answering `query`, one page of them, with every link loaded.

    Raises TraceNotFound when the id is unknown in `organization` (another organization's ids
    included), and ValueError for a query it cannot read (unknown parameter, a line id that is
    not a number). A fixed number of queries per page: at most 9.
    """
    if organization is None:
        raise TraceNotFound("no organization")
    if query.parameter not in TRACE_PARAMETERS:
        raise ValueError(f"unknown trace parameter {query.parameter!r}")
    page = max(1, page)
    per_page = per_page or CHAINS_PER_PAGE
    if query.parameter == "line":
        chains, batches, total = _line_chains(organization, query.value, page, per_page)
    elif query.parameter == "proposal":
        chains, batches, total = _proposal_chains(organization, query.value)
    else:
        chains, batches, total = _batch_chains(organization, query, page, per_page)
    _attach_links(organization, chains)
    return Trace(query=query, chains=chains, batches=batches, page=page, per_page=per_page, total_chains=total)


def trace_pages(*, organization: Organization | None, query: TraceQuery) -> Iterator[Trace]:
    """Every page of the trace in turn (for the export); raises TraceNotFound like `trace_get`."""
    page = 1
    while True:
        trace = trace_get(organization=organization, query=query, page=page)
        yield trace
        if not trace.has_next:
            return
        page += 1


def _proposals(organization: Organization) -> QuerySet[ProposedAction]:
    """Proposals with every link up to the ERP and down to the line in one query (and their signatures)."""
    signatures = Approval.objects.select_related("approver", "root_cause").order_by("created_at", "pk")
    return (
        ProposedAction.objects.for_organization(organization)
        .select_related(
            "facility",
            "item",
            "location",
            "variance__line__run",
            "variance__line__location",
            "variance__line__item",
            "push__batch__connection",
        )
        .prefetch_related(Prefetch("approvals", queryset=signatures))
    )


def _chain_of(proposal: ProposedAction) -> Chain:
    push = getattr(proposal, "push", None)  # no outbox row yet: the reverse one-to-one raises, hence getattr
    return Chain(
        line=proposal.variance.line,
        facility=proposal.facility,
        variance=proposal.variance,
        proposal=proposal,
        push=push,
        batch=push.batch if push is not None else None,
        approvals=list(proposal.approvals.all()),
    )


def _proposal_chains(organization: Organization, value: str) -> tuple[list[Chain], list[PushBatch], int]:
    proposals = _proposals(organization)
    by_id = value.isascii() and value.isdigit()  # isdigit() alone admits "²", which int() refuses
    proposal = (proposals.filter(pk=int(value)) if by_id else proposals.filter(external_id=value)).first()
    if proposal is None:
        raise TraceNotFound(f"no proposal {value}")
    return [_chain_of(proposal)], [], 1


def _batch_chains(
    organization: Organization, query: TraceQuery, page: int, per_page: int
) -> tuple[list[Chain], list[PushBatch], int]:
    lookup = {"record_id": query.value} if query.parameter == "record" else {"external_id": query.value}
    batches = list(
        PushBatch.objects.for_organization(organization)
        .filter(**lookup)
        .select_related("connection")
        .order_by("created_at", "pk")
    )
    if not batches:
        raise TraceNotFound(f"no batch with {query.parameter} {query.value}")
    in_batches = _proposals(organization).filter(push__batch__in=batches)
    total = in_batches.count()
    start = (page - 1) * per_page
    shown = list(in_batches.order_by("push__batch__created_at", "push__batch_id", "push__pk")[start : start + per_page])
    return [_chain_of(proposal) for proposal in shown], batches, total


def _line_chains(
    organization: Organization, value: str, page: int, per_page: int
) -> tuple[list[Chain], list[PushBatch], int]:
    if not (value.isascii() and value.isdigit()):
        raise ValueError("a count line id is a number")
    line = (
        CountLine.objects.for_organization(organization)
        .select_related("run__facility", "location", "item")
        .filter(pk=int(value))
        .first()
    )
    if line is None:
        raise TraceNotFound(f"no count line {value}")
    # Every variance the line had (a recount supersedes one), oldest first, each with its proposal.
    proposals = {proposal.variance_id: proposal for proposal in _proposals(organization).filter(variance__line=line)}
    variances = list(Variance.objects.filter(line=line).order_by("computed_at", "pk"))
    chains: list[Chain] = []
    for variance in variances:
        proposal = proposals.get(variance.pk)
        if proposal is not None:
            chains.append(_chain_of(proposal))
        else:
            chains.append(Chain(line=line, facility=line.run.facility, variance=variance))
    if not chains:
        chains.append(Chain(line=line, facility=line.run.facility))
    for chain in chains:
        chain.line = line  # one object for the line, whichever way it was reached
    start = (page - 1) * per_page
    return chains[start : start + per_page], [], len(chains)


# --- the links every chain gets ------------------------------------------------------------


def _attach_links(organization: Organization, chains: list[Chain]) -> None:
    """History, scans, reason-log rows and events for all chains: one query each."""
    if not chains:
        return
    _attach_history(chains)
    _attach_scans(organization, chains)
    _attach_audit(organization, chains)
    _attach_events(organization, chains)


def _attach_history(chains: list[Chain]) -> None:
    by_proposal = {chain.proposal.pk: chain for chain in chains if chain.proposal is not None}
    if not by_proposal:
        return
    rows = (
        ProposedAction.history.filter(id__in=list(by_proposal))
        .select_related("history_user")
        .order_by("id", "history_date", "history_id")
    )
    previous: dict[int, str] = {}
    changes = {"+": "created", "~": "changed", "-": "deleted"}
    for row in rows:
        by_proposal[row.id].history.append(
            HistoryEntry(
                at=row.history_date,
                change=changes.get(row.history_type, row.history_type),
                state=row.state,
                previous_state=previous.get(row.id, ""),
                by=row.history_user.get_username() if row.history_user is not None else "",
                reason=row.history_change_reason or "",
            )
        )
        previous[row.id] = row.state


def _attach_scans(organization: Organization, chains: list[Chain]) -> None:
    """The scans behind each line: every stored event for its run × location × item."""
    lines = {chain.line.pk: chain.line for chain in chains}
    keys = Q()
    for line in lines.values():
        keys |= Q(run_id=line.run_id, location_id=line.location_id, item_id=line.item_id)
    scans = (
        CountEvent.objects.filter(keys, organization=organization, run_id__in={line.run_id for line in lines.values()})
        .select_related("user", "session")
        .order_by("counted_at", "pk")
    )
    by_key: dict[tuple[int, int, int], list[CountEvent]] = defaultdict(list)
    for scan in scans:
        by_key[(scan.run_id, scan.location_id, scan.item_id)].append(scan)
    for chain in chains:
        chain.scans = by_key.get((chain.line.run_id, chain.line.location_id, chain.line.item_id), [])


def _attach_audit(organization: Organization, chains: list[Chain]) -> None:
    """Reason-log rows whose subject is one of the chain's links (proposal, push, batch, line, variance)."""
    subjects: dict[tuple[str, str], list[Chain]] = defaultdict(list)
    for chain in chains:
        for label, row in (
            (_PROPOSAL_LABEL, chain.proposal),
            (_PUSH_LABEL, chain.push),
            (_BATCH_LABEL, chain.batch),
            (_LINE_LABEL, chain.line),
            (_VARIANCE_LABEL, chain.variance),
        ):
            if row is not None:
                subjects[(label, str(row.pk))].append(chain)
    by_label: dict[str, set[str]] = defaultdict(set)
    for label, object_id in subjects:
        by_label[label].add(object_id)
    named = Q()
    for label, object_ids in by_label.items():
        named |= Q(object_type=label, object_id__in=sorted(object_ids))
    rows = AuditLog.objects.filter(named, organization=organization).select_related("actor")
    for row in rows.order_by("created_at", "pk"):
        for chain in subjects.get((row.object_type, row.object_id), []):
            chain.audit.append(row)


# Payload keys naming a link, most specific first.
_EVENT_KEYS = ("proposal", "push", "variance", "batch")


def _attach_events(organization: Organization, chains: list[Chain]) -> None:
    """Ledger events naming one of the chain's links in their payload.

    `proposal` (proposal.created, proposal.decided, inventory.adjusted), `variance`
    (variance.detected), `batch` (inventory.adjusted, push.failed) and `push` (push.failed before
    batching). None can predate the chain's variance or batch, which bounds the scan by time.
    """
    by_key: dict[tuple[str, object], list[Chain]] = defaultdict(list)
    since: list[datetime] = []
    for chain in chains:
        if chain.proposal is not None:
            by_key[("proposal", chain.proposal.pk)].append(chain)
        if chain.variance is not None:
            by_key[("variance", chain.variance.pk)].append(chain)
            since.append(chain.variance.computed_at)
        if chain.batch is not None:
            by_key[("batch", chain.batch.external_id)].append(chain)
            since.append(chain.batch.created_at)
        if chain.push is not None:
            by_key[("push", chain.push.external_id)].append(chain)
    if not by_key:
        return
    values: dict[str, set[object]] = defaultdict(set)
    for key, value in by_key:
        values[key].add(value)
    named = Q()
    for key, wanted in values.items():
        named |= Q(**{f"payload__{key}__in": sorted(wanted, key=str)})
    events = Event.objects.filter(named, organization=organization)
    if since:
        events = events.filter(occurred_at__gte=min(since))
    for event in events.order_by("occurred_at", "pk"):
        # The most specific link an event names decides whose it is: an `inventory.adjusted` of
        # another proposal in the same batch names the batch too, but is not about this chain.
        key = next((key for key in _EVENT_KEYS if key in event.payload), None)
        for chain in by_key.get((key, event.payload.get(key)), []):
            chain.events.append(event)


# --- the CSV export: one row per scan, the chain's columns repeated ---------------------------

CSV_HEADER = [
    "time_zone",
    "erp_connection", "erp_kind", "erp_record_id",
    "batch_external_id", "batch_state", "batch_created_at", "batch_first_sent_at", "batch_finished_at",
    "push_external_id", "push_state", "push_last_error",
    "proposal_id", "proposal_external_id", "proposal_state", "auto_approved", "facility", "item", "location",
    "delta", "value_abs", "proposal_created_at", "decided_at",
    "approvals",
    "variance_id", "variance_counted", "book_at_count", "book_current", "variance_units", "variance_percent",
    "variance_value", "unit_cost", "adjustment_units", "adjustment_value", "routing", "guardrail_version",
    "variance_computed_at", "variance_superseded_at",
    "line_id", "run_id", "run_name", "line_counted", "line_book_at_count", "line_first_counted_at",
    "line_last_counted_at",
    "scan_event_id", "scan_associate", "scan_counted_by", "scan_device", "scan_counted_at", "scan_received_at",
    "scan_mode", "scan_kind", "scan_quantity", "scan_barcode", "scan_sku", "scan_status", "scan_refusal_reason",
    "scan_session", "scan_recount",
]  # fmt: skip

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A value as a CSV cell that a spreadsheet shows as text, never runs as a formula.

    Numbers keep their sign; any other text starting with a formula character gets a leading
    apostrophe (OWASP's advice for CSV injection).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int):
        return str(value)
    text = str(value)
    if text.startswith(_FORMULA_STARTS):
        try:
            Decimal(text)
        except InvalidOperation:
            return "'" + text
    return text


def local_time(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).isoformat() if value is not None else ""


def approvals_text(chain: Chain) -> str:
    """The signatures in one cell: who (role) decision reason / root cause — note; the guardrail when it decided."""
    if chain.approved_by_guardrail and not chain.approvals:
        version = chain.variance.guardrail_version if chain.variance is not None else "?"
        return f"guardrail v{version} (auto-approved)"
    parts = []
    for signature in chain.approvals:
        text = f"{signature.approver.get_username()} ({signature.role}) {signature.decision} {signature.reason_code}"
        if signature.root_cause is not None:
            text += f" / {signature.root_cause.code}"
        if signature.note:
            text += f" — {signature.note}"
        parts.append(text)
    return "; ".join(parts)


def _chain_cells(chain: Chain) -> list[object]:
    zone = chain.zone
    batch, push, proposal, variance, line = chain.batch, chain.push, chain.proposal, chain.variance, chain.line
    connection = chain.connection
    return [
        chain.time_zone,
        connection.name if connection else None,
        connection.kind if connection else None,
        batch.record_id if batch else None,
        batch.external_id if batch else None,
        batch.state if batch else None,
        local_time(batch.created_at, zone) if batch else None,
        local_time(batch.first_sent_at, zone) if batch else None,
        local_time(batch.finished_at, zone) if batch else None,
        push.external_id if push else None,
        push.state if push else None,
        push.last_error if push else None,
        proposal.pk if proposal else None,
        proposal.external_id if proposal else None,
        proposal.state if proposal else None,
        proposal.auto_approved if proposal else None,
        chain.facility.code,
        line.item.sku,
        line.location.code,
        proposal.delta if proposal else None,
        proposal.value_abs if proposal else None,
        local_time(proposal.created_at, zone) if proposal else None,
        local_time(proposal.decided_at, zone) if proposal else None,
        approvals_text(chain),
        variance.pk if variance else None,
        variance.counted_quantity if variance else None,
        variance.book_at_count if variance else None,
        variance.book_current if variance else None,
        variance.variance_units if variance else None,
        variance.variance_percent if variance else None,
        variance.variance_value if variance else None,
        variance.unit_cost if variance else None,
        variance.adjustment_units if variance else None,
        variance.adjustment_value if variance else None,
        variance.routing if variance else None,
        variance.guardrail_version if variance else None,
        local_time(variance.computed_at, zone) if variance else None,
        local_time(variance.superseded_at, zone) if variance else None,
        line.pk,
        line.run_id,
        line.run.name,
        line.counted_quantity,
        line.book_quantity,
        local_time(line.first_counted_at, zone),
        local_time(line.last_counted_at, zone),
    ]


def _scan_cells(scan: CountEvent | None, zone: ZoneInfo) -> list[object]:
    if scan is None:
        return [None] * 15
    return [
        scan.event_id,
        scan.user.get_username(),
        scan.counted_by,
        scan.device_id,
        local_time(scan.counted_at, zone),
        local_time(scan.received_at, zone),
        scan.mode,
        scan.kind,
        scan.quantity,
        scan.barcode,
        scan.sku,
        scan.status,
        scan.refusal_reason,
        scan.session_id,
        scan.session.is_recount,
    ]


def trace_csv_rows(chains: Iterable[Chain]) -> Iterator[list[str]]:
    """One row per scan (a chain without scans still gets one row), CSV_HEADER's columns."""
    for chain in chains:
        cells = _chain_cells(chain)
        for scan in chain.scans or [None]:
            yield [csv_cell(value) for value in (*cells, *_scan_cells(scan, chain.zone))]
