"""Reconciliation API: reconcile a run, list its variances and their routing."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import role_required
from accounts.roles import Role
from accounts.scoping import request_organization
from config.api_errors import Conflict, is_id
from counts.models import CountRun
from reconciliation import selectors
from reconciliation.models import Routing, Variance
from reconciliation.services import RunNotClosable, RunNotReconcilable, run_close, run_reconcile

REVIEWERS = (Role.MANAGER, Role.FINANCE, Role.ADMIN)


class ReconcileApi(APIView):
    """`POST /api/runs/{id}/reconcile`: into review, variances computed and routed (idempotent)."""

    permission_classes = [role_required(Role.MANAGER, Role.ADMIN)]

    class Output(serializers.Serializer):
        run = serializers.IntegerField()
        status = serializers.CharField()
        variances = serializers.IntegerField()
        proposals = serializers.IntegerField()
        auto_approved = serializers.IntegerField()
        superseded = serializers.IntegerField()

    @extend_schema(request=None, responses={200: Output, 409: dict})
    def post(self, request: Request, run_id: int) -> Response:
        run = CountRun.objects.for_organization(request_organization(request)).filter(pk=run_id).first()
        if run is None:
            raise Http404("No such run.")
        try:
            result = run_reconcile(run=run, actor=request.user)
        except RunNotReconcilable as error:
            raise Conflict(str(error)) from None
        return Response(
            {
                "run": run.pk,
                "status": result.run.state,
                "variances": result.variances,
                "proposals": result.proposals,
                "auto_approved": result.auto_approved,
                "superseded": result.superseded,
            }
        )


class RunCloseApi(APIView):
    """`POST /api/runs/{id}/close`: close a reviewed run once every proposal is decided."""

    permission_classes = [role_required(Role.MANAGER, Role.ADMIN)]

    class Output(serializers.Serializer):
        run = serializers.IntegerField()
        status = serializers.CharField()

    @extend_schema(request=None, responses={200: Output, 409: dict})
    def post(self, request: Request, run_id: int) -> Response:
        run = CountRun.objects.for_organization(request_organization(request)).filter(pk=run_id).first()
        if run is None:
            raise Http404("No such run.")
        try:
            run = run_close(run=run, actor=request.user)
        except RunNotClosable as error:
            raise Conflict(str(error)) from None
        return Response({"run": run.pk, "status": run.state})


class VarianceListApi(GenericAPIView):
    """`GET /api/variances/?run=ID`: every current variance and where it went (`auto` or a proposal)."""

    permission_classes = [role_required(*REVIEWERS)]

    class Output(serializers.ModelSerializer):
        item = serializers.CharField(source="item.sku")
        item_name = serializers.CharField(source="item.name")
        location = serializers.CharField(source="location.code")
        routing = serializers.SerializerMethodField()
        proposal = serializers.SerializerMethodField()

        class Meta:
            model = Variance
            fields = [
                "id", "run", "item", "item_name", "location", "counted_quantity", "book_at_count", "book_current",
                "book_moved", "variance_units", "variance_percent", "variance_value", "adjustment_units",
                "adjustment_value", "routing", "proposal", "guardrail_version", "computed_at",
            ]  # fmt: skip

        def _proposal_id(self, variance: Variance) -> int | None:
            try:
                return variance.proposal.pk
            except Variance.proposal.RelatedObjectDoesNotExist:
                return None

        def get_routing(self, variance: Variance) -> Any:
            """`auto`, `none`, `recount`, or the id of the proposal a person decides."""
            if variance.routing == Routing.PROPOSAL:
                return self._proposal_id(variance)
            return variance.routing

        def get_proposal(self, variance: Variance) -> int | None:
            return self._proposal_id(variance)

    serializer_class = Output

    @extend_schema(
        parameters=[OpenApiParameter("run", int, required=True)], responses={200: Output(many=True), 400: dict}
    )
    def get(self, request: Request) -> Response:
        run = request.query_params.get("run", "")
        if not is_id(run):
            raise ValidationError({"run": "required: a run id"})
        variances = selectors.variance_list(organization=request_organization(request), run_id=int(run))
        page = self.paginate_queryset(variances)
        return self.get_paginated_response(self.Output(page, many=True).data)
