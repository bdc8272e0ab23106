"""Approval API: list proposals; approve or reject with the personal edit token."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import role_required
from accounts.roles import Role
from accounts.scoping import request_organization
from accounts.services import edit_token_matches
from approvals import selectors
from approvals.models import Decision, ProposalState, ProposedAction
from approvals.services import DecisionConflict, DecisionInput, DecisionInvalid, DecisionRefused, proposal_decide
from config.api_errors import Conflict, checked_query_params, is_id, text_without_nul
from reconciliation.models import DecisionReason

REVIEWERS = (Role.MANAGER, Role.FINANCE, Role.ADMIN)


class ApprovalOutput(serializers.Serializer):
    approver = serializers.CharField(source="approver.username")
    role = serializers.CharField()
    decision = serializers.CharField()
    reason_code = serializers.CharField()
    root_cause = serializers.CharField(source="root_cause.code", default="")
    note = serializers.CharField()
    created_at = serializers.DateTimeField()


class ProposalOutput(serializers.ModelSerializer):
    facility = serializers.CharField(source="facility.code")
    item = serializers.CharField(source="item.sku")
    location = serializers.CharField(source="location.code")
    approvals = ApprovalOutput(many=True)

    class Meta:
        model = ProposedAction
        fields = [
            "id", "action_type", "risk", "state", "run", "variance", "facility", "item", "location", "delta",
            "value_abs", "needs_finance", "auto_approved", "payload", "external_id", "created_at", "decided_at",
            "approvals",
        ]  # fmt: skip


class ProposalListApi(GenericAPIView):
    """`GET /api/proposals/?state=&run=`: largest |value| first."""

    permission_classes = [role_required(*REVIEWERS)]
    serializer_class = ProposalOutput

    @extend_schema(
        parameters=[OpenApiParameter("state", str, enum=ProposalState.values), OpenApiParameter("run", int)],
        responses={200: ProposalOutput(many=True), 400: dict},
    )
    def get(self, request: Request) -> Response:
        run = checked_query_params(request).get("run", "")
        if run and not is_id(run):
            raise ValidationError({"run": "a run id"})
        proposals = selectors.proposal_list(
            organization=request_organization(request),
            state=checked_query_params(request).get("state", ""),
            run_id=int(run) if run else None,
        )
        page = self.paginate_queryset(proposals)
        return self.get_paginated_response(ProposalOutput(page, many=True).data)


class AdjustApi(APIView):
    """`POST /api/inventory/adjust`: approve or reject a proposal.

    Needs token (or session) authentication and the approver's personal edit token in
    `X-Edit-Token`. 403: token missing or wrong, wrong role, or a separation-of-duties rule
    (named in `rule`); 409: the proposal's state no longer allows it; 400: incomplete decision.
    """

    class Input(serializers.Serializer):
        proposal = serializers.IntegerField()
        decision = serializers.ChoiceField(choices=Decision.choices)
        reason_code = serializers.ChoiceField(choices=DecisionReason.choices)
        root_cause = serializers.CharField(required=False, allow_blank=True, default="")
        note = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(request=Input, responses={200: ProposalOutput, 400: dict, 403: dict, 404: dict, 409: dict})
    def post(self, request: Request) -> Response:
        proposal_id = text_without_nul(request.data, "proposal")["proposal"]
        if not is_id(proposal_id):
            raise ValidationError({"proposal": "required: a proposal id"})
        organization = request_organization(request)
        proposal = get_object_or_404(ProposedAction.objects.for_organization(organization), pk=int(proposal_id))
        # The service judges everything in the rule order the contract states (token and role
        # first, audited when refused), so the raw values go to it unparsed.
        decision = DecisionInput(**text_without_nul(request.data, "decision", "reason_code", "root_cause", "note"))
        token_ok = edit_token_matches(user=request.user, raw=request.headers.get("X-Edit-Token"))
        try:
            proposal = proposal_decide(proposal=proposal, actor=request.user, decision=decision, edit_token_ok=token_ok)
        except DecisionRefused as error:
            raise PermissionDenied({"detail": str(error), "rule": error.rule}) from None
        except DecisionInvalid as error:
            raise ValidationError({error.field: str(error)}) from None
        except DecisionConflict as error:
            raise Conflict(str(error)) from None
        return Response(ProposalOutput(selectors.proposal_list(organization=organization).get(pk=proposal.pk)).data)
