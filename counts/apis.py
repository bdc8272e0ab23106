"""Counting API: runs, sessions, capture and signals. Thin: parse, call a service, shape output."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsOrganizationMember, role_required
from accounts.roles import Role
from accounts.scoping import request_organization
from accounts.selectors import role_for_user
from config.api_errors import Conflict, checked_query_params
from counts import selectors
from counts.models import CountKind, CountRun, CountSession, EventMode, RunState, SignalKind
from counts.selectors import session_state
from counts.services.capture import MAX_BATCH, SessionNotCapturing, SessionNotYours, count_events_ingest
from counts.services.planning import count_run_cancel, count_run_create, count_run_start, directed_request_add
from counts.services.sessions import (
    ActiveSessionExists,
    RunNotCountable,
    count_session_pause,
    count_session_resume,
    count_session_start,
    count_session_submit,
)
from counts.timezones import utc_to_local
from inventory.models import Facility, Item, ItemBarcode, Location, Zone

PLANNERS = (Role.PLANNER, Role.MANAGER, Role.ADMIN)


def _local(instant: datetime | None, time_zone: str) -> str | None:
    return utc_to_local(instant, time_zone).isoformat() if instant else None


class RunOutput(serializers.ModelSerializer):
    facility = serializers.CharField(source="facility.code")
    type = serializers.CharField(source="kind")
    status = serializers.CharField(source="state")
    starts_at_local = serializers.SerializerMethodField()
    due_at_local = serializers.SerializerMethodField()
    lines_in_scope = serializers.IntegerField()
    lines_counted = serializers.IntegerField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = CountRun
        fields = [
            "id", "name", "type", "status", "source", "facility", "created_at", "starts_at", "due_at",
            "starts_at_local", "due_at_local", "rotation_week", "lines_in_scope", "lines_counted", "progress",
        ]  # fmt: skip

    def get_starts_at_local(self, run: CountRun) -> str | None:
        return _local(run.starts_at, run.facility.time_zone)

    def get_due_at_local(self, run: CountRun) -> str | None:
        return _local(run.due_at, run.facility.time_zone)

    def get_progress(self, run: CountRun) -> float | None:
        return round(run.lines_counted / run.lines_in_scope, 4) if run.lines_in_scope else None


class RunDetailOutput(RunOutput):
    zones = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    assignees = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)

    class Meta(RunOutput.Meta):
        fields = [*RunOutput.Meta.fields, "zones", "assignees"]


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@contextmanager
def service_errors() -> Iterator[None]:
    """Translate a service's refusals into API errors (400 invalid, 409 wrong state)."""
    try:
        yield
    except DjangoValidationError as error:
        raise ValidationError(error.message_dict if hasattr(error, "error_dict") else error.messages) from None
    except (RunNotCountable, SessionNotCapturing) as error:
        raise Conflict(str(error)) from None


def parse_local(value: str | None, field: str, *, default_time: time) -> tuple[date, time] | None:
    """A facility-local wall-clock value: YYYY-MM-DD or YYYY-MM-DDTHH:MM, without an offset."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value), default_time
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError({field: "use YYYY-MM-DD or YYYY-MM-DDTHH:MM in the facility's local time"}) from None
    if parsed.tzinfo is not None:
        raise ValidationError({field: "give the facility's local time without an offset"})
    return parsed.date(), parsed.time()


def _run_for(request: Request, run_id: int) -> CountRun:
    try:
        return selectors.run_get(organization=request_organization(request), run_id=run_id)
    except CountRun.DoesNotExist:
        raise Http404("No such run.") from None


class RunListApi(GenericAPIView):
    """Find counts: keyword, type, status and facility filters; sorted; with progress."""

    serializer_class = RunOutput

    class CreateInput(serializers.Serializer):
        facility = serializers.CharField()
        name = serializers.CharField(max_length=200)
        type = serializers.ChoiceField(choices=CountKind.choices)
        zones = serializers.ListField(child=serializers.CharField(), required=False, default=list)
        locations = serializers.ListField(child=serializers.CharField(), required=False, default=list)
        assignees = serializers.ListField(child=serializers.CharField(), required=False, default=list)
        start = serializers.CharField(required=False, help_text="facility-local YYYY-MM-DD[THH:MM]")
        due = serializers.CharField(required=False, help_text="facility-local YYYY-MM-DD[THH:MM]")

    def get_permissions(self) -> list:
        if self.request.method == "POST":
            return [role_required(*PLANNERS)()]
        return [IsOrganizationMember()]

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="name or facility contains"),
            OpenApiParameter("type", str, enum=CountKind.values),
            OpenApiParameter("status", str, enum=RunState.values),
            OpenApiParameter("facility", str, description="facility code"),
            OpenApiParameter("ordering", str, enum=sorted(selectors.RUN_ORDERINGS)),
            OpenApiParameter("mine", bool, description="only runs assigned to me (or to nobody)"),
        ],
        responses=RunOutput(many=True),
        operation_id="runs_list",
    )
    def get(self, request: Request) -> Response:
        params = checked_query_params(request)
        runs = selectors.run_list(
            organization=request_organization(request),
            search=params.get("q", "").strip(),
            kind=params.get("type", ""),
            state=params.get("status", ""),
            facility=params.get("facility", ""),
            ordering=params.get("ordering", "-created"),
            assigned_to=request.user if params.get("mine") in {"1", "true"} else None,
        )
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(RunOutput(page, many=True).data)

    @extend_schema(request=CreateInput, responses={201: RunDetailOutput, 404: dict})
    def post(self, request: Request) -> Response:
        data = validated(self.CreateInput, request.data)
        organization = request_organization(request)
        facility = get_object_or_404(Facility.objects.for_organization(organization), code=data["facility"])
        zones = list(Zone.objects.filter(facility=facility, code__in=data["zones"]))
        locations = list(Location.objects.filter(facility=facility, code__in=data["locations"]))
        assignees = list(
            get_user_model().objects.filter(membership__organization=organization, username__in=data["assignees"])
        )
        missing = {
            "zones": set(data["zones"]) - {zone.code for zone in zones},
            "locations": set(data["locations"]) - {location.code for location in locations},
            "assignees": set(data["assignees"]) - {user.username for user in assignees},
        }
        if any(missing.values()):
            raise ValidationError(
                {key: f"unknown: {', '.join(sorted(values))}" for key, values in missing.items() if values}
            )
        start = parse_local(data.get("start"), "start", default_time=time(0, 0))
        due = parse_local(data.get("due"), "due", default_time=time(23, 59))
        with service_errors():
            run = count_run_create(
                organization=organization,
                facility=facility,
                name=data["name"],
                kind=data["type"],
                actor=request.user,
                zones=zones,
                locations=locations,
                assignees=assignees,
                start_date_local=start[0] if start else None,
                start_time_local=start[1] if start else time(0, 0),
                due_date_local=due[0] if due else None,
                due_time_local=due[1] if due else time(23, 59),
            )
        return Response(RunDetailOutput(_run_for(request, run.pk)).data, status=status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    @extend_schema(responses=RunDetailOutput)
    def get(self, request: Request, run_id: int) -> Response:
        return Response(RunDetailOutput(_run_for(request, run_id)).data)


class RunStartApi(APIView):
    permission_classes = [role_required(*PLANNERS)]

    @extend_schema(request=None, responses={200: RunDetailOutput, 409: dict})
    def post(self, request: Request, run_id: int) -> Response:
        run = _run_for(request, run_id)
        with service_errors():
            count_run_start(run=run, actor=request.user)
        return Response(RunDetailOutput(_run_for(request, run_id)).data)


class RunCancelApi(APIView):
    permission_classes = [role_required(*PLANNERS)]

    class Input(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(request=Input, responses={200: RunDetailOutput, 409: dict})
    def post(self, request: Request, run_id: int) -> Response:
        data = validated(self.Input, request.data)
        run = _run_for(request, run_id)
        with service_errors():
            count_run_cancel(run=run, actor=request.user, reason=data["reason"])
        return Response(RunDetailOutput(_run_for(request, run_id)).data)


class _VarianceField(serializers.CharField):
    """Counted − book, as a decimal string like the quantities (a plain field, so it may be absent)."""

    def to_representation(self, line: Any) -> str:
        return str(line.counted_quantity - line.book_quantity)


class RunLinesApi(GenericAPIView):
    """The run's count lines; book and variance only for people allowed to see them."""

    class Output(serializers.Serializer):
        location = serializers.CharField(source="location.code")
        item = serializers.CharField(source="item.sku")
        item_name = serializers.CharField(source="item.name")
        counted = serializers.DecimalField(source="counted_quantity", max_digits=14, decimal_places=3)
        # Not required: hidden from associates in blind counts.
        book = serializers.DecimalField(source="book_quantity", max_digits=14, decimal_places=3, required=False)
        variance = _VarianceField(source="*", required=False)
        is_extra = serializers.BooleanField()

    serializer_class = Output

    @extend_schema(
        parameters=[OpenApiParameter("ordering", str, enum=["name", "location", "variance"])],
        responses=Output(many=True),
    )
    def get(self, request: Request, run_id: int) -> Response:
        run = _run_for(request, run_id)
        show_book = selectors.book_visible_to(user=request.user, facility_id=run.facility_id)
        ordering = checked_query_params(request).get("ordering", "name")
        if ordering == "variance" and not show_book:
            ordering = "name"
        lines = selectors.run_lines(run=run, ordering=ordering)
        page = self.paginate_queryset(lines)
        rows = self.Output(page, many=True).data
        if not show_book:
            rows = [{key: value for key, value in row.items() if key not in {"book", "variance"}} for row in rows]
        return self.get_paginated_response(rows)


# --- sessions -------------------------------------------------------------------------------


def _session_for(request: Request, session_id: int) -> CountSession:
    """Associates reach only their own sessions; other roles any session of the organization."""
    sessions = selectors.session_list(organization=request_organization(request), user=request.user)
    return get_object_or_404(sessions, pk=session_id)


class SessionListApi(APIView):
    class Output(serializers.Serializer):
        id = serializers.IntegerField()
        run = serializers.IntegerField()
        run_name = serializers.CharField()
        facility = serializers.CharField()
        user = serializers.CharField()
        state = serializers.CharField()
        device_id = serializers.CharField()
        started_at = serializers.DateTimeField()

    class Input(serializers.Serializer):
        run = serializers.IntegerField()
        device_id = serializers.CharField(max_length=128)
        recount = serializers.BooleanField(required=False, default=False)

    @extend_schema(request=Input, responses={201: dict, 404: dict, 409: dict})
    def post(self, request: Request) -> Response:
        data = validated(self.Input, request.data)
        run = _run_for(request, data["run"])
        if not selectors.may_count_run(user=request.user, run=run):
            raise PermissionDenied("This run is assigned to other associates.")
        try:
            with service_errors():
                session = count_session_start(
                    run=run, user=request.user, device_id=data["device_id"], is_recount=data["recount"]
                )
        except ActiveSessionExists as error:
            return Response(
                {"detail": str(error), "active_session": error.session.pk, "run": error.session.run_id},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(session_state(session, viewer=request.user), status=status.HTTP_201_CREATED)

    @extend_schema(responses=Output(many=True), operation_id="sessions_list")
    def get(self, request: Request) -> Response:
        sessions = selectors.session_list(organization=request_organization(request), user=request.user)
        if state := checked_query_params(request).get("state"):
            sessions = sessions.filter(state=state)
        return Response(
            [
                {
                    "id": session.pk,
                    "run": session.run_id,
                    "run_name": session.run.name,
                    "facility": session.run.facility.code,
                    "user": session.user.username,
                    "state": session.state,
                    "device_id": session.device_id,
                    "started_at": session.started_at.isoformat(),
                }
                for session in sessions[:200]
            ]
        )


class SessionDetailApi(APIView):
    @extend_schema(responses=dict)
    def get(self, request: Request, session_id: int) -> Response:
        return Response(session_state(_session_for(request, session_id), viewer=request.user))


def _own_session(request: Request, session_id: int) -> CountSession:
    session = _session_for(request, session_id)
    if session.user_id != request.user.pk and role_for_user(request.user) not in {Role.MANAGER, Role.ADMIN}:
        raise PermissionDenied("Only the session's associate or a manager can do this.")
    return session


class SessionPauseApi(APIView):
    @extend_schema(request=None, responses={200: dict, 409: dict})
    def post(self, request: Request, session_id: int) -> Response:
        session = _own_session(request, session_id)
        session = count_session_pause(session=session, actor=request.user)
        return Response(session_state(session, viewer=request.user))


class SessionResumeApi(APIView):
    class Input(serializers.Serializer):
        device_id = serializers.CharField(max_length=128)

    @extend_schema(request=Input, responses={200: dict, 409: dict})
    def post(self, request: Request, session_id: int) -> Response:
        data = validated(self.Input, request.data)
        session = _own_session(request, session_id)
        try:
            with service_errors():
                session = count_session_resume(session=session, actor=request.user, device_id=data["device_id"])
        except ActiveSessionExists as error:
            return Response(
                {"detail": str(error), "active_session": error.session.pk, "run": error.session.run_id},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(session_state(session, viewer=request.user))


class SessionSubmitApi(APIView):
    @extend_schema(request=None, responses={200: dict, 409: dict})
    def post(self, request: Request, session_id: int) -> Response:
        session = _own_session(request, session_id)
        session = count_session_submit(session=session, actor=request.user)
        return Response(session_state(session, viewer=request.user))


# --- capture and signals --------------------------------------------------------------------


class CaptureApi(APIView):
    """`POST /api/inventory/count`: a batch of scans or typed quantities, each idempotent by id."""

    class Input(serializers.Serializer):
        session = serializers.IntegerField()
        # Each event is validated by the capture service, one by one, so a bad event rejects
        # only itself; here only the batch's shape is checked.
        events = serializers.ListField(min_length=1, max_length=MAX_BATCH)

    class Output(serializers.Serializer):
        accepted = serializers.IntegerField()
        duplicates = serializers.IntegerField()
        unmatched = serializers.IntegerField()
        extra = serializers.IntegerField()
        refused = serializers.IntegerField()
        rejected = serializers.ListField(child=serializers.DictField())
        events = serializers.ListField(
            child=serializers.DictField(),
            help_text="One outcome per event sent, in order: status, duplicate, reason, item, item_name",
        )

    @extend_schema(request=Input, responses={200: Output, 403: dict, 404: dict, 409: dict})
    def post(self, request: Request) -> Response:
        data = validated(self.Input, request.data)
        try:
            with service_errors():
                result = count_events_ingest(
                    session=data["session"],
                    actor=request.user,
                    events=data["events"],
                    allowed_modes=frozenset({EventMode.SCAN, EventMode.MANUAL}),
                    own_session_of=request.user,
                )
        except CountSession.DoesNotExist:
            raise Http404("No such session.") from None
        except SessionNotYours as error:
            raise PermissionDenied(str(error)) from None
        return Response(result.as_dict())


class SignalApi(APIView):
    """`POST /api/signals/`: ask for a directed count of an item at a location."""

    class Input(serializers.Serializer):
        kind = serializers.ChoiceField(choices=[kind for kind in SignalKind.values if kind != SignalKind.PLANNED])
        item = serializers.CharField(help_text="SKU or barcode")
        location = serializers.CharField(help_text="location code or barcode")
        facility = serializers.CharField(required=False, help_text="facility code, when location codes repeat")
        expected = serializers.DecimalField(max_digits=14, decimal_places=3, required=False, allow_null=True)
        found = serializers.DecimalField(max_digits=14, decimal_places=3, required=False, allow_null=True)
        note = serializers.CharField(required=False, allow_blank=True, default="")

    class Output(serializers.Serializer):
        run = serializers.IntegerField()
        created = serializers.BooleanField()
        run_created = serializers.BooleanField()

    @extend_schema(request=Input, responses={200: Output, 201: Output})
    def post(self, request: Request) -> Response:
        data = validated(self.Input, request.data)
        organization = request_organization(request)
        item = (
            Item.objects.for_organization(organization)
            .filter(Q(sku=data["item"]) | Q(pk__in=ItemBarcode.objects.filter(value=data["item"]).values("item_id")))
            .first()
        )
        if item is None:
            raise ValidationError({"item": f"no item with SKU or barcode {data['item']!r}"})
        locations = Location.objects.for_organization(organization).filter(
            Q(code=data["location"]) | Q(barcode=data["location"])
        )
        if facility_code := data.get("facility"):
            locations = locations.filter(facility__code=facility_code)
        found_locations = list(locations[:2])
        if not found_locations:
            raise ValidationError({"location": f"no location {data['location']!r}"})
        if len(found_locations) > 1:
            raise ValidationError({"facility": "that location code exists in several facilities; name the facility"})
        with service_errors():
            result = directed_request_add(
                organization=organization,
                item=item,
                location=found_locations[0],
                reason=data["kind"],
                actor=request.user,
                expected=data.get("expected"),
                found=data.get("found"),
                note=data["note"],
            )
        body = {"run": result.run.pk, "created": result.created, "run_created": result.run_created}
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
