"""API for CSV imports: plan and results uploads, their templates, and saved column mappings.

Thin views: they check the caller's role, find the organization's rows (another
organization's ids answer 404), and hand the file to counts.services.imports.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsOrganizationMember
from accounts.scoping import request_organization, scope_queryset
from accounts.selectors import role_for_user
from config.api_errors import checked_query_params
from config.api_schema import ErrorOutput, ValidationErrorOutput
from counts.models import ColumnMapping, CountSession, ImportKind
from counts.services import imports
from counts.services.imports import IMPORT_ROLES, import_kinds_for


class CanImport(IsOrganizationMember):
    """A member whose role may run the view's kind of import (`view.import_kind`, or any kind)."""

    message = "Your role may not import these files."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not super().has_permission(request, view):
            return False
        kind = getattr(view, "import_kind", None)
        role = role_for_user(request.user)
        return role in IMPORT_ROLES[kind] if kind else bool(import_kinds_for(role))


class CsvRenderer(BaseRenderer):
    """Lets `Accept: text/csv` reach the template views; errors are still written as JSON."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data.encode() if isinstance(data, str) else json.dumps(data).encode()


class DryRunField(serializers.BooleanField):
    # DRF reads a boolean missing from a form as False (an unticked checkbox); an omitted
    # dry_run must mean a dry run, never an apply.
    default_empty_html = serializers.empty


class ImportInput(serializers.Serializer):
    file = serializers.FileField(help_text="CSV, UTF-8 (a BOM is fine)")
    mapping = serializers.CharField(required=False, max_length=100, help_text="name of a saved column mapping")
    columns = serializers.JSONField(required=False, help_text='{"field": "column header in the file"}')
    dry_run = DryRunField(default=True, help_text="validate only (default); false applies a valid file")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("mapping") and attrs.get("columns"):
            raise serializers.ValidationError("give either a saved mapping's name or columns, not both")
        return attrs


class ResultsImportInput(ImportInput):
    session = serializers.IntegerField(help_text="id of the active count session to record the counts in")


class ImportReportOutput(serializers.Serializer):
    class RowErrorOutput(serializers.Serializer):
        row = serializers.IntegerField(allow_null=True, help_text="1 = first data row (header not counted)")
        column = serializers.CharField(allow_null=True, help_text="the file's header")
        message = serializers.CharField()

    kind = serializers.CharField()
    dry_run = serializers.BooleanField()
    valid = serializers.BooleanField()
    rows = serializers.IntegerField()
    row_numbering = serializers.CharField()
    error_count = serializers.IntegerField()
    errors = RowErrorOutput(many=True)
    preview = serializers.DictField()
    created = serializers.DictField()


def _file_bytes(upload: UploadedFile) -> bytes:
    # Read one byte past the limit so an oversize file is refused without reading all of it.
    return upload.read(imports.MAX_IMPORT_BYTES + 1)


def _report_response(report: imports.ImportReport) -> Response:
    failed = not report.dry_run and not report.valid
    return Response(report.as_dict(), status=status.HTTP_400_BAD_REQUEST if failed else status.HTTP_200_OK)


def _mapping_from(request: Request, kind: str, data: dict[str, Any]) -> ColumnMapping | dict[str, str] | None:
    if name := data.get("mapping"):
        mapping = imports.column_mapping_find(organization=request_organization(request), kind=kind, name=name)
        if mapping is None:
            raise serializers.ValidationError({"mapping": [f"no saved {kind} mapping named {name!r}"]})
        return mapping
    return data.get("columns")


def _template_response(kind: str, request: Request) -> HttpResponse:
    mapping = None
    if name := checked_query_params(request).get("mapping"):
        mapping = imports.column_mapping_find(organization=request_organization(request), kind=kind, name=name)
        if mapping is None:
            raise Http404(f"no saved {kind} mapping named {name!r}")
    response = HttpResponse(imports.import_template_csv(kind=kind, mapping=mapping), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{kind}-import-template.csv"'
    return response


_TEMPLATE_SCHEMA = extend_schema(
    parameters=[OpenApiParameter("mapping", str, description="use a saved mapping's headers")],
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="header row and one example row"),
        404: OpenApiResponse(ErrorOutput, description="no saved mapping by that name, or an unknown `format`"),
    },
)
# 400: the upload itself is invalid (field errors), or the file was read and has row errors (a report).
_IMPORT_400 = PolymorphicProxySerializer(
    component_name="ImportRejected",
    serializers=[ImportReportOutput, ValidationErrorOutput],
    resource_type_field_name=None,
)


class PlanImportApi(APIView):
    """Upload a count plan CSV: dry run (default) reports per-row errors; apply creates the runs."""

    import_kind = ImportKind.PLAN
    permission_classes = [CanImport]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": ImportInput},
        responses={200: ImportReportOutput, 400: _IMPORT_400},
    )
    def post(self, request: Request) -> Response:
        data = ImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        report = imports.plan_import(
            organization=request_organization(request),
            actor=request.user,
            file_bytes=_file_bytes(data.validated_data["file"]),
            mapping=_mapping_from(request, ImportKind.PLAN, data.validated_data),
            dry_run=data.validated_data["dry_run"],
        )
        return _report_response(report)


class PlanTemplateApi(APIView):
    """The plan CSV template."""

    import_kind = ImportKind.PLAN
    permission_classes = [CanImport]
    renderer_classes = [JSONRenderer, CsvRenderer]

    @_TEMPLATE_SCHEMA
    def get(self, request: Request) -> HttpResponse:
        return _template_response(ImportKind.PLAN, request)


class ResultsImportApi(APIView):
    """Upload counted quantities into a session: dry run (default) or apply; re-uploads add nothing."""

    import_kind = ImportKind.RESULTS
    permission_classes = [CanImport]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": ResultsImportInput},
        responses={
            200: ImportReportOutput,
            400: _IMPORT_400,
            404: OpenApiResponse(ErrorOutput, description="no such session"),
        },
    )
    def post(self, request: Request) -> Response:
        data = ResultsImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        session = (
            scope_queryset(CountSession.objects.all(), request_organization(request))
            .filter(pk=data.validated_data["session"])
            .first()
        )
        if session is None:
            raise Http404("No such session.")
        report = imports.results_import(
            session=session,
            actor=request.user,
            file_bytes=_file_bytes(data.validated_data["file"]),
            mapping=_mapping_from(request, ImportKind.RESULTS, data.validated_data),
            dry_run=data.validated_data["dry_run"],
        )
        return _report_response(report)


class ResultsTemplateApi(APIView):
    """The count results CSV template."""

    import_kind = ImportKind.RESULTS
    permission_classes = [CanImport]
    renderer_classes = [JSONRenderer, CsvRenderer]

    @_TEMPLATE_SCHEMA
    def get(self, request: Request) -> HttpResponse:
        return _template_response(ImportKind.RESULTS, request)


class ColumnMappingOutput(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = ColumnMapping
        fields = ["id", "name", "kind", "columns", "created_by", "updated_at"]


class ColumnMappingInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=ImportKind.choices)
    columns = serializers.JSONField(help_text='{"field": "column header in the file"}')


class ColumnMappingsApi(GenericAPIView):
    """List the organization's saved mappings (of the kinds the caller imports), or save one by name."""

    permission_classes = [CanImport]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=ImportKind.values)],
        responses=ColumnMappingOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        kinds = import_kinds_for(role_for_user(request.user))
        if wanted := checked_query_params(request).get("kind"):
            kinds = [kind for kind in kinds if kind == wanted]
        mappings = imports.column_mapping_list(organization=request_organization(request), kinds=kinds)
        page = self.paginate_queryset(mappings.select_related("created_by"))
        return self.get_paginated_response(ColumnMappingOutput(page, many=True).data)

    @extend_schema(request=ColumnMappingInput, responses={200: ColumnMappingOutput, 201: ColumnMappingOutput})
    def post(self, request: Request) -> Response:
        data = ColumnMappingInput(data=request.data)
        data.is_valid(raise_exception=True)
        kind = data.validated_data["kind"]
        if kind not in import_kinds_for(role_for_user(request.user)):
            raise PermissionDenied(f"Your role may not save {kind} mappings.")
        mapping, created = imports.column_mapping_save(
            organization=request_organization(request),
            actor=request.user,
            kind=kind,
            name=data.validated_data["name"],
            columns=data.validated_data["columns"],
        )
        return Response(
            ColumnMappingOutput(mapping).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
