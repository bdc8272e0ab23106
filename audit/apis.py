"""Audit API: the trace from an ERP record, a batch, a proposal or a count line back to the scans."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import role_required
from accounts.roles import Role
from accounts.scoping import request_organization
from adapters.models import BatchState, PendingPush, PushBatch, PushState
from approvals.models import Approval, ProposalState, ProposedAction
from audit import trace
from audit.models import AuditLog, Event
from counts.models import CountEvent, CountLine
from reconciliation.models import Variance

AUDITORS = (Role.MANAGER, Role.FINANCE, Role.ADMIN)


# --- the chain's links, as the trace shows them ---------------------------------------------


class TraceErpOutput(serializers.Serializer):
    connection = serializers.CharField(source="connection.name")
    kind = serializers.CharField(source="connection.kind")
    record_id = serializers.SerializerMethodField()

    def get_record_id(self, batch: PushBatch) -> str | None:
        """Null until the backend has accepted (or exported) the batch."""
        return batch.record_id or None


# The `state` fields are plain strings: another choice set under the name `state` would rename
# the API's existing StateEnum (drf-spectacular disambiguates colliding enum names).
BATCH_STATE_HELP = f"One of: {', '.join(BatchState.values)}"
PUSH_STATE_HELP = f"One of: {', '.join(PushState.values)}"
PROPOSAL_STATE_HELP = f"One of: {', '.join(ProposalState.values)}"


class TraceBatchOutput(serializers.ModelSerializer):
    connection = serializers.CharField(source="connection.name")
    state = serializers.CharField(help_text=BATCH_STATE_HELP)

    class Meta:
        model = PushBatch
        fields = [
            "id", "external_id", "connection", "state", "location_external_id", "line_count", "attempts", "failures",
            "record_id", "last_error", "created_at", "first_sent_at", "exported_at", "finished_at",
        ]  # fmt: skip


class TraceBatchSummaryOutput(serializers.ModelSerializer):
    """A batch the query matched; its times are in the chains (in their facility's zone)."""

    connection = serializers.CharField(source="connection.name")
    kind = serializers.CharField(source="connection.kind")
    state = serializers.CharField(help_text=BATCH_STATE_HELP)

    class Meta:
        model = PushBatch
        fields = ["id", "external_id", "connection", "kind", "state", "record_id", "line_count"]


class TracePushOutput(serializers.ModelSerializer):
    state = serializers.CharField(help_text=PUSH_STATE_HELP)

    class Meta:
        model = PendingPush
        fields = ["id", "external_id", "state", "attempts", "last_error", "created_at"]


class TraceProposalOutput(serializers.ModelSerializer):
    state = serializers.CharField(help_text=PROPOSAL_STATE_HELP)
    facility = serializers.CharField(source="facility.code")
    item = serializers.CharField(source="item.sku")
    item_name = serializers.CharField(source="item.name")
    location = serializers.CharField(source="location.code")

    class Meta:
        model = ProposedAction
        fields = [
            "id", "external_id", "action_type", "state", "facility", "item", "item_name", "location", "delta",
            "value_abs", "needs_finance", "auto_approved", "payload", "created_at", "decided_at",
        ]  # fmt: skip


class TraceApprovalOutput(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.username")
    root_cause = serializers.CharField(source="root_cause.code", default="")
    root_cause_label = serializers.CharField(source="root_cause.label", default="")

    class Meta:
        model = Approval
        fields = ["approver", "role", "decision", "reason_code", "root_cause", "root_cause_label", "note", "created_at"]


class TraceVarianceOutput(serializers.ModelSerializer):
    class Meta:
        model = Variance
        fields = [
            "id", "counted_quantity", "book_at_count", "book_current", "book_moved", "variance_units",
            "variance_percent", "variance_value", "unit_cost", "adjustment_units", "adjustment_value", "routing",
            "guardrail_version", "computed_at", "superseded_at",
        ]  # fmt: skip


class TraceLineOutput(serializers.ModelSerializer):
    run_name = serializers.CharField(source="run.name")
    location = serializers.CharField(source="location.code")
    item = serializers.CharField(source="item.sku")
    book_at_count = serializers.DecimalField(
        source="book_quantity", max_digits=14, decimal_places=3, help_text="The mirror's on hand when first counted"
    )

    class Meta:
        model = CountLine
        fields = [
            "id", "run", "run_name", "location", "item", "counted_quantity", "book_at_count", "is_extra",
            "first_counted_at", "last_counted_at",
        ]  # fmt: skip


class TraceScanOutput(serializers.ModelSerializer):
    associate = serializers.CharField(source="user.username")
    device = serializers.CharField(source="device_id")
    recount = serializers.BooleanField(source="session.is_recount")

    class Meta:
        model = CountEvent
        fields = [
            "event_id", "associate", "counted_by", "device", "counted_at", "received_at", "mode", "kind", "quantity",
            "barcode", "sku", "status", "refusal_reason", "session", "recount",
        ]  # fmt: skip


class TraceHistoryOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    change = serializers.CharField(help_text="created, changed or deleted")
    state = serializers.CharField()
    previous_state = serializers.CharField()
    by = serializers.CharField(help_text="Empty when the guardrail or a task without a person changed it")
    reason = serializers.CharField()


class TraceAuditOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default="")

    class Meta:
        model = AuditLog
        fields = [
            "id", "created_at", "tag", "actor", "object_type", "object_id", "delta", "approved_by", "reason", "data",
        ]  # fmt: skip


class TraceEventOutput(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["event_id", "type", "version", "occurred_at", "payload"]


class TraceChainOutput(serializers.Serializer):
    """One adjustment, ERP record → scans; null links are where the pipeline has not got yet."""

    time_zone = serializers.CharField(help_text="The facility's zone: every time in the chain is shown in it")
    erp = TraceErpOutput(source="batch", allow_null=True)
    batch = TraceBatchOutput(allow_null=True)
    push = TracePushOutput(allow_null=True)
    proposal = TraceProposalOutput(allow_null=True)
    approvals = TraceApprovalOutput(many=True)
    variance = TraceVarianceOutput(allow_null=True)
    line = TraceLineOutput()
    scans = TraceScanOutput(many=True)
    history = TraceHistoryOutput(many=True)
    audit = TraceAuditOutput(many=True)
    events = TraceEventOutput(many=True)

    def to_representation(self, chain: trace.Chain) -> dict[str, Any]:
        # DRF renders times in the current zone: the chain's facility's, with its offset.
        with timezone.override(chain.zone):
            return super().to_representation(chain)


class TraceQueryOutput(serializers.Serializer):
    parameter = serializers.ChoiceField(choices=trace.TRACE_PARAMETERS)
    value = serializers.CharField()


class TracePageOutput(serializers.Serializer):
    number = serializers.IntegerField(source="page")
    size = serializers.IntegerField(source="per_page")
    pages = serializers.IntegerField()
    total_chains = serializers.IntegerField()
    has_next = serializers.BooleanField()
    note = serializers.CharField(help_text="Says so when not every chain is on this page")


# --- the view --------------------------------------------------------------------------------


class TraceApi(APIView):
    """`GET /api/trace/?record=|batch=|proposal=|line=`: the whole chain, ERP record → scans.

    Exactly one parameter (400 naming it otherwise). A record id may match batches on several
    connections (all listed in `batches`); a batch holds many proposals, so chains come
    200 a page (`?page=`; `page.note` says when some are not shown). Another organization's ids
    answer 404, like missing ones. Each chain's times are in its facility's zone (`time_zone`).
    """

    permission_classes = [role_required(*AUDITORS)]

    class Input(serializers.Serializer):
        """Exactly one of record, batch, proposal, line (blank counts as absent); `page` for long traces."""

        record = serializers.CharField(required=False, allow_blank=True, max_length=128)
        batch = serializers.CharField(required=False, allow_blank=True, max_length=64)
        proposal = serializers.CharField(required=False, allow_blank=True, max_length=64)
        line = serializers.CharField(required=False, allow_blank=True, max_length=20)
        page = serializers.IntegerField(required=False, min_value=1, default=1)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            given = {name: attrs[name].strip() for name in trace.TRACE_PARAMETERS if (attrs.get(name) or "").strip()}
            if not given:
                raise serializers.ValidationError(
                    {"query": f"required: exactly one of {', '.join(trace.TRACE_PARAMETERS)}"}
                )
            if len(given) > 1:
                names = ", ".join(sorted(given))
                raise serializers.ValidationError(dict.fromkeys(sorted(given), f"give only one of {names}"))
            ((parameter, value),) = given.items()
            if parameter == "line" and not (value.isascii() and value.isdigit()):  # isdigit() admits "²"
                raise serializers.ValidationError({"line": "a count line id (a number)"})
            return {"query": trace.TraceQuery(parameter=parameter, value=value), "page": attrs.get("page", 1)}

    class Output(serializers.Serializer):
        query = TraceQueryOutput()
        page = TracePageOutput(source="*")
        batches = TraceBatchSummaryOutput(many=True)
        chains = TraceChainOutput(many=True)

    @extend_schema(
        parameters=[
            OpenApiParameter("record", str, description=trace.PARAMETER_LABELS["record"]),
            OpenApiParameter("batch", str, description=trace.PARAMETER_LABELS["batch"]),
            OpenApiParameter("proposal", str, description=trace.PARAMETER_LABELS["proposal"]),
            OpenApiParameter("line", int, description=trace.PARAMETER_LABELS["line"]),
            OpenApiParameter("page", int, description=f"{trace.CHAINS_PER_PAGE} chains a page"),
        ],
        responses={200: Output, 400: dict, 404: dict},
    )
    def get(self, request: Request) -> Response:
        found = trace_read(request.query_params, organization=request_organization(request))
        return Response(self.Output(found).data)


def trace_input(params: Any) -> TraceApi.Input:
    """Query parameters read into the API's Input (the page and the export read them the same way)."""
    wanted = (*trace.TRACE_PARAMETERS, "page")
    return TraceApi.Input(data={name: params.get(name) for name in wanted if name in params})


def trace_read(params: Any, *, organization: Any) -> trace.Trace:
    """Validated parameters → the trace; ValidationError (400) or Http404 otherwise."""
    given = trace_input(params)
    given.is_valid(raise_exception=True)
    try:
        return trace.trace_get(
            organization=organization, query=given.validated_data["query"], page=given.validated_data["page"]
        )
    except trace.TraceNotFound:
        raise Http404("Nothing to trace with this id.") from None
