"""Review API: what a run left uncounted, extra or unmatched, the decisions on each, variance
decisions, and the recount watchlist. Thin: parse, call a service or selector, shape output."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
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
from approvals.selectors import proposal_list
from approvals.services import DecisionConflict, DecisionInvalid, DecisionRefused
from config.api_errors import Conflict, text_without_nul
from counts.models import CountKind, CountLine, CountRun
from inventory.models import Item
from reconciliation import review_selectors as selectors
from reconciliation.models import Variance
from reconciliation.review import (
    ReviewConflict,
    ReviewInvalid,
    ReviewNotFound,
    VarianceAction,
    extra_discard,
    extra_include,
    uncounted_accept_zero,
    uncounted_recount,
    unmatched_match,
    variance_decide,
    watchlist_flag,
)

REVIEWERS = (Role.MANAGER, Role.FINANCE, Role.ADMIN)
DECIDERS = (Role.MANAGER, Role.ADMIN)
UNCOUNTED_FIRST_PAGE = 100
MAX_ITEMS = 1000


@contextmanager
def review_errors() -> Iterator[None]:
    """A review service's refusals as API errors: 400 names the field, 404 a missing row, 409 the state."""
    try:
        yield
    except ReviewNotFound as error:
        raise Http404(str(error)) from None
    except ReviewInvalid as error:
        raise ValidationError({error.field: str(error)}) from None
    except ReviewConflict as error:
        raise Conflict(str(error)) from None
    except DjangoValidationError as error:
        raise ValidationError(error.message_dict if hasattr(error, "error_dict") else error.messages) from None


def _run_for(request: Request, run_id: int) -> CountRun:
    run = CountRun.objects.for_organization(request_organization(request)).filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run


def _validated(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- Output shapes ---------------------------------------------------------------------------------


class UncountedOutput(serializers.Serializer):
    item = serializers.CharField(source="item_sku")
    item_name = serializers.CharField()
    location = serializers.CharField(source="location_code")
    book = serializers.DecimalField(max_digits=14, decimal_places=3)
    follow_up_run = serializers.IntegerField(allow_null=True, help_text="An open directed run already asking for it")


class RequestedUncountedOutput(UncountedOutput):
    reason = serializers.CharField()
    signal_count = serializers.IntegerField()
    expected = serializers.DecimalField(max_digits=14, decimal_places=3, allow_null=True)


class ExtraOutput(serializers.Serializer):
    line = serializers.IntegerField(source="pk")
    item = serializers.CharField(source="item.sku")
    item_name = serializers.CharField(source="item.name")
    location = serializers.CharField(source="location.code")
    counted = serializers.DecimalField(source="counted_quantity", max_digits=14, decimal_places=3)
    book = serializers.DecimalField(source="book_quantity", max_digits=14, decimal_places=3)
    decision = serializers.SerializerMethodField(help_text='null (undecided), "included" or "discarded"')
    decided_by = serializers.SerializerMethodField()
    decided_at = serializers.SerializerMethodField()
    note = serializers.SerializerMethodField()
    variance = serializers.IntegerField(source="variance_id", allow_null=True)
    routing = serializers.CharField(source="variance_routing", allow_null=True)

    def get_decision(self, line: CountLine) -> str | None:
        if line.decision is None:
            return None
        return "included" if line.decision.tag == selectors.EXTRA_INCLUDED else "discarded"

    def get_decided_by(self, line: CountLine) -> str | None:
        actor = line.decision.actor if line.decision is not None else None
        return actor.get_username() if actor is not None else None

    def get_decided_at(self, line: CountLine) -> str | None:
        return line.decision.created_at.isoformat() if line.decision is not None else None

    def get_note(self, line: CountLine) -> str:
        return line.decision.reason if line.decision is not None else ""


class UnmatchedOutput(serializers.Serializer):
    event_id = serializers.UUIDField()
    barcode = serializers.CharField()
    sku = serializers.CharField()
    location = serializers.CharField(source="location.code")
    quantity = serializers.DecimalField(max_digits=14, decimal_places=3)
    kind = serializers.CharField()
    mode = serializers.CharField()
    counted_by = serializers.SerializerMethodField()
    counted_at = serializers.DateTimeField()
    resolved = serializers.SerializerMethodField()
    matched_item = serializers.SerializerMethodField()
    matched_by = serializers.SerializerMethodField()
    matched_at = serializers.SerializerMethodField()

    def get_counted_by(self, event: Any) -> str:
        return event.counted_by or event.user.get_username()

    def get_resolved(self, event: Any) -> bool:
        return event.match is not None

    def get_matched_item(self, event: Any) -> str | None:
        return event.match.item.sku if event.match is not None and event.match.item else None

    def get_matched_by(self, event: Any) -> str | None:
        return event.match.user.get_username() if event.match is not None else None

    def get_matched_at(self, event: Any) -> str | None:
        return event.match.received_at.isoformat() if event.match is not None else None


class WatchlistOutput(serializers.Serializer):
    item = serializers.CharField(source="item_sku")
    item_name = serializers.CharField()
    location = serializers.CharField(source="location_code")
    facility = serializers.CharField(source="facility_code")
    hits = serializers.IntegerField(help_text="Counts beyond tolerance among the last `counts`")
    counts = serializers.IntegerField()
    hits_needed = serializers.IntegerField()
    window = serializers.IntegerField()
    last_computed_at = serializers.DateTimeField()
    directed_run = serializers.IntegerField(allow_null=True, help_text="An open directed run already asking for it")


# --- Reads -----------------------------------------------------------------------------------------


class RunReviewApi(APIView):
    """`GET /api/runs/{id}/review`: what needs a decision before the run is posted.

    `uncounted` (hard and cycle runs: stocked in scope, no line) gives its count and first page
    (more at `GET /api/runs/{id}/uncounted/`); `requested_uncounted` (directed runs: requests
    with no line), `extras` (directed runs: unrequested lines and their decision) and
    `unmatched` (unknown barcodes and whether each was matched) are capped at 200 rows each,
    with full counts in `totals`.
    """

    permission_classes = [role_required(*REVIEWERS)]

    @extend_schema(request=None, responses={200: dict})
    def get(self, request: Request, run_id: int) -> Response:
        run = _run_for(request, run_id)
        uncounted = selectors.run_uncounted(run=run)
        uncounted_total = uncounted.count()
        directed = run.kind == CountKind.DIRECTED
        first_rows = list(uncounted[: selectors.REVIEW_LIST_LIMIT if directed else UNCOUNTED_FIRST_PAGE])
        extras = selectors.run_extras(run=run)
        unmatched = selectors.run_unmatched(run=run)
        return Response(
            {
                "run": {"id": run.pk, "name": run.name, "type": run.kind, "status": run.state},
                "uncounted": {
                    "count": 0 if directed else uncounted_total,
                    "results": [] if directed else UncountedOutput(first_rows, many=True).data,
                },
                "requested_uncounted": RequestedUncountedOutput(first_rows, many=True).data if directed else [],
                "extras": ExtraOutput(extras, many=True).data,
                "unmatched": UnmatchedOutput(unmatched, many=True).data,
                "totals": {
                    "uncounted": 0 if directed else uncounted_total,
                    "requested_uncounted": uncounted_total if directed else 0,
                    "extras": len(extras),
                    "extras_undecided": sum(line.decision is None for line in extras),
                    "unmatched": selectors.run_unmatched_count(run=run),
                },
            }
        )


class RunUncountedApi(GenericAPIView):
    """`GET /api/runs/{id}/uncounted/?limit=&offset=`: every uncounted item, page by page."""

    permission_classes = [role_required(*REVIEWERS)]
    serializer_class = RequestedUncountedOutput

    # Directed runs add the requested fields (RequestedUncountedOutput) to each row.
    @extend_schema(responses=UncountedOutput(many=True))
    def get(self, request: Request, run_id: int) -> Response:
        run = _run_for(request, run_id)
        page = self.paginate_queryset(selectors.run_uncounted(run=run))
        output = RequestedUncountedOutput if run.kind == CountKind.DIRECTED else UncountedOutput
        return self.get_paginated_response(output(page, many=True).data)


class WatchlistApi(APIView):
    """`GET /api/watchlist/`: item × locations beyond tolerance in `hits_needed` of their last
    `window` counts (the guardrail's watchlist_hits / watchlist_window)."""

    permission_classes = [role_required(*REVIEWERS)]

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "WatchlistPage", {"count": serializers.IntegerField(), "results": WatchlistOutput(many=True)}
            )
        },
    )
    def get(self, request: Request) -> Response:
        entries = selectors.watchlist_list(organization=request_organization(request))
        return Response({"count": len(entries), "results": WatchlistOutput(entries, many=True).data})


# --- Uncounted: accept zero / recount ------------------------------------------------------------


class _ItemLocation(serializers.Serializer):
    item = serializers.CharField(help_text="SKU")
    location = serializers.CharField(help_text="location code")


class _UncountedInput(serializers.Serializer):
    items = _ItemLocation(many=True, required=False, max_length=MAX_ITEMS)
    all = serializers.BooleanField(required=False, default=False)

    def validate(self, data: dict) -> dict:
        if bool(data.get("items")) == bool(data["all"]):
            raise serializers.ValidationError({"items": 'give either "items" or "all": true'})
        return data


def _uncounted_keys(run: CountRun, data: Any) -> set[tuple[int, int]] | None:
    """The (location id, item id) keys the body names, or None for all."""
    data = _validated(_UncountedInput, data)
    if data["all"]:
        return None
    resolved = selectors.item_locations_resolve(
        run=run, pairs=[(row["item"], row["location"]) for row in data["items"]]
    )
    if resolved.errors:
        raise ValidationError({"items": {str(index): errors for index, errors in resolved.errors.items()}})
    return resolved.keys


class UncountedAcceptZeroApi(APIView):
    """`POST /api/runs/{id}/uncounted/accept-zero` `{"items": [{"item", "location"}]}` or `{"all": true}`.

    Zero becomes the count of each (a decision recorded with who and when) and the run is
    reconciled, so each gets its variance. Repeating it changes nothing.
    """

    permission_classes = [role_required(*DECIDERS)]

    @extend_schema(request=_UncountedInput, responses={200: dict, 400: dict, 409: dict})
    def post(self, request: Request, run_id: int) -> Response:
        run = _run_for(request, run_id)
        keys = _uncounted_keys(run, request.data)
        with review_errors():
            result = uncounted_accept_zero(run=run, actor=request.user, keys=keys)
        reconciled = result.reconciled
        return Response(
            {
                "accepted": result.accepted,
                "already_counted": len(result.already_counted),
                "session": result.session.pk if result.session else None,
                "variances": reconciled.variances if reconciled else 0,
                "proposals": reconciled.proposals if reconciled else 0,
            }
        )


class UncountedRecountApi(APIView):
    """`POST /api/runs/{id}/uncounted/recount` (same body): count them in a directed run → `{"run": id}`."""

    permission_classes = [role_required(*DECIDERS)]

    @extend_schema(request=_UncountedInput, responses={200: dict, 400: dict, 409: dict})
    def post(self, request: Request, run_id: int) -> Response:
        run = _run_for(request, run_id)
        keys = _uncounted_keys(run, request.data)
        with review_errors():
            result = uncounted_recount(run=run, actor=request.user, keys=keys)
        return Response({"run": result.run.pk, "requested": result.requested, "repeated": result.repeated})


# --- Extras --------------------------------------------------------------------------------------


class _NoteInput(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class _ExtraDecisionApi(APIView):
    permission_classes = [role_required(*DECIDERS)]
    service: Any = None  # the review service deciding the line

    @extend_schema(request=_NoteInput, responses={200: ExtraOutput, 400: dict, 409: dict})
    def post(self, request: Request, run_id: int, line_id: int) -> Response:
        run = _run_for(request, run_id)
        line = CountLine.objects.for_organization(request_organization(request)).filter(run=run, pk=line_id).first()
        if line is None:
            raise Http404("No such line in this run.")
        data = _validated(_NoteInput, request.data)
        with review_errors():
            self.service(run=run, line=line, actor=request.user, note=data["note"])
        shown = next(extra for extra in selectors.run_extras(run=run) if extra.pk == line.pk)
        return Response(ExtraOutput(shown).data)


class ExtraIncludeApi(_ExtraDecisionApi):
    """`POST /api/runs/{id}/extras/{line_id}/include` `{"note"}`: the line gets its variance."""

    service = staticmethod(extra_include)


class ExtraDiscardApi(_ExtraDecisionApi):
    """`POST /api/runs/{id}/extras/{line_id}/discard` `{"note"}`: the line stays out for good."""

    service = staticmethod(extra_discard)


# --- Unmatched barcodes ----------------------------------------------------------------------------


class UnmatchedMatchApi(APIView):
    """`POST /api/runs/{id}/unmatched/{event_id}/match` `{"item": SKU, "same_barcode": false}`.

    Find the item with `GET /api/items/?q=`. The scan then counts like any scan of that item;
    with `same_barcode`, every unresolved scan of the same code in the run does too.
    """

    permission_classes = [role_required(*DECIDERS)]

    class Input(serializers.Serializer):
        item = serializers.CharField(help_text="SKU")
        same_barcode = serializers.BooleanField(required=False, default=False)

    @extend_schema(request=Input, responses={200: dict, 400: dict, 404: dict, 409: dict})
    def post(self, request: Request, run_id: int, event_id: str) -> Response:
        run = _run_for(request, run_id)
        data = _validated(self.Input, request.data)
        item = Item.objects.for_organization(request_organization(request)).filter(sku=data["item"]).first()
        if item is None:
            raise ValidationError({"item": f"no item with SKU {data['item']!r}"})
        with review_errors():
            result = unmatched_match(
                run=run, event_id=uuid.UUID(event_id), item=item, actor=request.user, same_barcode=data["same_barcode"]
            )
        current = {
            variance.line_id: variance
            for variance in Variance.objects.filter(line__in=result.lines, superseded_at__isnull=True)
        }
        return Response(
            {
                "matched": [str(event.event_id) for event in result.matched],
                "item": item.sku,
                "lines": [
                    {
                        "line": line.pk,
                        "location": line.location.code,
                        "counted": str(line.counted_quantity),
                        "book": str(line.book_quantity),
                        "variance": current[line.pk].pk if line.pk in current else None,
                        "routing": current[line.pk].routing if line.pk in current else None,
                    }
                    for line in result.lines
                ],
                "superseded": result.reconciled.superseded if result.reconciled else 0,
            }
        )


# --- Variance decisions ----------------------------------------------------------------------------


class VarianceDecideApi(APIView):
    """`POST /api/variances/{id}/decide` `{"action": "apply"|"skip", "reason_code", "root_cause", "note"}`.

    Needs the decider's personal edit token in `X-Edit-Token`, like `/api/inventory/adjust`.
    403: token, role or a separation-of-duties rule (named in `rule`); 400: incomplete decision
    (the field is named); 409: nothing to decide, or decided already.
    """

    permission_classes = [role_required(*DECIDERS)]

    class Input(serializers.Serializer):
        action = serializers.ChoiceField(choices=VarianceAction.choices)
        reason_code = serializers.CharField()
        root_cause = serializers.CharField(required=False, allow_blank=True)
        note = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(request=Input, responses={200: dict, 400: dict, 403: dict, 409: dict})
    def post(self, request: Request, variance_id: int) -> Response:
        organization = request_organization(request)
        variance = Variance.objects.for_organization(organization).filter(pk=variance_id).first()
        if variance is None:
            raise Http404("No such variance.")
        # The service judges the raw values in the contract's order (token first, audited).
        token_ok = edit_token_matches(user=request.user, raw=request.headers.get("X-Edit-Token"))
        try:
            proposal = variance_decide(
                variance=variance,
                actor=request.user,
                **text_without_nul(request.data, "action", "reason_code", "root_cause", "note"),
                edit_token_ok=token_ok,
            )
        except DecisionRefused as error:
            raise PermissionDenied({"detail": str(error), "rule": error.rule}) from None
        except DecisionInvalid as error:
            raise ValidationError({error.field: str(error)}) from None
        except (DecisionConflict, ReviewConflict) as error:
            raise Conflict(str(error)) from None
        proposal = proposal_list(organization=organization).get(pk=proposal.pk)
        return Response(
            {
                "variance": variance.pk,
                "proposal": proposal.pk,
                "state": proposal.state,
                "decided_at": proposal.decided_at.isoformat() if proposal.decided_at else None,
                "approvals": [
                    {
                        "approver": approval.approver.get_username(),
                        "role": approval.role,
                        "decision": approval.decision,
                        "reason_code": approval.reason_code,
                        "root_cause": approval.root_cause.code if approval.root_cause else "",
                        "note": approval.note,
                        "created_at": approval.created_at.isoformat(),
                    }
                    for approval in proposal.approvals.all()
                ],
            }
        )


# --- Watchlist -------------------------------------------------------------------------------------


class RunWatchlistFlagApi(APIView):
    """`POST /api/runs/{id}/watchlist`: the run's item × locations on the watchlist go to a
    directed recount (reason `recurring_variance`); flagging again changes nothing."""

    permission_classes = [role_required(*DECIDERS)]

    @extend_schema(request=None, responses={200: dict})
    def post(self, request: Request, run_id: int) -> Response:
        run = _run_for(request, run_id)
        with review_errors():
            result = watchlist_flag(run=run, actor=request.user)
        return Response(
            {
                "run": result.directed_run.pk if result.directed_run else None,
                "flagged": WatchlistOutput(result.flagged, many=True).data,
                "already_requested": WatchlistOutput(result.already_requested, many=True).data,
            }
        )
